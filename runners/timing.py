"""`tfn time` (caffe time): forward and backward time of every node, and the whole training step.

Each iteration runs the graph's training pass node by node, timing each
kernel; then, for every node that gradients flow through, it times that
node's backward alone: the node's recorded inputs (detached, requiring a
gradient only where training would compute one) go through its kernel again
untimed, and ``torch.autograd.backward`` with a gradient of the output's
shape is timed. On CUDA each timing is bracketed by synchronisations. The
totals line times whole, uninstrumented steps (forward, loss, backward) for
samples/s. Warm-up iterations are excluded. runners/module.py is untouched:
the instrumented pass walks ``GraphModule.plan`` node by node, without the
rewrites of runners/rewrites.py; the whole steps run the module as training
does, rewrites included.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from tfn.runners.memory import require_memory
from tfn.runners.module import GraphModule, loss_fetches, reduced_loss, to_channels_last, wants_channels_last
from tfn.runners.precision import Precision
from tfn.specs.graph import Graph, split_ref
from tfn.specs.summary import summarize


@dataclass(frozen=True)
class NodeTime:
    name: str
    op: str
    output: str
    forward_ms: float  # median over the timed iterations
    backward_ms: float | None  # None: no gradient flows through the node
    parameters: int
    flops: int  # forward, for the whole batch

    @property
    def total_ms(self) -> float:
        return self.forward_ms + (self.backward_ms or 0.0)


@dataclass(frozen=True)
class Timing:
    graph: str
    device: str
    batch_size: int
    iterations: int
    warmup: int
    nodes: list[NodeTime]  # graph order
    step_ms: float  # median whole training step, uninstrumented
    precision: str = "fp32"

    @property
    def forward_ms(self) -> float:
        return sum(n.forward_ms for n in self.nodes)

    @property
    def backward_ms(self) -> float:
        return sum(n.backward_ms or 0.0 for n in self.nodes)

    @property
    def samples_per_second(self) -> float:
        return self.batch_size / (self.step_ms / 1000.0)

    def share(self, node: NodeTime) -> float:
        total = self.forward_ms + self.backward_ms
        return node.total_ms / total if total else 0.0

    def to_dict(self) -> dict:
        return {
            **{k: v for k, v in asdict(self).items() if k != "nodes"},
            "nodes": [{**asdict(n), "total_ms": n.total_ms, "share": self.share(n)} for n in self.nodes],
            "forward_ms": self.forward_ms,
            "backward_ms": self.backward_ms,
            "samples_per_second": self.samples_per_second,
        }


def synthetic_feeds(graph: Graph, batch_size: int, device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random inputs of the graph's shapes: normal floats (uniform where an op bounds them, as
    log_loss's probabilities); integers valid wherever they are used (labels within their loss's
    classes, indices within what the op indexes, token ids, sequence lengths)."""
    ranges = graph.integer_input_ranges()
    intervals = graph.float_input_ranges()
    feeds = {}
    for inp in graph.inputs:
        shape = (batch_size, *inp.type.shape[1:])
        dtype = getattr(torch, inp.type.dtype)
        if not dtype.is_floating_point:
            value = torch.randint(*ranges.get(inp.name, (0, 2)), shape, generator=generator, dtype=dtype)
        elif inp.name in intervals:
            low, high = intervals[inp.name]
            value = low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)
        else:
            value = torch.randn(shape, generator=generator, dtype=dtype)
        feeds[inp.name] = value.to(device)
    return feeds


def time_graph(
    graph: Graph,
    *,
    batch_size: int,
    iterations: int = 10,
    warmup: int = 2,
    device: str | torch.device = "cpu",
    seed: int = 0,
    memory_format: str = "auto",
    precision: str = "fp32",
) -> Timing:
    """Time every node of `graph` forward and backward in training mode, and the whole step.

    4-D tensors take the layout training gives them (`memory_format`, as train.memory_format);
    forward passes run under training's autocast (`precision`, as train.precision).
    """
    dev = torch.device(device)
    require_memory(graph, batch_size, dev)
    autocast = Precision(precision, dev).autocast
    model = GraphModule(graph, torch.Generator().manual_seed(seed)).place(dev).train()
    feeds = synthetic_feeds(graph, batch_size, dev, torch.Generator().manual_seed(seed))
    if wants_channels_last(graph, memory_format):
        model.use_channels_last()
        feeds = {name: to_channels_last(tensor) for name, tensor in feeds.items()}
    fetches = list(dict.fromkeys(list(graph.outputs) + loss_fetches(graph)))
    steps = model.plan(fetches, feeds, rewrite=False)  # node by node; the whole-step line runs the rewritten module
    sync = _synchroniser(dev)
    needs_grad = _gradient_flow(model)
    forward: dict[str, list[float]] = {s.name: [] for s in steps}
    backward: dict[str, list[float]] = {s.name: [] for s in steps if s.name in needs_grad}
    state = model.variables()
    for iteration in range(warmup + iterations):
        keep = iteration >= warmup
        values = {(name, 0): t for name, t in feeds.items()}
        for step in steps:
            xs = [values[ref] for ref in step.inputs]
            v = {role: state[var] for role, var in step.variables}
            if step.device is not None:
                xs = [x.to(step.device) for x in xs]
            with torch.enable_grad(), autocast():  # as in training: the forward records what backward needs
                sync()
                start = time.perf_counter()
                out = step.kernel(xs, v, True)
                sync()
                elapsed = time.perf_counter() - start
            outs = out if isinstance(out, tuple) else (out,)
            for index, tensor in enumerate(outs):
                values[(step.name, index)] = tensor
            if keep:
                forward[step.name].append(elapsed * 1000)
                if step.name in backward:
                    requires = [ref[0] in needs_grad for ref in step.inputs]
                    backward[step.name].append(_backward_ms(step.kernel, xs, v, requires, sync, autocast))
    step_ms = _whole_step_ms(model, feeds, fetches, warmup, iterations, sync, autocast)
    summary = {row.name: row for row in summarize(graph).nodes}
    nodes = [
        NodeTime(
            s.name,
            summary[s.name].op,
            summary[s.name].output,
            statistics.median(forward[s.name]),
            statistics.median(backward[s.name]) if s.name in backward else None,
            summary[s.name].parameters,
            summary[s.name].flops * batch_size,
        )
        for s in steps
    ]
    return Timing(graph.name, str(dev), batch_size, iterations, warmup, nodes, step_ms, precision)


def _gradient_flow(model: GraphModule) -> set[str]:
    """Nodes whose outputs carry a gradient in training: those with trainable variables and everything after them."""
    trainable = set(model.trainable_variables())
    flowing: set[str] = set()
    for node in model.graph.nodes:
        if any(v in trainable for v in node.variables.values()) or any(split_ref(r)[0] in flowing for r in node.inputs):
            flowing.add(node.name)
    return flowing


def _backward_ms(kernel, xs, variables, requires, sync: Callable[[], None], autocast) -> float:
    inputs = [x.detach().requires_grad_(r and x.is_floating_point()) for x, r in zip(xs, requires)]
    with torch.enable_grad():
        with autocast():
            out = kernel(inputs, variables, True)
        outs = [t for t in (out if isinstance(out, tuple) else (out,)) if t.requires_grad]
        if not outs:
            return 0.0
        grads = [torch.ones_like(t) for t in outs]
        sync()
        start = time.perf_counter()
        torch.autograd.backward(outs, grads)
        sync()
    for t in variables.values():  # leave no gradient behind: the next iteration starts clean
        t.grad = None
    return (time.perf_counter() - start) * 1000


def _whole_step_ms(model, feeds, fetches, warmup, iterations, sync, autocast) -> float:
    losses = [loss.node for loss in model.graph.losses]
    times = []
    for iteration in range(warmup + iterations):
        sync()
        start = time.perf_counter()
        with autocast():
            out = model(feeds, fetches)
        total = sum(reduced_loss(model.graph, name, out) for name in losses) if losses else sum(out[f].float().mean() for f in fetches)
        total.backward()
        sync()
        if iteration >= warmup:
            times.append((time.perf_counter() - start) * 1000)
        model.zero_grad(set_to_none=True)
    return statistics.median(times)


def _synchroniser(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None
