"""Attribute types shared by ops, and TF's windowed output-size rule.

Sizes take an int or a list (`kernel_size: 3` or `kernel_size: [3, 5]`) and
are stored as a list with one entry per spatial axis; `padding` is SAME or
VALID in any case. See tf_semantics.md §0.2 for the padding rule.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from tfn.layers.initializers import INITIALIZERS


def _sizes(n: int, minimum: int):
    def normalise(value):
        if isinstance(value, bool):
            raise ValueError(f"expected an int or a list of {n} ints, got {value!r}")
        if isinstance(value, int):
            value = [value] * n
        if not isinstance(value, list) or len(value) != n or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ValueError(f"expected an int or a list of {n} ints, got {value!r}")
        if any(v < minimum for v in value):
            raise ValueError(f"every entry must be >= {minimum}, got {value!r}")
        return value

    return BeforeValidator(normalise)


def Sizes(n: int, minimum: int = 1):
    """An int or a list of `n` ints, each >= minimum; stored as the list."""
    return Annotated[list[int], _sizes(n, minimum)]


Size2 = Sizes(2)


def _upper(value):
    return value.upper() if isinstance(value, str) else value


Padding = Annotated[Literal["SAME", "VALID"], BeforeValidator(_upper)]


def _known_initializer(value):
    if isinstance(value, str) and value not in INITIALIZERS:
        from tfn.layers.base import suggest

        hint = suggest(value, INITIALIZERS)
        raise ValueError(
            f"unknown initializer {value!r}"
            + (f" (did you mean {hint!r}?)" if hint else f"; known: {', '.join(INITIALIZERS)}")
        )
    return value


Initializer = Annotated[str, BeforeValidator(_known_initializer)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


def window_output(n: int, k: int, s: int, d: int, padding: str) -> tuple[int, int, int]:
    """TF's windowed output size and padding split for one axis.

    Returns (out, pad_before, pad_after). SAME pads the odd cell at the end,
    as TF does (kernel_shape_util.cc); VALID pads nothing.
    """
    k_eff = (k - 1) * d + 1
    if padding == "VALID":
        return (n - k_eff + s) // s, 0, 0
    out = -(-n // s)
    total = max(0, (out - 1) * s + k_eff - n)
    return out, total // 2, total - total // 2


def torch_pads(pads: list[tuple[int, int]]) -> tuple[int, ...]:
    """(before, after) per spatial axis, first axis first, as F.pad wants them: last axis first."""
    return tuple(v for before, after in reversed(pads) for v in (before, after))
