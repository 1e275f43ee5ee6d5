"""Attribute types shared by ops, and TF's windowed output-size rule.

Sizes take an int or a list (`kernel_size: 3` or `kernel_size: [3, 5]`) and
are stored as a list with one entry per spatial axis; `padding` is SAME or
VALID in any case. See tf_semantics.md §0.2 for the padding rule.
"""

from __future__ import annotations

import math
import re

from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, WithJsonSchema

from tfn.layers.base import MAX_ELEMENTS, MAX_SIZE
from tfn.layers.initializers import INITIALIZERS


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _sizes(n: int | None, minimum: int):
    expected = f"an int or a list of {n} ints" if n else "an int or a list of 1 to 3 ints"

    def normalise(given):
        value = [given] * (n or 1) if _is_int(given) else given
        if not isinstance(value, list) or not all(_is_int(v) for v in value) or not (len(value) == n if n else 1 <= len(value) <= 3):
            raise ValueError(f"expected {expected}, got {given!r}")
        if any(v < minimum for v in value):
            raise ValueError(f"{'every entry ' if isinstance(given, list) else ''}must be >= {minimum}, got {given!r}")
        return value

    return BeforeValidator(normalise)


def Sizes(n: int | None, minimum: int = 1):
    """An int or a list of `n` ints, each >= minimum; stored as the list.

    With n=None (N-d ops) the list has 1 to 3 entries and an int is stored as
    a one-entry list that :func:`per_axis` repeats for every spatial axis.
    """
    entry = {"type": "integer", "minimum": minimum}
    listed = {"type": "array", "items": entry, "minItems": n or 1, "maxItems": n or 3}
    # the JSON Schema (editors, `tfn schema`) must accept the int form too
    return Annotated[list[int], _sizes(n, minimum), WithJsonSchema({"anyOf": [entry, listed]})]


Size1, Size2, Size3 = Sizes(1), Sizes(2), Sizes(3)


def _edge_pairs(given):
    is_pair = isinstance(given, list) and len(given) == 2
    if _is_int(given):
        value = [[given, given], [given, given]]
    elif is_pair and all(_is_int(v) for v in given):
        value = [[given[0], given[0]], [given[1], given[1]]]
    elif is_pair and all(isinstance(v, list) and len(v) == 2 and all(_is_int(w) for w in v) for v in given):
        value = [list(v) for v in given]
    else:
        raise ValueError(f"expected an int, [rows, columns] or [[top, bottom], [left, right]], got {given!r}")
    if any(w < 0 for pair in value for w in pair):
        raise ValueError(f"every entry must be >= 0, got {given!r}")
    return value


_count = {"type": "integer", "minimum": 0}
_pair = {"type": "array", "items": _count, "minItems": 2, "maxItems": 2}
#: Keras's 2-D edge sizes (Cropping2D, ZeroPadding2D): an int (every edge), [rows, columns]
#: (both edges of an axis) or [[top, bottom], [left, right]]; stored as the last form.
EdgePairs2D = Annotated[
    list[list[int]],
    BeforeValidator(_edge_pairs),
    WithJsonSchema({"anyOf": [_count, _pair, {"type": "array", "items": _pair, "minItems": 2, "maxItems": 2}]}),
]
SizeN = Sizes(None)


def per_axis(values: list[int], spatial: int, field: str) -> list[int]:
    """An N-d size attribute for `spatial` axes: one entry repeats; otherwise the lengths must agree."""
    from tfn.layers.base import OpError

    if len(values) == 1:
        return values * spatial
    if len(values) != spatial:
        raise OpError(f"has {len(values)} entries {values} for an input with {spatial} spatial axes", field)
    return values


def resolve_axis(axis: int, rank: int, field: str = "axis") -> int:
    """A non-negative axis of a rank-`rank` tensor (batch axis 0 included); the batch axis is refused."""
    from tfn.layers.base import OpError

    if not -rank <= axis < rank:
        raise OpError(f"axis {axis} is out of range for a rank-{rank} input (valid: 1 to {rank - 1}, or -{rank - 1} to -1)", field)
    axis %= rank
    if axis == 0:
        raise OpError("axis 0 is the batch axis; ops work on one sample's axes (1 and up)", field)
    return axis


def _upper(value):
    return value.upper() if isinstance(value, str) else value


def Choice(*values: str):
    """One of the upper-case `values`, accepted in any case (`padding: same`).

    The published JSON Schema says so with a case-blind pattern (JSON Schema
    regexes have no flags), so editors accept what the validator accepts.
    """
    any_case = "|".join("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in v) for v in values)
    schema = {
        "type": "string",
        "pattern": f"^({any_case})$",
        "description": f"one of {', '.join(values)}, in any case",
        "x-choices": list(values),
    }
    return Annotated[Literal[values], BeforeValidator(_upper), WithJsonSchema(schema)]  # type: ignore[valid-type]


Padding = Choice("SAME", "VALID")

#: the dtypes a tensor of the graph may have (model inputs, cast)
DType = Literal["float32", "float64", "int64", "int32", "int16", "int8", "uint8"]


def _known_initializer(value):
    if isinstance(value, str) and value not in INITIALIZERS:
        from tfn.layers.base import suggest

        hint = suggest(value, INITIALIZERS)
        raise ValueError(
            f"unknown initializer {value!r}"
            + (f" (did you mean {hint!r}?)" if hint else f"; known: {', '.join(INITIALIZERS)}, or {{constant: VALUE}}")
        )
    if isinstance(value, dict):
        if set(value) != {"constant"} or isinstance(value["constant"], bool) or not isinstance(value["constant"], (int, float)):
            raise ValueError(f"expected an initializer name or {{constant: VALUE}} with a number, got {value!r}")
        return {"constant": float(value["constant"])}
    return value


#: An initializer by name (`glorot_uniform`, TF's default) or a constant
#: (`{constant: 0.1}`). Stored as given: a name, or {"constant": float}.
Initializer = Annotated[
    Union[Literal[INITIALIZERS], dict[Literal["constant"], float]],  # type: ignore[valid-type]
    BeforeValidator(_known_initializer),
]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
#: L2 regularization factor: the runner adds factor * sum(w**2) / 2 to the loss (TF's l2_regularizer).
Regularizer = Annotated[float, Field(ge=0.0)]


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


def window_geometry(spatial, kernel, strides, dilation, padding: str, kernel_field: str = "kernel_size") -> list[tuple[int, int, int]]:
    """:func:`window_output` for every spatial axis; OpError when a VALID window does not fit."""
    from tfn.layers.base import OpError

    axes = [window_output(n, k, s, d, padding) for n, k, s, d in zip(spatial, kernel, strides, dilation)]
    dilated = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    extent = f" (dilated {dilated})" if dilated != list(kernel) else ""
    if any(out < 1 for out, _, _ in axes):
        raise OpError(f"window {list(kernel)}{extent} is larger than the input {list(spatial)} with VALID padding", kernel_field)
    # the padded input is a tensor too (kernels copy it, or index it in int32): bounded like every tensor
    padded = [n + before + after for n, (_, before, after) in zip(spatial, axes)]
    if max(padded + dilated) > MAX_SIZE or math.prod(padded) > MAX_ELEMENTS:
        raise OpError(
            f"window {list(kernel)}{extent} pads the input {list(spatial)} to {padded}: beyond tfn's bounds "
            f"(2**31 - 1 along an axis, 2**40 elements in a tensor)",
            kernel_field,
        )
    return axes


def torch_pads(pads: list[tuple[int, int]]) -> tuple[int, ...]:
    """(before, after) per spatial axis, first axis first, as F.pad wants them: last axis first."""
    return tuple(v for before, after in reversed(pads) for v in (before, after))
