"""What `tfn check` reports: per node, its op, inputs, output shape, parameters and FLOPs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from tfn.specs.graph import Graph


@dataclass(frozen=True)
class NodeRow:
    name: str  # full name, scopes included
    scope: str
    op: str
    inputs: list[str]
    after: list[str]  # control inputs
    output: str  # e.g. "[?, 32, 8, 8]"; several outputs separated by ", "
    output_shapes: list[list[int | None]]  # the same for scripts; None is the batch axis
    parameters: int  # elements of the variables this node owns; shared ones count at their owner
    shares: str | None  # the node whose variables this one reuses
    flops: int  # forward, one sample
    device: str | None


@dataclass(frozen=True)
class Summary:
    name: str
    graph_hash: str
    inputs: dict[str, str]
    nodes: list[NodeRow]
    trainable_parameters: int
    non_trainable_parameters: int
    flops_per_sample: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(graph: Graph) -> Summary:
    sizes = {v.name: math.prod(v.shape) for v in graph.variables}
    owners: dict[str, str] = {}  # variable -> the first node that uses it
    rows = []
    for node in graph.nodes:
        fresh = [v for v in node.variables.values() if v not in owners]
        shared = [owners[v] for v in node.variables.values() if v in owners]
        owners.update((v, node.name) for v in fresh)
        rows.append(
            NodeRow(
                name=node.name,
                scope=node.scope,
                op=node.op,
                inputs=list(node.inputs),
                after=list(node.control_inputs),
                output=", ".join(str(t) for t in node.outputs),
                output_shapes=[list(t.shape) for t in node.outputs],
                parameters=sum(sizes[v] for v in fresh),
                shares=shared[0] if shared else None,
                flops=graph.node_flops(node),
                device=node.device,
            )
        )
    trainable, frozen = graph.parameter_counts()
    return Summary(
        graph.name,
        graph.hash,
        {i.name: str(i.type) for i in graph.inputs},
        rows,
        trainable,
        frozen,
        sum(r.flops for r in rows),
    )
