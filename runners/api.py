"""The Python API: the functions the command line calls, for notebooks and scripts.

    import tfn.runners as tfn

    model = tfn.load_model("runs/digits_cnn/1")           # nn.Module: graph.json + latest checkpoint, eval mode
    out = tfn.run(model, {"image": images}, ["conv1", "logits"])
    out.values["conv1"].shape, out.computed                # only what the fetches need ran
    tfn.predict(model, images, top_k=3).top                # [(class, name, probability), ...] per image
    tfn.run(model, {"image": "cat.png"}, ["logits"])       # image files go through the run's preprocessing record
    tfn.predict(model, ["cat.png", "dog.png"]).kind        # "softmax", "sigmoid" or "values": as the loss reads it
    weights = tfn.read_checkpoint("runs/digits_cnn/1")     # {"conv1/kernel": np.ndarray, ...}, no torch
    tfn.list_variables("runs/digits_cnn/1").variables      # names, dtypes, shapes from the header alone
    tfn.diff_checkpoints(a, b).changed; tfn.check_checkpoint(ckpt, tfn.load_graph("digits_cnn")).fits
    tfn.export_onnx(model, "model.onnx")

Every name in ``__all__`` is also an attribute of tfn.runners, loaded on first use.
`model` is a :class:`tfn.runners.module.GraphModule`: ``model(feeds, fetches)``
returns ``{fetch: tensor}`` and its parameters carry the graph's variable names.
"""

from __future__ import annotations

from pathlib import Path

from tfn.runners.files import atomic_write
from tfn.runners.inspect import against as check_checkpoint
from tfn.runners.inspect import diff as diff_checkpoints
from tfn.runners.inspect import list_variables
from tfn.runners.inspect import read_tensors as read_checkpoint
from tfn.runners.session import Prediction, RunResult, load_model, predict, run
from tfn.specs import load_graph


def export_onnx(model, path: str | Path) -> Path:
    """Write `model` (its outputs, its current weights) as an ONNX file."""
    from tfn.runners.export import onnx_bytes

    atomic_write(path, onnx_bytes(model))
    return Path(path)


__all__ = [
    "Prediction",
    "RunResult",
    "check_checkpoint",
    "diff_checkpoints",
    "export_onnx",
    "list_variables",
    "load_graph",
    "load_model",
    "predict",
    "read_checkpoint",
    "run",
]
