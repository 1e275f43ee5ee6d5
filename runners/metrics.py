"""Evaluation metrics, accumulated on the device and read once at the end.

`Metrics(names, ...)` follows one (logits, labels) pair. `update()` only adds
to device tensors (no host synchronisation); `result()` reads them.

- Class-index labels (int, logits [N, classes, ...]): accuracy,
  top_k_accuracy, per_class_accuracy, confusion_matrix (rows: true class,
  columns: predicted), and precision/recall/f1; all but top-k come from one
  confusion matrix.
- Multi-label 0/1 labels (float, the logits' shape; labels along axis 1):
  precision, recall, f1, an output counting as on when sigmoid(logit) >
  threshold; accuracy is then the fraction of labels predicted right.
- Regression targets (float): mean_squared_error, mean_absolute_error.

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

CLASS_METRICS = ("accuracy", "top_k_accuracy", "per_class_accuracy", "confusion_matrix", "precision", "recall", "f1")
MULTI_LABEL_METRICS = ("accuracy", "precision", "recall", "f1")
REGRESSION_METRICS = ("mean_squared_error", "mean_absolute_error")


def default_metrics(label_dtype: str) -> list[str]:
    return ["accuracy"] if is_integer(label_dtype) else []


class Metrics:
    """Accumulates the chosen metrics over batches of (logits, labels)."""

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
        self.top_k = top_k  # below `classes`: the spec's compiler checks it
        self.average = ("macro" if self.class_labels else "micro") if average == "auto" else average
        self.logit_threshold = math.log(threshold / (1 - threshold)) if 0 < threshold < 1 else (math.inf if threshold >= 1 else -math.inf)
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def _add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums[key] + value if key in self.sums else value

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
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
            self.count += target.numel()
            return
        diff = logits - labels
        if any(n in self.names for n in REGRESSION_METRICS):
            self._add("squared", diff.square().sum(dtype=torch.float64))
            self._add("absolute", diff.abs().sum(dtype=torch.float64))
        if any(n in self.names for n in MULTI_LABEL_METRICS):
            on = logits > self.logit_threshold
            truth = labels > 0.5
            self._add("tp", _per_label(on & truth))
            self._add("fp", _per_label(on & ~truth))
            self._add("fn", _per_label(~on & truth))
            self._add("right", (on == truth).sum())
        self.count += labels.numel()

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
                elif name in ("precision", "recall", "f1"):
                    out[name] = _averaged(name, tp, predicted_per_class - tp, true_per_class - tp, self.average)
            return out
        s = {k: v.to("cpu", torch.float64) for k, v in self.sums.items()}
        for name in self.names:
            if name == "mean_squared_error":
                out[name] = float(s["squared"]) / self.count
            elif name == "mean_absolute_error":
                out[name] = float(s["absolute"]) / self.count
            elif name == "accuracy":
                out[name] = float(s["right"]) / self.count
            else:
                out[name] = _averaged(name, s["tp"], s["fp"], s["fn"], self.average)
        return out


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
