"""`tfn sweep`: a hyperparameter search on Optuna, every trial an ordinary run directory.

    sweeps/<name>/<N>/
      sweep.yaml       the sweep as run (--param and --trials folded in; `sweep: spec.yaml`)
      spec.yaml        the spec as swept: the --set options applied, data paths absolute
      sweep.json       where the study lives (storage, study name), the command, the host
      study.db         the Optuna study (SQLite), unless --storage names another
      trial-0000/      one run directory per trial; run.json names the sweep and the trial
      summary.json     the end of the sweep: counts, the best trial, the command that reproduces it
      history.png importance.png   Optuna's plots (matplotlib)

Optuna does the searching (samplers, pruners, storages, heartbeats); this
module turns its trials into training runs. A worker loops: fail the trials of
dead workers, stop when the study has its count of completed + pruned trials
(failed ones do not count), else run one trial. Several workers (processes
here, or `tfn sweep` on other machines against one storage) share the study;
a trial asked for after the count was met is skipped, so the count is exact.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import optuna
import yaml
from optuna.exceptions import TrialPruned
from optuna.trial import FrozenTrial, TrialState

from tfn.runners.files import atomic_write, new_run_dir, prepare_out_dir, write_json
from tfn.runners.train import TrainingFailed, targets, train, validation_metrics
from tfn.specs import load
from tfn.specs.errors import SpecError, UserError
from tfn.specs.overrides import parse_value
from tfn.specs.schema import better, with_absolute_paths
from tfn.specs.sweep import (
    GridSampler,
    HyperbandPruner,
    LoadedSweep,
    MedianPruner,
    NoPruner,
    Param,
    RandomSampler,
    TpeSampler,
    load_sweep,
)

SWEEP_FORMAT = "tfn.sweep"
STORAGE_ENV = "TFN_SWEEP_STORAGE"  # how a parent hands --storage to its workers without showing a password in `ps`
STOPPED = ("SIGINT", "SIGTERM")
HIDDEN_PASSWORD = "***"


class SweepFailed(Exception):
    """More trials failed than max_failures allows: exit status 1."""


class _TrialFailed(Exception):
    """A trial that could not give a value; its reason is in the trial's `error` attribute."""


class _TrialStopped(Exception):
    """A trial stopped by SIGINT/SIGTERM (checkpoint written) or skipped because the count was met."""


@dataclass
class Counts:
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    #: stopped by a signal or skipped: neither a result nor a failure
    stopped: int = 0

    @property
    def finished(self) -> int:
        return self.completed + self.pruned

    @classmethod
    def of(cls, trials: list[FrozenTrial]) -> Counts:
        counts = cls()
        for t in trials:
            if t.state == TrialState.COMPLETE:
                counts.completed += 1
            elif t.state == TrialState.PRUNED:
                counts.pruned += 1
            elif t.state == TrialState.RUNNING:
                counts.running += 1
            elif is_failure(t):
                counts.failed += 1
            elif t.state == TrialState.FAIL:
                counts.stopped += 1
        return counts


def is_failure(trial: FrozenTrial) -> bool:
    """A failed trial, as max_failures counts them: not one stopped by a signal, nor one skipped."""
    return trial.state == TrialState.FAIL and not ({"stopped", "skipped"} & trial.user_attrs.keys())


# --- storage and study ------------------------------------------------------------------


def open_storage(url: str, heartbeat: int, on_stale=None) -> optuna.storages.BaseStorage:
    """An Optuna storage: `journal:PATH` (a journal file, e.g. on a shared filesystem) or an RDB URL with heartbeats."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:") :].removeprefix("//")
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    attempts = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental" in Optuna
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=2 * heartbeat, heartbeat_stale_trial_callback=on_stale
                )
        except (IntegrityError, ProgrammingError):
            # machines starting together on an empty database race to create Optuna's tables: the loser tries again
            attempts += 1
            if attempts == 5:
                raise
            time.sleep(0.2 + random.random())
        except ImportError as exc:
            raise UserError(f"--storage {shown_url(url)}: error: no database driver for it ({exc}); for PostgreSQL: pip install 'tfn[postgres]'") from None
        except Exception as exc:  # sqlalchemy's errors: bad URL, server down, access refused
            raise UserError(f"--storage {shown_url(url)}: error: cannot open the study storage: {type(exc).__name__}: {_first_line(exc)}") from None


def shown_url(url: str) -> str:
    """The storage URL with any password hidden (for files, messages and run.json)."""
    if url.startswith("journal:"):
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def _definition(loaded: LoadedSweep) -> dict:
    """What every process of one study must agree on: the search space, the metric and its direction."""
    sweep = loaded.sweep
    return {
        "params": {name: p.model_dump(exclude_none=True, exclude_defaults=True) for name, p in sweep.params.items()},
        "monitor": sweep.monitor,
        "direction": _direction(loaded),
    }


def _direction(loaded: LoadedSweep) -> str:
    return "minimize" if better(loaded.sweep.monitor, loaded.sweep.mode) == "min" else "maximize"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the sweep directory ------------------------------------------------------------------


def start(
    loaded: LoadedSweep,
    *,
    out: str | Path | None = None,
    root: str | Path = "sweeps",
    storage: str | None = None,
    study: str | None = None,
    command: list[str] | None = None,
) -> Sweeper:
    """Make the sweep directory, create (or join) the study and enqueue the sweep's first trials."""
    check_monitor(loaded)
    sweep_dir = (prepare_out_dir(out) if out else new_run_dir(root, loaded.name)).resolve()
    try:
        atomic_write(sweep_dir / "spec.yaml", _spec_as_swept(loaded))
        _write_sweep_file(sweep_dir, loaded)
        record = {
            "format": SWEEP_FORMAT,
            "version": 1,
            "study": study or loaded.name,
            "storage": shown_url(storage) if storage else None,
            "created": _now(),
            "host": socket.gethostname(),
            "command": command if command is not None else sys.argv,
        }
        sweeper = Sweeper(sweep_dir, loaded, storage or default_storage(sweep_dir), record["study"], create=True)
        write_json(sweep_dir / "sweep.json", record)
    except BaseException:
        if not out:  # nothing ran: leave no numbered directory behind
            import shutil

            shutil.rmtree(sweep_dir, ignore_errors=True)
        raise
    return sweeper


def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / 'study.db'}"


def check_monitor(loaded: LoadedSweep) -> None:
    """`monitor` must be a validation metric of the spec's run (with a did-you-mean, at its line)."""
    from tfn.layers import suggest

    available = validation_metrics(targets(loaded.spec.spec, loaded.spec.graph))
    monitor = loaded.sweep.monitor
    if monitor not in available:
        hint = suggest(monitor, available)
        message = f"{monitor!r} is not a validation metric of this spec's runs; they have {', '.join(available)}" + (f" (did you mean {hint!r}?)" if hint else "")
        raise SpecError([loaded.doc.error(("monitor",), message)])


def _spec_as_swept(loaded: LoadedSweep) -> str:
    """The spec's own text as data (so that a trial may change optimizer.type), --set applied, data paths absolute."""
    data = copy.deepcopy(loaded.spec.doc.data)
    given = loaded.spec.spec.data
    absolute = with_absolute_paths(given, Path.cwd())
    section = data.get("data", {})
    for name in type(given).model_fields:
        if name in section and getattr(absolute, name) != getattr(given, name):
            section[name] = getattr(absolute, name)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def _write_sweep_file(sweep_dir: Path, loaded: LoadedSweep) -> None:
    data = {**copy.deepcopy(loaded.doc.data), "sweep": "spec.yaml"}
    atomic_write(sweep_dir / "sweep.yaml", yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def _read_record(sweep_dir: Path) -> dict:
    path = sweep_dir / "sweep.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{sweep_dir}: error: not a sweep directory (it has no sweep.json)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: error: unreadable: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != SWEEP_FORMAT:
        raise UserError(f"{path}: error: not a tfn sweep record")
    return record


def reopen(sweep_dir: str | Path, *, storage: str | None = None, trials: int | None = None, worker: int = 0) -> Sweeper:
    """A sweep directory's sweep, ready to run more trials (--resume, and each worker process)."""
    sweep_dir = Path(sweep_dir).resolve()
    record = _read_record(sweep_dir)
    loaded = load_sweep(sweep_dir / "sweep.yaml", trials=trials)
    url = storage or os.environ.get(STORAGE_ENV) or record["storage"] or default_storage(sweep_dir)
    if HIDDEN_PASSWORD in url and not storage:
        raise UserError(f"{sweep_dir / 'sweep.json'}: error: the storage URL's password is not kept on disk; give --storage URL again (or keep it in ~/.pgpass)")
    if trials is not None:
        _write_sweep_file(sweep_dir, loaded)
    return Sweeper(sweep_dir, loaded, url, record["study"], create=False, worker=worker)


# --- one process's hold on a sweep ----------------------------------------------------------


class Sweeper:
    """A sweep directory, its definition and its Optuna study, as one process sees them."""

    def __init__(self, sweep_dir: Path, loaded: LoadedSweep, storage_url: str, study_name: str, *, create: bool, worker: int = 0):
        self.sweep_dir, self.loaded, self.sweep = sweep_dir, loaded, loaded.sweep
        self.storage_url, self.study_name, self.worker = storage_url, study_name, worker
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.stop: str | None = None
        self.device: str | None = None
        self.quiet = False
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # tfn prints one line per trial itself
        self.storage = storage = open_storage(storage_url, self.sweep.heartbeat, on_stale=self._on_lost)
        try:
            if create:
                self.study = optuna.create_study(storage=storage, study_name=study_name, direction=_direction(loaded), load_if_exists=True)
            else:
                self.study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:
            raise UserError(f"--study {study_name}: error: no such study in {shown_url(storage_url)}") from None
        self._agree(create)
        before = len(self.study.get_trials(deepcopy=False))
        self.study.sampler = self._sampler(before)
        self.study.pruner = self._pruner()
        if create:
            for params in self.sweep.enqueue:
                self.study.enqueue_trial(params, skip_if_exists=True)

    def close(self) -> None:
        """Close the storage's database connections."""
        engine = getattr(self.storage, "engine", None)
        if engine is not None:
            engine.dispose()

    # --- the study's definition, shared by every process ---

    def _agree(self, create: bool) -> None:
        mine = _definition(self.loaded)
        theirs = self.study.user_attrs.get("tfn_sweep")
        where = f"study {self.study_name!r} in {shown_url(self.storage_url)}"
        if theirs is None:
            if self.study.get_trials(deepcopy=False):
                raise UserError(f"--study {self.study_name}: error: {where} has trials but was not made by tfn sweep; choose another --study")
            self.study.set_user_attr("tfn_sweep", mine)
        elif theirs != mine:
            diff = [k for k in mine if mine[k] != theirs.get(k)]
            raise UserError(
                f"--study {self.study_name}: error: {where} was made by another sweep: its {', '.join(diff)} differ "
                f"({json.dumps({k: theirs.get(k) for k in diff})}); use the same sweep file, or another --study"
            )
        if self.study.user_attrs.get("tfn_trials") != self.sweep.trials and (create or self.loaded.doc.overrides.get(("trials",))):
            self.study.set_user_attr("tfn_trials", self.sweep.trials)

    @property
    def target(self) -> int:
        """Completed + pruned trials the study is to have (the grid's size when that is smaller)."""
        target = self.study.user_attrs.get("tfn_trials", self.sweep.trials)
        if isinstance(self.sweep.sampler, GridSampler):
            target = min(target, math.prod(len(p.grid()) for p in self.sweep.params.values()))
        return target

    def grid_exhausted(self) -> bool:
        """A grid search has started every combination."""
        return isinstance(self.study.sampler, optuna.samplers.GridSampler) and self.study.sampler.is_exhausted(self.study)

    def shown_storage(self) -> str:
        return shown_url(self.storage_url)

    def _sampler(self, trials_before: int) -> optuna.samplers.BaseSampler:
        s = self.sweep.sampler
        # a seeded sampler gives the same proposals for the same sweep; each worker and each resume draws its own
        seed = None if s.seed is None else int(np.random.SeedSequence([s.seed, trials_before, self.worker]).generate_state(1)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # TPE's multivariate
            make = {
                TpeSampler: lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials, multivariate=s.multivariate),
                RandomSampler: lambda: optuna.samplers.RandomSampler(seed=seed),
                GridSampler: lambda: optuna.samplers.GridSampler({n: p.grid() for n, p in self.sweep.params.items()}, seed=seed),
            }
            return make[type(s)]()

    def _pruner(self) -> optuna.pruners.BasePruner:
        p = self.sweep.pruner
        make = {
            MedianPruner: lambda: optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps),
            HyperbandPruner: lambda: optuna.pruners.HyperbandPruner(min_resource=p.min_resource, reduction_factor=p.reduction_factor),
            NoPruner: lambda: optuna.pruners.NopPruner(),
        }
        return make[type(p)]()

    # --- the worker loop ---

    def work(self, *, device: str | None = None, quiet: bool = False) -> str | None:
        """Run trials until the study has its count; the stop signal's name when one came first."""
        self.device, self.quiet = device, quiet
        waiting_said = False
        self._fail_dead_local_trials()
        with _signals(self):
            while self.stop is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(self.study)  # Optuna's heartbeat: trials of workers gone silent
                trials = self.study.get_trials(deepcopy=False)
                counts = Counts.of(trials)
                too_many = self.too_many_failures(trials)
                if too_many:
                    raise SweepFailed(too_many)
                grid_done = self.grid_exhausted()
                if counts.finished >= self.target or (grid_done and counts.running == 0):
                    return None
                if counts.finished + counts.running >= self.target or grid_done:
                    if not waiting_said and not quiet:
                        self._say(f"waiting for {counts.running} running trial(s) of other workers (a lost one fails after {2 * self.sweep.heartbeat} s)")
                        waiting_said = True
                    time.sleep(min(2.0, self.sweep.heartbeat / 2))
                    continue
                waiting_said = False
                self.study.optimize(self._objective, n_trials=1, catch=(_TrialFailed, _TrialStopped), callbacks=[self._report])
        return self.stop

    def too_many_failures(self, trials: list[FrozenTrial] | None = None) -> str | None:
        """Why the sweep must stop, when more trials than max_failures have failed."""
        failed = [t for t in (trials if trials is not None else self.study.get_trials(deepcopy=False)) if is_failure(t)]
        if len(failed) <= self.sweep.max_failures:
            return None
        last = max(failed, key=lambda t: t.number)
        return f"{len(failed)} trials failed, more than max_failures: {self.sweep.max_failures}; trial {last.number}: {failure_reason(last)}"

    def _objective(self, trial: optuna.Trial) -> float:
        earlier = [t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number]
        counts = Counts.of(earlier)
        if counts.finished + counts.running >= self.target or self.stop:
            # another worker asked at the same moment and took the last place: this trial never runs
            trial.set_user_attr("skipped", "the sweep had its count of trials when this one was asked for" if not self.stop else self.stop)
            raise _TrialStopped()
        run_dir = self.sweep_dir / f"trial-{trial.number:04d}"
        for key, value in {"run_dir": str(run_dir), "host": self.host, "pid": self.pid, "process_start": _process_start(self.pid), "worker": self.worker}.items():
            trial.set_user_attr(key, value)
        values = {name: _suggest(trial, name, p) for name, p in self.sweep.params.items()}
        sets = [f"{name}={_yaml_scalar(v)}" for name, v in values.items()]
        info = {
            "sweep": {
                "dir": str(self.sweep_dir),
                "study": self.study_name,
                "storage": self.shown_storage(),
                "trial": trial.number,
                "params": values,
                "host": self.host,
                "pid": self.pid,
            }
        }
        command = reproduce_command(self.sweep_dir, values)
        try:
            loaded = load(self.sweep_dir / "spec.yaml", sets)
            result = train(
                loaded,
                out=run_dir,
                device=self.device,
                quiet=True,
                command=shlex.split(command),
                on_validation=_Reporter(self, trial, loaded.spec.train),
                run_info=info,
                hparams=values,
            )
        except (UserError, TrainingFailed) as exc:  # an invalid combination, a diverged run
            self._fail(trial, run_dir, info, command, str(exc))
        except Exception as exc:  # anything else fails this trial, not the sweep (max_failures bounds it)
            self._fail(trial, run_dir, info, command, f"{type(exc).__name__}: {exc}")
        if result.stopped in STOPPED:
            self.stop = self.stop or result.stopped
            trial.set_user_attr("stopped", result.stopped)
            raise _TrialStopped()
        if result.stopped == "pruned":
            raise TrialPruned()
        value = result.metrics.get("validation", {}).get(self.sweep.monitor)
        if value is None or not math.isfinite(value):
            reason = f"the run gave no finite validation {self.sweep.monitor} (got {value}); does its data have a validation split?"
            trial.set_user_attr("error", reason)
            raise _TrialFailed(reason)
        return value

    def _fail(self, trial: optuna.Trial, run_dir: Path, info: dict, command: str, reason: str):
        trial.set_user_attr("error", reason)
        run_file = run_dir / "run.json"
        if not run_file.exists():  # failed before training began: the trial still leaves a run directory saying why
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_file, {**info, "command": shlex.split(command), "started": _now(), "ended": _now(), "status": "failed", "error": reason, "steps": 0})
        raise _TrialFailed(reason)

    def _report(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.quiet or "skipped" in trial.user_attrs:
            return
        values = ", ".join(f"{k}={_yaml_scalar(v)}" for k, v in trial.params.items())
        if trial.state == TrialState.COMPLETE:
            what = f"completed, validation {self.sweep.monitor} {trial.value:.4f}"
        elif trial.state == TrialState.PRUNED:
            what = f"pruned at {trial.user_attrs.get('pruned_at', '?')}, validation {self.sweep.monitor} {trial.value:.4f}"
        elif "stopped" in trial.user_attrs:
            what = f"stopped by {trial.user_attrs['stopped']} (checkpoint written)"
        else:
            what = f"failed: {failure_reason(trial)}"
        self._say(f"trial {trial.number}: {what} ({values})")

    def _say(self, text: str) -> None:
        prefix = f"[worker {self.worker}] " if self.worker else ""
        print(prefix + text, file=sys.stderr, flush=True)

    # --- lost trials ---

    def _fail_dead_local_trials(self) -> None:
        """At a worker's start: fail the running trials of this machine whose process is gone, without
        waiting for their heartbeat to go stale (a resume right after a crash)."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = t.user_attrs
            if attrs.get("host") == self.host and "pid" in attrs and not _alive(attrs["pid"], attrs.get("process_start")):
                self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                self._on_lost(self.study, t)

    def _on_lost(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A lost trial's run.json says so, where its run directory is on this machine."""
        run_dir = trial.user_attrs.get("run_dir")
        if not run_dir or trial.user_attrs.get("host") != self.host:
            return
        run_file = Path(run_dir) / "run.json"
        try:
            run = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            run = {}
        if run.get("status", "running") == "running":
            write_json(run_file, {**run, "status": "failed", "error": LOST, "ended": _now()})
        if not self.quiet:
            self._say(f"trial {trial.number}: failed: {LOST}")

    # --- the end ---

    def summary(self, plots: bool = True) -> dict:
        """Counts, the best trial (its run directory, values and the `tfn train` command) and the plots."""
        trials = self.study.get_trials(deepcopy=False)
        counts = Counts.of(trials)
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        best = None
        if completed:
            t = self.study.best_trial
            best = {
                "trial": t.number,
                "value": t.value,
                "params": t.params,
                "run_dir": t.user_attrs.get("run_dir"),
                "host": t.user_attrs.get("host"),
                "command": reproduce_command(self.sweep_dir, t.params),
            }
        result = {
            "sweep_dir": str(self.sweep_dir),
            "study": self.study_name,
            "storage": self.shown_storage(),
            "monitor": self.sweep.monitor,
            "direction": _direction(self.loaded),
            "target": self.target,
            "trials": {"completed": counts.completed, "pruned": counts.pruned, "failed": counts.failed, "running": counts.running, "stopped": counts.stopped},
            "best": best,
            "failures": {t.number: failure_reason(t) for t in trials if is_failure(t)},
            "plots": write_plots(self.study, self.sweep_dir, f"validation {self.sweep.monitor}") if plots else {},
        }
        write_json(self.sweep_dir / "summary.json", result)
        return result


LOST = "its worker stopped while it ran (killed, or its machine lost); no result"


def failure_reason(trial: FrozenTrial) -> str:
    return trial.user_attrs.get("error", LOST)


class _Reporter:
    """The validation callback: reports the monitored value to Optuna's pruner and passes its decision on."""

    def __init__(self, sweeper: Sweeper, trial: optuna.Trial, settings):
        self.sweeper, self.trial, self.settings = sweeper, trial, settings

    def __call__(self, step: int, epoch: int, metrics: dict[str, float]) -> bool:
        if self.sweeper.stop:  # a signal came while the run was starting: hand it to the training loop now
            os.kill(os.getpid(), getattr(signal, self.sweeper.stop))
            return False
        value = metrics.get(self.sweeper.sweep.monitor)
        if value is None or not math.isfinite(value):
            return False
        s = self.settings
        # trials compare at the same epoch (validations per epoch) or step (validate_every)
        self.trial.report(value, step if s.validate_every else epoch)
        # pruning at the last validation would save nothing and lose the test pass
        last = step >= s.steps if s.steps else (epoch >= s.epochs and not s.validate_every)
        if last or not self.trial.should_prune():
            return False
        self.trial.set_user_attr("pruned_at", f"step {step}" if s.validate_every else f"epoch {epoch}")
        return True


@contextlib.contextmanager
def _signals(sweeper: Sweeper):
    """SIGINT/SIGTERM between trials stop the loop; during a trial the training loop writes a checkpoint first."""

    def request(signum, frame):
        sweeper.stop = sweeper.stop or signal.Signals(signum).name

    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _suggest(trial: optuna.Trial, name: str, p: Param):
    kind = p.kind
    if kind == "choice":
        return trial.suggest_categorical(name, p.choice)
    low, high = p.bounds()
    if kind == "log_uniform":
        return trial.suggest_float(name, low, high, log=True)
    if kind == "uniform":
        return trial.suggest_float(name, low, high, step=p.step)
    return trial.suggest_int(name, low, high, step=int(p.step or 1), log=p.log)


def _yaml_scalar(value) -> str:
    """A value as --set reads it back (YAML 1.2): floats in full, strings quoted when they would read as something else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return value if parse_value(value) == value else json.dumps(value)


def reproduce_command(sweep_dir: Path, values: dict) -> str:
    """The `tfn train` command that runs a trial again: the spec as swept plus the trial's values."""
    sets = " ".join(f"--set {shlex.quote(f'{k}={_yaml_scalar(v)}')}" for k, v in values.items())
    return f"tfn train {shlex.quote(str(Path(sweep_dir) / 'spec.yaml'))} {sets}".rstrip()


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the original."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19]) if fields[0] != "Z" else -1


def _alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _process_start(pid)
    return now != -1 and (start is None or now is None or now == start)


# --- plots ----------------------------------------------------------------------------------


def write_plots(study: optuna.Study, sweep_dir: Path, target_name: str) -> dict[str, str]:
    """history.png and importance.png through Optuna's matplotlib backend (PED-ANOVA importance: NumPy only).

    Missing matplotlib or too few completed trials leave a plot out, with the reason in the result."""
    try:
        import matplotlib
    except ImportError:
        return {"note": "no plots: matplotlib is not installed (pip install 'tfn[plot]')"}
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as plots

    written = {}
    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    drawings = {
        "history": lambda: plots.plot_optimization_history(study, target_name=target_name),
        "importance": lambda: plots.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), target_name=target_name),
    }
    # Optuna's plots call plt.style.use('ggplot'): the context gives the caller's style back afterwards
    with matplotlib.rc_context():
        for name, draw in drawings.items():
            if completed < (1 if name == "history" else 2):
                written[f"{name}_note"] = f"no {name} plot: too few completed trials ({completed})"
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the matplotlib backend is "experimental"
                    axes = draw()
            except Exception as exc:  # a plot is a by-product: it never fails the sweep
                written[f"{name}_note"] = f"no {name} plot: {type(exc).__name__}: {exc}"
                plt.close("all")
                continue
            figure = axes.figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            png = io.BytesIO()
            figure.savefig(png, format="png", dpi=100)
            plt.close(figure)
            atomic_write(sweep_dir / f"{name}.png", png.getvalue())
            written[name] = str(sweep_dir / f"{name}.png")
    return written


# --- several workers on this machine ---------------------------------------------------------


@dataclass
class WorkersOutcome:
    stopped: str | None = None
    #: "worker N (pid P) how it ended", for workers that ended badly
    problems: list[str] = field(default_factory=list)


def run_workers(sweep_dir: Path, workers: int, *, device: str | None, quiet: bool, storage: str | None) -> WorkersOutcome:
    """`workers` processes of `tfn sweep --resume DIR --worker I` on this machine; SIGINT/SIGTERM are passed on."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    if storage:
        env[STORAGE_ENV] = storage
    command = [sys.executable, "-m", "tfn.cli.main", "sweep", "--resume", str(sweep_dir)]
    command += (["--device", device] if device else []) + (["--quiet"] if quiet else [])
    outcome = WorkersOutcome()
    procs: list[subprocess.Popen] = []

    def forward(signum, frame):
        outcome.stopped = outcome.stopped or signal.Signals(signum).name
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        procs += [subprocess.Popen([*command, "--worker", str(i + 1)], env=env) for i in range(workers)]
        while any(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for i, p in enumerate(procs, start=1):
        code = p.returncode
        if code == 0 or (outcome.stopped and code == 128 + getattr(signal, outcome.stopped)):
            continue
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        outcome.problems.append(f"worker {i} (pid {p.pid}) {how}")
    return outcome
