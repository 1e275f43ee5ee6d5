"""One contestant of benchmarks/train_throughput.py, in a process of its own.

    python benchmarks/throughput_worker.py CONTESTANT --model reference_cnn [--precision bf16] [--epochs 3] [--samples 6400]

Prints one JSON line: {"rates": [samples/s of each epoch after the first], ...}.
Contestants: `tfn` (tfn's training entry point on the model's spec, its
defaults), `tutorial` (the frozen PyTorch tutorial loop), `keras_fit`
(Keras `fit`) and `tf_step` (a plain `tf.function` training step); the last two
need an interpreter with TensorFlow, the first two one with tfn. Each process
imports one framework only, so thread pools never share a process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: model -> (the tfn spec, its input shape channels-first, overrides that make the benchmark's data)
MODELS = {
    "reference_cnn": (str(HERE / "specs" / "reference_cnn.yaml"), (1, 28, 28)),
    "resnet_small": ("resnet_small", (3, 32, 32)),
    "vgg_small": ("vgg_small", (3, 32, 32)),
}
BATCH = 64
CLASSES = 10


def find_tf_python() -> str | None:
    """An interpreter that has TensorFlow: $TFN_TF_PYTHON, else this one or `python3` on PATH if they have it."""
    import shutil
    import subprocess

    if os.environ.get("TFN_TF_PYTHON"):
        return os.environ["TFN_TF_PYTHON"]
    for candidate in (sys.executable, shutil.which("python3")):
        probe = [candidate, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is None)"]
        if candidate and subprocess.run(probe, capture_output=True).returncode == 0:
            return candidate
    return None


def tfn_overrides(samples: int, epochs: int, precision: str) -> list[str]:
    per_epoch = -(-samples // BATCH)
    return [
        f"data.samples={{train: {samples}, validation: 0, test: 0}}",
        f"data.batch_size={BATCH}",
        f"train.epochs={epochs}",
        f"train.log_every={per_epoch}",  # one record per epoch: its rate covers the whole epoch
        f"train.precision={precision}",
    ]


def set_torch_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def run_tfn(model: str, samples: int, epochs: int, precision: str, extra: list[str], threads: int | None = None) -> dict:
    set_torch_threads(threads)
    from tfn import specs
    from tfn.runners.train import train

    spec, _ = MODELS[model]
    loaded = specs.load(spec, [*tfn_overrides(samples, epochs, precision), *extra])
    per_epoch = -(-samples // BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        train(loaded, out=Path(tmp) / "run", quiet=True)
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    import torch

    rates = [r["samples_per_second"] for r in records if r["split"] == "train" and r["step"] > per_epoch]
    return {"rates": rates, "threads": torch.get_num_threads(), "version": f"torch {torch.__version__}"}


def run_tutorial(model: str, samples: int, epochs: int, precision: str, extra: list[str], threads: int | None = None) -> dict:
    set_torch_threads(threads)
    import torch
    from baseline_tutorial_loop import train_epochs
    from tutorial_models import MODELS as BUILDERS

    if precision != "fp32":
        raise SystemExit("the tutorial loop is the fp32 yardstick")
    shape = MODELS[model][1]
    images, labels = torch.randn(samples, *shape), torch.randint(0, CLASSES, (samples,))
    rates = train_epochs(images, labels, BATCH, epochs, build=BUILDERS[model])[1:]
    return {"rates": rates, "threads": torch.get_num_threads(), "version": f"torch {torch.__version__}"}


def _keras_setup(model: str, precision: str, threads: int | None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from tensorflow import keras

    if threads:  # both pools: TensorFlow's inter-op pool runs independent kernels side by side
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)

    from keras_models import MODELS as BUILDERS

    if precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    elif precision != "fp32":
        raise SystemExit(f"no Keras policy for {precision} here")
    keras.utils.set_random_seed(0)
    net = BUILDERS[model]()
    return np, tf, keras, net


def _data(np, model: str, samples: int):
    c, h, w = MODELS[model][1]
    rng = np.random.default_rng(0)
    return rng.standard_normal((samples, h, w, c), dtype=np.float32), rng.integers(0, CLASSES, samples)


def _tf_info(tf) -> dict:
    threads = tf.config.threading
    return {"threads": threads.get_intra_op_parallelism_threads() or os.cpu_count(), "version": f"tensorflow {tf.__version__}"}


def run_keras_fit(model: str, samples: int, epochs: int, precision: str, extra: list[str], threads: int | None = None) -> dict:
    np, tf, keras, net = _keras_setup(model, precision, threads)
    net.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(np, model, samples)
    rates: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            rates.append(samples / (time.perf_counter() - self.start))

    net.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[Timer()], shuffle=True)
    return {"rates": rates[1:], **_tf_info(tf)}


def run_tf_step(model: str, samples: int, epochs: int, precision: str, extra: list[str], threads: int | None = None) -> dict:
    np, tf, keras, net = _keras_setup(model, precision, threads)
    from keras_models import training_step

    step = training_step(net)
    x, y = _data(np, model, samples)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(samples, seed=0).batch(BATCH).prefetch(2)
    rates = []
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for images, labels in data:
            loss = step(images, labels)
            seen += int(images.shape[0])
        float(loss)
        rates.append(seen / (time.perf_counter() - start))
    return {"rates": rates[1:], **_tf_info(tf)}


CONTESTANTS = {"tfn": run_tfn, "tutorial": run_tutorial, "keras_fit": run_keras_fit, "tf_step": run_tf_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("contestant", choices=sorted(CONTESTANTS))
    parser.add_argument("--model", choices=sorted(MODELS), default="reference_cnn")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    parser.add_argument("--samples", type=int, default=6400, help="training samples per epoch")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra spec override for tfn")
    parser.add_argument("--threads", type=int, help="threads per framework (default: each framework's own, the core count)")
    args = parser.parse_args()
    result = CONTESTANTS[args.contestant](args.model, args.samples, args.epochs, args.precision, args.extra, args.threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
