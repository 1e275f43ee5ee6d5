"""The input pipeline: order (exact resume), shuffle buffer (TF's RandomShuffleQueue), batching, augmentation, binding checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfn.runners.data import DataError, DataPipeline, RandomShuffleQueue, augment_images, epoch_order
from tfn.specs import load
from tfn.specs.schema import ShuffleBuffer

SPEC = """
version: 1
name: pipe
model:
  inputs:
    {inputs}
  layers:
    - {{op: flatten}}
    - {{name: logits, op: dense, units: {units}}}
loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
data: {data}
"""


@pytest.fixture
def pipeline(write_spec):
    """pipeline(data, inputs=..., units=..., seed=...) -> DataPipeline over a one-dense-layer model."""

    def make(data: str, inputs: str = "x: {shape: [4]}", units: int = 3, seed: int = 0, device: str = "cpu") -> DataPipeline:
        loaded = load(write_spec(SPEC.format(inputs=inputs, data=data, units=units)))
        return DataPipeline(loaded.spec.data, loaded.graph, seed=seed, device=device)

    return make


def synthetic(train=50, batch=8, extra=""):
    return (
        "{source: synthetic, classes: 3, fields: {x: {shape: [4]}}, "
        f"samples: {{train: {train}, validation: 7, test: 5}}, batch_size: {batch}{extra}}}"
    )


# --- TF's RandomShuffleQueue (tf_semantics.md §8.1) ----------------------------------


def test_shuffle_queue_dequeues_only_above_min_after_dequeue():
    queue = RandomShuffleQueue(capacity=10, min_after_dequeue=3, rng=np.random.default_rng(0))
    for item in range(5):
        queue.enqueue(item)
    taken = [queue.dequeue(), queue.dequeue()]  # TF: size 5 with min_after_dequeue 3 allows 2 dequeues...
    with pytest.raises(RandomShuffleQueue.WouldBlock):
        queue.dequeue()  # ...then the third blocks
    queue.close()  # after close, min_after_dequeue is ignored and the rest drains
    taken += [queue.dequeue() for _ in range(3)]
    assert sorted(taken) == [0, 1, 2, 3, 4]  # each element exactly once
    with pytest.raises(RandomShuffleQueue.OutOfRange):
        queue.dequeue()


def test_shuffle_queue_is_bounded_and_validates_like_tf():
    queue = RandomShuffleQueue(capacity=2, min_after_dequeue=0, rng=np.random.default_rng(0))
    queue.enqueue(1)
    queue.enqueue(2)
    with pytest.raises(RandomShuffleQueue.WouldBlock):
        queue.enqueue(3)
    for bad in (2, 3):  # TF: InvalidArgumentError unless 0 <= min_after_dequeue < capacity
        with pytest.raises(ValueError):
            RandomShuffleQueue(capacity=2, min_after_dequeue=bad, rng=np.random.default_rng(0))


def test_shuffle_queue_draws_uniformly():
    # one dequeue from a full queue of 4: each element with probability 1/4
    counts = np.zeros(4)
    rng = np.random.default_rng(1)
    for _ in range(4000):
        queue = RandomShuffleQueue(capacity=4, min_after_dequeue=0, rng=rng)
        for item in range(4):
            queue.enqueue(item)
        counts[queue.dequeue()] += 1
    assert np.all(np.abs(counts / 4000 - 0.25) < 0.03), counts


def test_shuffle_buffer_order_is_a_bounded_local_shuffle():
    n, capacity = 200, 8
    order = epoch_order(n, seed=5, epoch=1, buffer=ShuffleBuffer(capacity=capacity, min_after_dequeue=2))
    assert sorted(order) == list(range(n))
    position = np.empty(n, dtype=int)
    position[order] = np.arange(n)
    # sample i enters the buffer only after i - capacity + 1 samples have left it
    assert np.all(position >= np.arange(n) - capacity + 1)
    assert not np.array_equal(order, np.arange(n))
    # a buffer of one is no shuffle at all
    assert np.array_equal(epoch_order(n, seed=5, epoch=1, buffer=ShuffleBuffer(capacity=1)), np.arange(n))


def test_shuffle_buffer_from_the_spec_orders_the_training_batches(pipeline):
    data = pipeline(synthetic(train=40, batch=40, extra=", shuffle_buffer: {capacity: 5, min_after_dequeue: 2}"))
    batch = next(data.train_batches(epoch=1))["x"].numpy()
    source = data.source.splits["train"]["x"]
    taken = [int(np.flatnonzero((source == row).all(1))[0]) for row in batch]
    assert sorted(taken) == list(range(40)) and taken != list(range(40))
    assert all(position >= index - 4 for position, index in enumerate(taken))


# --- order, batching and exact resume ------------------------------------------------


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a = epoch_order(100, seed=7, epoch=3)
    assert sorted(a) == list(range(100))
    assert np.array_equal(a, epoch_order(100, seed=7, epoch=3))
    assert not np.array_equal(a, epoch_order(100, seed=7, epoch=4))
    assert not np.array_equal(a, epoch_order(100, seed=8, epoch=3))
    assert np.array_equal(epoch_order(100, seed=7, epoch=3, shuffle=False), np.arange(100))


def test_resume_mid_epoch_gives_the_same_batches(pipeline):
    data = pipeline(synthetic(train=50, batch=8))
    full = list(data.train_batches(epoch=2))
    resumed = list(data.train_batches(epoch=2, start_step=4))
    assert len(full) == data.steps_per_epoch == 7  # ceil(50 / 8)
    assert len(resumed) == 3
    for a, b in zip(full[4:], resumed):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["label"], b["label"])
    # a fresh pipeline (another process, after a restart) gives the same epoch again
    again = list(pipeline(synthetic(train=50, batch=8)).train_batches(epoch=2))
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(full, again))


def test_an_epoch_visits_every_sample_once(pipeline):
    data = pipeline(synthetic(train=50, batch=8))
    rows = torch.cat([b["x"] for b in data.train_batches(epoch=1)])
    source = torch.from_numpy(data.source.splits["train"]["x"])
    assert rows.shape == source.shape
    # the same multiset of rows: sort both lexicographically by their values
    assert torch.equal(rows[np.lexsort(rows.numpy().T[::-1])], source[np.lexsort(source.numpy().T[::-1])])
    assert [len(b["label"]) for b in data.train_batches(epoch=1)] == [8] * 6 + [2]


def test_drop_remainder_and_full_batch(pipeline):
    data = pipeline(synthetic(train=50, batch=8, extra=", drop_remainder: true"))
    assert data.steps_per_epoch == 6
    assert [len(b["label"]) for b in data.train_batches(epoch=1)] == [8] * 6
    full = pipeline(synthetic(train=50, batch="full"))
    batches = list(full.train_batches(epoch=1))
    assert full.steps_per_epoch == 1 and len(batches) == 1 and len(batches[0]["label"]) == 50


def test_eval_batches_keep_source_order_and_every_sample(pipeline):
    data = pipeline(synthetic(train=50, batch=8))
    batches = list(data.eval_batches("validation", batch_size=3))
    assert [len(b["label"]) for b in batches] == [3, 3, 1]
    assert np.array_equal(torch.cat([b["x"] for b in batches]).numpy(), data.source.splits["validation"]["x"])


def test_only_the_bound_fields_are_fed_with_the_inputs_dtype(pipeline):
    data = pipeline(synthetic(train=20, batch=4).replace("fields: {x: {shape: [4]}}", "fields: {x: {shape: [4], dtype: float64}, unused: {shape: [2]}}"))
    batch = next(data.train_batches(epoch=1))
    assert set(batch) == {"x", "label"}
    assert batch["x"].dtype == torch.float32 and batch["label"].dtype == torch.int64


# --- augmentation --------------------------------------------------------------------


def _windows(image: np.ndarray, pad: int) -> list[np.ndarray]:
    """Every crop of the zero-padded image at the original size, and each flipped left-right."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), dtype=image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    crops = [padded[:, y : y + h, x : x + w] for y in range(2 * pad + 1) for x in range(2 * pad + 1)]
    return crops + [crop[:, :, ::-1] for crop in crops]


def test_augmentation_is_a_padded_crop_and_flip_of_each_image():
    images = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6) + 1
    seen_flip, seen_shift = False, False
    for seed in range(20):
        out = augment_images(images, np.random.default_rng(seed), crop_padding=2, horizontal_flip=True)
        assert out.shape == images.shape
        for original, augmented in zip(images.numpy(), out.numpy()):
            candidates = _windows(original, 2)
            match = [i for i, c in enumerate(candidates) if np.array_equal(c, augmented)]
            assert match, "not a crop of the padded image"
            seen_flip |= match[0] >= 25
            seen_shift |= match[0] % 25 != 12  # 12: the centred, unshifted crop
    assert seen_flip and seen_shift


def test_augmentation_applies_to_training_batches_only_and_is_seeded(pipeline):
    data_spec = (
        "{source: synthetic, classes: 3, fields: {image: {shape: [1, 6, 6]}}, samples: {train: 16, validation: 4, test: 4}, "
        "batch_size: 16, shuffle: false, augment: {crop_padding: 2, horizontal_flip: true}}"
    )
    data = pipeline(data_spec, inputs="image: {shape: [1, 6, 6]}")
    source = data.source.splits["train"]["image"]
    first = next(data.train_batches(epoch=1))["image"]
    assert not np.array_equal(first.numpy(), source)
    assert torch.equal(first, next(pipeline(data_spec, inputs="image: {shape: [1, 6, 6]}").train_batches(epoch=1))["image"])
    assert not torch.equal(first, next(data.train_batches(epoch=2))["image"])
    evaluation = next(data.eval_batches("validation"))["image"]
    assert np.array_equal(evaluation.numpy(), data.source.splits["validation"]["image"])


# --- binding errors ------------------------------------------------------------------


def test_unknown_field_binding_lists_the_fields(pipeline):
    with pytest.raises(DataError) as info:
        pipeline(synthetic(), inputs="xx: {shape: [4]}")
    message = str(info.value)
    assert "the graph input 'xx'" in message and "did you mean 'x'?" in message and "its fields are x, label" in message


def test_shape_that_does_not_fit_the_input(pipeline):
    with pytest.raises(DataError, match=r"field 'x' of source 'synthetic' has samples of shape \[4\]; the model input 'x' expects \[5\]"):
        pipeline(synthetic(), inputs="x: {shape: [5]}")


def test_dtype_that_does_not_fit_the_input(pipeline):
    with pytest.raises(DataError, match=r"holds int64; the model input 'x' expects float32 \(scale integer"):
        pipeline(synthetic().replace("{x: {shape: [4]}}", "{x: {shape: [4], dtype: int64}}"))


def test_more_classes_than_logits(pipeline):
    with pytest.raises(DataError, match=r"has 3 classes, but the logits 'logits' give 2"):
        pipeline(synthetic(), units=2)


def test_drop_remainder_that_leaves_nothing(pipeline):
    with pytest.raises(DataError, match="leaves no batch of the 5 training samples"):
        pipeline(synthetic(train=5, batch=8, extra=", drop_remainder: true"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_the_cpu_batches(pipeline):
    data = (
        "{source: synthetic, classes: 3, fields: {image: {shape: [1, 6, 6]}}, samples: {train: 40, validation: 4, test: 4}, "
        "batch_size: 16, augment: {crop_padding: 2, horizontal_flip: true}}"
    )
    cpu = list(pipeline(data, inputs="image: {shape: [1, 6, 6]}").train_batches(epoch=2, start_step=1))
    gpu = list(pipeline(data, inputs="image: {shape: [1, 6, 6]}", device="cuda").train_batches(epoch=2, start_step=1))
    assert len(cpu) == len(gpu) == 2
    for a, b in zip(cpu, gpu):
        assert b["image"].is_cuda and torch.equal(a["image"], b["image"].cpu()) and torch.equal(a["label"], b["label"].cpu())


def test_binding_errors_point_at_the_spec_line(write_spec):
    text = SPEC.format(inputs="x: {shape: [5]}", data=synthetic(), units=3)
    path = write_spec(text)
    loaded = load(path)
    line = next(i for i, l in enumerate(text.lstrip().splitlines(), 1) if "x: {shape: [5]}" in l)
    with pytest.raises(DataError) as info:
        DataPipeline(loaded.spec.data, loaded.graph, doc=loaded.doc)
    assert str(info.value).startswith(f"{path}:{line}:")
    assert "model.inputs.x.shape: field 'x' of source 'synthetic' has samples of shape [4]" in str(info.value)

    text = SPEC.format(inputs="x: {shape: [4]}", data=synthetic(), units=3).replace("labels: label", "labels: target")
    path = write_spec(text, "labels.yaml")
    loaded = load(path)
    line = next(i for i, l in enumerate(text.lstrip().splitlines(), 1) if "labels: target" in l)
    with pytest.raises(DataError) as info:
        DataPipeline(loaded.spec.data, loaded.graph, doc=loaded.doc)
    assert str(info.value).startswith(f"{path}:{line}:")
    assert "loss.labels: the graph input 'target' is fed by the data field of that name" in str(info.value)


def test_spread_over_classes_takes_each_class_in_turn():
    from tfn.runners.data import spread_over_classes

    labels = np.array([2, 0, 0, 1, 2, 0, 1])
    # first of class 0, 1, 2 (samples 1, 3, 0), then the second of each (2, 6, 4), then the third of class 0 (5)
    assert spread_over_classes(labels, 7).tolist() == [1, 3, 0, 2, 6, 4, 5]
    assert spread_over_classes(labels, 2).tolist() == [1, 3]
    assert spread_over_classes(np.array([4, 4, 4]), 2).tolist() == [0, 1]


def test_examples_show_every_class_of_the_digits(write_spec):
    """What TensorBoard's input grid draws: the first sample of each class in turn."""
    from tfn.runners.data_sources import load_source

    loaded = load(write_spec(SPEC.format(inputs="image: {shape: [1, 8, 8]}", data="{source: digits}", units=10)))
    data = DataPipeline(loaded.spec.data, loaded.graph)
    shown = data.examples("train", 12, "label")
    assert shown["label"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    train = load_source(loaded.spec.data).splits["train"]
    rows = [int(np.flatnonzero(train["label"] == c)[0]) for c in range(10)]
    np.testing.assert_array_equal(shown["image"][:10].numpy(), train["image"][rows])
    assert data.examples("train", 3)["label"].tolist() == train["label"][:3].tolist()  # without labels: the first ones
