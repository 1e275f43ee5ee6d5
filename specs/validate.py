"""Schema validation of a parsed document, with every problem located in the file."""

from __future__ import annotations

import typing
from dataclasses import replace

from pydantic import BaseModel, TypeAdapter, ValidationError

from tfn.layers import suggest
from tfn.layers.catalogue import type_text
from tfn.specs.documents import Document
from tfn.specs.errors import Diagnostic, SpecError, format_path
from tfn.specs.schema import LOSS_FORMS, LOSS_MODELS, NODE_MODELS, SCOPE_TAG, ScopeNode, Spec, Vocabulary


def validate(doc: Document) -> Spec:
    """The document as a Spec, or SpecError listing every schema problem."""
    spec, problems = check_schema(doc)
    if spec is None:
        raise SpecError(problems)
    return spec


def check_schema(doc: Document, root: type[BaseModel] = Spec, document: str = "spec") -> tuple[typing.Any, list[Diagnostic]]:
    """The document as a `root` (a Spec) and no problems, or None and every schema problem, positioned.

    `document` names the kind of file in messages ("unsupported spec version").
    """
    try:
        return root.model_validate(doc.data), []
    except ValidationError as exc:
        errors = [_Located(doc.data, e, root, document) for e in exc.errors(include_url=False)]
        # a misspelt attribute also leaves the real one missing: say it once, at the misspelling
        meant = {_meant(e) for e in errors if e.kind == "extra_forbidden"}
        problems = {}
        for group in _by_value(e for e in errors if not (e.kind == "missing" and e.path in meant)):
            diagnostic = _diagnose(doc, _relevant(group))
            problems.setdefault((diagnostic.line, diagnostic.col, diagnostic.path), diagnostic)
        return None, list(problems.values())


class _Located:
    """One pydantic error, its location split into the path inside the data, the tags of the
    discriminated unions it crossed, and the members of plain unions (int | 'full') it tried."""

    def __init__(self, data, error: dict, root: type[BaseModel] = Spec, document: str = "spec"):
        self.error, self.kind = error, error["type"]
        self.root, self.document = root, document
        path, self.tags, self.branches = [], [], []
        loc = error["loc"]
        for k, part in enumerate(loc):
            if isinstance(data, dict) and part in data:
                data = data[part]
                path.append(part)
            elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
                data = data[part]
                path.append(part)
            elif isinstance(part, str) and (part in NODE_MODELS or part in LOSS_MODELS or part == SCOPE_TAG or part in LOSS_FORMS):
                self.tags.append(part)
            elif isinstance(data, dict) and part in (data.get("source"), data.get("type")):
                self.tags.append(part)  # the tag of a union discriminated by `source:` (data) or `type:` (optimizer, schedule)
            elif part == "[key]":
                pass  # a mapping key that fails its pattern: the path already names it
            elif self.kind == "missing" and k == len(loc) - 1:
                path.append(part)  # the absent key
                data = None
            else:
                self.branches.append(part)  # a member of a plain union: `constrained-int`, `literal['full']`
        self.path = tuple(path)


def _by_value(errors) -> list[list[_Located]]:
    """Errors grouped by mistake: the members of one union tried on one value are one mistake."""
    groups: dict = {}
    for e in errors:
        groups.setdefault(("union", e.path) if e.branches else id(e), []).append(e)
    return list(groups.values())


def _relevant(group: list[_Located]) -> _Located:
    """Of the errors of the members of a union, the one about the member of the value's own kind
    (`batch_size: 0` is a number too small, not a misspelt 'full'); else one saying what fits."""
    if len(group) == 1:
        return group[0]
    value = group[0].error.get("input")
    fitting = [e for e in group if not (e.kind.endswith("_type") or e.kind == "literal_error" and not isinstance(value, str))]
    if len(fitting) > 1:  # a string that fits no choice and no pattern: the choices only if it is close to one
        close = [e for e in fitting if e.kind == "literal_error" and suggest(value, _known(e.error["ctx"]["expected"]))]
        fitting = close or [e for e in fitting if e.kind != "literal_error"]
    if len(fitting) == 1:
        return fitting[0]
    group[0].kind = "union"
    return group[0]


def _meant(error: _Located) -> tuple | None:
    """For an unknown key: the path of the known key it most likely misspells."""
    model = _model_at(error.path, error.tags, error.root)
    hint = suggest(error.path[-1], model.model_fields) if model is not None else None
    return error.path[:-1] + (hint,) if hint else None


def _annotation_at(path: tuple, tags: typing.Iterator[str], root: type[BaseModel] = Spec):
    """The schema's annotation of the value at `path`, crossing discriminated unions by the next of `tags`."""
    annotation: typing.Any = root
    for part in path:
        model = _unwrap(annotation, tags)
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            annotation = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        elif typing.get_origin(model) in (list, dict):
            annotation = typing.get_args(model)[-1]
        else:
            return None
    return annotation


def _model_at(path: tuple, tags: list, root: type[BaseModel] = Spec) -> type[BaseModel] | None:
    """The schema model that owns the last key of `path` (for did-you-mean on unknown keys)."""
    tag_iter = iter(tags)
    model = _unwrap(_annotation_at(path[:-1], tag_iter, root), tag_iter)
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



def _vocabulary(path: tuple, tags: list, root: type[BaseModel] = Spec) -> Vocabulary | None:
    """The Vocabulary of the union at `path` (through `loss:`'s one-or-a-list form)."""
    tag_iter = iter(tags)
    annotation = _annotation_at(path, tag_iter, root)
    while typing.get_origin(annotation) in (typing.Annotated, typing.Union):
        if typing.get_origin(annotation) is typing.Union:
            annotation = LOSS_FORMS.get(next(tag_iter, ""))
            continue
        found = [m for m in annotation.__metadata__ if isinstance(m, Vocabulary)]
        if found:
            return found[0]
        annotation = typing.get_args(annotation)[0]
    return None


def _accepted(error: _Located) -> str:
    """What the schema accepts at the error's place, in words: `int > 0 or full`."""
    annotation = _annotation_at(error.path, iter(error.tags), error.root)
    if annotation is None:
        return "another value"
    return type_text(TypeAdapter(annotation).json_schema()).replace(" | ", " or ")


def _known(ctx_expected: str) -> list[str]:
    return [part.strip().strip("'") for part in ctx_expected.replace(" or ", ",").split(",") if part.strip()]


def _show(value) -> str:
    """A value as the message quotes it: its repr, cut short when long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:45] + " ... " + text[-10:]


def _diagnose(doc: Document, error: _Located) -> Diagnostic:
    kind, path, ctx = error.kind, error.path, error.error.get("ctx", {})
    value = error.error.get("input")
    if kind == "missing":
        what = "section" if len(path) == 1 else "attribute"
        return replace(doc.error(path[:-1], f"missing required {what} {path[-1]!r}"), path=format_path(path))
    if kind == "extra_forbidden":
        model = _model_at(path, error.tags, error.root)
        what = "section" if len(path) == 1 else "attribute"
        message = f"unknown {what} {_show(path[-1])}"
        if model is not None:
            meant = _meant(error)
            if meant:
                message += f" (did you mean {meant[-1]!r}?)"
            else:
                message += f"; known: {', '.join(k for k in model.model_fields)}"
        return doc.error(path, message, key=True)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        vocabulary = _vocabulary(path, error.tags, error.root)
        if vocabulary is None:  # not a union of the spec's sections
            return doc.error(path, f"expected a mapping, got {_show(value)}")
        if not isinstance(value, dict):
            return doc.error(path, f"expected a mapping with `{vocabulary.key}:` naming the {vocabulary.word}, got {_show(value)}")
        if vocabulary.key not in value:
            return doc.error(path, vocabulary.needs + ("; " + vocabulary.listing if vocabulary.listing else f"; choices: {', '.join(vocabulary.choices)}"))
        return doc.error(path + (vocabulary.key,), _unknown(vocabulary, value[vocabulary.key]))
    if path == ("version",) and kind != "missing":
        return doc.error(path, f"unsupported {error.document} version {_show(value)}; this tfn reads version 1")
    if kind == "literal_error":
        choices = _known(ctx.get("expected", ""))
        hint = suggest(value, choices) if isinstance(value, str) else None
        message = f"expected one of {', '.join(map(repr, choices))}, got {_show(value)}"
        return doc.error(path, message + (f" (did you mean {hint!r}?)" if hint else ""))
    if kind in ("model_attributes_type", "model_type", "dict_type"):
        return doc.error(path, f"expected a mapping, got {_show(value)}")
    if kind == "union":
        return doc.error(path, f"expected {_accepted(error)}, got {_show(value)}")
    if kind == "int_parsing_size":
        return doc.error(path, f"{_show(value)} is out of range")
    if kind == "too_short" and path[-1:] == ("layers",):
        return doc.error(path, "no layers: a model (or scope) needs at least one node, e.g. - {op: dense, units: 10}")
    if kind == "too_short" and path == ("model", "inputs"):
        return doc.error(path, "no inputs: declare at least one, e.g. image: {shape: [1, 28, 28]} (channels-first, one sample)")
    if kind == "too_short":
        return doc.error(path, f"needs at least {ctx['min_length']} item{'s' if ctx['min_length'] > 1 else ''}, got {_show(value)}")
    if kind == "too_long":
        return doc.error(path, f"takes at most {ctx['max_length']} item{'s' if ctx['max_length'] > 1 else ''}, got {_show(value)}")
    message = error.error["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") or kind.startswith(("greater", "less", "too_", "string_pattern", "finite")):
        message = f"{message[0].lower()}{message[1:]}, got {_show(value)}"
    if kind == "string_pattern_mismatch" and path[-1] == "device":
        hint = _device_hint(value)
        message = f"bad device {_show(value)}: expected cpu, cuda or cuda:N (N = 0, 1, ...)" + (f" (did you mean {hint!r}?)" if hint else "")
    elif kind == "string_pattern_mismatch":
        message = f"{_show(value)} is not a valid name: start with a letter or _, then letters, digits, _ . or -"
    return doc.error(path, message)


def _unknown(vocabulary: Vocabulary, tag) -> str:
    """`unknown optimizer 'adamm' (did you mean 'adam'?); choices: ...`, in the section's own words."""
    if not isinstance(tag, str):
        return f"expected the name of the {vocabulary.word}, got {_show(tag)}"
    by_case = {k.lower(): k for k in vocabulary.choices}
    hint = by_case.get(tag.lower()) or dict(vocabulary.aliases).get(tag.lower()) or suggest(tag, vocabulary.choices)
    message = f"unknown {vocabulary.word} {_show(tag)}" + (f" (did you mean {hint!r}?)" if hint else "")
    if vocabulary.listing:
        return message if hint else f"{message}; {vocabulary.listing}"
    return f"{message}; choices: {', '.join(vocabulary.choices)}"


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
