"""Structural ops: dense, flatten, dropout."""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from tfn.layers.base import Op, OpError, Params, TensorType, VariableDef, register
from tfn.layers.attrs import Initializer


@register
class Dense(Op):
    """Fully connected layer on the last axis, as tf.layers.dense: x @ kernel.T + bias.

    The kernel is [units, in] (PyTorch's layout; TF's is [in, units]).

    Example:
        {op: dense, units: 10}

    Input [N, ..., in]; output [N, ..., units].
    """

    name = "dense"
    example_inputs = ((2, 6),)
    family = "core"

    class Params(Params):
        units: PositiveInt
        use_bias: bool = True
        kernel_initializer: Initializer = "glorot_uniform"
        bias_initializer: Initializer = "zeros"
        kernel_regularizer: float = 0.0

    def infer(self, p, inputs):
        (x,) = inputs
        if x.rank < 2 or x.shape[-1] is None:
            raise OpError(f"expects an input [N, ..., features], got {x}; put a flatten before it")
        return [TensorType((*x.shape[:-1], p.units), x.dtype)]

    def variables(self, p, inputs):
        features = inputs[0].shape[-1]
        kernel = VariableDef("kernel", (p.units, features), p.kernel_initializer, regularizer=p.kernel_regularizer)
        return [kernel] + ([VariableDef("bias", (p.units,), p.bias_initializer)] if p.use_bias else [])

    def flops(self, p, inputs, outputs):
        rows = inputs[0].sample_size // inputs[0].shape[-1]
        return rows * (2 * inputs[0].shape[-1] * p.units + (p.units if p.use_bias else 0))

    def build(self, p, inputs):
        import torch.nn.functional as F

        def dense(xs, v, training):
            return F.linear(xs[0], v["kernel"], v.get("bias"))

        return dense


@register
class Flatten(Op):
    """Flattens each sample to one axis, in channels-first (C, H, W) order.

    A dense layer after it therefore sees features in PyTorch's order, not
    TF's NHWC order: weights imported from TF need their rows permuted.

    Example:
        {op: flatten}

    Input [N, d1, ..., dk]; output [N, d1*...*dk].
    """

    name = "flatten"
    pure_data_movement = True
    example_inputs = ((2, 3, 4, 4),)
    family = "core"

    def infer(self, p, inputs):
        (x,) = inputs
        if x.rank < 2:
            raise OpError(f"expects an input with a batch axis and at least one more, got {x}")
        return [TensorType((x.shape[0], x.sample_size), x.dtype)]

    def build(self, p, inputs):
        def flatten(xs, v, training):
            return xs[0].flatten(1)

        return flatten


@register
class Dropout(Op):
    """Dropout as tf.nn.dropout: in training, keeps each element with
    probability keep_prob and scales it by 1/keep_prob; identity in evaluation.

    Give either `rate` (tf.layers, the fraction dropped) or `keep_prob` (tf.nn).

    Example:
        {op: dropout, rate: 0.5}

    Input any shape; output the same shape.
    """

    name = "dropout"
    example_inputs = ((2, 3, 4),)
    family = "core"
    is_random = True

    class Params(Params):
        rate: float | None = Field(default=None, ge=0.0, lt=1.0)
        keep_prob: float | None = Field(default=None, gt=0.0, le=1.0)

        @model_validator(mode="after")
        def _one_of(self):
            if self.rate is not None and self.keep_prob is not None:
                raise ValueError("give rate or keep_prob, not both")
            if self.rate is None and self.keep_prob is None:
                raise ValueError("give rate (fraction dropped) or keep_prob (fraction kept)")
            return self

        @property
        def keep(self) -> float:
            return self.keep_prob if self.keep_prob is not None else 1.0 - self.rate

    def infer(self, p, inputs):
        return [inputs[0]]

    def flops(self, p, inputs, outputs):
        return outputs[0].sample_size

    def build(self, p, inputs):
        import torch

        keep = p.keep

        def dropout(xs, v, training):
            x = xs[0]
            if not training or keep == 1.0:
                return x
            mask = torch.rand_like(x) >= 1.0 - keep
            return x * mask * (1.0 / keep)

        return dropout
