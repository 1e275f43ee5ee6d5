"""Losses are graph ops, as in TF: they take (logits, labels[, sample_weight])
and give the weighted, unreduced loss (tf_semantics.md §4, §10). The runner
reduces it with the op's :meth:`Loss.reduce`, tf.losses' reduction
(SUM_BY_NONZERO_WEIGHTS by default: for an unweighted loss, the mean).

Weights follow tf.losses.compute_weighted_loss: the per-element loss is
multiplied by `sample_weight` (a data field: [N], one per example, or the
loss's rank with each axis 1 or its size) and, for the classification
losses, by the weight of each label's class (`class_weights`). A weighted
loss has a second output, `node:1`, the weights broadcast to the loss's
shape, which the reduction and token_accuracy read.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from pydantic import Field, NonNegativeFloat, model_serializer

from tfn.layers import imports as im
from tfn.layers.attrs import Choice, resolve_axis
from tfn.layers.base import Op, OpError, Params, TensorType, UserError, register

# --- import rules (layers/imports.py): the losses of a compiled Keras model ---------


def keras_cross_entropy(f: im.Foreign) -> im.Emitted:
    """Keras's cross-entropies take probabilities unless from_logits: then tfn's loss takes the logits before the softmax/sigmoid."""
    smoothing = float(f.attr("label_smoothing", 0.0) or 0.0)
    f.require(f.attr("axis", -1) == -1, f"axis {f.attrs.get('axis')}: tfn's loss takes the classes on the feature axis")
    probabilities = "sigmoid" if "binary" in f.kind else "softmax"
    attrs = {"label_smoothing": smoothing} if smoothing else {}
    return im.Emitted(attrs, logits_before=None if f.attr("from_logits", False) else probabilities)


REDUCTIONS = ("SUM_BY_NONZERO_WEIGHTS", "NONE", "SUM", "MEAN", "SUM_OVER_BATCH_SIZE", "SUM_OVER_NONZERO_WEIGHTS")
Reduction = Choice(*REDUCTIONS)


class LossParams(Params):
    reduction: Reduction = Field(  # type: ignore[valid-type]
        "SUM_BY_NONZERO_WEIGHTS",
        description="tf.losses' reduction of the weighted loss: SUM_BY_NONZERO_WEIGHTS (the sum over the number of "
        "non-zero weights; the mean when unweighted), MEAN (over the sum of the weights), SUM_OVER_BATCH_SIZE (over "
        "the number of elements), SUM, or NONE (unreduced; the optimizer minimises its sum, as TF's minimize does)",
    )

    @model_serializer(mode="wrap")
    def _weighting_only_when_set(self, handler):
        # an unweighted loss keeps the graph payload (and so the graph hash and its checkpoints) it had before weights existed
        data = handler(self)
        for key, default in (("reduction", "SUM_BY_NONZERO_WEIGHTS"), ("class_weights", None)):
            if key in data and data[key] == default:
                del data[key]
        return data


class ClassLossParams(LossParams):
    class_weights: list[NonNegativeFloat] | None = Field(
        None,
        min_length=2,
        description="a weight per class, multiplied into each element's weight by its label's class "
        "(binary losses: [weight of label 0, weight of label 1])",
    )


class Loss(Op, abc.ABC):
    """Shared rules of the loss ops: weights, the weights output and the reduction."""

    family = "loss"
    arity = (2, 3)
    is_loss = True
    Params: ClassVar[type[Params]] = LossParams

    @abc.abstractmethod
    def loss_type(self, p, logits: TensorType, labels: TensorType) -> TensorType:
        """The unreduced loss's type, or OpError when the labels do not fit the logits."""

    @abc.abstractmethod
    def elementwise(self, p, inputs):
        """A function (logits, labels) -> the unweighted, unreduced loss."""

    def class_weight_of(self, p, labels, weights):
        """Each loss element's class weight, from the labels and the per-class `weights` tensor.

        Only losses whose Params take `class_weights` (ClassLossParams) are asked; they define it."""
        raise NotImplementedError(f"loss {self.name} takes no class_weights")

    def check_class_weights(self, p, logits: TensorType) -> None:
        pass

    def infer(self, p, inputs):
        logits, labels = inputs[:2]
        loss = self.loss_type(p, logits, labels)
        if getattr(p, "class_weights", None) is not None:
            self.check_class_weights(p, logits)
        if len(inputs) == 2 and getattr(p, "class_weights", None) is None:
            return [loss]
        if len(inputs) == 3:
            weights = inputs[2]
            fits = weights.rank == 1 or (
                weights.rank == loss.rank and all(w in (1, n) for w, n in zip(weights.shape[1:], loss.shape[1:]))
            )
            if not fits or weights.dtype == "bool":
                raise OpError(
                    f"sample_weight {weights} does not fit the loss {loss}: give [N] (one weight per example) "
                    "or the loss's rank with each axis 1 or the loss's size",
                    "sample_weight",
                )
        return [loss, TensorType(loss.shape, loss.dtype)]

    def build(self, p, inputs):
        elementwise = self.elementwise(p, inputs)
        class_weights = getattr(p, "class_weights", None)
        if len(inputs) == 2 and class_weights is None:

            def loss(xs, v, training):
                return elementwise(xs[0], xs[1])

            return loss
        import torch

        def weighted_loss(xs, v, training):
            logits, labels = xs[0], xs[1]
            loss = elementwise(logits, labels)
            weights = torch.ones((), dtype=loss.dtype, device=loss.device)
            if class_weights is not None:
                table = torch.tensor(class_weights, dtype=loss.dtype, device=loss.device)
                weights = self.class_weight_of(p, labels.detach(), table)
            if len(xs) == 3:
                sample = xs[2].to(loss.dtype)
                weights = weights * (sample.reshape(-1, *[1] * (loss.dim() - 1)) if sample.dim() == 1 else sample)
            weights = weights.expand(loss.shape)
            return loss * weights, weights

        return weighted_loss

    def reduce(self, p, loss, weights=None):
        """tf.losses' reduction of the (weighted) loss `loss` to a scalar; `weights` is node:1 when weighted."""
        import torch

        reduction = p.reduction
        if reduction in ("SUM", "NONE"):
            return loss.sum()
        if weights is None or reduction == "SUM_OVER_BATCH_SIZE":
            return loss.mean()
        if reduction == "MEAN":
            denominator = weights.sum()
        else:  # SUM_BY_NONZERO_WEIGHTS, SUM_OVER_NONZERO_WEIGHTS
            denominator = (weights != 0).sum().to(loss.dtype)
        # TF's div_no_nan, with no NaN in the gradient of the branch not taken
        empty = denominator == 0
        return torch.where(empty, torch.zeros_like(denominator), loss.sum() / torch.where(empty, torch.ones_like(denominator), denominator))

    def label_type(self, p, logits):
        return logits


@register
class SparseSoftmaxCrossEntropyWithLogits(Loss):
    """Softmax cross-entropy against integer class labels, one value per example,
    as tf.nn.sparse_softmax_cross_entropy_with_logits (reduced: tf.losses.sparse_softmax_cross_entropy).

    The class axis is axis 1 (channels-first). A label outside [0, classes) is
    an error naming the value, never a NaN or a silently ignored row.
    `label_smoothing` is tf.losses.softmax_cross_entropy's: the one-hot target
    becomes onehot * (1 - label_smoothing) + label_smoothing / classes.
    `class_weights` weighs each example by its label's class (the TF idiom
    `weights = tf.gather(class_weights, labels)`).

    Example (the loss section):
        {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}

    Inputs logits [N, classes, ...] and labels [N, ...] of any integer dtype; output [N, ...].
    """

    name = "sparse_softmax_cross_entropy_with_logits"
    imports = (im.keras_loss("sparse_categorical_crossentropy", keras_cross_entropy),)
    tf_op = "SparseSoftmaxCrossEntropyWithLogits"
    example_inputs = ((4, 5),)
    prediction = "softmax"

    class Params(ClassLossParams):
        label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="weight of the uniform distribution mixed into the one-hot target")

    def label_type(self, p, logits):
        return TensorType((logits.shape[0], *logits.shape[2:]), "int64")

    def loss_type(self, p, logits, labels):
        if logits.rank < 2:
            raise OpError(f"expects logits [N, classes, ...], got {logits}")
        expected = self.label_type(p, logits)
        if tuple(labels.shape[1:]) != tuple(expected.shape[1:]) or not labels.is_integer:
            raise OpError(f"expects integer labels {expected} for logits {logits}, got {labels}")
        return TensorType(expected.shape, logits.dtype)

    def check_class_weights(self, p, logits):
        if len(p.class_weights) != logits.shape[1]:
            raise OpError(f"class_weights has {len(p.class_weights)} entries for logits {logits} of {logits.shape[1]} classes", "class_weights")

    def class_weight_of(self, p, labels, weights):
        return weights[labels.long()]

    def flops(self, p, inputs, outputs):
        return 4 * inputs[0].sample_size

    def elementwise(self, p, inputs):
        import torch.nn.functional as F

        classes = inputs[0].shape[1]

        def sparse_softmax_cross_entropy_with_logits(logits, labels):
            labels = labels.long()  # TF takes int32 or int64 labels; PyTorch's kernel only int64
            check_labels(labels, classes)
            return F.cross_entropy(logits, labels, reduction="none", label_smoothing=p.label_smoothing)

        return sparse_softmax_cross_entropy_with_logits


class LabelError(UserError, ValueError):
    """A label outside the valid class range: the user's data (exit status 2)."""


def check_labels(labels, classes: int) -> None:
    import torch

    if labels.device.type != "cpu" or torch.compiler.is_compiling():
        # no host synchronisation on accelerators, and no data-dependent branch for torch.compile
        # (it would split the compiled step at every node): an assert inside the computation instead
        torch._assert_async(((labels >= 0) & (labels < classes)).all(), f"label outside [0, {classes})")
        return
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        value = int(labels[bad][0])
        raise LabelError(f"received a label value of {value} which is outside the valid range of [0, {classes})")


class SameShapeLoss(Loss):
    """A loss whose labels have the logits' shape and dtype; the loss is element-wise."""

    example_inputs = ((4, 3),)

    def loss_type(self, p, logits, labels):
        if tuple(labels.shape[1:]) != tuple(logits.shape[1:]) or not labels.dtype.startswith("float"):
            raise OpError(f"expects float labels of the logits' shape {logits}, got {labels}")
        return logits

    def flops(self, p, inputs, outputs):
        return 4 * inputs[0].sample_size


class BinaryLoss(SameShapeLoss):
    """An element-wise loss against 0/1 labels: `class_weights` is [weight of label 0, weight of label 1]."""

    def check_class_weights(self, p, logits):
        if len(p.class_weights) != 2:
            raise OpError(f"class_weights has {len(p.class_weights)} entries; a binary loss takes 2: [weight of label 0, weight of label 1]", "class_weights")

    def class_weight_of(self, p, labels, weights):
        return weights[0] * (1 - labels) + weights[1] * labels


@register
class SigmoidCrossEntropyWithLogits(BinaryLoss):
    """Element-wise logistic loss, as tf.nn.sigmoid_cross_entropy_with_logits
    (reduced: tf.losses.sigmoid_cross_entropy).

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

    class Params(ClassLossParams):
        label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="pulls each target towards 1/2 by this fraction")

    def elementwise(self, p, inputs):
        import torch.nn.functional as F

        keep, shift = 1.0 - p.label_smoothing, 0.5 * p.label_smoothing

        def sigmoid_cross_entropy_with_logits(logits, labels):
            targets = labels.detach() if shift == 0.0 else labels.detach() * keep + shift
            return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")

        return sigmoid_cross_entropy_with_logits


class RegressionLoss(SameShapeLoss):
    """An element-wise loss of predictions against targets (`predictions:` or `logits:` names the node)."""

    prediction = "values"


@register
class MeanSquaredError(RegressionLoss):
    """Element-wise squared error (predictions - labels)**2; reduced, it is
    tf.losses.mean_squared_error.

    Example (the loss section):
        {op: mean_squared_error, predictions: predictions, labels: targets}

    Inputs predictions [N, ...] and labels [N, ...] float (same shape); output [N, ...].
    """

    name = "mean_squared_error"
    imports = (im.keras_loss("mean_squared_error"),)
    tf_op = "SquaredDifference"
    tf_notes = "tf.losses.mean_squared_error(labels, predictions); `predictions:` (or `logits:`) names the predictions node."

    def flops(self, p, inputs, outputs):
        return 2 * inputs[0].sample_size

    def elementwise(self, p, inputs):
        def mean_squared_error(predictions, labels):
            return (predictions - labels.detach()).square()

        return mean_squared_error


@register
class HuberLoss(RegressionLoss):
    """Element-wise Huber loss, as tf.losses.huber_loss: quadratic within `delta`
    of the target, linear beyond it.

    With e = |predictions - labels|: 0.5 * e**2 where e <= delta, else
    0.5 * delta**2 + delta * (e - delta) (PyTorch's smooth_l1_loss(beta=delta)
    times delta; F.huber_loss is the same).

    Example (the loss section):
        {op: huber_loss, predictions: predictions, labels: targets, delta: 1.0}

    Inputs predictions [N, ...] and labels [N, ...] float (same shape); output [N, ...].
    """

    name = "huber_loss"
    tf_notes = "tf.losses.huber_loss(labels, predictions, delta=1.0); Keras's Huber is the same formula."

    class Params(LossParams):
        delta: float = Field(1.0, gt=0.0, description="where the loss turns from quadratic to linear")

    def flops(self, p, inputs, outputs):
        return 6 * inputs[0].sample_size

    def elementwise(self, p, inputs):
        delta = p.delta

        def huber_loss(predictions, labels):
            error = (predictions - labels.detach()).abs()
            quadratic = error.clamp(max=delta)
            return 0.5 * quadratic * quadratic + delta * (error - quadratic)

        return huber_loss


@register
class AbsoluteDifference(RegressionLoss):
    """Element-wise absolute error |predictions - labels|, as tf.losses.absolute_difference.

    Example (the loss section):
        {op: absolute_difference, predictions: predictions, labels: targets}

    Inputs predictions [N, ...] and labels [N, ...] float (same shape); output [N, ...].
    """

    name = "absolute_difference"
    tf_notes = "tf.losses.absolute_difference(labels, predictions); reduced by the mean it is Keras's mean_absolute_error."

    def flops(self, p, inputs, outputs):
        return 2 * inputs[0].sample_size

    def elementwise(self, p, inputs):
        def absolute_difference(predictions, labels):
            return (predictions - labels.detach()).abs()

        return absolute_difference


@register
class HingeLoss(BinaryLoss):
    """Element-wise hinge loss, as tf.losses.hinge_loss: max(0, 1 - (2z - 1) * x)
    for scores x and labels z in {0, 1} (mapped to {-1, 1}).

    A score above 0 predicts the positive class. `tfn predict` shows
    sigmoid(score), whose 0.5 threshold is that decision; it is not a
    calibrated probability.

    Example (the loss section):
        {op: hinge_loss, logits: scores, labels: targets}

    Inputs logits [N, ...] and labels [N, ...] float 0/1 (same shape); output [N, ...].
    """

    name = "hinge_loss"
    prediction = "sigmoid"
    tf_notes = "tf.losses.hinge_loss(labels, logits): labels are 0/1, not -1/1 as in Keras's hinge."

    class Params(ClassLossParams):
        pass

    def flops(self, p, inputs, outputs):
        return 4 * inputs[0].sample_size

    def elementwise(self, p, inputs):
        import torch

        def hinge_loss(logits, labels):
            signs = 2 * labels.detach() - 1
            return torch.relu(1 - signs * logits)

        return hinge_loss


@register
class LogLoss(BinaryLoss):
    """Element-wise log loss of probabilities, as tf.losses.log_loss:
    -z * log(p + epsilon) - (1 - z) * log(1 - p + epsilon).

    It takes probabilities (a sigmoid's output), not logits: for logits use
    sigmoid_cross_entropy_with_logits, which is stable. epsilon sits inside
    both logs, so p = 0 and p = 1 give finite values.

    Example (the loss section):
        {op: log_loss, predictions: probabilities, labels: targets}

    Inputs predictions [N, ...] in [0, 1] and labels [N, ...] float (same shape); output [N, ...].
    """

    name = "log_loss"
    prediction = "values"
    tf_notes = "tf.losses.log_loss(labels, predictions, epsilon=1e-7); Keras's binary_crossentropy clips instead."

    class Params(ClassLossParams):
        epsilon: float = Field(1e-7, ge=0.0, description="added inside both logarithms")

    def float_input_range(self, p, inputs, index):
        return (0.0, 1.0) if index in (0, 1) else None

    def flops(self, p, inputs, outputs):
        return 8 * inputs[0].sample_size

    def elementwise(self, p, inputs):
        import torch

        epsilon = p.epsilon

        def log_loss(predictions, labels):
            z = labels.detach()
            return -z * torch.log(predictions + epsilon) - (1 - z) * torch.log(1 - predictions + epsilon)

        return log_loss


@register
class CosineDistance(RegressionLoss):
    """Cosine distance 1 - sum(predictions * labels) along `axis`, as
    tf.losses.cosine_distance.

    Like TF it does not normalise: give unit vectors (e.g. through an
    l2-normalising node) or the value is not a cosine. The summed axis stays,
    with size 1 (TF's keepdims), so sample_weight [N] or [N, 1, ...] fit.

    Example (the loss section):
        {op: cosine_distance, predictions: embeddings, labels: targets, axis: 1}

    Inputs predictions [N, d, ...] and labels [N, d, ...] float (same shape); output [N, 1, ...].
    """

    name = "cosine_distance"
    tf_notes = "tf.losses.cosine_distance(labels, predictions, axis): TF needs axis; tfn's default is 1, the feature axis."

    class Params(LossParams):
        axis: int = Field(1, description="the axis the dot product runs over (1: the feature axis)")

    def loss_type(self, p, logits, labels):
        same = super().loss_type(p, logits, labels)
        axis = resolve_axis(p.axis, logits.rank)
        return TensorType(tuple(1 if k == axis else d for k, d in enumerate(same.shape)), same.dtype)

    def flops(self, p, inputs, outputs):
        return 2 * inputs[0].sample_size

    def elementwise(self, p, inputs):
        axis = resolve_axis(p.axis, inputs[0].rank)

        def cosine_distance(predictions, labels):
            return 1 - (predictions * labels.detach()).sum(axis, keepdim=True)

        return cosine_distance


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
class SoftmaxCrossEntropyWithLogits(Loss):
    """Softmax cross-entropy against a distribution over the classes, as
    tf.nn.softmax_cross_entropy_with_logits (reduced: tf.losses.softmax_cross_entropy).

    Labels may be soft (any distribution per row). The gradient to the
    logits is TF's `softmax(logits) - labels`, which equals the true
    derivative only when each label row sums to 1; no gradient flows to the
    labels (v1 semantics). The class axis is `axis`, by default 1 (channels-first).
    `class_weights` weighs each example by sum(labels * class_weights) over the class axis.

    Example (the loss section):
        {op: softmax_cross_entropy_with_logits, logits: logits, labels: label_distribution}

    Inputs logits [N, classes, ...] and labels [N, classes, ...] float; output [N, ...].
    """

    name = "softmax_cross_entropy_with_logits"
    imports = (im.keras_loss("categorical_crossentropy", keras_cross_entropy),)
    tf_op = "SoftmaxCrossEntropyWithLogits"
    prediction = "softmax"
    tf_notes = "TF's dim/axis=-1 is tfn's axis 1; labels get no gradient, as in v1 (v2 differentiates them)."
    example_inputs = ((4, 5),)

    class Params(ClassLossParams):
        axis: int = 1
        label_smoothing: float = Field(
            0.0, ge=0.0, lt=1.0, description="tf.losses.softmax_cross_entropy's: labels * (1 - s) + s / classes"
        )

    def loss_type(self, p, logits, labels):
        axis = resolve_axis(p.axis, logits.rank)
        if tuple(labels.shape[1:]) != tuple(logits.shape[1:]) or not labels.dtype.startswith("float"):
            raise OpError(f"expects float labels of the logits' shape {logits}, got {labels}")
        return TensorType(tuple(d for k, d in enumerate(logits.shape) if k != axis), logits.dtype)

    def check_class_weights(self, p, logits):
        classes = logits.shape[resolve_axis(p.axis, logits.rank)]
        if len(p.class_weights) != classes:
            raise OpError(f"class_weights has {len(p.class_weights)} entries for logits {logits} of {classes} classes", "class_weights")

    def class_weight_of(self, p, labels, weights):
        axis = resolve_axis(p.axis, labels.dim())
        shape = [1] * labels.dim()
        shape[axis] = -1
        return (labels * weights.view(shape)).sum(axis)

    def flops(self, p, inputs, outputs):
        return 5 * inputs[0].sample_size

    def elementwise(self, p, inputs):
        function = _softmax_xent_function()
        axis = resolve_axis(p.axis, inputs[0].rank)
        keep, shift = 1.0 - p.label_smoothing, p.label_smoothing / inputs[0].shape[axis]

        def softmax_cross_entropy_with_logits(logits, labels):
            targets = labels.detach() if shift == 0.0 else labels.detach() * keep + shift
            return function.apply(logits, targets, axis)

        return softmax_cross_entropy_with_logits
