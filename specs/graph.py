"""The graph IR: the dataflow graph a spec compiles to. Structure only, no torch.

graph.json is this IR serialised: `{"format": "tfn.graph", "version": 1, ...}`
with deterministic bytes; its sha256 identifies the structure and is stamped
into every checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

from tfn import layers
from tfn.layers import TensorType

GRAPH_FORMAT = "tfn.graph"
GRAPH_VERSION = 1


@dataclass(frozen=True)
class Input:
    """A value fed from outside (TF's placeholder), bound to a data field of the same name."""

    name: str
    type: TensorType


@dataclass(frozen=True)
class Variable:
    name: str  # TF's name: "conv1/kernel", "bn/moving_mean"
    shape: tuple[int, ...]
    trainable: bool
    initializer: str
    dtype: str = "float32"
    fans: tuple[int, int] | None = None
    regularizer: float = 0.0


@dataclass(frozen=True)
class Node:
    name: str  # full name with its scopes: "block1/conv"
    op: str
    attrs: dict  # the op's parameters, every default filled in (JSON values)
    inputs: tuple[str, ...]  # data edges: "node", "node:1" or an input's name
    control_inputs: tuple[str, ...] = ()  # control edges: these run first
    scope: str = ""
    device: str | None = None
    outputs: tuple[TensorType, ...] = ()
    variables: dict = field(default_factory=dict)  # role -> variable name

    @property
    def params(self) -> layers.Params:
        return layers.get(self.op).Params.model_validate(self.attrs)


def split_ref(ref: str) -> tuple[str, int]:
    """'node:1' -> ('node', 1); 'node' -> ('node', 0)."""
    name, _, index = ref.rpartition(":")
    if name and index.isdigit():
        return name, int(index)
    return ref, 0


@dataclass(frozen=True)
class Loss:
    node: str
    weight: float = 1.0


@dataclass(frozen=True)
class Graph:
    name: str
    inputs: tuple[Input, ...]
    nodes: tuple[Node, ...]  # in topological order (data and control edges)
    variables: tuple[Variable, ...]
    outputs: tuple[str, ...]  # the model's outputs (the logits)
    losses: tuple[Loss, ...] = ()

    @cached_property
    def by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        return self.by_name[name]

    def type_of(self, ref: str) -> TensorType:
        name, index = split_ref(ref)
        for inp in self.inputs:
            if inp.name == name:
                return inp.type
        return self.by_name[name].outputs[index]

    def integer_input_ranges(self) -> dict[str, tuple[int, int]]:
        """For each integer value that labels a loss or indexes into something (gather's indices,
        token ids, sequence lengths): the [low, high) every user of it accepts."""
        ranges: dict[str, tuple[int, int]] = {}

        def narrow(name: str, low: int, high: int) -> None:
            if name in ranges:
                low, high = max(low, ranges[name][0]), min(high, ranges[name][1])
            ranges[name] = (low, max(high, low + 1))  # demands that cannot all be met still give a draw

        for loss in self.losses:
            node = self.node(loss.node)
            if len(node.inputs) > 1:
                narrow(node.inputs[1], 0, self.type_of(node.inputs[0]).shape[1] or 1)
        for node in self.nodes:
            op = layers.get(node.op)
            types = [self.type_of(r) for r in node.inputs]
            for index, ref in enumerate(node.inputs):
                known = op.integer_input_range(node.params, types, index) if types[index].dtype.startswith("int") else None
                if known is not None:
                    narrow(ref, *known)
        return ranges

    def float_input_ranges(self) -> dict[str, tuple[float, float]]:
        """For each float model input an op bounds (log_loss's probabilities): the [low, high] every such op accepts."""
        inputs = {i.name for i in self.inputs}
        intervals: dict[str, tuple[float, float]] = {}
        for node in self.nodes:
            op = layers.get(node.op)
            types = [self.type_of(r) for r in node.inputs]
            for index, ref in enumerate(node.inputs):
                known = op.float_input_range(node.params, types, index) if ref in inputs else None
                if known is not None:
                    low, high = intervals.get(ref, known)
                    intervals[ref] = (max(low, known[0]), min(high, known[1]))
        return intervals

    # --- serialisation ---------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": GRAPH_FORMAT,
            "version": GRAPH_VERSION,
            "name": self.name,
            "inputs": [{"name": i.name, "shape": list(i.type.shape), "dtype": i.type.dtype} for i in self.inputs],
            "nodes": [
                {
                    "name": n.name,
                    "op": n.op,
                    "attrs": n.attrs,
                    "inputs": list(n.inputs),
                    "control_inputs": list(n.control_inputs),
                    "scope": n.scope,
                    "device": n.device,
                    "outputs": [{"shape": list(t.shape), "dtype": t.dtype} for t in n.outputs],
                    "variables": n.variables,
                }
                for n in self.nodes
            ],
            "variables": [
                {
                    "name": v.name,
                    "shape": list(v.shape),
                    "dtype": v.dtype,
                    "trainable": v.trainable,
                    "initializer": v.initializer,
                    "fans": list(v.fans) if v.fans else None,
                    "regularizer": v.regularizer,
                }
                for v in self.variables
            ],
            "outputs": list(self.outputs),
            "losses": [{"node": l.node, "weight": l.weight} for l in self.losses],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @cached_property
    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict) -> Graph:
        if data.get("format") != GRAPH_FORMAT:
            raise ValueError(f"not a tfn graph definition (format {data.get('format')!r})")
        if data.get("version") != GRAPH_VERSION:
            raise ValueError(f"graph definition version {data.get('version')!r}; this tfn reads version {GRAPH_VERSION}")

        def ttype(d):
            return TensorType(tuple(d["shape"]), d["dtype"])

        return cls(
            name=data["name"],
            inputs=tuple(Input(i["name"], ttype(i)) for i in data["inputs"]),
            nodes=tuple(
                Node(
                    name=n["name"],
                    op=n["op"],
                    attrs=n["attrs"],
                    inputs=tuple(n["inputs"]),
                    control_inputs=tuple(n["control_inputs"]),
                    scope=n["scope"],
                    device=n["device"],
                    outputs=tuple(ttype(t) for t in n["outputs"]),
                    variables=dict(n["variables"]),
                )
                for n in data["nodes"]
            ),
            variables=tuple(
                Variable(
                    name=v["name"],
                    shape=tuple(v["shape"]),
                    trainable=v["trainable"],
                    initializer=v["initializer"],
                    dtype=v["dtype"],
                    fans=tuple(v["fans"]) if v["fans"] else None,
                    regularizer=v["regularizer"],
                )
                for v in data["variables"]
            ),
            outputs=tuple(data["outputs"]),
            losses=tuple(Loss(l["node"], l["weight"]) for l in data["losses"]),
        )

    @classmethod
    def from_json(cls, text: str) -> Graph:
        graph = cls.from_dict(json.loads(text))
        graph.check()
        return graph

    def check(self) -> None:
        """ValueError unless the graph is consistent: known ops, each edge from an
        input or an earlier node's existing output, each variable declared once."""
        known_ops = layers.all_ops()
        outputs = {i.name: 1 for i in self.inputs}
        variables = {v.name for v in self.variables}
        if len(variables) != len(self.variables):
            raise ValueError("a variable is declared twice")
        for node in self.nodes:
            if node.op not in known_ops:
                raise ValueError(f"node {node.name!r}: unknown op {node.op!r} (a graph from another tfn version?)")
            if node.name in outputs:
                raise ValueError(f"node {node.name!r} is defined twice")
            for ref in node.inputs + node.control_inputs:
                name, index = split_ref(ref)
                if name not in outputs or index >= outputs[name]:
                    raise ValueError(f"node {node.name!r}: input {ref!r} is not an output of an input or an earlier node")
            missing = [v for v in node.variables.values() if v not in variables]
            if missing:
                raise ValueError(f"node {node.name!r}: variable {missing[0]!r} is not declared")
            outputs[node.name] = len(node.outputs)
        for ref in self.outputs + tuple(loss.node for loss in self.losses):
            name, index = split_ref(ref)
            if name not in outputs or index >= outputs[name]:
                raise ValueError(f"output {ref!r} is not a node's output")

    # --- summaries -------------------------------------------------------------

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, non-trainable) element counts."""
        import math

        trainable = sum(math.prod(v.shape) for v in self.variables if v.trainable)
        return trainable, sum(math.prod(v.shape) for v in self.variables) - trainable

    def node_flops(self, node: Node) -> int:
        op = layers.get(node.op)
        return op.flops(node.params, [self.type_of(r) for r in node.inputs], node.outputs)
