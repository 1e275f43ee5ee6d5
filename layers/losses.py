"""Losses are graph ops, as in TF: they take (logits, labels) and give the
unreduced loss (tf_semantics.md §4); the runner averages it over everything,
as `tf.reduce_mean` of the op does in TF code."""

from __future__ import annotations

from pydantic import Field

from tfn.layers import imports as im
from tfn.layers.attrs import resolve_axis
from tfn.layers.base import Op, OpError, Params, TensorType, UserError, register


# --- import rules (layers/imports.py): the losses of a compiled Keras model ---------


def keras_cross_entropy(f: im.Foreign) -> im.Emitted:
    """Keras's cross-entropies take probabilities unless from_logits: then tfn's loss takes the logits before the softmax/sigmoid."""
    smoothing = float(f.attr("label_smoothing", 0.0) or 0.0)
    f.require(f.attr("axis", -1) == -1, f"axis {f.attrs.get('axis')}: tfn's loss takes the classes on the feature axis")
    probabilities = "sigmoid" if "binary" in f.kind else "softmax"
    attrs = {"label_smoothing": smoothing} if smoothing else {}
    return im.Emitted(attrs, logits_before=None if f.attr("from_logits", False) else probabilities)


@register
class SparseSoftmaxCrossEntropyWithLogits(Op):
    """Softmax cross-entropy against integer class labels, one value per example,
    as tf.nn.sparse_softmax_cross_entropy_with_logits.

    The class axis is axis 1 (channels-first). A label outside [0, classes) is
    an error naming the value, never a NaN or a silently ignored row.
    `label_smoothing` is tf.losses.softmax_cross_entropy's: the one-hot target
    becomes onehot * (1 - label_smoothing) + label_smoothing / classes.

    Example (the loss section):
        {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}

    Inputs logits [N, classes, ...] and labels [N, ...] of any integer dtype; output [N, ...].
    """

    name = "sparse_softmax_cross_entropy_with_logits"
    imports = (im.keras_loss("sparse_categorical_crossentropy", keras_cross_entropy),)
    tf_op = "SparseSoftmaxCrossEntropyWithLogits"
    example_inputs = ((4, 5),)
    family = "loss"
    arity = (2, 2)
    is_loss = True
    prediction = "softmax"

    class Params(Params):
        label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="weight of the uniform distribution mixed into the one-hot target")

    def label_type(self, p, logits):
        return TensorType((logits.shape[0], *logits.shape[2:]), "int64")

    def infer(self, p, inputs):
        logits, labels = inputs
        if logits.rank < 2:
            raise OpError(f"expects logits [N, classes, ...], got {logits}")
        expected = self.label_type(p, logits)
        if tuple(labels.shape[1:]) != tuple(expected.shape[1:]) or not labels.is_integer:
            raise OpError(f"expects integer labels {expected} for logits {logits}, got {labels}")
        return [TensorType(expected.shape, logits.dtype)]

    def flops(self, p, inputs, outputs):
        return 4 * inputs[0].sample_size

    def build(self, p, inputs):
        import torch.nn.functional as F

        classes = inputs[0].shape[1]

        def sparse_softmax_cross_entropy_with_logits(xs, v, training):
            logits, labels = xs
            labels = labels.long()  # TF takes int32 or int64 labels; PyTorch's kernel only int64
            check_labels(labels, classes)
            return F.cross_entropy(logits, labels, reduction="none", label_smoothing=p.label_smoothing)

        return sparse_softmax_cross_entropy_with_logits


class LabelError(UserError, ValueError):
    """A label outside the valid class range: the user's data (exit status 2)."""


def check_labels(labels, classes: int) -> None:
    import torch

    if labels.device.type != "cpu":
        # no host synchronisation on accelerators: a device-side assert instead
        torch._assert_async(((labels >= 0) & (labels < classes)).all(), f"label outside [0, {classes})")
        return
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        value = int(labels[bad][0])
        raise LabelError(f"received a label value of {value} which is outside the valid range of [0, {classes})")


class SameShapeLoss(Op):
    """A loss whose labels have the logits' shape and dtype; the loss is element-wise."""

    family = "loss"
    arity = (2, 2)
    is_loss = True
    example_inputs = ((4, 3),)

    def label_type(self, p, logits):
        return logits

    def infer(self, p, inputs):
        logits, labels = inputs
        if tuple(labels.shape[1:]) != tuple(logits.shape[1:]) or not labels.dtype.startswith("float"):
            raise OpError(f"expects float labels of the logits' shape {logits}, got {labels}")
        return [logits]

    def flops(self, p, inputs, outputs):
        return 4 * inputs[0].sample_size


@register
class SigmoidCrossEntropyWithLogits(SameShapeLoss):
    """Element-wise logistic loss, as tf.nn.sigmoid_cross_entropy_with_logits.

    max(x, 0) - x * z + log(1 + exp(-|x|)) for logits x and labels z in
    [0, 1]: stable for any logit. Each element is an independent binary
    problem (multi-label classification). `label_smoothing` is
    tf.losses.sigmoid_cross_entropy's: z becomes z * (1 - label_smoothing) + label_smoothing / 2.

    Example (the loss section):
        {op: sigmoid_cross_entropy_with_logits, logits: logits, labels: targets}

    Inputs logits [N, ...] and labels [N, ...] float (same shape); output [N, ...].
    """

    name = "sigmoid_cross_entropy_with_logits"
    prediction = "sigmoid"
    imports = (im.keras_loss("binary_crossentropy", keras_cross_entropy),)

    class Params(Params):
        label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="pulls each target towards 1/2 by this fraction")

    def build(self, p, inputs):
        import torch.nn.functional as F

        keep, shift = 1.0 - p.label_smoothing, 0.5 * p.label_smoothing

        def sigmoid_cross_entropy_with_logits(xs, v, training):
            logits, labels = xs
            targets = labels.detach() if shift == 0.0 else labels.detach() * keep + shift
            return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")

        return sigmoid_cross_entropy_with_logits


@register
class MeanSquaredError(SameShapeLoss):
    """Element-wise squared error (predictions - labels)**2; averaged by the runner,
    it is tf.losses.mean_squared_error.

    Example (the loss section):
        {op: mean_squared_error, logits: predictions, labels: targets}

    Inputs predictions [N, ...] and labels [N, ...] float (same shape); output [N, ...].
    """

    name = "mean_squared_error"
    prediction = "values"
    imports = (im.keras_loss("mean_squared_error"),)
    tf_op = "SquaredDifference"
    tf_notes = "tf.losses.mean_squared_error(labels, predictions); `logits:` names the predictions node."

    def flops(self, p, inputs, outputs):
        return 2 * inputs[0].sample_size

    def build(self, p, inputs):
        def mean_squared_error(xs, v, training):
            predictions, labels = xs
            return (predictions - labels.detach()).square()

        return mean_squared_error


def _softmax_xent_function():
    """The autograd Function of softmax cross-entropy with TF's gradient (built lazily: no torch at import)."""
    import torch

    class SoftmaxCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, logits, labels, axis):
            log_probs = torch.log_softmax(logits, axis)
            ctx.save_for_backward(log_probs, labels)
            ctx.axis = axis
            return -(labels * log_probs).sum(axis)

        @staticmethod
        def backward(ctx, grad):
            log_probs, labels = ctx.saved_tensors
            # TF's kernel gradient: softmax - labels, exact only for labels that sum to 1 (as TF warns)
            return (log_probs.exp() - labels) * grad.unsqueeze(ctx.axis), None, None

    return SoftmaxCrossEntropy


@register
class SoftmaxCrossEntropyWithLogits(Op):
    """Softmax cross-entropy against a distribution over the classes, as
    tf.nn.softmax_cross_entropy_with_logits.

    Labels may be soft (any distribution per row). The gradient to the
    logits is TF's `softmax(logits) - labels`, which equals the true
    derivative only when each label row sums to 1; no gradient flows to the
    labels (v1 semantics). The class axis is `axis`, by default 1 (channels-first).

    Example (the loss section):
        {op: softmax_cross_entropy_with_logits, logits: logits, labels: label_distribution}

    Inputs logits [N, classes, ...] and labels [N, classes, ...] float; output [N, ...].
    """

    name = "softmax_cross_entropy_with_logits"
    imports = (im.keras_loss("categorical_crossentropy", keras_cross_entropy),)
    tf_op = "SoftmaxCrossEntropyWithLogits"
    family = "loss"
    arity = (2, 2)
    is_loss = True
    prediction = "softmax"
    tf_notes = "TF's dim/axis=-1 is tfn's axis 1; labels get no gradient, as in v1 (v2 differentiates them)."
    example_inputs = ((4, 5),)

    class Params(Params):
        axis: int = 1
        label_smoothing: float = Field(
            0.0, ge=0.0, lt=1.0, description="tf.losses.softmax_cross_entropy's: labels * (1 - s) + s / classes"
        )

    def label_type(self, p, logits):
        return logits

    def infer(self, p, inputs):
        logits, labels = inputs
        axis = resolve_axis(p.axis, logits.rank)
        if tuple(labels.shape[1:]) != tuple(logits.shape[1:]) or not labels.dtype.startswith("float"):
            raise OpError(f"expects float labels of the logits' shape {logits}, got {labels}")
        return [TensorType(tuple(d for k, d in enumerate(logits.shape) if k != axis), logits.dtype)]

    def flops(self, p, inputs, outputs):
        return 5 * inputs[0].sample_size

    def build(self, p, inputs):
        function = _softmax_xent_function()
        axis = resolve_axis(p.axis, inputs[0].rank)
        keep, shift = 1.0 - p.label_smoothing, p.label_smoothing / inputs[0].shape[axis]

        def softmax_cross_entropy_with_logits(xs, v, training):
            logits, labels = xs
            targets = labels.detach() if shift == 0.0 else labels.detach() * keep + shift
            return function.apply(logits, targets, axis)

        return softmax_cross_entropy_with_logits
