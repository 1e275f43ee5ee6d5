"""ONNX export writes an lstm over sequence lengths as one ONNX LSTM with sequence_lens (Op.build_onnx),
and `tfn import` maps it back."""

from __future__ import annotations

import numpy as np
import pytest

onnxruntime = pytest.importorskip("onnxruntime")

# both conventions (tf1's forget_bias folded into ONNX's bias), every output
LSTM_SPEC = """
version: 1
name: onnx_lstm
model:
  inputs:
    seq: {shape: [5, 6]}
    length: {shape: [], dtype: int64}
  layers:
    - {name: keras, op: lstm, units: 4, return_sequences: true, return_state: true, inputs: [seq, length]}
    - {name: tf1, op: lstm, units: 3, convention: tf1, forget_bias: 0.5, return_state: true, inputs: [seq, length]}
    - {name: total, op: concat, axis: 1, inputs: [keras:1, keras:2, tf1, tf1:1, tf1:2]}
loss: {op: mean_squared_error, predictions: total, labels: target}
data: {source: synthetic, fields: {seq: {shape: [5, 6]}, length: {shape: [], dtype: int64}, target: {shape: [23]}}}
"""

LENGTHS = np.array([1, 6, 3, 0, 5])  # one step, the full six, between, none


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import onnx
    import torch

    from tfn.runners.api import export_onnx
    from tfn.runners.session import load_model

    tmp_path = tmp_path_factory.mktemp("onnx_lstm")
    (tmp_path / "spec.yaml").write_text(LSTM_SPEC)
    model = load_model(tmp_path / "spec.yaml")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # biases away from zero: the gate order and forget_bias show
        for value in model.variables().values():
            value.add_(torch.rand(value.shape, generator=generator) - 0.5)
    path = export_onnx(model, tmp_path / "model.onnx")
    feeds = {"seq": np.random.default_rng(0).standard_normal((len(LENGTHS), 5, 6)).astype(np.float32), "length": LENGTHS}
    return model, path, onnx.load(str(path)), feeds


def test_an_lstm_over_lengths_is_one_onnx_lstm(exported):
    _, _, proto, _ = exported
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 2 and "Loop" not in ops
    for node in (n for n in proto.graph.node if n.op_type == "LSTM"):
        assert node.input[4] and {a.name: a.i for a in node.attribute if a.name == "hidden_size"}["hidden_size"] in (4, 3)


@pytest.mark.parametrize("change", [{"go_backwards": True}, {"bidirectional": "concat"}, "no lengths"])
def test_other_lstms_export_as_their_kernel(change):
    """ONNX's reverse direction reverses the padded sequence, not each one within its length: only forward runs over lengths."""
    from tfn.layers import TensorType, get

    op = get("lstm")
    params = op.Params(units=2, **(change if isinstance(change, dict) else {}))
    inputs = [TensorType((None, 3, 4), "float32")] + ([TensorType((None,), "int64")] if change != "no lengths" else [])
    assert op.build_onnx(params, inputs) is None
    assert op.build_onnx(op.Params(units=2), [TensorType((None, 3, 4), "float32"), TensorType((None,), "int64")]) is not None


def test_onnx_lstm_computes_what_tfn_computes(exported):
    from tfn.runners.session import run

    model, path, _, feeds = exported
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)
    want = list(run(model, feeds).values.values())
    assert len(got) == len(want) == 1
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-5)
    keras, h, c = (run(model, feeds, [f"keras:{k}"]).values[f"keras:{k}"] for k in range(3))
    np.testing.assert_array_equal(keras[3], 0)  # an empty sequence: zeros, and zero states
    np.testing.assert_array_equal(keras[0, :, 1:], 0)  # past its one step
    np.testing.assert_array_equal(h, keras[np.arange(len(LENGTHS)), :, np.maximum(LENGTHS - 1, 0)])


def test_the_onnx_lstm_node_is_the_lstm_with_lengths(exported):
    """tfn::lstm's own arithmetic (ONNX's gate order i, o, f, c) against a float64 NumPy LSTM with lengths."""
    import torch

    from tfn.layers.onnx_nodes import lstm

    rng = np.random.default_rng(1)
    t, n, f, u = 6, 5, 3, 2
    x, w, r, b = rng.standard_normal((t, n, f)), rng.standard_normal((1, 4 * u, f)), rng.standard_normal((1, 4 * u, u)), rng.standard_normal((1, 8 * u))
    y, y_h, y_c = lstm(*(torch.from_numpy(a) for a in (x, w, r, b)), torch.from_numpy(LENGTHS.astype(np.int32)), u)

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    for sample, length in enumerate(LENGTHS):
        h, c = np.zeros(u), np.zeros(u)
        for step in range(t):
            if step < length:
                gates = w[0] @ x[step, sample] + r[0] @ h + b[0, : 4 * u] + b[0, 4 * u :]
                i, o, forget, candidate = np.split(gates, 4)
                c = sigmoid(forget) * c + sigmoid(i) * np.tanh(candidate)
                h = sigmoid(o) * np.tanh(c)
            np.testing.assert_allclose(y[step, 0, sample].numpy(), h if step < length else 0, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y_h[0, sample].numpy(), h, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y_c[0, sample].numpy(), c, rtol=1e-12, atol=1e-12)


def test_the_importer_maps_the_onnx_lstm_back(exported, tmp_path):
    """The keras-convention lstm comes back with its variables; tf1's as a keras-convention lstm computing the same."""
    from tfn.runners.importers import read, write
    from tfn.runners.inspect import read_tensors
    from tfn.runners.session import load_model, run

    model, path, _, feeds = exported
    imported = read(path)
    ops = {r["node"]: r["op"] for r in imported.builder.records}
    assert ops["keras"] == ops["tf1"] == "lstm"
    write(imported, tmp_path / "imported")
    back = load_model(tmp_path / "imported")
    keras = next(n for n in back.graph.nodes if n.name == "keras")
    # the export leaves out the sequence nobody reads: the final h and c come back, over the lengths input
    assert (keras.params.units, keras.params.return_sequences, keras.params.return_state, len(keras.inputs)) == (4, False, True, 2)
    weights = read_tensors(tmp_path / "imported")
    for role in ("kernel", "recurrent_kernel", "bias"):
        np.testing.assert_array_equal(weights[f"keras/{role}"], model.variables()[f"keras/{role}"].detach().numpy())
    got = run(back, feeds, imported.outputs).values
    want = run(model, feeds).values
    np.testing.assert_allclose(next(iter(got.values())), next(iter(want.values())), rtol=0, atol=1e-5)
