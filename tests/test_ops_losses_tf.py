"""The losses, weights and reductions against tf.compat.v1.losses (tests/tf_reference/make_losses.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfn import layers
from tfn.layers import OpError, TensorType

# the reference's case -> (tfn op, its attributes)
CASES = {
    "huber_loss": ("huber_loss", {}),
    "huber_loss_delta_0.5": ("huber_loss", {"delta": 0.5}),
    "absolute_difference": ("absolute_difference", {}),
    "hinge_loss": ("hinge_loss", {}),
    "log_loss": ("log_loss", {}),
    "log_loss_epsilon_0.001": ("log_loss", {"epsilon": 1e-3}),
    "cosine_distance": ("cosine_distance", {"axis": 1}),
    "cosine_distance_unnormalised": ("cosine_distance", {}),
    "mean_squared_error": ("mean_squared_error", {}),
    "sigmoid_cross_entropy": ("sigmoid_cross_entropy_with_logits", {}),
    "softmax_cross_entropy": ("softmax_cross_entropy_with_logits", {}),
    "sparse_softmax_cross_entropy": ("sparse_softmax_cross_entropy_with_logits", {}),
}
REDUCTIONS = ["NONE", "SUM", "MEAN", "SUM_OVER_BATCH_SIZE", "SUM_BY_NONZERO_WEIGHTS"]


def type_of(t: torch.Tensor) -> TensorType:
    return TensorType((None, *t.shape[1:]), str(t.dtype).removeprefix("torch."))


def run_loss(name, attrs, x, labels, weights=None):
    """(unreduced weighted loss, scalar reduced loss, gradient of the reduced loss to x) through the op's kernel."""
    op = layers.get(name)
    p = op.Params.model_validate(attrs)
    x = torch.as_tensor(x, dtype=torch.float64).requires_grad_()
    xs = [x, torch.as_tensor(labels)] + ([torch.as_tensor(weights, dtype=torch.float64)] if weights is not None else [])
    types = [type_of(t) for t in xs]
    inferred = op.infer(p, types)
    out = op.build(p, types)(xs, {}, True)
    out = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape[1:]) for o in out] == [t.shape[1:] for t in inferred]
    reduced = op.reduce(p, *out)
    (grad,) = torch.autograd.grad(reduced, [x])
    return out[0].detach().numpy(), reduced.item(), grad.numpy()


def cases(ref):
    for case in CASES:
        for weights in ("none", "example", "element"):
            if f"{case}/{weights}/NONE/loss" in ref:
                yield case, weights


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_losses_weights_and_reductions_match_tf(tf_reference, reduction):
    ref = tf_reference("losses")
    checked = 0
    for case, weights in cases(ref):
        name, attrs = CASES[case]
        w = ref.get(f"{case}/weights/{weights}")
        loss, reduced, grad = run_loss(name, {**attrs, "reduction": reduction}, ref[f"{case}/x"], ref[f"{case}/labels"], w)
        want = ref[f"{case}/{weights}/{reduction}/loss"]
        where = f"{case}, weights {weights}, {reduction}"
        if reduction == "NONE":
            np.testing.assert_allclose(loss, want, rtol=2e-6, atol=2e-6, err_msg=where)
        else:
            np.testing.assert_allclose(reduced, want, rtol=2e-6, atol=2e-6, err_msg=where)
        np.testing.assert_allclose(grad, ref[f"{case}/{weights}/{reduction}/grad"], rtol=2e-5, atol=2e-6, err_msg=where)
        checked += 1
    assert checked == 31


def test_per_example_weights_may_be_given_as_n(tf_reference):
    """TF wants [N, 1] for per-example weights of an [N, C] loss; tfn also takes [N]."""
    ref = tf_reference("losses")
    w = ref["huber_loss/weights/example"]
    _, reduced, grad = run_loss("huber_loss", {}, ref["huber_loss/x"], ref["huber_loss/labels"], w[:, 0])
    np.testing.assert_allclose(reduced, ref["huber_loss/example/SUM_BY_NONZERO_WEIGHTS/loss"], rtol=2e-6)
    np.testing.assert_allclose(grad, ref["huber_loss/example/SUM_BY_NONZERO_WEIGHTS/grad"], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize(
    "case, table",
    [
        ("sparse_softmax_cross_entropy", "class_weights"),
        ("softmax_cross_entropy", "class_weights"),
        ("sigmoid_cross_entropy", "binary_class_weights"),
        ("hinge_loss", "binary_class_weights"),
    ],
)
def test_class_weights_match_the_tf_idiom(tf_reference, case, table):
    ref = tf_reference("losses")
    name, attrs = CASES[case]
    _, reduced, grad = run_loss(name, {**attrs, "class_weights": ref[table].tolist()}, ref[f"{case}/x"], ref[f"{case}/labels"])
    np.testing.assert_allclose(reduced, ref[f"{case}/class_weights/loss"], rtol=2e-6)
    np.testing.assert_allclose(grad, ref[f"{case}/class_weights/grad"], rtol=2e-5, atol=2e-6)


def test_a_sequence_loss_under_a_padding_mask(tf_reference):
    ref = tf_reference("losses")
    logits = np.moveaxis(ref["sequence/logits"], -1, 1)  # [N, T, C] -> tfn's [N, C, T]
    _, reduced, grad = run_loss("sparse_softmax_cross_entropy_with_logits", {}, logits, ref["sequence/labels"], ref["sequence/mask"])
    np.testing.assert_allclose(reduced, ref["sequence/loss"], rtol=2e-6)
    np.testing.assert_allclose(np.moveaxis(grad, 1, -1), ref["sequence/grad"], rtol=2e-5, atol=2e-7)


def test_huber_is_smooth_l1_times_delta_and_traps_are_hand_checked():
    e = np.array([[-3.0, -0.5, 0.0, 0.5, 2.0]])
    loss, _, _ = run_loss("huber_loss", {"delta": 2.0}, e, np.zeros_like(e))
    np.testing.assert_allclose(loss, [[4.0, 0.125, 0.0, 0.125, 2.0]])  # 0.5*d^2 + d*(|e|-d) beyond d = 2
    hinge, _, _ = run_loss("hinge_loss", {}, np.array([[0.5, 0.5, -2.0]]), np.array([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(hinge, [[0.5, 1.5, 0.0]])  # label 0 is -1: max(0, 1 + x)
    log, _, _ = run_loss("log_loss", {"epsilon": 0.0}, np.array([[0.25]]), np.array([[1.0]]))
    np.testing.assert_allclose(log, [[np.log(4.0)]])


def test_all_zero_weights_give_zero_not_nan():
    for reduction in ("MEAN", "SUM_BY_NONZERO_WEIGHTS"):
        _, reduced, grad = run_loss("absolute_difference", {"reduction": reduction}, np.ones((2, 3)), np.zeros((2, 3)), np.zeros(2))
        assert reduced == 0.0 and np.all(grad == 0.0)


def test_weights_that_do_not_fit_name_the_attribute():
    op = layers.get("huber_loss")
    p = op.Params()
    with pytest.raises(OpError, match=r"sample_weight \[\?, 2\] does not fit the loss \[\?, 3\]") as e:
        op.infer(p, [TensorType((None, 3)), TensorType((None, 3)), TensorType((None, 2))])
    assert e.value.field == "sample_weight"
    sparse = layers.get("sparse_softmax_cross_entropy_with_logits")
    with pytest.raises(OpError, match="class_weights has 2 entries for logits .* of 3 classes"):
        sparse.infer(sparse.Params(class_weights=[1.0, 2.0]), [TensorType((None, 3)), TensorType((None,), "int64")])
    with pytest.raises(OpError, match="a binary loss takes 2"):
        hinge = layers.get("hinge_loss")
        hinge.infer(hinge.Params(class_weights=[1.0, 2.0, 3.0]), [TensorType((None, 3)), TensorType((None, 3))])
