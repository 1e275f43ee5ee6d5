"""Graph IR -> torch.nn.Module.

The module runs the graph's nodes in topological order (data and control
edges), each through its op's kernel, and computes only what the requested
fetches need (TF's session pruning); a fed tensor, a model input or any
intermediate node, is taken as given and what lies above it is not computed.
Every parameter and buffer is registered under its graph variable name
(`conv1/kernel`, `bn/moving_mean`), so state_dict keys are the checkpoint's
keys, one to one; shared variables exist once.

Placement: a node with a `device` runs there, the others on the module's
default device (:meth:`GraphModule.place`); tensors move where placement
changes, and each variable lives with the first node that uses it.

Rewrites: pairs of nodes that runners/rewrites.py proves safe run as one step
(e.g. a relu after the max pooling it precedes), unless a run fetches or feeds
inside the pair; the graph itself is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from tfn import layers
from tfn.layers.initializers import initialize
from tfn.runners import rewrites
from tfn.runners.memory import keep_freed_memory
from tfn.runners.preprocessing import Preprocessing
from tfn.specs.errors import UserError
from tfn.specs.graph import Graph, split_ref

DTYPES = {name: getattr(torch, name) for name in ("float32", "float64", "int64", "int32", "int16", "int8", "uint8")}

Ref = tuple[str, int]  # (node or input name, output index)


@dataclass
class _Step:
    name: str
    kernel: Callable
    inputs: tuple[Ref, ...]
    variables: tuple[tuple[str, str], ...]  # (role, variable name)
    requested_device: str | None  # as the graph places it
    device: torch.device | None = None  # where it runs; None: wherever its inputs are
    members: tuple[str, ...] = ()  # the nodes a rewritten step runs (the last is `name`); () for one node

    @property
    def nodes(self) -> tuple[str, ...]:
        """The graph nodes this step computes."""
        return self.members or (self.name,)


class FetchError(UserError):
    """A fetch or feed that the graph does not have, or a fetch whose inputs are not fed."""


class PlacementError(UserError):
    """A node is placed on a device this machine does not have."""


def check_device(device: str | torch.device, what: str) -> torch.device:
    """`device` as a torch.device, or PlacementError when this machine lacks it."""
    dev = torch.device(device)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = dev.index or 0
        if count == 0:
            raise PlacementError(f"{what} is placed on {device}, but this machine has no CUDA device; use device: cpu (or remove device:)")
        if index >= count:
            raise PlacementError(f"{what} is placed on {device}, but this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}")
    elif dev.type != "cpu":
        raise PlacementError(f"{what} is placed on {device}; tfn places nodes on cpu or cuda")
    return dev


class GraphModule(nn.Module):
    """A compiled graph. ``module(feeds, fetches)`` returns ``{fetch: tensor}``.

    ``feeds`` maps model inputs, and optionally any node output ("node" or
    "node:1"), to tensors; ``fetches`` names node outputs or inputs.
    """

    def __init__(self, graph: Graph, generator: torch.Generator | None = None):
        super().__init__()
        keep_freed_memory()  # every step reuses the host memory of the last one (runners/memory.py)
        self.graph = graph
        for v in graph.variables:
            value = torch.empty(v.shape, dtype=DTYPES[v.dtype])
            initialize(value, v.initializer, v.fans, generator)
            if v.trainable:
                self.register_parameter(v.name, nn.Parameter(value))
            else:
                self.register_buffer(v.name, value)
        self._steps: dict[str, _Step] = {}
        for node in graph.nodes:
            op = layers.get(node.op)
            kernel = op.build(node.params, [graph.type_of(r) for r in node.inputs])
            self._steps[node.name] = _Step(node.name, kernel, tuple(split_ref(r) for r in node.inputs), tuple(node.variables.items()), node.device)
        self._pairs: dict[str, rewrites.Pair] = {}  # by each member's name
        self._pair_steps: dict[rewrites.Pair, _Step] = {}
        for pair in rewrites.find_pairs(graph, rewrites.enabled()):
            self._add_pair(pair)
        self._plans: dict[tuple, list[_Step]] = {}
        self._export_kernels: dict[str, Callable] | None = None  # built on the first as_written run
        self._channels_last = False
        #: how files become the inputs (a model directory's record; tfn.runners.session.load_model sets it)
        self.preprocessing = Preprocessing()

    def _add_pair(self, pair: rewrites.Pair) -> None:
        first, second = self._steps[pair.first], self._steps[pair.second]
        kernel = rewrites.pair_kernel(self.graph, pair, first.kernel, second.kernel)
        variables = tuple((f"{i}:{role}", var) for i, step in enumerate((first, second)) for role, var in step.variables)
        self._pair_steps[pair] = _Step(second.name, kernel, first.inputs, variables, second.requested_device, second.device, pair.members)
        self._pairs[pair.first] = self._pairs[pair.second] = pair

    @property
    def rewritten(self) -> list[rewrites.Pair]:
        """The pairs of nodes this module may run as one step (runners/rewrites.py)."""
        return list(self._pair_steps)

    # --- pruning ---------------------------------------------------------------

    def plan(self, fetches: Sequence[str], fed: Iterable[str] = (), rewrite: bool = True) -> list[_Step]:
        """The steps that `fetches` need, in topological order; fed tensors are not recomputed.

        A node runs when one of its outputs is needed and not fed; running it
        runs its data and control inputs first. With `rewrite`, a rewritten
        pair runs as one step (at its second node's place) when both its nodes
        run and no fetch names its first node and no feed names either.
        """
        fed_refs = frozenset(split_ref(f) for f in fed)
        key = (tuple(fetches), fed_refs, rewrite)
        if key not in self._plans:
            needed: set[str] = set()
            stack = [split_ref(f) for f in fetches]
            while stack:
                ref = stack.pop()
                name = ref[0]
                if ref in fed_refs or name in needed or name not in self.graph.by_name:
                    continue
                needed.add(name)
                node = self.graph.by_name[name]
                stack.extend(split_ref(r) for r in node.inputs + node.control_inputs)
            fed_names = {name for name, _ in fed_refs}
            hidden = needed - fed_names - {split_ref(f)[0] for f in fetches}  # computed, but neither fed nor fetched
            steps = []
            for node in self.graph.nodes:
                if node.name not in needed:
                    continue
                pair = self._pairs.get(node.name) if rewrite else None
                if pair is None or pair.first not in hidden or pair.second not in needed or pair.second in fed_names:
                    steps.append(self._steps[node.name])
                elif node.name == pair.second:
                    steps.append(self._pair_steps[pair])
            self._plans[key] = steps
        return self._plans[key]

    def check_fetches(self, fetches: Sequence[str], feeds: Iterable[str]) -> None:
        """FetchError unless every fetch and feed exists and every input the fetches need is fed."""
        known = {n.name: len(n.outputs) for n in self.graph.nodes} | {i.name: 1 for i in self.graph.inputs}
        feeds = list(feeds)
        for what, refs in (("fetches", fetches), ("feeds", feeds)):
            for ref in refs:
                name, index = split_ref(ref)
                if name not in known:
                    hint = layers.suggest(name, known)
                    raise FetchError(f"unknown node {ref!r} in {what}" + (f" (did you mean {hint!r}?)" if hint else ""))
                if index >= known[name]:
                    raise FetchError(f"{ref!r}: node {name!r} has {known[name]} output(s), numbered from 0")
        fed = {split_ref(f) for f in feeds}
        inputs = {i.name for i in self.graph.inputs}
        for ref in map(split_ref, fetches):
            if ref[0] in inputs and ref not in fed:
                raise FetchError(f"input {ref[0]!r} is fetched but not fed")
        for step in self.plan(fetches, feeds):
            for ref in step.inputs:
                if ref[0] in inputs and ref not in fed:
                    raise FetchError(f"input {ref[0]!r} must be fed to compute {step.name!r}")

    # --- running ---------------------------------------------------------------

    def forward(self, feeds: Mapping[str, torch.Tensor], fetches: Sequence[str], as_written: bool = False) -> dict[str, torch.Tensor]:
        """The fetched tensors. `as_written` runs every node by its own kernel with no memory-format
        copies: the arithmetic the graph states, for export to trace; a node of an op with an
        export-time kernel (Op.build_onnx: one ONNX node computes it) runs that one."""
        channels_last = self._channels_last and not as_written
        kernels = self.export_kernels() if as_written else {}
        if channels_last:
            feeds = {k: to_channels_last(t) for k, t in feeds.items()}
        values: dict[Ref, torch.Tensor] = {split_ref(ref): tensor for ref, tensor in feeds.items()}
        state = {**self._parameters, **self._buffers}
        training = self.training
        for step in self.plan(fetches, feeds, rewrite=not as_written):
            xs = [values[ref] for ref in step.inputs]
            v = {role: state[var] for role, var in step.variables}
            if step.device is None and step.requested_device:  # placed by the graph, not yet by place()
                step.device = check_device(step.requested_device, f"node {step.name!r}")
            if step.device is not None:
                xs = [x if x.device == step.device else x.to(step.device) for x in xs]
                v = {role: t if t.device == step.device else t.to(step.device) for role, t in v.items()}
            out = kernels.get(step.name, step.kernel)(xs, v, training)
            for index, tensor in enumerate(out if isinstance(out, tuple) else (out,)):
                if channels_last:
                    # some kernels (reshape, pad, concat, a one-channel output) answer channels-first
                    tensor = to_channels_last(tensor)
                values.setdefault((step.name, index), tensor)  # a fed output stays as fed
        return {f: values[split_ref(f)] for f in fetches}

    def export_kernels(self) -> dict[str, Callable]:
        """The export-time kernel of each node whose op has one (Op.build_onnx), by node name."""
        if self._export_kernels is None:
            graph = self.graph
            built = {node.name: layers.get(node.op).build_onnx(node.params, [graph.type_of(r) for r in node.inputs]) for node in graph.nodes}
            self._export_kernels = {name: kernel for name, kernel in built.items() if kernel is not None}
        return self._export_kernels

    def replace_kernel(self, node: str, kernel: Callable) -> None:
        """Run `node` through another kernel of the same contract (e.g. a synchronised batch norm).

        A rewritten pair that holds the node runs as its two nodes from then on.
        """
        self._steps[node].kernel = kernel
        pair = self._pairs.get(node)
        if pair is not None:
            del self._pair_steps[pair], self._pairs[pair.first], self._pairs[pair.second]
            self._plans.clear()

    def use_channels_last(self) -> GraphModule:
        """Keep 4-D variables and 4-D float feeds in channels_last memory format.

        The logical layout stays (N, C, H, W); only the strides change. oneDNN's
        convolution and max-pool kernels on CPU (and cuDNN's with tensor cores)
        run faster this way: benchmarks/train_throughput.py measures it.
        """
        for holder in (self._parameters, self._buffers):
            for name, tensor in holder.items():
                if tensor is not None and tensor.dim() == 4:
                    tensor.data = to_channels_last(tensor.data)
        self._channels_last = True
        return self

    def trainable_variables(self) -> dict[str, nn.Parameter]:
        return dict(self._parameters)

    def variables(self) -> dict[str, torch.Tensor]:
        """Every graph variable, trainable or not: what a checkpoint holds."""
        return {**self._parameters, **self._buffers}

    def place(self, default: str | torch.device) -> GraphModule:
        """Run unplaced nodes on `default` and placed ones where the graph says.

        Each variable moves to the device of the first node that uses it.
        PlacementError names the node when the machine lacks its device.
        """
        default = check_device(default, "the model")
        self.to(default)
        owners: dict[str, torch.device] = {}
        for node in self.graph.nodes:
            step = self._steps[node.name]
            step.device = check_device(node.device, f"node {node.name!r}") if node.device else default
            for var in node.variables.values():
                owners.setdefault(var, step.device)
        for var, device in owners.items():
            holder = self._parameters if var in self._parameters else self._buffers
            if holder[var].device != device:
                holder[var].data = holder[var].data.to(device)
        for pair, step in self._pair_steps.items():
            step.device = self._steps[pair.second].device
        return self


def loss_fetches(graph: Graph) -> list[str]:
    """What computing the losses fetches: each loss node, and its weights (node:1) when it is weighted."""
    return [ref for loss in graph.losses for ref in (loss.node, f"{loss.node}:1")[: len(graph.node(loss.node).outputs)]]


def reduced_loss(graph: Graph, node: str, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The scalar loss of loss node `node` from fetched values: its op's reduction (tf.losses')."""
    n = graph.node(node)
    weights = out[f"{node}:1"] if len(n.outputs) > 1 else None
    return layers.get(n.op).reduce(n.params, out[node], weights)


_CL = torch.channels_last


def to_channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` with channels_last strides, unambiguously.

    With one channel, `contiguous(memory_format=channels_last)` keeps the
    channels-first strides (both layouts fit), and a convolution fed those
    answers channels-first; an explicit channels_last copy avoids that.
    """
    if tensor.dim() != 4 or not tensor.is_floating_point():
        return tensor
    if tensor.shape[1] == 1 and tensor.stride(1) != 1:
        return torch.empty_like(tensor, memory_format=_CL).copy_(tensor)
    return tensor.contiguous(memory_format=_CL)


def wants_channels_last(graph: Graph, memory_format: str) -> bool:
    """`auto`: channels_last when the graph carries 4-D (image) tensors."""
    if memory_format != "auto":
        return memory_format == "channels_last"
    return any(len(t.shape) == 4 for node in graph.nodes for t in node.outputs)
