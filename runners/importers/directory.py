"""An imported model as a model directory: spec.yaml, graph.json, checkpoints/, import.json.

The directory has the shape of a run directory (DESIGN.md, "Model
directories"), so every verb that takes a run takes it: the spec is a
complete, valid spec whose nodes carry the original layer names, and the
checkpoint's keys are the graph's variable names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from tfn import layers
from tfn.layers import TensorType
from tfn.layers import imports as im
from tfn.runners.importers.build import Builder, ImportFailed, Node, Tensor

IMPORT_FORMAT = "tfn.import"
#: Keras's losses in the order a default is tried when the file saved none: the first whose
#: output activation matches the model's last op (softmax, sigmoid), else a regression loss
DEFAULT_LOSSES = ("sparse_categorical_crossentropy", "binary_crossentropy", "mean_squared_error")


@dataclass
class Loss:
    op: str
    logits: str  # a tfn ref
    attrs: dict = field(default_factory=dict)
    source: str = ""  # what the file said, for import.json and the spec's comment


@dataclass
class Optimizer:
    settings: dict  # the spec's optimizer section
    source: str = ""


@dataclass
class Imported:
    """Everything a reader found, ready to be written."""

    name: str
    source: Path
    format: str  # keras3, tf_keras_h5, tf_graphdef, tf1_checkpoint, onnx
    version: dict  # the versions the file names (keras, tensorflow, opset, producer)
    builder: Builder
    outputs: list[str]  # tfn refs of the model's outputs, in the source's order
    output_names: list[str]  # the source's names of those outputs
    losses: list[Loss]
    optimizer: Optimizer | None
    preprocessing: dict | None = None  # the preprocessing the file records, as contract 1's fields
    notes: list[str] = field(default_factory=list)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_losses(builder: Builder, outputs: list[str]) -> list[Loss]:
    """A loss per output, chosen from the output's last op: classification after a softmax/sigmoid, else squared error."""
    table = im.rules("keras_loss")
    nodes = {n.name: n for n in builder.nodes}
    losses = []
    for ref in outputs:
        node = nodes.get(ref)
        for kind in DEFAULT_LOSSES:
            op, rule = table[kind]
            emitted = rule.convert(im.Foreign("keras_loss", kind, kind, {}, ()))
            if emitted.logits_before is None or (node is not None and node.op == emitted.logits_before):
                logits = node.inputs[0] if emitted.logits_before else ref
                losses.append(Loss(op, logits, source=f"default ({kind} after a {node.op if node else 'model input'})"))
                break
    return losses


def loss_from_keras(builder: Builder, kind: str, config: dict, output: str) -> Loss:
    """A Keras loss by name and config, on one output; ImportFailed when tfn has no such loss."""
    table = im.rules("keras_loss")
    if kind not in table:
        raise ImportFailed(f"error: the model was compiled with loss {kind!r}, which tfn does not map; known: {', '.join(table)}")
    op, rule = table[kind]
    try:
        emitted = rule.convert(im.Foreign("keras_loss", kind, kind, config, ()))
    except im.NoMapping as exc:
        raise ImportFailed(f"error: loss {kind!r}: {exc}") from None
    logits = output
    if emitted.logits_before:
        node = next((n for n in builder.nodes if n.name == output), None)
        if node is None or node.op != emitted.logits_before:
            raise ImportFailed(
                f"error: loss {kind!r} takes the probabilities of a {emitted.logits_before}, but output {output!r} is not one; "
                "tfn's losses take logits"
            )
        logits = node.inputs[0]
    return Loss(op, logits, dict(emitted.attrs), source=kind)


# --- spec.yaml -------------------------------------------------------------------


def _short(value):
    """Floats as the shortest text that reads back as the same float32 (Keras stores float32 in float64)."""
    if isinstance(value, float):
        return float(str(np.float32(value)))
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short(v) for v in value]
    return value


def _flow(mapping: dict) -> str:
    return yaml.safe_dump(_short(mapping), default_flow_style=True, sort_keys=False, width=10_000).strip()


def _relative(ref: str, scope: str, known: set[str]) -> str:
    """The shortest way to write `ref` from inside `scope` that the compiler resolves back to it."""
    name, _, index = ref.partition(":")
    suffix = f":{index}" if index else ""
    parts = scope.split("/") if scope else []
    options = [name[len(scope) + 1 :]] if scope and name.startswith(scope + "/") else []
    options.append(name)
    for option in options:
        # the compiler tries scope/option, then each enclosing scope, then option itself
        candidates = ["/".join(parts[:k] + [option]) for k in range(len(parts), -1, -1)]
        if next((c for c in candidates if c in known), None) == name:
            return option + suffix
    return "/" + name + suffix


def spec_text(imported: Imported) -> str:
    builder = imported.builder
    known = set(builder.inputs) | {n.name for n in builder.nodes}
    lines = [
        f"# Imported by `tfn import` from {imported.source.name} ({imported.format}; {_versions(imported.version)}).",
        "# Node names are the original layer names; import.json records what became what.",
        "version: 1",
        f"name: {imported.name}",
        "model:",
        "  inputs:",
    ]
    for name, t in builder.inputs.items():
        lines.append(f"    {name}: {_flow({'shape': list(t.sample_shape)} | ({} if t.dtype == 'float32' else {'dtype': t.dtype}))}")
    lines.append("  layers:")
    lines += _layer_lines(builder.nodes, known)
    lines += _loss_lines(imported)
    lines += _optimizer_lines(imported)
    lines += _data_lines(imported)
    lines.append("train: {epochs: 10, seed: 0}")
    return "\n".join(lines) + "\n"


def _versions(version: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in version.items()) or "version not recorded"


def _layer_lines(nodes: list[Node], known: set[str]) -> list[str]:
    lines: list[str] = []
    open_scopes: list[str] = []
    previous: str | None = None
    for node in nodes:
        parts = node.scope.split("/") if node.scope else []
        common = 0
        while common < min(len(parts), len(open_scopes)) and parts[common] == open_scopes[common]:
            common += 1
        open_scopes = open_scopes[:common]
        for part in parts[common:]:
            indent = "    " + "    " * len(open_scopes)
            lines.append(f"{indent}- scope: {part}")
            lines.append(f"{indent}  layers:")
            open_scopes.append(part)
        entry = {"name": node.name.rsplit("/", 1)[-1], "op": node.op, **node.attrs}
        if not (len(node.inputs) == 1 and node.inputs[0] == previous):
            entry["inputs"] = [_relative(r, node.scope, known) for r in node.inputs]
        if node.share:
            entry["share"] = _relative(node.share, node.scope, known)
        lines.append("    " + "    " * len(open_scopes) + "- " + _flow(entry))
        previous = node.name
    return lines


def _loss_lines(imported: Imported) -> list[str]:
    known = set(imported.builder.inputs) | {n.name for n in imported.builder.nodes}
    saved = all(not loss.source.startswith("default") for loss in imported.losses)
    lines = [] if saved else ["# No loss was saved with the model: a default from the output's activation. Edit to fit your task."]
    entries = []
    for loss, labels in zip(imported.losses, label_fields(imported)):
        entry = {"op": loss.op, "logits": _relative(loss.logits, "", known), "labels": labels, **loss.attrs}
        entries.append(entry)
    if len(entries) == 1:
        lines.append(f"loss: {_flow(entries[0])}")
    else:
        lines.append("loss:")
        lines += [f"  - {_flow(e)}" for e in entries]
    return lines


def label_fields(imported: Imported) -> list[str]:
    """The data field of each loss's labels: `label` for the first class-index labels (the synthetic
    source's generated field), then label_1, ...; `target`, target_1, ... for float labels."""
    names: list[str] = []
    for t in label_types(imported):
        stem = "label" if t.dtype.startswith("int") else "target"
        count = sum(n == stem or n.startswith(stem + "_") for n in names)
        names.append(stem if count == 0 else f"{stem}_{count}")
    return names


def _optimizer_lines(imported: Imported) -> list[str]:
    if imported.optimizer is None:
        return ["# No optimizer was saved with the model: Adam with TF's defaults. Edit to fit your task.", "optimizer: {type: adam, learning_rate: 0.001}"]
    return [f"optimizer: {_flow(imported.optimizer.settings)}    # from the saved {imported.optimizer.source}"]


def label_types(imported: Imported) -> list[TensorType]:
    builder = imported.builder
    types = {t.ref: t.type for t in builder.tensors.values()}
    out = []
    for loss in imported.losses:
        op = layers.get(loss.op)
        out.append(op.label_type(op.Params.model_validate(loss.attrs), types[loss.logits]))
    return out


def _data_lines(imported: Imported) -> list[str]:
    """Synthetic data of the inputs' shapes: the model trains as it is, until the user points it at data."""
    fields: dict = {}
    classes = 2
    for name, t in imported.builder.inputs.items():
        fields[name] = {"shape": list(t.sample_shape)} | ({} if t.dtype == "float32" else {"dtype": t.dtype})
    types = {tt.ref: tt.type for tt in imported.builder.tensors.values()}
    for loss, t, name in zip(imported.losses, label_types(imported), label_fields(imported)):
        logits = types[loss.logits]
        if name == "label" and t.rank == 1:
            classes = int(logits.shape[1])
        elif t.dtype.startswith("int"):
            fields[name] = {"shape": list(t.sample_shape) or [1], "dtype": "int64", "high": int(logits.shape[1])}
        else:
            fields[name] = {"shape": list(t.sample_shape)}
    data = {"source": "synthetic", "classes": classes, "fields": fields, "batch_size": 32}
    return ["# Synthetic data of the inputs' shapes, so that the spec runs as it is: point it at your data.", f"data: {_flow(data)}"]


# --- the directory -------------------------------------------------------------------


def write(imported: Imported, out: Path) -> dict:
    """Write the model directory; returns import.json's content. The spec is compiled first: a bad import never lands."""
    import torch

    from tfn.runners.checkpoint import CheckpointManager
    from tfn.runners.files import atomic_write, prepare_out_dir, write_json
    from tfn.specs import load

    text = spec_text(imported)
    out = prepare_out_dir(out)
    spec_path = out / "spec.yaml"
    atomic_write(spec_path, text)
    graph = load(spec_path).graph
    atomic_write(out / "graph.json", graph.to_json())
    tensors = {}
    for node in graph.nodes:
        for role, variable in node.variables.items():
            if variable.startswith(node.name + "/") and node.name in imported.builder.weights:
                tensors[variable] = torch.from_numpy(imported.builder.weights[node.name][role])
    expected = {v.name for v in graph.variables}
    missing = sorted(expected - set(tensors))
    if missing:
        raise ImportFailed(f"{imported.source}: error: no weights found for {', '.join(missing)}")
    CheckpointManager(out / "checkpoints", keep=1).save(tensors, {}, {"imported_from": str(imported.source)}, step=0, epoch=0, graph_hash=graph.hash)
    trainable, frozen = graph.parameter_counts()
    record = {
        "format": IMPORT_FORMAT,
        "version": 1,
        "source": {"file": str(imported.source.resolve()), "format": imported.format, "versions": imported.version, "sha256": sha256(imported.source)},
        "outputs": dict(zip(imported.output_names, imported.outputs)),
        "losses": [{"op": loss.op, "logits": loss.logits, "from": loss.source} for loss in imported.losses],
        "optimizer": imported.optimizer.source if imported.optimizer else None,
        "parameters": {"trainable": trainable, "non_trainable": frozen},
        "mapped": imported.builder.records,
        "preprocessing": imported.preprocessing,
        "notes": imported.notes,
    }
    write_json(out / "import.json", record)
    write_preprocessing(out, imported.preprocessing)
    return record


def write_preprocessing(out: Path, fields: dict | None) -> None:
    """preprocessing.json, as a run has one: the steps the source file records, none when it records none
    (Keras, TF and ONNX files keep preprocessing in the model's own layers, or nowhere)."""
    from tfn.runners.preprocessing import FILE, Preprocessing

    if fields:
        from tfn.runners.files import write_json

        write_json(out / FILE, {"format": "tfn.preprocessing", "version": 1, "fields": fields})
        Preprocessing.read(out / FILE)  # a record tfn could not read back is a bug here, not the user's
    else:
        Preprocessing({}, "the imported file").write(out)


def output_tensor(builder: Builder, tensor: str) -> Tensor:
    return builder.tensors[tensor]
