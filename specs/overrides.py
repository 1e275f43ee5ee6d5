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
        value = parse_yaml(f"v: {raw}\n", "--set").data["v"] if raw.strip() else ""
        parts = tuple(int(p) if p.isdigit() else p for p in key.split("."))
        target = doc.data
        for i, part in enumerate(parts[:-1]):
            if isinstance(target, list) and isinstance(part, int) and part < len(target):
                target = target[part]
            elif isinstance(target, dict):
                if part not in target:  # created by this override: problems with it point here
                    doc.overrides[parts[: i + 1]] = text
                target = target.setdefault(part, {})
            else:
                raise UserError(f"--set {text!r}: error: {'.'.join(map(str, parts[: i + 1]))} is not a mapping or list index")
        last = parts[-1]
        if isinstance(target, list):
            if not isinstance(last, int) or last >= len(target):
                raise UserError(f"--set {text!r}: error: index {last} is out of range")
            target[last] = value
        elif isinstance(target, dict):
            target[last] = value
        else:
            raise UserError(f"--set {text!r}: error: cannot set a field inside a {type(target).__name__}")
        doc.overrides[parts] = text
