"""Runs side by side: `tfn runs` (a table of run directories) and `tfn diff` (two runs or specs).

A run directory is found by its run.json; `runs/` holds runs/<name>/<N>, a
sweep holds its trials one level down, and `--out` puts a run anywhere, so
the search walks the whole tree (without entering a run directory). Only
run.json, spec.yaml and metrics.jsonl are read, and torch is never imported.

A run's headline metric, the one the table ranks by: the metric `--metric`
names, else the one its sweep optimises (run.json's sweep.metric), else
`train.checkpoints.best`, else the first scalar of `train.metrics`, else
`loss`; "best" follows that metric's direction (`best_mode`, or min for
losses and errors, max otherwise).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from tfn.specs.errors import UserError
from tfn.specs.schema import better

RUN_FILE = "run.json"
#: metrics that are lists, not scalars: never a headline
NOT_SCALAR = ("per_class_accuracy", "confusion_matrix")


def format_duration(seconds: float) -> str:
    """4.2 s, 3 min 07 s, 2 h 05 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class Run:
    """One run directory as the table shows it (every field also in `tfn runs --json`)."""

    path: str
    name: str
    number: str  # the directory's own name: N of runs/<name>/<N>, a sweep's trial
    status: str
    steps: int | None = None
    #: what `tfn train --epochs/--steps` asked for (the spec's train.epochs/steps unless given)
    epochs: int | None = None
    max_steps: int | None = None
    metric: str | None = None  # the headline validation metric
    mode: str = "max"  # whether its best is the "min" or the "max"
    best: float | None = None  # its best validation value ...
    best_step: int | None = None  # ... and where
    final: float | None = None  # its last validation value
    test: float | None = None  # its test value
    duration_seconds: float | None = None
    started: str | None = None
    ended: str | None = None
    sweep: object = None  # what run.json says of the sweep and trial the run belongs to, if any
    trial: object = None
    error: str | None = None  # why the directory could not be read
    #: the final figures: {"validation": {...}, "test": {...}}
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def find_runs(root: str | Path) -> list[Path]:
    """The run directories at or below `root` (each holds run.json), in path order."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: error: no such directory")
    if (root / RUN_FILE).is_file():
        return [root]
    found = []
    for directory, subdirectories, files in os.walk(root):
        if RUN_FILE in files:
            found.append(Path(directory))
            subdirectories.clear()  # a run's own folders hold no runs
        else:
            subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
    return sorted(found, key=lambda p: [int(part) if part.isdigit() else part for part in p.relative_to(root).parts])


def read_run(path: Path, metric: str | None = None, now: datetime | None = None) -> Run:
    """The table row of one run directory; a directory that cannot be read gives a row that says why."""
    try:
        info = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Run(str(path), path.parent.name, path.name, "unreadable", error=f"{path / RUN_FILE}: {exc}")
    if not isinstance(info, dict):
        return Run(str(path), path.parent.name, path.name, "unreadable", error=f"{path / RUN_FILE}: not a JSON object")
    spec = _read_spec(path)
    validation = records(path, "validation")
    row = Run(
        str(path),
        str(spec.get("name") or path.parent.name),
        path.name,
        str(info.get("status") or "unknown"),
        steps=info.get("steps"),
        epochs=info.get("epochs"),
        max_steps=info.get("max_steps"),
        started=info.get("started"),
        ended=info.get("ended"),
        sweep=info.get("sweep"),
        trial=info.get("trial"),
        metrics=info.get("metrics") or {},
    )
    row.metric = metric or _headline(spec, info, validation)
    row.mode = better(row.metric, _section(spec, "train", "checkpoints").get("best_mode", "auto") if row.metric == _best(spec) else "auto")
    scored = [r for r in validation if _number(r.get(row.metric)) is not None]
    if scored:
        top = (min if row.mode == "min" else max)(scored, key=lambda r: r[row.metric])  # the first of equals
        row.best, row.best_step = top[row.metric], top.get("step")
        row.final = scored[-1][row.metric]
    row.final = _number(row.metrics.get("validation", {}).get(row.metric, row.final))
    row.test = _number(row.metrics.get("test", {}).get(row.metric))
    row.duration_seconds = _seconds(row.started, row.ended, now if row.status == "running" else None)
    return row


def list_runs(root: str | Path, *, metric: str | None = None, where: list[str] = (), sort: str | None = None, reverse: bool = False) -> list[Run]:
    """`tfn runs`: the runs under `root`, filtered by `where` (KEY=VALUE, KEY!=VALUE; VALUE may list
    alternatives with commas) and sorted (`sort`: a column; default: start time, or best first when
    every run is a trial of one sweep)."""
    now = datetime.now(timezone.utc)
    rows = [read_run(path, metric, now) for path in find_runs(root)]
    base = Path(root)
    for row in rows:
        row.path = str(Path(row.path).relative_to(base)) if Path(row.path) != base else str(base)
    rows = [row for row in rows if all(_matches(row, condition) for condition in where)]
    sweeps = {json.dumps(row.sweep, sort_keys=True) for row in rows}
    sort = sort or ("best" if rows and len(sweeps) == 1 and rows[0].sweep is not None else "started")
    return sort_runs(rows, sort, reverse)


SORT_KEYS = ("started", "name", "number", "status", "steps", "best", "final", "test", "duration")


def sort_runs(rows: list[Run], key: str, reverse: bool = False) -> list[Run]:
    """By a column; metric columns best first (each run by its own metric's direction), runs without a value last."""
    if key not in SORT_KEYS:
        raise UserError(f"--sort {key}: error: the columns to sort by are {', '.join(SORT_KEYS)}")

    def value(row: Run):
        if key in ("best", "final", "test"):
            v = getattr(row, key)
            return (v is None, 0.0 if v is None else (v if row.mode == "min" else -v))
        if key == "duration":
            return (row.duration_seconds is None, row.duration_seconds or 0.0)
        if key in ("steps",):
            return (row.steps is None, row.steps or 0)
        if key == "number":
            return (not row.number.isdigit(), int(row.number) if row.number.isdigit() else 0, row.number)
        v = getattr(row, key)
        return (v is None, "" if v is None else str(v))

    ordered = sorted(rows, key=value)
    return ordered[::-1] if reverse else ordered


def _matches(row: Run, condition: str) -> bool:
    key, negated, wanted = _condition(condition)
    fields = row.to_dict()
    if key not in fields:
        from tfn.layers import suggest

        hint = suggest(key, fields)
        raise UserError(
            f"--where {condition}: error: runs have no field {key!r}" + (f" (did you mean {hint!r}?)" if hint else "") + f"; they have {', '.join(fields)}"
        )
    value = fields[key]
    text = "" if value is None else _text(value)
    return (text in wanted) != negated


def _condition(condition: str) -> tuple[str, bool, set[str]]:
    if "!=" in condition:
        key, _, wanted = condition.partition("!=")
        negated = True
    else:
        key, sep, wanted = condition.partition("=")
        negated = False
        if not sep:
            raise UserError(f"--where {condition}: error: expected KEY=VALUE or KEY!=VALUE, e.g. status=completed")
    return key.strip(), negated, {w.strip() for w in wanted.split(",")}


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


# --- reading a run directory --------------------------------------------------------------


def _read_spec(path: Path) -> dict:
    """The run's resolved spec.yaml as data ({} when absent or unreadable: the row still shows run.json)."""
    try:
        spec = yaml.safe_load((path / "spec.yaml").read_text(encoding="utf-8"))  # written by tfn: plain YAML of JSON types
    except (OSError, yaml.YAMLError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _section(spec: dict, *keys: str) -> dict:
    for key in keys:
        spec = spec.get(key) if isinstance(spec, dict) else None
    return spec if isinstance(spec, dict) else {}


def _best(spec: dict) -> str | None:
    return _section(spec, "train", "checkpoints").get("best")


def _headline(spec: dict, info: dict, validation: list[dict]) -> str:
    sweep = info.get("sweep")
    if isinstance(sweep, dict) and isinstance(sweep.get("metric"), str):
        return sweep["metric"]
    if _best(spec):
        return _best(spec)
    train = _section(spec, "train")
    for name in train.get("metrics") or []:
        if name in NOT_SCALAR:
            continue
        name = f"top_{train.get('top_k', 5)}_accuracy" if name == "top_k_accuracy" else name
        if any(name in r for r in validation) or name in (info.get("metrics") or {}).get("validation", {}):
            return name
    recorded = (info.get("metrics") or {}).get("validation", {})
    return "accuracy" if "accuracy" in recorded or any("accuracy" in r for r in validation) else "loss"


def records(path: Path, split: str) -> list[dict]:
    """The records of one split in metrics.jsonl, in order (a line cut short by a kill is skipped)."""
    try:
        lines = (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("split") == split:
            records.append(record)
    return records


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _time(text) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _seconds(started, ended, now: datetime | None) -> float | None:
    begin, end = _time(started), _time(ended) if ended else now
    return (end - begin).total_seconds() if begin and end else None


# --- tfn diff --------------------------------------------------------------------------------


MISSING = object()


@dataclass
class Side:
    """One side of `tfn diff`: a run directory (its resolved spec.yaml and figures) or a spec alone."""

    label: str
    spec: dict
    run: Run | None = None


@dataclass
class Diff:
    a: Side
    b: Side
    #: (field as --set writes it, value in a, value in b); MISSING where a side lacks the field
    fields: list[tuple[str, object, object]]
    #: (figure, value in a, value in b) for two runs: steps, status, duration, best, final and test metrics
    figures: list[tuple[str, object, object]]

    def to_dict(self) -> dict:
        def plain(value):
            return None if value is MISSING else value

        return {
            "a": self.a.label,
            "b": self.b.label,
            "fields": [{"field": f, "a": plain(x), "b": plain(y), "only_in": "b" if x is MISSING else "a" if y is MISSING else None} for f, x, y in self.fields],
            "figures": [{"figure": f, "a": x, "b": y} for f, x, y in self.figures],
        }


def side(target: str) -> Side:
    """A run directory (its resolved spec.yaml) or a spec file / example name, resolved as a run would record it."""
    path = Path(target)
    if path.is_dir():
        if not (path / "spec.yaml").is_file():
            raise UserError(f"{path}: error: not a run directory (no spec.yaml)")
        return Side(str(path), _read_spec(path), read_run(path) if (path / RUN_FILE).is_file() else None)
    from tfn.specs import load
    from tfn.specs.schema import resolved

    return Side(str(target), resolved(load(target).spec, Path.cwd()))


def flatten(value, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": [1, 2]}} -> {"a.b.0": 1, "a.b.1": 2}: the keys `--set` takes."""
    if isinstance(value, dict) and value:
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix: value}


def diff(a: str, b: str, metric: str | None = None) -> Diff:
    """`tfn diff A B`: the spec fields that differ, then (for two runs) their figures side by side."""
    left, right = side(a), side(b)
    flat_a, flat_b = flatten(left.spec), flatten(right.spec)
    keys = list(flat_a) + [k for k in flat_b if k not in flat_a]
    fields = [(k, flat_a.get(k, MISSING), flat_b.get(k, MISSING)) for k in keys if flat_a.get(k, MISSING) != flat_b.get(k, MISSING)]
    figures = []
    if left.run is not None and right.run is not None:
        if metric is not None:
            left.run, right.run = read_run(Path(left.label), metric), read_run(Path(right.label), metric)
        x, y = left.run, right.run
        figures = [("status", x.status, y.status), ("epochs", x.epochs, y.epochs), ("max_steps", x.max_steps, y.max_steps)]
        figures = [f for f in figures if f[1] != f[2] or f[0] == "status"]  # --epochs/--steps: settings outside spec.yaml
        figures += [("steps", x.steps, y.steps), ("duration_seconds", x.duration_seconds, y.duration_seconds)]
        if x.metric == y.metric:
            figures.append((f"best validation {x.metric}", x.best, y.best))
            figures.append((f"best validation {x.metric} at step", x.best_step, y.best_step))
        for split in ("validation", "test"):
            names = list(x.metrics.get(split, {})) + [n for n in y.metrics.get(split, {}) if n not in x.metrics.get(split, {})]
            figures += [(f"final {split} {n}", x.metrics.get(split, {}).get(n), y.metrics.get(split, {}).get(n)) for n in names]
    return Diff(left, right, fields, figures)
