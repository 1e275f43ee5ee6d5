"""Host overhead of tfn's training step: the share of a step that is not spent inside ATen kernels.

    python benchmarks/host_overhead.py [--model reference_cnn] [--steps 60]

Runs tfn's training step as `tfn train` runs it (the graph module in
training's layout and rewrites, the loss, backward, the optimizer's update)
on one in-memory batch. The step's wall time is measured without the profiler;
then torch.profiler records the same steps and the kernel time is the sum of
the outermost ATen ops (forward ops, the ops inside each autograd backward
function, the optimizer's foreach ops). Host overhead = 1 - kernel / wall:
Python (tfn's per-node loop, the loss, the optimizer's Python), the autograd
engine's bookkeeping and dispatch. On CPU every op runs synchronously, so
there is no overlap to account for.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput_worker import MODELS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="reference_cnn")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from tfn import specs
    from tfn.runners.module import GraphModule, to_channels_last, wants_channels_last
    from tfn.runners.optimizers import make_optimizer
    from tfn.runners.timing import synthetic_feeds
    from tfn.runners.train import Loss

    loaded = specs.load(MODELS[args.model][0])
    graph = loaded.graph
    model = GraphModule(graph, torch.Generator().manual_seed(0)).place("cpu").train()
    feeds = synthetic_feeds(graph, args.batch, torch.device("cpu"), torch.Generator().manual_seed(0))
    if wants_channels_last(graph, loaded.spec.train.memory_format):
        model.use_channels_last()
        feeds = {k: to_channels_last(t) for k, t in feeds.items()}
    optimizer = make_optimizer(loaded.spec.optimizer, list(model.trainable_variables().items()))
    loss_fn = Loss(model)

    def step():
        loss, _ = loss_fn(feeds)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(10):
        step()
    walls = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        walls.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    kernel_us = 0.0
    by_op: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        parent, nested = event.cpu_parent, False
        while parent is not None:
            if parent.name.startswith("aten::"):
                nested = True
                break
            parent = parent.cpu_parent
        if not nested:
            kernel_us += event.cpu_time_total
            by_op[event.name] += event.cpu_time_total
    wall_ms = statistics.median(walls) * 1000
    kernel_ms = kernel_us / 1000 / args.steps
    print(f"{args.model}, batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"step (median of {args.steps}, no profiler): {wall_ms:.2f} ms; inside ATen ops: {kernel_ms:.2f} ms")
    print(f"host overhead: {max(0.0, 1 - kernel_ms / wall_ms):.1%} of the step")
    print("largest outermost ops, ms per step:")
    for name, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {name:<44} {us / 1000 / args.steps:7.3f}")


if __name__ == "__main__":
    main()
