"""Activations and dropout against NumPy formulas and the TF vectors of tf_semantics.md §9."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tfn import layers
from tfn.layers import OpError, TensorType


def kernel(name, attrs, shape, dtype="float64"):
    op = layers.get(name)
    p = op.Params.model_validate(attrs)
    types = [TensorType((None, *shape[1:]), dtype)]
    op.infer(p, types)
    return op.build(p, types)


def apply(name, x, attrs=None, variables=None, training=False):
    x = torch.as_tensor(x)
    return kernel(name, attrs or {}, tuple(x.shape))([x], variables or {}, training)


rng = np.random.default_rng(0)
X = rng.normal(scale=3.0, size=(3, 4, 5))


@pytest.mark.parametrize(
    "name,reference",
    [
        ("relu", lambda x: np.maximum(x, 0)),
        ("relu6", lambda x: np.minimum(np.maximum(x, 0), 6)),
        ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
        ("tanh", np.tanh),
        ("elu", lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0)))),
        ("softsign", lambda x: x / (1 + np.abs(x))),
        ("softplus", lambda x: np.log1p(np.exp(x))),
    ],
)
def test_elementwise_matches_numpy(name, reference):
    np.testing.assert_allclose(apply(name, X).numpy(), reference(X), rtol=1e-12, atol=1e-15)


def test_softplus_thresholds_T16():
    y = apply("softplus", torch.tensor([[-20.0, 0.0, 14.0, 20.0]], dtype=torch.float32))
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy()[0], [2.0611537e-09, 0.6931472, 14.0, 20.0], rtol=1e-6)
    assert y[0, 2].item() == 14.0  # exactly: 14 is past TF's float32 threshold log(eps) + 2 = -13.94
    big = apply("softplus", torch.tensor([[1000.0, -1000.0]], dtype=torch.float64, requires_grad=True))
    assert big.tolist() == [[1000.0, 0.0]]


def test_softplus_gradient_is_finite_everywhere():
    x = torch.tensor([[-1000.0, -20.0, 0.0, 20.0, 1000.0]], dtype=torch.float64, requires_grad=True)
    apply("softplus", x).sum().backward()
    sigmoid = [0.0, 2.0611536e-09, 0.5, 1 - 2.0611537e-09, 1.0]  # 1 / (1 + exp(-x)), by hand
    np.testing.assert_allclose(x.grad.numpy()[0], sigmoid, atol=1e-8)


def test_relu_and_relu6_gradients_at_the_kinks_T9():
    x = torch.tensor([[0.0, 6.0, 3.0]], dtype=torch.float64, requires_grad=True)
    apply("relu", x).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 1.0]]
    x.grad = None
    apply("relu6", x).sum().backward()
    assert x.grad.tolist() == [[0.0, 0.0, 1.0]]


def test_crelu_T9():
    x = torch.tensor([[1.0, -2.0], [3.0, -4.0]], dtype=torch.float64, requires_grad=True)
    y = apply("crelu", x)
    assert y.tolist() == [[1, 0, 0, 2], [3, 0, 0, 4]]
    y.sum().backward()
    assert x.grad.tolist() == [[1, -1], [1, -1]]  # d relu(x)/dx + d relu(-x)/dx


def test_crelu_doubles_the_channel_axis():
    x = rng.normal(size=(2, 3, 4, 4))
    y = apply("crelu", x).numpy()
    np.testing.assert_array_equal(y, np.maximum(np.concatenate([x, -x], axis=1), 0))
    np.testing.assert_array_equal(apply("crelu", x, {"axis": -1}).numpy(), np.maximum(np.concatenate([x, -x], axis=3), 0))
    op = layers.get("crelu")
    assert op.infer(op.Params(), [TensorType((None, 3, 4, 4))])[0].shape == (None, 6, 4, 4)


def test_bias_add_on_the_channel_axis():
    x = rng.normal(size=(2, 3, 4, 5))
    b = np.array([1.0, -2.0, 0.5])
    y = apply("bias_add", x, variables={"bias": torch.from_numpy(b)}).numpy()
    np.testing.assert_allclose(y, x + b[None, :, None, None])
    op = layers.get("bias_add")
    p = op.Params.model_validate({"bias_initializer": {"constant": 0.1}})
    (bias,) = op.variables(p, [TensorType((None, 3, 4, 5))])
    assert bias.shape == (3,) and bias.initializer == {"constant": 0.1}


def softmax_reference(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def test_softmax_and_log_softmax_default_to_the_channel_axis():
    x = rng.normal(scale=10, size=(2, 5, 3))
    np.testing.assert_allclose(apply("softmax", x).numpy(), softmax_reference(x, 1), rtol=1e-12)
    shifted = x - x.max(1, keepdims=True)
    np.testing.assert_allclose(apply("log_softmax", x).numpy(), shifted - np.log(np.exp(shifted).sum(1, keepdims=True)), rtol=1e-12)
    np.testing.assert_allclose(apply("softmax", x, {"axis": -1}).numpy(), softmax_reference(x, 2), rtol=1e-12)
    with pytest.raises(OpError, match="batch axis"):
        kernel("softmax", {"axis": 0}, (2, 5))


# --- dropout -------------------------------------------------------------------------------------


def test_dropout_noise_shape_T15():
    x = torch.ones(2, 3, 4, dtype=torch.float64)
    torch.manual_seed(0)
    # TF: noise_shape [2, 1, 4]; the batch size is unknown in a spec, so -1 stands for it
    y = apply("dropout", x, {"keep_prob": 0.5, "noise_shape": [-1, 1, 4]}, training=True)
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(y, y[:, :1, :].expand_as(y)), "one decision shared along axis 1"
    assert torch.equal(apply("dropout", x, {"keep_prob": 1.0}, training=True), x)
    assert torch.equal(apply("dropout", x, {"rate": 0.5}, training=False), x)


def test_dropout_feature_maps_with_minus_one():
    x = torch.ones(64, 8, 5, 5, dtype=torch.float64)
    torch.manual_seed(0)
    y = apply("dropout", x, {"rate": 0.25, "noise_shape": [-1, -1, 1, 1]}, training=True)
    per_map = y.flatten(2)
    assert torch.equal(per_map.amax(2), per_map.amin(2)), "a whole feature map is kept or dropped"
    assert 0 < (per_map[:, :, 0] == 0).sum() < 64 * 8


def test_dropout_statistics():
    n = 200_000
    x = torch.ones(1, n, dtype=torch.float64)
    torch.manual_seed(0)
    y = apply("dropout", x, {"rate": 0.3}, training=True)
    kept = (y != 0).double().mean().item()
    # the kept fraction is within 5 standard deviations of 0.7; kept values are 1/0.7
    assert abs(kept - 0.7) < 5 * math.sqrt(0.7 * 0.3 / n)
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.7, dtype=torch.float64))
    assert abs(y.mean().item() - 1.0) < 5 * math.sqrt(0.3 / 0.7 / n)  # unbiased in expectation


def test_dropout_parameter_errors():
    Params = layers.get("dropout").Params
    for bad in ({}, {"rate": 0.5, "keep_prob": 0.5}, {"rate": 1.0}, {"keep_prob": 0.0}, {"rate": 0.5, "noise_shape": [0, 1]}):
        with pytest.raises(ValidationError):
            Params.model_validate(bad)
    with pytest.raises(OpError, match="one per axis") as info:
        kernel("dropout", {"rate": 0.5, "noise_shape": [-1, 1]}, (2, 3, 4))
    assert info.value.field == "noise_shape"
    with pytest.raises(OpError, match="axis 2 must be 1, -1 or 4"):
        kernel("dropout", {"rate": 0.5, "noise_shape": [-1, 1, 3]}, (2, 3, 4))
