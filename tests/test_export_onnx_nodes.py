"""ONNX export writes local_response_normalization as ONNX's LRN and resize as ONNX's Resize (Op.build_onnx)."""

from __future__ import annotations

import numpy as np
import pytest

onnxruntime = pytest.importorskip("onnxruntime")

# every corner rule ONNX's Resize computes, chained through up- and down-sampling; three LRNs (TF's defaults, AlexNet's)
NODES_SPEC = """
version: 1
name: onnx_nodes
model:
  inputs:
    image: {shape: [6, 4, 5]}
  layers:
    - {name: lrn, op: local_response_normalization, depth_radius: 2, bias: 2.0, alpha: 0.3, beta: 0.75}
    - {name: lrn_defaults, op: local_response_normalization}
    - {name: lrn_alexnet, op: local_response_normalization, depth_radius: 2, bias: 2.0, alpha: 1.0e-4, beta: 0.75}
    - {name: nearest, op: resize, size: [7, 9], method: NEAREST}
    - {name: nearest_corners, op: resize, size: [5, 6], method: NEAREST, align_corners: true}
    - {name: nearest_centres, op: resize, size: [10, 12], method: NEAREST, half_pixel_centers: true}   # x2: also TF's default rule
    - {name: bilinear, op: resize, size: [6, 8], method: BILINEAR}
    - {name: bilinear_corners, op: resize, size: [3, 11], method: BILINEAR, align_corners: true}
    - {name: bilinear_centres, op: resize, size: [8, 7], method: BILINEAR, half_pixel_centers: true}
loss: {op: mean_squared_error, predictions: bilinear_centres, labels: target}
data: {source: synthetic, fields: {image: {shape: [6, 4, 5]}, target: {shape: [6, 8, 7]}}}
"""

# TF 1.x's bicubic (a coefficient table) and area are no ONNX Resize: they export as their arithmetic
DECOMPOSED_SPEC = """
version: 1
name: decomposed
model:
  inputs:
    image: {shape: [2, 4, 5]}
  layers:
    - {name: bicubic, op: resize, size: [7, 3], method: BICUBIC, align_corners: true}
    - {name: area, op: resize, size: [3, 8], method: AREA}
loss: {op: mean_squared_error, predictions: area, labels: target}
data: {source: synthetic, fields: {image: {shape: [2, 4, 5]}, target: {shape: [2, 3, 8]}}}
"""


def _export(spec, tmp_path):
    import onnx

    from tfn.runners.api import export_onnx
    from tfn.runners.session import load_model

    model = load_model(spec)
    path = export_onnx(model, tmp_path / "model.onnx")
    return model, path, onnx.load(str(path))


def _onnxruntime_and_tfn(model, path, batch=3):
    from tfn.runners.session import run

    rng = np.random.default_rng(batch)
    image = next(i for i in model.graph.inputs if i.name == "image")
    feeds = {"image": rng.standard_normal((batch, *image.type.sample_shape)).astype(np.float32)}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, feeds)
    (want,) = run(model, feeds).values.values()
    return feeds["image"], got, want


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from textwrap import dedent

    tmp_path = tmp_path_factory.mktemp("onnx_nodes")
    spec = tmp_path / "spec.yaml"
    spec.write_text(dedent(NODES_SPEC))
    return _export(spec, tmp_path)


def test_lrn_and_resize_are_onnx_nodes(exported):
    model, path, proto = exported
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LRN") == 3 and ops.count("Resize") == 6
    assert not {"Pow", "AveragePool", "Div", "Gather", "ReduceSum"} & set(ops), ops
    lrn = {a.name: a for a in next(n for n in proto.graph.node if n.op_type == "LRN").attribute}
    # ONNX divides alpha by the window, as PyTorch does: TF's alpha 0.3 over a window of 5
    assert (lrn["size"].i, lrn["bias"].f, lrn["beta"].f) == (5, 2.0, 0.75)
    assert lrn["alpha"].f == pytest.approx(0.3 * 5)
    modes = [{a.name: a.s.decode() for a in n.attribute if a.type == a.STRING} for n in proto.graph.node if n.op_type == "Resize"]
    # nearest_mode only matters in mode nearest (onnxscript writes its default on the others)
    assert [(m["mode"], m["coordinate_transformation_mode"], m["nearest_mode"] if m["mode"] == "nearest" else None) for m in modes] == [
        ("nearest", "asymmetric", "floor"),
        ("nearest", "align_corners", "round_prefer_ceil"),
        ("nearest", "half_pixel", "round_prefer_ceil"),
        ("linear", "asymmetric", None),
        ("linear", "align_corners", None),
        ("linear", "half_pixel", None),
    ]


def test_the_onnx_nodes_compute_what_tfn_computes(exported):
    model, path, _ = exported
    for batch in (1, 3):  # the batch stays dynamic
        _, got, want = _onnxruntime_and_tfn(model, path, batch)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_onnx_lrn_is_tfs_lrn(write_spec, tmp_path):
    from tests.test_ops_tensor import lrn_reference

    layers, _ = NODES_SPEC.split("    - {name: nearest,")
    spec = layers + "loss: {op: mean_squared_error, predictions: lrn_alexnet, labels: target}\ndata: {source: synthetic, fields: {image: {shape: [6, 4, 5]}, target: {shape: [6, 4, 5]}}}\n"
    model, path, proto = _export(write_spec(spec), tmp_path)
    assert [n.op_type for n in proto.graph.node] == ["LRN", "LRN", "LRN"]
    x, got, want = _onnxruntime_and_tfn(model, path)
    # TF's definition in float64: alpha on the plain sum of squares (TF's defaults: radius 5, bias 1, alpha 1, beta 0.5)
    reference = lrn_reference(lrn_reference(lrn_reference(x.astype(np.float64), 2, 2.0, 0.3, 0.75), 5, 1.0, 1.0, 0.5), 2, 2.0, 1e-4, 0.75)
    np.testing.assert_allclose(got, reference, rtol=1e-5)
    np.testing.assert_allclose(want, reference, rtol=1e-5)


def test_the_importer_maps_each_resize_and_lrn_back_to_its_parameters(exported, tmp_path):
    """The same parameters, alpha 1e-4 included (ONNX stores float32: read back as its shortest decimal)."""
    from tfn.runners.importers import read, write
    from tfn.runners.session import load_model

    model, path, _ = exported
    write(read(path), tmp_path / "imported")
    imported = load_model(tmp_path / "imported")
    assert [(n.op, n.params) for n in imported.graph.nodes] == [(n.op, n.params) for n in model.graph.nodes]


@pytest.mark.parametrize("method", ["NEAREST", "BILINEAR"])
@pytest.mark.parametrize("align_corners, half_pixel_centers", [(False, False), (True, False), (False, True)])
def test_onnx_resize_is_tfs_resize_up_and_down(method, align_corners, half_pixel_centers):
    """Each claimed corner rule, as the ONNX Resize tfn writes (sizes of H and W), against tfn's kernel."""
    import torch
    from onnx import TensorProto, helper

    from tfn.layers.resizing import onnx_resize_attributes, onnx_resize_computes, separable_resampler

    attributes = onnx_resize_attributes(method, align_corners, half_pixel_centers)
    rng = np.random.default_rng(0)
    for (h, w), out in [((4, 5), (7, 9)), ((7, 9), (4, 5)), ((5, 3), (13, 2)), ((1, 6), (3, 1)), ((8, 8), (16, 4)), ((11, 12), (6, 13)), ((6, 4), (6, 7))]:
        assert onnx_resize_computes(method, align_corners, half_pixel_centers, (h, w), out)
        sizes = helper.make_tensor("sizes", TensorProto.INT64, [2], list(out))
        node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], axes=[2, 3], **attributes)
        graph = helper.make_graph(
            [node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [sizes]
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
        (got,) = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
        want = separable_resampler(method, (h, w), out, align_corners, half_pixel_centers)(torch.from_numpy(x)).numpy()
        if method == "NEAREST":
            np.testing.assert_array_equal(got, want)  # a copy of the same pixel
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)  # the same taps; float32 rounding in another order


def test_bicubic_and_area_keep_their_arithmetic(write_spec, tmp_path):
    from tfn.layers.resizing import onnx_resize_attributes

    assert onnx_resize_attributes("BICUBIC", True, False) is None and onnx_resize_attributes("AREA", False, False) is None
    model, path, proto = _export(write_spec(DECOMPOSED_SPEC), tmp_path)
    assert "Resize" not in {n.op_type for n in proto.graph.node}
    _, got, want = _onnxruntime_and_tfn(model, path)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
