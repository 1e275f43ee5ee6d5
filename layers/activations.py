"""Activations (tf_semantics.md §1): element-wise functions, crelu, bias_add, softmax."""

from __future__ import annotations

import math

from pydantic import Field

from tfn.layers import imports as im
from tfn.layers.attrs import Initializer, resolve_axis
from tfn.layers.base import Op, OpError, Params, TensorType, VariableDef, register

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# --- import rules (layers/imports.py) ------------------------------------------

def keras_relu(f: im.Foreign) -> im.Emitted:
    """Keras's ReLU layer: plain, capped at 6 (relu6) or with a negative slope (leaky_relu); not both, no threshold."""
    f.require(not f.attr("threshold", 0.0), f"threshold {f.attrs.get('threshold')}: tfn's relu has none")
    cap, slope = f.attr("max_value", None), float(f.attr("negative_slope", 0.0) or 0.0)
    f.require(cap in (None, 6, 6.0), f"max_value {cap}: tfn has relu (none) and relu6 (6)")
    f.require(not (cap and slope), f"max_value {cap} with negative_slope {slope}: tfn's relu6 has no slope")
    if slope:
        return im.Emitted({"alpha": slope}, op="leaky_relu", feature_order=im.same_order(f))
    return im.Emitted(op="relu6" if cap else None, feature_order=im.same_order(f))


def leaky_alpha(f: im.Foreign) -> im.Emitted:
    """tf.keras's LeakyReLU `alpha` (default 0.3), Keras 3's `negative_slope` (0.3; the leaky_relu activation 0.2),
    TF's LeakyRelu `alpha` (0.2), ONNX's LeakyRelu `alpha` (0.01)."""
    default = {"keras": 0.3, "keras_activation": 0.2, "tf": 0.2, "onnx": 0.01}[f.framework]
    alpha = f.attr("negative_slope", None) if f.attr("negative_slope", None) is not None else f.attr("alpha", default)
    return im.Emitted({"alpha": float(alpha)}, feature_order=im.same_order(f))


def exact_gelu(f: im.Foreign) -> im.Emitted:
    """Keras's gelu activation is exact (erf) unless `approximate`; ONNX Gelu says `tanh` for the approximation."""
    approximate = f.attr("approximate", False)
    return im.Emitted({"approximate": approximate in (True, "tanh")}, feature_order=im.same_order(f))


def onnx_swish(f: im.Foreign) -> im.Emitted:
    """ONNX Swish (opset 24): x * sigmoid(alpha * x), tfn's beta."""
    return im.Emitted({"beta": float(f.attr("alpha", 1.0))}, feature_order=im.same_order(f))


def selu_constants(f: im.Foreign) -> im.Emitted:
    alpha, gamma = float(f.attr("alpha", SELU_ALPHA)), float(f.attr("gamma", SELU_SCALE))
    f.require(abs(alpha - SELU_ALPHA) < 1e-6 and abs(gamma - SELU_SCALE) < 1e-6, f"alpha {alpha}, gamma {gamma}: tfn's selu has the standard constants")
    return im.Emitted(feature_order=im.same_order(f))


def hard_sigmoid_slope(f: im.Foreign) -> im.Emitted:
    """tf.keras 2's hard_sigmoid has slope 0.2, Keras 3's 1/6 (the reader passes the Keras version); ONNX: alpha, beta 0.5."""
    if f.framework == "onnx":
        f.require(float(f.attr("beta", 0.5)) == 0.5, f"beta {f.attrs.get('beta')}: tfn's hard_sigmoid is centred at 0.5")
        return im.Emitted({"slope": float(f.attr("alpha", 0.2))}, feature_order=im.same_order(f))
    slope = 1.0 / 6.0 if int(f.attr("keras_major", 2)) >= 3 else 0.2
    return im.Emitted({"slope": slope}, feature_order=im.same_order(f))


def keras_prelu(f: im.Foreign) -> im.Emitted:
    """Keras PReLU: alpha has the sample's shape (features last) with shared axes 1; shared_axes count the sample's axes from 1."""
    import numpy as np

    shared = sorted(f.axis(int(a)) for a in (f.attr("shared_axes", None) or []))
    alpha = f.weight(0)
    if f.channels_last and alpha.ndim >= 2:
        alpha = np.moveaxis(alpha, -1, 0)
    return im.Emitted({"shared_axes": shared}, {"alpha": alpha}, feature_order=None if f.rank > 2 else _prelu_order(f))


def onnx_prelu(f: im.Foreign) -> im.Emitted:
    """ONNX PRelu: a constant slope that broadcasts (NumPy's rule, from the right) to one sample; its size-1 axes are shared."""
    import numpy as np

    slope = np.asarray(f.weight(0), dtype=np.float32)
    sample = f.inputs[0].sample_shape
    f.require(len(f.inputs) == 1 and slope.ndim <= len(sample), f"a slope of shape {list(slope.shape)} for a sample {list(sample)}")
    shape = (1,) * (len(sample) - slope.ndim) + slope.shape
    f.require(all(s in (1, n) for s, n in zip(shape, sample)), f"a slope of shape {list(slope.shape)} for a sample {list(sample)}")
    return im.Emitted({"shared_axes": [a for a, s in enumerate(shape, 1) if s == 1]}, {"alpha": slope.reshape(shape)})


def _prelu_order(f: im.Foreign):
    f.require(f.order(0) is None, "a PReLU on features flattened from an NHWC tensor")
    return None


def onnx_clip(f: im.Foreign) -> im.Emitted:
    bounds = [float(w) for w in f.weights] if f.weights else [f.attr("min", None), f.attr("max", None)]
    f.require(bounds == [0.0, 6.0], f"Clip to {bounds}: tfn has relu6 (0 to 6)")
    return im.Emitted(feature_order=im.same_order(f))


def unit_alpha(f: im.Foreign) -> im.Emitted:
    f.require(float(f.attr("alpha", 1.0)) == 1.0, f"alpha {f.attrs.get('alpha')}: tfn's elu has alpha 1")
    return im.Emitted(feature_order=im.same_order(f))


def softmax_axis(f: im.Foreign) -> im.Emitted:
    """Keras and TF normalise the last axis (ONNX: its `axis`, default -1 since opset 13)."""
    if f.framework == "tf":
        axis = -1
    else:
        axis = f.attr("axis", -1)
        f.require(isinstance(axis, int), f"axis {axis!r}: tfn normalises along one axis")
    return im.Emitted({"axis": f.axis(axis)}, feature_order=im.same_order(f))


def tf_bias_add(f: im.Foreign) -> im.Emitted:
    import numpy as np

    f.require(f.attr("data_format", "NHWC") == "NHWC", f"data_format {f.attrs.get('data_format')}: tfn imports NHWC graphs")
    order = f.order(0)
    bias = f.weight(0) if order is None else f.weight(0)[np.asarray(order)]
    return im.Emitted(variables={"bias": bias}, feature_order=order)



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
    imports = (im.keras("ReLU", keras_relu, "max_value 6: relu6; negative_slope: leaky_relu"), im.keras_activation("relu"), im.tf("Relu"), im.onnx("Relu"))
    torch_function = "torch.relu"
    commutes_with_max = True


@register
class Relu6(Elementwise):
    """min(max(x, 0), 6), as tf.nn.relu6. The gradient is 0 at both 0 and 6, as in TF.

    Example:
        {op: relu6}

    Input any shape; output the same shape.
    """

    name = "relu6"
    imports = (im.keras_activation("relu6"), im.tf("Relu6"), im.onnx("Clip", onnx_clip, "min 0, max 6"))
    cost = 2
    torch_function = "torch.nn.functional.relu6"
    commutes_with_max = True


@register
class Sigmoid(Elementwise):
    """The logistic function 1 / (1 + exp(-x)), as tf.sigmoid.

    Example:
        {op: sigmoid}

    Input any shape; output the same shape, in (0, 1).
    """

    name = "sigmoid"
    imports = (im.keras_activation("sigmoid"), im.tf("Sigmoid"), im.onnx("Sigmoid"))
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
    imports = (im.keras_activation("tanh"), im.tf("Tanh"), im.onnx("Tanh"))
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
    imports = (im.keras("ELU", unit_alpha, "alpha 1"), im.keras_activation("elu"), im.tf("Elu"), im.onnx("Elu", unit_alpha, "alpha 1"))
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
    imports = (im.keras_activation("softsign"), im.tf("Softsign"), im.onnx("Softsign"))
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
    imports = (im.keras_activation("softplus"), im.tf("Softplus"), im.onnx("Softplus"))
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
    imports = (im.tf("BiasAdd", tf_bias_add, "not after a conv or MatMul, which take it as their bias"),)
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
    imports = (im.keras("Softmax", softmax_axis), im.keras_activation("softmax", softmax_axis), im.tf("Softmax", softmax_axis), im.onnx("Softmax", softmax_axis))
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
    imports = (im.keras_activation("log_softmax", softmax_axis), im.tf("LogSoftmax", softmax_axis), im.onnx("LogSoftmax", softmax_axis))
    tf_notes = "tf.nn.log_softmax(logits, axis); tfn's default axis is 1, the channel axis (TF: -1)."


@register
class LeakyRelu(Elementwise):
    """Leaky ReLU, as tf.nn.leaky_relu: x where x > 0, else alpha * x.

    TF computes where(x > 0, x, alpha * x), which differs from
    max(x, alpha * x) when alpha > 1. The gradient at 0 is alpha, as in TF.
    The default alpha 0.2 is tf.nn.leaky_relu's (Keras's LeakyReLU layer
    defaults to 0.3).

    Example:
        {op: leaky_relu, alpha: 0.1}

    Input any shape; output the same shape.
    """

    name = "leaky_relu"
    imports = (im.keras("LeakyReLU", leaky_alpha), im.keras_activation("leaky_relu", leaky_alpha), im.tf("LeakyRelu", leaky_alpha), im.onnx("LeakyRelu", leaky_alpha))
    cost = 2
    tf_notes = "tf.nn.leaky_relu(features, alpha=0.2); tf.keras.layers.LeakyReLU's default alpha is 0.3: give it explicitly."

    class Params(Params):
        alpha: float = 0.2

    def build(self, p, inputs):
        import torch.nn.functional as F

        alpha = p.alpha

        def leaky_relu(xs, v, training):
            # PyTorch's kernel is TF's where(x > 0, x, alpha * x), its gradient alpha at 0 included
            return F.leaky_relu(xs[0], alpha)

        return leaky_relu


@register
class Gelu(Elementwise):
    """Gaussian error linear unit, as tf.nn.gelu: x * P(X <= x) for a standard normal X.

    Exact (the default, as tf.nn.gelu and tf.keras 2): 0.5 x (1 + erf(x /
    sqrt(2))). `approximate: true` is the tanh form 0.5 x (1 + tanh(sqrt(2 /
    pi) (x + 0.044715 x^3))), Keras 3's default.

    Example:
        {op: gelu, approximate: true}

    Input any shape; output the same shape.
    """

    name = "gelu"
    imports = (
        im.keras_activation("gelu", exact_gelu),
        im.tf("Gelu", exact_gelu, "tf.nn.gelu's subgraph (erf or tanh), recognised whole"),
        im.onnx("Gelu", exact_gelu, "or its erf / tanh subgraph"),
    )
    # TF has no Gelu op (tf.nn.gelu is Mul, Erfc, ...; "Gelu" above names the subgraph the TF importer recognises),
    # so a GraphDef shows tfn's name
    tf_op = "gelu"
    cost = 8
    tf_notes = "tf.nn.gelu(features, approximate=False); Keras 3's activations.gelu defaults to approximate=True."

    class Params(Params):
        approximate: bool = False

    def build(self, p, inputs):
        import torch.nn.functional as F

        approximate = "tanh" if p.approximate else "none"

        def gelu(xs, v, training):
            return F.gelu(xs[0], approximate=approximate)

        return gelu




@register
class Selu(Elementwise):
    """Scaled exponential linear unit, as tf.nn.selu: scale * (x if x > 0 else alpha * (exp(x) - 1)).

    alpha = 1.6732632 and scale = 1.0507010 (Klambauer et al.). The gradient
    at exactly 0 is scale, as TF's (PyTorch's selu gives scale * alpha).

    Example:
        {op: selu}

    Input any shape; output the same shape.
    """

    name = "selu"
    imports = (im.keras_activation("selu"), im.tf("Selu"), im.onnx("Selu", selu_constants))
    cost = 4
    tf_notes = "tf.nn.selu; TF's gradient at 0 (scale, not scale * alpha as torch.selu)."

    def build(self, p, inputs):
        import torch

        def selu(xs, v, training):
            x = xs[0]
            # TF's kernel tests x < 0, so 0 takes the linear branch and its gradient; the
            # clamp keeps exp of a large x (the branch not taken) from turning 0 * inf into NaN
            return SELU_SCALE * torch.where(x < 0, SELU_ALPHA * torch.expm1(x.clamp(max=0)), x)

        return selu


@register
class Swish(Elementwise):
    """Swish, as tf.nn.swish: x * sigmoid(beta * x).

    With beta 1 (the default) it is SiLU (`silu` is the same op under
    Keras 3's and PyTorch's name).

    Example:
        {op: swish, beta: 1.5}

    Input any shape; output the same shape.
    """

    name = "swish"
    imports = (im.keras_activation("swish"), im.onnx("Swish", onnx_swish, "alpha: beta"))
    cost = 5
    tf_notes = "tf.nn.swish(features, beta=1.0) (also tf.nn.silu); PyTorch's F.silu has no beta."

    class Params(Params):
        beta: float = 1.0

    def build(self, p, inputs):
        import torch

        beta = p.beta

        def swish(xs, v, training):
            x = xs[0]
            return x * torch.sigmoid(beta * x)

        swish.__name__ = self.name
        return swish


@register
class Silu(Swish):
    """SiLU, as tf.nn.silu: x * sigmoid(beta * x); the same op as `swish`.

    Example:
        {op: silu}

    Input any shape; output the same shape.
    """

    name = "silu"
    imports = (im.keras_activation("silu"),)
    tf_notes = "tf.nn.silu(features, beta=1.0), an alias of tf.nn.swish; Keras's activations.silu."


@register
class HardSigmoid(Elementwise):
    """Piecewise-linear sigmoid: clip(slope * x + 0.5, 0, 1), as tf.keras 2's hard_sigmoid.

    The default slope 0.2 is tf.keras 2's (and TF 1.x Keras's); Keras 3
    changed it to 1/6 (relu6(x + 3) / 6): give `slope: 0.16666666666666666`
    for that. The gradient is slope on the closed interval where the output
    lies in [0, 1] (TF's clip_by_value passes it at the corners); Keras 3's
    relu6 form gives 0 at the two corners.

    Example:
        {op: hard_sigmoid}

    Input any shape; output the same shape, in [0, 1].
    """

    name = "hard_sigmoid"
    imports = (im.keras_activation("hard_sigmoid", hard_sigmoid_slope, "slope 0.2, Keras 3: 1/6"), im.onnx("HardSigmoid", hard_sigmoid_slope))
    cost = 3
    tf_notes = "tf.keras.activations.hard_sigmoid (tf.keras 2: slope 0.2); Keras 3's hard_sigmoid is slope 1/6."

    class Params(Params):
        slope: float = Field(0.2, gt=0.0)

    def build(self, p, inputs):
        import torch

        slope = p.slope

        def hard_sigmoid(xs, v, training):
            return torch.clamp(slope * xs[0] + 0.5, 0.0, 1.0)

        return hard_sigmoid


@register
class Prelu(Op):
    """Parametric ReLU, as tf.keras.layers.PReLU: relu(x) - alpha * relu(-x), alpha learned.

    By default alpha is one value per channel (axis 1), shared over the
    other axes. `shared_axes` (Keras's attribute) lists the axes that share
    one alpha, counted channels-first with the batch as 0; `shared_axes: []`
    learns one alpha per element (Keras's default). The variable `alpha`
    has one sample's shape with the shared axes set to 1, as Keras stores it.

    Example:
        {op: prelu, alpha_initializer: {constant: 0.25}}

    Input [N, C, ...]; output the same shape. Variable alpha [C, 1, ...] (shared axes 1).
    """

    name = "prelu"
    imports = (im.keras("PReLU", keras_prelu), im.onnx("PRelu", onnx_prelu))
    family = "activation"
    tf_notes = (
        "tf.keras.layers.PReLU(alpha_initializer='zeros', shared_axes=None); tfn's default shares alpha over every axis "
        "but the channel axis 1 (Keras: shared_axes=[1, 2] in NHWC); alpha's layout is channels-first."
    )
    example_inputs = ((2, 3, 4, 5),)

    class Params(Params):
        alpha_initializer: Initializer = "zeros"
        shared_axes: list[int] | None = None

    def alpha_shape(self, p, x: TensorType) -> tuple[int, ...]:
        if x.rank < 2:
            raise OpError(f"expects an input [N, C, ...], got {x}")
        shared = range(2, x.rank) if p.shared_axes is None else [resolve_axis(a, x.rank, "shared_axes") for a in p.shared_axes]
        return tuple(1 if axis in shared else n for axis, n in enumerate(x.shape[1:], 1))

    def infer(self, p, inputs):
        self.alpha_shape(p, inputs[0])
        return [inputs[0]]

    def variables(self, p, inputs):
        return [VariableDef("alpha", self.alpha_shape(p, inputs[0]), p.alpha_initializer)]

    def flops(self, p, inputs, outputs):
        return 4 * outputs[0].sample_size

    def build(self, p, inputs):
        import torch

        def prelu(xs, v, training):
            x = xs[0]
            # Keras's form: the gradient at 0 is 0 for x and for alpha, as TF's relu gives
            return torch.relu(x) - v["alpha"] * torch.relu(-x)

        return prelu
