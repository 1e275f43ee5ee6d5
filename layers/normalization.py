"""Batch normalization with TF's conventions (tf_semantics.md §5)."""

from __future__ import annotations

from pydantic import Field

from tfn.layers.base import Op, OpError, Params, VariableDef, register


@register
class BatchNormalization(Op):
    """Batch normalization, as tf.layers.batch_normalization.

    Training normalizes with the batch's mean and biased variance and updates
    the moving statistics as TF does: moving = momentum * moving + (1 -
    momentum) * batch (momentum 0.99 is PyTorch's 0.01). The variance that
    updates moving_variance follows TF: unbiased (n/(n-1)) for 4-D inputs,
    which take TF's fused kernel; biased for every other rank. Evaluation
    normalizes with the moving statistics. On 4-D inputs epsilon is at least
    1.001e-5, as TF's fused path raises it (a cuDNN limit).

    Example:
        {op: batch_normalization}

    Input [N, C, ...]; output the same shape. Variables gamma, beta (trainable)
    and moving_mean, moving_variance (not trainable), each [C].
    """

    name = "batch_normalization"
    example_inputs = ((4, 3, 2, 2),)
    family = "normalization"
    tf_notes = "axis is the channel axis 1 (TF's default -1 in NHWC); epsilon 1e-3 and momentum 0.99 as TF."

    class Params(Params):
        momentum: float = Field(default=0.99, ge=0.0, le=1.0)
        epsilon: float = Field(default=1e-3, gt=0.0)
        center: bool = True
        scale: bool = True

    def infer(self, p, inputs):
        (x,) = inputs
        if x.rank < 2:
            raise OpError(f"expects an input [N, C, ...], got {x}")
        return [x]

    def variables(self, p, inputs):
        c = (inputs[0].shape[1],)
        return (
            ([VariableDef("gamma", c, "ones")] if p.scale else [])
            + ([VariableDef("beta", c, "zeros")] if p.center else [])
            + [VariableDef("moving_mean", c, "zeros", trainable=False), VariableDef("moving_variance", c, "ones", trainable=False)]
        )

    def flops(self, p, inputs, outputs):
        return 2 * outputs[0].sample_size

    def build(self, p, inputs):
        import torch
        import torch.nn.functional as F

        fused = inputs[0].rank == 4
        momentum, eps = 1.0 - p.momentum, max(p.epsilon, 1.001e-5) if fused else p.epsilon

        def batch_normalization(xs, v, training):
            x, mean, var = xs[0], v["moving_mean"], v["moving_variance"]
            if not training or fused:
                # PyTorch updates running_var with the unbiased variance: TF's fused kernel does too
                return F.batch_norm(x, mean, var, v.get("gamma"), v.get("beta"), training, momentum, eps)
            axes = [0] + list(range(2, x.dim()))
            with torch.no_grad():
                batch_var, batch_mean = torch.var_mean(x.detach(), dim=axes, correction=0)
                mean.lerp_(batch_mean, momentum)
                var.lerp_(batch_var, momentum)
            return F.batch_norm(x, None, None, v.get("gamma"), v.get("beta"), True, 0.0, eps)

        return batch_normalization
