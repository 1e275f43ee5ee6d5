"""Convolutions with TF's padding rule (tf_semantics.md §2)."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from tfn.layers.attrs import Initializer, Padding, Size2, torch_pads, window_output
from tfn.layers.base import Op, OpError, Params, TensorType, VariableDef, register


@register
class Conv2D(Op):
    """2-D convolution (cross-correlation), as tf.layers.conv2d.

    SAME padding follows TF: the total padding is split with the odd cell at
    the end (bottom/right), which PyTorch's symmetric padding gets wrong for
    stride 2 on even inputs. The kernel is OIHW, PyTorch's layout.

    Example:
        {op: conv2d, filters: 4, kernel_size: 3, strides: 2, padding: SAME}

    Input [N, C, H, W]; output [N, filters, H', W'].
    """

    name = "conv2d"
    example_inputs = ((2, 3, 6, 7),)
    family = "convolution"
    tf_notes = "tf.layers.conv2d / tf.nn.conv2d; data_format is always channels-first; kernel OIHW (TF: HWIO)."

    class Params(Params):
        filters: PositiveInt
        kernel_size: Size2
        strides: Size2 = [1, 1]
        padding: Padding = "VALID"
        dilation_rate: Size2 = [1, 1]
        use_bias: bool = True
        kernel_initializer: Initializer = "glorot_uniform"
        bias_initializer: Initializer = "zeros"
        kernel_regularizer: float = 0.0

    def _geometry(self, p, x: TensorType):
        if x.rank != 4:
            raise OpError(f"expects a 4-D input [N, C, H, W], got {x}")
        if max(p.strides) > 1 and max(p.dilation_rate) > 1:
            raise OpError("strides > 1 together with dilation_rate > 1 is not supported (as in TF)", "dilation_rate")
        axes = [window_output(n, k, s, d, p.padding) for n, k, s, d in zip(x.shape[2:], p.kernel_size, p.strides, p.dilation_rate)]
        for (out, _, _), n, k, d in zip(axes, x.shape[2:], p.kernel_size, p.dilation_rate):
            if out < 1:
                raise OpError(f"kernel {p.kernel_size} (dilated {(k - 1) * d + 1}) is larger than the VALID input {list(x.shape[2:])}", "kernel_size")
        return axes

    def infer(self, p, inputs):
        (x,) = inputs
        axes = self._geometry(p, x)
        return [TensorType((x.shape[0], p.filters, *(a[0] for a in axes)), x.dtype)]

    def variables(self, p, inputs):
        channels = inputs[0].shape[1]
        kernel = VariableDef("kernel", (p.filters, channels, *p.kernel_size), p.kernel_initializer, regularizer=p.kernel_regularizer)
        return [kernel] + ([VariableDef("bias", (p.filters,), p.bias_initializer)] if p.use_bias else [])

    def flops(self, p, inputs, outputs):
        out = outputs[0]
        macs = out.sample_size * inputs[0].shape[1] * p.kernel_size[0] * p.kernel_size[1]
        return 2 * macs + (out.sample_size if p.use_bias else 0)

    def build(self, p, inputs):
        import torch.nn.functional as F

        pads = [(before, after) for _, before, after in self._geometry(p, inputs[0])]
        stride, dilation = tuple(p.strides), tuple(p.dilation_rate)
        if all(before == after for before, after in pads):
            # symmetric: let the convolution pad, no copy of the input
            padding = tuple(before for before, _ in pads)

            def conv2d(xs, v, training):
                return F.conv2d(xs[0], v["kernel"], v.get("bias"), stride, padding, dilation)
        else:
            pad = torch_pads(pads)

            def conv2d(xs, v, training):
                return F.conv2d(F.pad(xs[0], pad), v["kernel"], v.get("bias"), stride, 0, dilation)

        return conv2d
