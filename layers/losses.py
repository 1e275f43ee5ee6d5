"""Losses are graph ops, as in TF: they take (logits, labels) and give one loss per example."""

from __future__ import annotations

from tfn.layers.base import Op, OpError, TensorType, register


@register
class SparseSoftmaxCrossEntropyWithLogits(Op):
    """Softmax cross-entropy against integer class labels, one value per example,
    as tf.nn.sparse_softmax_cross_entropy_with_logits.

    The class axis is axis 1 (channels-first). A label outside [0, classes) is
    an error naming the value, never a NaN or a silently ignored row.

    Example (the loss section):
        {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}

    Inputs logits [N, classes, ...] and labels [N, ...] int64; output [N, ...].
    """

    name = "sparse_softmax_cross_entropy_with_logits"
    example_inputs = ((4, 5),)
    family = "loss"
    arity = (2, 2)
    is_loss = True

    def label_type(self, p, logits):
        return TensorType((logits.shape[0], *logits.shape[2:]), "int64")

    def infer(self, p, inputs):
        logits, labels = inputs
        if logits.rank < 2:
            raise OpError(f"expects logits [N, classes, ...], got {logits}")
        expected = self.label_type(p, logits)
        if tuple(labels.shape[1:]) != tuple(expected.shape[1:]) or not labels.dtype.startswith("int"):
            raise OpError(f"expects integer labels {expected} for logits {logits}, got {labels}")
        return [TensorType(expected.shape, logits.dtype)]

    def flops(self, p, inputs, outputs):
        return 4 * inputs[0].sample_size

    def build(self, p, inputs):
        import torch
        import torch.nn.functional as F

        classes = inputs[0].shape[1]

        def sparse_softmax_cross_entropy_with_logits(xs, v, training):
            logits, labels = xs
            check_labels(labels, classes)
            return F.cross_entropy(logits, labels, reduction="none")

        return sparse_softmax_cross_entropy_with_logits


class LabelError(ValueError):
    """A label outside the valid class range."""


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
