"""The op contract and the registry.

An op is one subclass of :class:`Op`, registered with :func:`register` beside
its code. Its nested ``Params`` class is its spec schema, its documentation
(``tfn layers NAME``) and its graph-definition payload; its methods are the
shape rule, the FLOPs rule, its variables and its PyTorch builder. Nothing
outside layers/ lists op names.

This module imports no torch: ``tfn check`` and ``tfn --help`` stay fast.
Builders import torch when they are called.
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from pydantic import BaseModel, ConfigDict, field_validator

if TYPE_CHECKING:
    import torch

    from tfn.layers.imports import Rule

Shape = tuple  # tuple[int | None, ...]; a leading None is the batch dimension

#: the largest size attribute (units, filters, kernel sizes, ...): TF's int32
MAX_SIZE = 2**31 - 1


_ITEMSIZE = {"float64": 8, "int64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2, "int16": 2, "int8": 1, "uint8": 1, "bool": 1}

#: the most elements one tensor (one sample of an activation, or a variable) may have
MAX_ELEMENTS = 2**40


def is_integer(dtype: str) -> bool:
    """An integer dtype name: int8 to int64 or uint8."""
    return dtype.startswith(("int", "uint"))


@dataclass(frozen=True)
class TensorType:
    """What flows along a data edge: shape (batch first, None when unknown) and dtype."""

    shape: tuple[int | None, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: everything after the batch axis."""
        return tuple(self.shape[1:])  # type: ignore[arg-type]

    @property
    def sample_size(self) -> int:
        return math.prod(self.sample_shape)

    @property
    def is_integer(self) -> bool:
        return is_integer(self.dtype)

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return _ITEMSIZE.get(self.dtype, 4)

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"[{dims}]" + ("" if self.dtype == "float32" else f" {self.dtype}")


@dataclass(frozen=True)
class VariableDef:
    """A variable an op owns, named ``<node>/<role>`` in the graph (TF's names).

    Layouts are PyTorch's: conv kernels OIHW, dense kernels [out, in].
    ``fans`` overrides the (fan_in, fan_out) an initializer derives from that
    layout, for ops whose TF fans differ (depthwise filters).
    """

    role: str
    shape: tuple[int, ...]
    initializer: Any = "zeros"
    trainable: bool = True
    fans: tuple[int, int] | None = None
    regularizer: float = 0.0  # L2 factor the runner adds to the loss: factor * sum(w**2) / 2


class UserError(Exception):
    """The user's input is wrong (spec, file, option, fed value): exit status 2.

    It lives here, at the bottom of the imports, so that an op's kernel can
    raise it for a value the user supplied (a label outside the classes);
    tfn.specs.errors re-exports it.
    """


class OpError(UserError, ValueError):
    """The op's attributes do not fit its inputs. ``field`` names the attribute at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class IndexRangeError(UserError, ValueError):
    """A tensor of indices holds a value outside the range the op accepts (raised when the graph runs)."""


class Params(BaseModel):
    """Base of every op's parameter class: unknown attributes are errors; no silent coercion;
    numbers are finite and integers fit TF's int32 attributes."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _int32_and_float32(cls, value):
        for number in value if isinstance(value, (list, tuple)) else value.values() if isinstance(value, dict) else [value]:
            if isinstance(number, int) and not isinstance(number, bool) and not -MAX_SIZE <= number <= MAX_SIZE:
                raise ValueError(f"{number} is out of range: integer attributes lie within +-(2**31 - 1) = +-{MAX_SIZE:,}")
            if beyond_float32(number):
                raise ValueError(beyond_float32(number))
        return value


PREDICTIONS = ("softmax", "sigmoid", "values")

#: the largest float32: tensors are float32, so a spec's numbers are too
FLOAT32_MAX = 3.4028234663852886e38


def beyond_float32(number) -> str | None:
    """What is wrong with a float beyond float32's range (it would become inf in a tensor); None if nothing."""
    if isinstance(number, float) and abs(number) > FLOAT32_MAX:
        return f"{number:g} is out of range: numbers are float32, at most {FLOAT32_MAX:.4g} in magnitude"
    return None


# A kernel is what an op's builder returns: called with the node's input
# tensors, its variables by role, and whether the model is training.
Kernel = Callable[[Sequence["torch.Tensor"], dict, bool], "torch.Tensor | tuple[torch.Tensor, ...]"]


class Op:
    """Base class of every op. Subclasses set ``name``, ``family``, ``Params`` and
    ``example_inputs`` and override the rules that apply to them.

    The subclass's docstring is the op's user documentation: a one-line (or
    one-paragraph) summary, details, `Example:` followed by a node as a YAML
    flow mapping, and a paragraph starting `Input` (or `Inputs`) with the
    shapes. `tfn layers`, the schema and the contract battery read it.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    #: (fewest, most) data inputs; most=None means any number
    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    #: a loss op takes (logits, labels[, sample_weight]) and gives the weighted,
    #: unreduced loss (per example or per element, as TF's op does); the runner
    #: reduces it with the op's `reduce` (tf.losses' reduction)
    is_loss: ClassVar[bool] = False
    #: a loss op: how `tfn predict` reads its logits, one of PREDICTIONS: "softmax" (class axis 1:
    #: class and probability, top-k), "sigmoid" (a probability per label; one unit: the positive
    #: class's probability and a threshold), "values" (the raw values: regression)
    prediction: ClassVar[str | None] = None
    #: an op whose output depends on a random draw in training (dropout)
    is_random: ClassVar[bool] = False
    #: notes for users coming from TensorFlow, shown by `tfn layers NAME`
    tf_notes: ClassVar[str] = ""
    #: the op only moves or selects data: its FLOPs are zero on purpose
    pure_data_movement: ClassVar[bool] = False
    #: TensorFlow's op for this node in a TF 1.x GraphDef (Conv2D, MatMul, FusedBatchNorm...), the name
    #: TensorBoard's Graphs tab shows, for an op that `imports` from no TF op; None: the first TF op
    #: of `imports`, else tfn's name (TF builds the node from several ops)
    tf_op: ClassVar[str | None] = None
    #: graph rewrites (runners/rewrites.py) read this and the methods
    #: takes_window_maximum, folds_channel_affine, inference_affine; each is a
    #: promise about the op's kernel that tests/test_rewrites.py checks.
    #: An element-wise op f, nondecreasing and exact in floating point, whose
    #: gradient is 0 wherever f is flat: max(f(x)) == f(max(x)) bit for bit,
    #: with the same gradient, so f may run after a max pooling instead of before.
    commutes_with_max: ClassVar[bool] = False
    #: input shapes, batch first, that the docstring example runs on: the
    #: contract battery (tests/test_op_contract.py) drives every op with them
    example_inputs: ClassVar[tuple[tuple[int, ...], ...]]
    #: the dtypes of example_inputs, one per input; empty: every input is float32
    example_dtypes: ClassVar[tuple[str, ...]] = ()
    #: how Keras layers, TF ops and ONNX ops become this op (`tfn import`): see layers/imports.py
    imports: ClassVar[tuple[Rule, ...]] = ()

    def infer(self, p: Params, inputs: Sequence[TensorType]) -> list[TensorType]:
        """The output types, or OpError when the attributes do not fit the inputs."""
        raise NotImplementedError(f"op {self.name} has no shape rule")

    def variables(self, p: Params, inputs: Sequence[TensorType]) -> list[VariableDef]:
        return []

    def flops(self, p: Params, inputs: Sequence[TensorType], outputs: Sequence[TensorType]) -> int:
        """Forward floating-point operations for one sample (a multiply-add counts 2)."""
        return 0

    def build(self, p: Params, inputs: Sequence[TensorType]) -> Kernel:
        raise NotImplementedError(f"op {self.name} has no PyTorch builder")

    def build_onnx(self, p: Params, inputs: Sequence[TensorType]) -> Kernel | None:
        """The kernel ONNX export traces instead of `build`'s, for a node ONNX has exactly: it computes
        what `build`'s kernel computes through a custom op of layers/onnx_nodes.py, which the exporter
        writes as that ONNX node (LRN, Resize). None (the default): export traces `build`'s kernel,
        and ONNX gets the torch ops it runs."""
        return None

    def takes_window_maximum(self, p: Params) -> bool:
        """Whether each output is the maximum of a window of the (single) input and nothing else
        (max pooling): an op that `commutes_with_max` may then run after it."""
        return False

    def folds_channel_affine(self, p: Params, inputs: Sequence[TensorType]) -> bool:
        """Whether output channel o (axis 1) is the input through `kernel[o]` (axis 0 of the
        kernel variable) plus `bias[o]`, linearly, and the kernel reads `bias` when given
        one: a per-channel affine map after the op then folds into its kernel and bias."""
        return False

    def inference_affine(self, p: Params, inputs: Sequence[TensorType], variables: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For an op that is a per-channel affine map in inference: (scale, shift) over axis 1,
        computed from its variables, so y = x * scale + shift; None for other ops."""
        return None

    def integer_input_range(self, p: Params, inputs: Sequence[TensorType], index: int) -> tuple[int, int] | None:
        """The values an integer input must hold, [low, high), where the op indexes with it
        (gather's indices); None where any integer goes. Tools that make up inputs
        (`tfn time`, the contract battery) draw valid ones from it."""
        return None

    def tf_op_name(self, p: Params) -> str:
        """The op a TF 1.x GraphDef would show for a node with these attributes: `tf_op`, else the
        first TF op this op is imported from, else tfn's name."""
        return self.tf_op or next((rule.kind for rule in self.imports if rule.framework == "tf"), self.name)

    def moving_average_momentum(self, p: Params) -> float | None:
        """For an op whose variables include moving statistics updated in training
        (batch normalization): the momentum of that average, TF's `momentum`."""
        return None

    def float_input_range(self, p: Params, inputs: Sequence[TensorType], index: int) -> tuple[float, float] | None:
        """The interval [low, high] a float input's values must lie in (log_loss's
        probabilities); None where any value goes. Tools that make up inputs draw from it."""
        return None

    def label_type(self, p: Params, logits: TensorType) -> TensorType:
        """For a loss op: the type of the labels that go with these logits."""
        raise NotImplementedError(f"op {self.name} is not a loss")

    def doc(self) -> str:
        return inspect.cleandoc(type(self).__doc__ or "")

    def summary(self) -> str:
        """The docstring's first paragraph, on one line."""
        return " ".join(self.doc().split("\n\n", 1)[0].split())

    def example(self) -> str:
        """The docstring's spec example: the YAML flow mapping on the line after `Example:`."""
        lines = self.doc().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Example") and i + 1 < len(lines):
                return lines[i + 1].strip()
        return ""

    def shape_rule(self) -> str:
        """The docstring's shape line (`Input ...; output ...`), which may wrap."""
        paragraphs = self.doc().split("\n\n")
        return next((" ".join(p.split()) for p in paragraphs if p.startswith(("Input", "Inputs"))), "")


_REGISTRY: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: add an op to the registry under its spec name."""
    if cls.name in _REGISTRY:
        raise RuntimeError(f"op {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


class UnknownOpError(UserError, KeyError):
    def __init__(self, name: str):
        self.name = name
        self.suggestion = suggest(name, _REGISTRY)
        hint = f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""
        super().__init__(f"unknown op {name!r}{hint}")

    def __str__(self) -> str:
        return self.args[0]


def get(name: str) -> Op:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownOpError(name) from None


def all_ops() -> dict[str, Op]:
    return dict(sorted(_REGISTRY.items()))


def suggest(word: str, choices) -> str | None:
    """The closest known name, for 'did you mean' hints."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return close[0] if close else None

