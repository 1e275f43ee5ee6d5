"""`tfn train`: the training run and its run directory.

    runs/<name>/<N>/
      spec.yaml        the spec as run, every default filled in
      graph.json       the graph definition (structure only)
      preprocessing.json   how each data field was made from raw files (runners/preprocessing.py)
      checkpoints/     weights + resume state (safetensors) and checkpoint.json
      train/ validation/   TensorBoard event files
      metrics.jsonl    one JSON object per logged step or evaluation
      run.json         versions, threads, device, seed, command, times, final metrics

`train()` starts a run, `resume()` continues one in place from its latest
checkpoint. Both drive a `Trainer`, whose hot loop reads nothing back from
the device except on the logging cadence, at validations and at checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml

from tfn import layers
from tfn.runners import checkpoint as ckpt
from tfn.runners.data import DataPipeline
from tfn.runners.distributed import Replicas, muted
from tfn.runners.files import atomic_write, new_run_dir, prepare_out_dir, write_json
from tfn.runners.memory import require_memory
from tfn.runners.metrics import Metrics, default_metrics, scalars
from tfn.runners.module import GraphModule, loss_fetches, reduced_loss, wants_channels_last
from tfn.runners.optimizers import clip_gradients, make_optimizer, unmatched_multiplier_patterns
from tfn.runners.precision import Precision
from tfn.runners.preprocessing import for_model
from tfn.runners.runs import format_duration
from tfn.runners.schedules import Scheduler
from tfn.runners.summaries import Summaries
from tfn.specs import LoadedSpec, load
from tfn.specs.errors import UserError
from tfn.specs.schema import better, resolved


class TrainingFailed(Exception):
    """The run itself failed (diverged): exit status 1."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    metrics: dict[str, dict]
    #: why the run ended before its last step: "early_stopping", "pruned", "SIGTERM", "SIGINT"; None when it ran to the end
    stopped: str | None = None
    #: the run's final weights (those the test figures come from): {"step", "checkpoint", "best"}, where
    #: "best" is {"metric", "value"} when restore_best chose the best checkpoint, else None (the last step)
    weights: dict | None = None
    #: warnings about the result, also printed at the end of the run (stale batch-normalization statistics)
    warnings: list[str] = field(default_factory=list)


#: Called after each validation with (step, epoch, the scalar validation metrics); a true result
#: stops the run there as "pruned" (a sweep's pruner), with a checkpoint and run.json status `pruned`.
ValidationCallback = Callable[[int, int, dict[str, float]], bool]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise UserError(f"--device {name}: error: expected auto, cpu, cuda or cuda:N")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: error: CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: error: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


class Loss:
    """The spec's weighted losses (each reduced as tf.losses does) plus the L2 regularizers the ops declare."""

    def __init__(self, model: GraphModule):
        graph = model.graph
        self.fetches = tuple(dict.fromkeys(list(graph.outputs) + loss_fetches(graph)))
        self.weights = [(l.node, l.weight) for l in graph.losses]
        params = model.trainable_variables()
        # TF's factor * l2_loss(w) = factor * sum(w^2) / 2
        self.regularized = [(params[v.name], 0.5 * v.regularizer) for v in graph.variables if v.regularizer > 0 and v.trainable]
        self.model = model
        #: what runs the model: the model itself, or DistributedDataParallel around it (Trainer)
        self.forward = model

    def data_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(w * reduced_loss(self.model.graph, node, out) for node, w in self.weights)

    def __call__(self, feeds) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.forward(feeds, self.fetches)
        total = self.data_loss(out)
        for param, factor in self.regularized:
            total = total + factor * param.square().sum()
        return total, out


@dataclass
class Target:
    """One loss's logits and labels and the metrics that follow them.

    The first loss's metrics are reported as they are (`accuracy`), the
    others' under the loss node's name (`loss_1/accuracy`).
    """

    logits: str
    labels: str
    metrics: Metrics
    prefix: str
    #: the loss's weights (node:1) when it is weighted, for token_accuracy
    weights: str | None = None

    def scalar_names(self) -> list[str]:
        """The names of the scalar results (what early stopping, plateau and `best` may watch)."""
        m = self.metrics
        names = [f"top_{m.top_k}_accuracy" if n == "top_k_accuracy" else n for n in m.names if n not in ("per_class_accuracy", "confusion_matrix")]
        return [self.prefix + n for n in names]


def targets(spec, graph) -> list[Target]:
    """Per loss: `metrics` of that loss, else (first loss only) train.metrics, else accuracy for class labels."""
    settings = spec.train
    loss_specs = spec.loss if isinstance(spec.loss, list) else [spec.loss]
    found = []
    for i, (loss, loss_spec) in enumerate(zip(graph.losses, loss_specs)):
        node = graph.node(loss.node)
        logits, labels = node.inputs[:2]
        logits_type, label_dtype = graph.type_of(logits), graph.type_of(labels).dtype
        names, where = loss_spec.metrics, (f"loss[{i}].metrics" if isinstance(spec.loss, list) else "loss.metrics")
        if names is None and i == 0:
            names, where = (settings.metrics, "train.metrics") if settings.metrics is not None else (default_metrics(label_dtype), "")
        classes = logits_type.shape[1] if logits_type.rank > 1 else 1
        weights = f"{loss.node}:1" if len(node.outputs) > 1 else None
        metrics = Metrics(
            names or [],
            classes,
            label_dtype,
            top_k=settings.top_k,
            threshold=settings.threshold,
            average=settings.average,
            where=where,
            prediction=layers.get(node.op).prediction,
            weighted=weights is not None,
            auc_thresholds=settings.auc.num_thresholds,
            auc_summation=settings.auc.summation_method,
        )
        found.append(Target(logits, labels, metrics, "" if i == 0 else f"{loss.node}/", weights))
    return found


def validation_metrics(chosen: list[Target]) -> list[str]:
    """The names a validation result has for these targets (what a monitor may watch)."""
    return ["loss", *(name for t in chosen for name in t.scalar_names())]


def measure(chosen: list[Target], out: dict, feeds: dict) -> None:
    for t in chosen:
        t.metrics.update(out[t.logits], feeds[t.labels], out[t.weights] if t.weights else None)


def results(chosen: list[Target]) -> dict:
    return {t.prefix + k: v for t in chosen for k, v in t.metrics.result().items()}


def evaluate(model: GraphModule, data: DataPipeline, split: str, chosen: list[Target]) -> dict:
    """Mean loss and the metrics over a whole split, in evaluation mode; one host read at the end."""
    loss_fn = Loss(model)
    n = data.size(split)
    if n == 0:
        return {}
    for t in chosen:
        t.metrics.reset()
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for feeds in data.eval_batches(split):
                out = model(feeds, loss_fn.fetches)
                count = len(next(iter(feeds.values())))
                loss_sum += loss_fn.data_loss(out).double() * count
                measure(chosen, out, feeds)
    finally:
        model.train(was_training)
    return {"loss": float(loss_sum) / n, **results(chosen)}


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"tfn": version("tfn"), "torch": torch.__version__, "python": platform.python_version(), "numpy": np.__version__}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


#: moving statistics forget their initial values (mean 0, variance 1) after about this many time constants
#: 1 / (1 - momentum): the initial value's weight is then momentum ** n ~ e ** -3 ~ 5%
FORGETTING_TIME_CONSTANTS = 3


def _updates_needed(momentum: float) -> int:
    return math.ceil(round(FORGETTING_TIME_CONSTANTS / (1 - momentum), 6))  # 3 / (1 - 0.9) is 30.000000000000004


def stale_moving_statistics(graph, updates: int, inherited: set[str] = frozenset()) -> str | None:
    """A warning when ops with moving statistics (batch normalization) had too few updates to forget their start.

    `updates` is the number of training steps; nodes sharing variables update
    them once each per step. Variables loaded by --init-from (`inherited`)
    are taken as already settled.
    """
    from tfn import layers

    groups: dict[tuple, list] = {}
    for node in graph.nodes:
        momentum = layers.get(node.op).moving_average_momentum(node.params)
        if momentum is not None and momentum < 1 and not inherited & set(node.variables.values()):
            groups.setdefault(tuple(sorted(node.variables.values())), []).append((node, momentum))
    stale = [(node, momentum, updates * len(group)) for group in groups.values() for node, momentum in group]
    stale = [(node, momentum, n) for node, momentum, n in stale if n < _updates_needed(momentum)]
    if not stale:
        return None
    names = ", ".join(f"{node.name} ({node.op}, momentum {momentum:g})" for node, momentum, _ in stale)
    fewest, slowest = min(n for _, _, n in stale), max(momentum for _, momentum, _ in stale)
    needed = _updates_needed(slowest)
    fitting = 0.9 if fewest >= _updates_needed(0.9) else max(0.0, math.floor((1 - FORGETTING_TIME_CONSTANTS / fewest) * 100) / 100)
    return (
        f"the moving mean and variance of {names} were updated only {fewest} times, but need about {needed} "
        f"(3 / (1 - momentum)) to forget their initial values: evaluation, the test figures and the saved model use stale statistics. "
        f"Set `momentum: {fitting:g}` on these nodes, or train longer"
    )


# --- state that resuming restores ------------------------------------------------------


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """Every RNG the run draws from: torch CPU and CUDA, NumPy's global one, Python's random."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    tensors["rng/python"] = torch.tensor(internal, dtype=torch.int64)
    header = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, gauss_next]}
    return tensors, header


def set_rng_state(tensors: dict[str, torch.Tensor], header: dict) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    kind, pos, has_gauss, cached = header["numpy"]
    np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, gauss_next = header["python"]
    random.setstate((version, tuple(tensors["rng/python"].tolist()), gauss_next))


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Slots as tensors named `optimizer/<variable>/<slot>`; the rest (groups, scalars) as JSON."""
    state = optimizer.state_dict()
    names = [name for group in optimizer.param_groups for name in group["names"]]
    tensors, numbers = {}, {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{names[index]}/{slot}"] = value
            else:
                numbers.setdefault(names[index], {})[slot] = value
    return tensors, {"param_groups": state["param_groups"], "numbers": numbers}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], header: dict) -> None:
    names = [name for group in optimizer.param_groups for name in group["names"]]
    state: dict[int, dict] = {}
    for index, name in enumerate(names):
        prefix = f"optimizer/{name}/"
        slots = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        slots.update(header["numbers"].get(name, {}))
        if slots:
            state[index] = slots
    optimizer.load_state_dict({"state": state, "param_groups": header["param_groups"]})


@dataclass
class Monitor:
    """Counts evaluations without improvement of one validation metric (early stopping, plateau)."""

    metric: str
    mode: str
    min_delta: float
    patience: int
    best: float | None = None
    bad: int = 0

    def update(self, value: float) -> bool:
        """Record a value; True when patience has run out (and the count restarts)."""
        improved = self.best is None or (value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta)
        if improved:
            self.best, self.bad = value, 0
            return False
        self.bad += 1
        if self.bad >= self.patience:
            self.bad = 0
            return True
        return False

    def state(self) -> dict:
        return {"best": self.best, "bad": self.bad}


@dataclass
class Position:
    """Where the run stands: the next batch to train is `batch` of `epoch` (1-based); `step` updates done."""

    step: int = 0
    epoch: int = 1
    batch: int = 0

    @property
    def last_epoch(self) -> int:
        """The epoch of the last update: at an epoch boundary, the one just finished."""
        return self.epoch - 1 if self.batch == 0 and self.step > 0 else self.epoch


class FirstNonFinite:
    """The first step whose loss was NaN or infinite, and that loss, recorded on the device.

    `note` runs every step and never reads back to the host; the host reads
    the record on the logging cadence and before writing a checkpoint.
    """

    NEVER = 2**62

    def __init__(self, device: torch.device):
        self.step = torch.full((), self.NEVER, dtype=torch.int64, device=device)
        self.loss = torch.zeros((), dtype=torch.float32, device=device)

    def note(self, step: int, loss: torch.Tensor) -> None:
        first = ~torch.isfinite(loss.detach()) & (self.step == self.NEVER)
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, loss.detach().float(), self.loss)


@dataclass
class _Stop:
    reason: str | None = None
    handlers: dict = field(default_factory=dict)

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.handlers[sig] = signal.signal(sig, self._request)
        return self

    def _request(self, signum, frame) -> None:
        # checked once per step: the loop saves a checkpoint and returns
        self.reason = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)


# --- the run ----------------------------------------------------------------------------


class Trainer:
    def __init__(
        self,
        loaded: LoadedSpec,
        run_dir: Path,
        device: torch.device,
        *,
        quiet: bool,
        resuming: bool,
        replicas: Replicas | None = None,
        on_validation: ValidationCallback | None = None,
        hparams: dict | None = None,
    ):
        self.loaded, self.spec, self.graph = loaded, loaded.spec, loaded.graph
        self.on_validation = on_validation
        self.settings = self.spec.train
        # one process, or one rank of a distributed job (runners/distributed.py): only rank 0 writes
        self.replicas = replicas or Replicas(device)
        self.run_dir, self.device, self.quiet = run_dir, device, quiet or not self.replicas.is_writer
        #: --quiet as given, the same on every rank (the progress lines' collective runs on all ranks or none)
        self.progress = not quiet
        #: variables that --init-from loaded (their moving statistics are not fresh)
        self.inherited: set[str] = set()
        # a resumed run keeps the record it wrote (vocabularies, statistics), whatever the data files hold now
        record = for_model(run_dir) if resuming else None
        self.data = DataPipeline(
            self.spec.data, self.graph, seed=self.settings.seed, device=device, doc=loaded.doc, shard=self.replicas.shard, preprocessing=record
        )
        self.has_validation = self.data.size("validation") > 0
        require_memory(self.graph, -(-self.data.batch_size // self.replicas.shard[1]), device)  # before a variable exists

        torch.manual_seed(self.settings.seed)
        random.seed(self.settings.seed)
        np.random.seed(self.settings.seed % 2**32)
        self.model = GraphModule(self.graph, torch.Generator().manual_seed(self.settings.seed)).place(device)
        if wants_channels_last(self.graph, self.settings.memory_format):
            self.model.use_channels_last()
        self.replicas.reseed(self.settings.seed)
        named = list(self.model.trainable_variables().items())
        unmatched = unmatched_multiplier_patterns(self.spec.optimizer, (n for n, _ in named))
        if unmatched:
            raise UserError(
                f"optimizer.learning_rate_multipliers: error: {', '.join(map(repr, unmatched))} match no trainable variable; "
                f"the variables are {', '.join(n for n, _ in named)}"
            )
        self.parameters = [p for _, p in named]
        self.optimizer = make_optimizer(self.spec.optimizer, named)
        self.scheduler = Scheduler(self.optimizer, self.spec.optimizer)
        self.loss_fn = Loss(self.model)
        self.loss_fn.forward = self.replicas.wrap(self.model, self.loss_fn.fetches, sync_batchnorm=self.settings.sync_batchnorm)
        if self.settings.compile:
            self.loss_fn.forward = torch.compile(self.loss_fn.forward)
        self.precision = Precision(self.settings.precision, device)
        self.targets = targets(self.spec, self.graph)
        self.monitors = self._monitors()
        cs = self.settings.checkpoints
        self.checkpoints = ckpt.CheckpointManager(
            run_dir / "checkpoints", cs.keep, keep_every_steps=cs.keep_every_steps, keep_every_hours=cs.keep_every_hours
        )
        self.position = Position()
        self.nonfinite = FirstNonFinite(device)
        self.last_validation: dict = {}
        self.last_saved_step: int | None = None
        if resuming:
            self._restore()
        self.summaries = Summaries(run_dir, self.graph, purge_step=self.position.step if resuming else None) if self.replicas.is_writer else muted()
        if not resuming:
            scalar_names = ["loss", *(name for t in self.targets for name in t.scalar_names())]
            splits = [split for split in ("validation", "test") if self.data.size(split) > 0]
            self.summaries.start_session(self.spec, {split: scalar_names for split in splits}, hparams)

    def _monitors(self) -> dict[str, Monitor]:
        s = self.settings
        available = validation_metrics(self.targets)
        wanted = {
            "early_stopping": s.early_stopping,
            "reduce_on_plateau": s.reduce_on_plateau,
        }
        monitors = {}
        for key, cfg in wanted.items():
            if cfg is None:
                continue
            self._check_monitor(f"train.{key}.monitor", cfg.monitor, available)
            monitors[key] = Monitor(cfg.monitor, better(cfg.monitor, cfg.mode), cfg.min_delta, cfg.patience)
        if s.checkpoints.best is not None:
            self._check_monitor("train.checkpoints.best", s.checkpoints.best, available)
        return monitors

    def _check_monitor(self, where: str, metric: str, available: list[str]) -> None:
        if not self.has_validation:
            raise UserError(f"{where}: error: watches validation {metric!r}, but the data has no validation split")
        if metric not in available:
            from tfn.layers import suggest

            hint = suggest(metric, available)
            raise UserError(
                f"{where}: error: {metric!r} is not a validation metric of this run; it has {', '.join(available)}"
                + (f" (did you mean {hint!r}?)" if hint else "")
                + "; add metrics with train.metrics"
            )

    # --- checkpoints ---------------------------------------------------------------

    def _resume_state(self) -> tuple[dict, dict]:
        opt_tensors, opt_header = optimizer_state(self.optimizer)
        rng_tensors, rng_header = self.replicas.gather_rng(*rng_state())
        header = {
            "step": self.position.step,
            "epoch": self.position.epoch,
            "batch": self.position.batch,
            "scheduler": self.scheduler.state_dict(),
            "loss_scale": self.precision.state_dict(),
            "optimizer": opt_header,
            "rng": rng_header,
            "monitors": {k: m.state() for k, m in self.monitors.items()},
            "last_validation": scalars(self.last_validation),
            "seed": self.settings.seed,
        }
        return {**opt_tensors, **rng_tensors}, header

    def save_checkpoint(self) -> None:
        """Write weights + resume state, unless the loss or a weight is no longer finite."""
        if self.last_saved_step == self.position.step:
            return
        self._check_finite()
        tensors, header = self._resume_state()
        if self.replicas.is_writer:
            self.checkpoints.save(
                self.model.variables(), tensors, header, step=self.position.step, epoch=self.position.last_epoch, graph_hash=self.graph.hash
            )
        self.last_saved_step = self.position.step

    def _check_finite(self, weights: bool = True) -> None:
        """TrainingFailed naming the first step whose loss was not finite, or (`weights`) a weight that is not.

        Checkpoints are written only after this check: none holds weights
        from that step or later, so --resume starts before the divergence.
        """
        first = int(self.replicas.minimum(self.nonfinite.step))
        if first != FirstNonFinite.NEVER:
            value = float(self.nonfinite.loss)  # on several processes: this process's, or NaN where another one diverged
            what = f"the loss became {value if not math.isfinite(value) else 'NaN or infinite'}"
            step = first
        elif weights and not bool(torch.stack([p.detach().isfinite().all() for p in self.parameters]).all()):
            what, step = "a weight became NaN or infinite", self.position.step
        else:
            return
        latest = self.checkpoints.latest
        kept = f"the last good checkpoint is {latest} (tfn train --resume starts there)" if latest else "no checkpoint was written"
        epoch = (step - 1) // self.data.steps_per_epoch + 1
        raise TrainingFailed(f"{what} at step {step} (epoch {epoch}); {kept}")

    def _restore(self) -> None:
        latest = self.checkpoints.latest
        if latest is None:
            raise UserError(f"{self.run_dir}: error: the run has no checkpoint to resume from")
        ckpt.restore(self.model, latest)
        tensors, header = ckpt.load_resume_state(latest.with_name(ckpt.state_name(latest.name)))
        load_optimizer_state(self.optimizer, tensors, header["optimizer"])
        self.scheduler.load_state_dict(header["scheduler"])
        for key, state in header["monitors"].items():
            if key in self.monitors:
                self.monitors[key].best, self.monitors[key].bad = state["best"], state["bad"]
        self.position = Position(header["step"], header["epoch"], header["batch"])
        self.last_validation = header.get("last_validation", {})
        self.last_saved_step = self.position.step
        self.precision.load_state_dict(header.get("loss_scale", {}))
        set_rng_state(*self.replicas.own_rng(tensors, header["rng"]))

    # --- the loop ------------------------------------------------------------------

    def run(self, total_steps: int, metrics_file) -> str | None:
        s = self.settings
        pos = self.position
        per_epoch = self.data.steps_per_epoch
        bar = _Progress(total_steps, pos.step, self.quiet)
        histogram_every = s.summaries.histogram_every
        if pos.step == 0 and s.summaries.images:
            first = self.targets[0] if self.targets else None
            labels = first.labels if first is not None and first.metrics.class_labels else None
            self.summaries.input_images(self.data.examples("train", s.summaries.images, labels), self.graph)
        seen, tick = 0, time.perf_counter()
        self.started = tick
        self._start_line(tick)
        loss = None
        stop = None

        def log(record: dict) -> None:
            metrics_file.write(json.dumps(record, sort_keys=True) + "\n")
            metrics_file.flush()

        self.model.train()
        with _Stop() as signals:
            try:
                while pos.step < total_steps and stop is None:
                    # the pipeline's order is a pure function of (seed, epoch, step): resuming mid-epoch is exact
                    for feeds in self.data.train_batches(pos.epoch, pos.batch):
                        with self.precision.autocast():
                            loss, out = self.loss_fn(feeds)
                        self.optimizer.zero_grad(set_to_none=True)
                        self.precision.backward(loss)
                        self.precision.unscale(self.optimizer)
                        clip_gradients(self.parameters, self.spec.optimizer)
                        pos.step += 1
                        self.nonfinite.note(pos.step, loss)
                        if histogram_every and pos.step % histogram_every == 0:
                            self.summaries.histograms(pos.step, self.model)
                        self.precision.step(self.optimizer)
                        self.scheduler.step()
                        pos.batch += 1
                        samples = len(next(iter(feeds.values()))) * self.replicas.world_size
                        seen += samples
                        if self.progress:
                            self.line_loss += loss.detach()
                            self.line_samples += samples
                        if pos.step % s.log_every == 0 or pos.step == total_steps:
                            value = float(self.replicas.mean(loss.detach()))  # the host reads the loss only on the logging cadence
                            self._check_finite(weights=False)
                            now = time.perf_counter()
                            rate = seen / max(now - tick, 1e-9)
                            seen, tick = 0, now
                            for t in self.targets:
                                t.metrics.reset()
                            measure(self.targets, out, feeds)
                            batch_metrics = scalars(results(self.targets))
                            record = {"loss": value, "learning_rate": self.scheduler.rate, "samples_per_second": rate, **batch_metrics}
                            self.summaries.scalars("train", pos.step, record)
                            log({"split": "train", "step": pos.step, "epoch": pos.epoch, **record})
                            bar.show(loss=value, **batch_metrics, samples_per_second=rate)
                        bar.update(1)
                        epoch_ended = pos.batch == per_epoch
                        if epoch_ended:
                            pos.epoch, pos.batch = pos.epoch + 1, 0
                        epoch = pos.epoch - 1 if epoch_ended else pos.epoch
                        if (s.validate_every and pos.step % s.validate_every == 0) or (epoch_ended and not s.validate_every):
                            stop = self.validate(log, bar, epoch)
                        else:
                            if epoch_ended:
                                self.report(bar, epoch, None, time.perf_counter())
                            if s.checkpoints.every_steps and pos.step % s.checkpoints.every_steps == 0:
                                self.save_checkpoint()
                        reason = self.replicas.agree(signals.reason)  # every rank stops at the same step
                        if reason:
                            stop = reason
                        if stop or pos.step >= total_steps:
                            break
                self.save_checkpoint()
            finally:
                bar.close()
        return stop

    def _start_line(self, now: float) -> None:
        self.line_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self.line_samples, self.line_steps_from, self.line_tick = 0, self.position.step, now

    def report(self, bar, epoch: int, validation: dict | None, trained: float) -> None:
        """The progress line of an epoch or a validation: the mean training loss and samples/s since
        the previous line (`trained`: when its training ended), the validation metrics, time elapsed."""
        if not self.progress:
            return
        steps = self.position.step - self.line_steps_from
        parts = [f"train loss {float(self.replicas.mean(self.line_loss)) / steps:.4f}"] if steps else []
        parts += [f"validation {k} {v:.4f}" for k, v in scalars(validation or {}).items()]
        parts.append(f"{self.line_samples / max(trained - self.line_tick, 1e-9):,.0f} samples/s")
        now = time.perf_counter()
        parts.append(f"{format_duration(now - self.started)} elapsed")
        bar.line(f"epoch {epoch} step {self.position.step}: " + ", ".join(parts))
        self._start_line(now)

    def restore_best(self) -> dict | None:
        """With checkpoints.restore_best: load the best checkpoint's weights and name them the run's final ones.

        Returns where the weights came from ({"step", "checkpoint", "best"}),
        or None when the setting is off or no validation chose a best.
        """
        if not self.settings.checkpoints.restore_best:
            return None
        best = self.checkpoints.best  # rank 0 keeps it; the other ranks read the same file
        name = self.replicas.broadcast_text(best.name if best is not None else "")
        if not name:
            return None
        info = ckpt.restore(self.model, self.checkpoints.directory / name)
        if self.replicas.is_writer:
            self.checkpoints.finish(name)
        return {"step": int(info.metadata["step"]), "checkpoint": name, "best": {"metric": best.metric, "value": best.value} if best else None}

    def validate(self, log, bar, epoch: int) -> str | None:
        """Validation, then a checkpoint; plateau and early stopping act on the result."""
        s, pos = self.settings, self.position
        trained = time.perf_counter()
        result = None
        if self.has_validation:
            result = evaluate(self.model, self.data, "validation", self.targets)
            self.last_validation = result
            self.summaries.evaluation("validation", pos.step, result, self.data.class_names)
            log({"split": "validation", "step": pos.step, "epoch": epoch, **result})
        self.report(bar, epoch, result, trained)
        self.save_checkpoint()
        if result is None:
            return None
        if s.checkpoints.best is not None and self.replicas.is_writer:
            self.checkpoints.consider_best(s.checkpoints.best, result[s.checkpoints.best], better(s.checkpoints.best, s.checkpoints.best_mode))
        if self.on_validation is not None and self.on_validation(pos.step, epoch, scalars(result)):
            bar.line(f"pruned at epoch {epoch} step {pos.step}")
            return "pruned"
        plateau = self.monitors.get("reduce_on_plateau")
        if plateau is not None and plateau.update(result[plateau.metric]):
            cfg = s.reduce_on_plateau
            self.scheduler.scale(cfg.factor, cfg.min_learning_rate)
            bar.line(f"validation {plateau.metric} has not improved for {cfg.patience} evaluations: learning rate now {self.scheduler.rate:.3g}")
        early = self.monitors.get("early_stopping")
        if early is not None and early.update(result[early.metric]):
            bar.line(f"early stopping: validation {early.metric} has not improved for {s.early_stopping.patience} evaluations")
            return "early_stopping"
        return None


def train(
    loaded: LoadedSpec,
    *,
    runs_root: str | Path = "runs",
    out: str | Path | None = None,
    device: str | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    quiet: bool = False,
    command: list[str] | None = None,
    init_from: str | Path | None = None,
    strict: bool = False,
    on_validation: ValidationCallback | None = None,
    run_info: dict | None = None,
    hparams: dict | None = None,
) -> TrainResult:
    """Train a spec into a new run directory.

    `on_validation` may stop the run as pruned (see ValidationCallback); `run_info`
    adds keys to run.json (a sweep names itself and the trial); `hparams` adds
    values to TensorBoard's HParams tab beside the spec's main settings.
    """
    spec = loaded.spec
    replicas = Replicas.join(pick_device(device or spec.train.device))
    dev = replicas.device
    run_dir = replicas.run_dir(lambda: prepare_out_dir(out) if out else new_run_dir(runs_root, spec.name))
    numbered = out is None
    try:
        if replicas.is_writer:
            atomic_write(run_dir / "spec.yaml", yaml.safe_dump(resolved(spec, Path.cwd()), sort_keys=False))
            atomic_write(run_dir / "graph.json", loaded.graph.to_json())
        trainer = Trainer(loaded, run_dir, dev, quiet=quiet, resuming=False, replicas=replicas, on_validation=on_validation, hparams=hparams)
        if replicas.is_writer:
            trainer.data.preprocessing.write(run_dir)
        if init_from is not None:
            report = ckpt.init_from(trainer.model, init_from, strict=strict)
            trainer.inherited = set(report.loaded)
            if not quiet or report.problems():
                print(report.describe(), file=sys.stderr, flush=True)
    except BaseException:
        if numbered and replicas.is_writer:  # a run that failed before its first step leaves no numbered directory behind
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    run = {
        "versions": _versions(),
        "threads": torch.get_num_threads(),
        "device": str(dev),
        "processes": replicas.world_size,
        "seed": spec.train.seed,
        "command": command if command is not None else sys.argv,
        "started": _now(),
        "graph_hash": loaded.graph.hash,
        "init_from": str(init_from) if init_from else None,
        **(run_info or {}),
    }
    return _run(trainer, run, epochs, steps)


def resume(
    run_dir: str | Path,
    *,
    device: str | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    quiet: bool = False,
    command: list[str] | None = None,
) -> TrainResult:
    """Continue a run in place from its latest checkpoint (interrupted + resumed == uninterrupted)."""
    run_dir = Path(run_dir)
    if not (run_dir / "spec.yaml").is_file() or not (run_dir / "run.json").is_file():
        raise UserError(f"{run_dir}: error: not a run directory (it needs spec.yaml and run.json)")
    loaded = load(run_dir / "spec.yaml")
    previous = json.loads((run_dir / "run.json").read_text())
    if previous.get("graph_hash") != loaded.graph.hash:
        raise UserError(f"{run_dir / 'spec.yaml'}: error: compiles to another graph than the run's graph.json; was it edited?")
    now = {"versions": _versions(), "threads": torch.get_num_threads()}
    for key, value in now.items():
        if previous.get(key) != value:
            _warn(f"the run used {key} {previous.get(key)}, this process has {value}: the resumed run will not be bit-identical")
    replicas = Replicas.join(pick_device(device or previous.get("device") or loaded.spec.train.device))
    dev = replicas.device
    if previous.get("processes", 1) != replicas.world_size and replicas.is_writer:
        _warn(f"the run used {previous.get('processes', 1)} processes, this one {replicas.world_size}: the resumed run will not be identical")
    trainer = Trainer(loaded, run_dir, dev, quiet=quiet, resuming=True, replicas=replicas)
    if replicas.is_writer:
        _trim_metrics(run_dir / "metrics.jsonl", trainer.position.step)
    run = {**previous, **now, "device": str(dev), "processes": replicas.world_size}
    run["resumed"] = [*previous.get("resumed", []), {"at": _now(), "step": trainer.position.step, "command": command or sys.argv}]
    return _run(trainer, run, epochs or previous.get("epochs"), steps or previous.get("max_steps"))


def _run(trainer: Trainer, run: dict, epochs: int | None, steps: int | None) -> TrainResult:
    settings = trainer.settings
    epochs = epochs or settings.epochs
    steps = steps or settings.steps
    total = steps or epochs * trainer.data.steps_per_epoch
    run.update(epochs=epochs, max_steps=steps)
    # rank 0 of several processes (or the only one) writes run.json and metrics.jsonl
    writer = trainer.replicas.is_writer
    write_run = write_json if writer else _discard
    write_run(trainer.run_dir / "run.json", {**run, "status": "running"})
    metrics_file = open(trainer.run_dir / "metrics.jsonl" if writer else os.devnull, "a", encoding="utf-8")
    status = "failed"
    try:
        try:
            stopped = trainer.run(total, metrics_file)
        except BaseException as exc:  # diverged, bad data met mid-run, a crashed worker: run.json says so
            write_run(
                trainer.run_dir / "run.json",
                {**run, "status": "failed", "error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, TrainingFailed) else str(exc), "ended": _now(), "steps": trainer.position.step},
            )
            raise
        metrics = {"validation": scalars(trainer.last_validation)}
        interrupted = stopped in ("SIGTERM", "SIGINT")
        latest = trainer.checkpoints.latest
        weights = {"step": trainer.position.step, "checkpoint": latest.name if latest else None, "best": None}
        warnings = []
        if not interrupted and stopped != "pruned":  # a pruned run's test pass would only cost time
            weights = trainer.restore_best() or weights
            if trainer.data.size("test") > 0:
                test = evaluate(trainer.model, trainer.data, "test", trainer.targets)
                trainer.summaries.evaluation("test", weights["step"], test, trainer.data.class_names)
                metrics_file.write(json.dumps({"split": "test", "step": weights["step"], **test}, sort_keys=True) + "\n")
                metrics["test"] = scalars(test)
            stale = stale_moving_statistics(trainer.graph, weights["step"], trainer.inherited)  # the updates the final weights had
            warnings = [stale] if stale else []
            if writer:
                for message in warnings:
                    _warn(message)
        status = "interrupted" if interrupted else "pruned" if stopped == "pruned" else "completed"
    finally:
        metrics_file.close()
        trainer.summaries.end_session(status)
        trainer.summaries.close()
        trainer.data.close()
    write_run(
        trainer.run_dir / "run.json",
        {
            **run,
            "status": status,
            "stopped": stopped,
            "ended": _now(),
            "steps": trainer.position.step,
            "metrics": metrics,
            "weights": weights,
            "warnings": warnings,
        },
    )
    trainer.loss_fn.forward = trainer.model  # the DistributedDataParallel wrapper goes before its process group
    trainer.replicas.leave()
    return TrainResult(trainer.run_dir, trainer.position.step, metrics, stopped, weights, warnings)


def _discard(*args) -> None:
    pass


def _trim_metrics(path: Path, step: int) -> None:
    """Drop records logged after the checkpoint a resume starts from (they will be logged again)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if record.get("step", 0) <= step and record.get("split") != "test":
            kept.append(line)
    atomic_write(path, "".join(line + "\n" for line in kept))


class _Progress:
    """A tqdm bar (loss, metric, samples/s, ETA) on a terminal; lines in logs; nothing with --quiet."""

    def __init__(self, total: int, done: int, quiet: bool):
        self.quiet = quiet
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def show(self, **values: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k.replace("samples_per_second", "samples/s"): f"{v:.4g}" for k, v in values.items()}, refresh=False)

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def evaluate_checkpoint(
    target: str | Path | dict,
    checkpoint: str | Path | None = None,
    *,
    split: str = "test",
    device: str | None = None,
    overrides: list[str] = (),
) -> tuple[Path, dict]:
    """The metrics of a checkpoint on a split: (the checkpoint file, {metric: value}).

    `target` is a run directory (its spec.yaml; the checkpoint defaults to the
    run's model: its best checkpoint when it ran with restore_best, else its
    latest; `best` or `latest` name those) or a spec file or shipped example
    (then `checkpoint` is required). `overrides` (`--set`) change the spec
    before it is read, e.g. to score other data.
    """
    from tfn.runners.data import SPLITS

    if split not in SPLITS:
        raise UserError(f"--split {split}: error: the splits are {', '.join(SPLITS)}")
    path = Path(target) if not isinstance(target, dict) else Path()
    is_run = not isinstance(target, dict) and path.is_dir() and (path / "spec.yaml").is_file()
    if not isinstance(target, dict) and path.is_dir() and not is_run:
        raise UserError(f"{path}: error: a directory without spec.yaml is not a run directory")
    loaded = load(path / "spec.yaml" if is_run else target, list(overrides))
    if checkpoint in (None, "latest", "best"):
        if not is_run:
            shown = "<spec>" if isinstance(target, dict) else target
            raise UserError(f"{shown}: error: a spec has no checkpoints of its own; give --checkpoint CKPT (a file or a run directory)")
        state = ckpt.read_state_file(path / "checkpoints")
        if checkpoint == "best":
            if not state.get("best"):
                raise UserError(f"{path}: error: the run kept no best checkpoint (set train.checkpoints.best to keep one)")
            checkpoint = path / "checkpoints" / state["best"]["name"]
        elif checkpoint == "latest":
            checkpoint = path / "checkpoints" / state["latest"]
        else:
            checkpoint = ckpt.resolve(path)  # the run's model: its final weights (restore_best), else the latest
    dev = pick_device(device or loaded.spec.train.device)
    model = GraphModule(loaded.graph).place(dev)
    if wants_channels_last(loaded.graph, loaded.spec.train.memory_format):
        model.use_channels_last()  # the layout training (and its validation) ran in
    info = ckpt.restore(model, checkpoint)
    preprocessing = for_model(path) if is_run else None  # a run's own record; a spec's data section otherwise
    data = DataPipeline(loaded.spec.data, loaded.graph, seed=loaded.spec.train.seed, device=dev, doc=loaded.doc, preprocessing=preprocessing)
    if data.size(split) == 0:
        raise UserError(f"--split {split}: error: the data of {target} has no {split} samples")
    try:
        return info.path, evaluate(model, data, split, targets(loaded.spec, loaded.graph))
    finally:
        data.close()
