"""Batch normalization against TF's vector T14 and a NumPy formula."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tfn import layers
from tfn.layers import TensorType


def batch_norm(x, attrs=None, training=True, **overrides):
    op = layers.get("batch_normalization")
    p = op.Params.model_validate(attrs or {})
    types = [TensorType((None, *x.shape[1:]), "float64")]
    variables = {d.role: torch.full(d.shape, 1.0 if d.initializer == "ones" else 0.0, dtype=torch.float64) for d in op.variables(p, types)}
    variables.update({k: torch.as_tensor(v, dtype=torch.float64) for k, v in overrides.items()})
    y = op.build(p, types)([torch.as_tensor(x, dtype=torch.float64)], variables, training)
    return y, variables


@pytest.mark.parametrize("shape,moving_variance", [((4, 1), 1.04), ((4, 1, 1, 1), 1.0566667)])
def test_training_step_T14(shape, moving_variance):
    x = np.array([0.0, 2.0, 4.0, 6.0]).reshape(shape)
    y, v = batch_norm(x)
    np.testing.assert_allclose(y.numpy().ravel(), [-1.3415066, -0.4471689, 0.4471689, 1.3415066], rtol=1e-6)
    np.testing.assert_allclose(v["moving_mean"].item(), 0.03, rtol=1e-12)
    # 2-D: biased batch variance 5 -> 0.99 + 0.05; 4-D (TF's fused kernel): unbiased 20/3
    np.testing.assert_allclose(v["moving_variance"].item(), moving_variance, rtol=1e-6)


def test_three_d_inputs_update_with_the_biased_variance():
    x = np.random.default_rng(0).normal(size=(5, 3, 4))
    _, v = batch_norm(x, {"momentum": 0.9})
    np.testing.assert_allclose(v["moving_mean"].numpy(), 0.1 * x.mean((0, 2)), rtol=1e-12)
    np.testing.assert_allclose(v["moving_variance"].numpy(), 0.9 + 0.1 * x.var((0, 2)), rtol=1e-12)


def test_evaluation_uses_the_moving_statistics():
    x = np.random.default_rng(1).normal(size=(3, 2, 2, 2))
    mean, var, gamma, beta = np.array([0.5, -1.0]), np.array([2.0, 0.25]), np.array([1.5, 0.5]), np.array([0.1, -0.2])
    y, v = batch_norm(x, {"epsilon": 0.01}, training=False, moving_mean=mean, moving_variance=var, gamma=gamma, beta=beta)
    c = (slice(None), None, None)
    reference = gamma[c] * (x - mean[c]) / np.sqrt(var[c] + 0.01) + beta[c]
    np.testing.assert_allclose(y.numpy(), reference, rtol=1e-12)
    assert v["moving_mean"].tolist() == mean.tolist(), "evaluation leaves the moving statistics alone"


def test_center_and_scale_flags_drop_their_variables():
    op = layers.get("batch_normalization")
    roles = lambda attrs: [(d.role, d.trainable) for d in op.variables(op.Params.model_validate(attrs), [TensorType((None, 3))])]  # noqa: E731
    assert roles({}) == [("gamma", True), ("beta", True), ("moving_mean", False), ("moving_variance", False)]
    assert roles({"center": False, "scale": False}) == [("moving_mean", False), ("moving_variance", False)]
    y, _ = batch_norm(np.array([[0.0], [2.0]]), {"center": False, "scale": False})
    np.testing.assert_allclose(y.numpy().ravel(), [-1 / np.sqrt(1 + 1e-3), 1 / np.sqrt(1 + 1e-3)])


def test_fused_4d_path_raises_a_tiny_epsilon_as_tf():
    x = np.array([0.0, 0.0, 0.0, 1e-3]).reshape(4, 1, 1, 1)  # batch variance 1.875e-7: epsilon dominates
    y, _ = batch_norm(x, {"epsilon": 1e-8})
    mean, var = x.mean(), x.var()
    np.testing.assert_allclose(y.numpy().ravel(), ((x - mean) / np.sqrt(var + 1.001e-5)).ravel(), rtol=1e-10)
    y2, _ = batch_norm(x.reshape(4, 1), {"epsilon": 1e-8})  # not fused: epsilon as given
    np.testing.assert_allclose(y2.numpy().ravel(), ((x - mean) / np.sqrt(var + 1e-8)).ravel(), rtol=1e-10)


TINY_BATCHES = json.loads((Path(__file__).parent / "tf_reference" / "batch_norm_tiny_batches.json").read_text())


@pytest.mark.parametrize("case", sorted(TINY_BATCHES["cases"]))
def test_batches_with_one_value_per_channel_and_empty_ones_train_as_tf(case):
    """A last batch of one sample after a dense layer crashed ("Expected more than 1 value per channel").

    TF (tests/tf_reference/make_batch_norm_tiny_batches.py): the output is
    beta, only beta gets a gradient, the moving variance moves towards 0
    (no n/(n-1) for n = 1, fused or not). On an empty batch TF makes the
    moving statistics NaN; tfn leaves them as they are.
    """
    assert TINY_BATCHES["tensorflow"].startswith("2.")
    ref = TINY_BATCHES["cases"][case]
    x = torch.tensor(ref["x"], dtype=torch.float32).reshape(-1, 3, *([1] * (len(np.shape(ref["x"])) - 2))).requires_grad_()
    op = layers.get("batch_normalization")
    p = op.Params.model_validate({"momentum": TINY_BATCHES["momentum"]})
    types = [TensorType((None, *x.shape[1:]))]
    v = {d.role: torch.full(d.shape, 1.0 if d.initializer == "ones" else 0.0) for d in op.variables(p, types)}
    v["gamma"] = torch.tensor(TINY_BATCHES["gamma"]).requires_grad_()
    v["beta"] = torch.tensor(TINY_BATCHES["beta"]).requires_grad_()
    y = op.build(p, types)([x], v, True)
    (y * torch.tensor(TINY_BATCHES["upstream"]).reshape(1, 3, *([1] * (x.dim() - 2)))).sum().backward()
    np.testing.assert_allclose(y.detach().numpy().ravel(), np.ravel(ref["y"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x.grad.numpy().ravel(), np.ravel(ref["grad_x"]), atol=1e-5)
    np.testing.assert_allclose(v["beta"].grad.numpy(), ref["grad_beta"], rtol=1e-6)
    if x.shape[0] == 0:
        assert not np.isfinite(ref["moving_mean"]).any() and not np.isfinite(ref["moving_variance"]).any(), "TF's NaN, which tfn avoids"
        assert v["gamma"].grad is None or v["gamma"].grad.abs().sum() == 0
        assert v["moving_mean"].tolist() == [0.0] * 3 and v["moving_variance"].tolist() == [1.0] * 3
        return
    np.testing.assert_allclose(v["gamma"].grad.numpy(), ref["grad_gamma"], atol=1e-5)
    np.testing.assert_allclose(v["moving_mean"].numpy(), ref["moving_mean"], rtol=1e-5)
    np.testing.assert_allclose(v["moving_variance"].numpy(), ref["moving_variance"], rtol=1e-6)


def test_a_last_batch_of_one_after_a_dense_layer_trains(write_spec, tfn_cli, tmp_path):
    """33 rows at batch 32: the second step of each epoch has one sample."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rows.npz", x=rng.normal(size=(33, 4)).astype(np.float32), y=rng.integers(0, 2, 33))
    spec = write_spec(
        f"""
        version: 1
        name: last_batch_of_one
        model:
          inputs: {{x: {{shape: [4]}}}}
          layers:
            - {{op: dense, units: 8}}
            - {{name: bn, op: batch_normalization}}
            - {{name: logits, op: dense, units: 2}}
        loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
        data: {{source: npz, path: {tmp_path / "rows.npz"}, fields: {{x: x, label: y}}, batch_size: 32, split: {{validation: 0, test: 0}}}}
        train: {{epochs: 2}}
        """
    )
    code, _, err = tfn_cli("train", str(spec), "--out", str(tmp_path / "run"), "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["steps"] == 4
