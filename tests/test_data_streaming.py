"""Streamed sources (image folders) through torch's DataLoader: workers, exact resume, bad images, dead workers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from tfn.runners.data import DataError, DataLoaderFailed, DataPipeline
from tfn.runners.data_sources import ImageFileSource
from tfn.specs import load

SPEC = """
version: 1
name: folder
model:
  inputs:
    image: {{shape: [{channels}, 4, 4]}}
  layers:
    - {{op: flatten}}
    - {{name: logits, op: dense, units: 3}}
loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
data: {{source: image_folder, directory: {directory}, size: [4, 4], color: {color}, batch_size: 4, split: {{validation: 0.25, test: 0}}{extra}}}
"""


@contextmanager
def within(seconds: int):
    """Fail the test instead of hanging when the body takes longer than `seconds`."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the pipeline hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def write_folder(root: Path, per_class: int = 6) -> None:
    """Three classes of distinct grey levels, with a per-image variation, as PNG."""
    from PIL import Image

    for label, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            value = 40 + 80 * label + 3 * i
            Image.fromarray(np.full((5, 7), value, dtype=np.uint8), mode="L").save(root / name / f"{i:02d}.png")


@pytest.fixture
def folder_pipeline(tmp_path, write_spec):
    write_folder(tmp_path / "images")

    def make(extra: str = "", color: str = "grayscale", seed: int = 0, device: str = "cpu") -> DataPipeline:
        text = SPEC.format(channels=1 if color == "grayscale" else 3, directory=tmp_path / "images", color=color, extra=extra)
        loaded = load(write_spec(text))
        return DataPipeline(loaded.spec.data, loaded.graph, seed=seed, device=device)

    return make


def _decoded_grey_levels(batch) -> list[int]:
    return [int(round(v)) for v in (batch["image"][:, 0, 0, 0] * 255).tolist()]


def test_streamed_batches_hold_the_decoded_images_and_labels(folder_pipeline):
    data = folder_pipeline()
    assert data.size("train") == 13 and data.size("validation") == 5 and data.steps_per_epoch == 4
    seen = []
    for batch in data.train_batches(epoch=1):
        assert batch["image"].shape[1:] == (1, 4, 4) and batch["image"].dtype == torch.float32
        levels = _decoded_grey_levels(batch)
        # each image's grey level encodes its class: 40 + 80 * label + 3 * i
        assert [(v - 40) // 80 for v in levels] == batch["label"].tolist()
        seen += levels
    validation = [v for b in data.eval_batches("validation") for v in _decoded_grey_levels(b)]
    assert sorted(seen + validation) == sorted(40 + 80 * c + 3 * i for c in range(3) for i in range(6))


def test_workers_and_resume_give_the_same_batches(folder_pipeline):
    plain = list(folder_pipeline().train_batches(epoch=3))
    with within(60):
        workers = folder_pipeline(extra=", workers: 2, prefetch_factor: 2")
        parallel = list(workers.train_batches(epoch=3))
        resumed = list(workers.train_batches(epoch=3, start_step=2))
    assert len(plain) == len(parallel) == 4
    for a, b in zip(plain, parallel):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    for a, b in zip(plain[2:], resumed):
        assert torch.equal(a["image"], b["image"])
    # the workers persist between passes, and close() ends them
    assert len(multiprocessing.active_children()) >= 2
    workers.close()
    assert multiprocessing.active_children() == []


def test_streamed_augmentation_is_seeded_per_step(folder_pipeline):
    extra = ", augment: {crop_padding: 1, horizontal_flip: true}"
    first = [b["image"] for b in folder_pipeline(extra=extra).train_batches(epoch=1)]
    resumed = [b["image"] for b in folder_pipeline(extra=extra).train_batches(epoch=1, start_step=1)]
    assert all(torch.equal(a, b) for a, b in zip(first[1:], resumed))
    plain = [b["image"] for b in folder_pipeline().train_batches(epoch=1)]
    assert any(not torch.equal(a, b) for a, b in zip(first, plain))


def _break_one_image(root: Path) -> Path:
    bad = root / "b" / "03.png"
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated PNG: the header reads, the pixels do not
    return bad


def test_a_corrupt_image_in_a_worker_stops_the_run_naming_the_file(tmp_path, folder_pipeline):
    data = folder_pipeline(extra=", workers: 2")
    bad = _break_one_image(tmp_path / "images")
    with within(60), pytest.raises(DataError) as info:
        for _ in range(2):
            for _ in data.train_batches(epoch=1):
                pass
            for _ in data.eval_batches("validation"):
                pass
    assert str(info.value).startswith(f"{bad}: error: cannot decode the image")
    assert "skip_bad: true" in str(info.value)


def test_skip_bad_skips_with_a_warning(tmp_path, folder_pipeline, capsys):
    data = folder_pipeline(extra=", skip_bad: true")
    bad = _break_one_image(tmp_path / "images")
    count = sum(len(b["label"]) for b in data.train_batches(epoch=1)) + sum(len(b["label"]) for b in data.eval_batches("validation"))
    assert count == 17  # 18 images, one skipped
    assert f"{bad}: warning: skipped: cannot decode the image" in capsys.readouterr().err


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the patched decode reaches the workers only through fork")
def test_a_dead_worker_fails_the_run_instead_of_hanging(folder_pipeline, monkeypatch):
    data = folder_pipeline(extra=", workers: 2")
    decode = ImageFileSource.decode

    def die_on_one(self, path):
        if path.name == "02.png" and path.parent.name == "c":
            os._exit(3)  # the worker process vanishes, as when the OOM killer takes it
        return decode(self, path)

    monkeypatch.setattr(ImageFileSource, "decode", die_on_one)
    with within(60), pytest.raises(DataLoaderFailed, match="the data loader failed: DataLoader worker .* exited unexpectedly"):
        for _ in range(2):
            for _ in data.train_batches(epoch=1):
                pass
            for _ in data.eval_batches("validation"):
                pass


def test_rgb_images_with_normalisation(folder_pipeline):
    data = folder_pipeline(color="rgb", extra=", mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]")
    batch = next(data.eval_batches("train", batch_size=3))
    assert batch["image"].shape == (3, 3, 4, 4)
    level = (batch["image"][:, 0, 0, 0] * 0.25 + 0.5) * 255  # undo the normalisation by hand
    assert torch.allclose(batch["image"][:, 0], batch["image"][:, 2])  # grey PNG -> equal RGB channels
    assert all(abs(v - round(v)) < 1e-3 and 40 <= round(v) <= 215 for v in level.tolist())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_streamed_batches_reach_the_gpu_through_pinned_memory(folder_pipeline):
    cpu = list(folder_pipeline(extra=", workers: 2").train_batches(epoch=1))
    with within(60):
        gpu = list(folder_pipeline(extra=", workers: 2", device="cuda").train_batches(epoch=1))
    assert all(b["image"].is_cuda and torch.equal(a["image"], b["image"].cpu()) for a, b in zip(cpu, gpu))


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the patched decode reaches the workers only through fork")
def test_a_stuck_worker_fails_the_run_after_worker_timeout(folder_pipeline, monkeypatch):
    data = folder_pipeline(extra=", workers: 1, worker_timeout: 1")
    decode = ImageFileSource.decode

    def hang_on_one(self, path):
        if path.name == "02.png" and path.parent.name == "c":
            time.sleep(30)  # a decoder stuck on a bad file or a dead network share
        return decode(self, path)

    monkeypatch.setattr(ImageFileSource, "decode", hang_on_one)
    with within(20), pytest.raises(DataLoaderFailed, match="the data loader failed: DataLoader timed out after 1"):
        for _ in data.train_batches(epoch=1):
            pass
        for _ in data.eval_batches("validation"):
            pass


def test_examples_of_an_image_folder_come_from_each_class_in_turn(folder_pipeline):
    """TensorBoard's input grid: decoded images of every class, not the first images of one."""
    shown = folder_pipeline().examples("train", 6, "label")
    assert shown["label"].tolist() == [0, 1, 2, 0, 1, 2]
    assert [(v - 40) // 80 for v in _decoded_grey_levels(shown)] == [0, 1, 2, 0, 1, 2]
