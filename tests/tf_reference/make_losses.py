"""Reference values for tfn's losses (tf.compat.v1.losses), computed with TensorFlow.

Run with TensorFlow installed (not a dependency of tfn or of its tests):

    TF_CPP_MIN_LOG_LEVEL=2 python tests/tf_reference/make_losses.py

writes tests/tf_reference/losses.npz. For every loss, weights (none, one per
example [N, 1] with a zero, one per element with zeros) and reduction, it
stores the loss and its gradient with respect to the predictions/logits (for
NONE, of the sum). Layouts are TF's: class axis last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
losses = tf.compat.v1.losses
Reduction = losses.Reduction
REDUCTIONS = {
    "NONE": Reduction.NONE,
    "SUM": Reduction.SUM,
    "MEAN": Reduction.MEAN,
    "SUM_OVER_BATCH_SIZE": Reduction.SUM_OVER_BATCH_SIZE,
    "SUM_BY_NONZERO_WEIGHTS": Reduction.SUM_BY_NONZERO_WEIGHTS,
}
OUT = Path(__file__).with_name("losses.npz")
N, C = 4, 3
rng = np.random.default_rng(7)
values: dict[str, np.ndarray] = {"tf_version": np.array(tf.__version__)}

targets = rng.normal(size=(N, C)).astype(np.float32)
predictions = rng.normal(size=(N, C)).astype(np.float32)
predictions[0, 0] = targets[0, 0] + 1.0  # |error| exactly delta (1.0): Huber's joint
predictions[1, 1] = targets[1, 1]  # zero error
binary = (rng.random((N, C)) < 0.5).astype(np.float32)
scores = rng.normal(scale=2.0, size=(N, C)).astype(np.float32)
binary[0, 0], scores[0, 0] = 1.0, 1.0  # exactly on hinge's margin
probabilities = rng.uniform(0.02, 0.98, size=(N, C)).astype(np.float32)
probabilities[0, 0], probabilities[1, 0] = 0.0, 1.0  # log_loss's epsilon keeps these finite
unit_targets = targets / np.linalg.norm(targets, axis=1, keepdims=True)
unit_predictions = predictions / np.linalg.norm(predictions, axis=1, keepdims=True)
classes = rng.integers(0, C, size=N).astype(np.int64)
soft = rng.uniform(size=(N, C)).astype(np.float32)
soft /= soft.sum(1, keepdims=True)
logits = rng.normal(scale=2.0, size=(N, C)).astype(np.float32)

WEIGHTS = {
    "none": None,
    "example": np.array([[2.0], [0.0], [0.5], [1.0]], dtype=np.float32),  # [N, 1]: one per example
    "element": (rng.uniform(0.5, 2.0, size=(N, C)) * (rng.random((N, C)) < 0.7)).astype(np.float32),
}
WEIGHTS_SPARSE = {"none": None, "example": np.array([2.0, 0.0, 0.5, 1.0], dtype=np.float32)}  # the loss is [N]

CASES = {
    # name: (function(labels, x, weights, reduction), labels, x, weight variants)
    "huber_loss": (lambda y, x, w, r: losses.huber_loss(y, x, w, reduction=r), targets, predictions, WEIGHTS),
    "huber_loss_delta_0.5": (lambda y, x, w, r: losses.huber_loss(y, x, w, delta=0.5, reduction=r), targets, predictions, WEIGHTS),
    "absolute_difference": (lambda y, x, w, r: losses.absolute_difference(y, x, w, reduction=r), targets, predictions, WEIGHTS),
    "hinge_loss": (lambda y, x, w, r: losses.hinge_loss(y, x, w, reduction=r), binary, scores, WEIGHTS),
    "log_loss": (lambda y, x, w, r: losses.log_loss(y, x, w, reduction=r), binary, probabilities, WEIGHTS),
    "log_loss_epsilon_0.001": (lambda y, x, w, r: losses.log_loss(y, x, w, epsilon=1e-3, reduction=r), binary, probabilities, WEIGHTS),
    "cosine_distance": (lambda y, x, w, r: losses.cosine_distance(y, x, axis=1, weights=w, reduction=r), unit_targets, unit_predictions,
                        {"none": None, "example": WEIGHTS["example"]}),
    "cosine_distance_unnormalised": (lambda y, x, w, r: losses.cosine_distance(y, x, axis=1, weights=w, reduction=r), targets, predictions,
                                     {"none": None}),
    "mean_squared_error": (lambda y, x, w, r: losses.mean_squared_error(y, x, w, reduction=r), targets, predictions, WEIGHTS),
    "sigmoid_cross_entropy": (lambda y, x, w, r: losses.sigmoid_cross_entropy(y, x, w, reduction=r), binary, logits, WEIGHTS),
    "softmax_cross_entropy": (lambda y, x, w, r: losses.softmax_cross_entropy(y, x, w, reduction=r), soft, logits, WEIGHTS_SPARSE),
    "sparse_softmax_cross_entropy": (lambda y, x, w, r: losses.sparse_softmax_cross_entropy(y, x, w, reduction=r), classes, logits,
                                     WEIGHTS_SPARSE),
}

with tf.compat.v1.Session() as sess:
    for name, (fn, labels, x, weight_variants) in CASES.items():
        values[f"{name}/labels"], values[f"{name}/x"] = labels, x
        for wname, weights in weight_variants.items():
            if weights is not None:
                values[f"{name}/weights/{wname}"] = weights
            for rname, reduction in REDUCTIONS.items():
                xt = tf.constant(x)
                loss = fn(tf.constant(labels), xt, 1.0 if weights is None else tf.constant(weights), reduction)
                (grad,) = tf.gradients(tf.reduce_sum(loss), [xt])
                value, gradient = sess.run([loss, grad])
                values[f"{name}/{wname}/{rname}/loss"] = value
                values[f"{name}/{wname}/{rname}/grad"] = gradient

    # a sequence loss with a padding mask: logits [N, T, C], labels [N, T], weights [N, T]
    seq_logits = rng.normal(size=(3, 5, C)).astype(np.float32)
    seq_labels = rng.integers(0, C, size=(3, 5)).astype(np.int64)
    mask = (np.arange(5)[None, :] < np.array([[5], [2], [3]])).astype(np.float32)
    xt = tf.constant(seq_logits)
    loss = losses.sparse_softmax_cross_entropy(seq_labels, xt, mask)
    (grad,) = tf.gradients(loss, [xt])
    value, gradient = sess.run([loss, grad])
    values.update({"sequence/logits": seq_logits, "sequence/labels": seq_labels, "sequence/mask": mask,
                   "sequence/loss": value, "sequence/grad": gradient})

    # class weights, as TF 1.x code writes them: the weight of each label's class
    class_weights = np.array([1.0, 3.0, 0.5], dtype=np.float32)
    binary_weights = np.array([0.5, 2.0], dtype=np.float32)  # [label 0, label 1]
    values["class_weights"], values["binary_class_weights"] = class_weights, binary_weights
    idioms = {
        "sparse_softmax_cross_entropy": lambda: losses.sparse_softmax_cross_entropy(classes, xt, tf.gather(class_weights, classes)),
        "softmax_cross_entropy": lambda: losses.softmax_cross_entropy(soft, xt, tf.reduce_sum(soft * class_weights, 1)),
        "sigmoid_cross_entropy": lambda: losses.sigmoid_cross_entropy(
            binary, xt, binary_weights[0] * (1 - binary) + binary_weights[1] * binary),
        "hinge_loss": lambda: losses.hinge_loss(binary, xt, binary_weights[0] * (1 - binary) + binary_weights[1] * binary),
    }
    for name, make in idioms.items():
        xt = tf.constant(CASES[name][2])
        loss = make()
        (grad,) = tf.gradients(loss, [xt])
        values[f"{name}/class_weights/loss"], values[f"{name}/class_weights/grad"] = sess.run([loss, grad])

np.savez_compressed(OUT, **values)
print(f"wrote {OUT} ({len(values)} arrays, TensorFlow {tf.__version__})")
