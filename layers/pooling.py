"""Pooling with TF's padding rule (tf_semantics.md §3).

SAME padding never lets a padded cell count: max pooling pads with -inf and
average pooling divides by the number of in-bounds cells of each window.
"""

from __future__ import annotations

import math

from pydantic import model_validator

from tfn.layers import imports as im
from tfn.layers.attrs import Choice, Padding, Size2, Size3, SizeN, per_axis, torch_pads, window_geometry
from tfn.layers.base import Op, OpError, Params, TensorType, register


# --- import rules (layers/imports.py) ------------------------------------------


def keras_pool(f: im.Foreign) -> im.Emitted:
    """Keras MaxPooling/AveragePooling 1D-3D: 2-D and 3-D to max_pool/avg_pool(3d), 1-D to pool."""
    im.channels_last_only(f)
    spatial = f.rank - 2
    size = f.spatial_sizes(f.attr("pool_size"), spatial, "pool_size")
    strides = f.spatial_sizes(f.attr("strides", None) or size, spatial, "strides")
    attrs = {"padding": im.padding_mode(f), "strides": strides}
    if spatial == 1:
        return im.Emitted({**attrs, "window_shape": size, "pooling_type": "MAX" if f.kind.startswith("Max") else "AVG"})
    return im.Emitted({**attrs, "pool_size": size})


def tf_pool(f: im.Foreign) -> im.Emitted:
    f.require(f.attr("data_format", "NHWC") in ("NHWC", "NDHWC"), f"data_format {f.attrs.get('data_format')}: tfn imports NHWC graphs")
    size, strides = f.attr("ksize"), f.attr("strides")
    f.require(size[0] == size[-1] == strides[0] == strides[-1] == 1, "pooling over the batch or channel axis")
    return im.Emitted({"pool_size": list(size[1:-1]), "strides": list(strides[1:-1]), "padding": im.padding_mode(f)})


def tf_pool_with_argmax(f: im.Foreign) -> im.Emitted:
    """MaxPoolWithArgmax: tfn's indices are TF's (the NHWC formula), in tfn's layout as the values are."""
    f.require(f.attr("Targmax", 9) == 9, "int32 indices: tfn's are int64")
    return im.Emitted(tf_pool(f).attrs | {"include_batch_in_index": bool(f.attr("include_batch_in_index", False))})


def onnx_pool(f: im.Foreign) -> im.Emitted:
    from tfn.layers.convolution import onnx_padding

    size = list(f.attr("kernel_shape"))
    f.require(len(size) == 2, f"a {len(size)}-D window: tfn imports 2-D ONNX pooling")
    strides, dilation = list(f.attr("strides", [1, 1])), list(f.attr("dilations", [1, 1]))
    f.require(dilation == [1, 1] and not f.attr("ceil_mode", 0), "dilations or ceil_mode")
    padding = onnx_padding(f, size, strides, dilation)
    f.require(padding == "VALID" or f.kind == "MaxPool" or not f.attr("count_include_pad", 0), "count_include_pad: TF never counts padded cells")
    return im.Emitted({"pool_size": size, "strides": strides, "padding": padding})


def global_pool(f: im.Foreign) -> im.Emitted:
    """Keras GlobalAveragePooling/GlobalMaxPooling (keepdims), ONNX GlobalAveragePool/GlobalMaxPool (dims kept)."""
    if f.framework == "onnx":
        return im.Emitted({"keepdims": True})
    im.channels_last_only(f)
    return im.Emitted({"keepdims": bool(f.attr("keepdims", False))})



class _DefaultStrides(Params):
    @model_validator(mode="after")
    def _default_strides(self):
        if self.strides is None:  # Keras: strides default to the pool size
            object.__setattr__(self, "strides", list(self.pool_size))
        return self


class Pool2DParams(_DefaultStrides):
    pool_size: Size2 = [2, 2]
    strides: Size2 | None = None
    padding: Padding = "VALID"


class Pool3DParams(_DefaultStrides):
    pool_size: Size3 = [2, 2, 2]
    strides: Size3 | None = None
    padding: Padding = "VALID"


def window_reducer(mode: str, spatial: int, kernel, strides, dilation, pads):
    """A function x -> the max or mean of each window, TF's way: padded cells never count.

    `pads` is (before, after) per spatial axis. Max pads with -inf; mean
    divides each window's sum by its number of in-bounds cells.
    """
    import torch
    import torch.nn.functional as F

    kernel, strides, dilation = tuple(kernel), tuple(strides), tuple(dilation)
    pad = torch_pads(pads)
    # PyTorch's own padding is symmetric and at most half the window: then it is exactly
    # TF's (implicit -inf for max, count_include_pad=False for mean) and needs no padded copy
    implicit = all(b == a and 2 * b <= k for (b, a), k in zip(pads, kernel))
    padding = tuple(b for b, _ in pads)
    if mode == "MAX":
        max_pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[spatial - 1]
        if implicit:
            return lambda x: max_pool(x, kernel, strides, padding, dilation)
        return lambda x: max_pool(F.pad(x, pad, value=float("-inf")), kernel, strides, 0, dilation)

    if all(d == 1 for d in dilation):
        avg_pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[spatial - 1]
        if implicit:
            return lambda x: avg_pool(x, kernel, strides, padding, count_include_pad=False)

        def reduce_mean(x):
            # asymmetric SAME padding: mean over the padded input / the fraction of real cells
            real = F.pad(torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device), pad)
            return avg_pool(F.pad(x, pad), kernel, strides) / avg_pool(real, kernel, strides)

        return reduce_mean

    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]

    def window_sum(x):
        # a depthwise convolution with a window of ones: avg_pool has no dilation
        ones = torch.ones((x.shape[1], 1, *kernel), dtype=x.dtype, device=x.device)
        return conv(F.pad(x, pad), ones, None, strides, 0, dilation, x.shape[1])

    def reduce_dilated_mean(x):
        return window_sum(x) / window_sum(torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device))

    return reduce_dilated_mean


class WindowPool(Op):
    """Shared rules of pooling over sliding windows of `spatial` axes."""

    family = "pooling"
    spatial: int
    mode: str  # "MAX" or "AVG"

    def window(self, p, x: TensorType):
        """(kernel, strides, dilation, axes): the window and TF's (out, before, after) per spatial axis."""
        if x.rank != self.spatial + 2:
            raise OpError(f"expects a {self.spatial + 2}-D input [N, C, {', '.join('DHW'[3 - self.spatial:])}], got {x}")
        dilation = [1] * self.spatial
        return p.pool_size, p.strides, dilation, window_geometry(x.shape[2:], p.pool_size, p.strides, dilation, p.padding, "pool_size")

    def infer(self, p, inputs):
        (x,) = inputs
        *_, axes = self.window(p, x)
        return [TensorType((x.shape[0], x.shape[1], *(out for out, _, _ in axes)), x.dtype)]

    def flops(self, p, inputs, outputs):
        kernel, *_ = self.window(p, inputs[0])
        return outputs[0].sample_size * math.prod(kernel)

    def takes_window_maximum(self, p):
        return self.mode == "MAX"

    def build(self, p, inputs):
        kernel, strides, dilation, axes = self.window(p, inputs[0])
        reduce = window_reducer(self.mode, self.spatial, kernel, strides, dilation, [(b, a) for _, b, a in axes])

        def pool(xs, v, training):
            return reduce(xs[0])

        pool.__name__ = self.name
        return pool


@register
class MaxPool(WindowPool):
    """2-D max pooling, as tf.nn.max_pool / tf.layers.max_pooling2d.

    SAME padding cells never win: they hold -inf, not 0, so a window of
    negative values at the border keeps its maximum.

    Example:
        {op: max_pool, pool_size: 2}

    Input [N, C, H, W]; output [N, C, H', W'].
    """

    name = "max_pool"
    imports = (im.keras("MaxPooling2D", keras_pool), im.tf("MaxPool", tf_pool), im.onnx("MaxPool", onnx_pool))
    spatial, mode = 2, "MAX"
    tf_notes = "tf.nn.max_pool(ksize, strides) = pool_size, strides; strides default to pool_size (Keras); padding VALID by default."
    Params = Pool2DParams
    example_inputs = ((2, 3, 5, 6),)


@register
class AvgPool(WindowPool):
    """2-D average pooling, as tf.nn.avg_pool / tf.layers.average_pooling2d.

    With SAME padding each window is divided by the number of its cells that
    lie inside the input: padded cells count neither in the sum nor in the
    divisor (PyTorch's default count_include_pad=True gets the border wrong).

    Example:
        {op: avg_pool, pool_size: 3, strides: 2, padding: SAME}

    Input [N, C, H, W]; output [N, C, H', W'].
    """

    name = "avg_pool"
    imports = (im.keras("AveragePooling2D", keras_pool), im.tf("AvgPool", tf_pool), im.onnx("AveragePool", onnx_pool))
    spatial, mode = 2, "AVG"
    tf_notes = "tf.nn.avg_pool(ksize, strides) = pool_size, strides; strides default to pool_size (Keras); padding VALID by default."
    Params = Pool2DParams
    example_inputs = ((2, 3, 5, 6),)


@register
class MaxPool3D(WindowPool):
    """3-D max pooling, as tf.nn.max_pool3d / tf.layers.max_pooling3d; SAME pads with -inf.

    Example:
        {op: max_pool3d, pool_size: 2, padding: SAME}

    Input [N, C, D, H, W]; output [N, C, D', H', W'].
    """

    name = "max_pool3d"
    imports = (im.keras("MaxPooling3D", keras_pool), im.tf("MaxPool3D", tf_pool))
    spatial, mode = 3, "MAX"
    Params = Pool3DParams
    example_inputs = ((2, 2, 3, 4, 5),)


@register
class AvgPool3D(WindowPool):
    """3-D average pooling, as tf.nn.avg_pool3d / tf.layers.average_pooling3d.

    SAME padding divides each window by its number of in-bounds cells.

    Example:
        {op: avg_pool3d, pool_size: 2, padding: SAME}

    Input [N, C, D, H, W]; output [N, C, D', H', W'].
    """

    name = "avg_pool3d"
    imports = (im.keras("AveragePooling3D", keras_pool), im.tf("AvgPool3D", tf_pool))
    spatial, mode = 3, "AVG"
    Params = Pool3DParams
    example_inputs = ((2, 2, 3, 4, 5),)


@register
class Pool(WindowPool):
    """N-d pooling (1 to 3 spatial axes), average or max, with dilation, as tf.nn.pool.

    `window_shape`, `strides` and `dilation_rate` take an int (every axis) or
    one entry per spatial axis. TF's rules hold: strides and dilation cannot
    both exceed 1, strides cannot exceed the window, and SAME padding cannot
    be combined with dilation.

    Example:
        {op: pool, window_shape: 2, pooling_type: MAX, dilation_rate: 2}

    Input [N, C, *spatial]; output [N, C, *spatial'].
    """

    name = "pool"
    imports = (im.keras("MaxPooling1D", keras_pool), im.keras("AveragePooling1D", keras_pool))
    tf_notes = "tf.nn.pool(input, window_shape, pooling_type, padding, dilation_rate, strides); strides default to 1 as in TF."
    example_inputs = ((2, 3, 7),)

    class Params(Params):
        window_shape: SizeN
        pooling_type: Choice("AVG", "MAX")
        padding: Padding = "VALID"
        strides: SizeN = [1]
        dilation_rate: SizeN = [1]

    def window(self, p, x):
        spatial = x.rank - 2
        if not 1 <= spatial <= 3:
            raise OpError(f"expects an input [N, C, *spatial] with 1 to 3 spatial axes, got {x}")
        kernel = per_axis(p.window_shape, spatial, "window_shape")
        strides = per_axis(p.strides, spatial, "strides")
        dilation = per_axis(p.dilation_rate, spatial, "dilation_rate")
        if max(strides) > 1 and max(dilation) > 1:
            raise OpError(f"strides {strides} > 1 together with dilation_rate {dilation} > 1 is not supported (as in TF)", "dilation_rate")
        if p.padding == "SAME" and max(dilation) > 1:
            raise OpError("SAME padding with dilation_rate > 1 is not supported by tf.nn.pool; use VALID", "padding")
        if any(s > k for s, k in zip(strides, kernel)):
            raise OpError(f"strides {strides} must not exceed window_shape {kernel} (as in tf.nn.pool)", "strides")
        return kernel, strides, dilation, window_geometry(x.shape[2:], kernel, strides, dilation, p.padding, "window_shape")

    def takes_window_maximum(self, p):
        return p.pooling_type == "MAX"

    def build(self, p, inputs):
        kernel, strides, dilation, axes = self.window(p, inputs[0])
        reduce = window_reducer(p.pooling_type, inputs[0].rank - 2, kernel, strides, dilation, [(b, a) for _, b, a in axes])

        def pool(xs, v, training):
            return reduce(xs[0])

        return pool


@register
class MaxPoolWithArgmax(WindowPool):
    """2-D max pooling that also gives where each maximum came from, as tf.nn.max_pool_with_argmax.

    Output 0 (`node`) is the pooled values; output 1 (`node:1`) is int64
    indices in TF's flattened NHWC formula over the input (H, W, C):
    `(y * W + x) * C + c`, or `((b * H + y) * W + x) * C + c` with
    `include_batch_in_index: true`. Ties go to the first maximum in scan
    order, as on TF's CPU kernel.

    Example:
        {op: max_pool_with_argmax, pool_size: 2, include_batch_in_index: true}

    Input [N, C, H, W]; outputs [N, C, H', W'] (values) and [N, C, H', W'] int64 (indices).
    """

    name = "max_pool_with_argmax"
    imports = (im.tf("MaxPoolWithArgmax", tf_pool_with_argmax, "both outputs"),)
    spatial, mode = 2, "MAX"
    tf_notes = "indices follow TF's NHWC formula, not PyTorch's per-plane y*W+x; include_batch_in_index defaults to False as in TF."
    example_inputs = ((2, 3, 4, 6),)

    class Params(Pool2DParams):
        include_batch_in_index: bool = False

    def infer(self, p, inputs):
        (values,) = super().infer(p, inputs)
        return [values, TensorType(values.shape, "int64")]

    def takes_window_maximum(self, p):
        return False  # its indices name the maximum of the input it is given

    def build(self, p, inputs):
        import torch
        import torch.nn.functional as F

        kernel, strides, _, axes = self.window(p, inputs[0])
        (top, _), (left, _) = [(b, a) for _, b, a in axes]
        pad = torch_pads([(b, a) for _, b, a in axes])
        _, channels, height, width = inputs[0].shape
        with_batch = p.include_batch_in_index

        def max_pool_with_argmax(xs, v, training):
            x = F.pad(xs[0], pad, value=float("-inf")) if any(pad) else xs[0]
            values, flat = F.max_pool2d(x, kernel, strides, return_indices=True)
            padded_width = x.shape[3]
            # PyTorch's index is y*W+x within each (n, c) plane of the padded input
            y = (flat // padded_width - top).clamp(0, height - 1)
            col = (flat % padded_width - left).clamp(0, width - 1)
            c = torch.arange(channels, device=flat.device).view(1, -1, 1, 1)
            index = (y * width + col) * channels + c
            if with_batch:
                b = torch.arange(flat.shape[0], device=flat.device).view(-1, 1, 1, 1)
                index = index + b * (height * width * channels)
            return values, index

        return max_pool_with_argmax


class GlobalPool(Op):
    family = "pooling"

    class Params(Params):
        keepdims: bool = False

    def infer(self, p, inputs):
        (x,) = inputs
        if x.rank < 3:
            raise OpError(f"expects an input [N, C, *spatial] with at least one spatial axis, got {x}")
        shape = (x.shape[0], x.shape[1], *([1] * (x.rank - 2) if p.keepdims else []))
        return [TensorType(shape, x.dtype)]

    def flops(self, p, inputs, outputs):
        return inputs[0].sample_size


@register
class GlobalAveragePool(GlobalPool):
    """The mean over every spatial axis, as tf.keras.layers.GlobalAveragePooling2D (any rank).

    Example:
        {op: global_average_pool}

    Input [N, C, *spatial]; output [N, C] ([N, C, 1, ...] with `keepdims: true`).
    """

    name = "global_average_pool"
    imports = tuple(im.keras(f"GlobalAveragePooling{d}D", global_pool) for d in (1, 2, 3)) + (im.onnx("GlobalAveragePool", global_pool),)
    tf_op = "Mean"
    tf_notes = "tf.reduce_mean(x, axis=[1, 2]) in NHWC."
    example_inputs = ((2, 3, 4, 5),)

    def build(self, p, inputs):
        axes, keep = tuple(range(2, inputs[0].rank)), p.keepdims

        def global_average_pool(xs, v, training):
            return xs[0].mean(axes, keepdim=keep)

        return global_average_pool


@register
class GlobalMaxPool(GlobalPool):
    """The maximum over every spatial axis, as tf.keras.layers.GlobalMaxPooling2D (any rank).

    Example:
        {op: global_max_pool}

    Input [N, C, *spatial]; output [N, C] ([N, C, 1, ...] with `keepdims: true`).
    """

    name = "global_max_pool"
    imports = tuple(im.keras(f"GlobalMaxPooling{d}D", global_pool) for d in (1, 2, 3)) + (im.onnx("GlobalMaxPool", global_pool),)
    tf_op = "Max"
    tf_notes = "tf.reduce_max(x, axis=[1, 2]) in NHWC."
    example_inputs = ((2, 3, 4, 5),)

    def build(self, p, inputs):
        keep = p.keepdims

        def global_max_pool(xs, v, training):
            x = xs[0]
            return x.flatten(2).amax(2).view(*x.shape[:2], *([1] * (x.dim() - 2) if keep else []))

        return global_max_pool
