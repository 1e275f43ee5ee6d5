"""Math over tensors: batched matrix products and reductions (tf_semantics.md §10).

Every op works on one sample's axes: the batch axis 0 is never reduced, and
a matrix product multiplies each sample's matrices.
"""

from __future__ import annotations

import math

from tfn.layers import imports as im
from tfn.layers.attrs import resolve_axis
from tfn.layers.base import Op, OpError, Params, TensorType, register


# --- import rules (layers/imports.py) ------------------------------------------


def reduce_axes(f: im.Foreign) -> im.Emitted:
    """TF Mean/Sum/Max/Min (axes: a constant input, keep_dims) and ONNX Reduce* (axes input or attribute, keepdims 1)."""
    if f.weights:
        given = [int(a) for a in f.weight(0).reshape(-1)]
    else:
        f.require("axes" in f.attrs, "no axes: ONNX would reduce the batch axis too")
        given = [int(a) for a in f.attr("axes")]
    keep = bool(f.attr("keep_dims", f.attr("keepdims", 1 if f.framework == "onnx" else 0)))
    axes = sorted(f.axis(a) for a in given)
    f.require(0 not in axes, "a reduction over the batch axis")
    out_rank = f.rank - (0 if keep else len(axes))
    # tfn's tensors are the source's with the feature axis moved to 1: true of the result only if that axis stays
    f.require(not (f.channels_last and f.rank > 2 and 1 in axes and not keep and out_rank > 2), "a reduction of the feature axis that leaves a rank > 2 tensor")
    return im.Emitted({"axis": axes, "keepdims": keep})


def batch_matmul(f: im.Foreign) -> im.Emitted:
    """TF BatchMatMul(V2, V3) and ONNX MatMul of two computed tensors of one rank >= 3 (adj_x / adj_y).

    A features-last rank-3 pair [N, M, K] @ [N, K, P] is held by tfn as
    a^T [N, K, M] and b^T [N, P, K]; their product in tfn's layout, (a b)^T,
    is b^T a^T: the inputs swap. A rank-2 product of two computed tensors
    multiplies across the batch axis, which tfn's per-sample matmul cannot.
    """
    f.require(len(f.inputs) == 2 and not f.weights, "a constant operand")
    a, b = f.inputs
    f.require(a.rank == b.rank, f"inputs of ranks {a.rank} and {b.rank} (broadcasting)")
    f.require(a.rank > 2, "a product of two computed rank-2 tensors multiplies across the batch axis (tfn's matmul multiplies each sample's matrices)")
    adj_a, adj_b = (bool(f.attr(k, False)) for k in (("adj_x", "adj_y") if f.framework == "tf" else ("transA", "transB")))
    if not f.channels_last:
        return im.Emitted({"transpose_a": adj_a, "transpose_b": adj_b}, op="matmul")
    f.require(a.rank == 3, f"a rank-{a.rank} features-last product: tfn holds the features at axis 1, so the matrices are not the last two axes")
    return im.Emitted({"transpose_a": adj_b, "transpose_b": adj_a}, op="matmul", inputs=(1, 0))


@register
class Matmul(Op):
    """Batched matrix product of two tensors, as tf.matmul: a @ b on the last two axes.

    Each sample's matrices are multiplied: [N, ..., M, K] @ [N, ..., K, P]
    gives [N, ..., M, P]. `transpose_a` / `transpose_b` transpose the last
    two axes of an input first. The axes between the batch and the matrices
    broadcast as in TF 2's batch_matmul (a size-1 axis repeats). Both inputs
    carry the batch axis: a weight matrix shared by all samples is a
    `dense` layer instead.

    Example:
        {op: matmul, inputs: [queries, keys], transpose_a: true}

    Inputs a [N, ..., M, K] and b [N, ..., K, P] (rank 3 or more, the same rank); output [N, ..., M, P].
    """

    name = "matmul"
    imports = tuple(im.tf(kind, batch_matmul, "rank 3 features-last: the inputs swap") for kind in ("BatchMatMulV2", "BatchMatMul", "BatchMatMulV3"))
    family = "math"
    arity = (2, 2)
    tf_notes = (
        "tf.matmul(a, b, transpose_a, transpose_b) on the last two axes; both inputs have tfn's batch axis, so a rank-2 "
        "TF matmul against a weight is `dense`. In the [N, F, T] sequence layout, transpose_a: true gives [N, T, ...] rows."
    )
    example_inputs = ((2, 3, 4), (2, 3, 5))

    class Params(Params):
        transpose_a: bool = False
        transpose_b: bool = False

    def matrices(self, p, inputs) -> tuple[tuple, int, int, int]:
        """(broadcast middle axes, M, K, P), or OpError."""
        a, b = inputs
        if a.rank < 3 or b.rank != a.rank:
            raise OpError(f"expects two inputs of one rank >= 3, [N, ..., M, K] and [N, ..., K, P]; got {a} and {b}", "inputs")
        if a.dtype != b.dtype or not a.dtype.startswith("float"):
            raise OpError(f"expects two float inputs of one dtype, got {a} and {b}", "inputs")
        m, k = a.shape[-2:][::-1] if p.transpose_a else a.shape[-2:]
        k2, n = b.shape[-2:][::-1] if p.transpose_b else b.shape[-2:]
        if k != k2:
            ta, tb = (" (transposed)" if t else "" for t in (p.transpose_a, p.transpose_b))
            raise OpError(f"inner sizes differ: a{ta} is {m}x{k}, b{tb} is {k2}x{n}", "inputs")
        middle = []
        for axis, (da, db) in enumerate(zip(a.shape[1:-2], b.shape[1:-2]), 1):
            if da != db and 1 not in (da, db):
                raise OpError(f"axis {axis} does not broadcast: a has {da}, b has {db}", "inputs")
            middle.append(max(da, db))
        return tuple(middle), m, k, n

    def infer(self, p, inputs):
        middle, m, _, n = self.matrices(p, inputs)
        return [TensorType((inputs[0].shape[0], *middle, m, n), inputs[0].dtype)]

    def flops(self, p, inputs, outputs):
        middle, m, k, n = self.matrices(p, inputs)
        return 2 * math.prod(middle) * m * k * n

    def build(self, p, inputs):
        import torch

        ta, tb = p.transpose_a, p.transpose_b

        def matmul(xs, v, training):
            a, b = xs
            return torch.matmul(a.transpose(-1, -2) if ta else a, b.transpose(-1, -2) if tb else b)

        return matmul


class Reduce(Op):
    """Shared rules of the reductions over `axis` of each sample."""

    family = "math"
    example_inputs = ((2, 3, 4, 5),)
    torch_function: str
    #: integers cannot be averaged without a rounding rule: refuse them
    floats_only: bool = False

    class Params(Params):
        axis: int | list[int] | None = None
        keepdims: bool = False

    def axes(self, p, x: TensorType) -> list[int]:
        if p.axis is None:
            return list(range(1, x.rank))
        listed = [p.axis] if isinstance(p.axis, int) else p.axis
        axes = [resolve_axis(a, x.rank) for a in listed]
        if len(set(axes)) != len(axes):
            raise OpError(f"lists an axis twice: {listed} for a rank-{x.rank} input", "axis")
        return sorted(axes)

    def infer(self, p, inputs):
        (x,) = inputs
        if x.rank < 2:
            raise OpError(f"expects an input with at least one axis after the batch, got {x}")
        axes = self.axes(p, x)
        if self.floats_only and not x.dtype.startswith("float"):
            raise OpError(f"averages float inputs, got {x}; cast it first")
        shape = [1 if a in axes else n for a, n in enumerate(x.shape)] if p.keepdims else [n for a, n in enumerate(x.shape) if a not in axes]
        return [TensorType(tuple(shape), x.dtype)]

    def flops(self, p, inputs, outputs):
        return inputs[0].sample_size

    def build(self, p, inputs):
        import torch

        axes, keep = tuple(self.axes(p, inputs[0])), p.keepdims
        fn = getattr(torch, self.torch_function)

        def reduce(xs, v, training):
            if not axes:  # TF: an empty axis list reduces nothing
                return xs[0]
            return fn(xs[0], axes, keepdim=keep)

        reduce.__name__ = self.name
        return reduce


@register
class ReduceMean(Reduce):
    """The mean over `axis` of each sample, as tf.reduce_mean.

    `axis` is an int or a list, counted channels-first with the batch as 0;
    the batch axis cannot be reduced. Omitted, every axis but the batch is
    reduced (TF's default axis=None would also reduce the batch); an empty
    list reduces nothing, as in TF. `keepdims` keeps reduced axes as size 1.

    Example:
        {op: reduce_mean, axis: [2, 3], keepdims: true}

    Input [N, ...]; output [N, ...] without the reduced axes (kept as size 1 with `keepdims: true`).
    """

    name = "reduce_mean"
    imports = (im.tf("Mean", reduce_axes), im.onnx("ReduceMean", reduce_axes))
    torch_function = "mean"
    floats_only = True
    tf_notes = "tf.reduce_mean(input_tensor, axis, keepdims); axis counts channels-first, batch 0 (NHWC [1, 2] is tfn [2, 3])."


@register
class ReduceSum(Reduce):
    """The sum over `axis` of each sample, as tf.reduce_sum.

    `axis` as in reduce_mean: an int or a list, never the batch axis;
    omitted, every axis but the batch; an empty list reduces nothing.

    Example:
        {op: reduce_sum, axis: -1}

    Input [N, ...]; output [N, ...] without the reduced axes (kept as size 1 with `keepdims: true`).
    """

    name = "reduce_sum"
    imports = (im.tf("Sum", reduce_axes), im.onnx("ReduceSum", reduce_axes))
    torch_function = "sum"
    tf_notes = "tf.reduce_sum(input_tensor, axis, keepdims); axis counts channels-first, batch 0."


@register
class ReduceMax(Reduce):
    """The maximum over `axis` of each sample, as tf.reduce_max.

    The gradient is split equally among tied maxima, as TF's (PyTorch's
    max(dim=) gives it all to one of them). `axis` as in reduce_mean.

    Example:
        {op: reduce_max, axis: 1}

    Input [N, ...]; output [N, ...] without the reduced axes (kept as size 1 with `keepdims: true`).
    """

    name = "reduce_max"
    imports = (im.tf("Max", reduce_axes), im.onnx("ReduceMax", reduce_axes))
    torch_function = "amax"
    tf_notes = "tf.reduce_max(input_tensor, axis, keepdims); ties share the gradient equally, as in TF."


@register
class ReduceMin(Reduce):
    """The minimum over `axis` of each sample, as tf.reduce_min.

    The gradient is split equally among tied minima, as TF's. `axis` as in
    reduce_mean.

    Example:
        {op: reduce_min, axis: [1, 2]}

    Input [N, ...]; output [N, ...] without the reduced axes (kept as size 1 with `keepdims: true`).
    """

    name = "reduce_min"
    imports = (im.tf("Min", reduce_axes), im.onnx("ReduceMin", reduce_axes))
    torch_function = "amin"
    tf_notes = "tf.reduce_min(input_tensor, axis, keepdims); ties share the gradient equally, as in TF."
