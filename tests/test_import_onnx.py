"""ONNX import: `tfn export-graph -> tfn import` of every shipped example gives the model back."""

from __future__ import annotations

import numpy as np
import pytest

from tfn.specs import example_names


def _trained_like(name: str):
    """The example with every variable moved away from its initial value (biases, BN statistics included)."""
    import torch

    from tfn.runners.session import load_model

    model = load_model(name)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for variable_name, value in model.variables().items():
            value.add_(torch.rand(value.shape, generator=generator) * 0.2 + (0.5 if "variance" in variable_name else 0.0))
    return model


@pytest.mark.parametrize("name", example_names())
def test_export_then_import_gives_the_model_back(name, tmp_path):
    from tfn.runners.api import export_onnx
    from tfn.runners.importers import read, write
    from tfn.runners.inspect import read_tensors
    from tfn.runners.session import load_model, run

    original = _trained_like(name)
    export_onnx(original, tmp_path / "model.onnx")
    imported = read(tmp_path / "model.onnx")
    write(imported, tmp_path / "imported")
    model = load_model(tmp_path / "imported")
    assert {v.name: v.shape for v in model.graph.variables} == {v.name: v.shape for v in original.graph.variables}
    assert model.graph.parameter_counts() == original.graph.parameter_counts()
    weights = read_tensors(tmp_path / "imported")
    for variable_name, value in original.variables().items():
        np.testing.assert_array_equal(weights[variable_name], value.detach().numpy())
    rng = np.random.default_rng(0)
    ranges = original.graph.integer_input_ranges()  # ids and lengths (text_lstm): each in its range
    feeds = {
        i.name: rng.integers(*ranges[i.name], (3, *i.type.sample_shape)) if i.name in ranges else rng.standard_normal((3, *i.type.sample_shape)).astype(np.float32)
        for i in original.graph.inputs
        if i.name in imported.builder.inputs
    }
    want = run(original, feeds, list(original.graph.outputs)).values
    got = run(model, feeds, imported.outputs).values
    for output, node in zip(original.graph.outputs, imported.outputs):
        np.testing.assert_allclose(got[node], want[output], rtol=0, atol=1e-5)


def test_an_onnx_model_from_elsewhere(tmp_path):
    """Names as PyTorch's exporters write them (`fc.weight`), Gemm without transB, MatMul + Add, Flatten, and --verify."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tfn.runners.importers import read, write
    from tfn.runners.importers.verify import verify

    rng = np.random.default_rng(0)
    conv_w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    conv_b = rng.standard_normal(4).astype(np.float32)
    fc_w = rng.standard_normal((4 * 3 * 3, 5)).astype(np.float32)  # [in, out]: Gemm with transB 0
    fc_b = rng.standard_normal(5).astype(np.float32)
    out_w = rng.standard_normal((5, 3)).astype(np.float32)
    out_b = rng.standard_normal(3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "features.0.weight", "features.0.bias"], ["c"], kernel_shape=[3, 3], pads=[0, 0, 0, 0], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["s"]),
        helper.make_node("MatMul", ["s", "out.weight"], ["m"]),
        helper.make_node("Add", ["m", "out.bias"], ["y"]),
        helper.make_node("Softmax", ["y"], ["p"], axis=-1),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((conv_w, "features.0.weight"), (conv_b, "features.0.bias"), (fc_w, "fc.weight"), (fc_b, "fc.bias"), (out_w, "out.weight"), (out_b, "out.bias"))]
    graph = helper.make_graph(
        nodes, "other", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 7, 7])], [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 3])], inits
    )
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    imported = read(path)
    write(imported, tmp_path / "m")
    names = {(r["source"], r["op"], r["node"]) for r in imported.builder.records}
    assert {n for _, _, n in names} >= {"features_0", "fc", "out"}
    (difference,) = verify(imported, tmp_path / "m", samples=4)
    assert difference.max_abs < 1e-5, difference
    # the softmax output takes the sparse cross-entropy on its logits by default
    assert [(loss.op, loss.logits) for loss in imported.losses] == [("sparse_softmax_cross_entropy_with_logits", "out")]


def test_a_grouped_convolution_is_refused_with_its_reason(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tfn.runners.importers import ImportFailed, read

    w = numpy_helper.from_array(np.zeros((4, 2, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=2, kernel_shape=[3, 3], name="grouped")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3, 3])],
        [w],
    )
    path = tmp_path / "grouped.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ImportFailed, match=r"Conv 'grouped' \(node 0 of the graph\): group 2: tfn has plain and depthwise \(2-D\) convolutions"):
        read(path)


def test_a_node_of_constants_only_that_the_reader_does_not_evaluate_is_refused_by_name(tmp_path):
    """Sigmoid of an initializer: no data input to map from (it once ended in an IndexError)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tfn.runners.importers import ImportFailed, read

    c = numpy_helper.from_array(np.ones((1, 3), np.float32), "c")
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["c"], ["s"], name="gate"), helper.make_node("Mul", ["x", "s"], ["y"], name="gated")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [c],
    )
    path = tmp_path / "constants.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ImportFailed, match=r"Sigmoid 'gate' \(node 0 of the graph\): every input is a constant: arithmetic on constants that the importer does not evaluate"):
        read(path)


@pytest.mark.parametrize("crop_channels", [False, True])
def test_a_bias_added_after_the_crop_of_a_conv_transpose_is_its_bias(crop_channels, tmp_path):
    """ConvTranspose, Slices cropping H and W, Add of a [C, 1, 1] bias (as tfn's export writes conv2d_transpose with
    SAME padding): the bias is the conv2d_transpose's; a Slice of the channels between them stops that."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from tfn.runners.importers import ImportFailed, read, write
    from tfn.runners.session import load_model, run

    rng = np.random.default_rng(4)
    kernel, bias = rng.standard_normal((3, 4, 3, 3)).astype(np.float32), rng.standard_normal((4, 1, 1)).astype(np.float32)
    ints = {n: numpy_helper.from_array(np.asarray(v, np.int64), n) for n, v in (("zero", [0]), ("four", [4]), ("h", [2]), ("w", [3]), ("c", [1]), ("three", [3]))}
    second = ["t1", "zero", "three", "c"] if crop_channels else ["t1", "zero", "four", "w"]
    nodes = [
        helper.make_node("ConvTranspose", ["x", "deconv/kernel"], ["t"], strides=[2, 2], kernel_shape=[3, 3], name="deconv"),
        helper.make_node("Slice", ["t", "zero", "four", "h"], ["t1"], name="crop_h"),
        helper.make_node("Slice", second, ["t2"], name="crop_w"),
        helper.make_node("Add", ["t2", "deconv/bias"], ["y"], name="bias"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 2, 2])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(kernel, "deconv/kernel"), numpy_helper.from_array(bias, "deconv/bias"), *ints.values()],
    )
    path = tmp_path / "deconv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    if crop_channels:
        with pytest.raises(ImportFailed, match=r"Add 'bias' \(node 3 of the graph\): a constant operand of shape \[4, 1, 1\]"):
            read(path)
        return
    write(read(path), tmp_path / "m")
    model = load_model(tmp_path / "m")
    assert {v.name: v.shape for v in model.graph.variables} == {"deconv/kernel": (3, 4, 3, 3), "deconv/bias": (4,)}
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    (want,) = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    (node,) = model.graph.outputs
    np.testing.assert_allclose(run(model, {"x": x}, [node]).values[node], want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("ids_shape", [(5,), (4, 3)])
def test_a_gather_of_computed_ids_from_an_initializer_table_is_an_embedding(ids_shape, tmp_path):
    """ONNX Gather(table [V, D] initializer, integer ids [N, ...]) on axis 0 (PyTorch's nn.Embedding, tfn's own
    embedding) is tfn's embedding with that table, its [N, D, ...] transposed to Gather's [N, ..., D]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tfn.runners.importers import read, write
    from tfn.runners.session import load_model, run

    table = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["embed.weight", "ids"], ["vectors"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", *ids_shape[1:]])],
        [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["N", *ids_shape[1:], 3])],
        [numpy_helper.from_array(table, "embed.weight")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "lookup.onnx"))
    imported = read(tmp_path / "lookup.onnx")
    write(imported, tmp_path / "m")
    model = load_model(tmp_path / "m")
    assert [(r["op"], r["node"]) for r in imported.builder.records] == [("embedding", "embed")] + [("transpose", "embed_transpose")] * (len(ids_shape) > 1)
    assert {v.name: v.shape for v in model.graph.variables} == {"embed/embeddings": (7, 3)}
    ids = np.array([0, 6, 3, 3, 1, 2, 5, 4, 0, 1, 2, 6][: int(np.prod(ids_shape))]).reshape(ids_shape)
    (got,) = run(model, {"ids": ids}, imported.outputs).values.values()
    np.testing.assert_array_equal(got, table[ids])
