"""Steady-state training throughput: `tfn train` against the frozen PyTorch tutorial loop.

    python benchmarks/train_throughput.py [--rounds 5] [--spec benchmarks/specs/reference_cnn.yaml]

A: `tfn train` on the spec through its Python API (start-up excluded): the
   samples/s that tfn itself logs over whole epochs after the first (warm-up) one.
B: benchmarks/baseline_tutorial_loop.py on the same data sizes, same thread count.
C: Keras `fit` on the same model, only where TensorFlow is installed (never a dependency).

A and B alternate A/B/A/B over the rounds, so both see the same machine
weather: only the ratio of medians measured in one run is meaningful here.
The fraction of peak divides the model's training FLOPs (3x the forward FLOPs
the op registry counts) by the fp32 rate of a large matmul timed in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from baseline_tutorial_loop import train_epochs  # noqa: E402

from tfn import specs  # noqa: E402
from tfn.runners.train import train  # noqa: E402
from tfn.specs.summary import summarize  # noqa: E402


def tfn_rates(spec_path: Path, overrides: list[str]) -> list[float]:
    """samples/s that `tfn train` logs, one record per epoch, after the warm-up epoch."""
    data = specs.load(spec_path, overrides).spec.data
    per_epoch = -(-data.samples.train // data.batch_size)
    loaded = specs.load(spec_path, [*overrides, f"train.log_every={per_epoch}"])
    with tempfile.TemporaryDirectory() as tmp:
        train(loaded, out=Path(tmp) / "run", quiet=True)
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    return [r["samples_per_second"] for r in records if r["split"] == "train" and r["step"] > per_epoch]


def baseline_rates(images, labels, batch_size: int, epochs: int) -> list[float]:
    return train_epochs(images, labels, batch_size, epochs)[1:]


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


def keras_rates(batch_size: int, samples: int, epochs: int) -> list[float] | None:
    try:
        import numpy as np
        import tensorflow as tf  # noqa: F401
        from tensorflow import keras
    except ImportError:
        return None
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same"),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.randn(samples, 28, 28, 1).astype("float32")
    y = np.random.randint(0, 10, samples)
    rates = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            rates.append(samples / (time.perf_counter() - self.start))

    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[Timer()], shuffle=True)
    return rates[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=HERE / "specs" / "reference_cnn.yaml")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="spec override for A, e.g. train.epochs=4")
    parser.add_argument(
        "--also", action="append", default=[], metavar="SPEC", help="more specs to measure with tfn alone (e.g. resnet_small): samples/s and fraction of peak"
    )
    args = parser.parse_args()

    loaded = specs.load(args.spec, args.overrides)
    data = loaded.spec.data
    samples, batch, epochs = data.samples.train, data.batch_size, loaded.spec.train.epochs
    images, labels = torch.randn(samples, 1, 28, 28), torch.randint(0, 10, (samples,))
    results: dict[str, list[float]] = {"tfn train": [], "tutorial loop": []}
    for round_ in range(args.rounds):
        results["tfn train"] += tfn_rates(args.spec, args.overrides)
        results["tutorial loop"] += baseline_rates(images, labels, batch, epochs)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    keras = keras_rates(batch, samples, epochs)
    if keras:
        results["keras fit"] = keras
    peak = matmul_peak()
    train_flops = 3 * summarize(loaded.graph).flops_per_sample

    print(f"\n{loaded.spec.name}: batch {batch}, {samples} samples/epoch, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"fp32 peak (2048^3 matmul): {peak / 1e9:.1f} GFLOP/s; training FLOPs/sample: {train_flops / 1e6:.2f} M\n")
    print(f"{'':<14} {'median':>9} {'min':>9} {'max':>9} {'of peak':>8}   samples/s")
    base = statistics.median(results["tutorial loop"])
    for name, rates in results.items():
        median = statistics.median(rates)
        print(f"{name:<14} {median:9.0f} {min(rates):9.0f} {max(rates):9.0f} {median * train_flops / peak:8.1%}")
    print(f"\nratio tfn train / tutorial loop: {statistics.median(results['tfn train']) / base:.2f}")
    if keras:
        print(f"ratio keras fit / tutorial loop: {statistics.median(keras) / base:.2f}")
    for extra in args.also:
        other = specs.load(extra)
        rates = tfn_rates(other.path, ["train.epochs=3"])
        flops = 3 * summarize(other.graph).flops_per_sample
        median = statistics.median(rates)
        print(f"{other.spec.name}: tfn train {median:.0f} samples/s (batch {other.spec.data.batch_size}), {median * flops / peak:.1%} of peak")


if __name__ == "__main__":
    main()
