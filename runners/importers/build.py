"""Framework-neutral import: foreign layers in, tfn nodes with weights out.

A reader (keras.py, tensorflow.py, onnx.py) turns a file into a sequence of
:class:`Layer` (one Keras layer call, TF op or ONNX node, in topological
order) and feeds them to a :class:`Builder`. The builder finds each one's
rule through the ops' ``imports`` (layers/imports.py), converts it, checks
the result against the op's own shape rule and variables, and keeps the
tfn node, its weights and a record of what became what. Whatever cannot be
mapped is collected, each with its name, kind and place, and raised at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from pydantic import ValidationError

from tfn import layers
from tfn.layers import OpError, TensorType
from tfn.layers import imports as im
from tfn.specs.errors import UserError


@dataclass
class Layer:
    """One foreign layer (Keras), op (TF) or node (ONNX), as a reader hands it over."""

    name: str  # the source's name
    kind: str  # Keras class name / activation / TF op type / ONNX op type
    framework: str  # a framework of layers/imports.py
    attrs: dict
    inputs: list[str]  # the source's tensors it reads (data only)
    outputs: list[str]  # the source's tensors it makes
    weights: list = field(default_factory=list)
    scope: str = ""  # the tfn scope it goes into
    node: str | None = None  # the tfn node name (default: the source name, made a valid name)
    share: str | None = None  # a tfn node (full name) whose variables this one reuses
    where: str = ""  # where it sits in the source, for messages
    folded: list[str] = field(default_factory=list)  # source nodes folded into it (a fused BiasAdd)
    sources: tuple[str, ...] = ()  # TF / ONNX: each source input "data", "constant" or "" (see layers/imports.py)


@dataclass(frozen=True)
class Unmapped:
    """A foreign layer tfn cannot express, and why."""

    name: str
    kind: str
    where: str
    reason: str

    def __str__(self) -> str:
        place = f" ({self.where})" if self.where else ""
        return f"{self.kind} {self.name!r}{place}: {self.reason}"


class ImportFailed(UserError):
    """The file holds layers or ops that have no tfn mapping (each listed), or cannot be read."""


def unmappable_error(source: str, builder: Builder) -> ImportFailed:
    """The error that lists every layer the builder could not map; it carries the builder's rows for --list."""
    problems = builder.problems
    lines = [f"{source}: error: {len(problems)} layer(s) or op(s) cannot be imported:"]
    lines += [f"  {p}" for p in problems]
    lines.append("`tfn import --list` shows how each one maps; `tfn layers` lists the ops tfn has")
    error = ImportFailed("\n".join(lines))
    error.rows = builder.rows
    return error


@dataclass
class Tensor:
    ref: str  # a tfn node output or model input
    type: TensorType
    order: tuple | None = None  # see layers/imports.py: features flattened from a features-last tensor


@dataclass
class Node:
    name: str  # full name, scopes included
    scope: str
    op: str
    attrs: dict
    inputs: list[str]  # full refs
    share: str | None = None


#: why some kinds can never have a mapping
NO_OP = {
    "Lambda": "a Lambda layer holds Python code, which is not in the file's data (and tfn never runs code from a file)",
    "TFOpLambda": "a TensorFlow function called on Keras tensors, saved as Python code",
}

_NAME = re.compile(r"[^A-Za-z0-9_\-]")


def valid_name(text: str) -> str:
    """A node name close to `text`: letters, digits, `_` and `-`, not starting with a digit or `-`
    (no `.`: variable names become torch parameter names, which cannot hold one)."""
    name = _NAME.sub("_", text).strip("_") or "node"
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


class Builder:
    """Collects tfn nodes and weights from foreign layers, tracking each tensor's type and layout."""

    def __init__(self, framework: str, channels_last: bool, input_layout: str = "nchw"):
        self.framework = framework
        self.channels_last = channels_last
        #: nhwc: features-last inputs stay so, a transpose node after each makes them channels-first
        self.keep_input_layout = input_layout == "nhwc" and channels_last
        self.tensors: dict[str, Tensor] = {}
        self.inputs: dict[str, TensorType] = {}
        self.source_inputs: dict[str, str] = {}  # tfn input -> the source's name of it
        self.nodes: list[Node] = []
        self.weights: dict[str, dict[str, np.ndarray]] = {}
        self.records: list[dict] = []
        self.problems: list[Unmapped] = []
        self.taken: set[str] = set()
        #: every foreign layer in order, mapped or not: what `tfn import --list` prints
        self.rows: list[dict] = []

    # --- names -------------------------------------------------------------------

    def unique(self, scope: str, name: str) -> str:
        base = f"{scope}/{valid_name(name)}" if scope else valid_name(name)
        full, k = base, 0
        while full in self.taken or any(t.startswith(full + "/") for t in self.taken):
            k += 1
            full = f"{base}_{k}"
        self.taken.add(full)
        return full

    def place(self, full: str) -> tuple[str, str]:
        """(scope, node name) for a source name with `/` scopes (`block/conv/Relu6`).

        Nodes and scopes share one namespace: a scope that is already a node's
        name (`block/conv`) moves the rest into the node's name (`block` and
        `conv_Relu6`).
        """
        parts = [valid_name(p) for p in full.split("/") if p]
        nodes = {n.name for n in self.nodes}  # a scope may share an input's name (siamese's `left`)
        cut = len(parts) - 1
        while cut > 0 and any("/".join(parts[:k]) in nodes for k in range(1, cut + 1)):
            cut -= 1
        return "/".join(parts[:cut]), "_".join(parts[cut:])

    # --- building ----------------------------------------------------------------

    def add_input(self, tensor: str, name: str, type_: TensorType) -> str:
        """A model input of `type_` (tfn's layout); with --input-layout nhwc declared features-last, then transposed."""
        full = self.unique("", name)
        declared = type_
        if self.keep_input_layout and type_.rank > 2:
            declared = TensorType((None, *type_.shape[2:], type_.shape[1]), type_.dtype)
        self.inputs[full] = declared
        self.source_inputs[full] = name
        self.tensors[tensor] = Tensor(full, declared)
        self.rows.append({"source": name, "kind": "input", "where": "", "op": None, "node": full, "reason": f"model input {declared}"})
        if declared is not type_:
            layout = Layer(name, "channels_first", "keras", {}, [tensor], [tensor], node=f"{full}_channels_first", where="--input-layout nhwc")
            self.add(layout, im.channels_first_input(type_.rank))
        return full

    def fail(self, layer: Layer, reason: str) -> None:
        self.unmapped(Unmapped(layer.name, layer.kind, layer.where, reason))

    def unmapped(self, problem: Unmapped) -> None:
        self.problems.append(problem)
        self.rows.append({"source": problem.name, "kind": problem.kind, "where": problem.where, "op": None, "node": None, "reason": problem.reason})

    def alias(self, tensor: str, source: str) -> None:
        """`tensor` is `source` under another name (Identity, a Keras InputLayer of a nested model)."""
        if source in self.tensors:
            self.tensors[tensor] = self.tensors[source]

    def add(self, layer: Layer, rule: tuple[str, im.Rule] | None = None) -> Node | None:
        """Convert one layer (by its kind's rule, or `rule`): the node that carries its variables (its first
        node when it has none); None (after recording the problem) when it cannot be mapped."""
        table = im.rules(layer.framework) if rule is None else {layer.kind: rule}
        if layer.kind not in table:
            self.fail(layer, NO_OP.get(layer.kind, "tfn has no op it maps to"))
            return None
        if not layer.inputs:
            self.fail(layer, "every input is a constant: arithmetic on constants that the importer does not evaluate")
            return None
        if any(t not in self.tensors for t in layer.inputs):  # an input failed: reported there
            self.rows.append({"source": layer.name, "kind": layer.kind, "where": layer.where, "op": None, "node": None, "reason": "not converted: an input could not be"})
            return None
        ins = [self.tensors[t] for t in layer.inputs]
        op_name, rule = table[layer.kind]
        foreign = im.Foreign(
            layer.framework,
            layer.kind,
            layer.name,
            layer.attrs,
            tuple(t.type for t in ins),
            tuple(layer.weights),
            self.channels_last,
            tuple(t.order for t in ins),
            sources=tuple(layer.sources),
        )
        try:
            emitted = rule.convert(foreign)
        except im.NoMapping as exc:
            self.fail(layer, str(exc))
            return None
        unread = [i for i, t in enumerate(ins) if t.order is not None and i not in foreign.read_orders]
        if unread:
            self.fail(layer, "its input was flattened from a features-last tensor, and tfn's op would see the features in another order")
            return None
        if emitted.inputs is not None:
            ins = [ins[i] for i in emitted.inputs]
        steps = [(layers.get(emitted.op or op_name), emitted)] + [(layers.get(e.op), e) for e in emitted.then]
        # the step that carries the variables takes the layer's name (a dense between two transposes is `q`)
        main = next((k for k, (_, step) in enumerate(steps) if step.variables), 0)
        planned = []
        in_types = [t.type for t in ins]
        for k, (op, step) in enumerate(steps):
            checked = self.check(layer, op, step, in_types, with_variables=k == main)
            if checked is None:
                return None
            planned.append(checked)
            in_types = [checked[2][0]]
        if len(layer.outputs) > len(planned[-1][2]):
            self.fail(layer, f"its output {len(planned[-1][2])} is read, and tfn's {steps[-1][0].name} makes {len(planned[-1][2])} output(s)")
            return None
        refs, made = [t.ref for t in ins], None
        name = self.unique(layer.scope, layer.node or layer.name)
        for k, ((op, step), (params, attrs, outputs)) in enumerate(zip(steps, planned)):
            full = name if k == main else self.unique(layer.scope, f"{name.rsplit('/', 1)[-1]}_{op.name}")
            node = Node(full, layer.scope, op.name, attrs, refs, layer.share if k == main else None)
            self.nodes.append(node)
            made = node if k == main else made
            if k == main and layer.share is None and step.variables:
                self.weights[full] = {role: np.array(v, dtype=np.float32) for role, v in step.variables.items()}  # a writable copy
            record = {"source": layer.name, "kind": layer.kind, "node": full, "op": op.name}
            record |= ({"folded": layer.folded} if layer.folded and k == main else {}) | ({"shares": layer.share} if layer.share and k == main else {})
            self.records.append(record)
            self.rows.append({"source": layer.name, "kind": layer.kind, "where": layer.where, "op": op.name, "node": full, "reason": ""})
            refs = [full]
        last = steps[-1][1]
        for i, tensor in enumerate(layer.outputs):
            self.tensors[tensor] = Tensor(refs[0] if i == 0 else f"{refs[0]}:{i}", planned[-1][2][i], last.feature_order)
        return made

    def check(self, layer: Layer, op, emitted: im.Emitted, in_types: list[TensorType], with_variables: bool):
        """(params, attrs as written, output types) when the op takes these attributes, inputs and weights; else None."""
        try:
            params = op.Params.model_validate(_plain(emitted.attrs))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            self.fail(layer, f"tfn's {op.name} refuses {where}: {error['msg']}")
            return None
        try:
            outputs = op.infer(params, in_types)
            expected = {v.role: tuple(v.shape) for v in op.variables(params, in_types)}
        except OpError as exc:
            self.fail(layer, f"as tfn's {op.name}: {exc}")
            return None
        given = {role: tuple(np.shape(v)) for role, v in emitted.variables.items()}
        if with_variables and layer.share is None and given != expected:
            self.fail(layer, f"weights {given} do not fit tfn's {op.name}, which needs {expected}")
            return None
        dumped = params.model_dump(mode="json")
        return params, {k: dumped[k] for k in emitted.attrs if k in dumped}, outputs


def _plain(value):
    """NumPy scalars and tuples as the plain Python values the op schemas take (strict)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
