"""TF's tf.layers.batch_normalization in training mode on batches with one value per channel, and empty ones.

Run with the TensorFlow reference environment (not a dependency of tfn):
    TF_USE_LEGACY_KERAS=1 python tests/tf_reference/make_batch_norm_tiny_batches.py
writes tests/tf_reference/batch_norm_tiny_batches.json. Inputs are channels-last
for TF (NHWC, NTC); the JSON stores them in tfn's channels-first layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_eager_execution()

GAMMA, BETA, UPSTREAM = [2.0, 3.0, 4.0], [0.5, -1.0, 2.0], [1.0, 2.0, 3.0]
MOMENTUM = 0.99
# name -> (TF shape, channels-last; the transpose to tfn's channels-first layout)
CASES = {
    "dense_batch_of_one": ((1, 3), (0, 1)),
    "sequence_batch_of_one_length_one": ((1, 1, 3), (0, 2, 1)),
    "image_batch_of_one_1x1": ((1, 1, 1, 3), (0, 3, 1, 2)),
    "image_batch_of_two_1x1": ((2, 1, 1, 3), (0, 3, 1, 2)),
    "dense_empty_batch": ((0, 3), (0, 1)),
    "image_empty_batch": ((0, 1, 1, 3), (0, 3, 1, 2)),
}


def case(shape):
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, shape)
        y = tf1.layers.batch_normalization(
            x, training=True, momentum=MOMENTUM, gamma_initializer=tf1.constant_initializer(GAMMA), beta_initializer=tf1.constant_initializer(BETA)
        )
        loss = tf.reduce_sum(y * tf.constant(UPSTREAM))
        gamma, beta = tf1.trainable_variables()
        grads = tf1.gradients(loss, [x, gamma, beta])
        moving = sorted((v for v in tf1.global_variables() if "moving" in v.name), key=lambda v: v.name)  # mean, variance
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            value = (np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) + 1.0) * 0.7
            y_value, *grad_values = session.run([y, *grads], {x: value})
            session.run(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS), {x: value})
            mean, variance = session.run(moving)
    return value, y_value, grad_values, mean, variance


def main() -> None:
    out = {"tensorflow": tf.__version__, "gamma": GAMMA, "beta": BETA, "upstream": UPSTREAM, "momentum": MOMENTUM, "cases": {}}
    for name, (shape, to_tfn) in CASES.items():
        value, y, (dx, dgamma, dbeta), mean, variance = case(shape)
        out["cases"][name] = {
            "x": value.transpose(to_tfn).tolist(),
            "y": y.transpose(to_tfn).tolist(),
            "grad_x": dx.transpose(to_tfn).tolist(),
            "grad_gamma": dgamma.tolist(),
            "grad_beta": dbeta.tolist(),
            "moving_mean": mean.tolist(),
            "moving_variance": variance.tolist(),
        }
    path = Path(__file__).with_name("batch_norm_tiny_batches.json")
    path.write_text(json.dumps(out, indent=1, allow_nan=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
