"""How layers of other frameworks become tfn ops (`tfn import`).

Each op class lists its mappings in ``imports``: one :class:`Rule` per Keras
layer class, Keras activation name, TensorFlow op type or ONNX op type that
becomes this op. A rule's ``convert`` gets the foreign layer as a
:class:`Foreign` (its attributes, its weights, the tfn types of its inputs
and their layout) and returns an :class:`Emitted`: the tfn attributes and the
variables by role, in tfn's layouts; or it raises :class:`NoMapping` with the
reason (an attribute tfn has no counterpart for). The importers in
runners/importers/ read files and dispatch through :func:`rules`; nothing
outside layers/ names an op.

Layouts: Keras and TensorFlow hold rank >= 3 tensors features-last (NHWC,
NTF); tfn holds them channels-first. ``Foreign.channels_last`` says the source
does, and :meth:`Foreign.axis` converts an axis. A rank-2 tensor made by
flattening a features-last tensor carries ``feature_order``: for each tfn
feature, the index of the same value in the source's flattened order; an op
that mixes features (dense) permutes its weights by it.

No torch here; NumPy is imported by the converters when they run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tfn.layers.base import TensorType, UserError, all_ops

if TYPE_CHECKING:
    import numpy as np

#: the frameworks rules are written for; keras_activation names Keras's activation functions
#: (`activation="relu"` on a layer, or an Activation layer), keras_loss the losses of a compiled model
FRAMEWORKS = ("keras", "keras_activation", "keras_loss", "tf", "onnx")


_MISSING = object()


class NoMapping(UserError):
    """This foreign layer has no tfn counterpart (with the reason, e.g. the attribute at fault).

    The importer collects these and reports every one with its layer's name and place."""


@dataclass(frozen=True)
class Foreign:
    """One foreign layer or op, as an importer hands it to a rule."""

    framework: str
    kind: str  # Keras class name, activation name, TF op type or ONNX op type
    name: str
    attrs: dict  # Keras config / TF or ONNX attributes, as plain Python values
    inputs: tuple[TensorType, ...]  # tfn types (channels-first) of the data inputs
    weights: tuple = ()  # Keras: the layer's weights in Keras's order; TF / ONNX: constant inputs, in input order
    channels_last: bool = False  # the source holds rank >= 3 tensors features-last
    feature_orders: tuple = ()  # per input: None, or the source index of each tfn feature (see the module doc)
    #: inputs whose feature order the rule read: an order nobody read means the rule cannot honour it
    read_orders: set = field(default_factory=set, compare=False, repr=False)
    #: TF / ONNX: each input of the source op in order, "data" (computed: in `inputs`), "constant" (in `weights`)
    #: or "" (an optional input left out); empty when the reader does not say (Keras)
    sources: tuple[str, ...] = ()

    def attr(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.attrs:
            return self.attrs[key]
        if default is _MISSING:
            raise NoMapping(f"attribute {key!r} is missing")
        return default

    def weight(self, index: int) -> np.ndarray:
        if index >= len(self.weights):
            raise NoMapping(f"expected at least {index + 1} weight(s), found {len(self.weights)}")
        return self.weights[index]

    def constant(self, position: int) -> np.ndarray | None:
        """The value of the source op's input `position` when it is a constant; None when computed or left out."""
        if position >= len(self.sources) or self.sources[position] != "constant":
            return None
        return self.weights[self.sources[:position].count("constant")]

    def order(self, index: int = 0) -> tuple[int, ...] | None:
        """Input `index`'s feature order (None: the same as the source's); reading it says the rule honours it."""
        self.read_orders.add(index)
        return self.feature_orders[index] if index < len(self.feature_orders) else None

    @property
    def rank(self) -> int:
        return self.inputs[0].rank

    def axis(self, axis: int, rank: int | None = None) -> int:
        """The tfn axis of the source's `axis` of an input of `rank` (default: input 0's)."""
        rank = self.rank if rank is None else rank
        if not -rank <= axis < rank:
            raise NoMapping(f"axis {axis} is out of range for a rank-{rank} input")
        axis %= rank
        if not self.channels_last or rank <= 2 or axis == 0:
            return axis
        return 1 if axis == rank - 1 else axis + 1

    def require(self, condition: bool, reason: str) -> None:
        if not condition:
            raise NoMapping(reason)

    def spatial_sizes(self, value, spatial: int, what: str) -> list[int]:
        """A Keras/TF size given as an int or a list/tuple of `spatial` ints."""
        values = [value] * spatial if isinstance(value, int) else list(value)
        self.require(len(values) == spatial and all(isinstance(v, int) for v in values), f"{what} {value!r} is not {spatial} int(s)")
        return values


@dataclass(frozen=True)
class Emitted:
    """What a rule makes of a foreign layer: tfn attributes and variables by role.

    ``op`` replaces the rule owner's op when one foreign kind maps to two
    ops (Keras's ReLU layer with max_value 6 is relu6). ``feature_order``
    is the output's, for ops that flatten a features-last tensor or keep the
    order of their input's features (element-wise ops).
    """

    attrs: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    op: str | None = None
    feature_order: tuple | None = None
    #: a loss (keras_loss): the op whose input is the logits, when Keras's loss takes its output
    #: (probabilities after a softmax or sigmoid) rather than logits
    logits_before: str | None = None
    #: further nodes after this one, each with its `op` (no variables): a reshape to a features-last
    #: shape is a reshape, then a transpose to channels-first
    then: tuple = ()
    #: the order in which the first node takes the foreign layer's inputs (None: as given); a features-last
    #: batched matmul is the product of its inputs' transposes, b^T a^T
    inputs: tuple[int, ...] | None = None


def chain(steps: Sequence[Emitted]) -> Emitted:
    """One Emitted of several nodes in a row: the first step with the others as its `then` (none: an identity)."""
    if not steps:
        return Emitted(op="identity")
    head, *rest = steps
    return replace(head, then=tuple(rest))


def keep_attributes(foreign: Foreign) -> Emitted:
    """The rule of ops without attributes or weights that act on each element (activations)."""
    return Emitted(feature_order=same_order(foreign))


def same_order(foreign: Foreign) -> tuple[int, ...] | None:
    """The feature order of an op whose output lines up with its inputs element by element.

    Several inputs must share one order; else there is no mapping.
    """
    orders = {foreign.order(i) for i in range(len(foreign.inputs))}
    foreign.require(len(orders) <= 1, "its inputs were flattened in different orders")
    return next(iter(orders), None)


@dataclass(frozen=True)
class Rule:
    """One foreign kind that becomes the op that lists this rule.

    ``note`` is a few words for the mapping table (`+ BiasAdd`, `max_value 6`).
    ``fuses`` (TF and ONNX) names an op type that may follow this one and is
    folded into it when its other input is a constant: the importer passes
    that constant as an extra weight (`BiasAdd` after `Conv2D` is the conv's
    bias).
    """

    framework: str
    kind: str
    convert: Callable[[Foreign], Emitted] = keep_attributes
    note: str = ""
    fuses: tuple[str, ...] = ()

    def __post_init__(self):
        if self.framework not in FRAMEWORKS:
            raise ValueError(f"unknown framework {self.framework!r}; one of {FRAMEWORKS}")


def keras(kind: str, convert: Callable[[Foreign], Emitted] = keep_attributes, note: str = "") -> Rule:
    return Rule("keras", kind, convert, note)


def keras_activation(name: str, convert: Callable[[Foreign], Emitted] = keep_attributes, note: str = "") -> Rule:
    return Rule("keras_activation", name, convert, note)


def keras_loss(name: str, convert: Callable[[Foreign], Emitted] = keep_attributes, note: str = "") -> Rule:
    return Rule("keras_loss", name, convert, note)


def tf(kind: str, convert: Callable[[Foreign], Emitted] = keep_attributes, note: str = "", fuses: Sequence[str] = ()) -> Rule:
    return Rule("tf", kind, convert, note, tuple(fuses))


def onnx(kind: str, convert: Callable[[Foreign], Emitted] = keep_attributes, note: str = "", fuses: Sequence[str] = ()) -> Rule:
    return Rule("onnx", kind, convert, note, tuple(fuses))


def rules(framework: str) -> dict[str, tuple[str, Rule]]:
    """{foreign kind: (tfn op name, rule)} for one framework, from every op's ``imports``.

    A kind claimed by two ops is a programming error, raised here.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; one of {FRAMEWORKS}")
    found: dict[str, tuple[str, Rule]] = {}
    for name, op in all_ops().items():
        for rule in op.imports:
            if rule.framework != framework:
                continue
            if rule.kind in found:
                raise RuntimeError(f"{framework} {rule.kind!r} is mapped by both {found[rule.kind][0]} and {name}")
            found[rule.kind] = (name, rule)
    return dict(sorted(found.items()))


def carries_variables(op: str) -> bool:
    """Whether tfn op `op` may have variables (its class defines them): a reader names such a node after its
    weights and shares them between the nodes that read the same ones."""
    from tfn.layers.base import Op, get

    return type(get(op)).variables is not Op.variables


# --- conversions shared by the ops' rules -------------------------------------


def to_channels_first(rank: int) -> list[int]:
    """The transpose perm that puts a features-last tensor's last axis at 1 ([0, 3, 1, 2] for NHWC)."""
    return [0, rank - 1, *range(1, rank - 1)]


def source_order(f: Foreign, rank: int | None = None) -> list[int]:
    """For each axis of the source's tensor, in the source's order, the tfn axis that holds it."""
    rank = f.rank if rank is None else rank
    return [f.axis(a, rank) for a in range(rank)]


def tfn_order(f: Foreign, source: Sequence) -> list:
    """The axes of a source tensor (listed in the source's order) in tfn's order: a features-last tensor of
    rank >= 3 has its last axis at 1."""
    source = list(source)
    if f.channels_last and len(source) >= 3:
        return [source[0], source[-1], *source[1:-1]]
    return source


def regroup(f: Foreign, source_out: Sequence, insert: Callable[[int], Emitted] | None = None) -> list[Emitted]:
    """The nodes that give, from input 0 in tfn's layout, the tfn layout of a source result of the same elements
    whose axes are `source_out` (in the source's order): tfn axes of the input (see :func:`source_order`; an absent
    one was squeezed away) and markers (any other value) for new size-1 axes.

    Squeeze first, then a new axis per marker (`insert(position)`, expand_dims by default), then a transpose
    where the source's layout change leaves the axes in another order: squeezing the channels of an NHWC
    [N, H, W, 1] leaves a features-last [N, H, W], which tfn holds as [N, W, H].
    """
    target = tfn_order(f, source_out)
    f.require(bool(target) and target[0] == 0, "an op that moves the batch axis")
    labels: list = list(range(f.rank))
    steps = []
    dropped = [a for a in labels if a not in target]
    if dropped:
        steps.append(Emitted({"axis": dropped}, op="squeeze"))
        labels = [a for a in labels if a not in dropped]
    in_place = [a for a in target if isinstance(a, int)] == labels
    for marker in [a for a in target if not isinstance(a, int)]:
        position = target.index(marker) if in_place else len(labels)
        steps.append(insert(position) if insert else Emitted({"axis": position}, op="expand_dims"))
        labels.insert(position, marker)
    if labels != target:
        steps.append(Emitted({"perm": [labels.index(a) for a in target]}, op="transpose"))
    return steps


def channels_first_input(rank: int) -> tuple[str, Rule]:
    """The op and rule that turn a features-last model input into tfn's layout (`tfn import --input-layout nhwc`)."""
    return "transpose", Rule("keras", "channels_first", lambda foreign: Emitted({"perm": to_channels_first(rank)}))


def tfn_perm(source: Sequence[int], rank: int) -> list[int]:
    """A features-last source's transpose (batch included) as the transpose of the tensors in tfn's layout.

    tfn's tensors are the source's with the last axis moved to 1, before and
    after: out = transpose(in, m^-1 . source . m) with m = to_channels_first.
    """
    if rank <= 2:
        return list(source)
    m = to_channels_first(rank)
    inverse = [m.index(i) for i in range(rank)]
    return [inverse[source[m[i]]] for i in range(rank)]


def channels_first_kernel(kernel: np.ndarray) -> np.ndarray:
    """A TF convolution kernel [*spatial, in, out] (HWIO) in tfn's layout [out, in, *spatial] (OIHW).

    The same transpose turns a transposed convolution's [*spatial, out, in]
    into tfn's [in, out, *spatial].
    """
    rank = kernel.ndim
    return kernel.transpose(rank - 1, rank - 2, *range(rank - 2)).copy()


def depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """TF's depthwise filter [kh, kw, C, multiplier] as tfn's [C * multiplier, 1, kh, kw] (channel c*multiplier + q)."""
    kh, kw, channels, multiplier = kernel.shape
    return kernel.reshape(kh, kw, channels * multiplier).transpose(2, 0, 1)[:, None].copy()


def dense_kernel(kernel: np.ndarray, feature_order: Sequence[int] | None) -> np.ndarray:
    """A TF dense kernel [in, out] as tfn's [out, in], its rows first put in tfn's feature order."""
    import numpy as np

    if feature_order is not None:
        kernel = kernel[np.asarray(feature_order)]
    return kernel.T.copy()


def flattened_order(sample_shape: Sequence[int]) -> tuple[int, ...]:
    """For a tfn sample [C, *spatial]: the index, in the source's features-last flattened order
    ([*spatial, C]), of each element of tfn's flattened order."""
    import numpy as np

    channels, spatial = sample_shape[0], tuple(sample_shape[1:])
    source = np.arange(channels * int(np.prod(spatial, dtype=np.int64))).reshape(*spatial, channels)
    return tuple(int(i) for i in np.moveaxis(source, -1, 0).reshape(-1))


def from_tf_layout(role: str, value: np.ndarray) -> np.ndarray:
    """A TF 1.x variable (tf.layers' layouts) in tfn's layout, by its role: kernels [in, out] and
    [*spatial, in, out] (a transposed conv's [*spatial, out, in] alike) and depthwise filters
    [kh, kw, C, multiplier]; every other role (bias, gamma, moving statistics, ...) as it is."""
    if role == "depthwise_kernel" and value.ndim == 4:
        return depthwise_kernel(value)
    if role in ("kernel", "pointwise_kernel") and value.ndim >= 3:
        return channels_first_kernel(value)
    if role == "kernel" and value.ndim == 2:
        return value.T.copy()
    return value


def padding_mode(foreign: Foreign, key: str = "padding") -> str:
    """Keras's `same`/`valid` (TF's SAME/VALID) as tfn's padding; anything else has no mapping."""
    value = str(foreign.attr(key, "valid")).upper()
    foreign.require(value in ("SAME", "VALID"), f"{key} {foreign.attr(key)!r}: tfn has SAME and VALID padding")
    return value


def channels_last_only(foreign: Foreign) -> None:
    """Keras layers in the default data_format; channels_first layers have no mapping (yet)."""
    fmt = foreign.attr("data_format", "channels_last") or "channels_last"
    foreign.require(fmt == "channels_last", f"data_format {fmt!r}: tfn imports channels_last Keras layers")


# --- Keras's sequence layers (the rules of embedding, lstm and gru, layers/sequence.py) ---
# Keras's variable layouts, gate orders i, f, c, o and z, r, h, GRU's reset_after two-row bias.


def keras_embedding(f: Foreign) -> Emitted:
    """Keras Embedding: the table as it is; mask_zero's implicit mask has no tfn edge yet."""
    f.require(not f.attr("mask_zero", False), "mask_zero: Keras passes the mask implicitly; wire tfn's lengths (embedding:1) into the recurrent layer by hand")
    attrs = {"input_dim": int(f.attr("input_dim")), "output_dim": int(f.attr("output_dim"))}
    return Emitted(attrs, {"embeddings": f.weight(0)})


def _keras_recurrent(f: Foreign, gates: int, config: dict, weights: list, prefix: str) -> tuple[dict, dict]:
    activation = str(config.get("activation", "tanh"))
    recurrent = str(config.get("recurrent_activation", "sigmoid"))
    f.require(activation == "tanh" and recurrent == "sigmoid", f"activation {activation} / recurrent_activation {recurrent}: tfn's cells use tanh and sigmoid")
    f.require(bool(config.get("use_bias", True)), "use_bias false: tfn's recurrent ops have a bias")
    f.require(not config.get("return_state", False), "return_state: the importer passes one output per layer")
    f.require(not config.get("stateful", False), "stateful: tfn's recurrent ops start from zeros each batch")
    kernel, recurrent_kernel, bias = weights
    variables = {f"{prefix}kernel": kernel.T, f"{prefix}recurrent_kernel": recurrent_kernel.T, f"{prefix}bias": bias}
    attrs = {"units": int(config["units"]), "return_sequences": bool(config.get("return_sequences", False)), "go_backwards": bool(config.get("go_backwards", False))}
    if gates == 3:
        attrs["reset_after"] = bool(config.get("reset_after", True))
    return attrs, variables


def keras_recurrent(f: Foreign) -> Emitted:
    """Keras LSTM / GRU: kernels [in, gates*u] transposed; Keras's gate order is tfn's (i, f, c, o; z, r, h)."""
    gates = 4 if f.kind == "LSTM" else 3
    attrs, variables = _keras_recurrent(f, gates, f.attrs, list(f.weights), "")
    return Emitted(attrs, variables)


def keras_bidirectional(f: Foreign) -> Emitted:
    """Keras Bidirectional(LSTM/GRU): both directions' weights (forward first), merged by concat or sum."""
    inner = f.attr("layer")
    kind = inner.get("class_name")
    f.require(kind in ("LSTM", "GRU"), f"a Bidirectional {kind}: tfn's bidirectional ops are lstm and gru")
    mode = f.attr("merge_mode", "concat")
    f.require(mode in ("concat", "sum"), f"merge_mode {mode}: tfn merges by concat or sum")
    gates = 4 if kind == "LSTM" else 3
    config = inner.get("config", {})
    f.require(len(f.weights) == 6, f"expected 6 weights (two directions), found {len(f.weights)}")
    attrs, forward = _keras_recurrent(f, gates, config, list(f.weights[:3]), "forward/")
    _, backward = _keras_recurrent(f, gates, config, list(f.weights[3:]), "backward/")
    return Emitted({**attrs, "bidirectional": mode}, forward | backward, op="lstm" if kind == "LSTM" else "gru")


def onnx_lstm(f: Foreign) -> Emitted:
    """ONNX LSTM (forward, default activations, zero initial states, no peepholes), its X a Transpose [2, 0, 1]
    of a sequence [N, F, T] and its outputs read through Squeezes, as tfn's export writes an lstm (the importer
    passes that layout through: `tfn_layout`): a keras-convention lstm, ONNX's gate blocks i, o, f, c reordered
    to i, f, c, o, its two biases added; sequence_lens (computed) is the lstm's lengths input."""
    import numpy as np

    f.require(bool(f.attrs.get("tfn_layout")), "X is not a Transpose [2, 0, 1] of a sequence [N, F, T] with its outputs read through Squeezes (tfn's lstm takes [N, F, T])")
    f.require(f.attr("direction", "forward") == "forward", f"direction {f.attr('direction', 'forward')}: the importer maps forward LSTMs")
    activations = f.attr("activations", ["Sigmoid", "Tanh", "Tanh"])
    f.require(list(activations) == ["Sigmoid", "Tanh", "Tanh"], f"activations {activations}: tfn's lstm uses sigmoid and tanh")
    f.require("clip" not in f.attrs and not f.attr("input_forget", 0) and not f.attr("layout", 0), "clip, input_forget or layout 1: tfn's lstm has none")
    sources = f.sources + ("",) * (8 - len(f.sources))
    f.require(all(s == "constant" for s in sources[1:3]) and sources[3] in ("constant", ""), "W, R and B are not constants")
    f.require(sources[4] in ("data", "") and not any(sources[5:]), "initial states, peepholes or constant sequence_lens: tfn's lstm starts from zeros")
    w, r = f.constant(1)[0], f.constant(2)[0]
    u = int(f.attr("hidden_size", r.shape[-1]))
    b = f.constant(3)[0] if sources[3] else np.zeros(8 * u, w.dtype)
    f.require(w.shape[0] == 4 * u and r.shape == (4 * u, u) and b.shape == (8 * u,), f"W {w.shape}, R {r.shape}, B {b.shape} do not fit hidden_size {u}")

    def keras_order(t):
        return np.concatenate([t[k * u : (k + 1) * u] for k in (0, 2, 3, 1)])  # i, o, f, c -> i, f, c, o

    read = f.attr("tfn_outputs_read")
    attrs = {"units": u, "return_sequences": bool(read[0]), "return_state": bool(read[2] or read[0] and read[1])}
    return Emitted(attrs, {"kernel": keras_order(w), "recurrent_kernel": keras_order(r), "bias": keras_order(b[: 4 * u] + b[4 * u :])})


# --- the mapping table (docs/import.md) ------------------------------------------

_COLUMNS = (("keras", "Keras layer"), ("keras_activation", "Keras activation"), ("keras_loss", "Keras loss"), ("tf", "TensorFlow op"), ("onnx", "ONNX op"))


def mapping_table() -> str:
    """The Markdown table of every op's import rules: one row per tfn op that has any, one column per framework."""
    rows = []
    for name, op in all_ops().items():
        if not op.imports:
            continue
        cells = []
        for framework, _ in _COLUMNS:
            kinds = [f"`{r.kind}`" + (f" ({r.note})" if r.note else "") for r in op.imports if r.framework == framework]
            cells.append(", ".join(kinds) or "")
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
    header = "| tfn op | " + " | ".join(title for _, title in _COLUMNS) + " |"
    return "\n".join([header, "|" + "---|" * (len(_COLUMNS) + 1), *rows]) + "\n"
