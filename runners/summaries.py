"""TensorBoard output: scalars through torch.utils.tensorboard, and the graph.

The Graphs tab gets a GraphDef built from the graph IR, not a trace: name
scopes, variables and control edges come out as the spec declared them.
"""

from __future__ import annotations

import time
from pathlib import Path

from tfn.specs.graph import Graph, split_ref


def graph_def(graph: Graph):
    """The graph IR as a TensorFlow GraphDef (TensorBoard's own protobufs)."""
    from tensorboard.compat.proto import attr_value_pb2, graph_pb2, node_def_pb2, tensor_shape_pb2, versions_pb2

    def shape_proto(shape):
        return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=-1 if d is None else d) for d in shape])

    def shapes_attr(shapes):
        return attr_value_pb2.AttrValue(list=attr_value_pb2.AttrValue.ListValue(shape=[shape_proto(s) for s in shapes]))

    def text(value) -> attr_value_pb2.AttrValue:
        return attr_value_pb2.AttrValue(s=str(value).encode())

    nodes = []
    for inp in graph.inputs:
        nodes.append(
            node_def_pb2.NodeDef(
                name=inp.name,
                op="Placeholder",
                attr={"dtype": text(inp.type.dtype), "_output_shapes": shapes_attr([inp.type.shape])},
            )
        )
    for v in graph.variables:
        nodes.append(
            node_def_pb2.NodeDef(
                name=v.name,
                op="VariableV2",
                attr={"dtype": text(v.dtype), "trainable": attr_value_pb2.AttrValue(b=v.trainable), "_output_shapes": shapes_attr([v.shape])},
            )
        )
    for n in graph.nodes:
        inputs = [_tensor_name(r) for r in n.inputs] + list(n.variables.values()) + [f"^{c}" for c in n.control_inputs]
        attr = {k: text(v) for k, v in sorted(n.attrs.items())}
        attr["_output_shapes"] = shapes_attr([t.shape for t in n.outputs])
        nodes.append(node_def_pb2.NodeDef(name=n.name, op=n.op, input=inputs, device=n.device or "", attr=attr))
    return graph_pb2.GraphDef(node=nodes, versions=versions_pb2.VersionDef(producer=1))


def _tensor_name(ref: str) -> str:
    name, index = split_ref(ref)
    return name if index == 0 else f"{name}:{index}"


class Summaries:
    """One SummaryWriter per split (train/, validation/), as TF's FileWriters."""

    def __init__(self, run_dir: Path, graph: Graph | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writers = {split: SummaryWriter(str(run_dir / split)) for split in ("train", "validation")}
        if graph is not None:
            write_graph(self.writers["train"], graph)

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writers[split].add_scalar(tag, value, step)

    def flush(self) -> None:
        for w in self.writers.values():
            w.flush()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def write_graph(writer, graph: Graph) -> None:
    from tensorboard.compat.proto import event_pb2

    event = event_pb2.Event(wall_time=time.time(), graph_def=graph_def(graph).SerializeToString())
    writer.file_writer.add_event(event)
