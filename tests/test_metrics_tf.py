"""AUC, mean relative error and token accuracy against tf.compat.v1.metrics (tests/tf_reference/make_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfn.runners.metrics import Metrics
from tfn.specs.errors import UserError


def streamed(metrics: Metrics, *arrays) -> dict:
    """Update on the first 25 rows, then the rest, as the reference's two update ops."""
    for rows in (slice(0, 25), slice(25, None)):
        metrics.update(*(torch.from_numpy(np.ascontiguousarray(a[rows])) for a in arrays))
    return metrics.result()


@pytest.mark.parametrize("method", ["trapezoidal", "careful_interpolation", "minoring", "majoring"])
@pytest.mark.parametrize("thresholds", [200, 7])
def test_auc_matches_tf_metrics_auc(tf_reference, method, thresholds):
    ref = tf_reference("metrics")
    scores, labels = ref["auc/scores"], ref["auc/labels"]
    # a log_loss reads its predictions as they are ("values")
    metrics = Metrics(["auc", "pr_auc"], 3, "float32", prediction="values", auc_thresholds=thresholds, auc_summation=method)
    got = streamed(metrics, scores, labels)
    assert got["auc"] == pytest.approx(float(ref[f"auc/ROC/{method}/{thresholds}"]), abs=2e-6)
    assert got["pr_auc"] == pytest.approx(float(ref[f"auc/PR/{method}/{thresholds}"]), abs=2e-6)


def test_auc_of_a_sigmoid_loss_reads_the_logits_through_the_sigmoid(tf_reference):
    ref = tf_reference("metrics")
    scores, labels = np.clip(ref["auc/scores"].astype(np.float64), 1e-6, 1 - 1e-6), ref["auc/labels"]  # logit(0) is -inf
    logits = np.log(scores / (1 - scores)).astype(np.float32)
    by_logits = streamed(Metrics(["auc"], 3, "float32", prediction="sigmoid"), logits, labels)["auc"]
    by_scores = streamed(Metrics(["auc"], 3, "float32", prediction="values"), ref["auc/scores"], labels)["auc"]
    assert by_logits == pytest.approx(by_scores, abs=1e-3)  # thresholds met by float rounding may move one bucket
    assert by_logits == pytest.approx(float(ref["auc/ROC/trapezoidal/200"]), abs=1e-3)


def test_auc_refuses_values_outside_0_1():
    metrics = Metrics(["auc"], 1, "float32", prediction="values")
    metrics.update(torch.tensor([[0.2], [1.5]]), torch.tensor([[0.0], [1.0]]))
    with pytest.raises(UserError, match=r"1 prediction\(s\) outside \[0, 1\]"):
        metrics.result()


def test_mean_relative_error_matches_tf(tf_reference):
    ref = tf_reference("metrics")
    got = streamed(Metrics(["mean_relative_error"], 2, "float32", prediction="values"), ref["mre/predictions"], ref["mre/labels"])
    assert got["mean_relative_error"] == pytest.approx(float(ref["mre/value"]), rel=1e-5)


def test_token_accuracy_matches_tf_accuracy_with_a_padding_mask(tf_reference):
    ref = tf_reference("metrics")
    logits = np.moveaxis(ref["token/logits"], -1, 1)  # tfn's class axis is 1: [N, C, T]
    metrics = Metrics(["token_accuracy", "accuracy"], 4, "int64", prediction="softmax", weighted=True)
    got = streamed(metrics, logits, ref["token/labels"], ref["token/mask"])
    assert got["token_accuracy"] == pytest.approx(float(ref["token/value"]), rel=1e-6)
    unmasked = (ref["token/logits"].argmax(-1) == ref["token/labels"]).mean()
    assert got["accuracy"] == pytest.approx(unmasked)  # plain accuracy counts the padding too
    assert abs(got["accuracy"] - got["token_accuracy"]) > 0.01


def test_token_accuracy_needs_the_losss_weights():
    with pytest.raises(UserError, match="give the loss a sample_weight"):
        Metrics(["token_accuracy"], 4, "int64")


def test_values_predictions_use_the_threshold_on_the_value():
    metrics = Metrics(["accuracy"], 1, "float32", prediction="values", threshold=0.5)
    metrics.update(torch.tensor([[0.4], [0.6], [0.7]]), torch.tensor([[0.0], [1.0], [0.0]]))
    assert metrics.result()["accuracy"] == pytest.approx(2 / 3)
