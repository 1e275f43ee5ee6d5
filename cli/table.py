"""Plain-text tables for listing commands: a header row, a rule, then the rows."""

from __future__ import annotations


def table(rows: list[tuple[str, ...]], left: int) -> list[str]:
    """Lines of `rows` (the first is the header) in aligned columns: the first `left` flush left, the rest right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return [line(rows[0]), "  ".join("-" * w for w in widths), *(line(row) for row in rows[1:])]


def significant(value: float) -> str:
    """A rate for people: whole numbers with separators from 100 up, three significant digits below (0.294, not 0)."""
    return f"{value:,.0f}" if value >= 99.95 else f"{value:.3g}"
