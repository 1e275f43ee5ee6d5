"""Per-op comparison: tfn's per-node times beside TensorFlow's profiler for the same model.

    python benchmarks/op_compare.py [--model reference_cnn] [--batch 64] [--rounds 3] [--tf-python PATH]

tfn side (this interpreter): `tfn time`'s forward and backward time of every
node (runners/timing.py: each kernel timed alone, in training's layout), plus
the optimizer's update and the whole uninstrumented step (forward, loss,
backward, update).
TensorFlow side (an interpreter with TensorFlow; never a tfn dependency): the
Keras model of benchmarks/keras_models.py trained by a plain `tf.function` step
under `tf.profiler`; each kernel's time is read from the profile's compute
threads and attributed to the Keras layer (= tfn node) whose name scope it runs
in: forward ops under the layer, backward ops under `gradient_tape/.../layer`,
the optimizer's ops to `optimizer`. Fused kernels (Conv2D+BiasAdd+Relu) count
for the layer that owns them; the relu that Keras folds into a layer then has
no TensorFlow time of its own.

Same model, batch, thread count and precision (--precision bf16: tfn's
train.precision bf16 against Keras's mixed_bfloat16 policy); each side runs in its own process, the
sides alternate over the rounds and each figure is the median over rounds of
per-round medians. Kernel times sum to more than a step where TensorFlow runs
independent kernels side by side (its inter-op pool).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput_worker import CLASSES, MODELS, find_tf_python  # noqa: E402


# --- tfn side ---------------------------------------------------------------------------------


def tfn_side(model: str, batch: int, iterations: int, precision: str) -> dict:
    import torch

    from tfn import specs
    from tfn.runners.module import GraphModule, to_channels_last, wants_channels_last
    from tfn.runners.optimizers import make_optimizer
    from tfn.runners.precision import Precision
    from tfn.runners.timing import synthetic_feeds, time_graph
    from tfn.runners.train import Loss

    loaded = specs.load(MODELS[model][0])
    graph = loaded.graph
    timing = time_graph(graph, batch_size=batch, iterations=iterations, memory_format=loaded.spec.train.memory_format, precision=precision)
    rows = {n.name: {"op": n.op, "forward": n.forward_ms, "backward": n.backward_ms} for n in timing.nodes}

    # the optimizer's update and the whole step, as the training loop runs them
    net = GraphModule(graph, torch.Generator().manual_seed(0)).place("cpu").train()
    feeds = synthetic_feeds(graph, batch, torch.device("cpu"), torch.Generator().manual_seed(0))
    if wants_channels_last(graph, loaded.spec.train.memory_format):
        net.use_channels_last()
        feeds = {k: to_channels_last(t) for k, t in feeds.items()}
    optimizer = make_optimizer(loaded.spec.optimizer, list(net.trainable_variables().items()))
    loss_fn = Loss(net)
    update, step = [], []
    for i in range(iterations + 3):
        start = time.perf_counter()
        with Precision(precision, torch.device("cpu")).autocast():
            loss, _ = loss_fn(feeds)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        middle = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        if i >= 3:
            update.append((end - middle) * 1000)
            step.append((end - start) * 1000)
    rows["optimizer"] = {"op": "adam", "forward": statistics.median(update), "backward": None}
    return {"rows": rows, "step_ms": statistics.median(step), "threads": torch.get_num_threads(), "version": f"torch {torch.__version__}"}


# --- TensorFlow side --------------------------------------------------------------------------


def tf_side(model: str, batch: int, iterations: int, precision: str) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tempfile

    import numpy as np
    import tensorflow as tf
    from tensorflow import keras
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from keras_models import MODELS as BUILDERS
    from keras_models import node_name, training_step

    keras.utils.set_random_seed(0)
    if precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    step = training_step(BUILDERS[model]())
    c, h, w = MODELS[model][1]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch, h, w, c), dtype=np.float32))
    y = tf.constant(rng.integers(0, CLASSES, batch))
    for _ in range(3):
        float(step(x, y))
    walls = []
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(iterations):
            start = time.perf_counter()
            float(step(x, y))
            walls.append((time.perf_counter() - start) * 1000)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())

    per_op: dict[str, float] = defaultdict(float)  # "name:type" -> total ms over the profiled steps
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                label = plane.event_metadata[event.metadata_id].name
                if ":" in label and not label.startswith(("ThreadpoolListener", "ExecutorState")):
                    per_op[label] += event.duration_ps / 1e9
    rows: dict[str, dict] = defaultdict(lambda: {"forward": 0.0, "backward": 0.0, "kernels": set()})
    for label, total in per_op.items():
        name, kind = label.rsplit(":", 1)
        parts = name.split("/")
        backward = parts[0] == "gradient_tape"
        node = next((n for n in map(node_name, parts) if n), None)
        if node is None:
            node = "optimizer" if parts[0] in ("adam", "Adam") else "loss" if "crossentropy" in name else "other"
        row = rows[node]
        row["backward" if backward else "forward"] += total / iterations
        row["kernels"].add(kind)
    out = {n: {"forward": r["forward"], "backward": r["backward"] or None, "kernels": sorted(r["kernels"])} for n, r in rows.items()}
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    return {"rows": out, "step_ms": statistics.median(walls), "threads": threads, "version": f"tensorflow {tf.__version__}"}


# --- both -------------------------------------------------------------------------------------


def run_side(python: str, side: str, args) -> dict:
    command = [python, __file__, "--side", side, "--model", args.model, "--batch", str(args.batch), "--iterations", str(args.iterations)]
    command += ["--precision", args.precision]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {side} side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="reference_cnn")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: train.precision bf16 against Keras's mixed_bfloat16")
    parser.add_argument("--iterations", type=int, default=20, help="profiled steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tf-python", help="an interpreter with TensorFlow (default: $TFN_TF_PYTHON, this one or `python3` if they have it)")
    parser.add_argument("--side", choices=["tfn", "tf"], help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the joined table as JSON")
    args = parser.parse_args()
    if args.side:
        side = tfn_side if args.side == "tfn" else tf_side
        print(json.dumps(side(args.model, args.batch, args.iterations, args.precision)))
        return

    tf_python = args.tf_python or find_tf_python()
    if tf_python is None:
        raise SystemExit("no interpreter with TensorFlow found: give --tf-python PATH")
    runs: dict[str, list[dict]] = {"tfn": [], "tf": []}
    for round_ in range(args.rounds):
        for side, python in (("tfn", sys.executable), ("tf", tf_python)):
            runs[side].append(run_side(python, side, args))
        print(f"round {round_ + 1}/{args.rounds} done (load average {os.getloadavg()[0]:.2f})", file=sys.stderr)

    def merged(side: str) -> dict[str, dict]:
        names = dict.fromkeys(n for run in runs[side] for n in run["rows"])
        return {
            n: {
                "forward": _median([run["rows"].get(n, {}).get("forward") for run in runs[side]]),
                "backward": _median([run["rows"].get(n, {}).get("backward") for run in runs[side]]),
                "detail": run["rows"].get(n, {}).get("op") or ",".join(run["rows"].get(n, {}).get("kernels", [])),
            }
            for n in names
            for run in runs[side][-1:]
        }

    ours, theirs = merged("tfn"), merged("tf")
    table = []
    for name in dict.fromkeys([*ours, *theirs]):
        a, b = ours.get(name, {}), theirs.get(name, {})
        table.append({"node": name, "tfn": a, "tf": b})
    step = {side: _median([run["step_ms"] for run in runs[side]]) for side in runs}
    if args.json:
        print(json.dumps({"model": args.model, "batch": args.batch, "rows": table, "step_ms": step}, indent=2))
        return

    print(
        f"\n{args.model}, batch {args.batch}, {args.precision}: {runs['tfn'][0]['version']} ({runs['tfn'][0]['threads']} threads) vs "
        f"{runs['tf'][0]['version']} ({runs['tf'][0]['threads']} intra-op threads); ms, median of {args.rounds} rounds\n"
    )
    header = ("node", "tfn fwd", "tf fwd", "tfn bwd", "tf bwd", "tfn - tf", "TensorFlow kernels")
    print(f"{header[0]:<16} {header[1]:>8} {header[2]:>8} {header[3]:>8} {header[4]:>8} {header[5]:>9}  {header[6]}")
    sums = [0.0, 0.0]
    for row in table:
        a, b = row["tfn"], row["tf"]
        ta = (a.get("forward") or 0) + (a.get("backward") or 0)
        tb = (b.get("forward") or 0) + (b.get("backward") or 0)
        sums[0] += ta
        sums[1] += tb
        print(
            f"{row['node']:<16} {_fmt(a.get('forward')):>8} {_fmt(b.get('forward')):>8} {_fmt(a.get('backward')):>8} "
            f"{_fmt(b.get('backward')):>8} {ta - tb:9.3f}  {b.get('detail', '')}"
        )
    print(f"{'kernels, total':<16} {sums[0]:>17.3f} {sums[1]:>17.3f} {sums[0] - sums[1]:9.3f}")
    print(f"{'whole step':<16} {step['tfn']:>17.3f} {step['tf']:>17.3f} {step['tfn'] - step['tf']:9.3f}   (wall, incl. the update)")


if __name__ == "__main__":
    main()
