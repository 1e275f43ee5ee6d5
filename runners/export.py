"""Export a graph: ONNX (with weights), a picture through Graphviz, a TensorBoard graph log.

graph.json itself is :meth:`tfn.specs.graph.Graph.to_json`. The picture and
the TensorBoard log need no torch; ONNX goes through torch's exporter
(torch.export, opset 18) with a dynamic batch dimension.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from tfn.layers import TensorType
from tfn.runners.files import atomic_write
from tfn.specs.errors import UserError
from tfn.specs.graph import Graph, Node, split_ref

ONNX_OPSET = 18
PICTURE_FORMATS = ("svg", "png")


class ExportError(UserError):
    """The graph cannot be written in the asked format (an op without an ONNX form, no Graphviz)."""


# --- ONNX --------------------------------------------------------------------


def onnx_bytes(model, *, checkpoint_step: str | None = None) -> bytes:
    """The model's outputs as an ONNX model (weights embedded as initializers), batch dimension dynamic.

    Only the inputs the outputs need become ONNX inputs (labels do not);
    random ops are exported in evaluation mode (dropout is the identity). An
    op that torch cannot export raises ExportError naming the node and op.
    The inputs take the tensors the graph's inputs take; the model's
    preprocessing record (how image files, CSV rows and raw arrays become them:
    sizes, vocabularies, normalisation statistics) is the metadata
    property `tfn.preprocessing`, the JSON of preprocessing.json.
    """
    graph = model.graph
    outputs = list(graph.outputs)
    from tfn.runners.session import inputs_needed

    needed = inputs_needed(model, outputs)
    inputs = [i.name for i in graph.inputs if i.name in needed]
    was_training = model.training
    model.eval()
    try:
        program = _torch_export(model, inputs, outputs)
    except ExportError:
        raise
    except Exception as exc:  # the exporter's own errors: find the node to blame
        culprit = _first_unexportable(model, outputs)
        reason = _first_line(exc)
        if culprit is None:
            raise ExportError(f"{graph.name}: error: torch's ONNX exporter failed: {reason}") from None
        node, node_reason = culprit
        raise ExportError(
            f"{graph.name}: error: node {node.name!r} (op {node.op}) has no ONNX form: {node_reason}; "
            "ONNX export covers graphs whose every op torch can export"
        ) from None
    finally:
        model.train(was_training)
    proto = program.model_proto
    proto.producer_name = "tfn"
    proto.doc_string = f"tfn graph {graph.name!r}"
    # the ONNX inputs are the graph's input tensors; how files become them is stated, not baked in
    record = json.dumps(model.preprocessing.to_json(), sort_keys=True)
    metadata = (("tfn.graph_name", graph.name), ("tfn.graph_hash", graph.hash), ("tfn.checkpoint_step", checkpoint_step), ("tfn.preprocessing", record))
    for key, value in metadata:
        if value is not None:
            proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()


def _torch_export(module, inputs: list[str], outputs: list[str], types: dict[str, TensorType] | None = None):
    """torch.onnx.export of `module(feeds, fetches)` seen as a function of the named inputs."""
    import torch

    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it: say so before torch fails less clearly)
    except ImportError:
        raise ExportError("--format onnx: error: ONNX export needs the onnx extra: pip install 'tfn[onnx]'") from None

    from tfn.layers.onnx_nodes import translation_table

    graph = module.graph
    types = types or {name: graph.type_of(name) for name in inputs}
    batch = torch.export.Dim("batch", min=1)
    device = next((t.device for t in module.variables().values()), torch.device("cpu"))

    class Feeds(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.graph_module = module

        def forward(self, *xs):
            # as written: the variables stay initializers under their graph names for `tfn import`
            # (onnxruntime folds batch norm into its conv itself), and no layout copies are traced
            values = self.graph_module(dict(zip(inputs, xs)), outputs, as_written=True)
            return tuple(values[name] for name in outputs)

    examples, dynamic = [], []
    for name in inputs:
        t = types[name]
        # a batch of 2: torch.export would specialise a batch of 1 to a constant
        shape = [2 if d is None else d for d in t.shape]
        examples.append(torch.zeros(shape, dtype=getattr(torch, t.dtype), device=device))
        dynamic.append({0: batch} if t.shape and t.shape[0] is None else {})
    wrapper = Feeds().eval()
    with _quiet_exporter():
        return torch.onnx.export(
            wrapper,
            tuple(examples),
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes={"xs": tuple(dynamic)},
            verbose=False,
            # the optimizer folds constants into others (a zero bias vanishes, BN merges into its conv):
            # every variable stays an initializer under its graph name, so `tfn import` gets the model back
            optimize=False,
            # the ops ONNX has as one node (LRN, Resize) are written as that node: layers/onnx_nodes.py
            custom_translation_table=translation_table(ONNX_OPSET),
        )


def _first_unexportable(model, outputs) -> tuple[Node, str] | None:
    """The first node, in graph order, that torch cannot export on its own, and why.

    One node per op is tried (an error path, but a large graph has many nodes
    of few ops); a node of an op already exported is taken as exportable.
    """
    graph = model.graph
    exported_ops: set[str] = set()
    for step in model.plan(outputs, {i.name for i in graph.inputs}):
        node = graph.node(step.name)
        if node.op in exported_ops:
            continue
        refs = list(dict.fromkeys(node.inputs))
        try:
            _torch_export(model, refs, [node.name], {r: graph.type_of(r) for r in refs})
        except ExportError:
            raise
        except Exception as exc:
            return node, _first_line(exc)
        exported_ops.add(node.op)
    return None


def _first_line(exc: BaseException) -> str:
    """The exporter's messages run to pages: keep the summary line."""
    text = str(exc)
    marker = "## Exception summary"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = re.sub(r"^<class '[\w.]+'>:\s*", "", lines[0]) if lines else type(exc).__name__
    return line[:300]


@contextmanager
def _quiet_exporter():
    """torch's exporter logs and warns about things that are not the user's business."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "torch._export", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        # on failure torch.export prints the partial graph's code to stderr; tfn names the node instead
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            # raised inside torch's own pytree code on 2.13, not by anything tfn passes
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
            # several inputs share the one batch dimension, which is what tfn asks for
            warnings.filterwarnings("ignore", message=r"# The axis name: batch will not be used", category=UserWarning)
            # raised inside torch.export's own rewriting of an LSTM into a loop (torch/export/_patches.py), not by tfn's code
            warnings.filterwarnings("ignore", message=r"The \.grad attribute of a Tensor that is not a leaf Tensor is being accessed", category=UserWarning)
            warnings.filterwarnings("ignore", message=r"_check_is_size will be removed in a future PyTorch release", category=FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# --- pictures ----------------------------------------------------------------


def to_dot(graph: Graph) -> str:
    """The graph in Graphviz's DOT language.

    Inputs are ellipses, ops boxes (outputs drawn double, losses in red);
    data edges are solid and labelled with the shape they carry; control
    edges (`after:`) are dashed and unlabelled; name scopes are grey
    clusters, nested as the scopes are.
    """
    lines = [
        f"digraph {_quote(graph.name)} {{",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, labeljust=l];',
        '  node [shape=box, style="rounded,filled", fillcolor="#e8eef9", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, color="#444444"];',
    ]
    for inp in graph.inputs:
        label = _quote(f"{inp.name}\n{inp.type}")
        lines.append(f'  {_quote(inp.name)} [shape=ellipse, fillcolor="#fdf0d0", label={label}];')
    losses = {loss.node for loss in graph.losses}
    outputs = {split_ref(o)[0] for o in graph.outputs}
    tree: dict = {"nodes": [], "scopes": {}}
    for node in graph.nodes:
        branch = tree
        for part in node.scope.split("/") if node.scope else []:
            branch = branch["scopes"].setdefault(part, {"nodes": [], "scopes": {}})
        branch["nodes"].append(node)
    lines += _dot_scope(tree, "", losses, outputs, "  ")
    for node in graph.nodes:
        for ref in node.inputs:
            source, index = split_ref(ref)
            label = str(graph.type_of(ref)) + (f" (:{index})" if index else "")
            lines.append(f"  {_quote(source)} -> {_quote(node.name)} [label={_quote(label)}];")
        for ref in node.control_inputs:
            lines.append(f'  {_quote(split_ref(ref)[0])} -> {_quote(node.name)} [style=dashed, color="#888888", arrowhead=odot];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_scope(branch: dict, prefix: str, losses: set, outputs: set, indent: str) -> list[str]:
    lines = []
    for node in branch["nodes"]:
        short = node.name.rsplit("/", 1)[-1]
        label = _quote(f"{short}\n{node.op}")
        attrs = [f"label={label}"]
        if node.name in losses:
            attrs.append('fillcolor="#f9dede"')
        if node.name in outputs:
            attrs.append("peripheries=2")
        if node.device:
            attrs.append(f"xlabel={_quote('@' + node.device)}")
        lines.append(f"{indent}{_quote(node.name)} [{', '.join(attrs)}];")
    for name, sub in branch["scopes"].items():
        scope = f"{prefix}{name}"
        lines.append(f"{indent}subgraph {_quote('cluster_' + scope)} {{")
        lines.append(f'{indent}  label={_quote(scope)}; style="rounded,filled"; fillcolor="#f4f6fa"; color="#9aa7bd";')
        lines += _dot_scope(sub, scope + "/", losses, outputs, indent + "  ")
        lines.append(f"{indent}}}")
    return lines


def _quote(text: str) -> str:
    """A DOT string: quotes and backslashes escaped, line breaks as DOT's \\n."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render(dot: str, fmt: str) -> bytes:
    """Render DOT text to svg or png with Graphviz's `dot` program."""
    if fmt not in PICTURE_FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {PICTURE_FORMATS}")
    program = shutil.which("dot")
    if program is None:
        raise ExportError(
            f"--format {fmt}: error: drawing needs Graphviz's `dot` program, which is not on PATH; install Graphviz "
            "(apt-get install graphviz, brew install graphviz, conda install graphviz) or write --format dot and render it elsewhere"
        )
    result = subprocess.run([program, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=False)
    if result.returncode != 0:
        raise ExportError(f"--format {fmt}: error: Graphviz failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


# --- TensorBoard -------------------------------------------------------------


def tensorboard_events(graph: Graph, wall_time: float | None = None) -> bytes:
    """An event file holding the graph's GraphDef: what the Graphs tab reads (the training run writes the same)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    from tfn.runners.summaries import graph_def

    wall_time = time.time() if wall_time is None else wall_time
    buffer = io.BytesIO()
    writer = RecordWriter(buffer)
    writer.write(event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2").SerializeToString())
    writer.write(event_pb2.Event(wall_time=wall_time, step=0, graph_def=graph_def(graph).SerializeToString()).SerializeToString())
    return buffer.getvalue()


def write_tensorboard(graph: Graph, logdir: str | Path) -> Path:
    """Write the graph event file into `logdir` (created if needed); returns the file's path."""
    logdir = Path(logdir)
    if logdir.exists() and not logdir.is_dir():
        raise ExportError(f"{logdir}: error: --format tensorboard writes a log directory, and this is a file")
    logdir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    path = logdir / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.graph"
    atomic_write(path, tensorboard_events(graph, now))
    return path
