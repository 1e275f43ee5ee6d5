"""`tfn predict`: probabilities and top-k labels for arrays and images, as a table or JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

SPEC = """
version: 1
name: small
model:
  inputs:
    image: {shape: [1, 4, 4]}
  layers:
    - {op: flatten}
    - {name: logits, op: dense, units: 3}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: synthetic, classes: 3, fields: {image: {shape: [1, 4, 4]}}, batch_size: 4}
train: {epochs: 1}
"""


@pytest.fixture
def model_files(write_spec, tmp_path):
    """A spec and a checkpoint whose logits are hand-computable: logit_k = (k+1) * sum(pixels) * 0.1."""
    import torch

    from tfn.runners.checkpoint import save
    from tfn.runners.session import load_model

    spec = write_spec(SPEC)
    model = load_model(spec)
    kernel = torch.tensor([[0.1 * (k + 1)] * 16 for k in range(3)])
    save(tmp_path / "ckpt.safetensors", {"logits/kernel": kernel, "logits/bias": torch.zeros(3)}, step=1, epoch=1, graph_hash=model.graph.hash)
    return spec, tmp_path / "ckpt.safetensors"


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_arrays_and_images_json(model_files, tfn_cli, tmp_path):
    from PIL import Image

    spec, ckpt = model_files
    batch = np.stack([np.full((1, 4, 4), v, np.float32) for v in (0.0, 1.0 / 16)])  # pixel sums 0 and 1
    np.save(tmp_path / "batch.npy", batch)
    Image.fromarray(np.full((4, 4), 255, np.uint8), mode="L").save(tmp_path / "white.png")  # pixel sum 16
    code, out, err = tfn_cli("predict", str(spec), str(tmp_path / "batch.npy"), str(tmp_path / "white.png"), "--checkpoint", str(ckpt), "--json", "-k", "2")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["input"] for r in rows] == [f"{tmp_path / 'batch.npy'}[0]", f"{tmp_path / 'batch.npy'}[1]", str(tmp_path / "white.png")]
    for row, total in zip(rows, (0.0, 1.0, 16.0)):
        expected = _softmax(np.array([0.1, 0.2, 0.3]) * total)
        assert len(row["top"]) == 2
        if total == 0:  # a three-way tie: the lowest class index first
            assert [t["class"] for t in row["top"]] == [0, 1]
        else:
            assert [t["class"] for t in row["top"]] == [2, 1]
        for t in row["top"]:
            assert t["probability"] == pytest.approx(expected[t["class"]], rel=1e-6)
            assert t["label"] == str(t["class"])


def test_table_with_labels_file(model_files, tfn_cli, tmp_path):
    spec, ckpt = model_files
    np.save(tmp_path / "one.npy", np.full((1, 4, 4), 1.0, np.float32))  # a single sample; sum 16
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    code, out, err = tfn_cli("predict", str(spec), str(tmp_path / "one.npy"), "--checkpoint", str(ckpt), "--labels", str(tmp_path / "labels.txt"), "-k", "1")
    assert code == 0, err
    p = _softmax(np.array([1.6, 3.2, 4.8]))[2]
    assert out.split() == [str(tmp_path / "one.npy"), "bird", f"{p:.2%}"]


def test_bad_inputs_exit_2(model_files, tfn_cli, tmp_path):
    spec, ckpt = model_files
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3), np.float32))
    code, _, err = tfn_cli("predict", str(spec), str(tmp_path / "wrong.npy"), "--checkpoint", str(ckpt))
    assert code == 2 and "shape [2, 3] does not fit [?, 1, 4, 4]" in err
    code, _, err = tfn_cli("predict", str(spec), str(tmp_path / "absent.png"), "--checkpoint", str(ckpt))
    assert code == 2 and "absent.png: error: no such file" in err
    (tmp_path / "broken.png").write_bytes(b"not an image")
    code, _, err = tfn_cli("predict", str(spec), str(tmp_path / "broken.png"), "--checkpoint", str(ckpt))
    assert code == 2 and "broken.png: error: cannot decode the image" in err


def test_class_names_come_from_the_run(model_files, tfn_cli, tmp_path):
    from tfn.specs import load_graph

    spec, ckpt = model_files
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "graph.json").write_text(load_graph(spec).to_json())
    (run_dir / "run.json").write_text(json.dumps({"class_names": ["cat", "dog", "bird"]}))
    np.save(tmp_path / "one.npy", np.full((1, 4, 4), 1.0, np.float32))
    code, out, err = tfn_cli("predict", str(run_dir), str(tmp_path / "one.npy"), "--checkpoint", str(ckpt), "--json")
    assert code == 0, err
    assert [t["label"] for t in json.loads(out)[0]["top"]] == ["bird", "dog", "cat"]


# --- how the loss reads the output ------------------------------------------------------

KIND_SPEC = """
version: 1
name: kinds
model:
  inputs:
    x: {{shape: [2]}}
  layers:
    - {{name: logits, op: dense, units: {units}}}
loss: {{op: {loss}, logits: logits, labels: target}}
data: {{source: synthetic, classes: 2, fields: {{x: {{shape: [2]}}}}}}
train: {{epochs: 1}}
"""


@pytest.fixture
def kind_model(write_spec, tmp_path):
    """kind_model(loss, kernel) -> (spec, checkpoint, inputs.npy): logits = x @ kernel.T, no bias; x rows (0, 0), (1, 1), (-2, 0)."""
    import torch

    from tfn.runners.checkpoint import save
    from tfn.runners.session import load_model

    def make(loss: str, kernel: list[list[float]]):
        spec = write_spec(KIND_SPEC.format(units=len(kernel), loss=loss), f"{loss}.yaml")
        graph = load_model(spec).graph
        weights = {"logits/kernel": torch.tensor(kernel), "logits/bias": torch.zeros(len(kernel))}
        save(tmp_path / f"{loss}.safetensors", weights, step=1, epoch=1, graph_hash=graph.hash)
        np.save(tmp_path / "x.npy", np.array([[0, 0], [1, 1], [-2, 0]], np.float32))
        return spec, tmp_path / f"{loss}.safetensors", tmp_path / "x.npy"

    return make


def _sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))


def test_every_prediction_kind_a_loss_declares_has_a_reader():
    from tfn import layers
    from tfn.runners.session import READERS

    assert set(READERS) == set(layers.PREDICTIONS)
    for name, op in layers.all_ops().items():
        assert (op.prediction in layers.PREDICTIONS) if op.is_loss else op.prediction is None, name


def test_one_sigmoid_unit_gives_the_positive_class_probability_and_a_threshold(kind_model, tfn_cli):
    """predict always applied a softmax: one unit then gave "class 0, 100%" for every input."""
    spec, ckpt, x = kind_model("sigmoid_cross_entropy_with_logits", [[1.0, 1.0]])  # logits 0, 2, -2
    code, out, err = tfn_cli("predict", str(spec), str(x), "--checkpoint", str(ckpt), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["prediction"] for r in rows] == ["sigmoid"] * 3 and [r["threshold"] for r in rows] == [0.5] * 3
    np.testing.assert_allclose([r["probability"] for r in rows], _sigmoid([0, 2, -2]), rtol=1e-6)
    assert [r["class"] for r in rows] == [1, 1, 0]  # 0.5 reaches the threshold
    code, out, err = tfn_cli("predict", str(spec), str(x), "--checkpoint", str(ckpt), "--threshold", "0.9")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].split()[1:] == ["0", "positive-class", "probability", f"{_sigmoid(2):.4f}", "(threshold", "0.9)"]
    assert "%" not in out


def test_several_sigmoid_units_are_independent_labels(kind_model, tfn_cli):
    spec, ckpt, x = kind_model("sigmoid_cross_entropy_with_logits", [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    code, out, err = tfn_cli("predict", str(spec), str(x), "--checkpoint", str(ckpt), "--json")
    assert code == 0, err
    rows = json.loads(out)
    logits = [[0, 0, 0], [1, 1, -2], [-2, 0, 2]]
    for row, z in zip(rows, logits):
        np.testing.assert_allclose([p["probability"] for p in row["probabilities"]], _sigmoid(z), rtol=1e-6)
        assert [p["label"] for p in row["probabilities"]] == ["0", "1", "2"]
        assert [p["class"] for p in row["predicted"]] == [c for c in np.argsort(-np.asarray(z), kind="stable") if _sigmoid(z[c]) >= 0.5]
    assert [p["class"] for p in rows[2]["predicted"]] == [2, 1]  # most probable first; 0.5 counts
    code, out, err = tfn_cli("predict", str(spec), str(x), "--checkpoint", str(ckpt), "--threshold", "0.95")
    assert code == 0, err
    assert out.splitlines()[0].endswith("(no label reaches 0.95)")


def test_a_regression_loss_gives_the_raw_values(kind_model, tfn_cli):
    spec, ckpt, x = kind_model("mean_squared_error", [[1.0, 2.0], [0.5, -3.0]])
    code, out, err = tfn_cli("predict", str(spec), str(x), "--checkpoint", str(ckpt), "--json")
    assert code == 0, err
    assert [r["values"] for r in json.loads(out)] == [[0.0, 0.0], [3.0, -2.5], [-2.0, -1.0]]
    code, out, err = tfn_cli("predict", str(spec), str(x), "--checkpoint", str(ckpt))
    assert code == 0, err
    assert out.splitlines()[1].split()[1:] == ["3", "-2.5"] and "%" not in out
    code, _, err = tfn_cli("predict", str(spec), str(x), "--checkpoint", str(ckpt), "--threshold", "0.3")
    assert code == 2 and "--threshold: error: applies to sigmoid outputs; this model's loss reads its output as values" in err
