"""Loss ops against the TF vectors of tf_semantics.md §9 and float64 NumPy formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfn import layers
from tfn.layers import OpError, TensorType
from tfn.layers.losses import LabelError


def loss(name, logits, labels, attrs=None):
    op = layers.get(name)
    p = op.Params.model_validate(attrs or {})
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    types = [TensorType((None, *logits.shape[1:]), str(logits.dtype)[6:]), TensorType((None, *labels.shape[1:]), str(labels.dtype)[6:])]
    inferred = op.infer(p, types)
    out = op.build(p, types)([logits, labels], {}, True)
    assert tuple(out.shape[1:]) == tuple(inferred[0].shape[1:])
    return out


def test_sigmoid_cross_entropy_T11():
    logits = torch.tensor([[-1000.0, -2.0, 0.0, 2.0, 1000.0]], dtype=torch.float32)
    labels = torch.tensor([[0.0, 1.0, 0.5, 0.0, 1.0]], dtype=torch.float32)
    out = loss("sigmoid_cross_entropy_with_logits", logits, labels)
    np.testing.assert_allclose(out.numpy()[0], [0, 2.126928, 0.6931472, 2.126928, 0], rtol=1e-6, atol=1e-7)


def test_sigmoid_cross_entropy_matches_formula():
    rng = np.random.default_rng(0)
    x, z = rng.normal(scale=5, size=(4, 3, 2)), rng.uniform(size=(4, 3, 2))
    reference = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
    np.testing.assert_allclose(loss("sigmoid_cross_entropy_with_logits", x, z).numpy(), reference, rtol=1e-12)


def test_softmax_cross_entropy_T12():
    logits = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    out = loss("softmax_cross_entropy_with_logits", logits, torch.tensor([[0.2, 0.3, 0.5]], dtype=torch.float64))
    assert out.shape == (1,)
    np.testing.assert_allclose(out.item(), 1.1076059, rtol=1e-7)
    # unnormalised labels: TF's gradient softmax - labels, not autograd's softmax * sum(labels) - labels
    labels = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss("softmax_cross_entropy_with_logits", logits, labels).sum().backward()
    np.testing.assert_allclose(logits.grad.numpy()[0], [-0.90997, -0.75527, 0.66524], atol=1e-5)
    assert labels.grad is None  # v1: no gradient to the labels


def test_softmax_cross_entropy_matches_numpy_on_another_axis():
    rng = np.random.default_rng(1)
    x = rng.normal(scale=4, size=(2, 3, 5))
    z = rng.uniform(size=(2, 3, 5))
    z /= z.sum(2, keepdims=True)
    log_p = x - x.max(2, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(2, keepdims=True))
    out = loss("softmax_cross_entropy_with_logits", x, z, {"axis": -1})
    np.testing.assert_allclose(out.numpy(), -(z * log_p).sum(2), rtol=1e-12)


def test_softmax_cross_entropy_custom_gradient_passes_gradcheck():
    rng = np.random.default_rng(2)
    z = torch.from_numpy(rng.uniform(size=(3, 4, 2))).softmax(1)  # rows that sum to 1: TF's gradient is exact
    x = torch.from_numpy(rng.normal(size=(3, 4, 2))).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: loss("softmax_cross_entropy_with_logits", x, z), [x])


def test_mean_squared_error():
    rng = np.random.default_rng(3)
    y, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    out = loss("mean_squared_error", y, t)
    np.testing.assert_allclose(out.numpy(), (y - t) ** 2, rtol=1e-12)
    np.testing.assert_allclose(out.mean().item(), np.mean((y - t) ** 2))  # the runner's mean: tf.losses.mean_squared_error


def test_sparse_softmax_cross_entropy_matches_numpy():
    rng = np.random.default_rng(4)
    x = rng.normal(scale=3, size=(5, 4))
    labels = np.array([0, 3, 1, 2, 3])
    log_p = x - np.log(np.exp(x).sum(1, keepdims=True))
    out = loss("sparse_softmax_cross_entropy_with_logits", x, labels)
    np.testing.assert_allclose(out.numpy(), -log_p[np.arange(5), labels], rtol=1e-12)


@pytest.mark.parametrize("bad", [-1, 4])
def test_sparse_label_out_of_range_names_value_and_class_count(bad):
    with pytest.raises(LabelError, match=rf"label value of {bad} which is outside the valid range of \[0, 4\)"):
        loss("sparse_softmax_cross_entropy_with_logits", np.zeros((2, 4)), np.array([0, bad]))


def test_label_type_mismatches_are_op_errors():
    op = layers.get("softmax_cross_entropy_with_logits")
    with pytest.raises(OpError, match="float labels"):
        op.infer(op.Params(), [TensorType((None, 4)), TensorType((None,), "int64")])
    op = layers.get("sparse_softmax_cross_entropy_with_logits")
    with pytest.raises(OpError, match="integer labels"):
        op.infer(op.Params(), [TensorType((None, 4)), TensorType((None, 4))])


def test_sigmoid_cross_entropy_label_smoothing_pulls_targets_to_one_half():
    rng = np.random.default_rng(1)
    x, z = rng.normal(scale=3, size=(5, 4)), rng.integers(0, 2, size=(5, 4)).astype(np.float64)
    smoothed = z * (1 - 0.2) + 0.5 * 0.2  # tf.losses.sigmoid_cross_entropy
    reference = np.maximum(x, 0) - x * smoothed + np.log1p(np.exp(-np.abs(x)))
    out = loss("sigmoid_cross_entropy_with_logits", x, z, {"label_smoothing": 0.2})
    np.testing.assert_allclose(out.numpy(), reference, rtol=1e-12)


def test_softmax_cross_entropy_label_smoothing_mixes_in_the_uniform_distribution():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4, 2))  # class axis 1, as channels-first
    labels = np.eye(4)[rng.integers(0, 4, size=(3, 2))].transpose(0, 2, 1)
    smoothed = labels * (1 - 0.1) + 0.1 / 4  # tf.losses.softmax_cross_entropy
    log_softmax = x - x.max(1, keepdims=True) - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True))
    reference = -(smoothed * log_softmax).sum(1)
    out = loss("softmax_cross_entropy_with_logits", x, labels, {"label_smoothing": 0.1})
    np.testing.assert_allclose(out.numpy(), reference, rtol=1e-12)
