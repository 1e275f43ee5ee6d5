"""Pooling with TF's padding rule (tf_semantics.md §3)."""

from __future__ import annotations

from pydantic import model_validator

from tfn.layers.attrs import Padding, Size2, torch_pads, window_output
from tfn.layers.base import Op, OpError, Params, TensorType, register


class Pool2DParams(Params):
    pool_size: Size2 = [2, 2]
    strides: Size2 | None = None
    padding: Padding = "VALID"

    @model_validator(mode="after")
    def _default_strides(self):
        if self.strides is None:  # Keras: strides default to the pool size
            object.__setattr__(self, "strides", list(self.pool_size))
        return self


def pool2d_geometry(op: Op, p, x: TensorType):
    if x.rank != 4:
        raise OpError(f"expects a 4-D input [N, C, H, W], got {x}")
    axes = [window_output(n, k, s, 1, p.padding) for n, k, s in zip(x.shape[2:], p.pool_size, p.strides)]
    if any(out < 1 for out, _, _ in axes):
        raise OpError(f"pool_size {p.pool_size} is larger than the VALID input {list(x.shape[2:])}", "pool_size")
    return axes


@register
class MaxPool(Op):
    """2-D max pooling, as tf.nn.max_pool / tf.layers.max_pooling2d.

    SAME padding cells never win: they hold -inf, not 0, so a window of
    negative values at the border keeps its maximum.

    Example:
        {op: max_pool, pool_size: 2}

    Input [N, C, H, W]; output [N, C, H', W'].
    """

    name = "max_pool"
    family = "pooling"
    tf_notes = "strides default to pool_size (Keras); padding VALID by default."
    Params = Pool2DParams

    def infer(self, p, inputs):
        (x,) = inputs
        axes = pool2d_geometry(self, p, x)
        return [TensorType((x.shape[0], x.shape[1], *(a[0] for a in axes)), x.dtype)]

    def flops(self, p, inputs, outputs):
        return outputs[0].sample_size * p.pool_size[0] * p.pool_size[1]

    def build(self, p, inputs):
        import torch.nn.functional as F

        pads = [(b, a) for _, b, a in pool2d_geometry(self, p, inputs[0])]
        kernel, stride = tuple(p.pool_size), tuple(p.strides)
        if all(b == a and 2 * b <= k for (b, a), k in zip(pads, kernel)):
            # PyTorch's own padding is implicit -inf, exactly TF's, when symmetric
            padding = tuple(b for b, _ in pads)

            def max_pool(xs, v, training):
                return F.max_pool2d(xs[0], kernel, stride, padding)
        else:
            pad = torch_pads(pads)

            def max_pool(xs, v, training):
                return F.max_pool2d(F.pad(xs[0], pad, value=float("-inf")), kernel, stride)

        return max_pool
