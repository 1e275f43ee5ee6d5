"""The ops of issue 11's non-sequence part: their errors, their traps against independent
references (NumPy float64, hand-computed vectors) and how they sit in a spec.

TensorFlow's own numbers for every op are in test_ops_tf_oracle.py; this file
checks what those cannot: the errors (each names its attribute), the shape
rules at `tfn check`, and the places where the nearest PyTorch call differs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from tfn import layers
from tfn.layers import IndexRangeError, OpError, TensorType


def kernel(name, attrs, *types):
    op = layers.get(name)
    p = op.Params.model_validate(attrs)
    op.infer(p, list(types))
    return op.build(p, list(types))


def t(*shape, dtype="float64"):
    return TensorType((None, *shape), dtype)


def infer(name, attrs, *types):
    op = layers.get(name)
    return op.infer(op.Params.model_validate(attrs), list(types))


def refused(name, attrs, *types, match, field=None):
    with pytest.raises(OpError, match=match) as info:
        infer(name, attrs, *types)
    if field is not None:
        assert info.value.field == field


rng = np.random.default_rng(0)


# --- errors: every attribute that does not fit its input says so, naming the attribute ---------


@pytest.mark.parametrize(
    "name,attrs,types,match,field",
    [
        ("transpose", {"perm": [1, 0, 2]}, [t(3, 4)], "moves the batch axis; perm\\[0\\] must be 0", "perm"),
        ("transpose", {"perm": [0, 1, 1]}, [t(3, 4)], "not a permutation", "perm"),
        ("transpose", {"perm": [0, 1]}, [t(3, 4)], "2 entries \\[0, 1\\] for a rank-3 input", "perm"),
        ("slice", {"begin": [1, 0], "size": [-1, 2]}, [t(3)], "batch axis cannot be sliced", "begin"),
        ("slice", {"begin": [0, 2], "size": [-1, 2]}, [t(3)], "axis 1 has size 3: begin 2 with size 2 does not fit", "size"),
        ("slice", {"begin": [0, 3], "size": [-1, -1]}, [t(3)], "begin 3", "begin"),
        ("split", {"num_or_size_splits": 4}, [t(6, 2)], "axis 1 has size 6, which does not split into 4 equal pieces", "num_or_size_splits"),
        ("split", {"num_or_size_splits": [2, 3]}, [t(6, 2)], "sum to 5, but axis 1 has size 6", "num_or_size_splits"),
        ("split", {"num_or_size_splits": [6, -1]}, [t(6, 2)], "leave nothing for -1", "num_or_size_splits"),
        ("split", {"num_or_size_splits": 2, "axis": 0}, [t(6, 2)], "batch axis", "axis"),
        ("gather", {"axis": 3}, [t(3, 4), t(2, dtype="int64")], "out of range for a rank-3 input", "axis"),
        ("gather", {}, [t(3, 4), t(2)], "indices \\(input 1\\) must be integers", "inputs"),
        ("squeeze", {"axis": 1}, [t(3, 1)], "cannot squeeze axis 1 of \\[\\?, 3, 1\\] float64: its size is 3, not 1", "axis"),
        ("squeeze", {"axis": 0}, [t(3, 1)], "batch axis", "axis"),
        ("expand_dims", {"axis": 0}, [t(3)], "cannot go before the batch axis", "axis"),
        ("expand_dims", {"axis": 3}, [t(3)], "out of range for a new axis of a rank-2 input", "axis"),
        ("tile", {"multiples": [2, 1]}, [t(3)], "batch axis cannot be tiled", "multiples"),
        ("tile", {"multiples": [1, 1, 1]}, [t(3)], "3 entries", "multiples"),
        ("stack", {}, [t(3), t(4)], "one shape and dtype", "inputs"),
        ("stack", {"axis": -4}, [t(3), t(3)], "out of range", "axis"),
        ("matmul", {}, [t(3, 4), t(5, 6)], "inner sizes differ: a is 3x4, b is 5x6", "inputs"),
        ("matmul", {"transpose_b": True}, [t(3, 4), t(5, 6)], "b \\(transposed\\) is 6x5", "inputs"),
        ("matmul", {}, [t(4), t(4)], "rank >= 3", "inputs"),
        ("matmul", {}, [t(2, 3, 4), t(3, 4, 5)], "axis 1 does not broadcast: a has 2, b has 3", "inputs"),
        ("reduce_sum", {"axis": 0}, [t(3, 4)], "batch axis", "axis"),
        ("reduce_max", {"axis": [1, -2]}, [t(3, 4)], "lists an axis twice", "axis"),
        ("reduce_mean", {}, [t(3, dtype="int64")], "averages float inputs", None),
        ("layer_normalization", {"axis": []}, [t(3)], "at least one axis", "axis"),
        ("layer_normalization", {"axis": [1, 1]}, [t(3, 4)], "lists an axis twice", "axis"),
        ("prelu", {"shared_axes": [0]}, [t(3, 4)], "batch axis", "shared_axes"),
        ("local_response_normalization", {}, [t(3)], "at least one axis after the channels", None),
        ("cropping2d", {"cropping": [[2, 2], [0, 0]]}, [t(3, 4, 5)], "leaves nothing", "cropping"),
        ("zero_padding2d", {}, [t(3, 4)], "4-D input", None),
        ("resize", {"size": [2, 2]}, [t(3, 4)], "4-D input", None),
        ("resize", {"size": [2, 2]}, [t(3, 4, 4, dtype="int64")], "BILINEAR resizing needs a float input", "method"),
        ("resize", {"scale": 0.1}, [t(3, 4, 5)], "leaves no pixel", "scale"),
    ],
)
def test_attributes_that_do_not_fit_the_input_are_named(name, attrs, types, match, field):
    refused(name, attrs, *types, match=match, field=field)


@pytest.mark.parametrize(
    "name,attrs,match",
    [
        ("split", {"num_or_size_splits": [2, -1, -1]}, "only one size may be -1"),
        ("split", {"num_or_size_splits": [2, 0]}, "every size must be positive"),
        ("split", {"num_or_size_splits": 0}, "greater than 0"),
        ("slice", {"begin": [0, 0], "size": [-1, 0]}, "positive, or -1"),
        ("resize", {"size": [2, 2], "scale": 2.0}, "give size"),
        ("resize", {}, "give size"),
        ("resize", {"size": [2, 2], "align_corners": True, "half_pixel_centers": True}, "cannot both be true"),
        ("resize", {"size": [2, 2], "method": "AREA", "half_pixel_centers": True}, "AREA has no half_pixel_centers"),
        ("resize", {"size": [2, 2], "method": "lanczos3"}, "'NEAREST', 'BILINEAR', 'BICUBIC' or 'AREA'"),
        ("upsampling2d", {"interpolation": "bicubic"}, "'NEAREST' or 'BILINEAR'"),
        ("cropping2d", {"cropping": [1, 2, 3]}, "expected an int, \\[rows, columns\\]"),
        ("zero_padding2d", {"padding": -1}, "must be >= 0"),
        ("hard_sigmoid", {"slope": 0.0}, "greater than 0"),
        ("cast", {"dtype": "bool"}, "float32"),
    ],
)
def test_invalid_attributes_are_schema_errors(name, attrs, match):
    with pytest.raises(ValidationError, match=match):
        layers.get(name).Params.model_validate(attrs)


def test_method_names_take_any_case_and_edge_sizes_take_keras_forms():
    assert layers.get("resize").Params.model_validate({"size": [2, 2], "method": "bicubic"}).method == "BICUBIC"
    edges = layers.get("cropping2d").Params
    assert edges.model_validate({"cropping": 1}).cropping == [[1, 1], [1, 1]]
    assert edges.model_validate({"cropping": [1, 2]}).cropping == [[1, 1], [2, 2]]
    assert edges.model_validate({"cropping": [[1, 0], [0, 3]]}).cropping == [[1, 0], [0, 3]]


# --- shape rules ---------------------------------------------------------------------------------


def test_shape_rules():
    assert infer("transpose", {}, t(3, 4, 5))[0].shape == (None, 5, 4, 3)
    assert infer("slice", {"begin": [0, 1, 0], "size": [-1, -1, 2]}, t(3, 4))[0].shape == (None, 2, 2)
    assert [o.shape for o in infer("split", {"num_or_size_splits": [1, -1, 2], "axis": -1}, t(2, 6))] == [(None, 2, 1), (None, 2, 3), (None, 2, 2)]
    assert infer("gather", {"axis": 2}, t(3, 5, 2), t(4, 6, dtype="int32"))[0].shape == (None, 3, 4, 6, 2)
    assert infer("gather", {}, t(5), t(dtype="int64"))[0].shape == (None,)  # one index per sample: the axis goes
    assert infer("squeeze", {}, t(1, 3, 1))[0].shape == (None, 3)
    assert infer("expand_dims", {"axis": -1}, t(3))[0].shape == (None, 3, 1)
    assert infer("expand_dims", {"axis": -2}, t(3))[0].shape == (None, 1, 3)
    assert infer("tile", {"multiples": [1, 2, 3]}, t(3, 4))[0].shape == (None, 6, 12)
    assert infer("stack", {"axis": 2}, t(3, 4), t(3, 4), t(3, 4))[0].shape == (None, 3, 3, 4)
    assert infer("cast", {"dtype": "int32"}, t(3))[0] == t(3, dtype="int32")
    assert infer("matmul", {"transpose_a": True}, t(2, 5, 3), t(1, 5, 4))[0].shape == (None, 2, 3, 4)
    assert infer("reduce_max", {"axis": [1, 3], "keepdims": True}, t(2, 3, 4))[0].shape == (None, 1, 3, 1)
    assert infer("reduce_sum", {}, t(2, 3))[0].shape == (None,)
    assert infer("reduce_sum", {"axis": []}, t(2, 3))[0].shape == (None, 2, 3)
    assert infer("resize", {"scale": [1.5, 0.5]}, t(3, 4, 5))[0].shape == (None, 3, 6, 2)
    assert infer("upsampling2d", {"size": [2, 3]}, t(3, 4, 5))[0].shape == (None, 3, 8, 15)
    assert infer("cropping2d", {"cropping": [[1, 0], [2, 1]]}, t(3, 4, 5))[0].shape == (None, 3, 3, 2)
    assert infer("zero_padding2d", {"padding": [1, 2]}, t(3, 4, 5))[0].shape == (None, 3, 6, 9)
    assert infer("dense", {"units": 7}, t(3, 4, 5))[0].shape == (None, 7, 4, 5)


def test_prelu_and_layer_norm_variable_shapes():
    prelu, ln = layers.get("prelu"), layers.get("layer_normalization")
    assert [v.shape for v in prelu.variables(prelu.Params(), [t(3, 4, 5)])] == [(3, 1, 1)]
    assert [v.shape for v in prelu.variables(prelu.Params(shared_axes=[2]), [t(3, 4, 5)])] == [(3, 1, 5)]
    assert [v.shape for v in prelu.variables(prelu.Params(), [t(3)])] == [(3,)]
    (gamma, beta) = ln.variables(ln.Params(axis=[-1, 1]), [t(3, 4, 5)])
    assert (gamma.role, gamma.shape, gamma.initializer, beta.role, beta.shape, beta.initializer) == ("gamma", (3, 5), "ones", "beta", (3, 5), "zeros")
    assert [v.role for v in ln.variables(ln.Params(center=False), [t(3)])] == ["gamma"]


# --- traps, against independent references --------------------------------------------------------


def lrn_reference(x, r, bias, alpha, beta):
    """TF's definition in float64 NumPy: the plain sum of squares over channels c - r .. c + r."""
    squares = np.pad(x**2, [(0, 0), (r, r)] + [(0, 0)] * (x.ndim - 2))
    window = sum(squares[:, k : k + x.shape[1]] for k in range(2 * r + 1))
    return x / (bias + alpha * window) ** beta


def test_lrn_alpha_is_not_divided_by_the_window():
    x = rng.normal(size=(2, 6, 3, 3))
    attrs = {"depth_radius": 2, "bias": 1.0, "alpha": 0.3, "beta": 0.75}
    y = kernel("local_response_normalization", attrs, t(6, 3, 3))([torch.from_numpy(x)], {}, False).numpy()
    np.testing.assert_allclose(y, lrn_reference(x, 2, 1.0, 0.3, 0.75), rtol=1e-12)
    torch_default = torch.nn.LocalResponseNorm(5, alpha=0.3, beta=0.75, k=1.0)(torch.from_numpy(x)).numpy()
    assert np.abs(torch_default - y).max() > 1e-2, "PyTorch's alpha is divided by the window: the naive port differs"


def test_selu_gradient_at_zero_is_scale():
    x = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    kernel("selu", {}, t(3))([x], {}, False).sum().backward()
    assert x.grad.tolist() == [[1.0507009873554805] * 3]
    y = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    torch.selu(y).sum().backward()
    assert abs(y.grad[0, 0].item() - 1.0507009873554805 * 1.6732632423543772) < 1e-12  # the port that differs


def test_selu_and_hard_sigmoid_gradients_are_finite_and_exact_at_the_edges():
    x = torch.tensor([[-1000.0, -2.5, 2.5, 1000.0]], dtype=torch.float64, requires_grad=True)
    kernel("selu", {}, t(4))([x], {}, False).sum().backward()
    assert torch.isfinite(x.grad).all()
    x.grad = None
    kernel("hard_sigmoid", {}, t(4))([x], {}, False).sum().backward()
    assert x.grad.tolist() == [[0.0, 0.2, 0.2, 0.0]]  # clip_by_value passes the gradient at the corners, as TF's


def test_leaky_relu_is_a_where_not_a_max():
    x = torch.tensor([[-2.0, 0.0, 3.0]], dtype=torch.float64)
    y = kernel("leaky_relu", {"alpha": 2.0}, t(3))([x], {}, False)
    assert y.tolist() == [[-4.0, 0.0, 3.0]]  # max(x, 2x) would give [-2, 0, 6]


def test_reduce_max_splits_the_gradient_among_ties():
    x = torch.tensor([[[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]], dtype=torch.float64, requires_grad=True)
    kernel("reduce_max", {"axis": -1}, t(2, 3))([x], {}, False).sum().backward()
    assert x.grad.tolist() == [[[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]]]


def test_gather_refuses_negative_and_out_of_range_indices():
    gather = kernel("gather", {}, t(4, 2), t(3, dtype="int64"))
    params = torch.arange(16.0).reshape(2, 4, 2)
    out = gather([params, torch.tensor([[3, 0, 0], [1, 2, 3]])], {}, False)
    assert out[1].tolist() == [[10.0, 11.0], [12.0, 13.0], [14.0, 15.0]]
    for bad, value in (([[0, -1, 0], [0, 0, 0]], -1), ([[0, 0, 0], [4, 0, 0]], 4)):
        with pytest.raises(IndexRangeError, match=rf"gather: index {value} is outside \[0, 4\)"):
            gather([params, torch.tensor(bad)], {}, False)
    op = layers.get("gather")
    assert op.integer_input_range(op.Params(axis=2), [t(4, 2), t(3, dtype="int64")], 1) == (0, 2)
    assert op.integer_input_range(op.Params(), [t(4, 2), t(3, dtype="int64")], 0) is None


def test_cast_truncates_toward_zero_and_keeps_the_gradient_between_floats():
    x = torch.tensor([[-2.7, -0.5, 0.5, 2.7]], dtype=torch.float64, requires_grad=True)
    assert kernel("cast", {"dtype": "int64"}, t(4))([x], {}, False).tolist() == [[-2, 0, 0, 2]]
    y = kernel("cast", {"dtype": "float32"}, t(4))([x], {}, False)
    assert y.dtype == torch.float32
    y.sum().backward()
    assert x.grad.tolist() == [[1.0] * 4]


def test_dense_on_a_rank_3_input_maps_axis_1_at_every_position():
    x, w, b = rng.normal(size=(2, 3, 5)), rng.normal(size=(4, 3)), rng.normal(size=4)
    y = kernel("dense", {"units": 4}, t(3, 5))([torch.from_numpy(x)], {"kernel": torch.from_numpy(w), "bias": torch.from_numpy(b)}, False)
    np.testing.assert_allclose(y.numpy(), np.einsum("uf,nft->nut", w, x) + b[None, :, None], rtol=1e-12)
    op = layers.get("dense")
    p = op.Params(units=4)
    assert op.flops(p, [t(3, 5)], op.infer(p, [t(3, 5)])) == 5 * (2 * 3 * 4 + 4)


# resize: TF 1.x's default corner rule is none of F.interpolate's; half-pixel centres are its align_corners=False


def resize(x, **attrs):
    return kernel("resize", attrs, t(*x.shape[1:]))([x], {}, False)


def test_resize_default_samples_i_times_in_over_out():
    x = torch.arange(4.0, dtype=torch.float64).reshape(1, 1, 1, 4)
    # output j reads input j * 4 / 8 = j / 2: 0, 0.5, 1, ..., 3, then 3.5 clamps to the last pixel
    assert resize(x, size=[1, 8]).flatten().tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    for align in (False, True):
        assert not torch.allclose(resize(x, size=[1, 8]), F.interpolate(x, size=(1, 8), mode="bilinear", align_corners=align))
    torch.testing.assert_close(resize(x, size=[1, 8], half_pixel_centers=True), F.interpolate(x, size=(1, 8), mode="bilinear", align_corners=False))
    torch.testing.assert_close(resize(x, size=[1, 7], align_corners=True), F.interpolate(x, size=(1, 7), mode="bilinear", align_corners=True))


def test_resize_nearest_rules():
    x = torch.arange(5.0, dtype=torch.float64).reshape(1, 1, 1, 5)
    assert resize(x, size=[1, 3], method="NEAREST").flatten().tolist() == [0.0, 1.0, 3.0]  # floor(j * 5 / 3)
    assert resize(x, size=[1, 3], method="NEAREST", align_corners=True).flatten().tolist() == [0.0, 2.0, 4.0]  # round(j * 2)
    assert resize(x, size=[1, 3], method="NEAREST", half_pixel_centers=True).flatten().tolist() == [0.0, 2.0, 4.0]  # floor((j + .5) * 5 / 3)
    torch.testing.assert_close(resize(x, size=[1, 7], method="NEAREST", half_pixel_centers=True), F.interpolate(x, size=(1, 7), mode="nearest-exact"))
    ints = torch.arange(6).reshape(1, 1, 2, 3)
    assert resize(ints, size=[4, 6], method="NEAREST").dtype == torch.int64  # nearest copies: any dtype


def test_resize_area_averages_the_covered_cells():
    x = torch.arange(16.0, dtype=torch.float64).reshape(1, 1, 4, 4)
    torch.testing.assert_close(resize(x, size=[2, 2], method="AREA"), F.avg_pool2d(x, 2))
    row = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]], dtype=torch.float64)
    # 4 cells into 3: out[0] covers in[0] and a third of in[1], each sum weighted by out / in = 0.75
    y = resize(row, size=[1, 3], method="AREA").flatten().tolist()
    np.testing.assert_allclose(y, [(1 + 2 / 3) * 0.75, (2 / 3 * 2 + 2 / 3 * 3) * 0.75, (3 / 3 + 4) * 0.75], rtol=1e-6)


def test_resize_bicubic_uses_tfs_coefficient_table():
    from tfn.layers.resizing import resize_taps

    indices, weights = resize_taps("BICUBIC", 4, 8, False, False)
    assert indices.shape == weights.shape == (8, 4)
    # output 1 reads input 0.5: taps -1 (bounded to 0), 0, 1, 2 with Keys' a = -0.75 at distances 1.5, 0.5, 0.5, 1.5
    a = -0.75
    far, near = a * 1.5**3 - 5 * a * 1.5**2 + 8 * a * 1.5 - 4 * a, (a + 2) * 0.5**3 - (a + 3) * 0.5**2 + 1
    np.testing.assert_allclose(weights[1], [far, near, near, far], rtol=1e-6)
    assert indices[1].tolist() == [0, 0, 1, 2]
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
    _, keys = resize_taps("BICUBIC", 4, 8, False, True)
    assert keys[0, 0] == 0.0 and abs(keys[0].sum() - 1) < 1e-6  # half-pixel: an outside tap weighs 0, the rest renormalised


# --- in a spec ------------------------------------------------------------------------------------


def test_split_outputs_are_addressed_as_node_k(write_spec, tfn_cli):
    spec = write_spec(
        """
        version: 1
        name: parts
        model:
          inputs: {x: {shape: [6, 4]}}
          layers:
            - {name: parts, op: split, num_or_size_splits: [1, 2, 3]}
            - {name: last, op: identity, inputs: ["parts:2"]}
            - {name: bad, op: identity, inputs: ["parts:3"]}
        loss: {op: mean_squared_error, logits: last, labels: y}
        data: {source: digits}
        """
    )
    code, _, err = tfn_cli("check", str(spec))
    assert code == 2
    assert "spec.yaml:8:42: error: model.layers[2].inputs[0]: 'parts:3': node 'parts' has 3 output(s), numbered from 0" in err


def test_a_shape_error_points_at_the_attribute(write_spec, tfn_cli):
    spec = write_spec(
        """
        version: 1
        name: squeezed
        model:
          inputs: {x: {shape: [3, 1]}}
          layers:
            - {op: squeeze, axis: 1}
        loss: {op: mean_squared_error, logits: squeeze, labels: y}
        data: {source: digits}
        """
    )
    code, _, err = tfn_cli("check", str(spec))
    assert code == 2
    assert "spec.yaml:6:27: error: model.layers[0].axis: cannot squeeze axis 1 of [?, 3, 1]: its size is 3, not 1" in err
    assert "Traceback" not in err


def test_gather_indices_come_from_an_integer_model_input(write_spec, tfn_cli):
    spec = write_spec(
        """
        version: 1
        name: lookup
        model:
          inputs:
            table: {shape: [5, 3]}
            ids: {shape: [2], dtype: int64}
          layers:
            - {name: rows, op: gather, inputs: [table, ids]}
        loss: {op: mean_squared_error, logits: rows, labels: y}
        data: {source: synthetic, fields: {table: {shape: [5, 3]}, ids: {shape: [2], dtype: int64, high: 5}, y: {shape: [2, 3]}}}
        """
    )
    code, out, err = tfn_cli("check", str(spec), "--json")
    assert code == 0, err
    (row,) = json.loads(out)["nodes"][:1]
    assert row["output_shapes"] == [[None, 2, 3]]


@pytest.mark.parametrize(
    "attrs",
    [
        {"method": "NEAREST", "align_corners": True},
        {"method": "BILINEAR"},
        {"method": "BICUBIC", "half_pixel_centers": True},
        {"method": "BICUBIC", "align_corners": True},
        {"method": "AREA"},
    ],
)
def test_resize_gradient_float64_gradcheck(attrs):
    x = torch.randn(2, 2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    run = kernel("resize", {"size": [5, 2], **attrs}, t(2, 4, 3))
    assert torch.autograd.gradcheck(lambda x: run([x], {}, False), (x,), fast_mode=True)
