"""Histogram summaries: counts and moments against NumPy, read back with TensorBoard's reader."""

import numpy as np
import torch

from tfn.runners.summaries import HISTOGRAM_BINS, _histogram


def test_histogram_counts_and_moments_match_numpy(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    values = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    values[:3] = [np.nan, np.inf, -np.inf]  # left out, as TensorBoard cannot bin them
    finite = values[np.isfinite(values)].astype(np.float64)
    writer = SummaryWriter(str(tmp_path))
    _histogram(writer, "w", torch.from_numpy(values), 7)
    writer.close()

    events = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    events.Reload()
    (event,) = events.Histograms("w")
    h = event.histogram_value
    expected, edges = np.histogram(finite, bins=HISTOGRAM_BINS, range=(finite.min(), finite.max()))
    assert event.step == 7
    assert h.num == finite.size
    assert h.min == np.float32(finite.min()) and h.max == np.float32(finite.max())
    np.testing.assert_allclose(h.sum, finite.sum(), rtol=1e-4)
    np.testing.assert_allclose(h.sum_squares, (finite**2).sum(), rtol=1e-4)
    np.testing.assert_allclose(h.bucket_limit, edges[1:], rtol=1e-5)
    # histc and NumPy may place a value lying on an edge in neighbouring bins
    assert np.abs(np.array(h.bucket) - expected).sum() <= 4
    assert sum(h.bucket) == finite.size
