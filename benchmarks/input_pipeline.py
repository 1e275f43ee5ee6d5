"""Input pipeline: `image_folder` decoding rate against what the model consumes.

    python benchmarks/input_pipeline.py [--images 20000] [--directory DIR] [--rounds 3]

Generates (once, then reuses) a folder of small images, half PNG, half JPEG,
32x32 RGB in 10 class folders. Then, every round, each in a fresh process:

- the pipeline alone: the training batches of one epoch through tfn's data
  pipeline (torch's DataLoader underneath), images/s, with `workers` 0 (the
  default), 1 and 2;
- the model: `tfn train` of vgg_small (3x32x32, batch 64) fed from the folder
  at the default settings, against the same training fed from memory
  (synthetic data of the same shape): samples/s after the first 50 steps.

The pipeline is not the bottleneck when training from the folder runs about
as fast as training from memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = 10
STEPS = 150
LOG_EVERY = 50


def generate(directory: Path, count: int, size: int = 32) -> None:
    marker = directory / f".generated-{count}"
    if marker.exists():
        return
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for i in range(count):
        folder = directory / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        # smooth colour ramps plus noise: files of realistic size for their format
        base = ramp[None, :, None] * rng.random(3, dtype=np.float32) + ramp[:, None, None] * rng.random(3, dtype=np.float32)
        pixels = np.clip(base / 2 + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / (f"{i:06d}.png" if i % 2 else f"{i:06d}.jpg"), quality=90)
    marker.touch()


def overrides(directory: Path, workers: int | None) -> list[str]:
    data = f"{{source: image_folder, directory: {json.dumps(str(directory))}, size: [32, 32], split: {{validation: 0.0, test: 0.0}}, batch_size: 64"
    data += "}" if workers is None else f", workers: {workers}}}"
    return [f"data={data}"]


def pipeline_rate(directory: Path, workers: int) -> float:
    import torch

    from tfn import specs
    from tfn.runners.data import DataPipeline

    loaded = specs.load("vgg_small", overrides(directory, workers))
    pipeline = DataPipeline(loaded.spec.data, loaded.graph, seed=0, device=torch.device("cpu"), doc=loaded.doc)
    try:
        seen, start = 0, None
        for step, feeds in enumerate(pipeline.train_batches(1)):
            if step == 10:  # workers started, caches warm
                seen, start = 0, time.perf_counter()
            seen += len(feeds["label"])
        return seen / (time.perf_counter() - start)
    finally:
        pipeline.close()


def training_rate(directory: Path, source: str) -> float:
    from tfn import specs
    from tfn.runners.train import train

    if source == "memory":
        data = ["data.samples={train: 20000, validation: 0, test: 0}"]
    else:  # folder, or folder:WORKERS
        data = overrides(directory, int(source.split(":")[1]) if ":" in source else None)
    loaded = specs.load("vgg_small", [*data, f"train.log_every={LOG_EVERY}", "train.epochs=1"])
    with tempfile.TemporaryDirectory() as tmp:
        train(loaded, out=Path(tmp) / "run", steps=STEPS, quiet=True)
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    return statistics.fmean(r["samples_per_second"] for r in records if r["split"] == "train" and r["step"] > LOG_EVERY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--directory", type=Path, default=Path(tempfile.gettempdir()) / "tfn-input-pipeline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    images = args.directory / str(args.images)
    if args.worker:
        kind, value = args.worker
        rate = pipeline_rate(images, int(value)) if kind == "pipeline" else training_rate(images, value)
        print(json.dumps({"rate": rate}))
        return

    start = time.perf_counter()
    generate(images, args.images)
    print(f"{args.images} images in {images} ({time.perf_counter() - start:.0f} s to generate or find)", file=sys.stderr)
    runs = [("pipeline, workers 0 (default)", "pipeline", "0"), ("pipeline, workers 1", "pipeline", "1"), ("pipeline, workers 2", "pipeline", "2")]
    runs += [("train from the folder (default)", "train", "folder"), ("train from the folder, workers 1", "train", "folder:1")]
    runs += [("train from the folder, workers 2", "train", "folder:2"), ("train from memory", "train", "memory")]
    results: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    loads = []
    for round_ in range(args.rounds):
        for label, kind, value in runs[round_ % len(runs) :] + runs[: round_ % len(runs)]:
            done = subprocess.run([sys.executable, __file__, "--images", str(args.images), "--directory", str(args.directory), "--worker", kind, value],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
            results[label].append(json.loads(done.stdout.strip().splitlines()[-1])["rate"])
            loads.append(os.getloadavg()[0])
        print(f"round {round_ + 1}/{args.rounds} done (load average {loads[-1]:.2f})", file=sys.stderr)
    print(f"\n{args.images} images 32x32 (PNG and JPEG), batch 64, {os.cpu_count()} CPUs; load average {min(loads):.2f} to {max(loads):.2f}")
    print(f"{'images/s':<34} {'median':>8} {'min':>8} {'max':>8}")
    for label, rates in results.items():
        print(f"{label:<34} {statistics.median(rates):8.0f} {min(rates):8.0f} {max(rates):8.0f}")
    folder, memory = (statistics.median(results[k]) for k in ("train from the folder (default)", "train from memory"))
    print(f"ratio train from the folder / from memory: {folder / memory:.2f}")


if __name__ == "__main__":
    main()
