"""Reference values for tfn's AUC, mean relative error and token accuracy (tf.compat.v1.metrics).

Run with TensorFlow installed (not a dependency of tfn or of its tests):

    TF_CPP_MIN_LOG_LEVEL=2 python tests/tf_reference/make_metrics.py

writes tests/tf_reference/metrics.npz. Each metric is streamed over two
batches (its update op run twice), as tfn accumulates over a split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
metrics = tf.compat.v1.metrics
OUT = Path(__file__).with_name("metrics.npz")
rng = np.random.default_rng(3)
values: dict[str, np.ndarray] = {"tf_version": np.array(tf.__version__)}

# scores in [0, 1] that overlap between the classes, with the end points and thresholds hit exactly
labels = (rng.random((40, 3)) < 0.4).astype(np.float32)
scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1).astype(np.float32)
scores[0, :] = [0.0, 1.0, 100 / 199]  # 100/199 is one of the 200 thresholds
scores[1, :2] = [0.5, 0.25]
values.update({"auc/labels": labels, "auc/scores": scores})


def streamed(make, *arrays) -> float:
    """The metric's value after its update op ran on the first 25 rows, then the rest."""
    graph = tf.Graph()
    with graph.as_default():
        holders = [tf.compat.v1.placeholder(a.dtype, (None, *a.shape[1:])) for a in arrays]
        value, update = make(*holders)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.local_variables_initializer())
            for rows in (slice(0, 25), slice(25, None)):
                sess.run(update, {h: a[rows] for h, a in zip(holders, arrays)})
            return sess.run(value)


for curve in ("ROC", "PR"):
    for method in ("trapezoidal", "careful_interpolation", "minoring", "majoring"):
        for thresholds in (200, 7):
            values[f"auc/{curve}/{method}/{thresholds}"] = streamed(
                lambda y, p: metrics.auc(y, p, num_thresholds=thresholds, curve=curve, summation_method=method), labels, scores)

targets = rng.normal(size=(30, 2)).astype(np.float32)
targets[0, 0] = 0.0  # TF counts a zero normaliser as a zero error
predictions = (targets + rng.normal(scale=0.3, size=targets.shape)).astype(np.float32)
values.update({"mre/labels": targets, "mre/predictions": predictions,
               "mre/value": streamed(lambda y, p: metrics.mean_relative_error(y, p, normalizer=y), targets, predictions)})

# token accuracy: labels [N, T], logits [N, T, C], a padding mask as the weights
logits = rng.normal(size=(30, 6, 4)).astype(np.float32)
tokens = rng.integers(0, 4, size=(30, 6)).astype(np.int64)
tokens[:, :2] = logits[:, :2].argmax(-1)  # some right answers
mask = (np.arange(6)[None, :] < rng.integers(1, 7, size=(30, 1))).astype(np.float32)
values.update({"token/logits": logits, "token/labels": tokens, "token/mask": mask,
               "token/value": streamed(lambda y, x, w: metrics.accuracy(y, tf.argmax(x, -1), weights=w), tokens, logits, mask)})

np.savez_compressed(OUT, **values)
print(f"wrote {OUT} ({len(values)} arrays, TensorFlow {tf.__version__})")
