"""Pooling against direct-loop NumPy references and the TF vectors of tf_semantics.md §9."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tfn import layers
from tfn.layers import OpError, TensorType


def build(name, attrs, *shapes, dtype="float64"):
    op = layers.get(name)
    p = op.Params.model_validate(attrs)
    types = [TensorType((None, *s[1:]), dtype) for s in shapes]
    return op, p, types


def run(name, attrs, *arrays, training=False):
    op, p, types = build(name, attrs, *(a.shape for a in arrays))
    inferred = op.infer(p, types)
    out = op.build(p, types)([torch.from_numpy(np.asarray(a)) for a in arrays], {}, training)
    outs = out if isinstance(out, tuple) else (out,)
    for o, t in zip(outs, inferred):
        assert tuple(o.shape[1:]) == tuple(t.shape[1:])
    return tuple(o.numpy() for o in outs) if isinstance(out, tuple) else out.numpy()


def tf_same(n, k, s, d=1):
    """TF's SAME rule written out: (out, pad_before)."""
    out = math.ceil(n / s)
    total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
    return out, total // 2


def pool_reference(x, kernel, strides, padding, mode, dilation=None):
    """Direct loops over every window (NCHW-like, any number of spatial axes); out-of-bounds cells never count."""
    spatial = x.shape[2:]
    dilation = dilation or [1] * len(spatial)
    outs, starts = [], []
    for n, k, s, d in zip(spatial, kernel, strides, dilation):
        if padding == "SAME":
            out, before = tf_same(n, k, s, d)
        else:
            out, before = (n - (k - 1) * d - 1) // s + 1, 0
        outs.append(out)
        starts.append([i * s - before for i in range(out)])
    y = np.zeros(x.shape[:2] + tuple(outs))
    for idx in itertools.product(*(range(o) for o in outs)):
        cells = []
        for offs in itertools.product(*(range(k) for k in kernel)):
            pos = [starts[a][idx[a]] + offs[a] * dilation[a] for a in range(len(spatial))]
            if all(0 <= q < n for q, n in zip(pos, spatial)):
                cells.append(x[(slice(None), slice(None), *pos)])
        cells = np.stack(cells)
        y[(slice(None), slice(None), *idx)] = cells.max(0) if mode == "MAX" else cells.mean(0)
    return y


rng = np.random.default_rng(0)


def test_avg_pool_same_excludes_padding_T3():
    x = np.arange(1, 17, dtype=np.float64).reshape(1, 1, 4, 4)
    y = run("avg_pool", {"pool_size": 3, "strides": 2, "padding": "SAME"}, x)
    np.testing.assert_allclose(y[0, 0], [[6, 7.5], [12, 13.5]])


def test_max_pool_same_pads_with_minus_infinity_T4():
    x = -np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)
    y = run("max_pool", {"pool_size": 2, "strides": 2, "padding": "SAME"}, x)
    np.testing.assert_array_equal(y[0, 0], [[-1, -3], [-7, -9]])


@pytest.mark.parametrize("name,mode", [("avg_pool", "AVG"), ("max_pool", "MAX")])
@pytest.mark.parametrize("n,k,s", [(4, 3, 2), (5, 3, 2), (6, 3, 3), (7, 4, 2), (5, 2, 2), (6, 2, 1)])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_pool2d_matches_loops(name, mode, n, k, s, padding):
    x = rng.normal(size=(2, 3, n, n + 1))
    y = run(name, {"pool_size": k, "strides": s, "padding": padding}, x)
    np.testing.assert_allclose(y, pool_reference(x, [k, k], [s, s], padding, mode), rtol=1e-12)


@pytest.mark.parametrize("name,mode", [("avg_pool3d", "AVG"), ("max_pool3d", "MAX")])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_pool3d_matches_loops(name, mode, padding):
    x = rng.normal(size=(2, 2, 3, 4, 5))
    y = run(name, {"pool_size": [2, 3, 2], "strides": [1, 2, 2], "padding": padding}, x)
    np.testing.assert_allclose(y, pool_reference(x, [2, 3, 2], [1, 2, 2], padding, mode), rtol=1e-12)


def test_pool_strides_default_to_pool_size():
    op, p, types = build("max_pool", {"pool_size": 3}, (1, 1, 9, 9))
    assert p.strides == [3, 3]
    assert op.infer(p, types)[0].shape == (None, 1, 3, 3)


@pytest.mark.parametrize("mode", ["AVG", "MAX"])
@pytest.mark.parametrize(
    "shape,window,strides,dilation,padding",
    [
        ((2, 3, 9), [3], [1], [2], "VALID"),
        ((2, 2, 7, 8), [2, 3], [1, 1], [2, 2], "VALID"),
        ((2, 2, 7, 8), [3, 3], [2, 3], [1, 1], "SAME"),
        ((1, 2, 4, 5, 6), [2, 2, 3], [1, 1, 1], [1, 2, 1], "VALID"),
        ((1, 2, 4, 5, 6), [2, 3, 3], [2, 2, 1], [1, 1, 1], "SAME"),
    ],
)
def test_nd_pool_matches_loops(mode, shape, window, strides, dilation, padding):
    x = rng.normal(size=shape)
    attrs = {"window_shape": window, "pooling_type": mode.lower(), "strides": strides, "dilation_rate": dilation, "padding": padding}
    np.testing.assert_allclose(run("pool", attrs, x), pool_reference(x, window, strides, padding, mode, dilation), rtol=1e-12)


def test_nd_pool_errors_follow_tf():
    def err(attrs, shape=(2, 3, 8, 8)):
        op, p, types = build("pool", {"pooling_type": "MAX", **attrs}, shape)
        with pytest.raises(OpError) as info:
            op.infer(p, types)
        return info.value

    assert err({"window_shape": 2, "padding": "SAME", "dilation_rate": 2}).field == "padding"
    assert err({"window_shape": 2, "strides": 3}).field == "strides"
    assert err({"window_shape": 3, "strides": 2, "dilation_rate": 2}).field == "dilation_rate"
    assert err({"window_shape": [2, 2, 2]}).field == "window_shape"
    assert "larger than the input" in str(err({"window_shape": 3, "dilation_rate": 4}))
    with pytest.raises(ValidationError):
        layers.get("pool").Params.model_validate({"window_shape": 0, "pooling_type": "MAX"})
    with pytest.raises(ValidationError):
        layers.get("pool").Params.model_validate({"window_shape": 2, "pooling_type": "MEAN"})


def test_bad_pool_sizes_are_validation_errors():
    Params = layers.get("max_pool").Params
    for bad in ({"pool_size": 0}, {"pool_size": [2, -1]}, {"pool_size": [2, 2, 2]}, {"padding": "FULL"}, {"pool_size": True}):
        with pytest.raises(ValidationError):
            Params.model_validate(bad)
    op, p, types = build("max_pool", {"pool_size": 5}, (1, 1, 4, 4))
    with pytest.raises(OpError, match="larger than the input") as info:
        op.infer(p, types)
    assert info.value.field == "pool_size"


def test_max_pool_with_argmax_T7():
    # TF NHWC input 2x2x2x1: b0 = [[1, 4], [3, 2]], b1 = [[5, 0], [7, 6]]
    x = np.array([[[[1, 4], [3, 2]]], [[[5, 0], [7, 6]]]], dtype=np.float64)
    values, index = run("max_pool_with_argmax", {"pool_size": 2}, x)
    assert values.ravel().tolist() == [4, 7]
    assert index.ravel().tolist() == [1, 2]
    _, index = run("max_pool_with_argmax", {"pool_size": 2, "include_batch_in_index": True}, x)
    assert index.ravel().tolist() == [1, 6]


def tf_argmax_reference(x, k, s, padding, with_batch):
    """TF's formula, computed from the NHWC view of x with direct loops."""
    n, c, h, w = x.shape
    nhwc = x.transpose(0, 2, 3, 1)
    if padding == "SAME":
        (oh, top), (ow, left) = tf_same(h, k, s), tf_same(w, k, s)
    else:
        oh, ow, top, left = (h - k) // s + 1, (w - k) // s + 1, 0, 0
    out = np.zeros((n, c, oh, ow), dtype=np.int64)
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        best, where = -np.inf, None
        for dy, dx in itertools.product(range(k), range(k)):
            y, xx = i * s - top + dy, j * s - left + dx
            if 0 <= y < h and 0 <= xx < w and nhwc[b, y, xx, ch] > best:
                best, where = nhwc[b, y, xx, ch], (y, xx)
        y, xx = where
        out[b, ch, i, j] = ((b * h + y if with_batch else y) * w + xx) * c + ch
    return out


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("with_batch", [False, True])
def test_max_pool_with_argmax_matches_tf_formula(padding, with_batch):
    x = rng.normal(size=(2, 3, 5, 6))
    values, index = run("max_pool_with_argmax", {"pool_size": 3, "strides": 2, "padding": padding, "include_batch_in_index": with_batch}, x)
    np.testing.assert_array_equal(index, tf_argmax_reference(x, 3, 2, padding, with_batch))
    np.testing.assert_allclose(values, pool_reference(x, [3, 3], [2, 2], padding, "MAX"))
    # the indices address the values in the flattened NHWC input
    flat = x.transpose(0, 2, 3, 1).reshape(2, -1) if not with_batch else x.transpose(0, 2, 3, 1).reshape(-1)
    picked = np.take_along_axis(flat, index.reshape(2, -1), 1).reshape(values.shape) if not with_batch else flat[index]
    np.testing.assert_array_equal(picked, values)


def test_global_pools():
    x = rng.normal(size=(2, 3, 4, 5))
    np.testing.assert_allclose(run("global_average_pool", {}, x), x.mean((2, 3)))
    np.testing.assert_allclose(run("global_max_pool", {}, x), x.max((2, 3)))
    np.testing.assert_allclose(run("global_average_pool", {"keepdims": True}, x), x.mean((2, 3), keepdims=True))
    x3 = rng.normal(size=(2, 3, 4))
    np.testing.assert_allclose(run("global_max_pool", {"keepdims": True}, x3), x3.max(2, keepdims=True))
    op, p, types = build("global_average_pool", {}, (2, 3))
    with pytest.raises(OpError, match="spatial axis"):
        op.infer(p, types)


def test_max_pool_gradient_goes_to_the_first_maximum():
    op, p, types = build("max_pool", {"pool_size": 2}, (1, 1, 2, 2))
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    op.build(p, types)([x], {}, True).sum().backward()
    assert x.grad.ravel().tolist() == [1, 0, 0, 0]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 9),
    k=st.integers(1, 4),
    s=st.integers(1, 4),
    d=st.integers(1, 3),
    padding=st.sampled_from(["SAME", "VALID"]),
    mode=st.sampled_from(["AVG", "MAX"]),
)
def test_1d_pool_any_geometry_matches_loops(n, k, s, d, padding, mode):
    assume(s <= k and (s == 1 or d == 1) and (padding == "VALID" or d == 1))  # tf.nn.pool's rules
    assume(padding == "SAME" or (k - 1) * d + 1 <= n)
    x = rng.normal(size=(2, 2, n))
    attrs = {"window_shape": k, "pooling_type": mode, "strides": s, "dilation_rate": d, "padding": padding}
    np.testing.assert_allclose(run("pool", attrs, x), pool_reference(x, [k], [s], padding, mode, [d]), rtol=1e-12)
