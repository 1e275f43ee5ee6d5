"""Does the data fit the graph? The rules of binding a source's fields to the graph's inputs.

Every graph input (a model input, or a loss's label field) is fed by the data
field of the same name: the field must exist, have the input's sample shape
and the same kind of dtype (float or integer), and a source that names its
classes must not have more of them than the logits its labels are scored
against. The rules apply to field types, however they were found:

- `tfn check` (:func:`check_data`) finds them from cheap metadata only
  (:func:`describe_source`: the source's declaration, file headers, a CSV's
  header line, one image) and says what that could not check;
- the input pipeline (runners/data.py) finds them from the loaded data.

No torch here: `tfn check` imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tfn.layers import is_integer, suggest
from tfn.runners.data_files import DataError
from tfn.runners.data_sources import FieldType, describe_source
from tfn.specs.documents import Document
from tfn.specs.errors import Diagnostic
from tfn.specs.graph import Graph, split_ref

Problem = tuple[tuple, str]  # (the spec path at fault, the message)


def kind(dtype: str) -> str:
    return "integer" if is_integer(dtype) else "float"


def declared_at(graph: Graph, name: str, data: dict | None) -> tuple:
    """The spec path that declares graph input `name`: `model.inputs.NAME` for a model input,
    else the `labels:` or `sample_weight:` of the loss that reads it (found in the document's data when given)."""
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and isinstance(model.get("inputs"), dict) and name in model["inputs"]:
        return ("model", "inputs", name)
    losses = data.get("loss") if isinstance(data, dict) else None
    for path, loss in [(("loss",), losses)] if not isinstance(losses, list) else [(("loss", i), item) for i, item in enumerate(losses)]:
        if isinstance(loss, dict) and loss.get("labels") == name:
            return path + ("labels",)
        if isinstance(loss, dict) and loss.get("sample_weight") == name:
            return path + ("sample_weight",)
    if data is None and name in _label_names(graph):
        return ("loss", "labels")
    return ("model", "inputs", name)


def _label_names(graph: Graph) -> set[str]:
    return {graph.node(loss.node).inputs[1] for loss in graph.losses}


def _reader(graph: Graph, name: str) -> str:
    """Who reads graph input `name`, for messages: the model input, or a loss's labels."""
    for loss in graph.losses:
        node = graph.node(loss.node)
        if node.inputs[1] == name:
            logits = node.inputs[0]
            return f"the loss {node.name!r} ({node.op} of the logits {logits!r} {graph.type_of(logits)})"
        if node.inputs[2:3] == (name,):
            return f"the sample_weight of the loss {node.name!r} (one weight per example unless declared under model.inputs)"
    return f"the model input {name!r}"


def binding_problems(graph: Graph, fields: dict[str, FieldType], source: str, data: dict | None = None, made: dict[str, str] | None = None) -> list[Problem]:
    """Every graph input without a fitting field: missing, another sample shape, another kind of dtype.

    A dimension of a field's shape that is None is not known yet (a CSV field's one-hot width, before the
    vocabulary is learnt) and fits any; `made` says in words what makes a field (its CSV columns), for messages."""
    problems = []
    for inp in graph.inputs:
        at = declared_at(graph, inp.name, data)
        if inp.name not in fields:
            hint = suggest(inp.name, list(fields))
            problems.append(
                (
                    at,
                    f"the graph input {inp.name!r} is fed by the data field of that name, but source {source!r} has no such field"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + f"; its fields are {', '.join(fields)}",
                )
            )
            continue
        have, want = fields[inp.name], tuple(inp.type.sample_shape)
        reader = _reader(graph, inp.name)
        model_input = at[:2] == ("model", "inputs")
        if not _fits(have.shape, want):
            how = f" ({made[inp.name]})" if made and inp.name in made else ""
            problems.append(
                (
                    at + ("shape",) if model_input else at,
                    f"field {inp.name!r} of source {source!r} has samples of shape {list(have.shape)}{how}; {reader} expects {list(want)}",
                )
            )
        elif kind(have.dtype) != kind(inp.type.dtype):
            hint = " (scale integer pixels to floats first, e.g. x / 255)" if kind(have.dtype) == "integer" and model_input else ""
            problems.append((at, f"field {inp.name!r} of source {source!r} holds {have.dtype}; {reader} expects {inp.type.dtype}{hint}"))
    return problems


def _fits(have: tuple, want: tuple) -> bool:
    return len(have) == len(want) and all(h is None or h == w for h, w in zip(have, want))


def class_problems(graph: Graph, classes: int | None, source: str) -> list[Problem]:
    """A source with more classes than the logits its class-index labels are scored against."""
    if classes is None:
        return []
    problems = []
    for logits, labels in _class_index_losses(graph):
        width = _width(graph, logits)
        if width is not None and classes > width:
            problems.append((("data",), f"source {source!r} has {classes} classes, but the logits {logits!r} give {width}; give the last layer {classes} units"))
    return problems


def augment_problems(augment, fields: dict[str, FieldType], source: str) -> list[Problem]:
    """Augmentation needs a field of float images [C, H, W]."""
    if augment is None:
        return []
    if augment.field not in fields:
        return [(("data", "augment", "field"), f"source {source!r} has no field {augment.field!r}; its fields are {', '.join(fields)}")]
    have = fields[augment.field]
    if len(have.shape) != 3 or kind(have.dtype) != "float":
        return [(("data", "augment", "field"), f"augmentation needs float images [C, H, W]; field {augment.field!r} is {have.dtype} {list(have.shape)}")]
    if augment.crop_padding > min(have.shape[1:]):
        return [(("data", "augment", "crop_padding"), f"{augment.crop_padding} is more than the images' size {list(have.shape[1:])}: crops would be mostly padding")]
    return []


def normalize_problems(spec_data, fields: dict[str, FieldType]) -> list[Problem]:
    """`normalize` of a field whose data holds integers (an npz/npy array's dtype, known from its header)."""
    problems = []
    for name, method in (getattr(spec_data, "normalize", None) or {}).items():
        if method != "none" and name in fields and kind(fields[name].dtype) == "integer":
            problems.append((("data", "normalize", name), f"normalize applies to float fields; field {name!r} holds {fields[name].dtype}"))
    return problems


def _class_index_losses(graph: Graph) -> list[tuple[str, str]]:
    """(logits, labels) of every loss whose labels are class indices."""
    pairs = []
    for loss in graph.losses:
        logits, labels = graph.node(loss.node).inputs[:2]
        if kind(graph.type_of(labels).dtype) == "integer":
            pairs.append((logits, labels))
    return pairs


def _width(graph: Graph, logits: str) -> int | None:
    shape = graph.type_of(logits).shape
    return None if len(shape) < 2 or shape[1] is None else int(shape[1])


@dataclass
class DataCheck:
    """What `tfn check` found about the data: the source's fields, its class count where known,
    the problems (positioned in the spec) and what it could not check without reading the data."""

    source: str
    fields: dict[str, FieldType] = field(default_factory=dict)
    classes: int | None = None
    problems: list[Diagnostic] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "fields": {name: {"shape": list(f.shape), "dtype": f.dtype} for name, f in self.fields.items()},
            "classes": self.classes,
            "unchecked": self.unchecked,
        }


def check_data(graph: Graph, spec_data, doc: Document) -> DataCheck:
    """The data section's source against the graph, from cheap metadata only (never the data)."""
    result = DataCheck(spec_data.source)
    try:
        described = describe_source(spec_data)
    except DataError as exc:
        message = str(exc).replace(": error: ", ": ", 1)
        result.problems.append(doc.error(exc.spec_path or ("data",), message))
        result.unchecked.append("the graph's inputs against the data fields: the source could not be described")
        return result
    result.fields, result.classes, result.unchecked = described.fields, described.classes, list(described.unchecked)
    bound = binding_problems(graph, described.fields, spec_data.source, doc.data)
    if not bound:  # a label field of another shape or dtype is one mistake, not also one of classes
        bound = class_problems(graph, described.classes, spec_data.source)
    problems = bound + augment_problems(spec_data.augment, described.fields, spec_data.source) + normalize_problems(spec_data, described.fields)
    result.problems = [doc.error(path, message) for path, message in problems]
    if described.classes is None:
        for logits, labels in _class_index_losses(graph):
            width = _width(graph, logits)
            if width is not None and labels in described.fields:
                result.unchecked.append(f"the values of field {labels!r} (class indices for the {width} logits of {split_ref(logits)[0]!r}: 0..{width - 1}): read when training starts")
    return result
