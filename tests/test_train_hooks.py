"""The training entry point's hooks (contract 4): a validation callback that may stop the run as
pruned, extra run.json keys and extra TensorBoard hparams."""

from __future__ import annotations

import json

SPEC = """
version: 1
name: hooks
model:
  inputs: {image: {shape: [1, 8, 8]}}
  layers:
    - {op: flatten}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
optimizer: {type: gradient_descent, learning_rate: 0.1}
data: {source: digits, batch_size: 128}
train: {epochs: 4, summaries: {histogram_every: 0, images: 0}}
"""


def test_validation_callback_prunes_with_a_checkpoint(write_spec, tmp_path, session_hparams):
    from tfn import specs
    from tfn.runners.checkpoint import read_state_file
    from tfn.runners.train import train

    calls = []

    def on_validation(step, epoch, metrics):
        calls.append((step, epoch, metrics))
        return epoch == 2

    out = tmp_path / "run"
    result = train(
        specs.load(write_spec(SPEC)),
        out=out,
        quiet=True,
        on_validation=on_validation,
        run_info={"sweep": {"trial": 7}},
        hparams={"optimizer.learning_rate": 0.1},
    )
    per_epoch = 10  # ceil(1,167 / 128)
    assert [(s, e) for s, e, _ in calls] == [(per_epoch, 1), (2 * per_epoch, 2)]
    assert set(calls[0][2]) == {"loss", "accuracy"} and all(isinstance(v, float) for v in calls[0][2].values())
    assert result.stopped == "pruned" and result.steps == 2 * per_epoch
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "pruned" and run["steps"] == 2 * per_epoch and run["sweep"] == {"trial": 7}
    assert "test" not in run["metrics"] and run["metrics"]["validation"]["accuracy"] == calls[-1][2]["accuracy"]
    state = read_state_file(out / "checkpoints")
    assert state["latest"] == f"ckpt-{2 * per_epoch:06d}.safetensors"
    hparams = session_hparams(out)
    assert hparams["optimizer.learning_rate"] == 0.1 and hparams["optimizer"] == "gradient_descent"


def test_a_callback_that_never_asks_changes_nothing(write_spec, tmp_path):
    from tfn import specs
    from tfn.runners.train import train

    seen = []
    result = train(specs.load(write_spec(SPEC), ["train.epochs=2"]), out=tmp_path / "run", quiet=True, on_validation=lambda *a: seen.append(a))
    assert len(seen) == 2 and result.stopped is None
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "completed" and "test" in run["metrics"]
