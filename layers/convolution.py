"""Convolutions with TF's padding rule (tf_semantics.md §2).

SAME padding follows TF: the total padding of an axis is split with the odd
cell at the end (bottom/right), which PyTorch's symmetric padding gets wrong
for stride 2 on even inputs. Kernels use PyTorch's layouts (OIHW); their
initializers see TF's fans.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import PositiveInt

from tfn.layers import imports as im
from tfn.layers.attrs import Initializer, Padding, Regularizer, Size1, Size2, Size3, SizeN, per_axis, torch_pads, window_geometry
from tfn.layers.base import Op, OpError, Params, TensorType, VariableDef, register


# --- import rules (layers/imports.py) ------------------------------------------


def _keras_window(f: im.Foreign, spatial: int) -> dict:
    im.channels_last_only(f)
    f.require(f.rank == spatial + 2, f"a rank-{f.rank} input; expected rank {spatial + 2}")
    return {
        "kernel_size": f.spatial_sizes(f.attr("kernel_size"), spatial, "kernel_size"),
        "strides": f.spatial_sizes(f.attr("strides", 1), spatial, "strides"),
        "padding": im.padding_mode(f),
        "dilation_rate": f.spatial_sizes(f.attr("dilation_rate", 1), spatial, "dilation_rate"),
    }


def _bias(f: im.Foreign, index: int, use_bias: bool) -> dict:
    return {"bias": f.weight(index)} if use_bias else {}


def keras_conv(f: im.Foreign) -> im.Emitted:
    """Keras Conv1D/2D/3D: kernel [*k, in, filters] -> [filters, in, *k]."""
    spatial = int(f.kind[-2])
    f.require(f.attr("groups", 1) == 1, f"groups {f.attrs.get('groups')}: tfn's grouped convolution is depthwise_conv2d only")
    use_bias = bool(f.attr("use_bias", True))
    attrs = {"filters": f.attr("filters"), **_keras_window(f, spatial), "use_bias": use_bias}
    return im.Emitted(attrs, {"kernel": im.channels_first_kernel(f.weight(0)), **_bias(f, 1, use_bias)})


def keras_depthwise(f: im.Foreign) -> im.Emitted:
    use_bias = bool(f.attr("use_bias", True))
    attrs = {**_keras_window(f, 2), "channel_multiplier": f.attr("depth_multiplier", 1), "use_bias": use_bias}
    return im.Emitted(attrs, {"depthwise_kernel": im.depthwise_kernel(f.weight(0)), **_bias(f, 1, use_bias)})


def keras_separable(f: im.Foreign) -> im.Emitted:
    use_bias = bool(f.attr("use_bias", True))
    attrs = {"filters": f.attr("filters"), **_keras_window(f, 2), "channel_multiplier": f.attr("depth_multiplier", 1), "use_bias": use_bias}
    variables = {"depthwise_kernel": im.depthwise_kernel(f.weight(0)), "pointwise_kernel": im.channels_first_kernel(f.weight(1))}
    return im.Emitted(attrs, {**variables, **_bias(f, 2, use_bias)})


def keras_conv_transpose(f: im.Foreign) -> im.Emitted:
    """Keras Conv2DTranspose: kernel [kh, kw, filters, in] -> [in, filters, kh, kw]."""
    f.require(f.attr("output_padding", None) is None, f"output_padding {f.attrs.get('output_padding')}: tfn sizes the output as Keras does without it")
    use_bias = bool(f.attr("use_bias", True))
    attrs = {"filters": f.attr("filters"), **_keras_window(f, 2), "use_bias": use_bias}
    return im.Emitted(attrs, {"kernel": im.channels_first_kernel(f.weight(0)), **_bias(f, 1, use_bias)})


def _tf_window(f: im.Foreign) -> dict:
    """A TF NHWC op's strides, dilations and padding, per spatial axis."""
    f.require(f.attr("data_format", "NHWC") in ("NHWC", "NDHWC"), f"data_format {f.attrs.get('data_format')}: tfn imports NHWC graphs")
    strides = f.attr("strides", [1] * f.rank)
    dilations = f.attr("dilations", None) or [1] * len(strides)
    f.require(strides[0] == strides[-1] == 1 and dilations[0] == dilations[-1] == 1, "strides or dilations on the batch or channel axis")
    return {"strides": list(strides[1:-1]), "dilation_rate": list(dilations[1:-1]), "padding": im.padding_mode(f)}


def tf_conv(f: im.Foreign) -> im.Emitted:
    """Conv2D / Conv3D: the kernel [*spatial, in, out] is the op's constant second input."""
    kernel = f.weight(0)
    f.require(len(f.inputs) == 1, "a computed kernel")
    attrs = {"filters": kernel.shape[-1], "kernel_size": list(kernel.shape[:-2]), **_tf_window(f), "use_bias": len(f.weights) > 1}
    return im.Emitted(attrs, {"kernel": im.channels_first_kernel(kernel), **_bias(f, 1, len(f.weights) > 1)})


def tf_depthwise(f: im.Foreign) -> im.Emitted:
    kernel = f.weight(0)
    attrs = {"kernel_size": list(kernel.shape[:2]), "channel_multiplier": kernel.shape[3], **_tf_window(f), "use_bias": len(f.weights) > 1}
    return im.Emitted(attrs, {"depthwise_kernel": im.depthwise_kernel(kernel), **_bias(f, 1, len(f.weights) > 1)})


def tf_conv_transpose(f: im.Foreign) -> im.Emitted:
    """Conv2DBackpropInput(output_shape, filter, x): the output size is the graph's constant."""
    output_shape, kernel = f.weight(0), f.weight(1)
    attrs = {"filters": kernel.shape[2], "kernel_size": list(kernel.shape[:2]), **_tf_window(f), "use_bias": len(f.weights) > 2}
    attrs["output_shape"] = [int(d) for d in output_shape[1:3]]
    return im.Emitted(attrs, {"kernel": im.channels_first_kernel(kernel), **_bias(f, 2, len(f.weights) > 2)})


def onnx_padding(f: im.Foreign, kernel: list[int], strides: list[int], dilation: list[int]) -> str:
    """ONNX's explicit pads (or auto_pad) as SAME or VALID when they are TF's split for this input."""
    auto = f.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "VALID"):
        return "SAME" if auto == "SAME_UPPER" else "VALID"
    f.require(auto == "NOTSET", f"auto_pad {auto}: TF's SAME puts the odd cell at the end (SAME_UPPER)")
    spatial = len(kernel)
    pads = list(f.attr("pads", [0] * 2 * spatial))
    if not any(pads):
        return "VALID"
    same = window_geometry(f.inputs[0].shape[2:], kernel, strides, dilation, "SAME")
    f.require(pads == [b for _, b, _ in same] + [a for _, _, a in same], f"pads {pads} are neither VALID nor TF's SAME for this input")
    return "SAME"


def onnx_conv(f: im.Foreign) -> im.Emitted:
    """ONNX Conv: conv1d/2d/3d, or depthwise_conv2d when each input channel has its own filters."""
    kernel = f.weight(0)
    spatial = kernel.ndim - 2
    size = list(kernel.shape[2:])
    strides, dilation = list(f.attr("strides", [1] * spatial)), list(f.attr("dilations", [1] * spatial))
    window = {"kernel_size": size, "strides": strides, "dilation_rate": dilation, "padding": onnx_padding(f, size, strides, dilation)}
    use_bias = len(f.weights) > 1
    groups, channels = f.attr("group", 1), f.inputs[0].shape[1]
    if groups == 1:
        attrs = {"filters": kernel.shape[0], **window, "use_bias": use_bias}
        return im.Emitted(attrs, {"kernel": kernel, **_bias(f, 1, use_bias)}, op=("conv1d", "conv2d", "conv3d")[spatial - 1])
    f.require(groups == channels and spatial == 2 and kernel.shape[1] == 1, f"group {groups}: tfn has plain and depthwise (2-D) convolutions")
    attrs = {**window, "channel_multiplier": kernel.shape[0] // channels, "use_bias": use_bias}
    return im.Emitted(attrs, {"depthwise_kernel": kernel, **_bias(f, 1, use_bias)}, op="depthwise_conv2d")


def onnx_conv_transpose(f: im.Foreign) -> im.Emitted:
    """ONNX ConvTranspose whose pads crop as TF does (P // 2 at the start) or not at all."""
    kernel = f.weight(0)
    f.require(kernel.ndim == 4 and f.attr("group", 1) == 1, "a grouped or non-2-D ConvTranspose")
    size, strides = list(kernel.shape[2:]), list(f.attr("strides", [1, 1]))
    dilation = list(f.attr("dilations", [1, 1]))
    f.require(not any(f.attr("output_padding", [0, 0])) and "output_shape" not in f.attrs, "output_padding / output_shape")
    pads = list(f.attr("pads", [0, 0, 0, 0]))
    n = f.inputs[0].shape[2:]
    out = [(length - 1) * s + (k - 1) * d + 1 - b - e for length, s, k, d, b, e in zip(n, strides, size, dilation, pads[:2], pads[2:])]
    padding = "VALID" if not any(pads) else "SAME"
    if padding == "SAME":
        total = [(length - 1) * s + (k - 1) * d + 1 - o for length, s, k, d, o in zip(n, strides, size, dilation, out)]
        f.require(pads == [t // 2 for t in total] + [t - t // 2 for t in total], f"pads {pads} do not crop as TF does")
    attrs = {"filters": kernel.shape[1], "kernel_size": size, "strides": strides, "dilation_rate": dilation, "padding": padding}
    attrs.update(output_shape=out, use_bias=len(f.weights) > 1)
    return im.Emitted(attrs, {"kernel": kernel, **_bias(f, 1, len(f.weights) > 1)})



def convolver(spatial: int, strides, dilation, pads, groups: int = 1):
    """A function (x, kernel, bias) -> the cross-correlation with TF's padding of x."""
    import torch.nn.functional as F

    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
    strides, dilation = tuple(strides), tuple(dilation)
    if all(before == after for before, after in pads):
        # symmetric: the convolution pads by itself, without a padded copy of the input
        padding = tuple(before for before, _ in pads)
        return lambda x, w, b: conv(x, w, b, strides, padding, dilation, groups)
    pad = torch_pads(pads)
    return lambda x, w, b: conv(F.pad(x, pad), w, b, strides, 0, dilation, groups)


class ConvParams(Params):
    filters: PositiveInt
    kernel_size: SizeN
    strides: SizeN = [1]
    padding: Padding = "VALID"
    dilation_rate: SizeN = [1]
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer = 0.0


class Window(Op):
    """Shared geometry of ops that slide a kernel over `spatial` axes (None: any of 1 to 3)."""

    family = "convolution"
    spatial: ClassVar[int | None] = None

    def strides(self, p) -> list[int]:
        return p.strides

    def dilation(self, p) -> list[int]:
        return p.dilation_rate

    def window(self, p, x: TensorType):
        """(kernel, strides, dilation, axes), with TF's (out, before, after) for each spatial axis."""
        spatial = self.spatial or x.rank - 2
        if x.rank != spatial + 2 or not 1 <= spatial <= 3:
            layout = "[N, C, " + (", ".join("DHW"[3 - spatial :]) if self.spatial else "*spatial (1 to 3 axes)") + "]"
            raise OpError(f"expects an input {layout}, got {x}")
        kernel = per_axis(p.kernel_size, spatial, "kernel_size")
        strides = per_axis(self.strides(p), spatial, "strides")
        dilation = per_axis(self.dilation(p), spatial, "dilation_rate")
        if max(strides) > 1 and max(dilation) > 1:
            raise OpError(f"strides {strides} > 1 together with dilation_rate {dilation} > 1 is not supported (as in TF)", "dilation_rate")
        return kernel, strides, dilation, window_geometry(x.shape[2:], kernel, strides, dilation, p.padding)

    def pads(self, p, x):
        return [(before, after) for _, before, after in self.window(p, x)[3]]


class Conv(Window):
    """Shared rules of the plain convolutions: kernel [filters, C, *kernel_size] and an optional bias."""

    Params = ConvParams

    def folds_channel_affine(self, p, inputs):
        return True

    def infer(self, p, inputs):
        (x,) = inputs
        *_, axes = self.window(p, x)
        return [TensorType((x.shape[0], p.filters, *(out for out, _, _ in axes)), x.dtype)]

    def variables(self, p, inputs):
        x = inputs[0]
        kernel_size = self.window(p, x)[0]
        kernel = VariableDef("kernel", (p.filters, x.shape[1], *kernel_size), p.kernel_initializer, regularizer=p.kernel_regularizer)
        return [kernel] + ([VariableDef("bias", (p.filters,), p.bias_initializer)] if p.use_bias else [])

    def flops(self, p, inputs, outputs):
        out = outputs[0]
        macs = out.sample_size * inputs[0].shape[1] * math.prod(self.window(p, inputs[0])[0])
        return 2 * macs + (out.sample_size if p.use_bias else 0)

    def build(self, p, inputs):
        x = inputs[0]
        _, strides, dilation, _ = self.window(p, x)
        conv = convolver(x.rank - 2, strides, dilation, self.pads(p, x))

        def convolution(xs, v, training):
            return conv(xs[0], v["kernel"], v.get("bias"))

        convolution.__name__ = self.name
        return convolution


@register
class Convolution(Conv):
    """N-d convolution (1 to 3 spatial axes, from the input's rank), as tf.nn.convolution.

    `kernel_size`, `strides` and `dilation_rate` take an int (every axis) or
    one entry per spatial axis. Strides and dilation cannot both exceed 1.

    Example:
        {op: convolution, filters: 4, kernel_size: [3, 2], dilation_rate: 2, padding: SAME}

    Input [N, C, *spatial]; output [N, filters, *spatial'].
    """

    name = "convolution"
    imports = (im.onnx("Conv", onnx_conv, "conv1d/2d/3d by rank; group = C: depthwise_conv2d"),)
    tf_notes = "tf.nn.convolution(input, filter, padding, strides, dilation_rate); kernel [filters, C, *kernel_size] (TF: [*kernel_size, C, filters])."
    example_inputs = ((2, 3, 6, 7),)


@register
class Conv1D(Conv):
    """1-D convolution, as tf.layers.conv1d / tf.nn.conv1d.

    Example:
        {op: conv1d, filters: 4, kernel_size: 3, strides: 2, padding: SAME}

    Input [N, C, W]; output [N, filters, W'].
    """

    name = "conv1d"
    imports = (im.keras("Conv1D", keras_conv),)
    tf_op = "Conv2D"
    spatial = 1
    tf_notes = "tf.nn.conv1d's `stride` is `strides`; data is channels-first [N, C, W] (TF: NWC); kernel [filters, C, k] (TF: [k, C, filters])."
    example_inputs = ((2, 3, 8),)

    class Params(ConvParams):
        kernel_size: Size1
        strides: Size1 = [1]
        dilation_rate: Size1 = [1]


@register
class Conv2D(Conv):
    """2-D convolution (cross-correlation), as tf.layers.conv2d / tf.nn.conv2d.

    SAME padding follows TF: the odd padding cell goes at the bottom/right.
    The kernel is OIHW, PyTorch's layout.

    Example:
        {op: conv2d, filters: 4, kernel_size: 3, strides: 2, padding: SAME}

    Input [N, C, H, W]; output [N, filters, H', W'].
    """

    name = "conv2d"
    imports = (im.keras("Conv2D", keras_conv), im.tf("Conv2D", tf_conv, "+ BiasAdd", fuses=["BiasAdd"]))
    spatial = 2
    tf_notes = "tf.layers.conv2d / tf.nn.conv2d; data_format is always channels-first; kernel OIHW (TF: HWIO)."
    example_inputs = ((2, 3, 6, 7),)

    class Params(ConvParams):
        kernel_size: Size2
        strides: Size2 = [1, 1]
        dilation_rate: Size2 = [1, 1]


@register
class Conv3D(Conv):
    """3-D convolution, as tf.layers.conv3d / tf.nn.conv3d.

    Example:
        {op: conv3d, filters: 2, kernel_size: [2, 3, 3], padding: SAME}

    Input [N, C, D, H, W]; output [N, filters, D', H', W'].
    """

    name = "conv3d"
    imports = (im.keras("Conv3D", keras_conv), im.tf("Conv3D", tf_conv, "+ BiasAdd", fuses=["BiasAdd"]))
    spatial = 3
    tf_notes = "kernel [filters, C, kd, kh, kw] (TF: [kd, kh, kw, C, filters])."
    example_inputs = ((2, 2, 3, 4, 5),)

    class Params(ConvParams):
        kernel_size: Size3
        strides: Size3 = [1, 1, 1]
        dilation_rate: Size3 = [1, 1, 1]


@register
class AtrousConv2D(Conv):
    """Dilated ("atrous") 2-D convolution with stride 1, as tf.nn.atrous_conv2d.

    The same as conv2d with `dilation_rate: rate`: SAME keeps the size, VALID
    gives n - (k - 1) * rate.

    Example:
        {op: atrous_conv2d, filters: 4, kernel_size: 3, rate: 2, padding: SAME}

    Input [N, C, H, W]; output [N, filters, H', W'].
    """

    name = "atrous_conv2d"
    tf_op = "Conv2D"
    spatial = 2
    tf_notes = "tf.nn.atrous_conv2d(value, filters, rate, padding); the kernel is OIHW (TF: HWIO)."
    example_inputs = ((2, 3, 7, 8),)

    class Params(Params):
        filters: PositiveInt
        kernel_size: Size2
        rate: PositiveInt
        padding: Padding = "VALID"
        use_bias: bool = True
        kernel_initializer: Initializer = "glorot_uniform"
        bias_initializer: Initializer = "zeros"
        kernel_regularizer: Regularizer = 0.0

    def strides(self, p):
        return [1, 1]

    def dilation(self, p):
        return [p.rate, p.rate]


class DepthwiseParams(Params):
    kernel_size: Size2
    channel_multiplier: PositiveInt = 1
    strides: Size2 = [1, 1]
    padding: Padding = "VALID"
    dilation_rate: Size2 = [1, 1]
    use_bias: bool = True
    depthwise_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer = 0.0


def depthwise_variable(p, channels: int) -> VariableDef:
    """The depthwise kernel [C * multiplier, 1, kh, kw], initialised with TF's fans.

    TF's filter is [kh, kw, C, multiplier]: fan_in = C*kh*kw and fan_out =
    multiplier*kh*kw, which PyTorch's grouped layout would not give.
    """
    window = math.prod(p.kernel_size)
    return VariableDef(
        "depthwise_kernel",
        (channels * p.channel_multiplier, 1, *p.kernel_size),
        p.depthwise_initializer,
        fans=(channels * window, p.channel_multiplier * window),
        regularizer=p.kernel_regularizer,
    )


@register
class DepthwiseConv2D(Window):
    """Depthwise 2-D convolution: each input channel has its own `channel_multiplier` filters,
    as tf.nn.depthwise_conv2d / tf.keras.layers.DepthwiseConv2D.

    Output channel k * channel_multiplier + q is input channel k through its
    filter q: TF's channel order. The kernel is [C * multiplier, 1, kh, kw]
    (TF's [kh, kw, C, multiplier] reshaped), and glorot initialisation uses
    TF's fans.

    Example:
        {op: depthwise_conv2d, kernel_size: 3, channel_multiplier: 2, padding: SAME}

    Input [N, C, H, W]; output [N, C * channel_multiplier, H', W'].
    """

    name = "depthwise_conv2d"
    imports = (im.keras("DepthwiseConv2D", keras_depthwise), im.tf("DepthwiseConv2dNative", tf_depthwise, "+ BiasAdd", fuses=["BiasAdd"]))
    spatial = 2
    tf_notes = "tf.nn.depthwise_conv2d's `rate` is `dilation_rate`; Keras's depth_multiplier is `channel_multiplier`."
    example_inputs = ((2, 3, 6, 7),)
    Params = DepthwiseParams

    def infer(self, p, inputs):
        (x,) = inputs
        *_, axes = self.window(p, x)
        return [TensorType((x.shape[0], x.shape[1] * p.channel_multiplier, *(out for out, _, _ in axes)), x.dtype)]

    def variables(self, p, inputs):
        out = inputs[0].shape[1] * p.channel_multiplier
        return [depthwise_variable(p, inputs[0].shape[1])] + ([VariableDef("bias", (out,), p.bias_initializer)] if p.use_bias else [])

    def flops(self, p, inputs, outputs):
        size = outputs[0].sample_size
        return 2 * size * math.prod(p.kernel_size) + (size if p.use_bias else 0)

    def build(self, p, inputs):
        x = inputs[0]
        _, strides, dilation, _ = self.window(p, x)
        conv = convolver(2, strides, dilation, self.pads(p, x), groups=x.shape[1])

        def depthwise_conv2d(xs, v, training):
            return conv(xs[0], v["depthwise_kernel"], v.get("bias"))

        return depthwise_conv2d


@register
class SeparableConv2D(Window):
    """Depthwise convolution followed by a 1x1 pointwise convolution, as
    tf.layers.separable_conv2d / tf.nn.separable_conv2d.

    The depthwise step takes the strides, padding and dilation; the pointwise
    step mixes the C * channel_multiplier channels (TF's k * multiplier + q
    order) into `filters`. `kernel_regularizer` applies to both kernels.

    Example:
        {op: separable_conv2d, filters: 4, kernel_size: 3, channel_multiplier: 2, padding: SAME}

    Input [N, C, H, W]; output [N, filters, H', W']. Variables depthwise_kernel
    [C * multiplier, 1, kh, kw], pointwise_kernel [filters, C * multiplier, 1, 1], bias [filters].
    """

    name = "separable_conv2d"
    imports = (im.keras("SeparableConv2D", keras_separable),)
    spatial = 2
    tf_notes = "Keras's depth_multiplier is `channel_multiplier`; kernels in PyTorch layouts (see the variables above)."
    example_inputs = ((2, 3, 6, 7),)

    class Params(DepthwiseParams):
        filters: PositiveInt
        pointwise_initializer: Initializer = "glorot_uniform"

    def infer(self, p, inputs):
        (x,) = inputs
        *_, axes = self.window(p, x)
        return [TensorType((x.shape[0], p.filters, *(out for out, _, _ in axes)), x.dtype)]

    def variables(self, p, inputs):
        middle = inputs[0].shape[1] * p.channel_multiplier
        pointwise = VariableDef("pointwise_kernel", (p.filters, middle, 1, 1), p.pointwise_initializer, regularizer=p.kernel_regularizer)
        bias = [VariableDef("bias", (p.filters,), p.bias_initializer)] if p.use_bias else []
        return [depthwise_variable(p, inputs[0].shape[1]), pointwise] + bias

    def flops(self, p, inputs, outputs):
        positions = math.prod(outputs[0].shape[2:])
        middle = inputs[0].shape[1] * p.channel_multiplier
        depthwise = 2 * positions * middle * math.prod(p.kernel_size)
        pointwise = 2 * positions * middle * p.filters
        return depthwise + pointwise + (outputs[0].sample_size if p.use_bias else 0)

    def build(self, p, inputs):
        import torch.nn.functional as F

        x = inputs[0]
        _, strides, dilation, _ = self.window(p, x)
        depthwise = convolver(2, strides, dilation, self.pads(p, x), groups=x.shape[1])

        def separable_conv2d(xs, v, training):
            return F.conv2d(depthwise(xs[0], v["depthwise_kernel"], None), v["pointwise_kernel"], v.get("bias"))

        return separable_conv2d


@register
class Conv2DTranspose(Window):
    """Transposed 2-D convolution (the gradient of conv2d), as tf.layers.conv2d_transpose /
    tf.nn.conv2d_transpose.

    `output_shape` is the spatial size [H_out, W_out]; without it, the size
    is Keras's: n * stride for SAME, n * stride + max(k_eff - stride, 0) for
    VALID. A given size must be one that conv2d with the same attributes
    maps back to the input's size. The result is cropped as TF does
    (tf_semantics.md §2.6): with P the total SAME padding, P // 2 cells from
    the start and the rest from the end; VALID sizes past the full result get
    zeros. PyTorch's padding/output_padding shortcut shifts the output by a
    pixel when P is odd; this op does not.

    Example:
        {op: conv2d_transpose, filters: 4, kernel_size: 3, strides: 2, padding: SAME}

    Input [N, C, H, W]; output [N, filters, H_out, W_out]. Kernel [C, filters, kh, kw] (PyTorch's layout).
    """

    name = "conv2d_transpose"
    imports = (im.keras("Conv2DTranspose", keras_conv_transpose), im.tf("Conv2DBackpropInput", tf_conv_transpose, "+ BiasAdd", fuses=["BiasAdd"]), im.onnx("ConvTranspose", onnx_conv_transpose, "+ Add, also after Slices that crop to SAME", fuses=["Add"]))
    spatial = 2
    tf_notes = "output_shape is the spatial [H, W] only (TF: [N, H, W, C]); kernel [C, filters, kh, kw] (TF: [kh, kw, filters, C])."
    example_inputs = ((2, 3, 3, 4),)

    class Params(Params):
        filters: PositiveInt
        kernel_size: Size2
        strides: Size2 = [1, 1]
        padding: Padding = "VALID"
        dilation_rate: Size2 = [1, 1]
        output_shape: Size2 | None = None
        use_bias: bool = True
        kernel_initializer: Initializer = "glorot_uniform"
        bias_initializer: Initializer = "zeros"
        kernel_regularizer: Regularizer = 0.0

    def geometry(self, p, x: TensorType) -> list[tuple[int, int]]:
        """(out, crop_before) per spatial axis; OpError when output_shape does not fit the input."""
        if x.rank != 4:
            raise OpError(f"expects an input [N, C, H, W], got {x}")
        if max(p.strides) > 1 and max(p.dilation_rate) > 1:
            raise OpError(f"strides {p.strides} > 1 together with dilation_rate {p.dilation_rate} > 1 is not supported (as in TF)", "dilation_rate")
        result = []
        for axis, (n, k, s, d) in enumerate(zip(x.shape[2:], p.kernel_size, p.strides, p.dilation_rate)):
            k_eff = (k - 1) * d + 1
            if p.padding == "SAME":
                low, high = (n - 1) * s + 1, n * s
            else:
                low, high = (n - 1) * s + k_eff, (n - 1) * s + k_eff + s - 1
            out = p.output_shape[axis] if p.output_shape else (n * s if p.padding == "SAME" else n * s + max(k_eff - s, 0))
            if not low <= out <= high:
                raise OpError(
                    f"output_shape {p.output_shape} does not fit the input {x}: with {p.padding} padding, "
                    f"kernel {k} and stride {s}, axis {axis + 2} must be in [{low}, {high}]",
                    "output_shape",
                )
            total = max(0, (n - 1) * s + k_eff - out) if p.padding == "SAME" else 0
            result.append((out, total // 2))
        return result

    def infer(self, p, inputs):
        (x,) = inputs
        return [TensorType((x.shape[0], p.filters, *(out for out, _ in self.geometry(p, x))), x.dtype)]

    def variables(self, p, inputs):
        # [C, filters, kh, kw]: PyTorch's default fans of this layout equal TF's for [kh, kw, filters, C]
        kernel = VariableDef("kernel", (inputs[0].shape[1], p.filters, *p.kernel_size), p.kernel_initializer, regularizer=p.kernel_regularizer)
        return [kernel] + ([VariableDef("bias", (p.filters,), p.bias_initializer)] if p.use_bias else [])

    def flops(self, p, inputs, outputs):
        macs = inputs[0].sample_size * p.filters * math.prod(p.kernel_size)
        return 2 * macs + (outputs[0].sample_size if p.use_bias else 0)

    def build(self, p, inputs):
        import torch.nn.functional as F

        geometry = self.geometry(p, inputs[0])
        stride, dilation = tuple(p.strides), tuple(p.dilation_rate)
        rank_bias = (-1, 1, 1)

        def conv2d_transpose(xs, v, training):
            full = F.conv_transpose2d(xs[0], v["kernel"], None, stride, 0, 0, 1, dilation)
            # TF crops P // 2 at the start; sizes past the full result are zeros (VALID)
            need = [max(0, before + out - length) for (out, before), length in zip(geometry, full.shape[2:])]
            if any(need):
                full = F.pad(full, (0, need[1], 0, need[0]))
            (out_h, top), (out_w, left) = geometry
            y = full[:, :, top : top + out_h, left : left + out_w]
            return y + v["bias"].view(rank_bias) if "bias" in v else y

        return conv2d_transpose
