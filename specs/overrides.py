"""`--set a.b.c=VALUE`: override any field of a spec before validation.

List items go by index (`model.layers.3.filters=64`); VALUE is YAML (1.2).
A malformed override is a UserError naming it; a problem with an overridden
value is reported at the override (`--set KEY=VALUE: error: ...`), not at
the file's line.
"""

from __future__ import annotations

from tfn.specs.documents import Document, parse_yaml
from tfn.specs.errors import UserError


def apply_overrides(doc: Document, overrides) -> None:
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise UserError(f"--set {text!r}: error: expected KEY=VALUE, e.g. train.epochs=3")
        try:
            assign(doc, split_path(key), parse_value(raw), f"--set {text}")
        except ValueError as exc:
            raise UserError(f"--set {text!r}: error: {exc}") from None


def split_path(key: str) -> tuple:
    """'model.layers.3.filters' -> ('model', 'layers', 3, 'filters'): digits index lists."""
    return tuple(int(p) if p.isdigit() else p for p in key.split("."))


def parse_value(raw: str):
    """A command-line value read as YAML 1.2 (`1e-3` a float, `true` a boolean, `[1, 2]` a list)."""
    return parse_yaml(f"v: {raw}\n", "--set").data["v"] if raw.strip() else ""


def assign(doc: Document, parts: tuple, value, origin: str) -> None:
    """Set the field at `parts` of doc.data to `value`, creating mappings on the way.

    Problems with the value are later reported at `origin` (the option that
    gave it). ValueError when the path cannot be followed.
    """
    target = doc.data
    for i, part in enumerate(parts[:-1]):
        if isinstance(target, list) and isinstance(part, int) and part < len(target):
            target = target[part]
        elif isinstance(target, dict):
            if part not in target:  # created here: problems with it point at the origin
                doc.overrides[parts[: i + 1]] = origin
            target = target.setdefault(part, {})
        elif isinstance(target, list) and isinstance(part, int):
            raise ValueError(f"index {part} is out of range: {'.'.join(map(str, parts[:i]))} has {len(target)} items")
        else:
            raise ValueError(f"{'.'.join(map(str, parts[: i + 1]))} is not a mapping or list index")
    last = parts[-1]
    if isinstance(target, list):
        if not isinstance(last, int) or last >= len(target):
            raise ValueError(f"index {last} is out of range")
        target[last] = value
    elif isinstance(target, dict):
        target[last] = value
    else:
        raise ValueError(f"cannot set a field inside a {type(target).__name__}")
    doc.overrides[parts] = origin
