"""ONNX models (the `onnx` package, tfn's onnx extra): nodes mapped through the ops' ONNX rules.

ONNX tensors are channels-first already. Initializers are the weights; a
node is named after its weights (`conv1/kernel` makes node `conv1`, tfn's
own export included), else after its output. Small shape computations (the
batch-dependent shape of a Reshape, the axes of a ReduceMean, a zero bias
made by Expand) are evaluated here with NumPy, the batch size standing as -1.
A Pad whose only reader is a Conv or MaxPool is folded into that op's pads.
A node reusing another's initializers shares its variables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfn.layers import TensorType
from tfn.layers import imports as im
from tfn.runners.importers import patterns
from tfn.runners.importers.build import Builder, ImportFailed, Layer, Unmapped, unmappable_error, valid_name
from tfn.runners.importers.directory import Imported, default_losses

_DTYPES = {1: "float32", 11: "float64", 6: "int32", 7: "int64"}


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if a.type == a.FLOAT:
            # ONNX stores float32: the shortest decimal of that float32 (an LRN's alpha 1e-4, not 0.000100000005)
            value = float(str(np.float32(value)))
        out[a.name] = value.decode() if isinstance(value, bytes) else list(value) if isinstance(value, (list, tuple)) else value
    return out


def _fold(op: str, attrs: dict, values: list[np.ndarray | None], shapes: list) -> np.ndarray | None:
    """NumPy for the shape arithmetic exporters emit; None when the node is not of that kind."""
    if op == "Shape":
        shape = np.asarray(values[0].shape if values[0] is not None else shapes[0], dtype=np.int64)
        return shape[attrs.get("start", 0) : attrs.get("end", len(shape))]
    if any(v is None for v in values):
        return None
    if op == "Identity":
        return values[0]
    if op == "Squeeze":
        axes = tuple(int(a) for a in (values[1] if len(values) > 1 else attrs.get("axes", [])))
        return np.squeeze(values[0], axes or None)
    if op == "Unsqueeze":
        axes = [int(a) for a in (values[1] if len(values) > 1 else attrs.get("axes", []))]
        out = values[0]
        for a in sorted(axes):
            out = np.expand_dims(out, a)
        return out
    if op == "Reshape":
        return values[0].reshape([int(d) for d in values[1]])
    if op == "Concat":
        return np.concatenate([np.atleast_1d(v) for v in values], attrs.get("axis", 0))
    if op == "Gather":
        return np.take(values[0], values[1].astype(np.int64), attrs.get("axis", 0))
    if op == "Cast":
        from tfn.layers.indexing import dtype_name

        return values[0].astype(np.bool_ if attrs.get("to") == 9 else dtype_name("onnx", attrs.get("to", 1)) or values[0].dtype)
    if op == "CastLike":
        return values[0].astype(values[1].dtype)
    if op == "Slice":
        starts, ends = ([int(v) for v in values[i].reshape(-1)] for i in (1, 2))
        axes = [int(v) for v in values[3].reshape(-1)] if len(values) > 3 and values[3] is not None else list(range(len(starts)))
        steps = [int(v) for v in values[4].reshape(-1)] if len(values) > 4 and values[4] is not None else [1] * len(starts)
        index = [slice(None)] * values[0].ndim
        for axis, start, end, step in zip(axes, starts, ends, steps):
            index[axis] = slice(start, end, step)
        return values[0][tuple(index)]
    if op == "Transpose":
        return np.transpose(values[0], attrs.get("perm"))
    if op in _ARITHMETIC:
        return _ARITHMETIC[op](*values)
    if op == "Expand":
        return np.broadcast_to(values[0], np.broadcast_shapes(values[0].shape, tuple(int(d) for d in values[1]))).copy()
    return None


_ARITHMETIC = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


def read(path: Path, outputs: list[str] | None) -> Imported:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportFailed(f"{path}: error: reading ONNX needs the onnx package: pip install 'tfn[onnx]'") from None
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others, with no common base
        raise ImportFailed(f"{path}: error: not a readable ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    graph = model.graph
    constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    initializers = set(constants)
    builder = Builder("onnx", channels_last=False)
    table = im.rules("onnx")
    shapes: dict[str, list] = {}
    for value in graph.input:
        if value.name in constants:
            continue
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if not dims or any(d is None for d in dims[1:]):
            builder.unmapped(Unmapped(value.name, "input", "graph input", f"shape {dims}: tfn's inputs have a fixed sample shape after a batch axis"))
            continue
        builder.add_input(value.name, value.name, TensorType((None, *dims[1:]), _DTYPES.get(t.elem_type, "float32")))
        shapes[value.name] = [-1, *dims[1:]]
    wanted = outputs or [o.name for o in graph.output]
    missing = [o for o in wanted if o not in {out for n in graph.node for out in n.output} | set(builder.inputs)]
    if missing:
        raise ImportFailed(f"--outputs: error: the ONNX graph makes no tensor {missing[0]!r}")
    readers: dict[str, list] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            if not (node.op_type == "CastLike" and position == 1):  # reads only the dtype
                readers.setdefault(name, []).append(node)
    folded_pads: dict[str, list[int]] = {}  # a conv/pool's output -> pads taken from a Pad before it
    skip: set[str] = set()
    used_weights: dict[tuple, str] = {}  # the initializers a node reads -> its tfn node (sharing)
    fused_after: dict[str, str] = {}  # a bias Add folded into the layer before -> the tensor it adds to
    for node in graph.node:
        if node.op_type == "Constant":
            attribute = node.attribute[0]
            constants[node.output[0]] = numpy_helper.to_array(attribute.t) if attribute.type == onnx.AttributeProto.TENSOR else np.asarray(_attrs(node)[attribute.name])
    #: the initializers each folded constant is computed from (ONNX LSTM's W, packed from an exported lstm's kernel)
    origins: dict[str, tuple] = {name: (name,) for name in initializers}
    for node in graph.node:  # arithmetic on constants ahead of the nodes that read it (a bias reshaped after its conv)
        if node.op_type not in ("Constant", "CastLike") and node.input and all(i in constants for i in node.input if i):
            folded = _fold(node.op_type, _attrs(node), [constants.get(i) if i else None for i in node.input], [None] * len(node.input))
            if folded is not None:
                constants[node.output[0]] = folded
                origins[node.output[0]] = _origin(origins, node.input)
    recurrent, passed_through = _recurrent_layouts(graph, readers, constants)
    functions, inside = _functions(graph, constants, wanted)
    for index, node in enumerate(graph.node):
        attrs = _attrs(node)
        name = node.name or node.output[0]
        where = f"node {index} of the graph"
        if node.op_type == "Constant" or name in inside and node.output[0] not in functions:
            continue
        if node.output[0] in functions:
            m = functions[node.output[0]]
            scope, node_name = _place(name, False, builder)
            builder.add(Layer(name, m.kind, "onnx", m.attrs, [m.input], [m.output], scope=scope, node=node_name, where=f"{where} ({len(m.covered)} ops)"))
            shapes[m.output] = shapes.get(m.input)
            continue
        values = [constants.get(i) if i else None for i in node.input]
        in_shapes = [shapes.get(i) for i in node.input]
        if node.op_type == "CastLike" and values[0] is not None and node.input[1] in builder.tensors:  # only the dtype is read
            constants[node.output[0]] = values[0].astype(builder.tensors[node.input[1]].type.dtype)
            continue
        if node.op_type == "Shape" and in_shapes[0] is not None or all(v is not None for v, i in zip(values, node.input) if i):
            folded = _fold(node.op_type, attrs, values, in_shapes)  # arithmetic on constants is a constant
            if folded is not None:
                constants[node.output[0]] = folded
                origins[node.output[0]] = _origin(origins, node.input)
                continue
        if node.output[0] in passed_through:  # layout plumbing around an LSTM (_recurrent_layouts)
            if passed_through[node.output[0]]:
                builder.alias(node.output[0], passed_through[node.output[0]])
            continue
        if node.op_type in ("Identity", "Dropout") and node.input[0] in builder.tensors:
            builder.alias(node.output[0], node.input[0])
            shapes[node.output[0]] = shapes.get(node.input[0])
            continue
        if node.output[0] in fused_after:  # a bias folded into the layer before: its output is what it adds to
            builder.alias(node.output[0], fused_after[node.output[0]])
            shapes[node.output[0]] = shapes.get(fused_after[node.output[0]])
            continue
        if node.output[0] in skip:
            continue
        data = [i for i in node.input if i and i not in constants]
        weight_names = [i for i in node.input if i and i in constants]
        weights = [constants[i] for i in weight_names]
        sources = ["" if not i else "constant" if i in constants else "data" for i in node.input]
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(weight_names) > 1 and weight_names[-1] not in initializers and not np.any(weights[-1]):
            weights, weight_names = weights[:-1], weight_names[:-1]  # a zero bias the exporter made up: no variable
            sources[len(sources) - 1 - sources[::-1].index("constant")] = ""
        if node.op_type == "Split":
            attrs.setdefault("num_outputs", len(node.output))
        if node.op_type == "Pad" and _fold_pad(node, readers, constants, weights, attrs, folded_pads, skip):
            builder.alias(node.output[0], node.input[0])
            shapes[node.output[0]] = shapes.get(node.input[0])
            continue
        if node.output[0] in folded_pads:
            attrs["pads"] = folded_pads[node.output[0]]
        rule = table.get(node.op_type, (None, None))[1]
        fused = []
        follower = _fused_follower(node, rule, readers, constants, len(shapes.get(data[0]) or ())) if len(weights) == 1 and data else None
        if follower is not None:
            add, through, bias = follower
            weights.append(bias)
            weight_names.append(next(i for i in add.input if i != through))
            skip.add(add.output[0])
            fused.append(add.output[0])
            fused_after[add.output[0]] = through
        # an op with variables is named after its initializers, and a second reader of them shares them;
        # constants such as axes or scales are just arguments, which nodes may read in common
        owner = table.get(node.op_type, (None, None))[0]
        # (a Gather of an initializer table is an embedding: layers/indexing.py's table_lookup)
        reads_table = node.op_type == "Gather" and node.input[0] in initializers
        key = tuple(n for n in weight_names if n in initializers) if owner and (im.carries_variables(owner) or reads_table) else ()
        if owner and im.carries_variables(owner) and not key:  # weights computed from initializers: named after those
            key = _origin(origins, weight_names)
        if node.op_type == "LSTM" and name in recurrent:
            attrs["tfn_layout"], made_layout = True, recurrent[name]
        share = used_weights.get(key) if key else None
        scope, node_name = _place(key[0] if key and share is None else name, bool(key) and share is None, builder)
        read = [k for k, out in enumerate(node.output) if out and (out in readers or out in wanted)]
        made_outputs = list(node.output[: max(read, default=0) + 1])
        if attrs.get("tfn_layout"):
            attrs["tfn_outputs_read"], made_outputs = made_layout
        layer = Layer(name, node.op_type, "onnx", attrs, data, made_outputs, weights, scope=scope, node=node_name, where=where, share=share, folded=fused, sources=tuple(sources))
        made = builder.add(layer)
        if made is not None:
            if key and share is None:
                used_weights[key] = made.name
            for out in made_outputs:
                shapes[out] = [-1, *builder.tensors[out].type.shape[1:]]
    if builder.problems:
        raise unmappable_error(str(path), builder)
    refs = [builder.tensors[o].ref for o in wanted]
    meta = {p.key: p.value for p in model.metadata_props}
    versions = {"opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0), "producer": f"{model.producer_name} {model.producer_version}".strip()}
    name = meta.get("tfn.graph_name") or valid_name(path.stem)
    return Imported(name, path, "onnx", versions, builder, refs, wanted, default_losses(builder, refs), None)


def _fused_follower(node, rule, readers: dict, constants: dict, rank: int):
    """The Add after `node` that `rule` folds into it as its bias: (the Add, the tensor it adds to, the bias);
    None when there is none. It follows directly, or, with one value per channel (axis 1), after Slices that
    crop other axes only (a bias commutes with them: tfn's export of conv2d_transpose crops to SAME, then adds)."""
    if rule is None or not rule.fuses:
        return None
    tensor, follower = node.output[0], _only_reader(readers, node.output[0])
    through_slices = False
    while follower is not None and follower.op_type == "Slice" and _crops_other_axes_than_channels(follower, constants, rank):
        tensor, follower, through_slices = follower.output[0], _only_reader(readers, follower.output[0]), True
    if follower is None or follower.op_type not in rule.fuses:
        return None
    others = [i for i in follower.input if i != tensor]
    if len(others) != 1 or others[0] not in constants:
        return None
    channels = _per_channel(constants[others[0]], rank)
    if channels is None and through_slices:
        return None
    return follower, tensor, constants[others[0]] if channels is None else channels


def _origin(origins: dict, names) -> tuple:
    """The initializers, in order, that tensors `names` are computed from."""
    return tuple(dict.fromkeys(o for n in names if n for o in origins.get(n, ())))


def _recurrent_layouts(graph, readers: dict, constants: dict) -> tuple[dict, dict]:
    """ONNX's LSTM reads X [T, N, F] and writes Y [T, 1, N, u], Y_h and Y_c [1, N, u]. Where X is a Transpose
    [2, 0, 1] of a sequence [N, F, T] that only LSTMs read and Squeezes of the directions axis read the outputs (Y's then a Transpose
    [1, 2, 0]), as tfn's export writes its lstm, these nodes are tfn's lstm's own layout: ({LSTM node name:
    (which of Y, Y_h, Y_c are read, the tensors of tfn's lstm outputs in order)}, {a plumbing node's output:
    the tensor it passes through, or "" for one the LSTM makes})."""
    producers = {out: n for n in graph.node for out in n.output}
    found: dict[str, tuple] = {}
    passed: dict[str, str] = {}
    for node in graph.node:
        x = producers.get(node.input[0]) if node.op_type == "LSTM" and node.input else None
        lstm_only = all(r.op_type == "LSTM" and list(r.input).count(x.output[0]) == 1 and r.input[0] == x.output[0] for r in readers.get(x.output[0], [])) if x else False
        if x is None or x.op_type != "Transpose" or _attrs(x).get("perm") != [2, 0, 1] or not lstm_only:
            continue
        made, plumbing = [None, None, None], {x.output[0]: x.input[0]}
        for k, axis in ((0, 1), (1, 0), (2, 0)):
            out = node.output[k] if k < len(node.output) else ""
            if not out or not readers.get(out):
                continue
            squeezes = readers[out]
            if not all(r.op_type == "Squeeze" and len(r.input) > 1 and np.asarray(constants.get(r.input[1], [])).tolist() == [axis] for r in squeezes):
                break
            squeeze = squeezes[0]
            made[k], plumbing[squeeze.output[0]] = squeeze.output[0], ""
            plumbing |= {other.output[0]: squeeze.output[0] for other in squeezes[1:]}  # the same tensor
            if k == 0 and len(squeezes) > 1:
                break
            if k == 0:
                transpose = _only_reader(readers, squeeze.output[0])
                if transpose is None or transpose.op_type != "Transpose" or _attrs(transpose).get("perm") != [1, 2, 0]:
                    break
                made[0], plumbing[transpose.output[0]] = transpose.output[0], ""
        else:
            read = [m is not None for m in made]
            name = node.name or node.output[0]
            # tfn's outputs: the sequence or the final h, then (return_state) h and c
            first = made[0] if read[0] else made[1] or f"{name}:last"
            states = [made[1] or f"{name}:h", made[2] or f"{name}:c"] if read[2] or (read[0] and read[1]) else []
            found[name] = (read, [first, *states])
            passed |= plumbing
    return found, passed


def _only_reader(readers: dict, tensor: str):
    found = readers.get(tensor, [])
    return found[0] if len(found) == 1 else None


def _crops_other_axes_than_channels(node, constants: dict, rank: int) -> bool:
    """A Slice with constant arguments that leaves axes 0 and 1 whole."""
    values = [constants.get(i) if i else None for i in node.input[1:5]]
    if len(node.input) < 4 or any(v is None for v in values[:3]) or not rank:
        return False
    starts, ends, axes = (np.asarray(v, dtype=np.int64).reshape(-1) for v in values[:3])
    steps = np.asarray(values[3], dtype=np.int64).reshape(-1) if len(values) > 3 and values[3] is not None else np.ones_like(starts)
    for axis, start, end, step in zip(axes % rank, starts, ends, steps):
        if axis in (0, 1) and not (start == 0 and end >= np.iinfo(np.int32).max and step == 1):
            return False
    return True


def _per_channel(value: np.ndarray, rank: int) -> np.ndarray | None:
    """A constant that broadcasts one value per channel over a rank-`rank` tensor ([C, 1, 1], [1, C, 1, 1]) as [C]."""
    shape = (1,) * (rank - value.ndim) + value.shape
    if rank > 2 and value.ndim <= rank and all(d == 1 for k, d in enumerate(shape) if k != 1):
        return value.reshape(-1)
    return None


def _functions(graph, constants: dict, wanted: list[str]) -> tuple[dict, set]:
    """Regions of element-wise nodes that compute one tfn op (gelu's Div, Erf, Add, Mul, Mul before opset 20):
    ({the region's output: Match}, the names of the nodes they cover)."""
    steps = [patterns.Step(n.name or n.output[0], n.op_type, tuple(i for i in n.input if i), n.output[0]) for n in graph.node if n.op_type != "Constant" and n.output]
    matches = patterns.find(steps, constants.get, set(wanted))
    return {m.output: m for m in matches}, {n for m in matches for n in m.covered}


def _fold_pad(node, readers, constants, weights, attrs, folded_pads, skip) -> bool:
    """A constant Pad of the spatial axes whose one reader is a Conv (value 0) or MaxPool (value -inf) with no pads of its own."""
    followers = readers.get(node.output[0], [])
    if len(followers) != 1 or attrs.get("mode", "constant") != "constant" or not weights:
        return False
    follower = followers[0]
    pads = [int(p) for p in weights[0]]
    value = float(weights[1].reshape(-1)[0]) if len(weights) > 1 and weights[1] is not None and weights[1].size else 0.0
    rank = len(pads) // 2
    if follower.op_type not in ("Conv", "MaxPool") or any(pads[i] or pads[i + rank] for i in (0, 1)) or len(weights) > 2:
        return False
    if value != (0.0 if follower.op_type == "Conv" else -np.inf):
        return False
    own = _attrs(follower).get("pads", [0] * (2 * (rank - 2)))
    if any(own) or _attrs(follower).get("auto_pad", "NOTSET") != "NOTSET":
        return False
    folded_pads[follower.output[0]] = pads[2:rank] + pads[rank + 2 :]
    return True


def _place(name: str, from_weight: bool, builder: Builder) -> tuple[str, str]:
    """(scope, node name) from a weight's name (`graph_module.conv1/kernel` -> conv1; `layer1.conv.weight` -> layer1.conv)
    or a node's own name."""
    if from_weight:
        name = name.removeprefix("graph_module.")  # tfn's own export wraps the graph module
        name = name.rsplit("/", 1)[0] if "/" in name else name.rsplit(".", 1)[0] if "." in name else name
    return builder.place(name)
