"""Sequence models through every command: check, train, eval, run, time, ONNX and TensorBoard export,
with token ids and lengths from data fields, a padding mask as sample_weight, and regression weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

STEPS, VOCAB = 12, 10


def order_task(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Right-padded token sequences; the label says whether token 3 comes before token 5 (word order matters)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, STEPS + 1, size=n)
    tokens = np.zeros((n, STEPS), dtype=np.int64)
    labels = np.zeros(n, dtype=np.int64)
    for i, length in enumerate(lengths):
        row = rng.integers(6, VOCAB, size=length)
        a, b = rng.choice(length, size=2, replace=False)
        row[a], row[b] = 3, 5
        tokens[i, :length] = row
        labels[i] = int(a < b)
    tags = np.where(tokens >= 6, 1, np.where(tokens == 0, 0, 2))  # a per-token class, 0 on padding
    mask = (np.arange(STEPS)[None, :] < lengths[:, None]).astype(np.float32)
    return {"tokens": tokens, "length": lengths.astype(np.int64), "label": labels, "tags": tags.astype(np.int64), "mask": mask}


CLASSIFIER = """
version: 1
name: order
model:
  inputs:
    tokens: {shape: [12], dtype: int64}
    length: {shape: [], dtype: int64}
  layers:
    - {name: embed, op: embedding, input_dim: 10, output_dim: 8, inputs: [tokens]}
    - {name: rnn, op: lstm, units: 16, bidirectional: concat, inputs: [embed, length]}
    - {name: logits, op: dense, units: 2}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label, metrics: [accuracy]}
optimizer: {type: adam, learning_rate: 0.01}
data: {source: npz, path: DATA, fields: {tokens: tokens, length: length, label: label}, batch_size: 32}
train: {epochs: 3, seed: 0}
"""

TAGGER = """
version: 1
name: tagger
model:
  inputs:
    tokens: {shape: [12], dtype: int64}
    mask: {shape: [12]}
  layers:
    - {name: embed, op: embedding, input_dim: 10, output_dim: 8, mask_zero: true, inputs: [tokens]}
    - {name: rnn, op: gru, units: 8, reset_after: false, return_sequences: true, inputs: [embed, "embed:1"]}
    - {name: logits, op: conv1d, filters: 3, kernel_size: 1}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: tags, sample_weight: mask, metrics: [token_accuracy, accuracy]}
optimizer: {type: adam, learning_rate: 0.02}
data: {source: npz, path: DATA, fields: {tokens: tokens, mask: mask, tags: tags}, batch_size: 32}
train: {epochs: 2, seed: 0}
"""


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "order.npz"
    np.savez(path, **order_task(300))
    return path


def metrics_of(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_text_classifier_through_every_command(data, write_spec, tfn_cli, tmp_path):
    spec = write_spec(CLASSIFIER.replace("DATA", str(data)))
    code, out, err = tfn_cli("check", str(spec))
    assert code == 0, err
    assert "rnn" in out and "[?, 32]" in out  # bidirectional concat: 2 x 16 units

    run_dir = tmp_path / "run"
    code, _, err = tfn_cli("train", str(spec), "--out", str(run_dir), "--quiet")
    assert code == 0, err
    losses = [m["loss"] for m in metrics_of(run_dir) if m.get("split") == "train" and "loss" in m]
    assert losses[-1] < losses[0]  # it learns

    code, out, err = tfn_cli("eval", str(run_dir), "--json")
    assert code == 0, err
    assert json.loads(out)["metrics"]["accuracy"] > 0.7  # word order learnt: a bag of words is at chance here

    # feed and fetch: the lengths travel with the ids; rnn:0 of a sequence longer than 1 differs from a cut one
    batch = order_task(4, seed=9)
    np.save(tmp_path / "tokens.npy", batch["tokens"])
    np.save(tmp_path / "length.npy", batch["length"])
    code, out, err = tfn_cli(
        "run", str(run_dir), "--feed", f"tokens={tmp_path / 'tokens.npy'}", "--feed", f"length={tmp_path / 'length.npy'}",
        "--fetch", "embed,rnn", "--out", str(tmp_path / "acts.npz"),
    )
    assert code == 0, err
    with np.load(tmp_path / "acts.npz", allow_pickle=False) as acts:
        assert acts["embed"].shape == (4, 8, STEPS) and acts["rnn"].shape == (4, 32)

    # an id outside the vocabulary is a user error naming the node, not a gather from other memory
    bad = batch["tokens"].copy()
    bad[1, 2] = VOCAB
    np.save(tmp_path / "bad.npy", bad)
    code, _, err = tfn_cli("run", str(run_dir), "--feed", f"tokens={tmp_path / 'bad.npy'}", "--fetch", "embed")
    assert code == 2 and f"embedding: id {VOCAB} is outside [0, 10) (input_dim, the vocabulary size)" in err

    code, out, err = tfn_cli("time", str(spec), "-n", "1", "--warmup", "0", "--batch-size", "8")
    assert code == 0, err
    assert "rnn" in out and "embed" in out

    code, _, err = tfn_cli("export-graph", str(run_dir), "--format", "tensorboard", "-o", str(tmp_path / "tb"))
    assert code == 0, err
    assert any((tmp_path / "tb").rglob("events.out.tfevents.*"))


def test_a_tagger_with_a_padding_mask_as_sample_weight(data, write_spec, tfn_cli, tmp_path):
    spec = write_spec(TAGGER.replace("DATA", str(data)))
    run_dir = tmp_path / "run"
    code, _, err = tfn_cli("train", str(spec), "--out", str(run_dir), "--quiet")
    assert code == 0, err
    final = [m for m in metrics_of(run_dir) if m.get("split") == "validation"][-1]
    # the tags are a function of each token, so the masked accuracy beats the one that counts padding guesses
    assert final["token_accuracy"] > 0.9
    assert final["token_accuracy"] != final["accuracy"]


def test_out_of_range_ids_in_the_data_are_found_before_training(data, write_spec, tfn_cli, tmp_path):
    arrays = dict(np.load(data))
    arrays["tokens"][7, 0] = 12
    np.savez(data, **arrays)
    spec = write_spec(CLASSIFIER.replace("DATA", str(data)))
    code, _, err = tfn_cli("train", str(spec), "--out", str(tmp_path / "run"), "--quiet")
    assert code == 2
    assert "order.npz: error: array 'tokens', index 7: the value 12 is out of range" in err and "accept 0..9" in err


REGRESSION = """
version: 1
name: weighted
model:
  inputs:
    x: {shape: [3]}
  layers:
    - {name: out, op: dense, units: 2}
loss: {op: huber_loss, predictions: out, labels: y, sample_weight: w, delta: 0.5, reduction: MEAN, metrics: [mean_relative_error]}
data: {source: npz, path: DATA, fields: {x: x, y: y, w: w}, batch_size: 16}
train: {epochs: 1}
"""


def test_regression_weights_compile_to_a_weighted_loss_node(write_spec, tmp_path, tfn_cli):
    from tfn.specs import load

    rng = np.random.default_rng(0)
    path = tmp_path / "r.npz"
    np.savez(path, x=rng.normal(size=(64, 3)).astype(np.float32), y=rng.normal(size=(64, 2)).astype(np.float32),
             w=rng.uniform(size=64).astype(np.float32))
    spec = write_spec(REGRESSION.replace("DATA", str(path)))
    graph = load(spec).graph
    node = graph.node("loss")
    assert node.inputs == ("out", "y", "w") and len(node.outputs) == 2  # the weights at loss:1
    assert node.attrs == {"reduction": "MEAN", "delta": 0.5}
    assert graph.type_of("w").shape == (None,)  # an undeclared sample_weight is one weight per example
    code, _, err = tfn_cli("train", str(spec), "--out", str(tmp_path / "run"), "--quiet")
    assert code == 0, err
    final = metrics_of(tmp_path / "run")[-1]
    assert np.isfinite(final["mean_relative_error"])


def test_loss_spec_mistakes_point_at_the_field(write_spec, tfn_cli):
    text = REGRESSION.replace("DATA", "r.npz")
    code, _, err = tfn_cli("check", str(write_spec(text.replace("predictions: out", "predictions: out, logits: out"))))
    assert code == 2 and "give the predictions node as `predictions:` or `logits:` (one of them)" in err
    bad_weights = text.replace("x: {shape: [3]}", "x: {shape: [3]}\n    w: {shape: [5]}").replace("units: 2}", "units: 2, inputs: [x]}")
    code, _, err = tfn_cli("check", str(write_spec(bad_weights)))
    assert code == 2 and "loss.sample_weight: sample_weight [?, 5] does not fit the loss [?, 2]" in err
    code, _, err = tfn_cli("check", str(write_spec(text.replace("delta: 0.5", "class_weights: [1, 2]"))))
    assert code == 2 and "class_weights" in err


ONNX_SPEC = """
version: 1
name: onnx_sequence
model:
  inputs:
    tokens: {shape: [4], dtype: int64}
    length: {shape: [], dtype: int64}
  layers:
    - {name: embed, op: embedding, input_dim: 10, output_dim: 3, inputs: [tokens]}
    - {name: whole, op: lstm, units: 3, return_sequences: true, go_backwards: true, inputs: [embed]}
    - {name: looped, op: gru, units: 2, convention: tf1, bidirectional: sum, inputs: [whole, length]}
loss: {op: mean_squared_error, logits: looped, labels: target}
data: {source: digits}
"""


@pytest.mark.slow
def test_onnx_export_of_sequence_models_matches_onnxruntime(write_spec, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    import onnx
    import torch

    from tfn.runners import api
    from tfn.runners.module import GraphModule
    from tfn.runners.session import run
    from tfn.specs import load

    graph = load(write_spec(ONNX_SPEC)).graph
    model = GraphModule(graph, torch.Generator().manual_seed(0)).eval()
    path = tmp_path / "model.onnx"
    api.export_onnx(model, path)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "LSTM" in ops  # the lstm without lengths maps to ONNX's LSTM; with lengths it unrolls
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for n in (1, 5):
        feeds = {"tokens": rng.integers(0, VOCAB, size=(n, 4)), "length": rng.integers(0, 5, size=n)}
        expected = run(model, feeds).values["looped"]
        (got,) = session.run(None, feeds)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
