"""The spec schema: one pydantic model per section, built from the op registry.

This is the single source of truth for validation and for the JSON Schema
that `tfn schema` prints. Node models are the ops' own parameter classes plus
the fields every node has (name, inputs, after, share, device); nothing here
lists op names.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

from typing import Annotated, Any, Literal, Union

from dataclasses import dataclass

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    StringConstraints,
    Tag,
    create_model,
    field_validator,
    model_validator,
)

from tfn import layers
from tfn.layers.attrs import DType
from tfn.layers.base import beyond_float32

SPEC_VERSION = 1

# Every count and size in a spec fits TF's int32 attributes, so no huge number
# reaches a kernel; seeds are int64, as tf.set_random_seed's.
PositiveInt = Annotated[int, Field(gt=0, le=layers.MAX_SIZE)]
NonNegativeInt = Annotated[int, Field(ge=0, le=layers.MAX_SIZE)]
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _float32(cls, value):
        for number in value if isinstance(value, list) else value.values() if isinstance(value, dict) else [value]:
            if beyond_float32(number):
                raise ValueError(beyond_float32(number))
        return value


@dataclass(frozen=True)
class Vocabulary:
    """Marks a union of the schema told apart by one key (`type:`, `source:`, `op:`):
    its errors use the section's own words and list its own choices."""

    key: str  # the key whose value picks the member
    word: str  # what a value of that key is called: "optimizer", "data source", "op"
    needs: str  # the error when the key is absent, e.g. "an optimizer needs a `type:`"
    choices: tuple[str, ...]
    listing: str = ""  # where the choices are listed, when they are too many to print
    aliases: tuple[tuple[str, str], ...] = ()  # (another name users know, the choice it means)


def _choices(members, key: str) -> tuple[str, ...]:
    return tuple(typing.get_args(m.model_fields[key].annotation)[0] for m in members)


Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")]
Device = Annotated[str, StringConstraints(pattern=r"^(cpu|cuda|cuda:\d+)$")]


class _PathMarker:
    """Metadata of a string field that names a file or directory (relative to the working directory)."""


PATH = _PathMarker()
FilePath = Annotated[str, PATH]
#: a path that starts with this names a data file shipped with tfn (`shipped:diabetes.csv`), wherever tfn is installed
SHIPPED = "shipped:"


class InputSpec(Strict):
    """A model input: the shape of one sample, channels-first, and its dtype.

    `shape: []` is one number per sample (TF's placeholder of shape [None]): a
    weight, a scalar feature, a label fed as an input.
    """

    shape: list[PositiveInt]
    dtype: DType = "float32"


class NodeFields(Strict):
    """Fields every graph node has, whatever its op."""

    name: Name | None = Field(None, description="unique within its scope; default: the op's name, numbered as TF does (conv2d, conv2d_1, ...)")
    inputs: list[str] | None = Field(
        None,
        description="nodes or model inputs defined above, nearest scope first ('/x' is the top-level x, 'x:1' its second output); "
        "default: the node above",
    )
    after: list[str] = Field([], description="control dependencies: nodes that run before this one, without passing data")
    share: str | None = Field(None, description="a node above of the same op whose variables this node reuses (TF's variable reuse)")
    device: Device | None = Field(None, description="cpu, cuda or cuda:N; default: the scope's device, else the run's")


SCOPE_TAG = "<scope>"


def _node_model(op: layers.Op) -> type[BaseModel]:
    node_fields = {name: (f.annotation, f) for name, f in NodeFields.model_fields.items()}
    return create_model(
        f"{type(op).__name__}Node",
        __base__=op.Params,
        __doc__=op.doc(),
        op=(Literal[op.name], ...),
        **node_fields,
    )


MetricName = Literal[
    "accuracy",
    "top_k_accuracy",
    "per_class_accuracy",
    "confusion_matrix",
    "precision",
    "recall",
    "f1",
    "mean_squared_error",
    "mean_absolute_error",
    "mean_relative_error",
    "auc",
    "pr_auc",
    "token_accuracy",
]


# metrics where smaller is better (for early stopping, plateau, `best` in mode auto, and `tfn runs`)
LOWER_IS_BETTER = ("loss", "mean_squared_error", "mean_absolute_error", "mean_relative_error")


def better(metric: str, mode: str) -> str:
    """'min' or 'max' for a monitored metric name ('auto' decides by the name)."""
    if mode != "auto":
        return mode
    return "min" if metric.split("/")[-1] in LOWER_IS_BETTER else "max"


class _PredictionsOrLogits(BaseModel):
    """A regression loss names its input node with `predictions:` (tf.losses' name) or `logits:`."""

    @model_validator(mode="after")
    def _one_input(self):
        if (self.logits is None) == (self.predictions is None):  # type: ignore[attr-defined]
            raise ValueError("give the predictions node as `predictions:` or `logits:` (one of them)")
        return self


def _loss_model(op: layers.Op) -> type[BaseModel]:
    if op.prediction == "values":
        inputs: dict[str, Any] = {
            "logits": (str | None, Field(None, description="the node that gives the predictions (same as `predictions:`)")),
            "predictions": (str | None, Field(None, description="the node that gives the predictions")),
        }
        base: Any = (op.Params, _PredictionsOrLogits)
    else:
        inputs, base = {"logits": (str, Field(description="the node that gives the logits"))}, op.Params
    return create_model(
        f"{type(op).__name__}Loss",
        __base__=base,
        __doc__=op.doc(),
        op=(Literal[op.name], ...),
        **inputs,
        labels=(str, Field(description="the data field that gives the labels")),
        sample_weight=(
            str | None,
            Field(
                None,
                description="a data field of per-example [N] or per-element weights multiplied into the loss "
                "(tf.losses' weights); declare it under model.inputs to give its shape",
            ),
        ),
        name=(Name | None, Field(None, description="the loss node's name; default: loss (in a list: loss, loss_1, loss_2, ...)")),
        weight=(float, Field(1.0, description="factor on this loss in the sum the optimizer minimises")),
        metrics=(
            list[MetricName] | None,
            Field(None, description="metrics of this loss's logits and labels; default: train.metrics for the first loss, none for the others"),
        ),
    )


NODE_MODELS: dict[str, type[BaseModel]] = {name: _node_model(op) for name, op in layers.all_ops().items() if not op.is_loss}
LOSS_MODELS: dict[str, type[BaseModel]] = {name: _loss_model(op) for name, op in layers.all_ops().items() if op.is_loss}


def _tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return SCOPE_TAG if "scope" in value else value.get("op")
    return SCOPE_TAG if isinstance(value, ScopeNode) else getattr(value, "op", None)


class ScopeNode(Strict):
    """A name scope: its nodes are named `<scope>/<node>`, their variables `<scope>/<node>/<role>`."""

    scope: Name = Field(description="the scope's name; scopes nest")
    layers: list[LayerNode] = Field(min_length=1, description="the scope's nodes, in order")
    device: Device | None = Field(None, description="placement of every node inside that sets none")


LayerNode = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in NODE_MODELS.items()) + (Annotated[ScopeNode, Tag(SCOPE_TAG)],)],
    Discriminator(_tag),
    Vocabulary("op", "op", "a node needs an `op:` (or `scope:` with `layers:`)", tuple(NODE_MODELS), listing="`tfn layers` lists them"),
]
ScopeNode.model_rebuild()

LossSpec = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in LOSS_MODELS.items())],
    Discriminator(_tag),
    Vocabulary("op", "loss op", "a loss needs an `op:`", tuple(LOSS_MODELS)),
]

# `loss:` is one loss or a list of weighted losses the optimizer minimises the sum of.
# The tags contain "[" so that error locations skip them as union tags.
LOSS_FORMS: dict[str, Any] = {"loss[one]": LossSpec, "loss[list]": Annotated[list[LossSpec], Field(min_length=1)]}
Losses = Annotated[
    Union[tuple(Annotated[form, Tag(tag)] for tag, form in LOSS_FORMS.items())],
    Discriminator(lambda value: "loss[list]" if isinstance(value, list) else "loss[one]"),
]


class Model(Strict):
    """The dataflow graph: named inputs and the nodes that compute from them."""

    inputs: dict[Name, InputSpec] = Field(min_length=1, description="name -> one sample's shape and dtype; bound to the data field of that name")
    layers: list[LayerNode] = Field(min_length=1, description="the nodes in order, each `op:` with its attributes, or a `scope:` with `layers:`")


# --- optimizers --------------------------------------------------------------


class ConstantSchedule(Strict):
    """The learning rate stays at `optimizer.learning_rate` (after any warmup)."""

    type: Literal["constant"]
    warmup_steps: NonNegativeInt = Field(default=0, description="steps of linear warmup: rate(warmup_steps) * step / warmup_steps before that step")


class ExponentialDecay(ConstantSchedule):
    """tf.train.exponential_decay: lr * decay_rate ** (step / decay_steps), the exponent floored when staircase."""

    type: Literal["exponential_decay"]  # type: ignore[assignment]
    decay_steps: PositiveInt
    decay_rate: PositiveFloat
    staircase: bool = False


class PiecewiseConstant(ConstantSchedule):
    """tf.train.piecewise_constant: values[i] while boundaries[i-1] < step <= boundaries[i].

    One more value than boundaries; the values replace `optimizer.learning_rate`.
    """

    type: Literal["piecewise_constant"]  # type: ignore[assignment]
    boundaries: list[NonNegativeInt] = Field(min_length=1)
    values: list[NonNegativeFloat] = Field(min_length=2)

    @model_validator(mode="after")
    def _one_more_value(self):
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(f"needs one more value than boundaries: {len(self.boundaries)} boundaries, {len(self.values)} values")
        if self.boundaries != sorted(set(self.boundaries)):
            raise ValueError(f"boundaries must increase strictly, got {self.boundaries}")
        return self


class PolynomialDecay(ConstantSchedule):
    """tf.train.polynomial_decay: (lr - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end.

    With `cycle`, decay_steps grows to the next multiple of itself past the step.
    """

    type: Literal["polynomial_decay"]  # type: ignore[assignment]
    decay_steps: PositiveInt
    end_learning_rate: NonNegativeFloat = 0.0001
    power: PositiveFloat = 1.0
    cycle: bool = False


class CosineDecay(ConstantSchedule):
    """tf.train.cosine_decay: lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)."""

    type: Literal["cosine_decay"]  # type: ignore[assignment]
    decay_steps: PositiveInt
    alpha: NonNegativeFloat = 0.0


_SCHEDULES = (ConstantSchedule, ExponentialDecay, PiecewiseConstant, PolynomialDecay, CosineDecay)
Schedule = Annotated[
    Union[_SCHEDULES],
    Field(discriminator="type"),
    Vocabulary("type", "schedule", "a schedule needs a `type:`", _choices(_SCHEDULES, "type")),
]


class OptimizerBase(Strict):
    """Fields every optimizer has: the learning rate, its schedule, gradient clipping, per-variable multipliers."""

    learning_rate: PositiveFloat = 0.01
    schedule: Schedule = ConstantSchedule(type="constant")
    clip_global_norm: PositiveFloat | None = Field(
        default=None, description="tf.clip_by_global_norm: scale all gradients by clip / max(global_norm, clip)"
    )
    clip_value: PositiveFloat | None = Field(default=None, description="tf.clip_by_value: clamp each gradient element to [-clip, clip]")
    learning_rate_multipliers: dict[str, NonNegativeFloat] = Field(
        default={},
        description="variable-name glob -> factor on the learning rate, e.g. {'logits/*': 10.0}; the first matching pattern wins",
    )


class GradientDescent(OptimizerBase):
    """tf.train.GradientDescentOptimizer: var -= learning_rate * grad."""

    type: Literal["gradient_descent"]


class Momentum(OptimizerBase):
    """tf.train.MomentumOptimizer: accum = momentum * accum + grad; var -= lr * accum (lr read each step)."""

    type: Literal["momentum"]
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    use_nesterov: bool = False


class Nesterov(Momentum):
    """tf.train.MomentumOptimizer with use_nesterov=True: var -= lr * grad + lr * momentum * accum."""

    type: Literal["nesterov"]  # type: ignore[assignment]
    use_nesterov: Literal[True] = True


class Adagrad(OptimizerBase):
    """tf.train.AdagradOptimizer: accum += grad**2; var -= lr * grad / sqrt(accum). No epsilon."""

    type: Literal["adagrad"]
    initial_accumulator_value: PositiveFloat = 0.1


class Adadelta(OptimizerBase):
    """tf.train.AdadeltaOptimizer, with TF's defaults (lr 0.001, rho 0.95, epsilon 1e-8), not PyTorch's."""

    type: Literal["adadelta"]
    learning_rate: PositiveFloat = 0.001
    rho: float = Field(default=0.95, ge=0.0, lt=1.0)
    epsilon: PositiveFloat = 1e-8


class RMSProp(OptimizerBase):
    """tf.train.RMSPropOptimizer: mean square initialised to ONES, epsilon inside the root, lr inside the momentum buffer.

    ms = decay * ms + (1 - decay) * grad**2; mom = momentum * mom + lr * grad / sqrt(ms + epsilon); var -= mom.
    `centered` subtracts the square of the mean gradient under the root.
    """

    type: Literal["rmsprop"]
    learning_rate: PositiveFloat = 0.001
    decay: float = Field(default=0.9, ge=0.0, lt=1.0)
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    epsilon: PositiveFloat = 1e-10
    centered: bool = False


class Adam(OptimizerBase):
    """tf.train.AdamOptimizer, in TF's epsilon-hat form: var -= lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + epsilon)."""

    type: Literal["adam"]
    learning_rate: PositiveFloat = 0.001
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    epsilon: PositiveFloat = 1e-8


class AdamW(Adam):
    """PyTorch's AdamW (decoupled weight decay, Loshchilov & Hutter), not a TF 1.x optimizer.

    var -= lr * weight_decay * var, then PyTorch's Adam step, whose epsilon sits
    outside the bias correction (it differs from `adam` for large epsilon).
    """

    type: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: NonNegativeFloat = 0.01


_OPTIMIZERS = (GradientDescent, Momentum, Nesterov, Adagrad, Adadelta, RMSProp, Adam, AdamW)
Optimizer = Annotated[
    Union[_OPTIMIZERS],
    Field(discriminator="type"),
    Vocabulary("type", "optimizer", "an optimizer needs a `type:`", _choices(_OPTIMIZERS, "type"), aliases=(("sgd", "gradient_descent"),)),
]


# --- data ----------------------------------------------------------------------

SplitName = Literal["train", "validation", "test"]
Size2 = Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]


class SplitFractions(Strict):
    """How a source without its own validation/test data is divided, deterministically from `seed`.

    The samples are permuted once with `seed` (independent of `train.seed`, so
    changing the training seed never moves a sample between splits); the first
    `validation` fraction becomes the validation split, the next `test`
    fraction the test split, the rest the training split.
    """

    validation: float = Field(default=0.1, ge=0.0, lt=1.0)
    test: float = Field(default=0.1, ge=0.0, lt=1.0)
    seed: Seed = 0

    @model_validator(mode="after")
    def _leaves_training_data(self):
        if self.validation + self.test >= 1.0:
            raise ValueError(f"validation + test must be below 1 so that some training data remains (got {self.validation} + {self.test})")
        return self


class ShuffleBuffer(Strict):
    """TF's RandomShuffleQueue (tf.train.shuffle_batch): each sample is drawn uniformly from a buffer.

    Samples enter the buffer in source order; each dequeue takes a uniformly
    chosen element of the buffer. The producer is taken to keep the buffer full
    (`capacity` elements) while input remains; after the input ends the buffer
    drains. `min_after_dequeue` is the floor TF guarantees when the consumer
    outruns the producer; it must be below `capacity`.
    """

    capacity: PositiveInt
    min_after_dequeue: NonNegativeInt = 0

    @model_validator(mode="after")
    def _below_capacity(self):
        if self.min_after_dequeue >= self.capacity:
            raise ValueError(f"min_after_dequeue ({self.min_after_dequeue}) must be below capacity ({self.capacity}), as in TF")
        return self


class Augment(Strict):
    """Random image augmentation of the training split (never validation or test), seeded per step.

    Applied to a batch of `field` ([N, C, H, W]): zero-pad by `crop_padding`
    pixels on each side and take a random crop of the original size, then flip
    each image left-right with probability 1/2 when `horizontal_flip`.
    """

    field: Name = "image"
    crop_padding: NonNegativeInt = 0
    horizontal_flip: bool = False


class DataBase(Strict):
    batch_size: PositiveInt | Literal["full"] = Field(
        default=32, description="samples per training step; `full`: the whole training split in one batch (batch gradient descent)"
    )
    drop_remainder: bool = Field(default=False, description="drop the last, smaller training batch of each epoch")
    shuffle: bool = Field(default=True, description="a new order of the training split each epoch (false: source order, every epoch)")
    shuffle_buffer: ShuffleBuffer | None = Field(
        default=None, description="shuffle through a RandomShuffleQueue-like buffer over the source order instead of a full permutation"
    )
    augment: Augment | None = None

    @model_validator(mode="after")
    def _buffer_shuffles(self):
        if self.shuffle_buffer is not None and not self.shuffle:
            raise ValueError("shuffle_buffer shuffles; it cannot go with `shuffle: false`")
        return self


class SplitByFraction(DataBase):
    split: SplitFractions = SplitFractions()


class DigitsData(DataBase):
    """The UCI handwritten digits shipped with tfn: 1,797 8x8 grey images, 10 classes.

    Fields: `image` [1, 8, 8] float32 in [0, 1], `label` int64. Fixed splits:
    1,167 train, 270 validation, 360 test.
    """

    source: Literal["digits"]


class SyntheticField(Strict):
    """One synthetic field: the shape of one sample, its dtype and, for integers, the exclusive upper bound."""

    shape: list[PositiveInt] = Field(description="one sample's shape; [] for one number per sample")
    dtype: DType = "float32"
    high: PositiveInt | None = Field(default=None, description="integer fields: values in [0, high); default: the class count")


class SplitSizes(Strict):
    train: PositiveInt = 1024
    validation: NonNegativeInt = 256
    test: NonNegativeInt = 256


class SyntheticData(DataBase):
    """Random tensors of declared shapes, for benchmarks and smoke tests; the same for the same seed.

    The label field holds class indices in [0, classes). Each float field is a
    per-class pattern (standard normal, drawn once) plus `noise` times standard
    normal noise, so a model can learn it; integer fields are uniform in [0, high).

        data:
          source: synthetic
          classes: 10
          fields: {image: {shape: [3, 32, 32]}}
          samples: {train: 2048, validation: 256, test: 256}
    """

    source: Literal["synthetic"]
    fields: dict[Name, SyntheticField] = Field(min_length=1)
    label: Name = Field(default="label", description="the name of the class-index field")
    classes: PositiveInt = 10
    samples: SplitSizes = SplitSizes()
    noise: NonNegativeFloat = 1.0
    seed: Seed = 0

    @model_validator(mode="after")
    def _label_is_generated(self):
        if self.label in self.fields:
            raise ValueError(f"{self.label!r} is the label field, made from `classes`; remove it from `fields`")
        return self


class KeyValueData(DataBase):
    """A generated key-value retrieval task: find the value stored under the queried key.

    Each sample holds `pairs` (key, value) pairs, its keys distinct symbols
    out of `key_vocabulary`, its values any of `classes` symbols, and a query
    that is one of its keys; the label is the value paired with that key. The
    answer depends on which position's key matches the query, so a model
    must compare the query with every key (attention does this). Symbols are
    one-hot, in the [N, F, T] layout (features, then positions):

    - `keys` [key_vocabulary, pairs] and `values` [classes, pairs] float32,
    - `query` [key_vocabulary, 1] float32 (a sequence of one),
    - `label` int64 in [0, classes).

    The same `seed` gives the same samples; each split has its own stream,
    so resizing one split leaves the others as they were.

        data: {source: key_value, pairs: 8, key_vocabulary: 16, classes: 10, samples: {train: 4096}}
    """

    source: Literal["key_value"]
    pairs: PositiveInt = Field(default=8, ge=2, description="(key, value) pairs per sample")
    key_vocabulary: PositiveInt = Field(default=16, description="distinct key symbols; at least `pairs` (a sample's keys differ)")
    classes: PositiveInt = Field(default=10, ge=2, description="value symbols, the classes of the label")
    samples: SplitSizes = SplitSizes(train=4096, validation=512, test=512)
    seed: int = 0

    @model_validator(mode="after")
    def _distinct_keys_fit(self):
        if self.key_vocabulary < self.pairs:
            raise ValueError(f"key_vocabulary ({self.key_vocabulary}) must be at least pairs ({self.pairs}): the keys of a sample are distinct")
        return self


class MnistData(DataBase):
    """MNIST from a directory of its four IDX files, downloaded and SHA-256-verified when absent.

    Fields: `image` [1, 28, 28] float32 in [0, 1], `label` int64. The test split
    is the t10k files; the validation split is the first `validation` training
    images (TF's read_data_sets: 5,000).

    `directory` defaults to $TFN_DATA_DIR/<source> or ~/.cache/tfn/datasets/<source>;
    `url` (the base URL the files are fetched from) to $TFN_MNIST_URL /
    $TFN_FASHION_MNIST_URL or the public mirror. Offline, put the files into
    `directory` yourself.
    """

    source: Literal["mnist"]
    directory: FilePath | None = None
    download: bool = True
    url: str | None = None
    validation: NonNegativeInt = 5000


class FashionMnistData(MnistData):
    """Fashion-MNIST (Zalando): as `mnist`, ten classes of clothing; class names known."""

    source: Literal["fashion_mnist"]  # type: ignore[assignment]


class IdxData(SplitByFraction):
    """An image IDX file and a label IDX file (MNIST's format), gzipped or not.

    Fields: `image` [C, H, W] float32 (uint8 data scaled to [0, 1]; a rank-3
    file [N, H, W] gets one channel), `label` int64. Without `test_images`
    and `test_labels` the test split is carved by `split`.
    """

    source: Literal["idx"]
    images: FilePath
    labels: FilePath
    test_images: FilePath | None = None
    test_labels: FilePath | None = None

    @model_validator(mode="after")
    def _test_pair(self):
        if (self.test_images is None) != (self.test_labels is None):
            raise ValueError("give both test_images and test_labels, or neither")
        return self


class Normalized(SplitByFraction):
    """Array and CSV sources: per-field normalisation with statistics of the training split."""

    normalize: dict[Name, Literal["standard", "minmax", "none"]] = Field(
        default={},
        description=(
            "field -> standard ((x - mean) / std) or minmax ((x - min) / (max - min)) per feature (axis 1), "
            "with statistics of the training split only, recorded in the run's preprocessing.json; none: as it is"
        ),
    )


class NpzData(Normalized):
    """Arrays of one .npz file mapped to named fields: `fields: {image: x_train, label: y_train}`.

    Float arrays bind to float model inputs, integer arrays to integer inputs
    (the width is converted). `validation_fields` / `test_fields` name the
    arrays of a split the file already has; a split without them is carved
    from the training arrays by `split`.
    """

    source: Literal["npz"]
    path: FilePath
    fields: dict[Name, str] = Field(min_length=1, description="field name -> array name in the file")
    validation_fields: dict[Name, str] | None = None
    test_fields: dict[Name, str] | None = None


class NpyData(Normalized):
    """.npy files mapped to named fields: `fields: {image: x.npy, label: y.npy}`; otherwise as `npz`."""

    source: Literal["npy"]
    fields: dict[Name, FilePath] = Field(min_length=1, description="field name -> .npy file")
    validation_fields: dict[Name, FilePath] | None = None
    test_fields: dict[Name, FilePath] | None = None


class CsvData(Normalized):
    """A CSV file with a header row; fields are made from columns by name.

    A list of columns gives a float32 vector field ([len(columns)]); a single
    column gives an int64 class-index field: integers as they are, or names
    mapped to their index in `classes` (default: the sorted distinct names).
    A `categorical` column becomes, inside its field, a one-hot block (its
    vocabulary's width) or a category index (int64, for an embedding; a field
    of index columns only); the vocabulary is the sorted distinct values of the
    training split.

        data:
          source: csv
          path: iris.csv
          fields: {features: [sepal_length, sepal_width, petal_length, petal_width], label: species}
    """

    source: Literal["csv"]
    path: FilePath
    fields: dict[Name, str | list[str]] = Field(min_length=1)
    classes: list[str] | None = Field(default=None, description="class names in index order, for a label column of names")
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    categorical: dict[str, Literal["one_hot", "index"]] = Field(
        default={}, description="column -> one_hot (a block of 0s and one 1 in its field) or index (an int64 category id, e.g. for an embedding)"
    )
    unseen: Literal["error", "oov"] = Field(
        default="error",
        description="a categorical value the training split does not hold: an error naming the file and line, or (oov) index 0, the vocabulary counting from 1",
    )
    validation_path: FilePath | None = None
    test_path: FilePath | None = None


Standardize = Literal["lower_and_strip_punctuation", "lower", "strip_punctuation", "none"]
Tokenize = Literal["whitespace", "character", "regex"]


def check_separator(tokenize: str, separator: str | None) -> None:
    """A `regex` tokenisation has a separator that compiles; the others have none. ValueError otherwise."""
    if tokenize != "regex":
        if separator is not None:
            raise ValueError(f"separator is the regular expression of `tokenize: regex`; tokenize is {tokenize}")
        return
    if separator is None:
        raise ValueError("tokenize: regex needs a `separator`, the regular expression between tokens (e.g. '[\\s,;]+')")
    try:
        re.compile(separator)
    except re.error as exc:
        raise ValueError(f"separator {separator!r} is not a regular expression: {exc}") from None


class TextData(SplitByFraction):
    """Texts and their labels: a CSV, TSV or JSON-lines file with a text column and a label column.

    Fields: `tokens` [max_length] int64, the token ids of each text (0 is
    padding, 1 a token out of the vocabulary; texts longer than max_length
    are cut to their first tokens); `length` [] int64, its number of tokens
    up to max_length (an lstm's or gru's sequence_length); `label` [] int64,
    class indices as the csv source makes them. Tokenisation and vocabulary
    are Keras's TextVectorization's: `standardize` (ASCII lower-casing, ASCII
    punctuation stripped), a split on ASCII whitespace (or each character,
    or a regular expression), tokens ordered by their count in the training
    split, ties broken by the token's UTF-8 bytes in reverse (as Keras sorts
    them). The vocabulary comes from the training split alone and is recorded
    in the run's preprocessing.json.

        data: {source: text, path: shipped:reviews.csv, max_length: 16}
        data: {source: text, path: reviews.jsonl, text: body, label: sentiment, max_tokens: 20000, max_length: 200}
    """

    source: Literal["text"]
    path: FilePath = Field(
        description="the file: .csv, .tsv, or .jsonl (one JSON object per line); shipped:reviews.csv is 3,000 generated reviews whose word order decides their label"
    )
    format: Literal["csv", "tsv", "jsonl"] | None = Field(default=None, description="default from the suffix: .tsv is tsv, .jsonl and .ndjson jsonl, others csv")
    text: str = Field(default="text", min_length=1, description="the column (JSON key) of the texts")
    label: str = Field(default="label", min_length=1, description="the column (JSON key) of the labels")
    classes: list[str] | None = Field(default=None, description="class names in index order, for labels that are names (default: the sorted distinct names)")
    standardize: Standardize = Field(
        default="lower_and_strip_punctuation", description="Keras's standardize: ASCII letters lower-cased, ASCII punctuation removed, both, or none"
    )
    tokenize: Tokenize = Field(default="whitespace", description="split on ASCII whitespace, into characters (Unicode code points), or on `separator`")
    separator: str | None = Field(default=None, description="tokenize: regex: the regular expression between tokens (empty tokens dropped)")
    max_tokens: int | None = Field(
        default=None, ge=3, le=layers.MAX_SIZE, description="the vocabulary's size counting padding and OOV, as Keras's; default: every token kept"
    )
    min_count: PositiveInt = Field(default=1, description="tokens seen fewer times in the training split are out of the vocabulary")
    max_length: PositiveInt = Field(description="tokens per text: shorter texts are padded with 0, longer ones cut")
    validation_path: FilePath | None = None
    test_path: FilePath | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.text == self.label:
            raise ValueError(f"the text and the label are both column {self.text!r}")
        if self.tokenize == "regex" and self.separator is None:
            check_separator(self.tokenize, self.separator)
        return self

    @field_validator("separator")
    @classmethod
    def _separator(cls, value, info):
        # here, not in _consistent, so that the error points at `separator:`
        check_separator(info.data.get("tokenize", "whitespace"), value)
        return value


class ImageFolderData(SplitByFraction):
    """PNG/JPEG images in one sub-folder per class (the folder name is the class name, sorted).

    Images stream through torch's DataLoader: decoded in `workers` processes,
    `prefetch_factor` batches ahead each. Fields: `image` [C, size[0], size[1]]
    float32 (resized; scaled to [0, 1], then `(x - mean) / std` per channel when
    given), `label` int64. A corrupt image stops the run naming the file, or
    is skipped with a warning when `skip_bad`.
    """

    source: Literal["image_folder"]
    directory: FilePath
    validation_directory: FilePath | None = None
    test_directory: FilePath | None = None
    size: Size2 = Field(description="[height, width] every image is resized to")
    color: Literal["grayscale", "rgb"] = "rgb"
    mean: list[float] | None = None
    std: list[Annotated[float, Field(gt=0.0)]] | None = None
    skip_bad: bool = False
    workers: NonNegativeInt = 0
    prefetch_factor: PositiveInt = 2
    worker_timeout: PositiveFloat = Field(default=300.0, description="seconds a worker may take for one batch before the run fails (never a hang)")

    @model_validator(mode="after")
    def _per_channel(self):
        channels = 1 if self.color == "grayscale" else 3
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != channels:
                raise ValueError(f"{name} needs one value per channel: {channels} for color {self.color}, got {len(value)}")
        return self


_SOURCES = (DigitsData, SyntheticData, KeyValueData, MnistData, FashionMnistData, IdxData, NpzData, NpyData, CsvData, TextData, ImageFolderData)
Data = Annotated[
    Union[_SOURCES],
    Field(discriminator="source"),
    Vocabulary("source", "data source", "the data section needs a `source:`", _choices(_SOURCES, "source")),
]


# --- training ----------------------------------------------------------------------



class EarlyStopping(Strict):
    """Stop when the validation `monitor` has not improved by `min_delta` for `patience` evaluations."""

    monitor: str = "loss"
    patience: PositiveInt = 5
    min_delta: NonNegativeFloat = 0.0
    mode: Literal["auto", "min", "max"] = Field(default="auto", description="auto: min for loss and errors, max otherwise")


class ReduceOnPlateau(Strict):
    """Multiply the learning rate by `factor` when the validation `monitor` has not improved for `patience` evaluations."""

    monitor: str = "loss"
    factor: float = Field(default=0.1, gt=0.0, lt=1.0)
    patience: PositiveInt = 3
    min_delta: NonNegativeFloat = 0.0
    min_learning_rate: NonNegativeFloat = 0.0
    mode: Literal["auto", "min", "max"] = "auto"


class CheckpointSettings(Strict):
    """When checkpoints are written and which are kept (TF's Saver: max_to_keep, keep_checkpoint_every_n_hours)."""

    every_steps: NonNegativeInt = Field(default=0, description="also write one every N steps (0: only after each validation and at the end)")
    keep: PositiveInt = Field(default=5, description="newest checkpoints kept")
    keep_every_steps: PositiveInt | None = Field(default=None, description="also keep one checkpoint per this many steps, forever")
    keep_every_hours: PositiveFloat | None = Field(default=None, description="also keep one checkpoint per this many hours, forever")
    best: str | None = Field(default=None, description="keep the checkpoint with the best value of this validation metric, e.g. accuracy")
    best_mode: Literal["auto", "min", "max"] = "auto"
    restore_best: bool = Field(
        default=False,
        description="end the run on the weights of the best checkpoint (Keras's restore_best_weights): the test figures and the run's model "
        "are those; needs `best`",
    )

    @model_validator(mode="after")
    def _best_to_restore(self):
        if self.restore_best and self.best is None:
            raise ValueError("restore_best needs `best`: the validation metric that picks the checkpoint, e.g. best: accuracy")
        return self


class SummarySettings(Strict):
    """TensorBoard cadence."""

    histogram_every: NonNegativeInt = Field(default=100, description="steps between weight and gradient histograms (0: never)")
    images: NonNegativeInt = Field(default=16, description="input images drawn as a grid at the start (0: none)")


class AucSettings(Strict):
    """tf.metrics.auc's discretisation of the curve, for the auc and pr_auc metrics."""

    num_thresholds: int = Field(default=200, ge=3, description="thresholds spread over [0, 1], the two end points included")
    summation_method: Literal["trapezoidal", "careful_interpolation", "minoring", "majoring"] = Field(
        default="trapezoidal", description="how the area between thresholds is summed; careful_interpolation is the better PR estimate"
    )


class Train(Strict):
    epochs: PositiveInt = 10
    steps: PositiveInt | None = Field(default=None, description="stop after this many steps in all (overrides epochs)")
    seed: Seed = 0
    device: Literal["auto"] | Device = "auto"
    log_every: PositiveInt = Field(default=10, description="steps between logged training loss")
    validate_every: NonNegativeInt = Field(default=0, description="steps between validations (0: after each epoch)")
    metrics: list[MetricName] | None = Field(default=None, description="default: accuracy when the labels are class indices")
    top_k: PositiveInt = Field(default=5, description="k of top_k_accuracy; below the number of classes")
    threshold: float = Field(default=0.5, description="probability above which a multi-label output counts as on")
    average: Literal["auto", "macro", "micro", "weighted"] = Field(
        default="auto",
        description="how precision, recall and f1 combine classes or labels: macro (mean of the per-class values), micro (from the pooled "
        "counts), weighted (mean weighted by each class's true count); auto: macro for class indices, micro for multi-label outputs",
    )
    auc: AucSettings = AucSettings()
    early_stopping: EarlyStopping | None = None
    reduce_on_plateau: ReduceOnPlateau | None = None
    checkpoints: CheckpointSettings = CheckpointSettings()
    summaries: SummarySettings = SummarySettings()
    memory_format: Literal["auto", "channels_first", "channels_last"] = Field(
        default="auto",
        description="physical layout of 4-D tensors in training (the logical layout stays N, C, H, W); auto: channels_last for image models",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32", description="autocast precision of the training step; weights and checkpoints stay float32 (fp16: CUDA only)"
    )
    sync_batchnorm: bool = Field(
        default=False, description="with several processes, batch normalization uses the statistics of the whole global batch"
    )
    compile: bool = Field(
        default=False,
        description="compile the training step's forward with torch.compile (slower than eager on small CPU models: measure first)",
    )


class Spec(Strict):
    """A tfn experiment: the model graph, the loss, the optimizer, the data and the training settings."""

    version: Literal[1]
    name: Name
    model: Model
    loss: Losses
    optimizer: Optimizer = Adam(type="adam")
    data: Data
    train: Train = Train()


def _names_paths(annotation) -> bool:
    if typing.get_origin(annotation) is Annotated:
        return PATH in typing.get_args(annotation)[1:] or _names_paths(typing.get_args(annotation)[0])
    return any(_names_paths(arg) for arg in typing.get_args(annotation))


def with_absolute_paths(model: BaseModel, base: Path) -> BaseModel:
    """A copy of `model` whose file and directory fields are absolute, resolved against `base`.

    A run's resolved spec.yaml carries these, so `--resume` and `tfn eval`
    find the data from any working directory.
    """
    updates: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None or not (PATH in field.metadata or _names_paths(field.annotation)):
            continue
        if isinstance(value, str):
            updates[name] = _absolute(value, base)
        elif isinstance(value, dict):
            updates[name] = {key: _absolute(path, base) for key, path in value.items()}
    return model.model_copy(update=updates)


def _absolute(path: str, base: Path) -> str:
    return path if path.startswith(SHIPPED) else str(base / path)


def resolved(spec: Spec, base: Path) -> dict:
    """The spec as a run records it in spec.yaml: every default filled in, file paths absolute against `base`."""
    return spec.model_copy(update={"data": with_absolute_paths(spec.data, base)}).model_dump(mode="json", exclude_none=True)


def json_schema() -> dict:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tfn spec"
    return schema
