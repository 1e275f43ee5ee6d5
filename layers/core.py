"""Structural ops: dense, flatten, dropout."""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from tfn.layers.base import Op, OpError, Params, TensorType, VariableDef, register
from tfn.layers.attrs import Initializer, Regularizer


@register
class Dense(Op):
    """Fully connected layer on the feature axis 1, as tf.layers.dense: x @ kernel.T + bias.

    On [N, in] it is the usual layer. On a rank > 2 input [N, in, ...] it
    maps the features (axis 1) at every position of the other axes with the
    same kernel: what Keras's Dense does to an NHWC or [N, T, F] tensor's
    last axis, in tfn's channels-first layout (a 1x1 convolution). The
    kernel is [units, in] (PyTorch's layout; TF's is [in, units]).

    Example:
        {op: dense, units: 10}

    Input [N, in, ...]; output [N, units, ...].
    """

    name = "dense"
    example_inputs = ((2, 6),)
    family = "core"
    tf_notes = (
        "tf.layers.dense / tf.keras.layers.Dense; on a rank > 2 input it acts on axis 1, the feature axis of tfn's layout "
        "(Keras: the last axis of NHWC / [N, T, F]); kernel [units, in] (TF: [in, units])."
    )

    class Params(Params):
        units: PositiveInt
        use_bias: bool = True
        kernel_initializer: Initializer = "glorot_uniform"
        bias_initializer: Initializer = "zeros"
        kernel_regularizer: Regularizer = 0.0

    def infer(self, p, inputs):
        (x,) = inputs
        if x.rank < 2:
            raise OpError(f"expects an input [N, features, ...], got {x}")
        return [TensorType((x.shape[0], p.units, *x.shape[2:]), x.dtype)]

    def variables(self, p, inputs):
        features = inputs[0].shape[1]
        kernel = VariableDef("kernel", (p.units, features), p.kernel_initializer, regularizer=p.kernel_regularizer)
        return [kernel] + ([VariableDef("bias", (p.units,), p.bias_initializer)] if p.use_bias else [])

    def flops(self, p, inputs, outputs):
        positions = inputs[0].sample_size // inputs[0].shape[1]
        return positions * (2 * inputs[0].shape[1] * p.units + (p.units if p.use_bias else 0))

    def build(self, p, inputs):
        import torch.nn.functional as F

        if inputs[0].rank == 2:

            def dense(xs, v, training):
                return F.linear(xs[0], v["kernel"], v.get("bias"))

            return dense

        def dense_on_axis_1(xs, v, training):
            return F.linear(xs[0].movedim(1, -1), v["kernel"], v.get("bias")).movedim(-1, 1)

        return dense_on_axis_1


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
    `noise_shape` has one entry per axis, the batch axis first, channels-first
    order: 1 shares one keep/drop decision along that axis, -1 (or the axis
    size) draws one per element. `[-1, -1, 1, 1]` drops whole feature maps,
    one decision per sample and channel (TF's `[N, 1, 1, C]` in NHWC).

    Example:
        {op: dropout, rate: 0.5, noise_shape: [-1, -1, 1]}

    Input any shape; output the same shape.
    """

    name = "dropout"
    family = "core"
    is_random = True
    tf_notes = "noise_shape counts channels-first; -1 stands for the axis's full size (the batch size is unknown in a spec)."
    example_inputs = ((2, 3, 4),)

    class Params(Params):
        rate: float | None = Field(default=None, ge=0.0, lt=1.0)
        keep_prob: float | None = Field(default=None, gt=0.0, le=1.0)
        noise_shape: list[int] | None = None

        @model_validator(mode="after")
        def _one_of(self):
            if self.rate is not None and self.keep_prob is not None:
                raise ValueError("give rate or keep_prob, not both")
            if self.rate is None and self.keep_prob is None:
                raise ValueError("give rate (fraction dropped) or keep_prob (fraction kept)")
            if self.noise_shape is not None and any(d == 0 or d < -1 for d in self.noise_shape):
                raise ValueError(f"noise_shape entries are 1, -1 or an axis size, got {self.noise_shape}")
            return self

        @property
        def keep(self) -> float:
            return self.keep_prob if self.keep_prob is not None else 1.0 - self.rate

    def infer(self, p, inputs):
        (x,) = inputs
        if p.noise_shape is not None:
            if len(p.noise_shape) != x.rank:
                raise OpError(f"noise_shape {p.noise_shape} has {len(p.noise_shape)} entries for a rank-{x.rank} input {x}; give one per axis, the batch axis first", "noise_shape")
            for axis, (d, n) in enumerate(zip(p.noise_shape, x.shape)):
                if d not in (1, -1) and d != n:
                    raise OpError(f"noise_shape {p.noise_shape} does not broadcast to {x}: axis {axis} must be 1, -1 or {n if n else 'the batch size'}", "noise_shape")
        return [x]

    def flops(self, p, inputs, outputs):
        return outputs[0].sample_size

    def build(self, p, inputs):
        import torch

        keep = p.keep
        shared = [d == 1 for d in p.noise_shape] if p.noise_shape is not None else None

        def dropout(xs, v, training):
            x = xs[0]
            if not training or keep == 1.0:
                return x
            shape = x.shape if shared is None else tuple(1 if s else n for s, n in zip(shared, x.shape))
            keep_mask = torch.rand(shape, dtype=x.dtype, device=x.device) >= 1.0 - keep  # TF: U >= rate
            return x * keep_mask * (1.0 / keep)

        return dropout
