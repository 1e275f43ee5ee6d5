"""TensorBoard output through torch.utils.tensorboard: scalars, histograms, images, hparams and the graph.

The Graphs tab gets a GraphDef built from the graph IR, not a trace: name
scopes, variables and control edges come out as the spec declared them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from tfn.specs.graph import Graph, split_ref


def graph_def(graph: Graph):
    """The graph IR as a TensorFlow GraphDef (TensorBoard's own protobufs)."""
    from tensorboard.compat.proto import attr_value_pb2, graph_pb2, node_def_pb2, tensor_shape_pb2, versions_pb2

    def shape_proto(shape):
        return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=-1 if d is None else d) for d in shape])

    def shapes_attr(shapes):
        return attr_value_pb2.AttrValue(list=attr_value_pb2.AttrValue.ListValue(shape=[shape_proto(s) for s in shapes]))

    def text(value) -> attr_value_pb2.AttrValue:
        return attr_value_pb2.AttrValue(s=str(value).encode())

    nodes = []
    for inp in graph.inputs:
        nodes.append(
            node_def_pb2.NodeDef(
                name=inp.name,
                op="Placeholder",
                attr={"dtype": text(inp.type.dtype), "_output_shapes": shapes_attr([inp.type.shape])},
            )
        )
    for v in graph.variables:
        nodes.append(
            node_def_pb2.NodeDef(
                name=v.name,
                op="VariableV2",
                attr={"dtype": text(v.dtype), "trainable": attr_value_pb2.AttrValue(b=v.trainable), "_output_shapes": shapes_attr([v.shape])},
            )
        )
    for n in graph.nodes:
        inputs = [_tensor_name(r) for r in n.inputs] + list(n.variables.values()) + [f"^{c}" for c in n.control_inputs]
        attr = {k: text(v) for k, v in sorted(n.attrs.items())}
        attr["_output_shapes"] = shapes_attr([t.shape for t in n.outputs])
        nodes.append(node_def_pb2.NodeDef(name=n.name, op=n.op, input=inputs, device=n.device or "", attr=attr))
    return graph_pb2.GraphDef(node=nodes, versions=versions_pb2.VersionDef(producer=1))


def _tensor_name(ref: str) -> str:
    name, index = split_ref(ref)
    return name if index == 0 else f"{name}:{index}"


class Summaries:
    """One SummaryWriter per split (train/, validation/), as TF's FileWriters.

    Scalars, weight and gradient histograms, a grid of input images, a
    confusion-matrix image, hparams with the final metrics, and the graph.
    `purge_step` (on resume) makes TensorBoard drop events logged after the
    checkpoint the run continues from.
    """

    def __init__(self, run_dir: Path, graph: Graph | None = None, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writers = {split: SummaryWriter(str(run_dir / split), purge_step=purge_step) for split in ("train", "validation")}
        self.run_dir = run_dir
        if graph is not None and purge_step is None:
            write_graph(self.writers["train"], graph)

    def writer(self, split: str):
        if split not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[split] = SummaryWriter(str(self.run_dir / split))
        return self.writers[split]

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer(split).add_scalar(tag, value, step)

    def evaluation(self, split: str, step: int, result: dict, class_names: list[str] | None = None) -> None:
        """An evaluation's scalars, per-class accuracies and confusion-matrix image."""
        writer = self.writer(split)
        for tag, value in result.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(tag, value, step)
        for key, value in result.items():
            if key.endswith("per_class_accuracy"):  # also `loss_1/per_class_accuracy` of a second loss
                for c, accuracy in enumerate(value):
                    if accuracy is not None:
                        name = class_names[c] if class_names and c < len(class_names) else str(c)
                        writer.add_scalar(f"{key}/{name}", accuracy, step)
            elif key.endswith("confusion_matrix"):
                writer.add_image(key, confusion_image(value), step, dataformats="HWC")
        writer.flush()

    def histograms(self, step: int, model) -> None:
        """Weights and gradients of every variable (gradients of trainable ones that have one)."""
        writer = self.writers["train"]
        for name, value in model.variables().items():
            _histogram(writer, f"weights/{name}", value.detach(), step)
            if getattr(value, "grad", None) is not None:
                _histogram(writer, f"gradients/{name}", value.grad.detach(), step)

    def input_images(self, feeds: dict, graph: Graph) -> None:
        """A grid of a batch of input images, for inputs shaped [C, H, W] with 1 or 3 channels."""
        for inp in graph.inputs:
            shape = inp.type.shape
            if len(shape) == 4 and shape[1] in (1, 3) and inp.name in feeds:
                grid = image_grid(feeds[inp.name].detach().to("cpu").float())
                self.writers["train"].add_image(f"inputs/{inp.name}", grid, 0, dataformats="CHW")

    def hparams(self, spec, metrics: dict[str, dict]) -> None:
        """The HParams tab: the spec's main settings and the final metrics."""
        from torch.utils.tensorboard.summary import hparams

        o = spec.optimizer
        params = {
            "optimizer": o.type,
            "learning_rate": o.learning_rate,
            "schedule": o.schedule.type,
            "batch_size": spec.data.batch_size,
            "epochs": spec.train.epochs,
            "seed": spec.train.seed,
        }
        final = {f"hparams/{split}_{k}": v for split, values in metrics.items() for k, v in values.items() if isinstance(v, (int, float))}
        if not final:
            return
        writer = self.writers["train"]
        for summary in hparams(params, final):
            writer.file_writer.add_summary(summary)
        for tag, value in final.items():
            writer.add_scalar(tag, value, 0)

    def flush(self) -> None:
        for w in self.writers.values():
            w.flush()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def image_grid(images, pad: int = 1):
    """[N, C, H, W] -> one [C, rows*(H+pad)+pad, cols*(W+pad)+pad] image, each scaled to [0, 1]."""
    import torch

    n, c, h, w = images.shape
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    images = (images - low) / (high - low).clamp(min=1e-12)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.ones(c, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = images[i]
    return grid


def confusion_image(matrix: list[list[int]], cell: int | None = None):
    """A confusion matrix (rows true, columns predicted) as an RGB uint8 image [H, W, 3].

    Each cell is a square whose blue darkens with the row-normalised count
    (white = none of that true class, dark blue = all of it); a grey line
    separates the cells.
    """
    import numpy as np

    counts = np.asarray(matrix, dtype=np.float64)
    classes = counts.shape[0]
    cell = cell or max(4, 256 // max(classes, 1))
    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    # white (255, 255, 255) -> dark blue (8, 48, 107), as matplotlib's Blues
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    colors = white + share[..., None] * (blue - white)
    image = np.repeat(np.repeat(colors, cell, axis=0), cell, axis=1)
    image[::cell, :, :] = 160.0
    image[:, ::cell, :] = 160.0
    return np.round(image).astype(np.uint8)


def write_graph(writer, graph: Graph) -> None:
    from tensorboard.compat.proto import event_pb2

    event = event_pb2.Event(wall_time=time.time(), graph_def=graph_def(graph).SerializeToString())
    writer.file_writer.add_event(event)


HISTOGRAM_BINS = 64


def _histogram(writer, tag: str, values, step: int) -> None:
    """A histogram summary from one torch.histc pass over uniform bins.

    add_histogram's default TensorFlow-style exponential bins go through NumPy
    and cost more than a training step on a 400k-element kernel; histc does
    not, and keeps the data on its device until the 64 counts come back.
    """
    import torch

    flat = values.reshape(-1).float()
    finite = flat[torch.isfinite(flat)] if not bool(torch.isfinite(flat).all()) else flat
    if finite.numel() == 0:
        return
    low, high = float(finite.min()), float(finite.max())
    if high == low:
        high = low + 1e-12
    counts = torch.histc(finite, bins=HISTOGRAM_BINS, min=low, max=high)
    limits = torch.linspace(low, high, HISTOGRAM_BINS + 1)[1:]
    writer.add_histogram_raw(
        tag,
        min=low,
        max=high,
        num=finite.numel(),
        sum=float(finite.sum()),
        sum_squares=float(finite.square().sum()),
        bucket_limits=limits.tolist(),
        bucket_counts=counts.cpu().tolist(),
        global_step=step,
    )
