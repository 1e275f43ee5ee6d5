"""The Python API: the functions the command line calls, for notebooks and scripts.

    import tfn.runners as tfn

    result = tfn.fit("digits_cnn", {"train.epochs": 3})   # as `tfn train`: a new run directory
    result.run_dir, result.metrics["test"]["accuracy"]
    tfn.evaluate(result.run_dir, split="validation").metrics  # as `tfn eval`
    model = tfn.load_model("runs/digits_cnn/1")           # nn.Module: graph.json + latest checkpoint, eval mode
    out = tfn.run(model, {"image": images}, ["conv1", "logits"])
    out.values["conv1"].shape, out.computed                # only what the fetches need ran
    tfn.predict(model, images, top_k=3).top                # [(class, name, probability), ...] per image
    tfn.run(model, {"image": "cat.png"}, ["logits"])       # image files go through the run's preprocessing record
    tfn.predict(model, ["cat.png", "dog.png"]).kind        # "softmax", "sigmoid" or "values": as the loss reads it
    tfn.predict(tfn.load_model("runs/tabular/1"), "rows.csv").to_csv()   # a prediction per CSV row, through the record
    tfn.predict(tfn.load_model("runs/text_lstm/1"), texts=["the food was not good"])  # texts: the record's tokens and lengths
    weights = tfn.read_checkpoint("runs/digits_cnn/1")     # {"conv1/kernel": np.ndarray, ...}, no torch
    tfn.list_variables("runs/digits_cnn/1").variables      # names, dtypes, shapes from the header alone
    tfn.diff_checkpoints(a, b).changed; tfn.check_checkpoint(ckpt, tfn.load_graph("digits_cnn")).fits
    tfn.export_onnx(model, "model.onnx")

Every name in ``__all__`` is also an attribute of tfn.runners, loaded on first use.
`model` is a :class:`tfn.runners.module.GraphModule`: ``model(feeds, fetches)``
returns ``{fetch: tensor}`` and its parameters carry the graph's variable names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tfn.runners.files import atomic_write
from tfn.runners.inspect import against as check_checkpoint
from tfn.runners.inspect import diff as diff_checkpoints
from tfn.runners.inspect import list_variables
from tfn.runners.inspect import read_tensors as read_checkpoint
from tfn.runners.session import Prediction, RunResult, load_model, predict, run
from tfn.specs import load_graph


def _override_texts(overrides: dict | list[str] | tuple[str, ...] | None) -> list[str]:
    """`--set` options from {"train.epochs": 3} (values as data) or ["train.epochs=3"] (values as YAML text)."""
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]  # JSON is YAML 1.2
    return list(overrides)


def fit(
    spec,
    overrides: dict | list[str] | None = None,
    *,
    out: str | Path | None = None,
    runs: str | Path = "runs",
    device: str | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    init_from: str | Path | None = None,
    strict: bool = False,
    quiet: bool = False,
):
    """Train a spec into a new run directory, as `tfn train` does; returns the run's result.

    `spec` is a spec file, a shipped example's name or a spec as a dict;
    `overrides` set fields as `--set` does: {"train.epochs": 3,
    "model.layers.3.filters": 64} or ["train.epochs=3"]. The run goes to
    `out`, or to runs/<name>/<N>. The result (a TrainResult) has run_dir,
    steps, metrics ({"validation": {...}, "test": {...}}), stopped, weights
    (the step the final weights and test figures come from) and warnings.
    A problem with the spec raises tfn.specs.UserError with the message
    `tfn train` prints.
    """
    from tfn.runners.train import train
    from tfn.specs import load

    settings = _override_texts(overrides)
    command = ["tfn.runners.fit", spec if isinstance(spec, str) else str(spec) if isinstance(spec, Path) else "<spec>", *settings]
    return train(
        load(spec, settings),
        runs_root=runs,
        out=out,
        device=device,
        epochs=epochs,
        steps=steps,
        quiet=quiet,
        command=command,
        init_from=init_from,
        strict=strict,
    )


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` measured: the checkpoint, the split and {metric: value}."""

    checkpoint: Path
    split: str
    metrics: dict


def evaluate(
    target, checkpoint: str | Path | None = None, overrides: dict | list[str] | None = None, *, split: str = "test", device: str | None = None
) -> Evaluation:
    """The loss and metrics of a model on a data split, as `tfn eval` prints them.

    `target` is a run directory (its model: the best checkpoint when it ran
    with restore_best, else its latest; or `checkpoint`: a file, `best` or
    `latest`) or a spec file, example name or dict with `checkpoint`.
    `overrides` change the spec before it is read, e.g. {"data.test_path":
    "new.csv"} to score other data; the graph must stay the same.
    """
    from tfn.runners.train import evaluate_checkpoint

    path, metrics = evaluate_checkpoint(target, checkpoint, split=split, device=device, overrides=_override_texts(overrides))
    return Evaluation(path, split, metrics)


def export_onnx(model, path: str | Path) -> Path:
    """Write `model` (its outputs, its current weights) as an ONNX file."""
    from tfn.runners.export import onnx_bytes

    atomic_write(path, onnx_bytes(model))
    return Path(path)


__all__ = [
    "Evaluation",
    "Prediction",
    "RunResult",
    "check_checkpoint",
    "diff_checkpoints",
    "evaluate",
    "export_onnx",
    "fit",
    "list_variables",
    "load_graph",
    "load_model",
    "predict",
    "read_checkpoint",
    "run",
]
