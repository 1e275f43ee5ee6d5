"""Metrics against references written here in NumPy, accumulated over several batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfn.runners.metrics import Metrics
from tfn.specs.schema import better
from tfn.specs.errors import UserError

RNG = np.random.default_rng(5)


def batches(arrays, sizes):
    start = 0
    for size in sizes:
        yield [torch.from_numpy(a[start : start + size]) for a in arrays]
        start += size


def test_class_metrics_match_numpy():
    classes = 4
    logits = RNG.normal(size=(50, classes))
    labels = RNG.integers(0, classes, size=50)
    labels[:3] = 3  # make sure every class occurs
    metrics = Metrics(
        ["accuracy", "top_k_accuracy", "per_class_accuracy", "confusion_matrix", "precision", "recall", "f1"], classes, "int64", top_k=2
    )
    for x, y in batches([logits, labels], [20, 20, 10]):
        metrics.update(x, y)
    got = metrics.result()

    predicted = logits.argmax(1)
    cm = np.zeros((classes, classes), dtype=int)
    for t, p in zip(labels, predicted):
        cm[t, p] += 1
    top2 = np.argsort(-logits, axis=1)[:, :2]
    precision = np.array([cm[c, c] / cm[:, c].sum() if cm[:, c].sum() else 0.0 for c in range(classes)])
    recall = np.array([cm[c, c] / cm[c].sum() for c in range(classes)])
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)

    assert got["accuracy"] == pytest.approx((predicted == labels).mean(), abs=1e-12)
    assert got["top_2_accuracy"] == pytest.approx((top2 == labels[:, None]).any(1).mean(), abs=1e-12)
    assert got["confusion_matrix"] == cm.tolist()
    assert got["per_class_accuracy"] == pytest.approx(recall.tolist(), abs=1e-12)
    assert got["precision"] == pytest.approx(precision.mean(), abs=1e-12)
    assert got["recall"] == pytest.approx(recall.mean(), abs=1e-12)
    assert got["f1"] == pytest.approx(f1.mean(), abs=1e-12)


def test_hand_computed_confusion_and_accuracy():
    # logits pick classes [0, 1, 1, 2]; labels [0, 1, 2, 2] -> 3 of 4 right; class 2 recall 1/2
    logits = torch.tensor([[5.0, 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5]])
    labels = torch.tensor([0, 1, 2, 2])
    metrics = Metrics(["accuracy", "per_class_accuracy", "confusion_matrix"], 3, "int64")
    metrics.update(logits, labels)
    assert metrics.result() == {"accuracy": 0.75, "per_class_accuracy": [1.0, 1.0, 0.5], "confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 1, 1]]}


def test_class_axis_is_axis_1_for_dense_predictions():
    # [N, C, L] logits against [N, L] labels (per-position classes)
    logits = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])  # N=1, C=2, L=2 -> predictions [0, 1]
    metrics = Metrics(["accuracy"], 2, "int64")
    metrics.update(logits, torch.tensor([[0, 0]]))
    assert metrics.result() == {"accuracy": 0.5}


def test_multi_label_precision_recall_f1_micro():
    logits = RNG.normal(size=(30, 5))
    labels = (RNG.random(size=(30, 5)) < 0.4).astype(np.float32)
    metrics = Metrics(["precision", "recall", "f1", "accuracy"], 5, "float32", threshold=0.6)
    for x, y in batches([logits.astype(np.float32), labels], [7, 23]):
        metrics.update(x, y)
    got = metrics.result()
    on = 1 / (1 + np.exp(-logits)) > 0.6
    truth = labels > 0.5
    tp, fp, fn = (on & truth).sum(), (on & ~truth).sum(), (~on & truth).sum()
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert got["precision"] == pytest.approx(precision, abs=1e-12)
    assert got["recall"] == pytest.approx(recall, abs=1e-12)
    assert got["f1"] == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-12)
    assert got["accuracy"] == pytest.approx((on == truth).mean(), abs=1e-12)


@pytest.mark.parametrize(
    "average, expected",
    [
        # per class (true 3, 2, 1): precision 1, 1/2, 1/2; recall 2/3, 1/2, 1; f1 4/5, 1/2, 2/3
        ("macro", {"precision": 2 / 3, "recall": 13 / 18, "f1": 59 / 90}),
        ("auto", {"precision": 2 / 3, "recall": 13 / 18, "f1": 59 / 90}),
        ("micro", {"precision": 4 / 6, "recall": 4 / 6, "f1": 4 / 6}),  # pooled counts: each equals accuracy
        ("weighted", {"precision": (3 * 1 + 2 * 0.5 + 0.5) / 6, "recall": 4 / 6, "f1": (3 * 0.8 + 2 * 0.5 + 2 / 3) / 6}),
    ],
)
def test_class_averages_by_hand(average, expected):
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 1, 2, 2]), 3).float()
    metrics = Metrics(["precision", "recall", "f1"], 3, "int64", average=average)
    metrics.update(logits, labels)
    assert metrics.result() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_multi_label_macro_and_weighted_per_label_along_axis_1(average):
    # [N, L, T] outputs: label l's counts pool the batch and the positions T
    logits = RNG.normal(size=(20, 4, 3))
    labels = (RNG.random(size=(20, 4, 3)) < 0.4).astype(np.float32)
    labels[:, 3] = 0  # a label never on: recall 0/0 counts as 0, as in scikit-learn
    metrics = Metrics(["precision", "recall", "f1"], 4, "float32", average=average)
    for x, y in batches([logits.astype(np.float32), labels], [5, 15]):
        metrics.update(x, y)
    on, truth = logits > 0, labels > 0.5
    tp, fp, fn = ((a & b).sum(axis=(0, 2)) for a, b in ((on, truth), (on, ~truth), (~on, truth)))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(tp / (tp + fp))
        recall = np.nan_to_num(tp / (tp + fn))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    weights = np.ones(4) / 4 if average == "macro" else (tp + fn) / (tp + fn).sum()
    got = metrics.result()
    assert got["precision"] == pytest.approx((precision * weights).sum(), abs=1e-12)
    assert got["recall"] == pytest.approx((recall * weights).sum(), abs=1e-12)
    assert got["f1"] == pytest.approx((f1 * weights).sum(), abs=1e-12)


def test_regression_errors():
    predictions = RNG.normal(size=(40, 3))
    targets = RNG.normal(size=(40, 3))
    metrics = Metrics(["mean_squared_error", "mean_absolute_error"], 3, "float64")
    for x, y in batches([predictions, targets], [10, 30]):
        metrics.update(x, y)
    got = metrics.result()
    assert got["mean_squared_error"] == pytest.approx(((predictions - targets) ** 2).mean(), rel=1e-12)
    assert got["mean_absolute_error"] == pytest.approx(np.abs(predictions - targets).mean(), rel=1e-12)


def test_metric_that_does_not_fit_the_labels_is_a_user_error():
    with pytest.raises(UserError, match="mean_squared_error cannot be computed for class-index labels"):
        Metrics(["mean_squared_error"], 10, "int64")


def test_update_does_not_synchronise():
    # everything update() keeps stays a tensor: the host reads only in result()
    metrics = Metrics(["accuracy", "top_k_accuracy"], 3, "int64", top_k=2)
    metrics.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    assert all(isinstance(v, torch.Tensor) for v in metrics.sums.values())


def test_direction_of_improvement():
    assert better("loss", "auto") == "min" and better("mean_absolute_error", "auto") == "min"
    assert better("accuracy", "auto") == "max" and better("loss", "max") == "max"


def test_confusion_image_shades_cells_and_writes_counts_and_class_names():
    from PIL import Image, ImageDraw

    from tfn.runners.summaries import _font, confusion_image, confusion_layout

    matrix = [[12, 0, 0], [3, 3, 0], [0, 0, 0]]
    names = ["cat", "dog", "eel"]
    image = confusion_image(matrix, names)
    at = confusion_layout(matrix, names)
    assert image.shape == (at.height, at.width, 3) and image.dtype == np.uint8 and at.cell >= 24

    def cell(t, p):
        x, y = at.left + p * at.cell, at.top + t * at.cell
        return image[y + 1 : y + at.cell, x + 1 : x + at.cell]  # inside the grey outline

    # shades by the share of the true class: all -> matplotlib's darkest Blue, none -> white, half -> halfway (rounded)
    assert cell(0, 0)[1, 1].tolist() == [8, 48, 107]
    assert cell(0, 1)[1, 1].tolist() == [255, 255, 255]
    assert cell(1, 0)[1, 1].tolist() == [132, 152, 181]
    assert cell(2, 2)[1, 1].tolist() == [255, 255, 255]  # a class that never occurs
    assert image[at.top, at.left].tolist() == [160, 160, 160]

    # each cell shows its own count, centred: its ink is that of the number drawn alone
    def ink(pixels):
        return (np.abs(pixels.astype(int) - pixels[1, 1].astype(int)).sum(-1) > 60)

    def drawn(text, background):
        size = at.cell - 1
        alone = Image.new("RGB", (size, size), tuple(background.tolist()))
        colour = "white" if background.sum() < 3 * 128 else "black"
        ImageDraw.Draw(alone).text(((size + 1) / 2 - 1, (size + 1) / 2 - 1), text, fill=colour, font=_font(), anchor="mm")
        return ink(np.asarray(alone))

    for t, row in enumerate(matrix):
        for p, count in enumerate(row):
            assert (ink(cell(t, p)) == drawn(str(count), cell(t, p)[1, 1])).all(), (t, p)
    assert (cell(0, 0) > 200).all(-1).any()  # light digits on the dark cell
    # the class names: down the left of each row, and along the top of each column
    for c in range(3):
        row_band = image[at.top + c * at.cell + 2 : at.top + (c + 1) * at.cell - 2, : at.left - 2]
        column_band = image[: at.top - 2, at.left + c * at.cell + 2 : at.left + (c + 1) * at.cell - 2]
        assert (row_band < 128).all(-1).any() and (column_band < 128).all(-1).any(), c


def test_confusion_image_of_many_classes_is_shades_alone():
    from tfn.runners.summaries import confusion_image

    image = confusion_image(np.eye(100, dtype=int).tolist())
    assert image.shape == (500, 500, 3)  # 5-pixel cells, no margins
    assert image[2, 2].tolist() == [8, 48, 107] and image[2, 7].tolist() == [255, 255, 255]


def test_image_grid_layout():
    from tfn.runners.summaries import image_grid

    images = torch.arange(5 * 1 * 2 * 3, dtype=torch.float32).reshape(5, 1, 2, 3)
    grid = image_grid(images)
    # 5 images -> 3 columns, 2 rows of 2x3 images with 1-pixel borders
    assert grid.shape == (1, 2 * 3 + 1, 3 * 4 + 1)
    assert float(grid[0, 1, 1]) == 0.0 and float(grid[0, 2, 3]) == 1.0  # each image scaled to [0, 1]
    assert float(grid[0, 0, 0]) == 1.0  # border


def test_train_average_reaches_the_metrics_of_every_loss(write_spec):
    from tfn.runners.train import targets
    from tfn.specs import load

    spec = write_spec(
        """
        version: 1
        name: avg
        model:
          inputs: {x: {shape: [4]}}
          layers:
            - {name: logits, op: dense, units: 3}
            - {name: tags, op: dense, units: 2, inputs: [x]}
        loss:
          - {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
          - {op: sigmoid_cross_entropy_with_logits, logits: tags, labels: tags_label, metrics: [f1]}
        data: {source: synthetic, classes: 3, fields: {x: {shape: [4]}}}
        train: {metrics: [f1]}
        """
    )
    auto = load(spec)
    assert [t.metrics.average for t in targets(auto.spec, auto.graph)] == ["macro", "micro"]  # classes, labels
    weighted = load(spec, ["train.average=weighted"])
    assert [t.metrics.average for t in targets(weighted.spec, weighted.graph)] == ["weighted", "weighted"]
