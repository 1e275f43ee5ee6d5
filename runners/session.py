"""Feed and fetch, as TF's ``Session.run``: load a model, feed named tensors, fetch any nodes.

    model = load_model("runs/digits_cnn/1")             # graph.json + latest checkpoint
    result = run(model, {"image": batch}, ["conv1", "logits"])
    result.values["conv1"].shape, result.computed       # only what the fetches need runs

Feeds come from .npy/.npz files, image files (Pillow) or inline literals
(`x=[[1.0, 2.0]]`, parsed as YAML 1.2 / JSON, never evaluated). Every value is
checked against the shape and dtype the graph expects before a kernel runs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from tfn.layers import TensorType, suggest
from tfn.layers.losses import LabelError
from tfn.runners.checkpoint import restore, resolve
from tfn.runners.files import atomic_write
from tfn.runners.module import GraphModule
from tfn.specs import load as load_spec
from tfn.specs import load_graph
from tfn.specs.errors import UserError
from tfn.specs.graph import Graph, split_ref

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
_IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class FeedError(UserError):
    """A feed that the graph cannot take: unknown name, unreadable value, wrong shape or dtype."""


@dataclass(frozen=True)
class RunResult:
    values: dict[str, np.ndarray]  # fetch -> value, in the order asked
    computed: tuple[str, ...]  # the nodes that ran, in order: the pruned plan


def is_run_dir(target: str | Path) -> bool:
    path = Path(target)
    return path.is_dir() and (path / "graph.json").is_file()


def load_model(target: str | Path, checkpoint: str | Path | None = None, *, device: str = "cpu") -> GraphModule:
    """A GraphModule in evaluation mode from a spec, example name, graph.json or run directory.

    The weights come from `checkpoint` (a file, a checkpoints directory or a run
    directory); for a run directory without one, from its latest checkpoint;
    otherwise they are the initial ones, drawn with the spec's seed (0 for a
    bare graph.json) exactly as `tfn train` draws them before its first step.
    A checkpoint made for another graph is refused with the names that differ.
    """
    graph, seed = _graph_and_seed(target)
    model = GraphModule(graph, torch.Generator().manual_seed(seed))
    if checkpoint is None and is_run_dir(target):
        checkpoint = target
    if checkpoint is not None:
        from tfn.runners.checkpoint import check_safetensors

        check_safetensors(resolve(checkpoint))
        restore(model, checkpoint)
    return model.place(device).eval()


def initial_weights_note(target: str | Path, checkpoint: str | Path | None) -> str | None:
    """A note for commands that fall back to untrained weights (a spec or graph.json without a checkpoint)."""
    if checkpoint is None and not is_run_dir(target):
        return "note: no --checkpoint: the weights are the initial, untrained ones"
    return None


def _graph_and_seed(target: str | Path) -> tuple[Graph, int]:
    path = Path(target)
    if path.is_dir() or path.suffix == ".json":
        return load_graph(target), 0
    loaded = load_spec(target)
    return loaded.graph, loaded.spec.train.seed


# --- feeds -------------------------------------------------------------------


def parse_feed(text: str) -> tuple[str, str]:
    """'NAME=VALUE' -> (NAME, VALUE), as --feed takes it."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise FeedError(f"--feed {text!r}: error: expected NAME=FILE or NAME=VALUE, e.g. image=batch.npy or x='[[1.0, 2.0]]'")
    return name.strip(), value.strip()


def read_feed(name: str, value: str, expected: TensorType) -> np.ndarray:
    """The array a --feed VALUE stands for: a .npy/.npz/image file or an inline literal."""
    path = Path(value)
    if path.suffix.lower() == ".npy":
        return _load_npy(path)
    if path.suffix.lower() == ".npz":
        return _load_npz(path, name)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(path, expected)
    return _literal(name, value)


def _load_npy(path: Path) -> np.ndarray:
    _must_exist(path)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refused
        raise FeedError(f"{path}: error: not a plain numeric .npy array: {exc}") from None


def _load_npz(path: Path, name: str) -> np.ndarray:
    _must_exist(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if name in keys:
                return archive[name]
            if len(keys) == 1:
                return archive[keys[0]]
    except ValueError as exc:
        raise FeedError(f"{path}: error: not a plain numeric .npz archive: {exc}") from None
    raise FeedError(f"{path}: error: holds {', '.join(keys) or 'no arrays'}; none is named {name!r} (an archive of one array needs no name)")


def _must_exist(path: Path) -> None:
    if not path.is_file():
        raise FeedError(f"{path}: error: no such file")


def read_image(path: Path, expected: TensorType) -> np.ndarray:
    """One image as a [C, H, W] float array in [0, 1], converted to the input's channels and resized to its size."""
    _must_exist(path)
    sample = expected.sample_shape
    if len(sample) != 3 or sample[0] not in _IMAGE_MODES:
        raise FeedError(f"{path}: error: an image feeds an input of one sample [C, H, W] with C 1, 3 or 4; this one takes {list(sample)}")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise FeedError(f"{path}: error: reading images needs Pillow: pip install pillow") from None
    channels, height, width = sample
    try:
        with Image.open(path) as image:
            image = image.convert(_IMAGE_MODES[channels])
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise FeedError(f"{path}: error: not a readable image: {exc}") from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def _literal(name: str, value: str) -> np.ndarray:
    from tfn.specs.documents import parse_yaml

    try:
        array = np.asarray(parse_yaml(f"v: {value}\n", f"--feed {name}").data["v"])
    except (UserError, ValueError):  # YAML syntax, or a ragged list
        array = None
    if array is not None and array.dtype.kind in "biuf":
        return array
    if len(value) < 256 and Path(value).is_file():
        raise FeedError(f"{value}: error: cannot read feed {name!r} from a {Path(value).suffix or 'suffix-less'} file; use .npy, .npz or an image")
    if "/" in value or Path(value).suffix:
        raise FeedError(f"{value}: error: no such file (feed {name!r})")
    raise FeedError(f"--feed {name}={value}: error: not a file, a number or a rectangular nested list of numbers")


def conform(name: str, array: np.ndarray, expected: TensorType) -> np.ndarray:
    """`array` as a batch of the expected shape and dtype; a single sample gains a batch axis.

    Casts as TF's feed_dict does where no value changes: any number feeds a
    float input (float64 is rounded to float32), whole floats feed an integer
    input. Refused: fractions and NaN for an integer input, values outside the
    input dtype's range, booleans.
    """
    sample = expected.sample_shape
    if _fits(array.shape, sample):
        array = array[None]
    elif not (array.ndim == len(expected.shape) and _fits(array.shape[1:], sample) and expected.shape[0] in (None, array.shape[0])):
        raise FeedError(
            f"feed {name!r}: error: shape {list(array.shape)} does not fit {expected} "
            f"(one sample {list(sample)} or a batch [N, {', '.join(map(str, sample))}])".replace("[N, ]", "[N]")
        )
    want = np.dtype(expected.dtype)
    if array.dtype.kind not in "biuf":
        raise FeedError(f"feed {name!r}: error: dtype {array.dtype} cannot feed a {want} input")
    if array.dtype.kind == "b":
        raise FeedError(f"feed {name!r}: error: booleans cannot feed a {want} input; give {'numbers' if want.kind == 'f' else 'integers'}")
    if want.kind == "f":
        with np.errstate(over="ignore"):  # found and refused just below
            cast = array.astype(want, copy=False)
        overflow = np.isfinite(array) & ~np.isfinite(cast)
        if overflow.any():
            raise FeedError(f"feed {name!r}: error: {array[overflow].flat[0]} is beyond the range of the {want} input")
        return cast
    if array.dtype.kind == "f":
        fractional = array[np.isfinite(array) & (array != np.round(array))] if array.size else array
        if fractional.size or not np.isfinite(array).all():
            bad = fractional.flat[0] if fractional.size else array[~np.isfinite(array)].flat[0]
            raise FeedError(f"feed {name!r}: error: the input is {want}, but the value holds {float(bad)}, which is not an integer")
    if array.size:
        info = np.iinfo(want)
        for value in (array.min(), array.max()):
            if not info.min <= int(value) <= info.max:
                raise FeedError(f"feed {name!r}: error: {int(value)} is outside the range of the {want} input ({info.min} to {info.max})")
    return array.astype(want)


def _fits(shape: tuple, sample: tuple) -> bool:
    return len(shape) == len(sample) and all(s is None or s == d for d, s in zip(shape, sample))


def feed_type(graph: Graph, ref: str) -> TensorType:
    """What a feed named `ref` must be: a model input or any node output."""
    name, index = split_ref(ref)
    known = {i.name for i in graph.inputs} | set(graph.by_name)
    if name not in known:
        hint = suggest(name, known)
        raise FeedError(f"feed {ref!r}: error: the graph has no input or node {name!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
    if name in graph.by_name and index >= len(graph.by_name[name].outputs):
        raise FeedError(f"feed {ref!r}: error: node {name!r} has {len(graph.by_name[name].outputs)} output(s), numbered from 0")
    return graph.type_of(ref)


def read_feeds(graph: Graph, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """--feed NAME=VALUE options -> conformed arrays by name."""
    feeds: dict[str, np.ndarray] = {}
    for text in texts:
        name, value = parse_feed(text)
        if name in feeds:
            raise FeedError(f"--feed {text!r}: error: {name!r} is fed twice")
        expected = feed_type(graph, name)
        feeds[name] = conform(name, read_feed(name, value, expected), expected)
    return feeds


def split_fetches(texts: Sequence[str]) -> list[str]:
    """--fetch a,b --fetch c -> [a, b, c], duplicates dropped."""
    fetches = [f.strip() for text in texts for f in text.split(",") if f.strip()]
    return list(dict.fromkeys(fetches))


# --- running -----------------------------------------------------------------


def run(model: GraphModule, feeds: Mapping[str, np.ndarray | torch.Tensor], fetches: Sequence[str] | None = None) -> RunResult:
    """Session.run: compute `fetches` (default: the model's outputs) from `feeds`, and nothing else.

    Feeds are checked and conformed first (a single sample gains a batch axis);
    the model runs in its current mode (load_model gives evaluation mode)
    without recording gradients.
    """
    graph = model.graph
    fetches = list(fetches) if fetches else list(graph.outputs)
    device = next((t.device for t in model.variables().values()), torch.device("cpu"))
    tensors = {}
    for ref, value in feeds.items():
        expected = feed_type(graph, ref)
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        tensors[ref] = torch.from_numpy(np.ascontiguousarray(conform(ref, array, expected))).to(device)
    sizes = {ref: t.shape[0] for ref, t in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise FeedError("feeds: error: the feeds' batch sizes differ: " + ", ".join(f"{r} {n}" for r, n in sizes.items()))
    model.check_fetches(fetches, tensors)
    plan = model.plan(fetches, tensors)
    try:
        with torch.no_grad():
            out = model(tensors, fetches)
    except LabelError as exc:
        computed = {step.name for step in plan}
        labels = [graph.node(loss.node).inputs[1] for loss in graph.losses if loss.node in computed]
        fed = [ref for ref in labels if ref in tensors] or labels
        raise FeedError(f"feed {', '.join(map(repr, fed))}: error: {exc}") from None
    return RunResult({f: out[f].detach().cpu().numpy() for f in fetches}, tuple(step.name for step in plan))


def save_npz(path: str | Path, values: Mapping[str, np.ndarray]) -> None:
    """Write fetched values to an .npz archive (keys are the fetch names), atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **values)
    atomic_write(path, buffer.getvalue())


# --- predict -----------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """Per example: its source, the class probabilities and the top-k (index, name, probability)."""

    sources: list[str]
    probabilities: np.ndarray  # [N, classes]
    top: list[list[tuple[int, str, float]]]

    def to_dict(self) -> list[dict]:
        return [
            {"input": src, "top": [{"class": i, "label": name, "probability": p} for i, name, p in top]}
            for src, top in zip(self.sources, self.top)
        ]


def predict(
    model: GraphModule, batch: np.ndarray, *, top_k: int = 3, class_names: Sequence[str] | None = None, sources: Sequence[str] | None = None
) -> Prediction:
    """Softmax class probabilities of the model's first output for a batch, and the top-k classes."""
    graph = model.graph
    output = graph.outputs[0]
    logits_type = graph.type_of(output)
    if logits_type.rank != 2:
        raise FeedError(f"predict: error: the output {output!r} is {logits_type}; predict needs class scores [N, classes]")
    inputs = [i.name for i in graph.inputs if i.name in inputs_needed(model, [output])]
    if len(inputs) != 1:
        raise FeedError(f"predict: error: the output {output!r} needs the inputs {', '.join(inputs)}; predict feeds one; use tfn run")
    logits = run(model, {inputs[0]: batch}, [output]).values[output].astype(np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    classes = probabilities.shape[1]
    names = list(class_names) if class_names and len(class_names) == classes else [str(c) for c in range(classes)]
    k = min(top_k, classes)
    top = [[(int(c), names[c], float(row[c])) for c in np.argsort(-row, kind="stable")[:k]] for row in probabilities]
    return Prediction(list(sources or (str(i) for i in range(len(probabilities)))), probabilities, top)


def inputs_needed(model: GraphModule, fetches: Sequence[str]) -> set[str]:
    """The model inputs that computing `fetches` reads."""
    names = {i.name for i in model.graph.inputs}
    return {ref[0] for step in model.plan(fetches, names) for ref in step.inputs if ref[0] in names}


def read_examples(model: GraphModule, paths: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Arrays (.npy/.npz: one sample or a batch) and image files -> one batch for the model's input, and a label per row."""
    graph = model.graph
    needed = [i for i in graph.inputs if i.name in inputs_needed(model, [graph.outputs[0]])]
    if len(needed) != 1:
        raise FeedError(f"predict: error: the model's output needs {len(needed)} inputs; predict feeds one; use tfn run")
    name, expected = needed[0].name, needed[0].type
    rows, sources = [], []
    for text in paths:
        array = conform(name, read_feed(name, text, expected), expected)
        rows.append(array)
        sources += [text] if len(array) == 1 else [f"{text}[{i}]" for i in range(len(array))]
    if not rows:
        raise FeedError("predict: error: give at least one input file")
    return np.concatenate(rows), sources


def class_names(target: str | Path) -> list[str] | None:
    """The class names of a run (run.json's `class_names`, else its spec's data source) or a spec's data source.

    Never downloads: a source whose files are absent gives no names, and the
    classes go by index.
    """
    import json

    path = Path(target)
    if is_run_dir(path) and (path / "run.json").is_file():
        try:
            names = json.loads((path / "run.json").read_text(encoding="utf-8")).get("class_names")
        except ValueError:
            names = None
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return names
    spec_path = path / "spec.yaml" if is_run_dir(path) else path
    if path.is_dir() and not spec_path.is_file() or spec_path.suffix == ".json":
        return None
    from tfn.runners.data_sources import load_source

    try:
        data = load_spec(spec_path).spec.data
        if "download" in type(data).model_fields:
            data = data.model_copy(update={"download": False})
        return load_source(data).class_names
    except (UserError, OSError):  # the data is not at hand here
        return None
