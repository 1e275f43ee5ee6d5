"""Structural ops: dense, flatten, dropout."""

from __future__ import annotations

from dataclasses import replace

from pydantic import Field, PositiveInt, model_validator

from tfn.layers import imports as im
from tfn.layers.base import Op, OpError, Params, TensorType, VariableDef, register
from tfn.layers.attrs import Initializer, Regularizer


# --- import rules (layers/imports.py) ------------------------------------------


def _dense(f: im.Foreign, kernel, bias) -> im.Emitted:
    """A dense layer from a kernel [in, units]: its rows in tfn's feature order, then [units, in].

    tfn's dense maps axis 1: Keras's features (last; at 1 in tfn's layout). A channels-first source's
    product on the last axis of a rank > 2 tensor is that axis moved to 1, the dense, and back.
    """
    attrs = {"units": int(kernel.shape[1]), "use_bias": bias is not None}
    dense = im.Emitted(attrs, {"kernel": im.dense_kernel(kernel, f.order(0)), **({"bias": bias} if bias is not None else {})})
    if f.rank == 2 or f.channels_last:
        return dense
    to_front = im.to_channels_first(f.rank)
    back = [to_front.index(i) for i in range(f.rank)]
    return im.chain([im.Emitted({"perm": to_front}, op="transpose"), replace(dense, op="dense"), im.Emitted({"perm": back}, op="transpose")])


def keras_dense(f: im.Foreign) -> im.Emitted:
    use_bias = bool(f.attr("use_bias", True))
    return _dense(f, f.weight(0), f.weight(1) if use_bias else None)


def tf_matmul(f: im.Foreign) -> im.Emitted:
    """MatMul(x, kernel) with a constant kernel [in, units] ([units, in] with transpose_b), + a fused BiasAdd;
    of two computed tensors (rank 2: across the batch), refused with math_ops.batch_matmul's reason."""
    if len(f.inputs) == 2:
        from tfn.layers.math_ops import batch_matmul

        return batch_matmul(f)
    f.require(not f.attr("transpose_a", False), "transpose_a")
    kernel = f.weight(0).T if f.attr("transpose_b", False) else f.weight(0)
    return _dense(f, kernel, f.weights[1] if len(f.weights) > 1 else None)


def onnx_gemm(f: im.Foreign) -> im.Emitted:
    f.require(len(f.inputs) == 1 and f.rank == 2, "a Gemm of computed tensors: tfn's dense needs a constant B")
    f.require(not f.attr("transA", 0) and float(f.attr("alpha", 1.0)) == float(f.attr("beta", 1.0)) == 1.0, "transA, alpha or beta")
    kernel = f.weight(0).T if f.attr("transB", 0) else f.weight(0)
    bias = f.weights[1] if len(f.weights) > 1 else None
    f.require(bias is None or bias.shape == (kernel.shape[1],), "a C that is not one bias per unit")
    return _dense(f, kernel, bias)


def onnx_matmul(f: im.Foreign) -> im.Emitted:
    """MatMul(x, B) with a constant 2-D B as dense (+ a fused Add: the bias); of two computed tensors, matmul."""
    if len(f.inputs) == 2:
        from tfn.layers.math_ops import batch_matmul

        return batch_matmul(f)
    f.require(len(f.inputs) == 1 and f.weight(0).ndim == 2, "a MatMul with a constant B of rank > 2: tfn's dense needs a 2-D kernel")
    bias = f.weights[1] if len(f.weights) > 1 else None
    f.require(bias is None or bias.shape == (f.weight(0).shape[1],), "an added constant that is not one bias per unit")
    return _dense(f, f.weight(0), bias)


def keras_flatten(f: im.Foreign) -> im.Emitted:
    im.channels_last_only(f)
    return im.Emitted(feature_order=flatten_order(f))


def flatten_order(f: im.Foreign) -> tuple[int, ...] | None:
    """The order of a flattened input: the source's features-last order, or the input's own for rank 2."""
    if f.rank == 2:
        return f.order(0)
    return im.flattened_order(f.inputs[0].sample_shape) if f.channels_last else None


def onnx_flatten(f: im.Foreign) -> im.Emitted:
    f.require(f.attr("axis", 1) == 1, f"axis {f.attrs.get('axis')}: tfn flattens everything after the batch axis")
    return im.Emitted()


def keras_dropout(f: im.Foreign) -> im.Emitted:
    f.require(f.attr("noise_shape", None) is None, "noise_shape (Keras counts it features-last)")
    attrs = {"rate": float(f.attr("rate"))}
    if f.kind.startswith("Spatial"):  # one decision per sample and channel
        attrs["noise_shape"] = [-1, -1] + [1] * (f.rank - 2)
    return im.Emitted(attrs, feature_order=im.same_order(f))


def onnx_dropout(f: im.Foreign) -> im.Emitted:
    rate = float(f.weights[0]) if f.weights else float(f.attr("ratio", 0.5))
    return im.Emitted({"rate": rate})


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
    imports = (im.keras("Dense", keras_dense), im.tf("MatMul", tf_matmul, "+ BiasAdd", fuses=["BiasAdd"]), im.onnx("Gemm", onnx_gemm), im.onnx("MatMul", onnx_matmul, "+ Add; of two computed tensors: matmul", fuses=["Add"]))
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

    def folds_channel_affine(self, p, inputs):
        return inputs[0].rank == 2  # on [N, ..., in] the units are the last axis, not axis 1

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
    imports = (im.keras("Flatten", keras_flatten), im.onnx("Flatten", onnx_flatten))
    tf_op = "Reshape"
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
    imports = (im.keras("Dropout", keras_dropout),) + tuple(im.keras(f"SpatialDropout{d}D", keras_dropout) for d in (1, 2, 3)) + (im.onnx("Dropout", onnx_dropout),)
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
