"""What `tfn check` reports: per node, its op, inputs, output shape, parameters and FLOPs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from tfn.specs.graph import Graph


@dataclass(frozen=True)
class NodeRow:
    name: str
    op: str
    inputs: list[str]
    after: list[str]
    output: str
    parameters: int
    flops: int
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
    owned: set[str] = set()
    rows = []
    for node in graph.nodes:
        fresh = [v for v in node.variables.values() if v not in owned]  # shared variables count once
        owned.update(fresh)
        rows.append(
            NodeRow(
                node.name,
                node.op,
                list(node.inputs),
                list(node.control_inputs),
                ", ".join(str(t) for t in node.outputs),
                sum(sizes[v] for v in fresh),
                graph.node_flops(node),
                node.device,
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
