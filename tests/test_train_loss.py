"""Label smoothing on the sparse softmax loss, against TF's formula in float64 NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfn import layers
from tfn.layers import TensorType


def test_label_smoothing_matches_tf_formula():
    op = layers.get("sparse_softmax_cross_entropy_with_logits")
    params = op.Params(label_smoothing=0.2)
    kernel = op.build(params, [TensorType((None, 4), "float64"), TensorType((None,), "int64")])
    logits = np.random.default_rng(3).normal(size=(6, 4))
    labels = np.array([0, 1, 2, 3, 3, 1])
    got = kernel([torch.from_numpy(logits), torch.from_numpy(labels)], {}, True).numpy()
    # tf.losses.softmax_cross_entropy: target = onehot * (1 - s) + s / K, then -sum(target * log_softmax)
    target = np.eye(4)[labels] * 0.8 + 0.2 / 4
    z = logits - logits.max(1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(got, -(target * log_softmax).sum(1), rtol=1e-12)


def test_label_smoothing_is_a_spec_attribute_of_the_loss(write_spec):
    from tfn import specs

    text = """
    version: 1
    name: smooth
    model:
      inputs: {image: {shape: [1, 8, 8]}}
      layers:
        - {op: flatten}
        - {name: logits, op: dense, units: 10}
    loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label, label_smoothing: 0.1}
    data: {source: digits}
    """
    graph = specs.load(write_spec(text)).graph
    assert graph.node("loss").attrs == {"label_smoothing": 0.1}
    with pytest.raises(specs.SpecError, match="label_smoothing"):
        specs.load(write_spec(text.replace("0.1}", "1.5}")))
