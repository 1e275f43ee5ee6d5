"""Feed and fetch, as TF's ``Session.run``: load a model, feed named tensors, fetch any nodes.

    model = load_model("runs/digits_cnn/1")             # graph.json + latest checkpoint
    result = run(model, {"image": batch}, ["conv1", "logits"])
    result.values["conv1"].shape, result.computed       # only what the fetches need runs

Feeds come from .npy/.npz files, image files (Pillow, through the model's
preprocessing record) or inline literals (`x=[[1.0, 2.0]]`, parsed as YAML
1.2 / JSON, never evaluated). Every value is checked against the shape and
dtype the graph expects before a kernel runs (`conform`: TF's feed_dict casts).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from tfn import layers
from tfn.layers import IndexRangeError, TensorType, suggest
from tfn.layers.losses import LabelError
from tfn.runners.checkpoint import restore, resolve
from tfn.runners.files import atomic_write
from tfn.runners.memory import require_memory
from tfn.runners.module import GraphModule, wants_channels_last
from tfn.runners.preprocessing import Preprocessing, fitted_from_data, for_model, record_for
from tfn.runners.preprocessing import class_names as record_class_names
from tfn.specs import load as load_spec
from tfn.specs import load_graph
from tfn.specs.errors import UserError
from tfn.specs.graph import Graph, split_ref

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


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
    Image models run in channels_last memory format, as training runs them
    (the logical layout stays channels-first; benchmarks/inference.py: about
    2.5x the samples/s of the reference CNN on CPU).
    """
    graph, seed, preprocessing = _graph_seed_preprocessing(target)
    require_memory(graph, 1, device)  # the variables and one sample, before a variable exists
    model = GraphModule(graph, torch.Generator().manual_seed(seed))
    model.preprocessing = preprocessing
    if checkpoint is None and is_run_dir(target):
        checkpoint = target
    if checkpoint is not None:
        from tfn.runners.checkpoint import check_safetensors

        check_safetensors(resolve(checkpoint))
        restore(model, checkpoint)
    model.place(device).eval()
    return model.use_channels_last() if wants_channels_last(graph, "auto") else model


def initial_weights_note(target: str | Path, checkpoint: str | Path | None) -> str | None:
    """A note for commands that fall back to untrained weights (a spec or graph.json without a checkpoint)."""
    if checkpoint is None and not is_run_dir(target):
        return "note: no --checkpoint: the weights are the initial, untrained ones"
    return None


def _graph_seed_preprocessing(target: str | Path) -> tuple[Graph, int, Preprocessing]:
    path = Path(target)
    if path.is_dir():
        return load_graph(target), 0, for_model(path)
    if path.suffix == ".json":
        return load_graph(target), 0, Preprocessing()
    loaded = load_spec(target)
    data = loaded.spec.data
    if fitted_from_data(data):  # statistics and vocabularies come from the training split, as `tfn train` fits them
        from tfn.runners.data_sources import load_source

        record = load_source(data).preprocessing or record_for(data)
    else:
        record = record_for(data)
    return loaded.graph, loaded.spec.train.seed, Preprocessing(record.fields, f"the data section of {target}")


# --- feeds -------------------------------------------------------------------


def parse_feed(text: str) -> tuple[str, str]:
    """'NAME=VALUE' -> (NAME, VALUE), as --feed takes it."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise FeedError(f"--feed {text!r}: error: expected NAME=FILE or NAME=VALUE, e.g. image=batch.npy or x='[[1.0, 2.0]]'")
    return name.strip(), value.strip()


def read_feed(name: str, value: str, expected: TensorType, preprocessing: Preprocessing | None = None) -> np.ndarray:
    """The array a --feed VALUE stands for: a .npy/.npz file or an inline literal as it is, or an image file or
    the rows of a CSV file made into the input through the field's `preprocessing` (the model directory's record);
    for a field the record makes from texts (token ids, lengths), any other value is a text."""
    path = Path(value)
    if path.suffix.lower() == ".npy":
        return _load_npy(path)
    if path.suffix.lower() == ".npz":
        return _load_npz(path, name)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        _must_exist(path)
        return (preprocessing or Preprocessing()).read_file(name, path, expected)
    if path.suffix.lower() == ".csv":
        _must_exist(path)
        return (preprocessing or Preprocessing()).read_csv(name, path, expected)[0]
    if is_text_feed(name, value, preprocessing):  # its ids or length, as training made them
        return preprocessing.read_texts([value])[name]
    return _literal(name, value)


def is_text_feed(name: str, value: str, preprocessing: Preprocessing | None) -> bool:
    """Whether a --feed value is a text: fed to a field the record makes from texts, and neither a file nor numbers."""
    if preprocessing is None or name not in preprocessing.text_fields() or Path(value).suffix.lower() in (".npy", ".npz", ".csv", *IMAGE_SUFFIXES):
        return False
    try:
        _literal(name, value)
    except FeedError:
        return True
    return False


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


def read_feeds(graph: Graph, texts: Sequence[str], preprocessing: Preprocessing | None = None) -> dict[str, np.ndarray]:
    """--feed NAME=VALUE options -> conformed arrays by name; image files go through `preprocessing`."""
    feeds: dict[str, np.ndarray] = {}
    for text in texts:
        name, value = parse_feed(text)
        if name in feeds:
            raise FeedError(f"--feed {text!r}: error: {name!r} is fed twice")
        expected = feed_type(graph, name)
        feeds[name] = conform(name, read_feed(name, value, expected, preprocessing), expected)
    return feeds


def feed_notes(model: GraphModule, texts: Sequence[str]) -> list[str]:
    """For each --feed that the model's preprocessing record changes (an image or CSV file, an array for a field
    the record normalises): what it does, in words."""
    notes = []
    record = model.preprocessing
    for text in texts:
        name, value = parse_feed(text)
        suffix = Path(value).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            notes.append(f"{name} <- {value}: {record.describe(name, feed_type(model.graph, name))}")
        elif suffix == ".csv" or (_array_steps(model, name) and record.steps_text(name)) or is_text_feed(name, value, record):
            notes.append(f"{name} <- {value}: {record.steps_text(name)} (from {record.origin})")
    return notes


def _array_steps(model: GraphModule, name: str) -> bool:
    """Whether an array fed to `name` goes through steps of the record: a model input whose record starts with no decoding step."""
    steps = model.preprocessing.fields.get(name)
    return bool(steps) and not steps[0].decodes and name in {i.name for i in model.graph.inputs}


def split_fetches(texts: Sequence[str]) -> list[str]:
    """--fetch a,b --fetch c -> [a, b, c], duplicates dropped."""
    fetches = [f.strip() for text in texts for f in text.split(",") if f.strip()]
    return list(dict.fromkeys(fetches))


# --- running -----------------------------------------------------------------


def run(model: GraphModule, feeds: Mapping[str, np.ndarray | torch.Tensor | str | Path], fetches: Sequence[str] | None = None) -> RunResult:
    """Session.run: compute `fetches` (default: the model's outputs) from `feeds`, and nothing else.

    A feed is an array or tensor, or a file as `--feed` takes it (an image goes
    through the model's preprocessing record). Feeds are checked and conformed
    first (a single sample gains a batch axis);
    the model runs in its current mode (load_model gives evaluation mode)
    without recording gradients.
    """
    graph = model.graph
    fetches = list(fetches) if fetches else list(graph.outputs)
    device = next((t.device for t in model.variables().values()), torch.device("cpu"))
    tensors = {}
    for ref, value in feeds.items():
        expected = feed_type(graph, ref)
        if isinstance(value, (str, Path)):  # a file, as --feed takes it
            value = read_feed(ref, str(value), expected, model.preprocessing)
        array = conform(ref, value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value), expected)
        if _array_steps(model, ref):  # an array of a field the record normalises is raw data, as training read it
            array = conform(ref, model.preprocessing.apply(ref, array), expected)
        tensors[ref] = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    sizes = {ref: t.shape[0] for ref, t in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise FeedError("feeds: error: the feeds' batch sizes differ: " + ", ".join(f"{r} {n}" for r, n in sizes.items()))
    model.check_fetches(fetches, tensors)
    require_memory(graph, max(sizes.values(), default=1), device, parameters_allocated=True)
    plan = model.plan(fetches, tensors)
    try:
        with torch.no_grad():
            out = model(tensors, fetches)
    except IndexRangeError as exc:  # fed indices that index nothing: the feed is wrong
        raise FeedError(f"feeds: error: {exc}") from None
    except LabelError as exc:
        computed = {node for step in plan for node in step.nodes}
        labels = [graph.node(loss.node).inputs[1] for loss in graph.losses if loss.node in computed]
        fed = [ref for ref in labels if ref in tensors] or labels
        raise FeedError(f"feed {', '.join(map(repr, fed))}: error: {exc}") from None
    return RunResult({f: out[f].detach().cpu().numpy() for f in fetches}, tuple(node for step in plan for node in step.nodes))


def save_npz(path: str | Path, values: Mapping[str, np.ndarray]) -> None:
    """Write fetched values to an .npz archive (keys are the fetch names), atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **values)
    atomic_write(path, buffer.getvalue())


# --- predict -----------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """The model's output for each input, read as its loss reads it (the loss op's `prediction`).

    - ``softmax``: `probabilities` [N, classes]; `top` the top-k (class, name, probability).
    - ``sigmoid``: `probabilities` [N, labels], one independent probability per
      label; `top` the labels at or above `threshold`, most probable first. With
      one unit: `top` is the predicted class, 1 (the positive class) when its
      probability reaches the threshold, else 0, with the positive class's probability.
    - ``values``: `values` [N, ...] as the model gives them (regression); `top` empty.
    """

    kind: str
    sources: list[str]
    top: list[list[tuple[int, str, float]]]
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None
    threshold: float | None = None
    names: list[str] | None = None  # softmax: per class; sigmoid: per label (one unit: negative, positive)
    rows: list[tuple[int, int] | None] | None = None  # per input: (data row from 1, line) of a row of a CSV file

    @property
    def one_unit(self) -> bool:
        return self.kind == "sigmoid" and self.probabilities.shape[1] == 1

    def to_dict(self) -> list[dict]:
        rows = []
        for i, source in enumerate(self.sources):
            row: dict = {"input": source}
            if self.rows is not None and self.rows[i] is not None:
                row["row"], row["line"] = self.rows[i]
            row["prediction"] = self.kind
            if self.kind == "softmax":
                row["top"] = [{"class": c, "label": name, "probability": p} for c, name, p in self.top[i]]
            elif self.one_unit:
                (c, name, p), = self.top[i]
                row.update({"class": c, "label": name, "probability": p, "threshold": self.threshold})
            elif self.kind == "sigmoid":
                row["threshold"] = self.threshold
                row["predicted"] = [{"class": c, "label": name, "probability": p} for c, name, p in self.top[i]]
                row["probabilities"] = [{"class": c, "label": name, "probability": float(p)} for c, (name, p) in enumerate(zip(self.names, self.probabilities[i]))]
            else:
                row["values"] = self.values[i].tolist()
            rows.append(row)
        return rows

    def to_csv(self) -> str:
        """One CSV line per input: input, row and line (of a CSV row), then the prediction.

        softmax: `prediction` (the most probable class), its `probability`, and
        `probability_NAME` for every class; sigmoid with one unit: the predicted
        class and the positive class's probability; with several: `predicted`
        (the labels at or above the threshold, joined by `;`) and
        `probability_NAME` per label; values: `value`, or `value_0`, `value_1`, ... .
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if self.kind == "softmax":
            header = ["prediction", "probability", *(f"probability_{name}" for name in self.names)]
        elif self.one_unit:
            header = ["prediction", "probability"]
        elif self.kind == "sigmoid":
            header = ["predicted", *(f"probability_{name}" for name in self.names)]
        else:
            width = int(np.prod(self.values.shape[1:]))
            header = ["value"] if width == 1 else [f"value_{j}" for j in range(width)]
        writer.writerow(["input", "row", "line", *header])
        for i, source in enumerate(self.sources):
            where = list(self.rows[i]) if self.rows is not None and self.rows[i] is not None else ["", ""]
            if self.kind == "softmax":
                (_, name, p), *_ = self.top[i]
                cells = [name, _number(p), *map(_number, self.probabilities[i])]
            elif self.one_unit:
                ((_, name, p),) = self.top[i]
                cells = [name, _number(p)]
            elif self.kind == "sigmoid":
                cells = [";".join(name for _, name, _ in self.top[i]), *map(_number, self.probabilities[i])]
            else:
                cells = [_number(v) for v in self.values[i].ravel()]
            writer.writerow([source, *where, *cells])
        return buffer.getvalue()


def _number(value) -> str:
    return f"{float(value):.9g}"


def _names(class_names: Sequence[str] | None, count: int) -> list[str]:
    return list(class_names) if class_names and len(class_names) == count else [str(c) for c in range(count)]


def _read_softmax(logits: np.ndarray, sources, *, top_k: int, threshold: float | None, class_names) -> Prediction:
    if logits.ndim != 2:
        raise FeedError(f"predict: error: softmax predictions need class scores [N, classes]; the logits are {list(logits.shape)}; use tfn run")
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    names = _names(class_names, probabilities.shape[1])
    k = min(top_k, probabilities.shape[1])
    top = [[(int(c), names[c], float(row[c])) for c in np.argsort(-row, kind="stable")[:k]] for row in probabilities]
    return Prediction("softmax", sources, top, probabilities=probabilities, names=names)


def _read_sigmoid(logits: np.ndarray, sources, *, top_k: int, threshold: float | None, class_names) -> Prediction:
    threshold = 0.5 if threshold is None else threshold
    probabilities = 1.0 / (1.0 + np.exp(-logits.reshape(len(logits), -1)))
    if probabilities.shape[1] == 1:
        names = _names(class_names, 2)  # negative, positive
        top = [[(int(p >= threshold), names[int(p >= threshold)], float(p))] for p in probabilities[:, 0]]
    else:
        names = _names(class_names, probabilities.shape[1])
        top = [[(int(c), names[c], float(row[c])) for c in np.argsort(-row, kind="stable") if row[c] >= threshold] for row in probabilities]
    return Prediction("sigmoid", sources, top, probabilities=probabilities, threshold=threshold, names=names)


def _read_values(logits: np.ndarray, sources, *, top_k: int, threshold: float | None, class_names) -> Prediction:
    return Prediction("values", sources, [[] for _ in sources], values=logits)


#: how each `prediction` kind of a loss op (layers/) reads the logits
READERS = {"softmax": _read_softmax, "sigmoid": _read_sigmoid, "values": _read_values}


def prediction_target(graph: Graph) -> tuple[str, str]:
    """(the logits the first loss reads, how it reads them: its op's `prediction`)."""
    if not graph.losses:
        raise FeedError("predict: error: the graph has no loss to say how its output is read; use tfn run")
    node = graph.node(graph.losses[0].node)
    return node.inputs[0], layers.get(node.op).prediction


def predict(
    model: GraphModule,
    inputs=None,
    *,
    texts: Sequence[str] | None = None,
    top_k: int = 3,
    threshold: float | None = None,
    class_names: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
) -> Prediction:
    """Predictions for `inputs`: a batch (array or tensor) for the model's input, or files (a path or a list of them):
    arrays, images and CSV files (one prediction per row, with its row and line), which go through the model's
    preprocessing record; so does an array for a field the record normalises. The logits of the first loss are read
    as the loss reads them (see Prediction); `threshold` applies to sigmoid outputs (default 0.5). `class_names`
    default to those the record keeps for a CSV label column.

    `texts` (instead of `inputs`), for a model trained on a text source: each
    text made into every input the logits need (token ids, lengths) by the
    record's text fields, as training made them."""
    logits_ref, kind = prediction_target(model.graph)
    if kind not in READERS:
        raise ValueError(f"no reader for prediction kind {kind!r}")
    if threshold is not None and kind != "sigmoid":
        raise FeedError(f"--threshold: error: applies to sigmoid outputs; this model's loss reads its output as {kind}")
    rows = None
    if texts is not None:
        if inputs is not None:
            raise FeedError("predict: error: give inputs or texts, not both")
        texts = [texts] if isinstance(texts, str) else list(texts)
        feeds, sources = read_texts(model, texts), texts
    elif isinstance(inputs, (str, Path)) or (isinstance(inputs, (list, tuple)) and inputs and all(isinstance(i, (str, Path)) for i in inputs)):
        examples = read_examples(model, [inputs] if isinstance(inputs, (str, Path)) else inputs)
        feeds, sources, rows = {_single_input(model, logits_ref): examples.batch}, examples.sources, examples.rows
    else:
        feeds = {_single_input(model, logits_ref): inputs}
    logits = run(model, feeds, [logits_ref]).values[logits_ref].astype(np.float64)
    if class_names is None:  # a CSV label column's class names, as the record keeps them
        class_names = record_class_names(model.preprocessing, model.graph.node(model.graph.losses[0].node).inputs[1])
    labels = list(sources) if sources is not None else [str(i) for i in range(len(logits))]
    result = READERS[kind](logits, labels, top_k=top_k, threshold=threshold, class_names=class_names)
    return replace(result, rows=rows) if rows is not None and any(rows) else result


def read_texts(model: GraphModule, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Texts -> a batch for each input the predicted logits need, made by the record's text fields (token ids, lengths)."""
    logits_ref = prediction_target(model.graph)[0]
    needed = [i.name for i in model.graph.inputs if i.name in inputs_needed(model, [logits_ref])]
    record = model.preprocessing
    if not record.text_fields():
        raise FeedError(f"--text: error: the preprocessing record (from {record.origin}) makes no field from a text; texts feed a model trained on a text source")
    if not texts:
        raise FeedError("--text: error: give at least one text")
    made = record.read_texts(texts)
    missing = [name for name in needed if name not in made]
    if missing:
        raise FeedError(
            f"--text: error: the logits need the input(s) {', '.join(missing)}, which no text field of the record makes "
            f"(it makes {', '.join(made)}); use tfn run with --feed"
        )
    return {name: made[name] for name in needed}


def _single_input(model: GraphModule, logits_ref: str) -> str:
    needed = [i.name for i in model.graph.inputs if i.name in inputs_needed(model, [logits_ref])]
    if len(needed) != 1:
        raise FeedError(f"predict: error: the logits {logits_ref!r} need the inputs {', '.join(needed)}; predict feeds one; use tfn run")
    return needed[0]


def inputs_needed(model: GraphModule, fetches: Sequence[str]) -> set[str]:
    """The model inputs that computing `fetches` reads."""
    names = {i.name for i in model.graph.inputs}
    return {ref[0] for step in model.plan(fetches, names) for ref in step.inputs if ref[0] in names}


@dataclass(frozen=True)
class Examples:
    """The inputs read for predict: one batch, a label per sample, and each sample's (data row, line) if a CSV row gave it."""

    batch: np.ndarray
    sources: list[str]
    rows: list[tuple[int, int] | None]


def read_examples(model: GraphModule, paths: Sequence[str | Path]) -> Examples:
    """Arrays (.npy/.npz: one sample or a batch), image files and CSV files (one sample per row; both through the
    preprocessing record) -> one batch for the input the predicted logits need."""
    name = _single_input(model, prediction_target(model.graph)[0])
    expected = model.graph.type_of(name)
    batches, sources, rows = [], [], []
    for path in map(str, paths):
        if Path(path).suffix.lower() == ".csv":
            _must_exist(Path(path))
            array, table = model.preprocessing.read_csv(name, path, expected)
            array = conform(name, array, expected)
            sources += [path] * len(array)
            rows += [(i + 1, line) for i, line in enumerate(table.lines)]
        else:
            array = conform(name, read_feed(name, path, expected, model.preprocessing), expected)
            sources += [path] if len(array) == 1 else [f"{path}[{i}]" for i in range(len(array))]
            rows += [None] * len(array)
        batches.append(array)
    if not batches:
        raise FeedError("predict: error: give at least one input file")
    return Examples(np.concatenate(batches), sources, rows)


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
