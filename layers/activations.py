"""Activations (tf_semantics.md §1): element-wise functions, crelu, bias_add, softmax."""

from __future__ import annotations

import math

from tfn.layers.attrs import Initializer, resolve_axis
from tfn.layers.base import Op, OpError, Params, TensorType, VariableDef, register


class Elementwise(Op):
    """Shared rules of ops that map each element on its own: same type out as in.

    A subclass names its torch function in `torch_function` ("module.name"),
    or overrides `build`.
    """

    family = "activation"
    example_inputs = ((2, 3, 4),)
    #: FLOPs per element, a rough count of the operations of the formula
    cost: int = 1
    torch_function: str

    def infer(self, p, inputs):
        return [inputs[0]]

    def flops(self, p, inputs, outputs):
        return self.cost * outputs[0].sample_size

    def build(self, p, inputs):
        import importlib

        module, _, attr = self.torch_function.rpartition(".")
        fn = getattr(importlib.import_module(module), attr)

        def elementwise(xs, v, training):
            return fn(xs[0])

        elementwise.__name__ = self.name
        return elementwise


@register
class Relu(Elementwise):
    """Rectified linear unit: max(x, 0). The gradient at 0 is 0, as in TF.

    Example:
        {op: relu}

    Input any shape; output the same shape.
    """

    name = "relu"
    torch_function = "torch.relu"


@register
class Relu6(Elementwise):
    """min(max(x, 0), 6), as tf.nn.relu6. The gradient is 0 at both 0 and 6, as in TF.

    Example:
        {op: relu6}

    Input any shape; output the same shape.
    """

    name = "relu6"
    cost = 2
    torch_function = "torch.nn.functional.relu6"


@register
class Sigmoid(Elementwise):
    """The logistic function 1 / (1 + exp(-x)), as tf.sigmoid.

    Example:
        {op: sigmoid}

    Input any shape; output the same shape, in (0, 1).
    """

    name = "sigmoid"
    cost = 4
    torch_function = "torch.sigmoid"


@register
class Tanh(Elementwise):
    """Hyperbolic tangent, as tf.tanh.

    Example:
        {op: tanh}

    Input any shape; output the same shape, in (-1, 1).
    """

    name = "tanh"
    cost = 4
    torch_function = "torch.tanh"


@register
class Elu(Elementwise):
    """Exponential linear unit: x if x > 0 else exp(x) - 1, as tf.nn.elu (alpha is 1).

    Example:
        {op: elu}

    Input any shape; output the same shape.
    """

    name = "elu"
    cost = 3
    torch_function = "torch.nn.functional.elu"


@register
class Softsign(Elementwise):
    """x / (1 + |x|), as tf.nn.softsign.

    Example:
        {op: softsign}

    Input any shape; output the same shape, in (-1, 1).
    """

    name = "softsign"
    cost = 3
    torch_function = "torch.nn.functional.softsign"


@register
class Softplus(Elementwise):
    """log(1 + exp(x)) with TF's thresholds, as tf.nn.softplus.

    With t = log(machine epsilon of the dtype) + 2 (about -13.94 for
    float32): x above -t gives x, x below t gives exp(x), and the rest
    log1p(exp(x)). So softplus(14.0) is exactly 14.0 in float32, as in TF
    (PyTorch's threshold of 20 gives 14.000001). The gradient is that of
    the branch taken (TF's is sigmoid(x) everywhere; they differ by less
    than one part in a million past the thresholds).

    Example:
        {op: softplus}

    Input any shape; output the same shape, positive.
    """

    name = "softplus"
    cost = 4
    tf_notes = "TF's thresholds, not PyTorch's softplus(threshold=20)."

    def build(self, p, inputs):
        import torch

        def softplus(xs, v, training):
            x = xs[0]
            t = math.log(torch.finfo(x.dtype).eps) + 2.0
            # each branch sees a clamped copy: an exp that overflows in a branch not taken
            # would still turn its zero gradient into NaN (0 * inf)
            middle = torch.log1p(torch.exp(x.clamp(t, -t)))
            return torch.where(x > -t, x, torch.where(x < t, torch.exp(x.clamp(max=t)), middle))

        return softplus


@register
class Crelu(Op):
    """Concatenated ReLU: relu(concat([x, -x], axis)), as tf.nn.crelu.

    Doubles the size of `axis`: the first half is relu(x), the second
    relu(-x). The default axis 1 is the channel axis (TF's default -1 in NHWC).

    Example:
        {op: crelu}

    Input [N, C, ...]; output [N, 2C, ...].
    """

    name = "crelu"
    family = "activation"
    tf_notes = "axis counts channels-first with the batch as 0: TF's axis=-1 (NHWC) is tfn's axis 1."
    example_inputs = ((2, 3, 4),)

    class Params(Params):
        axis: int = 1

    def infer(self, p, inputs):
        (x,) = inputs
        axis = resolve_axis(p.axis, x.rank)
        shape = list(x.shape)
        shape[axis] *= 2
        return [TensorType(tuple(shape), x.dtype)]

    def flops(self, p, inputs, outputs):
        return outputs[0].sample_size

    def build(self, p, inputs):
        import torch

        axis = resolve_axis(p.axis, inputs[0].rank)

        def crelu(xs, v, training):
            return torch.relu(torch.cat([xs[0], -xs[0]], axis))

        return crelu


@register
class BiasAdd(Op):
    """Adds a learned bias to the channel axis, as tf.nn.bias_add with a bias variable.

    The bias is one value per channel (axis 1, channels-first; TF's NHWC
    default puts it on the last axis), held in the variable `<node>/bias`.

    Example:
        {op: bias_add, bias_initializer: {constant: 0.1}}

    Input [N, C, ...]; output the same shape. Variable bias [C].
    """

    name = "bias_add"
    family = "activation"
    tf_notes = "tf.nn.bias_add(value, bias, data_format='NCHW'); the bias is a variable of this node."
    example_inputs = ((2, 3, 4, 4),)

    class Params(Params):
        bias_initializer: Initializer = "zeros"

    def infer(self, p, inputs):
        (x,) = inputs
        if x.rank < 2:
            raise OpError(f"expects an input [N, C, ...] with a channel axis, got {x}")
        return [x]

    def variables(self, p, inputs):
        return [VariableDef("bias", (inputs[0].shape[1],), p.bias_initializer)]

    def flops(self, p, inputs, outputs):
        return outputs[0].sample_size

    def build(self, p, inputs):
        rank = inputs[0].rank

        def bias_add(xs, v, training):
            return xs[0] + v["bias"].view(-1, *([1] * (rank - 2)))

        return bias_add


class Normalize(Op):
    family = "activation"
    example_inputs = ((2, 5, 3),)

    class Params(Params):
        axis: int = 1

    def infer(self, p, inputs):
        resolve_axis(p.axis, inputs[0].rank)
        return [inputs[0]]

    def flops(self, p, inputs, outputs):
        return 4 * outputs[0].sample_size

    def build(self, p, inputs):
        import torch

        fn = getattr(torch, self.name)
        axis = resolve_axis(p.axis, inputs[0].rank)

        def normalize(xs, v, training):
            return fn(xs[0], axis)

        normalize.__name__ = self.name
        return normalize


@register
class Softmax(Normalize):
    """exp(x - max) / sum(exp(x - max)) along `axis`, as tf.nn.softmax.

    The default axis 1 is the channel (class) axis; TF's default is the last.

    Example:
        {op: softmax}

    Input [N, C, ...]; output the same shape, summing to 1 along axis.
    """

    name = "softmax"
    tf_notes = "tf.nn.softmax(logits, axis); tfn's default axis is 1, the channel axis (TF: -1)."


@register
class LogSoftmax(Normalize):
    """(x - max) - log(sum(exp(x - max))) along `axis`, as tf.nn.log_softmax.

    The default axis 1 is the channel (class) axis; TF's default is the last.

    Example:
        {op: log_softmax, axis: -1}

    Input [N, C, ...]; output the same shape.
    """

    name = "log_softmax"
    tf_notes = "tf.nn.log_softmax(logits, axis); tfn's default axis is 1, the channel axis (TF: -1)."
