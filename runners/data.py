"""The input pipeline: a data source bound to the graph's inputs, served as batches.

    data = DataPipeline(spec.data, graph, seed=spec.train.seed, device=device, doc=loaded.doc)
    for epoch in range(1, epochs + 1):
        for step, feeds in enumerate(data.train_batches(epoch), start=0): ...
    for feeds in data.eval_batches("validation"): ...

Binding: every graph input (the model's inputs and the loss's label field) is
fed by the data field of the same name; shapes, dtype kinds and class
indices are checked before a step runs (DataError, exit status 2).

Order: the training order of an epoch is a pure function of (seed, epoch), and
step k of an epoch is the k-th slice of it, so `train_batches(epoch,
start_step=k)` resumes exactly. Augmentation draws from (seed, epoch, step).

Several processes (DistributedDataParallel): `shard=(rank, count)` gives each
process every count-th sample of each global batch, starting at its rank:
DistributedSampler's rule applied to the epoch's order, batch by batch. The
spec's batch_size is the global batch, so the steps of an epoch and the
samples of step k are those of a single-process run.

Two ways to batch, by source:
- in memory (arrays): the split lives on the device as tensors; a batch is an
  index into them, with no per-sample Python;
- streamed (image files): torch's DataLoader decodes in worker processes with
  prefetching (TF's QueueRunner threads); a worker error stops the run with
  that error (TF's Coordinator), never a hang.
"""

from __future__ import annotations

import math
import sys
from functools import partial
from typing import Iterator

import numpy as np
import torch

from tfn.runners.data_check import augment_problems, binding_problems, class_problems, declared_at, kind
from tfn.runners.data_files import DataError
from tfn.runners.data_sources import SKIP_BAD_HINT, SPLITS, ArraySource, ImageFileSource, Source, load_source
from tfn.runners.module import DTYPES
from tfn.runners.preprocessing import Preprocessing, record_for
from tfn.specs import schema
from tfn.specs.documents import Document
from tfn.specs.errors import format_path
from tfn.specs.graph import Graph

__all__ = ["DataError", "DataLoaderFailed", "DataPipeline", "RandomShuffleQueue", "SPLITS", "epoch_order", "augment_images", "spread_over_classes"]

EVAL_BATCH_SIZE = 512


class DataLoaderFailed(RuntimeError):
    """A DataLoader worker died or stalled (not a problem in the data itself): the run fails, exit status 1."""


# --- order ---------------------------------------------------------------------------


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([k % 2**64 for k in keys]))


class RandomShuffleQueue:
    """TF's RandomShuffleQueue over sample indices (tf_semantics.md §8.1), without threads.

    `enqueue` fails when full; `dequeue` takes a uniformly chosen element
    (swapped with the last, then popped) and is possible only while more than
    `min_after_dequeue` elements are queued, or after `close()`, which lets the
    rest drain.
    """

    class WouldBlock(Exception):
        """TF would block here: the queue is full (enqueue) or too small (dequeue)."""

    class OutOfRange(Exception):
        """The queue is closed and empty (TF's OutOfRangeError)."""

    def __init__(self, capacity: int, min_after_dequeue: int, rng: np.random.Generator):
        if not 0 <= min_after_dequeue < capacity:
            raise ValueError(f"RandomShuffleQueue needs 0 <= min_after_dequeue < capacity, got {min_after_dequeue} and {capacity}")
        self.capacity, self.min_after_dequeue = capacity, min_after_dequeue
        self._items: list[int] = []
        self._rng = rng
        self._uniform: list[float] = []
        self.closed = False

    @property
    def size(self) -> int:
        return len(self._items)

    def enqueue(self, item: int) -> None:
        if self.closed:
            raise RuntimeError("enqueue on a closed queue")
        if self.size == self.capacity:
            raise self.WouldBlock("the queue is full")
        self._items.append(item)

    def dequeue(self) -> int:
        if not self._items and self.closed:
            raise self.OutOfRange("the queue is closed and empty")
        if not self.closed and self.size - self.min_after_dequeue <= 0:
            raise self.WouldBlock(f"{self.size} queued, min_after_dequeue {self.min_after_dequeue}")
        if not self._uniform:
            self._uniform = self._rng.random(4096).tolist()  # drawn in blocks: one numpy call per 4096 dequeues
        index = int(self._uniform.pop() * self.size)
        items = self._items
        items[index], items[-1] = items[-1], items[index]
        return items.pop()

    def close(self) -> None:
        self.closed = True


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True, buffer: schema.ShuffleBuffer | None = None) -> np.ndarray:
    """The order of the n training samples in `epoch`: a pure function of its arguments.

    A permutation; the source order when not `shuffle`; with a `buffer`, the
    source order through a RandomShuffleQueue whose producer keeps it full.
    """
    if not shuffle:
        return np.arange(n)
    rng = _rng(seed, epoch, 0)
    if buffer is None:
        return rng.permutation(n)
    queue = RandomShuffleQueue(buffer.capacity, buffer.min_after_dequeue, rng)
    out = np.empty(n, dtype=np.int64)
    taken = 0
    for item in range(n):
        if queue.size == queue.capacity:
            out[taken] = queue.dequeue()
            taken += 1
        queue.enqueue(item)
    queue.close()
    while queue.size:
        out[taken] = queue.dequeue()
        taken += 1
    return out


def spread_over_classes(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` samples taken from each class in turn, in class order; within a class in source order."""
    by_class = np.argsort(labels, kind="stable")
    sorted_labels = labels[by_class]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    occurrence = np.empty(len(labels), dtype=np.int64)
    occurrence[by_class] = np.arange(len(labels)) - np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    return np.lexsort((labels, occurrence))[:count]


# --- augmentation --------------------------------------------------------------------


def augment_images(images: torch.Tensor, rng: np.random.Generator, crop_padding: int, horizontal_flip: bool) -> torch.Tensor:
    """Random crop after zero padding, then random left-right flip, per image of a batch [N, C, H, W].

    Both are one gather: each output pixel's source position in the padded
    batch is computed from the per-image offsets and flips, on the device.
    """
    if not crop_padding and not horizontal_flip:
        return images
    n, channels, height, width = images.shape
    device, p = images.device, crop_padding
    source = torch.nn.functional.pad(images, (p, p, p, p)) if p else images
    top = torch.from_numpy(rng.integers(0, 2 * p + 1, n)).to(device)
    left = torch.from_numpy(rng.integers(0, 2 * p + 1, n)).to(device)
    flip = torch.from_numpy(rng.random(n) < 0.5 if horizontal_flip else np.zeros(n, dtype=bool)).to(device)
    ys, xs = torch.arange(height, device=device), torch.arange(width, device=device)
    rows = top[:, None] + ys  # [N, H]
    cols = left[:, None] + torch.where(flip[:, None], width - 1 - xs, xs)  # [N, W]
    index = (rows[:, :, None] * (width + 2 * p) + cols[:, None, :]).reshape(n, 1, height * width)
    flat = source.reshape(n, channels, -1).gather(2, index.expand(n, channels, height * width))
    return flat.reshape(n, channels, height, width)


# --- binding -------------------------------------------------------------------------


class _Where:
    """Positions binding errors in the spec file when its document is known: `FILE:LINE:COL: error: PATH: ...`."""

    def __init__(self, doc: Document | None):
        self.doc = doc

    def error(self, path: tuple, message: str) -> DataError:
        if self.doc is None:
            return DataError(f"{format_path(path)}: error: {message}")
        return DataError(str(self.doc.error(path, message)))

    def raise_all(self, problems: list) -> None:
        """One DataError listing every problem, if there are any."""
        if problems:
            raise DataError("\n".join(str(self.error(*problem)) for problem in problems))


def bind(graph: Graph, source: Source, source_name: str, doc: Document | None = None) -> dict[str, torch.dtype]:
    """Check that every graph input has a fitting data field: {input name: the dtype to feed}."""
    where = _Where(doc)
    record = source.preprocessing
    # what makes a field's shape (its CSV columns, its image size), for a field whose shape does not fit
    made = {name: steps[0].describe() for name, steps in record.fields.items() if steps} if record is not None else {}
    where.raise_all(binding_problems(graph, source.field_types(), source_name, doc.data if doc else None, made))
    where.raise_all(class_problems(graph, len(source.class_names) if source.class_names is not None else None, source_name))
    if isinstance(source, ArraySource):
        for inp in graph.inputs:
            if kind(source.field_types()[inp.name].dtype) == "integer":
                _check_range(source, inp.name, inp.type.dtype, where, declared_at(graph, inp.name, doc.data if doc else None))
    _check_classes(graph, source, source_name, where)
    _check_values(graph, source, source_name, where, doc.data if doc else None)
    return {inp.name: DTYPES[inp.type.dtype] for inp in graph.inputs}


def _check_range(source: ArraySource, name: str, dtype: str, where: _Where, declared: tuple) -> None:
    """Integer data for a narrower integer input (a uint8 label input, 300 classes) would wrap around: refused."""
    info = np.iinfo(dtype)
    for split, fields in source.splits.items():
        values = fields[name]
        bad = np.flatnonzero((values < info.min) | (values > info.max))
        if bad.size == 0:
            continue
        sample, value = int(bad[0]) // max(1, values[0].size), int(values.flat[bad[0]])
        raise where.error(
            declared + ("dtype",),
            f"field {name!r} holds {value} (sample {sample} of the {split} split), outside the range of the input's {dtype} ({info.min} to {info.max})",
        )


def _check_classes(graph: Graph, source: Source, source_name: str, where: _Where) -> None:
    """Class-index labels must lie in [0, K), K the width of the logits they are scored against."""
    for loss in graph.losses:
        logits_ref, label_ref = graph.node(loss.node).inputs[:2]
        if kind(graph.type_of(label_ref).dtype) != "integer":
            continue
        logits_shape = graph.type_of(logits_ref).shape
        if len(logits_shape) < 2 or logits_shape[1] is None:
            continue
        classes = int(logits_shape[1])
        for split in SPLITS:
            labels = source.labels(split, label_ref)
            if labels.size == 0:
                continue
            bad = np.flatnonzero((labels < 0) | (labels >= classes))
            if bad.size:
                sample = int(bad[0]) // max(1, labels[0].size)  # labels may be maps [N, H, W]
                value = int(labels.flat[bad[0]])
                rule = f"the logits {logits_ref!r} give {classes} classes, so labels must lie in 0..{classes - 1}"
                found = source.where(split, label_ref, sample) if isinstance(source, ArraySource) else None
                if found is not None:
                    raise DataError(f"{found} the label {value} of field {label_ref!r} is out of range: {rule}")
                raise where.error(("data",), f"field {label_ref!r} holds the label {value} at sample {sample} of the {split} split; {rule}")


def _check_values(graph: Graph, source: Source, source_name: str, where: _Where, data: dict | None) -> None:
    """Integer inputs that are not labels (token ids, sequence lengths, indices) must lie in what their ops accept."""
    labels = {graph.node(loss.node).inputs[1] for loss in graph.losses}
    inputs = {i.name for i in graph.inputs}
    for name, (low, high) in graph.integer_input_ranges().items():
        if name in labels or name not in inputs:
            continue
        for split in SPLITS:
            values = source.labels(split, name)
            bad = np.flatnonzero((values < low) | (values >= high))
            if bad.size:
                sample, value = int(bad[0]) // max(1, values[0].size), int(values.flat[bad[0]])
                rule = f"the nodes that read field {name!r} accept {low}..{high - 1}"
                found = source.where(split, name, sample) if isinstance(source, ArraySource) else None
                if found is not None:
                    raise DataError(f"{found} the value {value} is out of range: {rule}")
                raise where.error(declared_at(graph, name, data), f"field {name!r} holds {value} at sample {sample} of the {split} split; {rule}")


# --- the pipeline --------------------------------------------------------------------


class DataPipeline:
    """A spec's data source bound to a graph: batches of the fields the graph's inputs need, on `device`."""

    def __init__(
        self,
        spec: schema.DataBase,
        graph: Graph,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        doc: Document | None = None,
        shard: tuple[int, int] = (0, 1),
        preprocessing: Preprocessing | None = None,
    ):
        """`doc`, the spec's parsed document, lets binding errors point at the line of the spec they concern.

        `shard` (rank, count): this process trains on its share of each batch (see the module's docstring).
        `preprocessing`: a model directory's record (tfn eval); default: what the data section implies.
        """
        self.spec = spec
        self.seed = seed
        self.shard = shard
        self.device = torch.device(device)
        self.source: Source = load_source(spec, preprocessing)
        made = self.source.preprocessing  # what the source fitted or was given (None: nothing learnt from the data)
        self.preprocessing = made if made is not None else record_for(spec) if preprocessing is None else preprocessing
        self.fed = bind(graph, self.source, spec.source, doc)
        self._check_batching()
        self._loaders: dict[str, tuple[torch.utils.data.DataLoader, _PassBatches]] = {}
        if isinstance(self.source, ArraySource):
            # the whole split on the device once: a batch is then an index, with no copy from the host per step
            prepare = self.preprocessing.apply
            self._tensors = {
                split: {name: _tensor(prepare(name, fields[name]), self.fed[name]).to(self.device) for name in self.fed}
                for split, fields in self.source.splits.items()
            }

    @property
    def class_names(self) -> list[str] | None:
        return self.source.class_names

    def size(self, split: str) -> int:
        return self.source.size(split)

    @property
    def batch_size(self) -> int:
        """Samples per training step (`full`: the whole training split)."""
        return self.size("train") if self.spec.batch_size == "full" else self.spec.batch_size

    @property
    def steps_per_epoch(self) -> int:
        n, batch = self.size("train"), self.batch_size
        return n // batch if self.spec.drop_remainder else math.ceil(n / batch)

    def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """The training batches of `epoch` (counted from 1), from step `start_step` of that epoch on.

        Shuffled and augmented as the spec says; drop_remainder applies.
        Batch k of an epoch is the same whether or not the iteration started at k.
        """
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step {start_step} is outside the epoch's {self.steps_per_epoch} steps")
        order = epoch_order(self.size("train"), self.seed, epoch, self.spec.shuffle, self.spec.shuffle_buffer)
        batch = self.batch_size
        bounds = [(s * batch, min((s + 1) * batch, len(order))) for s in range(start_step, self.steps_per_epoch)]
        augment = self.spec.augment
        rank, count = self.shard
        for step, feeds in enumerate(self._batches("train", order, bounds, self.shard), start=start_step):
            if augment is not None and augment.field in feeds:
                rng = _rng(self.seed, epoch, step, 1) if count == 1 else _rng(self.seed, epoch, step, 1, rank)
                feeds[augment.field] = augment_images(feeds[augment.field], rng, augment.crop_padding, augment.horizontal_flip)
            yield feeds

    def eval_batches(self, split: str, batch_size: int = EVAL_BATCH_SIZE) -> Iterator[dict[str, torch.Tensor]]:
        """A split in source order, no augmentation, nothing dropped."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; the splits are {', '.join(SPLITS)}")
        n = self.size(split)
        bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
        return self._batches(split, None, bounds)

    def examples(self, split: str, count: int, labels: str | None = None) -> dict[str, torch.Tensor]:
        """`count` samples of a split, to show the data: with a class-index field `labels`, taken
        from each class in turn (the first of every class, then the second, ...); else the first ones."""
        count = min(count, self.size(split))
        rows = np.arange(count)
        if labels is not None:
            values = self.source.labels(split, labels)
            if values.ndim == 1:
                rows = spread_over_classes(values, count)
        return next(self._batches(split, rows, [(0, len(rows))]))

    # --- batching ----------------------------------------------------------------------

    def _check_batching(self) -> None:
        if self.size("train") == 0:
            raise DataError(f"data: error: source {self.spec.source!r} has no training samples")
        if self.steps_per_epoch == 0:
            raise DataError(
                f"data: error: batch_size {self.batch_size} with drop_remainder leaves no batch of the {self.size('train')} training samples"
            )
        count = self.shard[1]
        if count > 1:
            if self.batch_size % count:
                raise DataError(
                    f"data.batch_size: error: {self.batch_size} is the global batch of the {count} processes, so it must be a multiple of {count}"
                )
            last = self.size("train") % self.batch_size
            if last and not self.spec.drop_remainder and last < count:
                raise DataError(
                    f"data: error: the last batch of each epoch has {last} of the {self.size('train')} training samples, "
                    f"fewer than the {count} processes; set drop_remainder: true"
                )
        _Where(None).raise_all(augment_problems(self.spec.augment, self.source.field_types(), self.spec.source))

    def _batches(
        self, split: str, order: np.ndarray | None, bounds: list[tuple[int, int]], shard: tuple[int, int] = (0, 1)
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batch i holds the samples order[begin:end] of bounds[i] (source order when `order` is None),
        of which this process takes every count-th from its rank on (`shard`; only with an order)."""
        rank, count = shard
        if isinstance(self.source, ArraySource):
            tensors = self._tensors[split]
            if order is None:  # views, no gather
                for begin, end in bounds:
                    yield {name: t[begin:end] for name, t in tensors.items()}
                return
            on_device = torch.from_numpy(order).to(self.device)  # one copy per epoch, not one per step
            for begin, end in bounds:
                index = on_device[begin:end] if count == 1 else on_device[begin + rank : end : count]
                yield {name: t.index_select(0, index) for name, t in tensors.items()}
        else:
            rows = order if order is not None else np.arange(self.size(split))
            yield from self._stream(split, [rows[begin + rank : end : count] for begin, end in bounds])

    def _stream(self, split: str, slices: list[np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
        spec = self.source.spec
        cuda = self.device.type == "cuda"
        loader, sampler = self._loader(split)
        sampler.batches = [rows.tolist() for rows in slices]
        batches = iter(loader)
        try:
            while True:
                try:
                    fields, errors = next(batches)
                except StopIteration:
                    return
                except RuntimeError as exc:  # a worker killed or stalled; errors raised in a worker keep their own type
                    raise DataLoaderFailed(f"the data loader failed: {exc}") from exc
                if errors:
                    if not spec.skip_bad:
                        raise DataError(errors[0] + SKIP_BAD_HINT)
                    for message in errors:
                        print(message.replace(": error: ", ": warning: skipped: ", 1), file=sys.stderr, flush=True)
                    if len(fields["label"]) == 0:
                        continue
                yield {name: fields[name].to(self.device, dtype=self.fed[name], non_blocking=cuda) for name in self.fed}
        except Exception:
            self._close_loader(split, kill=True)  # the run stops: end the workers now, stuck ones included
            raise
        finally:
            del batches  # drop this frame's reference even while a traceback keeps the frame alive

    def _loader(self, split: str) -> tuple[torch.utils.data.DataLoader, _PassBatches]:
        """One DataLoader per split, its workers kept between passes (starting them costs about 0.1 s each time)."""
        if split not in self._loaders:
            source = self.source
            assert isinstance(source, ImageFileSource)
            spec = source.spec
            sampler = _PassBatches()
            loader = torch.utils.data.DataLoader(
                _ImageDataset(source, split),
                batch_sampler=sampler,
                collate_fn=partial(_collate, (source.channels, *spec.size)),
                num_workers=spec.workers,
                prefetch_factor=spec.prefetch_factor if spec.workers else None,
                persistent_workers=spec.workers > 0,
                pin_memory=self.device.type == "cuda",
                timeout=spec.worker_timeout if spec.workers else 0,  # a stuck worker fails the run instead of hanging it
                # the loader's own generator: starting a pass must not draw from the global RNG the model uses
                generator=torch.Generator().manual_seed(0),
            )
            self._loaders[split] = (loader, sampler)
        return self._loaders[split]

    def close(self) -> None:
        """Stop the streaming workers now (they also stop when the pipeline is garbage-collected)."""
        for split in list(self._loaders):
            self._close_loader(split)

    def _close_loader(self, split: str, kill: bool = False) -> None:
        loader, _ = self._loaders.pop(split, (None, None))
        iterator = getattr(loader, "_iterator", None)  # where a persistent DataLoader keeps its workers
        if iterator is None or not hasattr(iterator, "_shutdown_workers"):
            return
        if kill:  # a worker stuck in a decode would hold up the orderly shutdown for seconds
            for worker in getattr(iterator, "_workers", []):
                worker.terminate()
        iterator._shutdown_workers()


class _PassBatches(torch.utils.data.Sampler):
    """The batch sampler of a persistent DataLoader: set to the batches of the next pass before it starts."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array).copy()
    return torch.from_numpy(array).to(dtype)


class _ImageDataset(torch.utils.data.Dataset):
    """Decodes one image per index; a bad image comes back as its error message, for the main process to report."""

    def __init__(self, source: ImageFileSource, split: str):
        self.source = source
        self.paths = source.paths[split]
        self.labels = source.labels_by_split[split]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return self.source.decode(self.paths[index]), int(self.labels[index]), None
        except DataError as exc:
            return None, int(self.labels[index]), str(exc)


def _collate(image_shape: tuple[int, ...], samples: list) -> tuple[dict[str, torch.Tensor], list[str]]:
    good = [s for s in samples if s[2] is None]
    errors = [s[2] for s in samples if s[2] is not None]
    images = torch.from_numpy(np.stack([s[0] for s in good])) if good else torch.empty((0, *image_shape))
    labels = torch.tensor([s[1] for s in good], dtype=torch.int64)
    return {"image": images, "label": labels}, errors
