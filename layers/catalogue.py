"""The op catalogue as data, for `tfn layers`: generated from the registry, never a second list."""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticUndefined

from tfn.layers.base import Op, all_ops, get


def families() -> dict[str, list[tuple[str, str]]]:
    """{family: [(op name, one-line summary)]}, families and names sorted."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, op in all_ops().items():
        out.setdefault(op.family, []).append((name, op.summary()))
    return dict(sorted(out.items()))


def describe(name: str) -> dict[str, Any]:
    """Everything `tfn layers NAME` shows about one op (UnknownOpError, with a suggestion, if there is none)."""
    op: Op = get(name)
    schema = op.Params.model_json_schema()
    defs = schema.get("$defs", {})
    attributes = []
    for field, info in op.Params.model_fields.items():
        required = info.default is PydanticUndefined and info.default_factory is None
        attributes.append(
            {
                "name": field,
                "type": type_text(schema["properties"][field], defs),
                "required": required,
                "default": None if required else _json(info.get_default(call_default_factory=True)),
            }
        )
    return {
        "name": op.name,
        "family": op.family,
        "summary": op.summary(),
        "doc": op.doc(),
        "example": op.example(),
        "shape_rule": op.shape_rule(),
        "tf_notes": op.tf_notes,
        "inputs": _arity(op),
        "is_loss": op.is_loss,
        "attributes": attributes,
    }


def _arity(op: Op) -> str:
    lo, hi = op.arity
    if op.is_loss:
        first = "predictions (or logits)" if op.prediction == "values" else "logits"
        return f"{first}, labels and optionally sample_weight"
    return str(lo) if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"


def _json(value):
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def type_text(schema: dict, defs: dict | None = None) -> str:
    """A short human reading of a JSON Schema: `int >= 1 | [int >= 1] x2`, `SAME|VALID`, `{constant: float}`."""
    defs = defs or {}
    if "$ref" in schema:
        return type_text(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        return " | ".join(type_text(s, defs) for s in schema["anyOf"])
    if "enum" in schema or "x-choices" in schema:
        return "|".join(str(v) for v in schema.get("enum", schema.get("x-choices")))
    if "const" in schema:
        return str(schema["const"])
    kind = schema.get("type")
    if kind in ("integer", "number"):
        text = "int" if kind == "integer" else "float"
        bounds = [
            f"{op} {schema[key]}"
            for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
            if key in schema
        ]
        return " ".join([text, *bounds]) if len(bounds) < 2 else f"{text} in {_interval(schema)}"
    if kind == "array":
        items = type_text(schema.get("items", {}), defs)
        lo, hi = schema.get("minItems"), schema.get("maxItems")
        count = f" x{lo}" if lo is not None and lo == hi else f" x{lo}-{hi}" if lo and hi else f" x{lo}+" if lo else ""
        return f"[{items}]{count}"
    if kind == "object" and "propertyNames" in schema:
        return f"{{{type_text(schema['propertyNames'], defs)}: {type_text(schema.get('additionalProperties', {}), defs)}}}"
    return {"boolean": "bool", "string": "str", "null": "null"}.get(kind, "any")


def _interval(schema: dict) -> str:
    low = f"[{schema['minimum']}" if "minimum" in schema else f"({schema['exclusiveMinimum']}"
    high = f"{schema['maximum']}]" if "maximum" in schema else f"{schema['exclusiveMaximum']})"
    return f"{low}, {high}"
