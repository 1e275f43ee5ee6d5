"""User-facing errors: each says where (file:line:col and the spec path) and what.

The CLI prints them and exits 2, without a traceback unless --debug.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfn.layers.base import UserError

__all__ = ["Diagnostic", "SpecError", "UserError", "format_path"]


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int | None
    col: int | None
    path: str  # "model.layers[3].kernel_size"; "" for the whole document
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return _printable(f"{where}: error: {self.path + ': ' if self.path else ''}{self.message}")


_CONTROL = {c: repr(chr(c))[1:-1] for c in [*range(0x20), 0x7F, 0x85, 0x2028, 0x2029]}


def _printable(line: str) -> str:
    """One line, whatever names and values the spec holds: control characters and line breaks escaped."""
    return line.translate(_CONTROL)


class SpecError(UserError):
    """One or more problems in a spec, all reported at once."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.line or 0, d.col or 0))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def format_path(path: tuple) -> str:
    """('model', 'layers', 3, 'filters') -> 'model.layers[3].filters'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
