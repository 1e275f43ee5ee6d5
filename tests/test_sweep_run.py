"""`tfn sweep` end to end, in-process: a small sweep on the shipped digits writes every artifact and
finds a better configuration than the spec's own with the same budget; the printed `tfn train`
command reproduces the best trial; pruning, NaN, invalid combinations and max_failures."""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from pathlib import Path

import pytest

DIGITS_SWEEP = """
version: 1
sweep: digits_mlp                 # the shipped example: gradient descent, lr 0.1, 64 hidden units
monitor: accuracy
trials: 4
sampler: {type: tpe, seed: 0, n_startup_trials: 2}
pruner: {type: median, n_startup_trials: 2}
params:
  optimizer.learning_rate: {log_uniform: [0.05, 1.0]}
  model.layers.1.units: {choice: [32, 64, 128]}
"""
EPOCHS = 2  # each trial's budget, and the spec's own run's


def study_trials(sweep_dir: Path, name: str):
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / 'study.db'}")
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def run_json(run_dir) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())


@pytest.fixture(scope="module")
def digits_sweep(tmp_path_factory):
    from click.testing import CliRunner

    from tfn.cli.main import cli

    root = tmp_path_factory.mktemp("digits_sweep")
    (root / "digits.sweep.yaml").write_text(textwrap.dedent(DIGITS_SWEEP).lstrip())
    result = CliRunner().invoke(cli, ["sweep", str(root / "digits.sweep.yaml"), "--set", f"train.epochs={EPOCHS}", "--out", str(root / "sw")])
    assert result.exit_code == 0, result.output + result.stderr
    return root / "sw", result.stdout, result.stderr


def test_every_artifact(digits_sweep, session_hparams):
    sweep_dir, out, err = digits_sweep
    for name in ("sweep.yaml", "spec.yaml", "sweep.json", "study.db", "summary.json", "history.png", "importance.png"):
        assert (sweep_dir / name).is_file(), name
    for plot in ("history.png", "importance.png"):
        data = (sweep_dir / plot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000  # a drawn figure, not an empty canvas
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["format"] == "tfn.sweep" and record["study"] == "digits_mlp" and record["storage"] is None

    trials = study_trials(sweep_dir, "digits_mlp")
    assert [t.number for t in trials] == [0, 1, 2, 3]
    states = {t.state.name for t in trials}
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    for t in trials:
        run_dir = sweep_dir / f"trial-{t.number:04d}"
        assert t.user_attrs["run_dir"] == str(run_dir)
        for name in ("spec.yaml", "graph.json", "metrics.jsonl", "checkpoints/checkpoint.json"):
            assert (run_dir / name).is_file(), (run_dir, name)
        assert list((run_dir / "train").glob("events.out.tfevents.*")) and list((run_dir / "validation").glob("events.out.tfevents.*"))
        run = run_json(run_dir)
        assert run["status"] == {"COMPLETE": "completed", "PRUNED": "pruned"}[t.state.name]
        assert run["sweep"]["trial"] == t.number and run["sweep"]["study"] == "digits_mlp" and run["sweep"]["dir"] == str(sweep_dir)
        assert run["sweep"]["params"] == t.params
        assert run["metrics"]["validation"]["accuracy"] == t.value  # Optuna holds the last validation's value
        # the resolved spec of the run carries the trial's values
        import yaml

        spec = yaml.safe_load((run_dir / "spec.yaml").read_text())
        assert spec["optimizer"]["learning_rate"] == t.params["optimizer.learning_rate"]
        assert spec["model"]["layers"][1]["units"] == t.params["model.layers.1.units"]
        assert spec["train"]["epochs"] == EPOCHS
        # TensorBoard's HParams: the swept values beside the fixed ones
        hparams = session_hparams(run_dir)
        assert hparams["optimizer.learning_rate"] == pytest.approx(t.params["optimizer.learning_rate"])
        assert hparams["model.layers.1.units"] == t.params["model.layers.1.units"] and hparams["optimizer"] == "gradient_descent"
    lines = [line for line in err.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4 and lines[0].startswith("trial 0: ")


def test_summary_and_reproduce(digits_sweep, tfn_cli, tmp_path):
    sweep_dir, out, err = digits_sweep
    summary = json.loads((sweep_dir / "summary.json").read_text())
    trials = study_trials(sweep_dir, "digits_mlp")
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert summary["best"]["trial"] == best.number and summary["best"]["value"] == best.value and summary["best"]["params"] == best.params
    assert summary["trials"]["completed"] + summary["trials"]["pruned"] == 4 == summary["target"]
    assert f"best: trial {best.number}, validation accuracy {best.value:.4f}" in out
    assert f"  run: {sweep_dir / f'trial-{best.number:04d}'}" in out
    [command] = [line.removeprefix("  reproduce: ") for line in out.splitlines() if line.startswith("  reproduce: ")]
    assert command == summary["best"]["command"]
    args = shlex.split(command)
    assert args[:3] == ["tfn", "train", str(sweep_dir / "spec.yaml")]
    code, _, train_err = tfn_cli(*args[1:], "--out", str(tmp_path / "again"), "--quiet")
    assert code == 0, train_err
    again, original = run_json(tmp_path / "again"), run_json(sweep_dir / f"trial-{best.number:04d}")
    assert again["metrics"] == original["metrics"]  # the same run, bit for bit (CPU, same threads)


def test_best_beats_the_spec_defaults_with_the_same_budget(digits_sweep, tfn_cli, tmp_path):
    sweep_dir, _, _ = digits_sweep
    code, _, err = tfn_cli("train", "digits_mlp", "--epochs", str(EPOCHS), "--out", str(tmp_path / "defaults"), "--quiet")
    assert code == 0, err
    defaults = run_json(tmp_path / "defaults")["metrics"]["validation"]["accuracy"]
    best = json.loads((sweep_dir / "summary.json").read_text())["best"]["value"]
    assert best >= defaults, (best, defaults)


def test_resume_of_a_finished_sweep_runs_nothing_and_json(digits_sweep, tfn_cli):
    sweep_dir, _, _ = digits_sweep
    code, out, err = tfn_cli("sweep", "--resume", str(sweep_dir), "--json", "--quiet")
    assert code == 0, err
    printed = json.loads(out)
    assert len(study_trials(sweep_dir, "digits_mlp")) == 4
    assert {k: v for k, v in printed.items() if k not in ("stopped", "problems")} == json.loads((sweep_dir / "summary.json").read_text())
    assert printed["stopped"] is None and printed["problems"] == []


FAILING_SWEEP = """
version: 1
sweep: tiny.yaml
monitor: accuracy
trials: 2
max_failures: 2
pruner: {type: median, n_startup_trials: 1}
params:
  optimizer.learning_rate: {log_uniform: [1.0e-8, 1.0e+30]}
  model.layers.0.kernel_size: {choice: [3, 9]}
enqueue:
  - {optimizer.learning_rate: 0.1, model.layers.0.kernel_size: 3}      # good: completes
  - {optimizer.learning_rate: 0.1, model.layers.0.kernel_size: 9}      # a 9x9 kernel on 8x8 images: invalid
  - {optimizer.learning_rate: 1.0e+30, model.layers.0.kernel_size: 3}  # the loss becomes NaN
  - {optimizer.learning_rate: 1.0e-7, model.layers.0.kernel_size: 3}  # finite but learns nothing: pruned
"""


def test_pruned_nan_and_invalid_trials(tmp_path, monkeypatch, tfn_cli, tiny_conv_spec):
    from tfn.runners.checkpoint import read_state_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.sweep.yaml").write_text(textwrap.dedent(FAILING_SWEEP).lstrip())
    code, out, err = tfn_cli("sweep", "f.sweep.yaml", "--set", "train.epochs=3", "--out", "sw")
    assert code == 0, err
    sweep_dir = (tmp_path / "sw").resolve()
    trials = study_trials(sweep_dir, "tiny")
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "FAIL", "PRUNED"]
    per_epoch = 19  # ceil(1,167 / 64)

    invalid = run_json(sweep_dir / "trial-0001")
    assert invalid["status"] == "failed" and "window [9, 9] is larger than the input [8, 8]" in invalid["error"]
    assert trials[1].user_attrs["error"] == invalid["error"] and invalid["sweep"]["params"]["model.layers.0.kernel_size"] == 9

    diverged = run_json(sweep_dir / "trial-0002")  # the existing NaN guard stopped it
    assert diverged["status"] == "failed" and re.match(r"the loss became \S+ at step \d+ \(epoch 1\); no checkpoint was written", diverged["error"])
    assert trials[2].user_attrs["error"] == diverged["error"]

    pruned = run_json(sweep_dir / "trial-0003")
    assert pruned["status"] == "pruned" and pruned["steps"] == per_epoch < 3 * per_epoch  # before its last epoch
    assert read_state_file(sweep_dir / "trial-0003" / "checkpoints")["latest"] == f"ckpt-{per_epoch:06d}.safetensors"
    assert trials[3].user_attrs["pruned_at"] == "epoch 1" and trials[3].intermediate_values == {1: pruned["metrics"]["validation"]["accuracy"]}
    assert run_json(sweep_dir / "trial-0000")["steps"] == 3 * per_epoch

    assert "trial 1: failed: --set model.layers.0.kernel_size=9: error: model.layers[0].kernel_size: window [9, 9]" in err
    assert "trial 3: pruned at epoch 1" in err
    assert "2 of 2 trials (1 completed, 1 pruned, 2 failed)" in out


def test_max_failures_stops_the_sweep(tmp_path, monkeypatch, tfn_cli, tiny_conv_spec):
    monkeypatch.chdir(tmp_path)
    sweep = "version: 1\nsweep: tiny.yaml\nmax_failures: 1\nparams:\n  model.layers.0.kernel_size: {choice: [9, 10, 11]}\n"
    (tmp_path / "m.sweep.yaml").write_text(sweep)
    code, out, err = tfn_cli("sweep", "m.sweep.yaml", "--out", "sw", "--quiet")
    assert code == 1
    assert err.splitlines()[-1].startswith("error: 2 trials failed, more than max_failures: 1; trial 1: --set model.layers.0.kernel_size=")
    assert "0 of 20 trials (0 completed, 0 pruned, 2 failed)" in out and "no completed trial yet" in out
    assert len(study_trials((tmp_path / "sw").resolve(), "tiny")) == 2


def test_journal_storage_and_resume(tmp_path, monkeypatch, tfn_cli, tiny_conv_spec):
    """Optuna's journal file (for a shared filesystem without a database server) as the study's storage."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    monkeypatch.chdir(tmp_path)
    journal = tmp_path / "shared" / "study.log"
    journal.parent.mkdir()
    args = ("tiny.yaml", "--param", "optimizer.learning_rate=log_uniform:0.05,0.5", "--set", "train.epochs=1", "--trials", "1", "--quiet")
    code, out, err = tfn_cli("sweep", *args, "--storage", f"journal:{journal}", "--study", "j", "--out", "sw")
    assert code == 0, err
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["storage"] == f"journal:{journal}"
    assert not (tmp_path / "sw" / "study.db").exists()
    code, out, err = tfn_cli("sweep", "--resume", "sw", "--trials", "2", "--quiet")
    assert code == 0, err
    trials = optuna.load_study(study_name="j", storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal)))).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert "trials: 2" in (tmp_path / "sw" / "sweep.yaml").read_text()
    assert sorted(p.name for p in (tmp_path / "sw").glob("trial-*")) == ["trial-0000", "trial-0001"]


def test_grid_sampler_with_hyperband(tmp_path, monkeypatch, tfn_cli, tiny_conv_spec):
    """A grid runs every combination once (its size caps `trials`), whatever the pruner."""
    monkeypatch.chdir(tmp_path)
    sweep = """
    version: 1
    sweep: tiny.yaml
    monitor: accuracy
    sampler: {type: grid, seed: 3}
    pruner: {type: hyperband, min_resource: 1, reduction_factor: 2}
    params:
      optimizer.learning_rate: {choice: [0.05, 0.2]}
      data.batch_size: {int: [64, 128], step: 64}
    """
    (tmp_path / "g.sweep.yaml").write_text(textwrap.dedent(sweep).lstrip())
    code, out, err = tfn_cli("sweep", "g.sweep.yaml", "--set", "train.epochs=1", "--out", "sw", "--quiet")
    assert code == 0, err
    trials = study_trials((tmp_path / "sw").resolve(), "tiny")
    assert len(trials) == 4 and "4 of 4 trials" in out
    assert sorted((t.params["optimizer.learning_rate"], t.params["data.batch_size"]) for t in trials) == [(0.05, 64), (0.05, 128), (0.2, 64), (0.2, 128)]


def test_the_sweep_plots_leave_the_callers_matplotlib_style_alone(tmp_path):
    """Optuna's matplotlib plots call plt.style.use('ggplot'); a process that sweeps and then draws (tfn plot, the API) keeps its own style."""
    import matplotlib
    import optuna

    from tfn.runners.sweep import write_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.optimize(lambda trial: (trial.suggest_float("x", 0.0, 1.0) - 0.3) ** 2 + trial.suggest_float("y", 0.0, 1.0), n_trials=4)
    def style():  # the backend is the sweep's to choose (Agg: no display); the look is the caller's
        return {key: value for key, value in matplotlib.rcParams.items() if not key.startswith("backend")}

    before = style()
    written = write_plots(study, tmp_path, "loss")
    assert (tmp_path / "history.png").exists() and (tmp_path / "importance.png").exists(), written
    assert style() == before
