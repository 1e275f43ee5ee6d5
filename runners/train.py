"""`tfn train`: the training run and its run directory.

    runs/<name>/<N>/
      spec.yaml        the spec as run, every default filled in
      graph.json       the graph definition (structure only)
      checkpoints/     weights (safetensors) and checkpoint.json
      train/ validation/   TensorBoard event files
      metrics.jsonl    one JSON object per logged step or evaluation
      run.json         versions, threads, device, seed, command, times, final metrics
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

from tfn.runners.checkpoint import CheckpointManager
from tfn.runners.data import DataPipeline
from tfn.runners.files import atomic_write, new_run_dir, prepare_out_dir, write_json
from tfn.runners.module import GraphModule
from tfn.runners.optimizers import make_optimizer
from tfn.runners.summaries import Summaries
from tfn.specs import LoadedSpec
from tfn.specs.errors import UserError


class TrainingFailed(Exception):
    """The run itself failed (diverged): exit status 1."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    metrics: dict[str, dict[str, float]]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: error: CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: error: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


class Loss:
    """The spec's weighted losses plus the L2 regularizers the ops declare."""

    def __init__(self, model: GraphModule):
        graph = model.graph
        self.fetches = tuple(dict.fromkeys(list(graph.outputs) + [l.node for l in graph.losses]))
        self.weights = {l.node: l.weight for l in graph.losses}
        self.regularized = [(v.name, v.regularizer) for v in graph.variables if v.regularizer > 0 and v.trainable]
        self.model = model

    def __call__(self, feeds) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.model(feeds, self.fetches)
        total = sum(w * out[node].mean() for node, w in self.weights.items())
        params = self.model.trainable_variables()
        for name, factor in self.regularized:  # TF's factor * l2_loss(w) = factor * sum(w^2) / 2
            total = total + factor * 0.5 * params[name].square().sum()
        return total, out


def evaluate(model: GraphModule, data: DataPipeline, split: str) -> dict[str, float]:
    graph = model.graph
    logits_name, loss_name = graph.outputs[0], graph.losses[0].node
    label_field = graph.node(loss_name).inputs[1]
    n = data.size(split)
    if n == 0:
        return {}
    loss_sum, correct = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for feeds in data.eval_batches(split):
            out = model(feeds, (logits_name, loss_name))
            loss_sum += float(out[loss_name].sum())
            correct += int((out[logits_name].argmax(1) == feeds[label_field]).sum())
    model.train(was_training)
    return {"loss": loss_sum / n, "accuracy": correct / n}


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"tfn": version("tfn"), "torch": torch.__version__, "python": platform.python_version(), "numpy": __import__("numpy").__version__}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def train(
    loaded: LoadedSpec,
    *,
    runs_root: str | Path = "runs",
    out: str | Path | None = None,
    device: str | None = None,
    epochs: int | None = None,
    quiet: bool = False,
    command: list[str] | None = None,
) -> TrainResult:
    spec, graph = loaded.spec, loaded.graph
    settings = spec.train
    epochs = epochs or settings.epochs
    dev = pick_device(device or settings.device)
    data = DataPipeline(spec.data, graph, seed=settings.seed, device=dev)

    run_dir = prepare_out_dir(out) if out else new_run_dir(runs_root, spec.name)
    started = _now()
    resolved = spec.model_dump(mode="json")
    atomic_write(run_dir / "spec.yaml", yaml.safe_dump(resolved, sort_keys=False))
    atomic_write(run_dir / "graph.json", graph.to_json())

    torch.manual_seed(settings.seed)
    model = GraphModule(graph, torch.Generator().manual_seed(settings.seed)).place(dev)
    optimizer = make_optimizer(spec.optimizer, model.trainable_variables().items())
    loss_fn = Loss(model)
    checkpoints = CheckpointManager(run_dir / "checkpoints", settings.checkpoints.keep)
    summaries = Summaries(run_dir, graph)
    metrics_file = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")

    def log(record: dict) -> None:
        metrics_file.write(json.dumps(record, sort_keys=True) + "\n")
        metrics_file.flush()

    steps_per_epoch = data.steps_per_epoch
    bar = _progress(epochs * steps_per_epoch, quiet)
    step, seen, tick = 0, 0, time.perf_counter()
    val: dict[str, float] = {}
    try:
        model.train()
        for epoch in range(1, epochs + 1):
            for step_in_epoch, feeds in enumerate(data.train_batches(epoch)):
                loss, _ = loss_fn(feeds)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                seen += len(next(iter(feeds.values())))
                if step % settings.log_every == 0 or step_in_epoch + 1 == steps_per_epoch:
                    value = float(loss.detach())  # the only host synchronisation: on the logging cadence
                    if not math.isfinite(value):
                        raise TrainingFailed(f"the loss became {value} at step {step} (epoch {epoch}); the last good checkpoint is kept")
                    now = time.perf_counter()
                    rate = seen / max(now - tick, 1e-9)
                    seen, tick = 0, now
                    lr = optimizer.param_groups[0]["lr"]
                    summaries.scalars("train", step, {"loss": value, "learning_rate": lr, "samples_per_second": rate})
                    log({"split": "train", "step": step, "epoch": epoch, "loss": value, "learning_rate": lr, "samples_per_second": rate})
                    bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                bar.update(1)
            val = evaluate(model, data, "validation")
            summaries.scalars("validation", step, val)
            log({"split": "validation", "step": step, "epoch": epoch, **val})
            checkpoints.save(model.variables(), step=step, epoch=epoch, graph_hash=graph.hash)
            summaries.flush()
            bar.write_epoch(epoch, epochs, val)
        test = evaluate(model, data, "test")
        log({"split": "test", "step": step, "epoch": epochs, **test})
    finally:
        bar.close()
        summaries.close()
        metrics_file.close()

    metrics = {"validation": val, "test": test}
    write_json(
        run_dir / "run.json",
        {
            "versions": _versions(),
            "threads": torch.get_num_threads(),
            "device": str(dev),
            "seed": settings.seed,
            "command": command if command is not None else sys.argv,
            "started": started,
            "ended": _now(),
            "steps": step,
            "epochs": epochs,
            "graph_hash": graph.hash,
            "metrics": metrics,
        },
    )
    return TrainResult(run_dir, step, metrics)


class _Progress:
    """A tqdm bar on a terminal; one line per epoch in logs; nothing with --quiet."""

    def __init__(self, total: int, quiet: bool):
        self.quiet = quiet
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def set_postfix(self, **kw) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**kw)

    def write_epoch(self, epoch: int, epochs: int, val: dict) -> None:
        line = f"epoch {epoch}/{epochs}: " + ", ".join(f"validation {k} {v:.4f}" for k, v in val.items())
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        elif not self.quiet:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(total: int, quiet: bool) -> _Progress:
    return _Progress(total, quiet)
