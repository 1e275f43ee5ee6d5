"""Element-wise activations (tf_semantics.md §1)."""

from __future__ import annotations

from tfn.layers.base import Op, register


class Elementwise(Op):
    """Shared rules of ops that map each element on its own: same type out as in."""

    family = "activation"

    def infer(self, p, inputs):
        return [inputs[0]]

    def flops(self, p, inputs, outputs):
        return outputs[0].sample_size


@register
class Relu(Elementwise):
    """Rectified linear unit: max(x, 0). The gradient at 0 is 0, as in TF.

    Example:
        {op: relu}

    Input any shape; output the same shape.
    """

    name = "relu"
    example_inputs = ((2, 3, 4),)

    def build(self, p, inputs):
        import torch

        def relu(xs, v, training):
            return torch.relu(xs[0])

        return relu
