"""Keras models: Keras 3 `.keras` (a zip of config.json and model.weights.h5) and tf.keras `.h5`.

Read with json and h5py; nothing in the file runs. Sequential and
functional models, models nested as layers (their names become tfn scopes),
shared layers (a second call shares the first call's variables) and several
inputs and outputs. A layer's `activation` becomes a node of its own after
the layer (`dense_1` then `dense_1_softmax`), so the layer keeps its name
and its variables keep Keras's names.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfn.layers import TensorType
from tfn.layers.imports import NoMapping
from tfn.runners.importers.build import Builder, ImportFailed, Layer, Unmapped, unmappable_error
from tfn.runners.importers.directory import Imported, Loss, Optimizer, default_losses, loss_from_keras

#: layer classes that are models (their config holds layers)
MODEL_CLASSES = ("Sequential", "Functional", "Model")
_LOSS_ALIASES = {"mse": "mean_squared_error", "MeanSquaredError": "mean_squared_error"}


def read_file(path: Path):
    """(config dict, weights reader, format, versions, training config or None) of a .keras or .h5 file."""
    import h5py

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if "config.json" not in names or "model.weights.h5" not in names:
                    raise ImportFailed(f"{path}: error: a zip without config.json and model.weights.h5 is not a Keras 3 .keras file")
                config = json.loads(archive.read("config.json"))
                metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
                weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
            versions = {"keras": metadata.get("keras_version", "unknown")}
            return config, Keras3Weights(weights), "keras3", versions, config.get("compile_config") or None
        handle = h5py.File(path, "r")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ImportFailed(f"{path}: error: not a readable Keras file: {exc}") from None
    if "model_config" not in handle.attrs:
        raise ImportFailed(f"{path}: error: an HDF5 file without model_config: weights alone (save_weights) hold no model; save the whole model")
    config = json.loads(_text(handle.attrs["model_config"]))
    versions = {"keras": _text(handle.attrs.get("keras_version", "unknown")), "backend": _text(handle.attrs.get("backend", "unknown"))}
    training = json.loads(_text(handle.attrs["training_config"])) if "training_config" in handle.attrs else None
    group = handle["model_weights"] if "model_weights" in handle else handle
    return config, H5Weights(group), "tf_keras_h5", versions, training


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Keras3Weights:
    """model.weights.h5 of a .keras file: groups by object path, `vars/N` in the layer's weight order."""

    def __init__(self, root):
        self.root = root

    def layer(self, path: list[str]) -> list[np.ndarray]:
        group = self.root
        for name in path:
            group = _child_named(group, name)
            if group is None:
                return []
        return _collect(group)


def _child_named(group, name: str):
    """The sub-group of `group`'s layers whose vars are named `name` (Keras 3 names groups by class)."""
    layers = group.get("layers")
    if layers is None:
        return None
    for child in layers.values():
        vars_ = child.get("vars")
        if vars_ is not None and _text(vars_.attrs.get("name", "")) == name:
            return child
    return None


def _collect(group) -> list[np.ndarray]:
    """A layer's weights in Keras's order: its own vars, then its sub-objects' (forward before backward)."""
    out = []
    vars_ = group.get("vars")
    if vars_ is not None:
        out += [np.asarray(vars_[k]) for k in sorted(vars_, key=int)]
    others = [k for k in group if k not in ("vars", "layers")]
    others.sort(key=lambda k: (0 if k.startswith("forward") else 1 if k.startswith("backward") else 2, k))
    for k in others:
        out += _collect(group[k])
    return out


class H5Weights:
    """tf.keras .h5: model_weights/<layer>/ with weight_names in the layer's order."""

    def __init__(self, root):
        self.root = root

    def layer(self, path: list[str]) -> list[np.ndarray]:
        group = self.root.get(path[0])
        if group is None:
            return []
        names = [_text(n) for n in group.attrs.get("weight_names", [])]
        if len(path) > 1:  # a layer inside a nested model: its weights are named after it
            names = [n for n in names if n.split("/")[0] == path[-1] or f"/{path[-1]}/" in f"/{n}"]
        return [np.asarray(group[n]) for n in names]


# --- the model graph -------------------------------------------------------------


@dataclass
class Call:
    """One call of a layer inside a model: its inputs as (layer, node, tensor) of that model."""

    layer: dict
    index: int
    inputs: list[tuple[str, int, int]]


@dataclass
class Reader:
    path: Path
    weights: object
    builder: Builder
    # each layer's (scope, layer name) -> the tfn node of its first call, which later calls share
    built: dict = field(default_factory=dict)
    # a model-local tensor -> the tensor it stands for (a nested model's inputs and outputs)
    aliases: dict = field(default_factory=dict)
    #: activations that changed between Keras 2 and 3 (hard_sigmoid's slope) read it
    keras_major: int = 2
    #: a model input's tensor, or what preprocessing layers made of it -> the tfn input
    at_input: dict = field(default_factory=dict)
    #: each tfn input's preprocessing, from its Rescaling / Normalization layers: [(layer name, class, steps)]
    preprocessing: dict = field(default_factory=dict)
    #: a tensor -> the layers that read it (a preprocessed input must feed its preprocessing only)
    readers: dict = field(default_factory=dict)

    def model(self, config: dict, scope: list[str], inputs: list[str] | None) -> list[str]:
        """Add a model's layers; returns its output tensors. `inputs` are the tensors a nested model is called on."""
        kind = config["class_name"]
        body = config["config"]
        if kind == "Sequential":
            return self.sequential(body, scope, inputs)
        return self.functional(body, scope, inputs)

    def sequential(self, body: dict, scope: list[str], inputs: list[str] | None) -> list[str]:
        entries = list(body["layers"])
        if entries and entries[0]["class_name"] == "InputLayer":
            first = entries.pop(0)["config"]
        else:
            shape = body.get("build_input_shape") or (entries[0]["config"].get("batch_input_shape") if entries else None)
            if shape is None:
                raise ImportFailed(f"{self.path}: error: Sequential model {body.get('name')!r} has no input shape (it was never built)")
            first = {"name": f"{entries[0]['config']['name']}_input", "batch_shape": shape, "dtype": "float32"}
        if inputs is None:
            tensor = self.input(first, scope)
        else:
            tensor = inputs[0]
        for entry in entries:
            tensor = self.call(entry, scope, [tensor], tensor_id(scope, entry["config"]["name"], 0, 0))[0]
        return [tensor]

    def input(self, config: dict, scope: list[str]) -> str:
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        dtype = str(config.get("dtype") or "float32")
        tensor = tensor_id(scope, config["name"], 0, 0)
        self.at_input[tensor] = self.builder.add_input(tensor, config["name"], TensorType((None, *channels_first(shape[1:])), _dtype(dtype)))
        return tensor

    def functional(self, body: dict, scope: list[str], inputs: list[str] | None) -> list[str]:
        entries = {e["name"]: e for e in body["layers"]}
        declared_inputs = _refs(body.get("input_layers"))
        calls: list[Call] = []
        for entry in body["layers"]:
            if entry["class_name"] == "InputLayer":
                continue
            for index, node in enumerate(entry.get("inbound_nodes", [])):
                calls.append(Call(entry, index, _node_inputs(node)))
        for i, (name, node, t) in enumerate(declared_inputs):
            tensor = tensor_id(scope, name, node, t)
            if inputs is None:
                self.input(entries[name]["config"], scope)
            else:
                self.builder.alias(tensor, inputs[i])
                self.aliases[tensor] = inputs[i]
        done: set[tuple[str, int]] = set()
        ready = {tensor_id(scope, *ref) for ref in declared_inputs}
        while len(done) < len(calls):
            progressed = False
            for call in calls:
                key = (call.layer["name"], call.index)
                if key in done or not all(tensor_id(scope, *ref) in ready for ref in call.inputs):
                    continue
                outs = self.call(call.layer, scope, [self.resolve(tensor_id(scope, *ref)) for ref in call.inputs], tensor_id(scope, call.layer["name"], call.index, 0), call.index)
                for t, out in enumerate(outs):
                    produced = tensor_id(scope, call.layer["name"], call.index, t)
                    ready.add(produced)
                    if out != produced:
                        self.aliases[produced] = out
                done.add(key)
                progressed = True
            if not progressed:
                missing = [c.layer["name"] for c in calls if (c.layer["name"], c.index) not in done]
                raise ImportFailed(f"{self.path}: error: layers {', '.join(missing)} take inputs no layer of the model makes")
        return [self.resolve(tensor_id(scope, *ref)) for ref in _refs(body.get("output_layers"))]

    def resolve(self, tensor: str) -> str:
        while tensor in self.aliases:
            tensor = self.aliases[tensor]
        return tensor

    def call(self, entry: dict, scope: list[str], inputs: list[str], output: str, index: int = 0) -> list[str]:
        """Add one call of a layer; returns the tensors it makes (after its activation)."""
        kind, config = entry["class_name"], entry["config"]
        name = config.get("name") or entry.get("name")
        where = f"in model {'/'.join(scope) or 'the top level'}" if scope else "top level"
        if kind in MODEL_CLASSES:
            return self.model(entry, scope + [name], inputs)
        if entry.get("registered_name") and not str(entry.get("module") or "").startswith("keras"):
            self.builder.unmapped(Unmapped(name, entry["registered_name"], where, "a custom layer (its code is not in the file)"))
            return [output]
        for tensor in inputs:
            self.readers.setdefault(tensor, []).append(name)
        if kind in PREPROCESSING:
            self.preprocess(kind, name, config, scope, inputs, output, where)
            return [output]
        key = ("/".join(scope), name)
        shared = self.built.get(key) if index > 0 else None
        layer = Layer(
            name,
            kind,
            "keras",
            config,
            inputs,
            [output if not _activation(config) else output + "#linear"],
            scope="/".join(scope),
            share=shared,
            where=where,
        )
        if kind == "Activation":
            layer.framework, layer.kind = "keras_activation", _activation_name(config.get("activation"))
            layer.attrs = {**_activation_config(config.get("activation")), "keras_major": self.keras_major}
            layer.outputs = [output]
        else:  # a shared call's rule reads them too (the sizes); only the first call's are stored
            layer.weights = self.weights.layer(scope + [name])
        node = self.builder.add(layer)
        if node is not None and index == 0:
            self.built[key] = node.name
        activation = _activation(config) if kind != "Activation" else None
        if activation:
            attrs = {**_activation_config(config.get("activation")), "keras_major": self.keras_major}
            act = Layer(f"{name}_{activation}", activation, "keras_activation", attrs, layer.outputs, [output], scope="/".join(scope), where=f"activation of {kind} {name!r}")
            if node is not None:
                act.node = node.name.rsplit("/", 1)[-1] + f"_{activation}"
            self.builder.add(act)
        return [output]


    def preprocess(self, kind: str, name: str, config: dict, scope: list[str], inputs: list[str], output: str, where: str) -> None:
        """A Rescaling or Normalization layer on a model input: steps of the input's preprocessing record."""
        row = {"source": name, "kind": kind, "where": where}
        tensor = inputs[0] if len(inputs) == 1 else None
        field_name = self.at_input.get(tensor)
        try:
            if field_name is None:
                raise NoMapping(f"a {kind} after other layers: tfn takes Keras's preprocessing layers at a model input, into preprocessing.json")
            declared = self.builder.inputs[field_name]
            if self.builder.keep_input_layout and declared.rank > 2:
                raise NoMapping("--input-layout nhwc: preprocessing.json's steps act on channels-first arrays")
            steps = PREPROCESSING[kind](config, self.weights.layer(scope + [name]), declared)
        except NoMapping as exc:
            self.builder.unmapped(Unmapped(name, kind, where, str(exc)))
            return
        self.preprocessing.setdefault(field_name, []).append((name, kind, steps, tensor))
        self.at_input[output] = field_name
        self.builder.alias(output, tensor)
        described = "; ".join(step.describe() for step in steps)
        self.builder.rows.append(row | {"op": "preprocessing", "node": field_name, "reason": described})
        self.builder.records.append({"source": name, "kind": kind, "preprocessing": field_name, "steps": [step.to_json() for step in steps]})

    def preprocessing_record(self) -> dict | None:
        """contract 1's fields: each preprocessed input's steps, after decoding for an image input whose first
        layer is a Rescaling (Keras's image models take pixels 0 to 255 and rescale them themselves)."""
        from tfn.runners.preprocessing import DecodeImage

        fields = {}
        for field_name, layers in self.preprocessing.items():
            for layer_name, kind, _, tensor in layers:
                others = [r for r in self.readers.get(tensor, []) if r != layer_name]
                if others:
                    reason = f"input {field_name!r} also feeds {', '.join(others)}: preprocessing.json applies to the whole input"
                    self.builder.unmapped(Unmapped(layer_name, kind, "", reason))
            steps = [step for _, _, layer_steps, _ in layers for step in layer_steps]
            sample = self.builder.inputs[field_name].sample_shape
            if layers[0][1] == "Rescaling" and len(sample) == 3 and sample[0] in (1, 3, 4):
                steps.insert(0, DecodeImage(size=sample[1:], color={1: "grayscale", 3: "rgb", 4: "rgba"}[sample[0]]))
            fields[field_name] = [step.to_json() for step in steps]
        return fields or None


def _keras_values(value) -> np.ndarray:
    """A number or array of a Keras config (Keras 3 serialises arrays as {"class_name": "__numpy__", ...})."""
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("value", value.get("value"))
    return np.asarray(value, dtype=np.float64).reshape(-1)


def _per_channel(values: np.ndarray, channels: int, what: str) -> list[float]:
    if values.size == 1:
        return [float(values[0])] * channels
    if values.size != channels:
        raise NoMapping(f"{what} of {values.size} values for {channels} features: tfn's preprocessing is per feature (axis 1)")
    return [float(v) for v in values]


def rescaling_steps(config: dict, weights: list, declared: TensorType) -> list:
    """Rescaling(scale, offset): x * scale + offset, as `scale` (divide by 1 / scale) or, with an offset or a
    scale per channel, `normalize` ((x - mean) / std, mean = -offset / scale, std = 1 / scale)."""
    from tfn.runners.preprocessing import Normalize, Scale

    scale, offset = _keras_values(config.get("scale", 1.0)), _keras_values(config.get("offset", 0.0))
    if np.any(scale <= 0):
        raise NoMapping(f"scale {scale.tolist()}: tfn's preprocessing divides by positive numbers")
    if scale.size == 1 and not np.any(offset):
        return [Scale(divide_by=float(1.0 / scale[0]))]
    channels = declared.shape[1]
    scales, offsets = _per_channel(scale, channels, "a scale"), _per_channel(offset, channels, "an offset")
    return [Normalize(mean=[-o / s for o, s in zip(offsets, scales)], std=[1.0 / s for s in scales])]


def normalization_steps(config: dict, weights: list, declared: TensorType) -> list:
    """Normalization (adapted, or given mean and variance) over the feature axis: (x - mean) / max(sqrt(variance), 1e-7)."""
    # the `normalize` kind, not `standard` (the same arithmetic): a standard step records how many training samples
    # its statistics come from, and Keras 3 does not keep that (its `count` weight stays 0)
    from tfn.runners.preprocessing import Normalize

    if config.get("invert"):
        raise NoMapping("invert: tfn's preprocessing normalises, it does not undo a normalisation")
    axis = config.get("axis", -1)
    axes = [] if axis is None else [axis] if isinstance(axis, int) else list(axis)
    rank = declared.rank
    if any(a % rank != rank - 1 for a in axes):
        raise NoMapping(f"axis {axis}: tfn's preprocessing normalises per feature (Keras's last axis) or with one mean")
    if config.get("mean") is not None:
        mean, variance = _keras_values(config["mean"]), _keras_values(config["variance"])
    elif len(weights) >= 2:
        mean, variance = np.asarray(weights[0], np.float64).reshape(-1), np.asarray(weights[1], np.float64).reshape(-1)
    else:
        raise NoMapping("no mean and variance: the layer was never adapted")
    channels = declared.shape[1]
    std = np.maximum(np.sqrt(variance), 1e-7)  # Keras's backend epsilon
    return [Normalize(mean=_per_channel(mean, channels, "a mean"), std=_per_channel(std, channels, "a variance"))]


#: Keras's preprocessing layers that tfn takes into the model directory's preprocessing.json (contract 1)
PREPROCESSING = {"Rescaling": rescaling_steps, "Normalization": normalization_steps}


def tensor_id(scope: list[str], layer: str, node: int, tensor: int) -> str:
    return f"{'/'.join(scope)}|{layer}|{node}|{tensor}"


def _refs(value) -> list[tuple[str, int, int]]:
    """input_layers / output_layers: one [name, node, tensor] or a list of them."""
    if not value:
        return []
    if isinstance(value[0], str):
        return [(value[0], int(value[1]), int(value[2]))]
    return [(v[0], int(v[1]), int(v[2])) for v in value]


def _node_inputs(node) -> list[tuple[str, int, int]]:
    """An inbound node's input tensors: Keras 3 ({args, kwargs} with keras_history) or tf.keras ([[name, node, tensor, kwargs]])."""
    if isinstance(node, dict):
        found: list = []
        _histories(node.get("args", []), found)
        return found
    return [(ref[0], int(ref[1]), int(ref[2])) for ref in node]


def _histories(value, found: list) -> None:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            name, node, tensor = value["config"]["keras_history"]
            found.append((name, int(node), int(tensor)))
            return
        for v in value.values():
            _histories(v, found)
    elif isinstance(value, list):
        for v in value:
            _histories(v, found)


def _activation_name(value) -> str:
    if isinstance(value, dict):  # Keras 3 serialises some activations as objects
        config = value.get("config")
        return str(config if isinstance(config, str) else (config or {}).get("name") or value.get("class_name")).lower()
    return str(value or "linear")


def _activation_config(value) -> dict:
    """The arguments of an activation Keras 3 saved as an object (gelu's approximate, ...)."""
    if isinstance(value, dict) and isinstance(value.get("config"), dict):
        return {k: v for k, v in value["config"].items() if k != "name"}
    return {}


def _activation(config: dict) -> str | None:
    """The activation a layer applies to its output; recurrent layers' `activation` is inside their cell."""
    if "return_sequences" in config or "cell" in config or "layer" in config:
        return None
    name = _activation_name(config.get("activation")) if "activation" in config else "linear"
    return None if name == "linear" else name


def _dtype(dtype) -> str:
    dtype = dtype if isinstance(dtype, str) else (dtype or {}).get("config", {}).get("name", "float32")
    return {"int32": "int32", "int64": "int64", "float64": "float64"}.get(dtype, "float32")


def channels_first(sample_shape) -> list[int]:
    """One Keras sample shape (features last) in tfn's layout (features first); None (unknown) is refused."""
    if any(d is None for d in sample_shape):
        raise ImportFailed(f"error: an input of shape {list(sample_shape)}: tfn's inputs have fixed sample shapes")
    shape = [int(d) for d in sample_shape]
    return shape if len(shape) < 2 else [shape[-1], *shape[:-1]]


# --- compile config -----------------------------------------------------------


def _loss_name(value) -> tuple[str, dict]:
    """A saved Keras loss as (snake-case name, config)."""
    if isinstance(value, dict):
        config = value.get("config") or {}
        name = config.get("name") or value.get("class_name", "")
        return _snake(_LOSS_ALIASES.get(name, name)), config
    return _snake(_LOSS_ALIASES.get(str(value), str(value))), {}


def _snake(name: str) -> str:
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() if name[:1].isupper() else name


def optimizer(config: dict | None) -> Optimizer | None:
    """A saved Keras optimizer as tfn's optimizer section, when tfn has the same update rule."""
    if not config:
        return None
    kind = str(config.get("class_name", "")).split(">")[-1].lower()
    c = config.get("config") or {}
    lr = c.get("learning_rate", 0.001)
    if not isinstance(lr, (int, float)):
        return None  # a schedule object: left to the default, said in the spec
    settings: dict
    if kind == "sgd":
        momentum = float(c.get("momentum", 0.0))
        settings = {"type": "gradient_descent"} if not momentum else {"type": "momentum", "momentum": momentum, "use_nesterov": bool(c.get("nesterov", False))}
    elif kind == "adam":
        settings = {"type": "adam", "beta1": c.get("beta_1", 0.9), "beta2": c.get("beta_2", 0.999), "epsilon": c.get("epsilon", 1e-7)}
    elif kind == "adamw":
        settings = {"type": "adamw", "beta1": c.get("beta_1", 0.9), "beta2": c.get("beta_2", 0.999), "epsilon": c.get("epsilon", 1e-7), "weight_decay": c.get("weight_decay", 0.004)}
    elif kind == "rmsprop":
        settings = {"type": "rmsprop", "decay": c.get("rho", 0.9), "momentum": c.get("momentum", 0.0), "epsilon": c.get("epsilon", 1e-7), "centered": bool(c.get("centered", False))}
    elif kind == "adagrad":
        settings = {"type": "adagrad", "initial_accumulator_value": c.get("initial_accumulator_value", 0.1)}
    elif kind == "adadelta":
        settings = {"type": "adadelta", "rho": c.get("rho", 0.95), "epsilon": c.get("epsilon", 1e-7)}
    else:
        return None
    return Optimizer({**settings, "learning_rate": float(lr)}, source=f"Keras {config.get('class_name')} (compile config)")


def read(path: Path, input_layout: str = "nchw") -> Imported:
    config, weights, fmt, versions, training = read_file(path)
    builder = Builder("keras", channels_last=True, input_layout=input_layout)
    reader = Reader(path, weights, builder, keras_major=int(str(versions.get("keras", "2")).split(".")[0] or 2))
    try:
        outputs = reader.model(config, [], None)
    except KeyError as exc:
        raise ImportFailed(f"{path}: error: the model config lacks {exc}: not a model saved by Keras") from None
    preprocessing = reader.preprocessing_record()
    if builder.problems:
        raise unmappable_error(str(path), builder)
    refs = [builder.tensors[t].ref for t in outputs]
    output_names = [t.split("|")[1] for t in outputs]
    losses = _losses(builder, training, refs) if training else []
    notes = []
    if not losses:
        losses = default_losses(builder, refs)
    saved_optimizer = optimizer((training or {}).get("optimizer") or (training or {}).get("optimizer_config"))
    return Imported(config["config"].get("name", path.stem), path, fmt, versions, builder, refs, output_names, losses, saved_optimizer, preprocessing, notes=notes)


def _losses(builder: Builder, training: dict, outputs: list[str]) -> list[Loss]:
    saved = training.get("loss")
    if saved is None:
        return []
    per_output = saved if isinstance(saved, list) else [saved] * len(outputs) if not isinstance(saved, dict) or "class_name" in saved else [saved.get(k) for k in saved]
    losses = []
    for value, output in zip(per_output, outputs):
        kind, config = _loss_name(value)
        losses.append(loss_from_keras(builder, kind, config, output))
    return losses
