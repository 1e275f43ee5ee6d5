"""TensorBoard output through torch.utils.tensorboard: scalars, histograms, images, hparams and the graph.

The Graphs tab gets a GraphDef built from the graph IR, not a trace: name
scopes, variables and control edges come out as the spec declared them, and
each node shows TensorFlow's op (Conv2D, MatMul, FusedBatchNorm...) with
tfn's op as its `tfn_op` attribute.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from tfn import layers
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
        attr["tfn_op"] = text(n.op)
        op = layers.get(n.op).tf_op_name(n.params)  # TF's name (Conv2D, MatMul, ...), as a TF 1.x user reads the graph
        nodes.append(node_def_pb2.NodeDef(name=n.name, op=op, input=inputs, device=n.device or "", attr=attr))
    return graph_pb2.GraphDef(node=nodes, versions=versions_pb2.VersionDef(producer=1))


def _tensor_name(ref: str) -> str:
    name, index = split_ref(ref)
    return name if index == 0 else f"{name}:{index}"


#: TensorBoard's Scalars page sorts groups (a tag's part before "/") by name and opens only the first
#: two: the learning rate goes into a group of its own that sorts after `loss` and `accuracy`
GROUPED = {"learning_rate": "optimizer/learning_rate"}

#: the session's writer: the run directory itself, whose event file holds the HParams records
SESSION = "."


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
        for name, value in values.items():
            self.writer(split).add_scalar(GROUPED.get(name, name), value, step)

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
                writer.add_image(key, confusion_image(value, class_names), step, dataformats="HWC")
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

    def start_session(self, spec, metrics: dict[str, list[str]], extra: dict | None = None) -> None:
        """The HParams tab: the spec's main settings, `extra` values (a sweep's parameters), and as
        metrics the scalars `metrics` names per split.

        Written at the start, in an event file of the run directory itself
        (the session); each metric names a tag and the split's directory
        (`validation/accuracy`), where TensorBoard reads its last value, so
        no extra scalars are written for it.
        """
        from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

        o = spec.optimizer
        params = {
            "optimizer": o.type,
            "learning_rate": o.learning_rate,
            "schedule": o.schedule.type,
            "batch_size": spec.data.batch_size,
            "epochs": spec.train.epochs,
            "seed": spec.train.seed,
            **(extra or {}),
        }
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        infos = []
        for name, value in params.items():
            if isinstance(value, str):
                start.hparams[name].string_value = value
                kind = api_pb2.DATA_TYPE_STRING
            else:
                start.hparams[name].number_value = float(value)
                kind = api_pb2.DATA_TYPE_FLOAT64
            infos.append(api_pb2.HParamInfo(name=name, type=kind))
        names = [api_pb2.MetricInfo(name=api_pb2.MetricName(group=split, tag=tag), display_name=f"{split} {tag}") for split, tags in metrics.items() for tag in tags]
        self._hparams_event(experiment=api_pb2.Experiment(hparam_infos=infos, metric_infos=names))
        self._hparams_event(session_start_info=start)

    def end_session(self, status: str) -> None:
        """The session's end in the HParams tab: status "completed", "interrupted" (it will resume) or "failed"."""
        from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

        code = {"completed": api_pb2.STATUS_SUCCESS, "interrupted": api_pb2.STATUS_RUNNING}.get(status, api_pb2.STATUS_FAILURE)
        self._hparams_event(session_end_info=plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=time.time()))

    def _hparams_event(self, **content) -> None:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import metadata, plugin_data_pb2

        tag = {"experiment": metadata.EXPERIMENT_TAG, "session_start_info": metadata.SESSION_START_INFO_TAG}.get(
            next(iter(content)), metadata.SESSION_END_INFO_TAG
        )
        data = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(**content))
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, metadata=data, tensor=metadata.NULL_TENSOR)])
        self.writer(SESSION).file_writer.add_summary(summary)

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


#: more classes than this: cells too small for their counts and names; the matrix is drawn as shades alone
LABELLED_CLASSES = 40
FONT_SIZE = 11
NAME_CHARACTERS = 14


@dataclass(frozen=True)
class ConfusionLayout:
    """Where a confusion picture's cells lie: cell (true t, predicted p) starts at (left + p * cell, top + t * cell)."""

    left: int
    top: int
    cell: int
    width: int
    height: int


def confusion_layout(matrix, class_names: list[str]) -> ConfusionLayout:
    classes = len(matrix)
    if classes > LABELLED_CLASSES:
        cell = max(2, 512 // classes)
        return ConfusionLayout(0, 0, cell, classes * cell, classes * cell)
    font = _font()
    widest_count = max(_text_size(font, str(int(c)))[0] for row in matrix for c in row)
    widest_name = max([_text_size(font, name)[0] for name in class_names] + [_text_size(font, "predicted")[0]])
    cell = max(24, widest_count + 8)
    margin = widest_name + 8
    return ConfusionLayout(margin, margin, cell, margin + classes * cell + 1, margin + classes * cell + 1)


def confusion_image(matrix: list[list[int]], class_names: list[str] | None = None):
    """A confusion matrix (rows true, columns predicted) as an RGB uint8 image [H, W, 3].

    Each cell is shaded by its share of the true class (white = none, dark
    blue = all of it, as matplotlib's Blues) and shows its count; the class
    names run down the left (true) and along the top (predicted, turned a
    quarter). Beyond 40 classes the cells are shades alone.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    counts = np.asarray(matrix, dtype=np.float64)
    classes = counts.shape[0]
    names = [_shorten(n) for n in (class_names or [])][:classes]
    names += [str(c) for c in range(len(names), classes)]
    layout = confusion_layout(matrix, names)
    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    colors = np.round(white + share[..., None] * (blue - white)).astype(np.uint8)
    image = Image.new("RGB", (layout.width, layout.height), "white")
    draw = ImageDraw.Draw(image)
    cell, left, top = layout.cell, layout.left, layout.top
    labelled = classes <= LABELLED_CLASSES
    font = _font() if labelled else None
    for t in range(classes):
        for p in range(classes):
            x, y = left + p * cell, top + t * cell
            draw.rectangle([x, y, x + cell, y + cell], fill=tuple(int(v) for v in colors[t, p]), outline=(160, 160, 160) if labelled or cell > 3 else None)
            if labelled:
                ink = (255, 255, 255) if share[t, p] > 0.5 else (0, 0, 0)
                draw.text((x + cell / 2, y + cell / 2), str(int(counts[t, p])), fill=ink, font=font, anchor="mm")
    if labelled:
        grey = (90, 90, 90)
        draw.text((left - 4, 4), "predicted", fill=grey, font=font, anchor="rt")
        draw.text((left - 4, top - 4), "true", fill=grey, font=font, anchor="rd")
        for c, name in enumerate(names):
            draw.text((left - 4, top + c * cell + cell / 2), name, fill=(0, 0, 0), font=font, anchor="rm")
        # the predicted classes along the top, written upwards in a strip turned a quarter
        strip = Image.new("RGB", (top, layout.width - left), "white")
        strip_draw = ImageDraw.Draw(strip)
        for c, name in enumerate(names):
            strip_draw.text((4, c * cell + cell / 2), name, fill=(0, 0, 0), font=font, anchor="lm")
        image.paste(strip.transpose(Image.Transpose.ROTATE_90), (left, 0))
    return np.asarray(image)


def _font():
    from PIL import ImageFont

    return ImageFont.load_default(size=FONT_SIZE)


def _text_size(font, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return right - left, bottom - top


def _shorten(name: str) -> str:
    name = str(name)
    return name if len(name) <= NAME_CHARACTERS else name[: NAME_CHARACTERS - 1] + "…"


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
