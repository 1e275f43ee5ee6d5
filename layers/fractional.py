"""Fractional max and average pooling, as TF defines them (tf_semantics.md §3.5).

PyTorch's fractional_max_pool2d uses another algorithm (fixed-size windows
at random offsets); these ops follow TF's: the rows (and columns) are cut
into windows by a random cumulative pooling sequence whose gaps are K or
K + 1, K = in // out. :func:`pooling_sequence` draws a sequence and
:func:`fractional_pool` pools with given sequences.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema

from tfn.layers.base import Op, OpError, Params, TensorType, register


def pooling_sequence(n_in: int, n_out: int, pseudo_random: bool, generator=None) -> list[int]:
    """TF's GeneratePoolingSequence (fractional_pool_common.cc), with torch's RNG for Philox.

    Returns the cumulative sequence [0, ..., n_in] of n_out + 1 entries whose
    gaps are K or K + 1 (K = n_in // n_out). Random: the n_in % n_out larger
    gaps are shuffled among the rest. Pseudo-random: a_i = ceil(alpha * (i + u))
    for one uniform u, as in Graham's paper.
    """
    import torch

    k = n_in // n_out
    if pseudo_random:
        alpha = n_in / n_out
        u_max = min((k + 2) / alpha - 1, (n_in + 1 - k) / alpha - (n_out - 1))
        u = torch.rand((), generator=generator, dtype=torch.float64).item() * u_max
        return [0] + [math.ceil(alpha * (i + u)) - 1 for i in range(1, n_out)] + [n_in]
    diff = [k + 1] * (n_in % n_out) + [k] * (n_out - n_in % n_out)
    order = torch.randperm(n_out, generator=generator).tolist()
    sequence = [0]
    for i in order:
        sequence.append(sequence[-1] + diff[i])
    return sequence


def fractional_pool(x, row_sequence, col_sequence, overlapping: bool, mode: str):
    """Pools x [N, C, H, W] over the windows that two cumulative sequences cut.

    Window i covers rows seq[i] to seq[i+1] - 1, or to seq[i+1] when
    overlapping (the boundary row is shared), clipped to the last row; the
    same for columns. MAX takes the maximum, AVG the mean of the window.
    """
    import torch

    def reduce(t, sequence, axis):
        last = t.shape[axis] - 1
        parts = []
        for start, stop in zip(sequence[:-1], sequence[1:]):
            end = min(stop if overlapping else stop - 1, last)
            window = t.narrow(axis, start, end - start + 1)
            parts.append(window.amax(axis, keepdim=True) if mode == "MAX" else window.sum(axis, keepdim=True))
        return torch.cat(parts, axis)

    y = reduce(reduce(x, list(map(int, row_sequence)), 2), list(map(int, col_sequence)), 3)
    if mode == "AVG":
        # rectangular windows: the count is the product of the row and column extents
        def extents(sequence, n):
            return [min(stop if overlapping else stop - 1, n - 1) - start + 1 for start, stop in zip(sequence[:-1], sequence[1:])]

        rows = torch.tensor(extents(list(map(int, row_sequence)), x.shape[2]), dtype=x.dtype, device=x.device)
        cols = torch.tensor(extents(list(map(int, col_sequence)), x.shape[3]), dtype=x.dtype, device=x.device)
        y = y / (rows[:, None] * cols[None, :])
    return y


_RATIO = {"type": "number", "minimum": 1.0}


def _ratio_pair(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 1:  # checked here so that one bad number is reported once, not per axis
            raise ValueError(f"must be >= 1 (1 keeps the size), got {value!r}")
        return [float(value), float(value)]
    return value


class FractionalPool(Op):
    family = "pooling"
    is_random = True
    mode: str
    example_inputs = ((2, 2, 10, 9),)

    class Params(Params):
        pooling_ratio: Annotated[
            list[Annotated[float, Field(ge=1.0)]],
            Field(min_length=2, max_length=2),
            BeforeValidator(_ratio_pair),
            WithJsonSchema({"anyOf": [_RATIO, {"type": "array", "items": _RATIO, "minItems": 2, "maxItems": 2}]}),
        ]
        pseudo_random: bool = False
        overlapping: bool = False
        deterministic: bool = False
        seed: int = Field(default=0, ge=0)

    def sizes(self, p, x: TensorType) -> list[int]:
        if x.rank != 4:
            raise OpError(f"expects a 4-D input [N, C, H, W], got {x}")
        sizes = [math.floor(n / r) for n, r in zip(x.shape[2:], p.pooling_ratio)]
        if min(sizes) < 1:
            raise OpError(f"pooling_ratio {p.pooling_ratio} leaves no output for the input {x}", "pooling_ratio")
        return sizes

    def infer(self, p, inputs):
        (x,) = inputs
        h, w = self.sizes(p, x)
        return [TensorType((x.shape[0], x.shape[1], h, w), x.dtype), TensorType((h + 1,), "int64"), TensorType((w + 1,), "int64")]

    def flops(self, p, inputs, outputs):
        # every input cell is read about once per window that holds it
        return inputs[0].sample_size * (2 if p.overlapping else 1)

    def build(self, p, inputs):
        import torch

        x = inputs[0]
        (h, w), (n_h, n_w) = self.sizes(p, x), x.shape[2:]
        mode, overlapping, pseudo = self.mode, p.overlapping, p.pseudo_random

        def draw(generator):
            return pooling_sequence(n_h, h, pseudo, generator), pooling_sequence(n_w, w, pseudo, generator)

        fixed = draw(torch.Generator().manual_seed(p.seed))
        fresh = not p.deterministic

        def fractional(xs, v, training):
            rows, cols = draw(None) if training and fresh else fixed
            y = fractional_pool(xs[0], rows, cols, overlapping, mode)
            return y, torch.tensor(rows, device=y.device), torch.tensor(cols, device=y.device)

        fractional.__name__ = self.name
        return fractional


_FRACTIONAL_DOC = """

    `pooling_ratio` (one float, or [rows, cols]; each >= 1) shrinks H and W
    to floor(n / ratio). In training each run draws new sequences (from
    torch's global RNG, so torch.manual_seed fixes them) unless
    `deterministic: true`; in evaluation, and always with `deterministic`,
    the sequences are the ones drawn once from `seed`, so evaluation is
    reproducible and independent of the batch. Outputs 1 and 2 (`node:1`,
    `node:2`) are the row and column pooling sequences, as in TF.
"""


@register
class FractionalMaxPool(FractionalPool):
    __doc__ = (
        """Fractional max pooling, as tf.nn.fractional_max_pool (Graham, 2014): windows of
    K or K + 1 cells, cut by a random (or pseudo-random) sequence."""
        + _FRACTIONAL_DOC
        + """
    Example:
        {op: fractional_max_pool, pooling_ratio: [1.44, 1.73], pseudo_random: true, seed: 7}

    Input [N, C, H, W]; outputs [N, C, floor(H / rh), floor(W / rw)], then the
    row sequence [H' + 1] and the column sequence [W' + 1], int64.
    """
    )

    name = "fractional_max_pool"
    tf_op = "FractionalMaxPool"
    mode = "MAX"
    tf_notes = "pooling_ratio is [rows, cols] (TF: [1.0, rows, cols, 1.0]); seed2 is not needed: `seed` fixes both sequences."


@register
class FractionalAvgPool(FractionalPool):
    __doc__ = (
        """Fractional average pooling, as tf.nn.fractional_avg_pool: the mean of windows
    of K or K + 1 cells, cut by a random (or pseudo-random) sequence."""
        + _FRACTIONAL_DOC
        + """
    Example:
        {op: fractional_avg_pool, pooling_ratio: 1.5, overlapping: true}

    Input [N, C, H, W]; outputs [N, C, floor(H / rh), floor(W / rw)], then the
    row sequence [H' + 1] and the column sequence [W' + 1], int64.
    """
    )

    name = "fractional_avg_pool"
    tf_op = "FractionalAvgPool"
    mode = "AVG"
    tf_notes = "pooling_ratio is [rows, cols] (TF: [1.0, rows, cols, 1.0]); seed2 is not needed: `seed` fixes both sequences."
