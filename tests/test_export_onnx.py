"""`tfn export-graph --format onnx`: parity through onnxruntime for every example, weights, unexportable ops."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfn.specs import example_names

onnxruntime = pytest.importorskip("onnxruntime")

NET_SPEC = """
version: 1
name: net
model:
  inputs:
    image: {shape: [1, 4, 4]}
  layers:
    - {name: conv, op: conv2d, filters: 2, kernel_size: 3, padding: SAME}
    - {name: act, op: relu}
    - {name: mix, op: conv2d, filters: 2, kernel_size: 1}
    - {name: flat, op: flatten}
    - {name: logits, op: dense, units: 3}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits, batch_size: 4}
train: {epochs: 1}
"""


@pytest.fixture
def net(write_spec):
    return write_spec(NET_SPEC)


def onnx_parity(model, path) -> None:
    """The ONNX file at `path` computes what `tfn run` computes, within 1e-5, for batches of 1 and 5."""
    import onnx

    from tfn.runners.session import run

    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch dimension is dynamic
        rng = np.random.default_rng(batch)
        types = {i.name: i.type for i in model.graph.inputs}
        feeds = {}
        for i in session.get_inputs():
            shape, dtype = [batch, *types[i.name].shape[1:]], np.dtype(types[i.name].dtype)
            feeds[i.name] = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else rng.integers(0, 2, shape).astype(dtype)
        expected = run(model, feeds).values
        for output, value in zip(session.get_outputs(), session.run(None, feeds)):
            np.testing.assert_allclose(value, expected[output.name], atol=1e-5, rtol=1e-5)


def test_there_are_examples_to_check():
    assert "digits_cnn" in example_names()


@pytest.mark.slow
@pytest.mark.parametrize("name", example_names())
def test_onnx_parity_for_every_example(name, tmp_path):
    from tfn.runners.api import export_onnx
    from tfn.runners.session import load_model

    model = load_model(name)
    onnx_parity(model, export_onnx(model, tmp_path / f"{name}.onnx"))


def test_onnx_embeds_the_checkpoint(net, tfn_cli, tmp_path):
    import onnx
    import torch

    from tfn.runners.checkpoint import save
    from tfn.runners.session import load_model

    initial = load_model(net)
    trained = {name: torch.full_like(t, 0.25) for name, t in initial.variables().items()}
    save(tmp_path / "ckpt.safetensors", trained, step=3, epoch=1, graph_hash=initial.graph.hash)
    code, _, err = tfn_cli("export-graph", str(net), "-o", str(tmp_path / "m.onnx"), "--checkpoint", str(tmp_path / "ckpt.safetensors"))
    assert code == 0, err
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [i.name for i in proto.graph.input] == ["image"]  # labels are not needed for the logits
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert metadata["tfn.graph_hash"] == initial.graph.hash
    # how image files become the input is stated, not baked in: the record a run writes as preprocessing.json
    assert json.loads(metadata["tfn.preprocessing"]) == {
        "format": "tfn.preprocessing",
        "version": 1,
        "fields": {"image": [{"kind": "image", "size": [8, 8], "color": "grayscale"}, {"kind": "scale", "divide_by": 255.0}]},
    }
    onnx_parity(load_model(net, tmp_path / "ckpt.safetensors"), tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.ones((1, 1, 4, 4), np.float32)
    # with every weight 0.25 the network is a hand-computable sum: check one logit
    taps = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])
    act = np.maximum(0.25 * taps + 0.25, 0)  # conv then relu, each of the 2 channels alike
    inner = 2 * 0.25 * act + 0.25  # the 1x1 conv sums the 2 channels
    logit = 0.25 * 2 * inner.sum() + 0.25
    np.testing.assert_allclose(session.run(None, {"image": x})[0], np.full((1, 3), logit), rtol=1e-6)


@pytest.fixture
def data_dependent_op():
    """A temporary op whose kernel branches on a tensor's value: torch cannot export it."""
    from tfn.layers import base

    class DataDependent(base.Op):
        name = "test_data_dependent"
        family = "test"

        def infer(self, p, inputs):
            return [inputs[0]]

        def build(self, p, inputs):
            def kernel(xs, v, training):
                return xs[0] if float(xs[0].sum()) > 0 else -xs[0]

            return kernel

    base.register(DataDependent)
    yield DataDependent.name
    del base._REGISTRY[DataDependent.name]


def test_an_op_without_onnx_form_is_named(data_dependent_op, tfn_cli, tmp_path):
    from tfn.layers import TensorType
    from tfn.specs.graph import Graph, Input, Node

    x = TensorType((None, 4))
    graph = Graph(
        name="odd",
        inputs=(Input("x", x),),
        nodes=(Node("first", "relu", {}, ("x",), outputs=(x,)), Node("branchy", data_dependent_op, {}, ("first",), outputs=(x,))),
        variables=(),
        outputs=("branchy",),
    )
    (tmp_path / "graph.json").write_text(graph.to_json())
    code, _, err = tfn_cli("export-graph", str(tmp_path / "graph.json"), "-o", str(tmp_path / "odd.onnx"))
    assert code == 2, err
    assert "error: node 'branchy' (op test_data_dependent) has no ONNX form" in err
    assert "Traceback" not in err and len(err) < 1000
    assert not (tmp_path / "odd.onnx").exists()
