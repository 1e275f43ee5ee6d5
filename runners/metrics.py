"""Evaluation metrics, accumulated on the device and read once at the end.

`Metrics(names, ...)` follows one (logits, labels) pair. `update()` only adds
to device tensors (no host synchronisation); `result()` reads them.

- Class-index labels (int, logits [N, classes, ...]): accuracy,
  top_k_accuracy, per_class_accuracy, confusion_matrix (rows: true class,
  columns: predicted), and precision/recall/f1; all but top-k come from one
  confusion matrix. token_accuracy is accuracy weighted by the loss's
  weights (node:1), so positions of weight 0 (padding, under a 0/1 mask as
  sample_weight) do not count: tf.metrics.accuracy(labels, predictions, weights).
- Multi-label 0/1 labels (float, the logits' shape; labels along axis 1):
  precision, recall, f1, an output counting as on when its probability >
  threshold (sigmoid(logit) for a loss whose prediction is "sigmoid", the
  value itself for "values", e.g. log_loss); accuracy is then the fraction of
  labels predicted right. auc and pr_auc are tf.metrics.auc's ROC and PR
  areas over every label, from the counts at `num_thresholds` thresholds.
- Regression targets (float): mean_squared_error, mean_absolute_error,
  mean_relative_error (tf.metrics.mean_relative_error with the labels as the
  normaliser: |labels - predictions| / labels, 0 where a label is 0).

Precision, recall and f1 combine the classes (or labels) as `average` says,
as scikit-learn's `average=` does (a ratio with a zero denominator is 0):
macro, the plain mean of the per-class values; micro, the values of the
pooled counts (for class indices all three equal accuracy); weighted, the
mean weighted by each class's true count. `auto` is macro for class indices
and micro for multi-label outputs.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from tfn.layers import is_integer
from tfn.specs.errors import UserError

CLASS_METRICS = ("accuracy", "top_k_accuracy", "per_class_accuracy", "confusion_matrix", "precision", "recall", "f1", "token_accuracy")
MULTI_LABEL_METRICS = ("accuracy", "precision", "recall", "f1", "auc", "pr_auc")
REGRESSION_METRICS = ("mean_squared_error", "mean_absolute_error", "mean_relative_error")


def default_metrics(label_dtype: str) -> list[str]:
    return ["accuracy"] if is_integer(label_dtype) else []


class Metrics:
    """Accumulates the chosen metrics over batches of (logits, labels[, weights]).

    `prediction` is the loss's (contract 2): "sigmoid" reads a float output as
    a logit, "values" as the value itself. `weighted`: the loss has weights
    (node:1), which token_accuracy needs.
    """

    def __init__(
        self,
        names: Sequence[str],
        classes: int,
        label_dtype: str,
        *,
        top_k: int = 5,
        threshold: float = 0.5,
        average: str = "auto",
        where: str = "train.metrics",
        prediction: str = "sigmoid",
        weighted: bool = False,
        auc_thresholds: int = 200,
        auc_summation: str = "trapezoidal",
    ):
        self.names = list(dict.fromkeys(names))
        self.classes = classes
        self.class_labels = is_integer(label_dtype)
        allowed = CLASS_METRICS if self.class_labels else MULTI_LABEL_METRICS + REGRESSION_METRICS
        wrong = [n for n in self.names if n not in allowed]
        if wrong:
            kind = "class-index" if self.class_labels else "float"
            raise UserError(
                f"{where}: error: {', '.join(wrong)} cannot be computed for {kind} labels; choose from {', '.join(allowed)}"
            )
        if "token_accuracy" in self.names and not weighted:
            raise UserError(
                f"{where}: error: token_accuracy leaves out positions of weight 0: give the loss a sample_weight "
                "(a 0/1 mask field of the labels' shape, 0 at padding)"
            )
        self.top_k = top_k  # below `classes`: the spec's compiler checks it
        self.average = ("macro" if self.class_labels else "micro") if average == "auto" else average
        self.probabilities = prediction == "sigmoid"
        self.threshold = threshold
        self.logit_threshold = math.log(threshold / (1 - threshold)) if 0 < threshold < 1 else (math.inf if threshold >= 1 else -math.inf)
        # tf.metrics.auc's thresholds: num_thresholds - 2 inside (0, 1), and one just outside each end
        inner = [(i + 1) * 1.0 / (auc_thresholds - 1) for i in range(auc_thresholds - 2)]
        self.auc_thresholds = torch.tensor([0.0 - 1e-7, *inner, 1.0 + 1e-7], dtype=torch.float32)
        self.auc_summation = auc_summation
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def _add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums[key] + value if key in self.sums else value

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        if not self.names:
            return
        if self.class_labels:
            # [N, C, ...] -> [M, C]; labels [N, ...] -> [M]
            flat = logits.movedim(1, -1).reshape(-1, logits.shape[1])
            target = labels.reshape(-1).long()  # uint8 * classes would wrap around
            predicted = flat.argmax(1)
            cells = torch.bincount(target * self.classes + predicted, minlength=self.classes * self.classes)
            self._add("confusion", cells.view(self.classes, self.classes))
            if "top_k_accuracy" in self.names:
                hits = (flat.topk(self.top_k, dim=1).indices == target[:, None]).any(1).sum()
                self._add("top_k", hits)
            if "token_accuracy" in self.names:
                w = weights.reshape(-1).to(torch.float64)
                self._add("token_right", ((predicted == target) * w).sum())
                self._add("token_weight", w.sum())
            self.count += target.numel()
            return
        diff = logits - labels
        if any(n in self.names for n in REGRESSION_METRICS):
            self._add("squared", diff.square().sum(dtype=torch.float64))
            self._add("absolute", diff.abs().sum(dtype=torch.float64))
            relative = torch.where(labels == 0, torch.zeros_like(diff), diff.abs() / torch.where(labels == 0, 1, labels))
            self._add("relative", relative.sum(dtype=torch.float64))
        if any(n in self.names for n in MULTI_LABEL_METRICS):
            on = logits > (self.logit_threshold if self.probabilities else self.threshold)
            truth = labels > 0.5
            self._add("tp", _per_label(on & truth))
            self._add("fp", _per_label(on & ~truth))
            self._add("fn", _per_label(~on & truth))
            self._add("right", (on == truth).sum())
        if "auc" in self.names or "pr_auc" in self.names:
            self._update_auc(logits, labels)
        self.count += labels.numel()

    def _update_auc(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Per-bucket counts of positives and negatives; bucket k holds predictions above exactly k thresholds."""
        scores = (torch.sigmoid(logits.float()) if self.probabilities else logits.float()).reshape(-1)
        thresholds = self.auc_thresholds.to(scores.device)
        buckets = torch.searchsorted(thresholds, scores)  # the number of thresholds strictly below each score
        positive = labels.reshape(-1) != 0  # TF casts the labels to bool
        size = len(thresholds) + 1
        self._add("auc_positive", torch.bincount(buckets[positive], minlength=size))
        self._add("auc_negative", torch.bincount(buckets[~positive], minlength=size))
        self._add("auc_outside", ((scores < 0) | (scores > 1)).sum())

    def result(self) -> dict:
        """Every chosen metric: floats, plus lists for per_class_accuracy and confusion_matrix."""
        if not self.names or self.count == 0:
            return {}
        out: dict = {}
        if self.class_labels:
            cm = self.sums["confusion"].to("cpu", torch.float64)
            true_per_class, predicted_per_class, tp = cm.sum(1), cm.sum(0), cm.diagonal()
            for name in self.names:
                if name == "accuracy":
                    out[name] = float(tp.sum() / self.count)
                elif name == "top_k_accuracy":
                    out[f"top_{self.top_k}_accuracy"] = float(self.sums["top_k"]) / self.count
                elif name == "per_class_accuracy":
                    out[name] = [float(t / n) if n else None for t, n in zip(tp, true_per_class)]
                elif name == "confusion_matrix":
                    out[name] = cm.to(torch.int64).tolist()
                elif name == "token_accuracy":
                    weight = float(self.sums["token_weight"])
                    out[name] = float(self.sums["token_right"]) / weight if weight else 0.0
                elif name in ("precision", "recall", "f1"):
                    out[name] = _averaged(name, tp, predicted_per_class - tp, true_per_class - tp, self.average)
            return out
        s = {k: v.to("cpu", torch.float64) for k, v in self.sums.items()}
        for name in self.names:
            if name == "mean_squared_error":
                out[name] = float(s["squared"]) / self.count
            elif name == "mean_absolute_error":
                out[name] = float(s["absolute"]) / self.count
            elif name == "mean_relative_error":
                out[name] = float(s["relative"]) / self.count
            elif name == "accuracy":
                out[name] = float(s["right"]) / self.count
            elif name in ("auc", "pr_auc"):
                out[name] = self._auc("ROC" if name == "auc" else "PR")
            else:
                out[name] = _averaged(name, s["tp"], s["fp"], s["fn"], self.average)
        return out

    def _auc(self, curve: str) -> float:
        """tf.metrics.auc from the bucket counts: its epsilons, and its summation method."""
        outside = int(self.sums["auc_outside"])
        if outside:
            raise UserError(
                f"auc: error: {outside} prediction(s) outside [0, 1]; AUC reads probabilities "
                "(the sigmoid of a sigmoid loss's logits, or a log_loss's predictions)"
            )

        def above(counts: torch.Tensor) -> torch.Tensor:  # per threshold: how many lie above it
            return counts.to("cpu", torch.float64).flip(0).cumsum(0).flip(0)[1:]

        tp, fp = above(self.sums["auc_positive"]), above(self.sums["auc_negative"])
        fn = float(self.sums["auc_positive"].sum()) - tp
        tn = float(self.sums["auc_negative"].sum()) - fp
        return float(auc_from_counts(tp, fn, tn, fp, curve, self.auc_summation))


def auc_from_counts(tp: torch.Tensor, fn: torch.Tensor, tn: torch.Tensor, fp: torch.Tensor, curve: str, summation: str) -> torch.Tensor:
    """tf.metrics.auc's area from the confusion counts at its thresholds (compute_auc, interpolate_pr_auc)."""
    epsilon = 1.0e-6
    if curve == "PR" and summation == "careful_interpolation":
        # Davis & Goadrich's interpolation between thresholds, in TF's closed form
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        slope = _ratio(dtp, (p[:-1] - p[1:]).clamp(min=0))
        intercept = tp[1:] - slope * p[1:]
        ratio = torch.where((p[:-1] > 0) & (p[1:] > 0), _ratio(p[:-1], p[1:].clamp(min=0)), torch.ones_like(p[1:]))
        return _ratio(slope * (dtp + intercept * torch.log(ratio)), (tp[1:] + fn[1:]).clamp(min=0)).sum()
    recall = (tp + epsilon) / (tp + fn + epsilon)
    if curve == "ROC":
        x, y = fp / (fp + tn + epsilon), recall
    else:
        x, y = recall, (tp + epsilon) / (tp + fp + epsilon)
    heights = {
        "minoring": torch.minimum(y[:-1], y[1:]),
        "majoring": torch.maximum(y[:-1], y[1:]),
    }.get(summation, (y[:-1] + y[1:]) / 2)
    return ((x[:-1] - x[1:]) * heights).sum()


def _per_label(flags: torch.Tensor) -> torch.Tensor:
    """Counts of true flags per label (axis 1; a rank-1 output is one label): [labels]."""
    if flags.dim() == 1:
        return flags.sum().reshape(1)
    return flags.transpose(0, 1).reshape(flags.shape[1], -1).sum(1)


def _averaged(name: str, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, average: str) -> float:
    """Precision, recall or f1 from per-class counts (float64 [classes]), combined by `average`."""
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    value = {"precision": precision, "recall": recall, "f1": _ratio(2 * precision * recall, precision + recall)}[name]
    if average == "weighted":
        support = tp + fn
        return float(_ratio((value * support).sum(), support.sum()))
    return float(value.mean())


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's zero_division=0)."""
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), torch.zeros_like(numerator))


def scalars(values: dict) -> dict[str, float]:
    """The scalar metrics (for TensorBoard and progress lines); lists are left out."""
    return {k: v for k, v in values.items() if isinstance(v, (int, float))}
