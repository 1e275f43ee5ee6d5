"""Fractional pooling: TF's vector T10 with explicit sequences, TF's sequence rules, NumPy loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tfn import layers
from tfn.layers import OpError, TensorType
from tfn.layers.fractional import fractional_pool, pooling_sequence


def row(values):
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)


@pytest.mark.parametrize(
    "mode,overlapping,expected",
    [("MAX", False, [20, 16]), ("MAX", True, [20, 16]), ("AVG", False, [12.5, 8.6666667]), ("AVG", True, [13.6666667, 8.6666667])],
)
def test_explicit_sequence_T10(mode, overlapping, expected):
    y = fractional_pool(row([20, 5, 16, 3, 7]), [0, 1], [0, 2, 5], overlapping, mode)
    np.testing.assert_allclose(y.ravel().numpy(), expected, rtol=1e-7)


def reference(x, rows, cols, overlapping, mode):
    """Direct loops over TF's windows: rows seq[i]..end, end = seq[i+1] - 1 (or seq[i+1] overlapping), clipped."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, len(rows) - 1, len(cols) - 1))
    for i, j in itertools.product(range(len(rows) - 1), range(len(cols) - 1)):
        r_end = min(rows[i + 1] - (0 if overlapping else 1), h - 1)
        c_end = min(cols[j + 1] - (0 if overlapping else 1), w - 1)
        window = x[:, :, rows[i] : r_end + 1, cols[j] : c_end + 1].reshape(n, c, -1)
        out[:, :, i, j] = window.max(2) if mode == "MAX" else window.mean(2)
    return out


@pytest.mark.parametrize("mode", ["MAX", "AVG"])
@pytest.mark.parametrize("overlapping", [False, True])
def test_pooling_matches_loops(mode, overlapping):
    x = np.random.default_rng(0).normal(size=(2, 3, 10, 9))
    rows, cols = [0, 2, 3, 5, 7, 8, 10], [0, 1, 3, 5, 7, 9]
    y = fractional_pool(torch.from_numpy(x), rows, cols, overlapping, mode).numpy()
    np.testing.assert_allclose(y, reference(x, rows, cols, overlapping, mode), rtol=1e-12)


@pytest.mark.parametrize("pseudo_random", [False, True])
@pytest.mark.parametrize("n_in,n_out", [(10, 6), (9, 5), (5, 2), (17, 4), (7, 7), (100, 33)])
def test_sequences_follow_tf_rules(pseudo_random, n_in, n_out):
    k = n_in // n_out
    for seed in range(20):
        seq = pooling_sequence(n_in, n_out, pseudo_random, torch.Generator().manual_seed(seed))
        assert len(seq) == n_out + 1 and seq[0] == 0 and seq[-1] == n_in
        gaps = np.diff(seq)
        assert set(gaps) <= {k, k + 1}, (seq, k)
        if not pseudo_random:  # exactly n_in % n_out of the gaps are K + 1
            assert (gaps == k + 1).sum() == n_in % n_out


def test_random_sequences_vary_with_the_seed():
    draws = {tuple(pooling_sequence(10, 6, False, torch.Generator().manual_seed(s))) for s in range(30)}
    assert len(draws) > 1


def test_op_shapes_and_sequences_10x9():
    op = layers.get("fractional_max_pool")
    p = op.Params.model_validate({"pooling_ratio": [1.44, 1.73], "seed": 3})
    types = [TensorType((None, 2, 10, 9), "float64")]
    value, rows, cols = op.infer(p, types)
    assert value.shape == (None, 2, 6, 5) and rows.shape == (7,) and cols.shape == (6,)
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 2, 10, 9)))
    y, r, c = op.build(p, types)([x], {}, False)
    assert y.shape == (2, 2, 6, 5) and r.dtype == torch.int64
    assert r[0] == 0 and r[-1] == 10 and c[0] == 0 and c[-1] == 9
    np.testing.assert_allclose(y.numpy(), reference(x.numpy(), r.tolist(), c.tolist(), False, "MAX"))


def test_evaluation_reuses_the_seeded_sequences_and_training_draws_new_ones():
    op = layers.get("fractional_avg_pool")
    types = [TensorType((None, 1, 20, 20), "float64")]
    x = torch.randn(1, 1, 20, 20, dtype=torch.float64)
    kernel = op.build(op.Params.model_validate({"pooling_ratio": 1.5, "seed": 5}), types)
    first, again = kernel([x], {}, False), kernel([x], {}, False)
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    torch.manual_seed(0)
    rows = {tuple(kernel([x], {}, True)[1].tolist()) for _ in range(20)}
    assert len(rows) > 1
    fixed = op.build(op.Params.model_validate({"pooling_ratio": 1.5, "seed": 5, "deterministic": True}), types)
    assert {tuple(fixed([x], {}, True)[1].tolist()) for _ in range(5)} == {tuple(first[1].tolist())}


def test_pooling_ratio_errors():
    Params = layers.get("fractional_max_pool").Params
    for bad in ({"pooling_ratio": 0.5}, {"pooling_ratio": [1.5, 0.9]}, {"pooling_ratio": [1.5]}, {"pooling_ratio": 1.5, "seed": -1}):
        with pytest.raises(ValidationError):
            Params.model_validate(bad)
    op = layers.get("fractional_max_pool")
    with pytest.raises(OpError, match="leaves no output") as info:
        op.infer(Params.model_validate({"pooling_ratio": 5.0}), [TensorType((None, 1, 4, 4))])
    assert info.value.field == "pooling_ratio"


def test_gradient_reaches_each_window_maximum():
    x = row([20, 5, 16, 3, 7]).requires_grad_()
    fractional_pool(x, [0, 1], [0, 2, 5], False, "MAX").sum().backward()
    assert x.grad.ravel().tolist() == [1, 0, 1, 0, 0]
