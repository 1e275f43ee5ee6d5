"""Schema validation of a parsed document, with every problem located in the file."""

from __future__ import annotations

import typing

from pydantic import BaseModel, ValidationError

from tfn.layers import suggest
from tfn.specs.documents import Document
from tfn.specs.errors import Diagnostic, SpecError, format_path
from tfn.specs.schema import LOSS_FORMS, LOSS_MODELS, NODE_MODELS, SCOPE_TAG, ScopeNode, Spec


def validate(doc: Document) -> Spec:
    """The document as a Spec, or SpecError listing every schema problem."""
    spec, problems = check_schema(doc)
    if spec is None:
        raise SpecError(problems)
    return spec


def check_schema(doc: Document) -> tuple[Spec | None, list[Diagnostic]]:
    """The document as a Spec and no problems, or None and every schema problem, positioned."""
    try:
        return Spec.model_validate(doc.data), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # a misspelt attribute also leaves the real one missing: say it once, at the misspelling
        meant = {_meant(doc, e) for e in errors if e["type"] == "extra_forbidden"}
        problems = {}
        for error in errors:
            if error["type"] == "missing" and _data_path(doc.data, error["loc"])[0] in meant:
                continue
            diagnostic = _diagnose(doc, error)
            problems.setdefault((diagnostic.line, diagnostic.col, diagnostic.path), diagnostic)
        return None, list(problems.values())


def _meant(doc: Document, error: dict) -> tuple | None:
    """For an unknown key: the path of the known key it most likely misspells."""
    path, tags = _data_path(doc.data, error["loc"])
    model = _model_at(path, tags)
    hint = suggest(path[-1], model.model_fields) if model is not None else None
    return path[:-1] + (hint,) if hint else None


def _data_path(data, loc: tuple) -> tuple[tuple, list]:
    """Split pydantic's loc into the path inside the data and the union tags it crossed."""
    path, tags = [], []
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
            path.append(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
            path.append(part)
        elif isinstance(part, str) and (part in NODE_MODELS or part in LOSS_MODELS or part == SCOPE_TAG or "[" in part):
            tags.append(part)
        elif isinstance(data, dict) and part in (data.get("source"), data.get("type")):
            tags.append(part)  # the tag of a union discriminated by `source:` (data) or `type:` (optimizer, schedule)
        else:
            path.append(part)  # a key that is absent (missing) or does not exist in the model
            data = None
    return tuple(path), tags


def _model_at(path: tuple, tags: list) -> type[BaseModel] | None:
    """The schema model that owns the last key of `path` (for did-you-mean on unknown keys)."""
    model: typing.Any = Spec
    tag_iter = iter(tags)
    for part in path[:-1]:
        model = _unwrap(model, tag_iter)
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(part)
            if field is None:
                return None
            model = field.annotation
        elif typing.get_origin(model) is list:
            model = typing.get_args(model)[0]
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
    model = _unwrap(model, tag_iter)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(model, tags):
    while True:
        origin = typing.get_origin(model)
        if origin is typing.Annotated:
            model = typing.get_args(model)[0]
        elif origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            members = [typing.get_args(m)[0] if typing.get_origin(m) is typing.Annotated else m for m in typing.get_args(model)]
            members = [m for m in members if m is not type(None)]
            if len(members) == 1:
                model = members[0]
                continue
            tag = next(tags, None)
            if tag in LOSS_FORMS:  # `loss:` is one loss or a list of them
                model = LOSS_FORMS[tag]
                continue
            if tag == SCOPE_TAG:
                return ScopeNode
            by_tag = {**NODE_MODELS, **LOSS_MODELS}
            if tag in by_tag:
                return by_tag[tag]
            for m in members:  # discriminated by a Literal field ('type', 'source')
                if isinstance(m, type) and issubclass(m, BaseModel) and repr(tag) in str(m.model_fields.get("type", m.model_fields.get("source", ""))):
                    return m
            return None
        else:
            return model


def _known(ctx_expected: str) -> list[str]:
    return [part.strip().strip("'") for part in ctx_expected.replace(" or ", ",").split(",") if part.strip()]


def _diagnose(doc: Document, error: dict) -> Diagnostic:
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx", {})
    path, tags = _data_path(doc.data, loc)
    value = error.get("input")
    if kind == "missing":
        what = "section" if len(path) == 1 else "attribute"
        line, col = doc.where(path[:-1]) or (None, None)
        return Diagnostic(doc.path, line, col, format_path(path), f"missing required {what} {path[-1]!r}")
    if kind == "extra_forbidden":
        model = _model_at(path, tags)
        what = "section" if len(path) == 1 else "attribute"
        message = f"unknown {what} {path[-1]!r}"
        if model is not None:
            meant = _meant(doc, error)
            if meant:
                message += f" (did you mean {meant[-1]!r}?)"
            else:
                message += f"; known: {', '.join(k for k in model.model_fields)}"
        return doc.error(path, message, key=True)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        if path and path[-1] == "loss" or (path and path[0] == "loss" and len(path) <= 2):
            return doc.error(path + ("op",), _unknown("loss op", ctx.get("tag"), LOSS_MODELS, value))
        if kind == "union_tag_not_found" or ctx.get("tag") is None:
            return doc.error(path, "a node needs an `op:` (or `scope:` with `layers:`)")
        return doc.error(path + ("op",), _unknown("op", ctx["tag"], NODE_MODELS, value))
    if kind == "literal_error" and path == ("version",):
        return doc.error(path, f"unsupported spec version {value!r}; this tfn reads version 1")
    if kind == "literal_error":
        choices = _known(ctx.get("expected", ""))
        hint = suggest(value, choices) if isinstance(value, str) else None
        message = f"expected one of {', '.join(map(repr, choices))}, got {value!r}"
        return doc.error(path, message + (f" (did you mean {hint!r}?)" if hint else ""))
    if kind == "union_tag_invalid" or kind == "model_attributes_type" or kind == "model_type":
        return doc.error(path, f"expected a mapping, got {value!r}")
    if kind == "too_short" and path == ("model", "layers") or (kind == "too_short" and path[-1:] == ("layers",)):
        return doc.error(path, "no layers: a model (or scope) needs at least one node, e.g. - {op: dense, units: 10}")
    if kind == "too_short" and path == ("model", "inputs"):
        return doc.error(path, "no inputs: declare at least one, e.g. image: {shape: [1, 28, 28]} (channels-first, one sample)")
    message = error["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") or kind.startswith(("greater", "less", "too_", "string_pattern")):
        message = f"{message[0].lower()}{message[1:]}, got {value!r}"
    if kind == "string_pattern_mismatch" and path[-1] == "device":
        hint = _device_hint(value)
        message = f"bad device {value!r}: expected cpu, cuda or cuda:N (N = 0, 1, ...)" + (f" (did you mean {hint!r}?)" if hint else "")
    elif kind == "string_pattern_mismatch":
        message = f"{value!r} is not a valid name: start with a letter or _, then letters, digits, _ . or -"
    return doc.error(path, message)


def _unknown(what: str, tag, known: dict, value) -> str:
    by_case = {k.lower(): k for k in known}
    hint = by_case.get(str(tag).lower()) or suggest(tag, known)
    return f"unknown {what} {tag!r}" + (f" (did you mean {hint!r}?)" if hint else "; `tfn layers` lists them")



def _device_hint(value: str) -> str | None:
    """TF's device names ('/gpu:0', '/device:GPU:1', 'CPU') -> tfn's ('cuda:0', 'cuda:1', 'cpu')."""
    name = value.lower().removeprefix("/").removeprefix("device:").removeprefix("job:localhost/").strip()
    kind, _, index = name.partition(":")
    kind = {"gpu": "cuda", "cuda": "cuda", "cpu": "cpu"}.get(kind)
    if kind == "cpu":
        return "cpu"
    if kind == "cuda":
        return f"cuda:{index}" if index.isdigit() else "cuda"
    return suggest(value, ["cpu", "cuda"])
