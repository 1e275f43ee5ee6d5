"""Graph IR -> torch.nn.Module.

The module runs the graph's nodes in topological order, each through its op's
kernel, and computes only what the requested fetches need (TF's session
pruning). Every parameter and buffer is registered under its graph variable
name (`conv1/kernel`, `bn/moving_mean`), so state_dict keys are the
checkpoint's keys, one to one; shared variables exist once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from tfn import layers
from tfn.layers.initializers import initialize
from tfn.specs.errors import UserError
from tfn.specs.graph import Graph, split_ref

DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "int32": torch.int32}


@dataclass(frozen=True)
class _Step:
    name: str
    kernel: Callable
    inputs: tuple[tuple[str, int], ...]
    variables: tuple[tuple[str, str], ...]  # (role, variable name)
    device: torch.device | None


class FetchError(UserError):
    pass


class GraphModule(nn.Module):
    """A compiled graph. ``module(feeds, fetches)`` returns ``{fetch: tensor}``."""

    def __init__(self, graph: Graph, generator: torch.Generator | None = None):
        super().__init__()
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
            self._steps[node.name] = _Step(
                node.name,
                kernel,
                tuple(split_ref(r) for r in node.inputs),
                tuple(node.variables.items()),
                torch.device(node.device) if node.device else None,
            )
        self._plans: dict[tuple, list[_Step]] = {}

    # --- pruning ---------------------------------------------------------------

    def plan(self, fetches: Sequence[str], fed: Iterable[str] = ()) -> list[_Step]:
        """The steps that `fetches` need, in topological order; fed nodes are not recomputed."""
        key = (tuple(fetches), tuple(sorted(fed)))
        if key not in self._plans:
            needed: set[str] = set()
            fed_set = set(fed)
            stack = [split_ref(f)[0] for f in fetches]
            while stack:
                name = stack.pop()
                if name in needed or name in fed_set or name not in self.graph.by_name:
                    continue
                needed.add(name)
                node = self.graph.by_name[name]
                stack.extend(split_ref(r)[0] for r in node.inputs + node.control_inputs)
            self._plans[key] = [self._steps[n.name] for n in self.graph.nodes if n.name in needed]
        return self._plans[key]

    def check_fetches(self, fetches: Sequence[str], feeds: Mapping[str, torch.Tensor]) -> None:
        known = {n.name: len(n.outputs) for n in self.graph.nodes} | {i.name: 1 for i in self.graph.inputs}
        for f in fetches:
            name, index = split_ref(f)
            if name not in known:
                hint = layers.suggest(name, known)
                raise FetchError(f"unknown node {f!r} in fetches" + (f" (did you mean {hint!r}?)" if hint else ""))
            if index >= known[name]:
                raise FetchError(f"{f!r}: node {name!r} has {known[name]} output(s)")
        inputs = {i.name for i in self.graph.inputs}
        for step in self.plan(fetches, feeds):
            for name, _ in step.inputs:
                if name in inputs and name not in feeds:
                    raise FetchError(f"input {name!r} must be fed to compute {step.name!r}")

    # --- running ---------------------------------------------------------------

    def forward(self, feeds: Mapping[str, torch.Tensor], fetches: Sequence[str]) -> dict[str, torch.Tensor]:
        values: dict[str, tuple] = {name: (tensor,) for name, tensor in feeds.items()}
        state = {**self._parameters, **self._buffers}
        training = self.training
        for step in self.plan(fetches, feeds):
            xs = [values[name][index] for name, index in step.inputs]
            if step.device is not None:
                xs = [x.to(step.device, non_blocking=True) for x in xs]
            out = step.kernel(xs, {role: state[var] for role, var in step.variables}, training)
            values[step.name] = out if isinstance(out, tuple) else (out,)
        return {f: values[split_ref(f)[0]][split_ref(f)[1]] for f in fetches}

    def trainable_variables(self) -> dict[str, nn.Parameter]:
        return dict(self._parameters)

    def variables(self) -> dict[str, torch.Tensor]:
        """Every graph variable, trainable or not: what a checkpoint holds."""
        return {**self._parameters, **self._buffers}

    def place(self, default: torch.device) -> GraphModule:
        """Move each variable to the device of the node that uses it (the default elsewhere)."""
        self.to(default)
        for node in self.graph.nodes:
            if node.device:
                for var in node.variables.values():
                    holder = self._parameters if var in self._parameters else self._buffers
                    holder[var].data = holder[var].data.to(node.device)
        return self
