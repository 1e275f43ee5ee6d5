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
data: {source: digits, batch_size: 4}
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
            assert t["label"] == str(t["class"])  # digits names 10 classes, the model has 3: labels are the indices


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
    assert code == 2 and "not a readable image" in err


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
