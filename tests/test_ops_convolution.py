"""Convolutions against direct-loop NumPy references and the TF vectors of tf_semantics.md §9."""

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
from tfn.layers.attrs import window_output
from tfn.layers.initializers import initialize

rng = np.random.default_rng(0)


def run(name, attrs, x, **variables):
    op = layers.get(name)
    p = op.Params.model_validate(attrs)
    types = [TensorType((None, *x.shape[1:]), "float64")]
    (out_type,) = op.infer(p, types)
    defs = {d.role: d for d in op.variables(p, types)}
    assert set(defs) == set(variables), f"variables {sorted(defs)}"
    for role, value in variables.items():
        assert tuple(value.shape) == defs[role].shape, role
    y = op.build(p, types)([torch.from_numpy(x)], {k: torch.from_numpy(v) for k, v in variables.items()}, False).numpy()
    assert y.shape[1:] == out_type.shape[1:]
    return y


def tf_pads(n, k, s, d, padding):
    """TF's SAME rule written out independently of layers.attrs: (out, pad_before)."""
    k_eff = (k - 1) * d + 1
    if padding == "VALID":
        return math.ceil((n - k_eff + 1) / s), 0
    out = math.ceil(n / s)
    return out, max(0, (out - 1) * s + k_eff - n) // 2


def conv_reference(x, w, strides, dilation, padding, groups=1):
    """Cross-correlation by direct loops; x [N, C, *S], w [F, C/groups, *K]; out-of-bounds cells are zero."""
    n, c = x.shape[:2]
    filters, per_group = w.shape[:2]
    spatial, kernel = x.shape[2:], w.shape[2:]
    geometry = [tf_pads(sz, k, s, d, padding) for sz, k, s, d in zip(spatial, kernel, strides, dilation)]
    y = np.zeros((n, filters, *(o for o, _ in geometry)))
    for f in range(filters):
        g = f // (filters // groups)
        for pos in itertools.product(*(range(o) for o, _ in geometry)):
            total = np.zeros(n)
            for ci, offs in itertools.product(range(per_group), itertools.product(*(range(k) for k in kernel))):
                idx = [p * s - before + o * d for p, (_, before), s, o, d in zip(pos, geometry, strides, offs, dilation)]
                if all(0 <= i < sz for i, sz in zip(idx, spatial)):
                    total += x[(slice(None), g * per_group + ci, *idx)] * w[(f, ci, *offs)]
            y[(slice(None), f, *pos)] = total
    return y


def test_same_output_sizes_and_pads_T1_T2():
    table = {  # (n, s) -> (out, (before, after)) for k=3, tf_semantics.md §0.2
        (4, 1): (4, (1, 1)), (4, 2): (2, (0, 1)), (4, 3): (2, (1, 1)),
        (5, 1): (5, (1, 1)), (5, 2): (3, (1, 1)), (5, 3): (2, (0, 1)),
        (6, 1): (6, (1, 1)), (6, 2): (3, (0, 1)), (6, 3): (2, (0, 0)),
        (7, 1): (7, (1, 1)), (7, 2): (4, (1, 1)), (7, 3): (3, (1, 1)),
    }  # fmt: skip
    for (n, s), (out, pads) in table.items():
        assert window_output(n, 3, s, 1, "SAME") == (out, *pads)
    assert window_output(5, 4, 1, 1, "SAME") == (5, 1, 2)
    assert window_output(7, 4, 2, 1, "SAME") == (4, 1, 2)
    assert window_output(6, 4, 2, 1, "SAME") == (3, 1, 1)
    assert window_output(5, 2, 2, 1, "SAME") == (3, 0, 1)
    assert window_output(6, 2, 2, 1, "SAME") == (3, 0, 0)


@pytest.mark.parametrize(
    "n,k,s,d,padding",
    [(4, 3, 2, 1, "SAME"), (5, 3, 2, 1, "SAME"), (7, 4, 2, 1, "SAME"), (5, 4, 1, 1, "SAME"), (6, 2, 2, 1, "SAME"),
     (7, 3, 1, 2, "SAME"), (8, 2, 1, 3, "SAME"), (7, 3, 2, 1, "VALID"), (8, 3, 1, 2, "VALID")],
)  # fmt: skip
def test_conv2d_matches_loops(n, k, s, d, padding):
    x = rng.normal(size=(2, 3, n, n + 1))
    w, b = rng.normal(size=(4, 3, k, k)), rng.normal(size=4)
    y = run("conv2d", {"filters": 4, "kernel_size": k, "strides": s, "dilation_rate": d, "padding": padding}, x, kernel=w, bias=b)
    np.testing.assert_allclose(y, conv_reference(x, w, [s, s], [d, d], padding) + b[None, :, None, None], rtol=1e-10, atol=1e-12)


def test_conv1d_and_conv3d_match_loops():
    x1, w1 = rng.normal(size=(2, 3, 9)), rng.normal(size=(2, 3, 4))
    y1 = run("conv1d", {"filters": 2, "kernel_size": 4, "strides": 2, "padding": "SAME", "use_bias": False}, x1, kernel=w1)
    np.testing.assert_allclose(y1, conv_reference(x1, w1, [2], [1], "SAME"), rtol=1e-10)
    x3, w3 = rng.normal(size=(1, 2, 4, 5, 6)), rng.normal(size=(3, 2, 2, 3, 3))
    attrs = {"filters": 3, "kernel_size": [2, 3, 3], "strides": [1, 2, 2], "padding": "SAME", "use_bias": False}
    np.testing.assert_allclose(run("conv3d", attrs, x3, kernel=w3), conv_reference(x3, w3, [1, 2, 2], [1, 1, 1], "SAME"), rtol=1e-10)


@pytest.mark.parametrize("shape,k,s,d", [((2, 2, 9), [3], [2], [1]), ((1, 2, 6, 7), [3, 2], [1, 1], [2, 3]), ((1, 1, 4, 5, 5), [2, 2, 3], [2, 1, 2], [1, 1, 1])])
def test_nd_convolution_matches_loops(shape, k, s, d):
    x = rng.normal(size=shape)
    w = rng.normal(size=(2, shape[1], *k))
    attrs = {"filters": 2, "kernel_size": k, "strides": s, "dilation_rate": d, "padding": "SAME", "use_bias": False}
    np.testing.assert_allclose(run("convolution", attrs, x, kernel=w), conv_reference(x, w, s, d, "SAME"), rtol=1e-10)


def test_atrous_conv2d_is_dilated_conv():
    x, w = rng.normal(size=(1, 2, 7, 8)), rng.normal(size=(3, 2, 3, 3))
    for padding in ("SAME", "VALID"):
        y = run("atrous_conv2d", {"filters": 3, "kernel_size": 3, "rate": 2, "padding": padding, "use_bias": False}, x, kernel=w)
        np.testing.assert_allclose(y, conv_reference(x, w, [1, 1], [2, 2], padding), rtol=1e-10)
    assert y.shape[2:] == (7 - 4, 8 - 4)  # VALID: n - (k - 1) * rate


def test_depthwise_channel_order_T8():
    # TF: input [1, 10] (1x1x1x2), filter[0, 0, k, q] = 2k + q + 1 with multiplier 2 -> [1, 2, 30, 40]
    x = np.array([1.0, 10.0]).reshape(1, 2, 1, 1)
    tf_filter = np.array([[1.0, 2.0], [3.0, 4.0]])  # [k, q]
    kernel = tf_filter.reshape(4, 1, 1, 1)  # channel k * multiplier + q, the layout tfn documents
    y = run("depthwise_conv2d", {"kernel_size": 1, "channel_multiplier": 2, "use_bias": False}, x, depthwise_kernel=kernel)
    assert y.ravel().tolist() == [1, 2, 30, 40]


def test_depthwise_matches_tf_formula():
    # out[b, i, j, k*mult + q] = sum filter[di, dj, k, q] * in[b, s*i + di, s*j + dj, k]
    c, mult, k = 3, 2, 3
    x = rng.normal(size=(2, c, 6, 7))
    tf_filter = rng.normal(size=(k, k, c, mult))
    kernel = tf_filter.reshape(k, k, c * mult).transpose(2, 0, 1)[:, None]  # tf_semantics.md §0.1
    y = run("depthwise_conv2d", {"kernel_size": k, "channel_multiplier": mult, "strides": 2, "padding": "SAME", "use_bias": False}, x, depthwise_kernel=kernel)
    reference = np.zeros_like(y)
    for ch, q in itertools.product(range(c), range(mult)):
        w = tf_filter[:, :, ch, q][None, None]
        reference[:, ch * mult + q] = conv_reference(x[:, ch : ch + 1], w, [2, 2], [1, 1], "SAME")[:, 0]
    np.testing.assert_allclose(y, reference, rtol=1e-10)


def test_separable_conv2d_matches_tf_formula():
    c, mult, filters = 2, 2, 3
    x = rng.normal(size=(1, c, 5, 6))
    dw, pw, b = rng.normal(size=(c * mult, 1, 3, 3)), rng.normal(size=(filters, c * mult, 1, 1)), rng.normal(size=filters)
    attrs = {"filters": filters, "kernel_size": 3, "channel_multiplier": mult, "padding": "SAME", "dilation_rate": 2}
    y = run("separable_conv2d", attrs, x, depthwise_kernel=dw, pointwise_kernel=pw, bias=b)
    middle = conv_reference(x, dw, [1, 1], [2, 2], "SAME", groups=c)
    reference = np.einsum("nmhw,fm->nfhw", middle, pw[:, :, 0, 0]) + b[None, :, None, None]
    np.testing.assert_allclose(y, reference, rtol=1e-10)


def test_depthwise_initializer_uses_tf_fans():
    op = layers.get("depthwise_conv2d")
    p = op.Params.model_validate({"kernel_size": 3, "channel_multiplier": 4})
    (kernel, _) = op.variables(p, [TensorType((None, 8, 5, 5))])
    assert kernel.shape == (32, 1, 3, 3)
    assert kernel.fans == (8 * 9, 4 * 9)  # TF's [3, 3, 8, 4]: fan_in = in * window, fan_out = mult * window
    w = torch.empty(kernel.shape, dtype=torch.float64)
    initialize(w, kernel.initializer, kernel.fans, torch.Generator().manual_seed(0))
    limit = math.sqrt(6 / (72 + 36))
    assert w.abs().max() <= limit and w.abs().max() > 0.95 * limit


# --- conv2d_transpose ----------------------------------------------------------------------------


def transpose_reference(x, w, s, out, padding, d=1):
    """TF's definition: scatter every input cell through the kernel (no padding), then crop
    P // 2 at the start (SAME) and pad zeros past the full size (VALID)."""
    n, c, h, width = x.shape
    filters, k = w.shape[1], w.shape[2]
    k_eff = (k - 1) * d + 1
    full = np.zeros((n, filters, (h - 1) * s + k_eff, (width - 1) * s + k_eff))
    for i, j, a, b in itertools.product(range(h), range(width), range(k), range(k)):
        full[:, :, i * s + a * d, j * s + b * d] += np.einsum("nc,cf->nf", x[:, :, i, j], w[:, :, a, b])
    crops = [max(0, (size - 1) * s + k_eff - o) // 2 if padding == "SAME" else 0 for size, o in zip((h, width), out)]
    padded = np.zeros((n, filters, max(full.shape[2], crops[0] + out[0]), max(full.shape[3], crops[1] + out[1])))
    padded[:, :, : full.shape[2], : full.shape[3]] = full
    return padded[:, :, crops[0] : crops[0] + out[0], crops[1] : crops[1] + out[1]]


def test_conv2d_transpose_same_crop_T5():
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    y = run("conv2d_transpose", {"filters": 1, "kernel_size": 3, "strides": 2, "padding": "SAME", "output_shape": 4, "use_bias": False}, x, kernel=np.ones((1, 1, 3, 3)))
    assert y[0, 0].tolist() == [[1, 1, 3, 2], [1, 1, 3, 2], [4, 4, 10, 6], [3, 3, 7, 4]]


def test_conv2d_transpose_valid_zero_tail_T6():
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    y = run("conv2d_transpose", {"filters": 1, "kernel_size": 3, "strides": 2, "output_shape": 6, "use_bias": False}, x, kernel=np.ones((1, 1, 3, 3)))
    full = [[1, 1, 3, 2, 2], [1, 1, 3, 2, 2], [4, 4, 10, 6, 6], [3, 3, 7, 4, 4], [3, 3, 7, 4, 4]]
    assert y[0, 0].tolist() == [row + [0] for row in full] + [[0] * 6]


@pytest.mark.parametrize("out", [4, 7])
def test_conv2d_transpose_rejects_sizes_tf_rejects_T6(out):
    op = layers.get("conv2d_transpose")
    p = op.Params.model_validate({"filters": 1, "kernel_size": 3, "strides": 2, "padding": "SAME", "output_shape": out})
    with pytest.raises(OpError, match=r"must be in \[5, 6\]") as info:  # ceil(out / 2) must be 3 for a 3x3 input
        op.infer(p, [TensorType((None, 1, 3, 3))])
    assert info.value.field == "output_shape"


@pytest.mark.parametrize(
    "n,k,s,out,padding",
    [(3, 3, 2, 6, "SAME"), (3, 3, 2, 5, "SAME"), (3, 4, 2, 6, "SAME"), (3, 5, 2, 6, "SAME"), (3, 1, 2, 6, "SAME"), (4, 3, 1, 4, "SAME"),
     (3, 3, 2, 7, "VALID"), (3, 3, 2, 8, "VALID"), (3, 2, 2, 6, "VALID"), (3, 4, 2, 8, "VALID"), (3, 4, 2, 9, "VALID")],
)  # fmt: skip
def test_conv2d_transpose_matches_tf_definition(n, k, s, out, padding):
    x, w = rng.normal(size=(2, 3, n, n)), rng.normal(size=(3, 2, k, k))
    attrs = {"filters": 2, "kernel_size": k, "strides": s, "padding": padding, "output_shape": out, "use_bias": False}
    np.testing.assert_allclose(run("conv2d_transpose", attrs, x, kernel=w), transpose_reference(x, w, s, (out, out), padding), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv2d_transpose_is_the_adjoint_of_conv2d(padding):
    # <conv2d(a), b> == <conv2d_transpose(b), a> with the same kernel: TF's definition of the op
    a, w = rng.normal(size=(1, 2, 7, 6)), rng.normal(size=(3, 2, 3, 3))
    attrs = {"kernel_size": 3, "strides": 2, "padding": padding, "use_bias": False}
    conv = run("conv2d", {"filters": 3, **attrs}, a, kernel=w)
    b = rng.normal(size=conv.shape)
    back = run("conv2d_transpose", {"filters": 2, **attrs, "output_shape": [7, 6]}, b, kernel=w)
    np.testing.assert_allclose(np.sum(conv * b), np.sum(back * a), rtol=1e-10)


def test_conv2d_transpose_infers_keras_sizes():
    op = layers.get("conv2d_transpose")
    same = op.Params.model_validate({"filters": 1, "kernel_size": 3, "strides": 2, "padding": "SAME"})
    valid = op.Params.model_validate({"filters": 1, "kernel_size": 5, "strides": 2})
    x = [TensorType((None, 1, 4, 3))]
    assert op.infer(same, x)[0].shape == (None, 1, 8, 6)  # n * s
    assert op.infer(valid, x)[0].shape == (None, 1, 11, 9)  # n * s + max(k - s, 0)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,attrs",
    [("conv2d", {"filters": 0, "kernel_size": 3}), ("conv2d", {"filters": 2, "kernel_size": -1}), ("conv2d", {"filters": 2, "kernel_size": [3, 3, 3]}),
     ("conv2d", {"filters": 2, "kernel_size": 3, "padding": "FULL"}), ("conv2d", {"filters": 2, "kernel_size": 3, "kernel_initializer": "glorot"}),
     ("conv2d", {"filters": 2, "kernel_size": 3, "kernel_regularizer": -0.1}), ("conv2d", {"filters": 2, "kernel_size": 3, "bias_initializer": {"constant": "x"}}),
     ("atrous_conv2d", {"filters": 2, "kernel_size": 3, "rate": 0}), ("depthwise_conv2d", {"kernel_size": 3, "channel_multiplier": 0}),
     ("convolution", {"filters": 2, "kernel_size": [1, 2, 3, 4]})],
)  # fmt: skip
def test_bad_attributes_are_validation_errors(name, attrs):
    with pytest.raises(ValidationError):
        layers.get(name).Params.model_validate(attrs)


def test_initializer_typo_suggests():
    with pytest.raises(ValidationError, match="did you mean 'glorot_uniform'"):
        layers.get("conv2d").Params.model_validate({"filters": 2, "kernel_size": 3, "kernel_initializer": "glorot_unifrom"})


@pytest.mark.parametrize(
    "name,attrs,shape,field",
    [("conv2d", {"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, (3, 8, 8), "dilation_rate"),
     ("conv2d", {"filters": 2, "kernel_size": 5}, (3, 4, 4), "kernel_size"),
     ("conv2d", {"filters": 2, "kernel_size": 3}, (3, 8), None),
     ("convolution", {"filters": 2, "kernel_size": [3, 3]}, (3, 8), "kernel_size"),
     ("atrous_conv2d", {"filters": 2, "kernel_size": 3, "rate": 4}, (3, 8, 8), "kernel_size")],
)  # fmt: skip
def test_attributes_that_do_not_fit_the_input_are_op_errors(name, attrs, shape, field):
    op = layers.get(name)
    with pytest.raises(OpError) as info:
        op.infer(op.Params.model_validate(attrs), [TensorType((None, *shape))])
    assert info.value.field == field


def test_constant_initializer_and_regularizer_reach_the_variables():
    op = layers.get("conv2d")
    p = op.Params.model_validate({"filters": 2, "kernel_size": 3, "kernel_initializer": {"constant": 0.1}, "kernel_regularizer": 0.01})
    kernel, bias = op.variables(p, [TensorType((None, 3, 5, 5))])
    assert kernel.initializer == {"constant": 0.1} and kernel.regularizer == 0.01 and bias.regularizer == 0.0
    w = torch.empty(kernel.shape)
    initialize(w, kernel.initializer, kernel.fans)
    assert torch.all(w == 0.1)


def test_check_reports_the_attribute_position(write_spec, tfn_cli):
    spec = write_spec(
        """
        version: 1
        name: bad_conv
        model:
          inputs:
            image: {shape: [1, 8, 8]}
          layers:
            - {op: conv2d, filters: 4, kernel_size: 3, strides: 2, dilation_rate: 2}
            - {op: flatten}
            - {name: logits, op: dense, units: 10}
        loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
        data: {source: digits, batch_size: 8}
        train: {epochs: 1}
        """
    )
    code, out, err = tfn_cli("check", str(spec))
    assert code == 2
    line = spec.read_text().splitlines()[6]
    col = line.index("dilation_rate: 2") + len("dilation_rate: ") + 1  # the attribute's value
    assert f"{spec}:7:{col}: error: model.layers[0].dilation_rate: strides [2, 2] > 1 together with dilation_rate [2, 2] > 1 is not supported" in err


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 9),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    d=st.integers(1, 3),
    padding=st.sampled_from(["SAME", "VALID"]),
)
def test_conv1d_any_geometry_matches_loops(n, k, s, d, padding):
    assume(s == 1 or d == 1)  # TF refuses strides and dilation together
    assume(padding == "SAME" or (k - 1) * d + 1 <= n)  # else no VALID window fits: an OpError, tested above
    x, w = rng.normal(size=(1, 2, n)), rng.normal(size=(1, 2, k))
    attrs = {"filters": 1, "kernel_size": k, "strides": s, "dilation_rate": d, "padding": padding, "use_bias": False}
    np.testing.assert_allclose(run("conv1d", attrs, x, kernel=w), conv_reference(x, w, [s], [d], padding), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_dilated_conv2d_transpose_matches_definition_and_is_the_adjoint(padding):
    a, w = rng.normal(size=(1, 2, 7, 8)), rng.normal(size=(3, 2, 3, 2))
    attrs = {"kernel_size": [3, 2], "dilation_rate": 2, "padding": padding, "use_bias": False}
    conv = run("conv2d", {"filters": 3, **attrs}, a, kernel=w)
    b = rng.normal(size=conv.shape)
    back = run("conv2d_transpose", {"filters": 2, **attrs, "output_shape": [7, 8]}, b, kernel=w)
    np.testing.assert_allclose(np.sum(conv * b), np.sum(back * a), rtol=1e-10)
