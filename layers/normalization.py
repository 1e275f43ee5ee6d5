"""Normalization: batch normalization with TF's conventions (tf_semantics.md §5), local response and layer normalization."""

from __future__ import annotations

from pydantic import Field

from tfn.layers import imports as im
from tfn.layers.attrs import Initializer, resolve_axis
from tfn.layers.base import Op, OpError, Params, TensorType, VariableDef, register


# --- import rules (layers/imports.py) ------------------------------------------


def keras_batch_norm(f: im.Foreign) -> im.Emitted:
    """Keras BatchNormalization on the feature axis; weights gamma, beta (when kept), moving mean and variance."""
    axis = f.attr("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    f.require(isinstance(axis, int) and f.axis(axis) == 1, f"axis {f.attrs.get('axis')}: tfn normalises the feature axis")
    scale, center = bool(f.attr("scale", True)), bool(f.attr("center", True))
    roles = (["gamma"] if scale else []) + (["beta"] if center else []) + ["moving_mean", "moving_variance"]
    attrs = {"momentum": float(f.attr("momentum", 0.99)), "epsilon": float(f.attr("epsilon", 1e-3)), "center": center, "scale": scale}
    return _batch_norm(f, attrs, dict(zip(roles, f.weights)), roles)


def tf_fused_batch_norm(f: im.Foreign) -> im.Emitted:
    """FusedBatchNorm* in inference (is_training false): scale, offset, mean, variance; momentum is not in the graph."""
    f.require(not f.attr("is_training", False), "is_training: a training-mode batch norm (export the graph for inference)")
    f.require(f.attr("data_format", "NHWC") == "NHWC", f"data_format {f.attrs.get('data_format')}: tfn imports NHWC graphs")
    roles = ["gamma", "beta", "moving_mean", "moving_variance"]
    return _batch_norm(f, {"epsilon": float(f.attr("epsilon", 1e-3))}, dict(zip(roles, f.weights)), roles)


def onnx_batch_norm(f: im.Foreign) -> im.Emitted:
    roles = ["gamma", "beta", "moving_mean", "moving_variance"]
    attrs = {"epsilon": float(f.attr("epsilon", 1e-5)), "momentum": float(f.attr("momentum", 0.9))}
    return _batch_norm(f, attrs, dict(zip(roles, f.weights)), roles)


def _batch_norm(f: im.Foreign, attrs: dict, variables: dict, roles: list) -> im.Emitted:
    import numpy as np

    f.require(len(variables) == len(roles), f"expected {len(roles)} weights ({', '.join(roles)}), found {len(f.weights)}")
    order = f.order(0)
    if order is not None:
        variables = {role: v[np.asarray(order)] for role, v in variables.items()}
    return im.Emitted(attrs, variables, feature_order=order)


def layer_norm(f: im.Foreign) -> im.Emitted:
    """Keras LayerNormalization (axis: an int or a list), ONNX LayerNormalization (every axis from `axis` on)."""
    import numpy as np

    if f.framework == "onnx":
        start = f.attr("axis", -1) % f.rank
        f.require(start >= 1, "normalising the batch axis")
        source_axes = list(range(start, f.rank))
        scale, center = True, len(f.weights) > 1
        variables = {"gamma": f.weight(0)} | ({"beta": f.weight(1)} if center else {})
        epsilon = float(f.attr("epsilon", 1e-5))
    else:
        f.require(not f.attr("rms_scaling", False), "rms_scaling: tfn's layer normalization centres")
        given = f.attr("axis", -1)
        source_axes = sorted(int(a) % f.rank for a in (given if isinstance(given, list) else [given]))
        scale, center = bool(f.attr("scale", True)), bool(f.attr("center", True))
        roles = (["gamma"] if scale else []) + (["beta"] if center else [])
        f.require(len(f.weights) == len(roles), f"expected {len(roles)} weights ({', '.join(roles)}), found {len(f.weights)}")
        variables = dict(zip(roles, f.weights))
        epsilon = float(f.attr("epsilon", 1e-3))
    axes = sorted(f.axis(a) for a in source_axes)
    if f.channels_last and f.rank > 2 and f.rank - 1 in source_axes:  # Keras's gamma is [..., C]: tfn's [C, ...]
        variables = {role: np.moveaxis(v, -1, 0) if v.ndim > 1 else v for role, v in variables.items()}
    order = f.order(0)
    if order is not None:
        variables = {role: v[np.asarray(order)] for role, v in variables.items()}
    attrs = {"axis": axes[0] if len(axes) == 1 else axes, "epsilon": epsilon, "center": center, "scale": scale}
    return im.Emitted(attrs, variables, feature_order=order)


def local_response(f: im.Foreign) -> im.Emitted:
    """TF's LRN (alpha on the plain sum) or ONNX's (alpha divided by the window `size`, which must be odd)."""
    if f.framework == "onnx":
        size = int(f.attr("size"))
        f.require(size % 2 == 1, f"size {size}: TF's window is 2 * depth_radius + 1 (odd)")
        attrs = {"depth_radius": size // 2, "bias": float(f.attr("bias", 1.0)), "alpha": float(f.attr("alpha", 1e-4)) / size, "beta": float(f.attr("beta", 0.75))}
        return im.Emitted(attrs)
    attrs = {k: f.attr(k, d) for k, d in (("depth_radius", 5), ("bias", 1.0), ("alpha", 1.0), ("beta", 0.5))}
    return im.Emitted({"depth_radius": int(attrs["depth_radius"]), **{k: float(v) for k, v in attrs.items() if k != "depth_radius"}})


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

    A batch with one value per channel (a last batch of one sample after a
    dense layer) trains as in TF: the output is beta, the batch variance is 0
    (TF's fused kernel corrects n/(n-1) only for n > 1), and the moving
    statistics move towards the sample and 0. An empty batch leaves them as
    they are (TF makes them NaN).

    Example:
        {op: batch_normalization}

    Input [N, C, ...]; output the same shape. Variables gamma, beta (trainable)
    and moving_mean, moving_variance (not trainable), each [C].
    """

    name = "batch_normalization"
    imports = (im.keras("BatchNormalization", keras_batch_norm),) + tuple(im.tf(k, tf_fused_batch_norm) for k in ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")) + (im.onnx("BatchNormalization", onnx_batch_norm),)
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

    def moving_average_momentum(self, p):
        return p.momentum

    @staticmethod
    def _constants(p, inputs) -> tuple[bool, float, float]:
        """(fused, PyTorch momentum, epsilon): 4-D inputs follow TF's fused kernel."""
        fused = inputs[0].rank == 4
        return fused, 1.0 - p.momentum, max(p.epsilon, 1.001e-5) if fused else p.epsilon

    def inference_affine(self, p, inputs, variables):
        import torch

        _, _, eps = self._constants(p, inputs)
        scale = torch.rsqrt(variables["moving_variance"] + eps)
        if "gamma" in variables:
            scale = scale * variables["gamma"]
        shift = -variables["moving_mean"] * scale
        if "beta" in variables:
            shift = shift + variables["beta"]
        return scale, shift

    def build(self, p, inputs):
        import torch
        import torch.nn.functional as F

        fused, momentum, eps = self._constants(p, inputs)

        def batch_normalization(xs, v, training):
            x, mean, var = xs[0], v["moving_mean"], v["moving_variance"]
            if training and x.numel() <= x.shape[1]:
                return _one_value_per_channel(x, v, momentum, eps)
            if not training or fused:
                # PyTorch updates running_var with the unbiased variance: TF's fused kernel does too
                return F.batch_norm(x, mean, var, v.get("gamma"), v.get("beta"), training, momentum, eps)
            axes = [0] + list(range(2, x.dim()))
            with torch.no_grad():
                batch_var, batch_mean = torch.var_mean(x.detach(), dim=axes, correction=0)
                mean.lerp_(batch_mean.to(mean.dtype), momentum)
                var.lerp_(batch_var.to(var.dtype), momentum)
            return F.batch_norm(x, None, None, v.get("gamma"), v.get("beta"), True, 0.0, eps)

        return batch_normalization

    def build_synchronized(self, p, inputs, all_reduce):
        """The training kernel with the statistics of the batch across all replicas (SyncBatchNorm).

        `all_reduce(t)` sums a tensor over the replicas and is differentiable
        (torch.distributed.nn.functional.all_reduce), so the gradients are
        those of batch normalization over the whole global batch. The moving
        statistics follow the same rules as :meth:`build` with the global
        count. Evaluation is the ordinary kernel: no communication.
        """
        import torch
        import torch.nn.functional as F

        fused, momentum, eps = self._constants(p, inputs)

        def synchronized_batch_normalization(xs, v, training):
            x, mean, var = xs[0], v["moving_mean"], v["moving_variance"]
            if not training:
                return F.batch_norm(x, mean, var, v.get("gamma"), v.get("beta"), False, momentum, eps)
            axes = [0] + list(range(2, x.dim()))
            shape = [1, -1] + [1] * (x.dim() - 2)
            # statistics of the global batch in at least float32, also under autocast
            xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
            local_count = xf.new_full((1,), x.numel() / x.shape[1])
            # two passes (mean, then squared deviations): no cancellation as in E[x^2] - E[x]^2
            sums = all_reduce(torch.cat([xf.sum(axes), local_count]))
            count = sums[-1]
            batch_mean = sums[:-1] / count
            centered = xf - batch_mean.reshape(shape)
            batch_var = all_reduce(centered.square().sum(axes)) / count
            with torch.no_grad():
                mean.lerp_(batch_mean.detach().to(mean.dtype), momentum)
                unbiased = count / (count - 1).clamp(min=1) if fused else 1.0
                var.lerp_((batch_var.detach() * unbiased).to(var.dtype), momentum)
            y = centered * torch.rsqrt(batch_var + eps).reshape(shape)
            if "gamma" in v:
                y = y * v["gamma"].reshape(shape)
            if "beta" in v:
                y = y + v["beta"].reshape(shape)
            return y.to(x.dtype)

        return synchronized_batch_normalization


@register
class LocalResponseNormalization(Op):
    """Local response normalization across channels, as tf.nn.local_response_normalization (AlexNet, GoogLeNet).

    out = x / (bias + alpha * sqr_sum) ** beta, where sqr_sum at channel c
    is the sum of x**2 over channels c - depth_radius .. c + depth_radius
    (clipped at the edges). alpha multiplies the plain sum: it is not
    divided by the window size 2 * depth_radius + 1, as PyTorch's
    LocalResponseNorm and Caffe's LRN divide it. Defaults are TF's.

    Example:
        {op: local_response_normalization, depth_radius: 2, bias: 2.0, alpha: 1.0e-4, beta: 0.75}

    Input [N, C, ...]; output the same shape.
    """

    name = "local_response_normalization"
    imports = (im.tf("LRN", local_response), im.onnx("LRN", local_response, "alpha / size"))
    family = "normalization"
    example_inputs = ((2, 6, 3, 4),)
    tf_notes = (
        "tf.nn.local_response_normalization / tf.nn.lrn on the channel axis 1 (TF: the last axis of NHWC); alpha is TF's "
        "(torch.nn.LocalResponseNorm's alpha is alpha * (2 * depth_radius + 1), Caffe's alpha likewise)."
    )

    class Params(Params):
        depth_radius: int = Field(5, ge=0)
        bias: float = 1.0
        alpha: float = 1.0
        beta: float = 0.5

    def infer(self, p, inputs):
        (x,) = inputs
        if x.rank < 3:
            raise OpError(f"expects an input [N, C, ...] with at least one axis after the channels, got {x}")
        return [x]

    def flops(self, p, inputs, outputs):
        return (2 * p.depth_radius + 1 + 4) * outputs[0].sample_size

    def build(self, p, inputs):
        import torch.nn.functional as F

        window = 2 * p.depth_radius + 1
        bias, beta = p.bias, p.beta
        # PyTorch divides alpha by the window: hand it TF's alpha times the window
        alpha = p.alpha * window

        def local_response_normalization(xs, v, training):
            return F.local_response_norm(xs[0], window, alpha, beta, bias)

        return local_response_normalization

    def build_onnx(self, p, inputs):
        from tfn.layers import onnx_nodes

        window = 2 * p.depth_radius + 1
        # ONNX's LRN divides alpha by the window, as PyTorch's does; its window is TF's when odd
        return onnx_nodes.as_kernel(self.name, onnx_nodes.lrn, window, p.alpha * window, p.beta, p.bias)


@register
class LayerNormalization(Op):
    """Layer normalization, as tf.keras.layers.LayerNormalization: each sample normalized over `axis`.

    out = (x - mean) / sqrt(var + epsilon) * gamma + beta, with the mean and
    the (biased) variance taken over the axes in `axis` for each sample and
    every position of the other axes. The default axis 1 normalizes the
    features (channels) at each position, as Keras's default axis -1 does in
    NHWC; `axis: [1, 2, 3]` normalizes whole [C, H, W] samples. gamma and
    beta have the shape of the normalized axes. epsilon 1e-3 is Keras's
    (PyTorch's LayerNorm uses 1e-5).

    Example:
        {op: layer_normalization, axis: [1, 2]}

    Input [N, ...]; output the same shape. Variables gamma (ones) and beta (zeros), shaped as the normalized axes.
    """

    name = "layer_normalization"
    imports = (im.keras("LayerNormalization", layer_norm), im.onnx("LayerNormalization", layer_norm))
    family = "normalization"
    example_inputs = ((3, 4, 5),)
    tf_notes = (
        "tf.keras.layers.LayerNormalization(axis=-1, epsilon=1e-3); axis counts channels-first with the batch as 0, "
        "so Keras's -1 in NHWC is tfn's 1; tf.contrib.layers.layer_norm normalizes every axis but the batch: axis [1, 2, ...]."
    )

    class Params(Params):
        axis: int | list[int] = 1
        epsilon: float = Field(1e-3, gt=0.0)
        center: bool = True
        scale: bool = True
        beta_initializer: Initializer = "zeros"
        gamma_initializer: Initializer = "ones"

    def axes(self, p, x: TensorType) -> list[int]:
        listed = [p.axis] if isinstance(p.axis, int) else p.axis
        if not listed:
            raise OpError("needs at least one axis to normalize over", "axis")
        axes = [resolve_axis(a, x.rank) for a in listed]
        if len(set(axes)) != len(axes):
            raise OpError(f"lists an axis twice: {listed} for a rank-{x.rank} input", "axis")
        return sorted(axes)

    def infer(self, p, inputs):
        self.axes(p, inputs[0])
        return [inputs[0]]

    def variables(self, p, inputs):
        x = inputs[0]
        shape = tuple(x.shape[a] for a in self.axes(p, x))
        return ([VariableDef("gamma", shape, p.gamma_initializer)] if p.scale else []) + (
            [VariableDef("beta", shape, p.beta_initializer)] if p.center else []
        )

    def flops(self, p, inputs, outputs):
        return 6 * outputs[0].sample_size

    def build(self, p, inputs):
        import torch

        x = inputs[0]
        axes = self.axes(p, x)
        # gamma and beta broadcast along the axes that are not normalized
        shape = [x.shape[a] if a in axes else 1 for a in range(1, x.rank)]
        eps = p.epsilon

        def layer_normalization(xs, v, training):
            if xs[0].shape[0] == 0:  # an empty batch: var_mean of nothing warns, and there is nothing to normalize
                return xs[0].clone()
            var, mean = torch.var_mean(xs[0], dim=axes, correction=0, keepdim=True)
            y = (xs[0] - mean) * torch.rsqrt(var + eps)
            if "gamma" in v:
                y = y * v["gamma"].reshape(shape)
            if "beta" in v:
                y = y + v["beta"].reshape(shape)
            return y

        return layer_normalization


def _one_value_per_channel(x, v, momentum: float, eps: float):
    """Training on a batch with at most one value per channel, where PyTorch's kernel refuses.

    One value: mean x, variance 0, so the output is beta, and the gradient
    reaches beta alone (x - mean(x) does not depend on x), as in TF. No value
    (an empty batch): an empty output and no update of the moving statistics.
    """
    import torch

    shape = [1, -1] + [1] * (x.dim() - 2)
    if x.numel():
        with torch.no_grad():
            v["moving_mean"].lerp_(x.detach().reshape(-1).to(v["moving_mean"].dtype), momentum)
            v["moving_variance"].lerp_(torch.zeros_like(v["moving_variance"]), momentum)
    y = (x - x.mean(0, keepdim=True)) * (1.0 / eps**0.5) if x.numel() else x
    if "gamma" in v:
        y = y * v["gamma"].reshape(shape)
    if "beta" in v:
        y = y + v["beta"].reshape(shape)
    return y.to(x.dtype)
