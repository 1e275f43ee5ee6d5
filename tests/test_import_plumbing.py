"""The import rules of slicing, squeezing, tiling, splitting, gathering and products, against NumPy on the
source's layout; ONNX Resize against onnxruntime.

Each case runs the source op with NumPy on a features-last (TF, Keras) or
channels-first (ONNX) array, and the nodes the rule emits with NumPy on
tfn's layout of the same array: the results must be the same tensor in tfn's
layout (features-last rank >= 3: the last axis at 1).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from tfn.layers import TensorType
from tfn.layers import imports as im


def _to_tfn(array: np.ndarray, channels_last: bool) -> np.ndarray:
    return np.moveaxis(array, -1, 1) if channels_last and array.ndim >= 3 else array


def _foreign(framework, kind, arrays, constants=None, attrs=None, channels_last=None):
    """A Foreign for source arrays (data inputs, the source's layout) and constants {input position: value}."""
    channels_last = framework != "onnx" if channels_last is None else channels_last
    constants = constants or {}
    sources = tuple("constant" if position in constants else "data" for position in range(len(arrays) + len(constants)))
    types = [TensorType((None, *_to_tfn(a, channels_last).shape[1:]), "float32" if a.dtype.kind == "f" else str(a.dtype)) for a in arrays]
    weights = tuple(np.asarray(constants[p]) for p in sorted(constants))
    return im.Foreign(framework, kind, "layer", dict(attrs or {}), tuple(types), weights, channels_last, sources=sources)


def _run(emitted: im.Emitted, op: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The emitted nodes on tfn's arrays, each op written with NumPy."""
    steps = [(emitted.op or op, emitted)] + [(e.op, e) for e in emitted.then]
    values = [arrays[i] for i in emitted.inputs] if emitted.inputs is not None else list(arrays)
    for name, step in steps:
        a = step.attrs
        x = values[0]
        if name == "slice":
            index = tuple(slice(b, None if s == -1 else b + s) for b, s in zip(a["begin"], a["size"]))
            values = [x[index]]
        elif name == "squeeze":
            values = [np.squeeze(x, tuple(a["axis"]))]
        elif name == "expand_dims":
            values = [np.expand_dims(x, a["axis"])]
        elif name == "transpose":
            values = [np.transpose(x, a["perm"])]
        elif name == "tile":
            values = [np.tile(x, a["multiples"])]
        elif name == "reshape":
            values = [x.reshape(x.shape[0], *a["shape"])]
        elif name == "stack":
            values = [np.stack(values, a["axis"])]
        elif name == "cropping2d":
            (top, bottom), (left, right) = a["cropping"]
            values = [x[:, :, top : x.shape[2] - bottom, left : x.shape[3] - right]]
        elif name == "split":
            sizes = a["num_or_size_splits"]
            n = x.shape[a["axis"]]
            sizes = [n // sizes] * sizes if isinstance(sizes, int) else [n - sum(s for s in sizes if s != -1) if s == -1 else s for s in sizes]
            values = np.split(x, np.cumsum(sizes)[:-1], a["axis"])
        elif name == "matmul":
            left, right = values
            left = np.swapaxes(left, -1, -2) if a.get("transpose_a") else left
            right = np.swapaxes(right, -1, -2) if a.get("transpose_b") else right
            values = [left @ right]
        elif name == "dense":
            kernel, bias = step.variables["kernel"], step.variables.get("bias", 0)
            values = [np.moveaxis(np.moveaxis(x, 1, -1) @ kernel.T + bias, -1, 1)]
        elif name == "gather":
            params, ids = values
            values = [np.stack([np.take(params[n], ids[n], axis=a["axis"] - 1) for n in range(len(params))])]
        else:
            raise AssertionError(f"no NumPy for {name}")
    return values


rng = np.random.default_rng(0)
X4 = rng.standard_normal((2, 6, 5, 4))  # NHWC
X3 = rng.standard_normal((2, 5, 3))  # NTF
X2 = rng.standard_normal((2, 6))
X5 = rng.standard_normal((2, 4, 4, 4, 2))  # NDHWC

# (framework, kind, source arrays, constants, attrs, NumPy of the source op)
CASES = {
    "tf StridedSlice": ("tf", "StridedSlice", [X4], {1: [0, 1, 0, 0], 2: [0, 5, 0, 3], 3: [1, 1, 1, 1]}, {"begin_mask": 5, "end_mask": 5}, lambda s: s[:, 1:5, :, :3]),
    "tf StridedSlice shrink, new axis": (
        "tf", "StridedSlice", [X4], {1: [0, 2, 0, 0, 1], 2: [0, 3, 0, 0, 0], 3: [1] * 5}, {"begin_mask": 5, "end_mask": 21, "shrink_axis_mask": 2, "new_axis_mask": 8},
        lambda s: s[:, 2, :, None, 1:],
    ),
    "tf StridedSlice ellipsis": ("tf", "StridedSlice", [X4], {1: [0, 1], 2: [0, 3], 3: [1, 1]}, {"ellipsis_mask": 1}, lambda s: s[..., 1:3]),
    "tf StridedSlice of the channels": ("tf", "StridedSlice", [X4], {1: [0, -3, 0, -1], 2: [0, 0, 0, 0], 3: [1] * 4}, {"begin_mask": 5, "end_mask": 7, "shrink_axis_mask": 8}, lambda s: s[:, -3:, :, -1]),
    "tf Slice": ("tf", "Slice", [X4], {1: [0, 1, 0, 2], 2: [-1, 2, -1, 1]}, {}, lambda s: s[:, 1:3, :, 2:3]),
    "tf Squeeze the channels": ("tf", "Squeeze", [X4[..., :1]], {}, {"squeeze_dims": [3]}, lambda s: np.squeeze(s, 3)),
    "tf Squeeze every size-1 axis": ("tf", "Squeeze", [X4[:, :1, :, :1]], {}, {"squeeze_dims": []}, lambda s: s[:, 0, :, 0]),
    "tf ExpandDims -1": ("tf", "ExpandDims", [X3], {1: -1}, {}, lambda s: s[..., None]),
    "tf ExpandDims of a rank-2": ("tf", "ExpandDims", [X2], {1: 1}, {}, lambda s: s[:, None]),
    "tf ExpandDims 2 of a map": ("tf", "ExpandDims", [X4], {1: 2}, {}, lambda s: s[:, :, None]),
    "tf Tile": ("tf", "Tile", [X4], {1: [1, 2, 1, 3]}, {}, lambda s: np.tile(s, [1, 2, 1, 3])),
    "tf GatherV2 a run": ("tf", "GatherV2", [X4], {1: [1, 2, 3], 2: 2}, {}, lambda s: s[:, :, 1:4]),
    "tf GatherV2 one channel": ("tf", "GatherV2", [X4], {1: 2, 2: -1}, {}, lambda s: s[..., 2]),
    "tf Pack at 1": ("tf", "Pack", [X3, 2 * X3], {}, {"axis": 1}, None),
    "tf Pack at the end": ("tf", "Pack", [X3, 2 * X3], {}, {"axis": -1}, None),
    "onnx Slice": ("onnx", "Slice", [X4], {1: [1, -2], 2: [2**63 - 1, 5], 3: [3, 1]}, {}, lambda s: s[:, -2:5, :, 1:]),
    "onnx Slice of opset 1 (attributes)": ("onnx", "Slice", [X4], {}, {"starts": [2], "ends": [-1], "axes": [2]}, lambda s: s[:, :, 2:-1]),
    "tf GatherV2 each index repeated (an upsampling)": ("tf", "GatherV2", [X4], {1: np.repeat(np.arange(5), 3), 2: 2}, {}, lambda s: np.repeat(s, 3, axis=2)),
    "onnx Gather each index repeated (an upsampling)": ("onnx", "Gather", [X4], {1: [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]}, {"axis": 2}, lambda s: np.repeat(s, 2, axis=2)),
    "onnx Gather one": ("onnx", "Gather", [X4], {1: np.int64(-1)}, {"axis": 2}, lambda s: s[:, :, -1]),
    "onnx Unsqueeze": ("onnx", "Unsqueeze", [X3], {1: [1, -1]}, {}, lambda s: s[:, None, :, :, None]),
    "onnx Squeeze": ("onnx", "Squeeze", [X4[:, :, :1]], {1: [2]}, {}, lambda s: s[:, :, 0]),
    "keras RepeatVector": ("keras", "RepeatVector", [X2], {}, {"n": 3}, lambda s: np.repeat(s[:, None], 3, axis=1)),
    "keras Cropping1D": ("keras", "Cropping1D", [X3], {}, {"cropping": [1, 2]}, lambda s: s[:, 1:-2]),
    "keras Cropping3D": ("keras", "Cropping3D", [X5], {}, {"cropping": [[1, 0], [0, 1], [1, 1]]}, lambda s: s[:, 1:, :-1, 1:-1]),
    "keras UpSampling1D": ("keras", "UpSampling1D", [X3], {}, {"size": 3}, lambda s: np.repeat(s, 3, axis=1)),
    "keras UpSampling3D": ("keras", "UpSampling3D", [X5], {}, {"size": [1, 2, 3]}, lambda s: np.repeat(np.repeat(s, 2, axis=2), 3, axis=3)),
    "keras CenterCrop": ("keras", "CenterCrop", [X4], {}, {"height": 3, "width": 4}, lambda s: s[:, 1:4, 0:4]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_emitted_nodes_compute_the_source_op(case):
    framework, kind, arrays, constants, attrs, source_op = CASES[case]
    op, rule = im.rules(framework)[kind]
    emitted = rule.convert(_foreign(framework, kind, arrays, constants, attrs))
    channels_last = framework != "onnx"
    if source_op is None:  # Pack: NumPy's stack of the inputs
        source_op = lambda *s: np.stack(s, attrs["axis"])  # noqa: E731
    expected = _to_tfn(source_op(*arrays), channels_last)
    (got,) = _run(emitted, op, [_to_tfn(a, channels_last) for a in arrays])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("framework", "kind", "constants", "attrs", "pieces"),
    [
        ("tf", "Split", {0: 3}, {"num_split": 2}, lambda s: np.split(s, 2, axis=3)),
        ("tf", "SplitV", {1: [1, -1, 2], 2: 1}, {}, lambda s: np.split(s, [1, 4], axis=1)),
        ("onnx", "Split", {1: [2, 4]}, {"axis": 1}, lambda s: np.split(s, [2], axis=1)),
        ("onnx", "Split", {}, {"axis": 2, "num_outputs": 2}, lambda s: np.split(s, [3], axis=2)),  # opset 18: the last piece smaller
    ],
)
def test_splits_against_numpy(framework, kind, constants, attrs, pieces):
    array = X4
    channels_last = framework != "onnx"
    op, rule = im.rules(framework)[kind]
    foreign = _foreign(framework, kind, [array], constants, attrs)
    if kind == "Split" and framework == "tf":  # TF's Split(axis, value): the constant comes first
        foreign = im.Foreign("tf", kind, "layer", attrs, foreign.inputs, foreign.weights, True, sources=("constant", "data"))
    got = _run(rule.convert(foreign), op, [_to_tfn(array, channels_last)])
    expected = [_to_tfn(p, channels_last) for p in pieces(array)]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize(("adj_x", "adj_y"), [(False, False), (True, False), (False, True), (True, True)])
def test_a_features_last_batched_matmul_swaps_its_inputs(adj_x, adj_y):
    a = rng.standard_normal((2, 4, 3) if adj_x else (2, 3, 4))
    b = rng.standard_normal((2, 5, 4) if adj_y else (2, 4, 5))
    expected = (np.swapaxes(a, 1, 2) if adj_x else a) @ (np.swapaxes(b, 1, 2) if adj_y else b)
    op, rule = im.rules("tf")["BatchMatMulV2"]
    emitted = rule.convert(_foreign("tf", "BatchMatMulV2", [a, b], attrs={"adj_x": adj_x, "adj_y": adj_y}))
    assert emitted.op == "matmul" and emitted.inputs == (1, 0)
    (got,) = _run(emitted, op, [_to_tfn(a, True), _to_tfn(b, True)])
    np.testing.assert_allclose(got, _to_tfn(expected, True), rtol=1e-12)


def test_an_onnx_matmul_by_a_constant_on_the_last_axis_of_a_rank_3_tensor():
    """The last axis moves to 1 for tfn's dense and back: MatMul(x [N, T, F], W [F, U]) + b is [N, T, U]."""
    x, kernel, bias = rng.standard_normal((2, 5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    op, rule = im.rules("onnx")["MatMul"]
    emitted = rule.convert(_foreign("onnx", "MatMul", [x], {1: kernel, 2: bias}))
    assert [emitted.op, *(e.op for e in emitted.then)] == ["transpose", "dense", "transpose"]
    (got,) = _run(emitted, op, [x])
    np.testing.assert_allclose(got, x @ kernel + bias, rtol=1e-12)


def test_an_onnx_matmul_of_two_computed_tensors_and_a_gather_within_each_sample():
    a, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 5, 2))
    op, rule = im.rules("onnx")["MatMul"]
    (got,) = _run(rule.convert(_foreign("onnx", "MatMul", [a, b])), op, [a, b])
    np.testing.assert_allclose(got, a @ b, rtol=1e-12)
    params, ids = rng.standard_normal((2, 5, 3)), np.array([[4, 0], [1, 1]])  # [N, T, F] features-last, ids [N, k]
    op, rule = im.rules("tf")["GatherV2"]
    emitted = rule.convert(_foreign("tf", "GatherV2", [params, ids], {2: 1}, {"batch_dims": 1}))
    (got,) = _run(emitted, op, [_to_tfn(params, True), ids])
    expected = np.stack([params[n][ids[n]] for n in range(2)])  # TF's batch_dims=1 along the time axis
    np.testing.assert_array_equal(got, _to_tfn(expected, True))


def test_attribute_renames():
    """ONNX Swish's alpha is tfn's beta; TF MaxPoolWithArgmax keeps TF's index formula (include_batch_in_index)."""
    op, rule = im.rules("onnx")["Swish"]
    assert (op, rule.convert(_foreign("onnx", "Swish", [X2], attrs={"alpha": 1.5})).attrs) == ("swish", {"beta": 1.5})
    op, rule = im.rules("tf")["MaxPoolWithArgmax"]
    attrs = {"ksize": [1, 2, 2, 1], "strides": [1, 2, 2, 1], "padding": "SAME", "include_batch_in_index": True, "Targmax": 9}
    expected = {"pool_size": [2, 2], "strides": [2, 2], "padding": "SAME", "include_batch_in_index": True}
    assert (op, rule.convert(_foreign("tf", "MaxPoolWithArgmax", [X4], attrs=attrs)).attrs) == ("max_pool_with_argmax", expected)


def test_casts_name_their_dtype():
    for framework, kind, attrs in (("tf", "Cast", {"DstT": 9}), ("onnx", "Cast", {"to": 11})):
        op, rule = im.rules(framework)[kind]
        assert op == "cast"
        emitted = rule.convert(_foreign(framework, kind, [X2], attrs=attrs))
        assert emitted.attrs == {"dtype": "int64" if framework == "tf" else "float64"}


@pytest.mark.parametrize(
    ("framework", "kind", "arrays", "constants", "attrs", "message"),
    [
        ("tf", "StridedSlice", [X4], {1: [0, 0], 2: [0, 6], 3: [1, 2]}, {"begin_mask": 1, "end_mask": 1}, "step 2 on axis 1: tfn's slice takes every element"),
        ("tf", "StridedSlice", [X4], {1: [1], 2: [2], 3: [1]}, {}, "an index of the batch axis"),
        ("tf", "GatherV2", [X4], {1: [0, 2], 2: 1}, {}, "indices [0, 2]: tfn's slice takes one run of consecutive indices"),
        ("onnx", "Gather", [X4], {1: [0, 0, 1, 1, 2, 2, 4, 4, 3, 3]}, {"axis": 2}, "indices [0, 0, 1, 1, 2, 2, 4, 4, 3, 3]: tfn's slice"),
        ("tf", "GatherV2", [np.zeros((2, 3), np.int64)], {0: np.zeros((5, 4)), 2: 0}, {}, "a lookup in a constant table (an embedding)"),
        ("onnx", "Gather", [X4, np.zeros((2, 3), np.int64)], {}, {"axis": 1}, "computed indices that pick across the batch"),
        ("tf", "BatchMatMulV2", [X5[..., 0], X5[..., 1]], {}, {}, "a rank-4 features-last product"),
        ("onnx", "MatMul", [X2, X2], {}, {}, "a product of two computed rank-2 tensors multiplies across the batch axis"),
        ("tf", "Squeeze", [X4], {}, {"squeeze_dims": [1]}, "axes [1] of a [6, 5, 4] sample are not all of size 1"),
        ("tf", "Tile", [X4], {1: [2, 1, 1, 1]}, {}, "multiples [2, 1, 1, 1] tile the batch axis"),
        ("tf", "ExpandDims", [X4], {1: 0}, {}, "a new axis before the batch axis"),
        ("tf", "Cast", [X2], {}, {"DstT": 10}, "to type code 10: tfn casts to"),
        ("keras", "CenterCrop", [X4], {}, {"height": 8, "width": 2}, "8x2 from a 6x5 image: Keras resizes an image smaller than the crop"),
        ("tf", "SplitV", [X4], {1: [2, 2], 2: 0}, {}, "a split of the batch axis"),
    ],
)
def test_plumbing_refusals_say_why(framework, kind, arrays, constants, attrs, message):
    _, rule = im.rules(framework)[kind]
    with pytest.raises(im.NoMapping, match=re.escape(message)):
        rule.convert(_foreign(framework, kind, arrays, constants, attrs))


# --- ONNX Resize, against onnxruntime ---------------------------------------------------


def _onnx_resize(tmp_path, attrs: dict, scales=None, sizes=None, shape=(1, 2, 5, 6)):
    """(the rule's Emitted or NoMapping, onnxruntime's output, the input) for one Resize node."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    inits, inputs = [], ["x", ""]
    if sizes is not None:
        inits.append(numpy_helper.from_array(np.asarray(sizes, np.int64), "sizes"))
        inputs += ["", "sizes"]
        attrs = {"axes": [2, 3], **attrs}
    else:
        inits.append(numpy_helper.from_array(np.asarray(scales, np.float32), "scales"))
        inputs += ["scales"]
    graph = helper.make_graph(
        [helper.make_node("Resize", inputs, ["y"], **attrs)], "r", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    path = tmp_path / "resize.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    x = rng.standard_normal(shape).astype(np.float32)
    (want,) = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})
    weights = [np.asarray(sizes, np.int64)] if sizes is not None else [np.asarray(scales, np.float32)]
    sources = ("data", "", "", "constant") if sizes is not None else ("data", "", "constant")
    foreign = im.Foreign("onnx", "Resize", "r", attrs, (TensorType((None, *shape[1:])),), tuple(weights), False, sources=sources)
    _, rule = im.rules("onnx")["Resize"]
    try:
        return rule.convert(foreign), want, x
    except im.NoMapping as exc:
        return exc, want, x


@pytest.mark.parametrize(
    ("attrs", "scales", "sizes"),
    [
        ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, [1, 1, 2, 0.5], None),
        ({"mode": "nearest", "coordinate_transformation_mode": "align_corners", "nearest_mode": "round_prefer_ceil"}, None, [8, 4]),
        ({"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn", "nearest_mode": "floor"}, None, [3, 9]),
        ({"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, None, [7, 4]),
        ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, [1, 1, 1.6, 2], None),
        ({"mode": "cubic", "coordinate_transformation_mode": "half_pixel", "cubic_coeff_a": -0.5, "exclude_outside": 1}, [1, 1, 2, 2], None),
        ({"mode": "cubic", "coordinate_transformation_mode": "align_corners"}, None, [9, 11]),
    ],
)
def test_an_onnx_resize_becomes_the_tf_resize_with_its_taps(tmp_path, attrs, scales, sizes):
    import torch

    from tfn import layers

    emitted, want, x = _onnx_resize(tmp_path, attrs, scales, sizes)
    assert isinstance(emitted, im.Emitted), emitted
    op = layers.get("resize")
    params = op.Params.model_validate(emitted.attrs)
    got = op.build(params, [TensorType((None, *x.shape[1:]))])([torch.from_numpy(x)], {}, False)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("attrs", "scales", "message"),
    [
        ({"mode": "cubic", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 1.5, 1.5], "TF 1.x's bicubic reads a 1024-step coefficient table"),
        ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "ceil"}, [1, 1, 2, 2], "nearest_mode ceil: no TF 1.x resize"),
        ({"mode": "linear", "antialias": 1}, [1, 1, 0.5, 0.5], "antialias: TF 1.x's resize does not filter"),
        ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, [1, 1, 2, 2], "coordinate_transformation_mode tf_crop_and_resize"),
        ({"mode": "nearest"}, [1, 2, 2, 2], "a resize of the batch or channel axis"),
    ],
)
def test_an_onnx_resize_tfn_cannot_match_is_refused(tmp_path, attrs, scales, message):
    refused, _, _ = _onnx_resize(tmp_path, attrs, scales, shape=(1, 2, 4, 6))
    assert isinstance(refused, im.NoMapping) and message in str(refused), refused


def test_tf_constants_written_short_are_read_whole():
    """TF writes a constant's repeated tail once and all zeros as no value (TF 2's frozen shapes hold such)."""
    from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2

    from tfn.runners.importers.tensorflow import _layer_path, _tensor_value

    def proto(dtype, shape, **values):
        dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]
        return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims), **values)

    np.testing.assert_array_equal(_tensor_value(proto(types_pb2.DT_INT32, [3])), np.zeros(3, np.int32))
    np.testing.assert_array_equal(_tensor_value(proto(types_pb2.DT_INT32, [4], int_val=[1, 2])), [1, 2, 2, 2])
    np.testing.assert_array_equal(_tensor_value(proto(types_pb2.DT_FLOAT, [2, 2], float_val=[0.5])), np.full((2, 2), 0.5, np.float32))
    np.testing.assert_array_equal(_tensor_value(proto(types_pb2.DT_INT64, [2], int64_val=[7, 8])), [7, 8])
    assert _layer_path("model/conv/convolution/ReadVariableOp/resource") == "model/conv/convolution"
    assert _layer_path("block/conv/kernel") == "block/conv"


@pytest.mark.parametrize(
    ("kind", "config", "weights", "keras"),
    [
        ("Rescaling", {"scale": 1 / 255}, [], lambda x: x * (1 / 255)),
        ("Rescaling", {"scale": {"class_name": "__numpy__", "config": {"value": [0.5, 2.0, 1.0]}}, "offset": -1.0}, [], lambda x: x * np.array([0.5, 2.0, 1.0]) - 1.0),
        ("Normalization", {"axis": [-1]}, [np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.09, 0.25]), np.int64(9)], lambda x: (x - [1.0, -2.0, 0.5]) / np.sqrt([4.0, 0.09, 0.25])),
        ("Normalization", {"axis": None, "mean": 3.0, "variance": 2.25}, [], lambda x: (x - 3.0) / 1.5),
    ],
)
def test_keras_preprocessing_steps_compute_the_layer(kind, config, weights, keras):
    """The steps on a channels-first batch equal Keras's layer on the features-last one."""
    from tfn.runners.importers.keras import PREPROCESSING

    x = rng.uniform(-3, 3, (2, 4, 5, 3))  # NHWC
    steps = PREPROCESSING[kind](config, weights, TensorType((None, 3, 4, 5)))
    batch = np.moveaxis(x, -1, 1).astype(np.float32)
    for step in steps:
        batch = step.apply(batch)
    np.testing.assert_allclose(batch, np.moveaxis(keras(x), -1, 1), rtol=1e-5, atol=1e-4)


def test_keras_preprocessing_epsilon_and_refusals():
    from tfn.runners.importers.keras import PREPROCESSING

    image = TensorType((None, 3, 4, 5))
    (constant_channel,) = PREPROCESSING["Normalization"]({"axis": -1}, [np.zeros(3), np.array([1.0, 0.0, 4.0])], image)
    assert constant_channel.std == [1.0, 1e-7, 2.0]  # Keras's max(sqrt(variance), epsilon)
    with pytest.raises(im.NoMapping, match=re.escape("axis [1, 2]: tfn's preprocessing normalises per feature (Keras's last axis) or with one mean")):
        PREPROCESSING["Normalization"]({"axis": [1, 2]}, [np.zeros((4, 5)), np.ones((4, 5))], image)
    with pytest.raises(im.NoMapping, match=re.escape("scale [-1.0]: tfn's preprocessing divides by positive numbers")):
        PREPROCESSING["Rescaling"]({"scale": -1.0}, [], image)
    with pytest.raises(im.NoMapping, match="the layer was never adapted"):
        PREPROCESSING["Normalization"]({"axis": -1}, [], image)
