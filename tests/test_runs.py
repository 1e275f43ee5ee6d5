"""Runs side by side: `tfn runs` (table, --json, --where, --sort, nested sweeps, odd statuses),
`tfn diff` (runs and specs) and `tfn plot` (curves drawn with matplotlib)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest
import yaml

SPEC = {
    "version": 1,
    "name": "tiny",
    "model": {"inputs": {"x": {"shape": [4]}}, "layers": [{"name": "hidden", "op": "dense", "units": 8}, {"op": "relu"}, {"name": "logits", "op": "dense", "units": 3}]},
    "loss": {"op": "sparse_softmax_cross_entropy_with_logits", "logits": "logits", "labels": "label"},
    "optimizer": {"type": "adam", "learning_rate": 0.001},
    "data": {"source": "synthetic", "classes": 3, "fields": {"x": {"shape": [4]}}, "samples": {"train": 64, "validation": 32, "test": 32}, "batch_size": 16},
    "train": {"epochs": 2, "log_every": 1, "summaries": {"histogram_every": 0}},
}


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def write_trial(directory, status, accuracies, trial):
    """A sweep trial as the sweep writes one: an ordinary run directory whose run.json names the sweep."""
    write_json(directory / "run.json", {"status": status, "sweep": {"name": "lr", "metric": "accuracy"}, "trial": trial, "steps": 4 * len(accuracies), "started": f"2026-01-01T00:0{trial}:00+00:00"})
    lines = [json.dumps({"split": "validation", "step": 4 * (i + 1), "loss": 1.0, "accuracy": a}) for i, a in enumerate(accuracies)]
    (directory / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """runs/tiny/1 (trained), runs/tiny/2 (its copy with another learning rate and figures), a sweep of three
    trials at runs/sweeps/lr/1/<trial>, and two runs whose run.json is not JSON or not an object."""
    import tfn.runners as tfn

    base = tmp_path_factory.mktemp("runs")
    first = tfn.fit(SPEC, out=base / "runs" / "tiny" / "1", quiet=True).run_dir
    second = base / "runs" / "tiny" / "2"
    shutil.copytree(first, second)
    spec = yaml.safe_load((second / "spec.yaml").read_text())
    spec["optimizer"]["learning_rate"] = 0.01
    (second / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    info = json.loads((second / "run.json").read_text())
    info.update(started="2099-01-01T10:00:00+00:00", ended="2099-01-01T10:02:05+00:00", epochs=4)
    info["metrics"] = {"validation": {"loss": 0.5, "accuracy": 0.75}, "test": {"loss": 0.6, "accuracy": 0.7}}
    write_json(second / "run.json", info)
    (second / "metrics.jsonl").write_text(
        "".join(json.dumps({"split": "validation", "step": s, "loss": 1 / s, "accuracy": a}) + "\n" for s, a in ((4, 0.5), (8, 0.8), (12, 0.75)))
        + '{"split": "valid'  # a line cut short by a kill
    )
    for trial, (status, accuracies) in enumerate((("completed", [0.4, 0.6]), ("pruned", [0.3]), ("exotic", [0.5, 0.9])), start=1):
        write_trial(base / "runs" / "sweeps" / "lr" / "1" / str(trial), status, accuracies, trial)
    (base / "runs" / "broken" / "1").mkdir(parents=True)
    (base / "runs" / "broken" / "1" / "run.json").write_text("{not json")
    write_json(base / "runs" / "broken" / "2" / "run.json", ["not", "an", "object"])
    return base


def runs_json(tfn_cli, *args):
    code, out, err = tfn_cli("runs", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_runs_json_holds_the_figures_of_each_run(root, tfn_cli):
    rows = runs_json(tfn_cli, str(root / "runs"))
    # by start time: the fabricated sweep (2026), the real run (now), its copy (2099); the unreadable one has none
    assert [r["path"] for r in rows] == ["sweeps/lr/1/1", "sweeps/lr/1/2", "sweeps/lr/1/3", "tiny/1", "tiny/2", "broken/1", "broken/2"]
    real = rows[3]
    run = json.loads((root / "runs" / "tiny" / "1" / "run.json").read_text())
    validation = [json.loads(line) for line in (root / "runs" / "tiny" / "1" / "metrics.jsonl").read_text().splitlines()]
    validation = [r for r in validation if r["split"] == "validation"]
    top = max(validation, key=lambda r: r["accuracy"])
    assert (real["name"], real["number"], real["status"], real["steps"], real["metric"]) == ("tiny", "1", "completed", 8, "accuracy")
    assert (real["best"], real["final"], real["test"]) == (top["accuracy"], run["metrics"]["validation"]["accuracy"], run["metrics"]["test"]["accuracy"])
    started, ended = (datetime.fromisoformat(run[k]) for k in ("started", "ended"))
    assert real["best_step"] == top["step"] and real["duration_seconds"] == (ended - started).total_seconds()
    copy = rows[4]
    assert (copy["best"], copy["best_step"], copy["final"], copy["test"], copy["duration_seconds"]) == (0.8, 8, 0.75, 0.7, 125.0)
    assert rows[5]["status"] == "unreadable" and "run.json" in rows[5]["error"]
    assert rows[6]["status"] == "unreadable" and rows[6]["error"].endswith("run.json: not a JSON object")


def test_runs_table_and_its_warnings(root, tfn_cli):
    code, out, err = tfn_cli("runs", str(root / "runs" / "tiny"))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["name", "N", "status", "steps", "best", "accuracy", "at", "step", "final", "test", "duration", "started"]
    assert lines[3].split()[:9] == ["tiny", "2", "completed", "8", "0.8000", "8", "0.7500", "0.7000", "2"]  # 2 min 05 s
    assert err == ""
    code, out, err = tfn_cli("runs", str(root / "runs" / "broken"))
    assert code == 0 and out.splitlines()[2].split()[:3] == ["broken", "1", "unreadable"]
    assert len(err.splitlines()) == 2 and all(line.startswith("warning: ") for line in err.splitlines())


def test_where_filters_by_any_field(root, tfn_cli):
    paths = [r["path"] for r in runs_json(tfn_cli, str(root / "runs"), "--where", "status=completed", "--sort", "name", "--reverse")]
    assert sorted(paths) == ["sweeps/lr/1/1", "tiny/1", "tiny/2"]
    # what is left are trials of one sweep: best first
    assert [r["path"] for r in runs_json(tfn_cli, str(root / "runs"), "--where", "status=pruned,exotic")] == ["sweeps/lr/1/3", "sweeps/lr/1/2"]
    assert [r["number"] for r in runs_json(tfn_cli, str(root / "runs"), "--where", "name=tiny", "--where", "number!=1")] == ["2"]
    code, _, err = tfn_cli("runs", str(root / "runs"), "--where", "stat=completed")
    assert code == 2 and "runs have no field 'stat' (did you mean 'status'?)" in err
    code, _, err = tfn_cli("runs", str(root / "runs"), "--where", "status")
    assert code == 2 and "expected KEY=VALUE or KEY!=VALUE" in err
    code, _, err = tfn_cli("runs", str(root / "runs"), "--sort", "speed")
    assert code == 2 and "the columns to sort by are started, name" in err
    code, _, err = tfn_cli("runs", str(root / "nowhere"))
    assert code == 2 and "no such directory" in err


def test_a_sweeps_trials_come_best_first_whatever_their_status(root, tfn_cli):
    rows = runs_json(tfn_cli, str(root / "runs" / "sweeps" / "lr" / "1"))
    assert [(r["number"], r["status"], r["best"]) for r in rows] == [("3", "exotic", 0.9), ("1", "completed", 0.6), ("2", "pruned", 0.3)]
    assert rows[0]["sweep"] == {"name": "lr", "metric": "accuracy"} and rows[0]["trial"] == 3
    # a lower-is-better metric ranks the other way
    by_loss = runs_json(tfn_cli, str(root / "runs" / "tiny"), "--metric", "loss", "--sort", "best")
    assert [r["number"] for r in by_loss] == ["2", "1"] and by_loss[0]["best"] == pytest.approx(1 / 12)


def test_runs_does_not_import_torch(root):
    code = f"import sys\nfrom tfn.cli.main import main\ntry:\n main(['runs', {str(root / 'runs')!r}])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("False") and "tiny" in result.stdout


def test_diff_of_two_runs_shows_changed_fields_then_figures(root, tfn_cli):
    a, b = str(root / "runs" / "tiny" / "1"), str(root / "runs" / "tiny" / "2")
    code, out, err = tfn_cli("diff", a, b, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["fields"] == [{"field": "optimizer.learning_rate", "a": 0.001, "b": 0.01, "only_in": None}]
    figures = {f["figure"]: (f["a"], f["b"]) for f in result["figures"]}
    run = json.loads((root / "runs" / "tiny" / "1" / "run.json").read_text())
    assert figures["epochs"] == (2, 4)  # --epochs is not in spec.yaml: run.json tells
    assert figures["final test accuracy"] == (run["metrics"]["test"]["accuracy"], 0.7)
    assert figures["best validation accuracy"][1] == 0.8 and figures["duration_seconds"][1] == 125.0
    code, out, _ = tfn_cli("diff", a, b)
    lines = out.splitlines()
    assert lines[0] == "spec: 1 field differs"
    assert lines[3].split() == ["optimizer.learning_rate", "0.001", "0.01"]
    assert any(line.split()[:3] == ["final", "test", "accuracy"] and line.split()[-2:] == ["0.7000", f"{0.7 - run['metrics']['test']['accuracy']:+.4f}"] for line in lines)


def test_diff_of_specs_resolves_them_as_a_run_records_them(root, tfn_cli, write_spec):
    spec = write_spec(json.dumps(SPEC), "tiny.yaml")
    code, out, err = tfn_cli("diff", str(root / "runs" / "tiny" / "1"), str(spec))
    assert code == 0, err
    assert out.strip() == "spec: no field differs"  # every default filled in on both sides
    other = write_spec(json.dumps(SPEC | {"train": {"epochs": 3}, "name": "other"}).replace('"units": 8', '"units": 16'), "other.yaml")
    code, out, _ = tfn_cli("diff", str(spec), str(other), "--json")
    fields = {f["field"]: (f["a"], f["b"]) for f in json.loads(out)["fields"]}
    # train.log_every and summaries go back to their defaults in `other`
    assert fields == {"name": ("tiny", "other"), "model.layers.0.units": (8, 16), "train.epochs": (2, 3), "train.log_every": (1, 10), "train.summaries.histogram_every": (0, 100)}
    code, _, err = tfn_cli("diff", str(spec), "no_such_spec")
    assert code == 2 and "no_such_spec: error: no such file or shipped example" in err


def test_plot_draws_each_run_in_its_colour(root, tfn_cli, tmp_path):
    from PIL import Image

    picture = tmp_path / "curves.png"
    code, _, err = tfn_cli("plot", str(root / "runs" / "tiny"), "--metric", "loss", "--metric", "accuracy", "-o", str(picture))
    assert code == 0, err
    image = np.asarray(Image.open(picture).convert("RGB")).astype(int)
    assert image.shape == (int(3.4 * 2 * 120), 9 * 120, 3)  # two panels at 120 dpi

    def drawn(hex_colour):
        colour = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(image - colour).sum(-1) < 30).sum())

    assert drawn("#1f77b4") > 200 and drawn("#ff7f0e") > 200  # matplotlib's first two colours: tiny/1 and tiny/2
    code, _, err = tfn_cli("plot", str(root / "runs" / "tiny"), "--metric", "acuracy", "-o", str(tmp_path / "x.png"))
    assert code == 2 and "no run logged 'acuracy' (did you mean 'accuracy'?)" in err and not (tmp_path / "x.png").exists()
    code, _, err = tfn_cli("plot", str(root / "runs" / "tiny"), "-o", str(tmp_path / "x.jpg"))
    assert code == 2 and "the picture's format comes from its suffix: .png, .svg, .pdf" in err


def test_plot_without_matplotlib_says_how_to_install_it(root, tfn_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if it were not installed
    code, _, err = tfn_cli("plot", str(root / "runs" / "tiny" / "1"), "-o", str(tmp_path / "c.png"))
    assert code == 2 and "is not installed: pip install matplotlib" in err


def test_only_plot_imports_matplotlib(root):
    code = f"import sys\nfrom tfn.cli.main import main\nfor args in (['runs', {str(root / 'runs')!r}], ['diff', {str(root / 'runs' / 'tiny' / '1')!r}, {str(root / 'runs' / 'tiny' / '2')!r}]):\n try:\n  main(args)\n except SystemExit: pass\nprint('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("False")
