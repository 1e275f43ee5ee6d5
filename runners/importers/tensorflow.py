"""TensorFlow graphs: a frozen GraphDef (.pb), or a TF 1.x checkpoint with its MetaGraphDef (.meta).

Read with the protobuf classes TensorBoard ships; no TensorFlow. The part of
the graph the outputs need is mapped op by op through the ops' TF rules
(layers/imports.py). Constants and variables become weights: a frozen
graph's Const nodes, a checkpoint's tensors by variable name (bundle.py).
Identity-like ops (Identity, ReadVariableOp, StopGradient, Snapshot) pass
their input through. A BiasAdd after a Conv2D / MatMul / depthwise or
transposed convolution is folded into it (the rule's `fuses`). A node is
named after its variables' scope (`conv1/Conv2D` with kernel `conv1/kernel`
becomes node `conv1`), so tfn's variable names are TF's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfn.layers import TensorType
from tfn.layers import imports as im
from tfn.runners.importers import patterns
from tfn.runners.importers.build import Builder, ImportFailed, Layer, Unmapped, unmappable_error, valid_name
from tfn.runners.importers.directory import Imported, default_losses

PASS_THROUGH = ("Identity", "ReadVariableOp", "StopGradient", "Snapshot", "PreventGradient")


def _elementwise(function):
    return lambda attrs, *values: function(*values)


def _cast(attrs: dict, x: np.ndarray) -> np.ndarray:
    from tfn.layers.indexing import dtype_name

    return x.astype(dtype_name("tf", attrs["DstT"]) or x.dtype)


def _strided_slice(attrs: dict, x, begin, end, strides) -> np.ndarray:
    from tfn.layers.indexing import strided_index

    return np.asarray(x[strided_index(begin.reshape(-1), end.reshape(-1), strides.reshape(-1), attrs)])


#: the ops on constants a graph computes its shapes and reshaped weights with: evaluated here
FOLDS = {
    "StridedSlice": _strided_slice,
    "Slice": lambda attrs, x, begin, size: x[tuple(slice(int(b), None if s == -1 else int(b + s)) for b, s in zip(begin, size))],
    "Pack": lambda attrs, *xs: np.stack(xs, int(attrs.get("axis", 0))),
    "ConcatV2": lambda attrs, *xs: np.concatenate([np.atleast_1d(x) for x in xs[:-1]], int(xs[-1])),
    "Reshape": lambda attrs, x, shape: x.reshape([int(d) for d in shape.reshape(-1)]),
    "Squeeze": lambda attrs, x: np.squeeze(x, tuple(attrs.get("squeeze_dims") or ()) or None),
    "ExpandDims": lambda attrs, x, axis: np.expand_dims(x, int(axis)),
    "Transpose": lambda attrs, x, perm: np.transpose(x, [int(p) for p in perm]),
    "Prod": lambda attrs, x, axes: np.prod(x, axis=tuple(int(a) for a in axes.reshape(-1)), keepdims=bool(attrs.get("keep_dims"))),
    "Fill": lambda attrs, dims, value: np.full([int(d) for d in dims], value),
    "GatherV2": lambda attrs, x, ids, axis: np.take(x, ids, int(axis)),
    "Cast": _cast,
    **{op: _elementwise(f) for op, f in patterns.ELEMENTWISE.items() if op not in ("Cast", "CastLike", "Identity")},
    **{op: _elementwise(f) for op, f in (("Maximum", np.maximum), ("Minimum", np.minimum), ("FloorDiv", np.floor_divide))},
}
VARIABLES = ("VariableV2", "Variable", "VarHandleOp")
#: ops that make no tensor a model reads: never graph ends
_NOT_ENDS = ("NoOp", "Assign", "AssignVariableOp", "SaveV2", "RestoreV2", "MergeV2Checkpoints", "VarIsInitializedOp")


def _attr(value):
    """An AttrValue as a plain Python value."""
    kind = value.WhichOneof("value")
    if kind == "s":
        return value.s.decode(errors="replace")
    if kind == "list":
        lst = value.list
        for field in ("i", "f", "s", "b", "type"):
            items = list(getattr(lst, field))
            if items:
                return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in items]
        return []
    if kind == "shape":
        return None if value.shape.unknown_rank else [d.size for d in value.shape.dim]
    if kind == "tensor":
        return _tensor_value(value.tensor)
    return getattr(value, kind) if kind else None


def _tensor_value(tensor) -> np.ndarray:
    """A TensorProto's value. TF writes a constant's repeated tail once (all zeros: no value at all), which
    TensorBoard's make_ndarray reads only when one value stands for all: the rest repeats the last value."""
    from tensorboard.compat.tensorflow_stub import dtypes
    from tensorboard.util import tensor_util

    shape = [d.size for d in tensor.tensor_shape.dim]
    size = int(np.prod(shape, dtype=np.int64))
    if tensor.tensor_content or tensor.dtype == dtypes.string.as_datatype_enum:
        return tensor_util.make_ndarray(tensor)
    dtype = dtypes.as_dtype(tensor.dtype).as_numpy_dtype
    for values in (tensor.float_val, tensor.double_val, tensor.int_val, tensor.int64_val, tensor.bool_val, tensor.half_val):
        if len(values):
            if len(values) in (1, size):
                return tensor_util.make_ndarray(tensor)
            padded = list(values) + [values[-1]] * (size - len(values))
            return np.asarray(padded, dtype=dtype).reshape(shape)
    return np.zeros(shape, dtype=dtype)


def _split(ref: str) -> tuple[str, int, bool]:
    """'name:1' -> (name, 1, False); '^name' -> (name, 0, True)."""
    control = ref.startswith("^")
    ref = ref.lstrip("^")
    name, _, index = ref.partition(":")
    return name, int(index or 0), control


class GraphReader:
    def __init__(self, path: Path, graph_def, variables: dict[str, np.ndarray] | None, input_layout: str = "nchw"):
        self.path = path
        self.input_layout = input_layout
        self.nodes = {n.name: n for n in graph_def.node}
        self.order = [n.name for n in graph_def.node]
        self.variables = variables
        self.consumers: dict[str, list[str]] = {}
        for n in graph_def.node:
            for ref in n.input:
                name, _, control = _split(ref)
                if not control:
                    self.consumers.setdefault(name, []).append(n.name)
        self.folded: dict[str, np.ndarray | None] = {}
        self.waiting: set[str] = set()  # folds that read the Shape of a tensor not built yet: asked again later
        self.builder: Builder | None = None  # while building: the types of computed tensors (Shape reads them)

    # --- constants -----------------------------------------------------------------

    def source(self, name: str) -> str:
        """Follow pass-through ops to the node that makes the value."""
        seen = set()
        while self.nodes[name].op in PASS_THROUGH and name not in seen:
            seen.add(name)
            name = _split(self.nodes[name].input[0])[0]
        return name

    def constant(self, ref: str) -> tuple[np.ndarray, str] | None:
        """(value, name) when `ref` is a constant, a variable or arithmetic on them (a Keras bias reshaped, a
        flatten's shape: Shape, StridedSlice and Pack, the batch as -1), through pass-through ops; else None."""
        name = self.source(_split(ref)[0])
        node = self.nodes[name]
        if node.op == "Const":
            return np.asarray(_attr(node.attr["value"])), name
        if node.op in FOLDS or node.op == "Shape":
            value = self._fold(name)
            return None if value is None else (value, name)
        if node.op in VARIABLES:
            if self.variables is None:
                raise ImportFailed(f"{self.path}: error: the graph reads variable {name!r}: freeze it (convert_variables_to_constants) or import the checkpoint")
            key = _attr(node.attr["shared_name"]) if "shared_name" in node.attr and _attr(node.attr["shared_name"]) else name
            if key not in self.variables:
                raise ImportFailed(f"{self.path}: error: the checkpoint holds no variable {key!r}")
            return self.variables[key], key
        return None

    def _fold(self, name: str) -> np.ndarray | None:
        """The value of a foldable node (memoised, None too), or None."""
        if name in self.folded:
            return self.folded[name]
        node = self.nodes[name]
        refs = [r for r in node.input if not _split(r)[2]]
        if node.op == "Shape":
            tensor = self.builder.tensors.get(self._tensor(refs[0])) if self.builder is not None else None
            if tensor is None:
                self.waiting.add(name)
                return None
            shape = list(tensor.type.shape)
            if self.builder.channels_last and len(shape) >= 3:
                shape = [shape[0], *shape[2:], shape[1]]
            out_type = node.attr["out_type"].type if "out_type" in node.attr else 3
            value = np.asarray([-1 if d is None else d for d in shape], dtype=np.int64 if out_type == 9 else np.int32)
        else:
            constants = [self.constant(r) for r in refs]
            if any(c is None for c in constants):
                if any(self.source(_split(r)[0]) in self.waiting for r in refs):
                    self.waiting.add(name)
                else:
                    self.folded[name] = None
                return None
            attrs = {k: _attr(v) for k, v in node.attr.items() if k not in ("T", "_output_shapes")}
            value = FOLDS[node.op](attrs, *(c[0] for c in constants))
        self.waiting.discard(name)
        self.folded[name] = np.asarray(value)
        return self.folded[name]

    # --- outputs -------------------------------------------------------------------

    def ends(self) -> list[str]:
        """Nodes whose value nothing reads, that a model may output: the one end of a frozen graph,
        else (a training graph has many) those computed by mappable ops only."""
        table = im.rules("tf")
        ends = [n for n in self.order if n not in self.consumers and self.nodes[n].op not in (*_NOT_ENDS, "Const", "Placeholder", *VARIABLES)]
        if len(ends) <= 1:
            return ends
        plumbing = (*PASS_THROUGH, "Const", "Placeholder", "Shape", *FOLDS, *VARIABLES)
        return [e for e in ends if all(self.nodes[n].op in table or self.nodes[n].op in plumbing for n in self.needed([e]))]

    def needed(self, outputs: list[str], control: bool = False) -> list[str]:
        """The nodes the outputs read through data edges (and control edges too), in graph order."""
        seen: set[str] = set()
        stack = list(outputs)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            if name not in self.nodes:
                raise ImportFailed(f"{self.path}: error: the graph has no node {name!r}")
            seen.add(name)
            stack += [_split(r)[0] for r in self.nodes[name].input if control or not _split(r)[2]]
        return [n for n in self.order if n in seen]

    # --- mapping -------------------------------------------------------------------

    def build(self, outputs: list[str]) -> tuple[Builder, list[str], list[str]]:
        builder = Builder("tf", channels_last=True, input_layout=self.input_layout)
        self.builder = builder
        table = im.rules("tf")
        folded: dict[str, str] = {}  # a fused consumer -> the node it was folded into
        needed = self.needed(outputs)
        outputs_read: dict[str, int] = {}  # a node -> how many of its outputs the model reads (the highest index + 1)
        for ref in (r for n in needed for r in self.nodes[n].input if not _split(r)[2]):
            name, index, _ = _split(ref)
            outputs_read[name] = max(outputs_read.get(name, 0), index + 1)
        functions = {m.end: m for m in self._functions(needed, outputs)}
        inside = {n for m in functions.values() for n in m.covered}
        for name in needed:
            node = self.nodes[name]
            if name in functions:
                m, (scope, node_name) = functions[name], builder.place(name)
                builder.add(Layer(name, m.kind, "tf", m.attrs, [m.input], [m.output], scope=scope, node=node_name, where=f"node {name!r} ({len(m.covered)} ops)"))
                continue
            if name in inside:
                continue
            if node.op == "Placeholder":
                shape = _attr(node.attr["shape"]) if "shape" in node.attr else None
                if not shape or any(d < 0 for d in shape[1:]):
                    builder.unmapped(Unmapped(name, "Placeholder", "an input", f"shape {shape}: tfn's inputs have a fixed sample shape"))
                    continue
                from tfn.runners.importers.keras import channels_first

                dtype = {1: "float32", 2: "float64", 3: "int32", 9: "int64"}.get(node.attr["dtype"].type, "float32")
                builder.add_input(f"{name}:0", name, TensorType((None, *channels_first(shape[1:])), dtype))
                continue
            if node.op in ("Const", *VARIABLES) or name in folded or self.constant(name) is not None:
                continue
            if node.op in PASS_THROUGH:
                builder.alias(f"{name}:0", self._tensor(node.input[0]))
                continue
            if node.op == "Shape":  # of a tensor an earlier op could not make (reported there)
                builder.rows.append({"source": name, "kind": "Shape", "where": f"node {name!r}", "op": None, "node": None, "reason": "not converted: an input could not be"})
                continue
            inputs, weights, weight_names, sources = [], [], [], []
            for ref in node.input:
                if _split(ref)[2]:
                    continue
                constant = self.constant(ref)
                if constant is None:
                    inputs.append(self._tensor(ref))
                    sources.append("data")
                else:
                    weights.append(constant[0])
                    weight_names.append(constant[1])
                    sources.append("constant")
            rule = table.get(node.op, (None, None))[1]
            output = f"{name}:0"
            fused = []
            consumers = self.consumers.get(name, [])
            if rule is not None and rule.fuses and weights and len(consumers) == 1 and self.nodes[consumers[0]].op in rule.fuses:
                follower = self.nodes[consumers[0]]
                others = [r for r in follower.input if _split(r)[0] != name and not _split(r)[2]]
                constant = self.constant(others[0]) if len(others) == 1 else None
                if constant is not None:
                    weights.append(constant[0])
                    weight_names.append(constant[1])
                    folded[follower.name] = name
                    fused.append(follower.name)
                    builder.alias(output, f"{follower.name}:0")
                    output = f"{follower.name}:0"
            scope, node_name = builder.place(_layer_path(weight_names[0]) if weight_names and "/" in weight_names[0] else name)
            where = f"node {name!r}" + (f" folding {', '.join(fused)}" if fused else "")
            attrs = {k: _attr(v) for k, v in node.attr.items() if k not in ("T", "_output_shapes")}
            more = [f"{name}:{k}" for k in range(1, outputs_read.get(name, 1))]
            layer = Layer(name, node.op, "tf", attrs, inputs, [output, *more], weights, scope=scope, node=node_name, where=where, folded=fused, sources=tuple(sources))
            builder.add(layer)
        self.builder = None
        return builder, [f"{self.source(o)}:0" for o in outputs], outputs

    def _functions(self, needed: list[str], outputs: list[str]) -> list[patterns.Match]:
        """Regions of element-wise ops that compute a function tfn has as one op (tf.nn.gelu's erf / tanh subgraph)."""
        steps = []
        for name in needed:
            node = self.nodes[name]
            if node.op in ("Const", "Placeholder", *VARIABLES, *PASS_THROUGH):
                continue
            steps.append(patterns.Step(name, node.op, tuple(self._tensor(r) for r in node.input if not _split(r)[2]), f"{name}:0"))

        def value(tensor: str):
            constant = self.constant(tensor)
            return None if constant is None else constant[0]

        return patterns.find(steps, value, {f"{self.source(o)}:0" for o in outputs})

    def _tensor(self, ref: str) -> str:
        name, index, _ = _split(ref)
        return f"{self.source(name)}:{index}"


def _layer_path(weight: str) -> str:
    """The layer a weight belongs to: `conv1/kernel` -> conv1; a TF 2 frozen resource
    `model/conv/convolution/ReadVariableOp/resource` (no variable name left) -> model/conv/convolution."""
    if weight.endswith("/resource"):
        return weight.removesuffix("/resource").removesuffix("/ReadVariableOp")
    return weight.rsplit("/", 1)[0]


def _is_training(name: str, op: str) -> bool:
    """Gradient computations and optimizer updates: what a training graph adds to the model."""
    return name.startswith("gradients/") or op.startswith(("Apply", "ResourceApply", "Assign")) or op.endswith("Grad")


def _finish(path: Path, fmt: str, versions: dict, reader: GraphReader, outputs: list[str] | None) -> Imported:
    if outputs:
        names = [_split(o)[0] for o in outputs]
        missing = [n for n in names if n not in reader.nodes]
        if missing:
            from tfn.layers import suggest

            hint = suggest(missing[0], reader.nodes)
            raise ImportFailed(f"--outputs: error: the graph has no node {missing[0]!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
    else:
        names = reader.ends()
        if len(names) != 1:
            listed = ", ".join(names) if names else "none (every end of the graph passes through an op tfn does not map)"
            raise ImportFailed(f"{path}: error: give the model's outputs with --outputs NAME[,NAME]: the graph's inference ends are {listed}")
    training = [n for n in reader.needed(names, control=True) if _is_training(n, reader.nodes[n].op)]
    if training:
        ends = ", ".join(reader.ends()) or "none"
        raise ImportFailed(
            f"{path}: error: the outputs {', '.join(names)} depend on the training subgraph ({len(training)} ops, e.g. "
            f"{reader.nodes[training[0]].op} {training[0]!r}), which tfn does not import; name inference outputs with --outputs "
            f"(the graph's inference ends: {ends})"
        )
    builder, tensors, source_names = reader.build(names)
    if builder.problems:
        raise unmappable_error(str(path), builder)
    refs = [builder.tensors[t].ref for t in tensors]
    name = valid_name(path.name.split(".")[0])
    return Imported(name, path, fmt, versions, builder, refs, source_names, default_losses(builder, refs), None)


def read_graphdef(path: Path, outputs: list[str] | None, input_layout: str = "nchw") -> Imported:
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import graph_pb2

    graph_def = graph_pb2.GraphDef()
    data = path.read_bytes()
    try:
        if path.suffix == ".pbtxt":
            from google.protobuf import text_format

            text_format.Parse(data.decode(), graph_def)
        else:
            graph_def.ParseFromString(data)
    except (DecodeError, UnicodeDecodeError, text_format_error()) as exc:
        raise ImportFailed(f"{path}: error: not a TensorFlow GraphDef: {exc}") from None
    if not graph_def.node:
        raise ImportFailed(f"{path}: error: not a TensorFlow GraphDef (no nodes)")
    versions = {"graphdef_producer": graph_def.versions.producer} if graph_def.versions.producer else {}
    return _finish(path, "tf_graphdef", versions, GraphReader(path, graph_def, None, input_layout), outputs)


def text_format_error():
    from google.protobuf.text_format import ParseError

    return ParseError


def read_meta(prefix: Path):
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import meta_graph_pb2

    meta_path = Path(f"{prefix}.meta")
    if not meta_path.is_file():
        raise ImportFailed(f"{meta_path}: error: no such file: a checkpoint's graph comes from its .meta file; without one, give the graph with --spec")
    meta = meta_graph_pb2.MetaGraphDef()
    try:
        meta.ParseFromString(meta_path.read_bytes())
    except DecodeError as exc:
        raise ImportFailed(f"{meta_path}: error: not a TensorFlow MetaGraphDef: {exc}") from None
    return meta


def read_checkpoint(prefix: Path, outputs: list[str] | None, input_layout: str = "nchw") -> Imported:
    from tfn.runners.importers import bundle

    meta = read_meta(prefix)
    variables = bundle.read(prefix)
    versions = {"tensorflow": meta.meta_info_def.tensorflow_version} if meta.meta_info_def.tensorflow_version else {}
    imported = _finish(prefix, "tf1_checkpoint", versions, GraphReader(prefix, meta.graph_def, variables, input_layout), outputs)
    imported.source = Path(f"{prefix}.index")
    return imported


def _slots(names: set[str]) -> set[str]:
    """Optimizer slots and counters (`conv1/kernel/Momentum`, `global_step`): not model variables."""
    return {n for n in names if n == "global_step" or any(n.startswith(other + "/") for other in names if other != n)}


def write_into_spec(prefix: Path, spec: str | Path, out: str | Path):
    """A TF 1.x checkpoint's tensors by variable name into the graph of a spec the user wrote, as a model directory.

    Returns (import.json's record, the InitReport --init-from prints). A kernel
    whose input is a flattened [C, H, W] tensor gets its rows permuted from
    TF's NHWC flatten order. Variables the checkpoint lacks keep their initial values.
    """
    import math

    import torch

    from tfn import layers
    from tfn.runners import checkpoint as ckpt
    from tfn.runners.files import atomic_write, prepare_out_dir, write_json
    from tfn.runners.importers import bundle
    from tfn.runners.importers.directory import sha256, write_preprocessing
    from tfn.runners.module import GraphModule
    from tfn.specs import load, resolve_spec_path

    loaded = load(spec)
    graph = loaded.graph
    index = Path(f"{prefix}.index")
    shards, entries = bundle.read_index(prefix)
    names = set(entries) - _slots(set(entries))
    tensors = bundle.read(prefix, sorted(names & {v.name for v in graph.variables}))
    model = GraphModule(graph, torch.Generator().manual_seed(loaded.spec.train.seed))
    variables = model.variables()
    report = ckpt.InitReport(index, [], [], sorted(names - set(variables)), [])
    for node in graph.nodes:
        flattened = _flattened_input(graph, node, layers)
        for role, name in node.variables.items():
            if not name.startswith(node.name + "/"):
                continue  # shared: the owner loads it
            if name not in tensors:
                report.missing.append(name)
                continue
            value = im.from_tf_layout(role, tensors[name])
            if flattened is not None and role == "kernel" and value.ndim == 2 and value.shape[1] == math.prod(flattened):
                value = value[:, np.asarray(im.flattened_order(flattened))]
            if tuple(value.shape) != tuple(variables[name].shape):
                report.wrong_shape.append((name, tuple(tensors[name].shape), tuple(variables[name].shape)))
                continue
            with torch.no_grad():
                variables[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
            report.loaded.append(name)
    if not report.loaded:
        raise ImportFailed(report.describe().replace(": initialised", ": error: no variable of the spec is in the checkpoint; it would initialise", 1))
    out = prepare_out_dir(out)
    atomic_write(out / "spec.yaml", resolve_spec_path(spec).read_text())
    atomic_write(out / "graph.json", graph.to_json())
    ckpt.CheckpointManager(out / "checkpoints", keep=1).save(
        dict(variables), {}, {"imported_from": str(index)}, step=0, epoch=0, graph_hash=graph.hash
    )
    trainable, frozen = graph.parameter_counts()
    record = {
        "format": "tfn.import",
        "version": 1,
        "source": {"file": str(index.resolve()), "format": "tf1_checkpoint", "versions": {}, "sha256": sha256(index), "shards": shards},
        "spec": str(spec),
        "parameters": {"trainable": trainable, "non_trainable": frozen},
        "loaded": report.loaded,
        "missing": report.missing,
        "not_in_graph": report.unexpected,
        "wrong_shape": [[n, list(c), list(g)] for n, c, g in report.wrong_shape],
    }
    write_json(out / "import.json", record)
    write_preprocessing(out, None)
    return record, report


def _flattened_input(graph, node, layers) -> tuple[int, ...] | None:
    """The [C, H, W] sample shape a node's input was flattened from (by a data-movement op), if it was."""
    if len(node.inputs) != 1 or node.inputs[0] not in graph.by_name:
        return None
    source = graph.by_name[node.inputs[0]]
    if not layers.get(source.op).pure_data_movement or len(source.outputs) != 1 or source.outputs[0].rank != 2 or len(source.inputs) != 1:
        return None
    before = graph.type_of(source.inputs[0])
    return before.sample_shape if before.rank >= 4 else None
