"""What a finished run reports: the weights its test figures come from (restore_best), the stale
batch-normalization warning, one progress line per epoch in logs, and the Python API's fit/evaluate."""

from __future__ import annotations

import json
import re

import pytest

# 64 training samples in batches of 16: 4 steps per epoch; BN on a dense output (rank 2)
SPEC = {
    "version": 1,
    "name": "outcome",
    "model": {
        "inputs": {"x": {"shape": [6]}},
        "layers": [
            {"name": "hidden", "op": "dense", "units": 8},
            {"name": "bn", "op": "batch_normalization"},
            {"op": "relu"},
            {"name": "logits", "op": "dense", "units": 3},
        ],
    },
    "loss": {"op": "sparse_softmax_cross_entropy_with_logits", "logits": "logits", "labels": "label"},
    "optimizer": {"type": "gradient_descent", "learning_rate": 0.5},
    "data": {"source": "synthetic", "classes": 3, "fields": {"x": {"shape": [6]}}, "samples": {"train": 64, "validation": 48, "test": 48}, "batch_size": 16},
    "train": {"epochs": 3, "log_every": 1, "summaries": {"histogram_every": 0}},
}


def records(run_dir, split):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


@pytest.fixture(scope="module")
def restored(tmp_path_factory):
    """A run that keeps its *worst* validation accuracy as `best` (mode min), so the restored weights are not the last ones."""
    import tfn.runners as tfn

    checkpoints = {"best": "accuracy", "best_mode": "min", "restore_best": True}
    return tfn.fit(SPEC, {"train.checkpoints": checkpoints}, out=tmp_path_factory.mktemp("restored") / "run", quiet=True)


def test_restore_best_tests_and_keeps_the_best_checkpoint(restored):
    import numpy as np

    import tfn.runners as tfn

    validations = records(restored.run_dir, "validation")
    worst = min(validations, key=lambda r: r["accuracy"])
    assert worst["step"] != restored.steps, "the fixture needs a best checkpoint before the last step"
    name = f"ckpt-{worst['step']:06d}.safetensors"
    assert restored.weights == {"step": worst["step"], "checkpoint": name, "best": {"metric": "accuracy", "value": worst["accuracy"]}}
    run = json.loads((restored.run_dir / "run.json").read_text())
    assert run["weights"] == restored.weights and run["steps"] == restored.steps == 12
    assert json.loads((restored.run_dir / "checkpoints" / "checkpoint.json").read_text())["final"] == name
    # the test figures are those of the best checkpoint: `tfn eval` of that file gives them exactly
    of_best = tfn.evaluate(restored.run_dir, restored.run_dir / "checkpoints" / name)
    assert of_best.metrics["accuracy"] == restored.metrics["test"]["accuracy"]
    assert of_best.metrics["loss"] == pytest.approx(restored.metrics["test"]["loss"], rel=1e-6)
    assert records(restored.run_dir, "test")[0]["step"] == worst["step"]
    # and the run directory stands for it: eval's default, load_model, read_checkpoint
    assert tfn.evaluate(restored.run_dir).checkpoint.name == name
    assert tfn.evaluate(restored.run_dir, "latest").checkpoint.name == "ckpt-000012.safetensors"
    best = tfn.read_checkpoint(restored.run_dir / "checkpoints" / name)
    model = tfn.load_model(restored.run_dir)
    for variable, value in model.variables().items():
        np.testing.assert_array_equal(value.detach().numpy(), best[variable])


def test_final_line_says_where_the_test_figures_come_from(restored, tmp_path):
    from tfn.cli.train import final_line
    from tfn.runners.train import TrainResult

    best = restored.weights
    assert final_line(restored).endswith(f"(weights of step {best['step']}, the best validation accuracy {best['best']['value']:.4f})")
    last = TrainResult(tmp_path, 12, {"test": {"loss": 0.5, "accuracy": 0.75}}, weights={"step": 12, "checkpoint": "c", "best": None})
    assert final_line(last) == f"{tmp_path}: 12 steps; test loss 0.5000, accuracy 0.7500 (weights of the last step)"


def test_restore_best_needs_best(tfn_cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(SPEC))  # JSON is YAML
    code, _, err = tfn_cli("check", str(spec), "--set", "train.checkpoints.restore_best=true")
    assert code == 2 and "restore_best needs `best`" in err


def test_per_epoch_lines_in_logs_and_the_stale_statistics_warning(tmp_path, tfn_cli):
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(SPEC))
    code, out, err = tfn_cli("train", str(spec), "--epochs", "2", "--out", str(tmp_path / "run"))
    assert code == 0, err
    lines = err.splitlines()
    pattern = r"epoch (\d) step (\d+): train loss ([\d.]+), validation loss [\d.]+, validation accuracy [\d.]+, [\d,]+ samples/s, [\d.]+ s elapsed"
    progress = [re.fullmatch(pattern, line) for line in lines[:2]]
    assert all(progress), lines
    assert [(m[1], m[2]) for m in progress] == [("1", "4"), ("2", "8")]
    # the train loss of a line is the mean over the epoch's steps (logged here at every step)
    losses = [r["loss"] for r in records(tmp_path / "run", "train")]
    assert [float(m[3]) for m in progress] == pytest.approx([sum(losses[:4]) / 4, sum(losses[4:]) / 4], abs=1e-4)
    # 8 updates with momentum 0.99: the moving statistics are mostly still their initial 0 and 1
    (warning,) = lines[2:]
    assert warning.startswith("warning: the moving mean and variance of bn (batch_normalization, momentum 0.99) were updated only 8 times, but need about 300")
    assert warning.endswith("Set `momentum: 0.62` on these nodes, or train longer")  # 3 / (1 - 0.62) < 8
    assert json.loads((tmp_path / "run" / "run.json").read_text())["warnings"] == [warning.removeprefix("warning: ")]
    assert out.strip().endswith("(weights of the last step)")


def test_stale_statistics_rule(write_spec):
    from tfn.runners.train import stale_moving_statistics
    from tfn.specs import load

    spec = SPEC | {
        "model": {
            "inputs": {"x": {"shape": [6]}},
            "layers": [
                {"name": "slow", "op": "batch_normalization"},
                {"name": "fast", "op": "batch_normalization", "momentum": 0.9},
                {"name": "twin", "op": "batch_normalization", "share": "slow"},
                {"name": "frozen", "op": "batch_normalization", "momentum": 1.0},
                {"name": "logits", "op": "dense", "units": 3},
            ],
        }
    }
    graph = load(spec).graph
    # 3 / (1 - 0.9) = 30 updates; slow and twin share their statistics: 2 updates per step
    assert stale_moving_statistics(graph, 30) is not None and "fast" not in stale_moving_statistics(graph, 30)
    assert "fast" in stale_moving_statistics(graph, 29)
    warning = stale_moving_statistics(graph, 100)
    assert warning.startswith("the moving mean and variance of slow (batch_normalization, momentum 0.99), twin (batch_normalization, momentum 0.99)")
    assert "updated only 200 times, but need about 300" in warning and "Set `momentum: 0.9`" in warning
    assert stale_moving_statistics(graph, 150) is None  # 300 updates
    assert stale_moving_statistics(graph, 100, inherited={"slow/moving_mean"}) is None  # --init-from brought them


def test_fit_takes_overrides_as_data_or_text_and_reports_spec_errors(tmp_path):
    import tfn.runners as tfn
    from tfn.specs import UserError

    result = tfn.fit("digits_mlp", ["train.steps=2", "train.validate_every=2"], out=tmp_path / "run", quiet=True)
    assert result.steps == 2 and set(result.metrics) == {"validation", "test"}
    assert json.loads((tmp_path / "run" / "run.json").read_text())["command"] == ["tfn.runners.fit", "digits_mlp", "train.steps=2", "train.validate_every=2"]
    evaluation = tfn.evaluate(result.run_dir, split="validation")
    assert evaluation.split == "validation" and evaluation.metrics["accuracy"] == result.metrics["validation"]["accuracy"]
    with pytest.raises(UserError, match=r"^--set train.epochs=0: error: train.epochs: input should be greater than 0"):
        tfn.fit("digits_mlp", {"train.epochs": 0})
    with pytest.raises(UserError, match=r"^<spec>: error: model.layers\[0\].units: input should be greater than 0"):
        tfn.fit(SPEC | {"model": {"inputs": {"x": {"shape": [6]}}, "layers": [{"name": "logits", "op": "dense", "units": -3}]}})
