"""What `tfn check` reports: per node, its op, inputs, output shape, parameters and FLOPs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from tfn.layers import TensorType
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
class MemoryEstimate:
    """A floor on the memory a model needs: its variables, plus every tensor its forward pass
    makes (model inputs and every node's outputs) per sample. Training needs more (gradients,
    optimizer slots); a batch that does not fit this floor fits nothing."""

    parameter_bytes: int
    activation_bytes_per_sample: int

    def for_batch(self, batch_size: int, parameters: bool = True) -> int:
        return (self.parameter_bytes if parameters else 0) + batch_size * self.activation_bytes_per_sample


def memory_estimate(graph: Graph) -> MemoryEstimate:
    parameters = sum(math.prod(v.shape) * TensorType(v.shape, v.dtype).itemsize for v in graph.variables)
    tensors = [i.type for i in graph.inputs] + [t for node in graph.nodes for t in node.outputs]
    return MemoryEstimate(parameters, sum(t.sample_size * t.itemsize for t in tensors))


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'; 100 -> '100 bytes'."""
    value, unit = float(n), "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{n:,} bytes" if unit == "bytes" else f"{value:,.1f} {unit}"


@dataclass(frozen=True)
class Summary:
    name: str
    graph_hash: str
    inputs: dict[str, str]
    nodes: list[NodeRow]
    trainable_parameters: int
    non_trainable_parameters: int
    flops_per_sample: int
    memory: MemoryEstimate

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
        memory_estimate(graph),
    )
