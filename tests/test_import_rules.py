"""The import rules the ops carry (layers/imports.py): layouts, against NumPy references, and refusals."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tfn.layers import TensorType, all_ops
from tfn.layers import imports as im


def _foreign(framework, kind, attrs=None, inputs=((None, 4),), weights=(), channels_last=True, orders=()):
    return im.Foreign(framework, kind, "layer", dict(attrs or {}), tuple(TensorType(s) for s in inputs), tuple(weights), channels_last, tuple(orders))


def _convert(framework, kind, **kwargs):
    op, rule = im.rules(framework)[kind]
    return op, rule.convert(_foreign(framework, kind, **kwargs))


def test_every_rule_belongs_to_a_registered_op_and_each_kind_to_one():
    for framework in im.FRAMEWORKS:
        table = im.rules(framework)  # raises when two ops claim one kind
        assert table, framework
        assert all(op in all_ops() for op, _ in table.values())


def test_a_kind_claimed_twice_is_an_error(monkeypatch):
    from tfn.layers.base import get

    relu, sigmoid = get("relu"), get("sigmoid")
    monkeypatch.setattr(type(sigmoid), "imports", type(sigmoid).imports + (im.tf("Relu"),))
    with pytest.raises(RuntimeError, match="tf 'Relu' is mapped by both relu and sigmoid"):
        im.rules("tf")
    assert relu.imports


def test_features_last_axes_become_channels_first():
    f = _foreign("keras", "X", inputs=((None, 3, 5, 5),))
    assert [f.axis(a) for a in (-1, 3, 1, 2, 0)] == [1, 1, 2, 3, 0]
    flat = _foreign("keras", "X", inputs=((None, 7),))
    assert flat.axis(-1) == 1
    onnx = _foreign("onnx", "X", inputs=((None, 3, 5, 5),), channels_last=False)
    assert onnx.axis(-1) == 3
    with pytest.raises(im.NoMapping, match="axis 4 is out of range for a rank-4 input"):
        f.axis(4)


def test_kernel_layouts_against_numpy():
    rng = np.random.default_rng(0)
    hwio = rng.standard_normal((3, 2, 4, 5))
    np.testing.assert_array_equal(im.channels_first_kernel(hwio), np.einsum("hwio->oihw", hwio))
    depthwise = rng.standard_normal((3, 2, 4, 2))  # [kh, kw, C, multiplier]
    converted = im.depthwise_kernel(depthwise)
    assert converted.shape == (8, 1, 3, 2)
    for c in range(4):
        for q in range(2):
            np.testing.assert_array_equal(converted[c * 2 + q, 0], depthwise[:, :, c, q])  # TF's channel order c*M + q
    dense = rng.standard_normal((6, 3))
    np.testing.assert_array_equal(im.dense_kernel(dense, None), dense.T)


def test_a_dense_after_a_features_last_flatten_gets_its_rows_permuted():
    """Flatten of an NHWC map then Dense == Flatten of the NCHW map then the converted dense."""
    rng = np.random.default_rng(1)
    nhwc = rng.standard_normal((2, 3, 4, 5))  # N, H, W, C
    kernel = rng.standard_normal((3 * 4 * 5, 6))
    expected = nhwc.reshape(2, -1) @ kernel
    order = im.flattened_order((5, 3, 4))
    _, emitted = _convert("keras", "Dense", attrs={"use_bias": False}, inputs=((None, 60),), weights=(kernel,), orders=(order,))
    nchw = np.moveaxis(nhwc, -1, 1).reshape(2, -1)
    np.testing.assert_allclose(nchw @ emitted.variables["kernel"].T, expected, rtol=1e-12)
    _, flat = _convert("keras", "Flatten", inputs=((None, 5, 3, 4),))
    assert flat.feature_order == order


def test_concatenated_flattened_features_keep_their_order():
    orders = (im.flattened_order((2, 1, 2)), None)
    _, emitted = _convert("keras", "Concatenate", attrs={"axis": -1}, inputs=((None, 4), (None, 3)), orders=orders)
    assert emitted.attrs == {"axis": 1} and emitted.feature_order == (0, 2, 1, 3, 4, 5, 6)


def test_padding_conversions():
    _, keras = _convert("keras", "ZeroPadding2D", attrs={"padding": [[1, 0], [2, 3]]}, inputs=((None, 3, 5, 5),))
    assert keras.attrs["paddings"] == [[0, 0], [0, 0], [1, 0], [2, 3]]
    paddings = np.array([[0, 0], [1, 2], [3, 4], [0, 0]])  # NHWC
    _, tf = _convert("tf", "MirrorPad", attrs={"mode": "REFLECT"}, inputs=((None, 3, 5, 5),), weights=(paddings,))
    assert tf.attrs == {"paddings": [[0, 0], [0, 0], [1, 2], [3, 4]], "mode": "REFLECT"}
    with pytest.raises(im.NoMapping, match="padding 'causal': tfn has SAME and VALID padding"):
        _convert("keras", "Conv1D", attrs={"filters": 2, "kernel_size": 3, "padding": "causal"}, inputs=((None, 3, 8),), weights=(np.zeros((3, 3, 2)),))


@pytest.mark.parametrize(
    ("framework", "kind", "kwargs", "message"),
    [
        ("keras", "Reshape", {"attrs": {"target_shape": [2, 9]}, "inputs": ((None, 18),), "orders": (im.flattened_order((2, 3, 3)),)}, "a reshape of features flattened from an NHWC tensor"),
        ("onnx", "MatMul", {"inputs": ((None, 4, 7),), "weights": (np.zeros((7, 2, 2)),), "channels_last": False}, "a MatMul with a constant B of rank > 2"),
        ("keras", "BatchNormalization", {"attrs": {"axis": 1}, "inputs": ((None, 3, 5, 5),), "weights": (np.ones(5),) * 4}, "axis 1: tfn normalises the feature axis"),
        ("keras", "Conv2D", {"attrs": {"filters": 2, "kernel_size": 3, "data_format": "channels_first"}, "inputs": ((None, 3, 5, 5),)}, "data_format 'channels_first'"),
        ("keras", "ELU", {"attrs": {"alpha": 0.5}}, "alpha 0.5: tfn's elu has alpha 1"),
        ("keras", "Conv2DTranspose", {"attrs": {"filters": 2, "kernel_size": 3, "output_padding": [1, 1]}, "inputs": ((None, 3, 5, 5),)}, "output_padding"),
        ("tf", "MatMul", {"inputs": ((None, 3), (None, 3))}, "a product of two computed rank-2 tensors multiplies across the batch axis"),
        ("tf", "FusedBatchNormV3", {"attrs": {"is_training": True}, "inputs": ((None, 3, 4, 4),)}, "is_training: a training-mode batch norm"),
        ("onnx", "Clip", {"inputs": ((None, 3),), "weights": (np.float32(0), np.float32(1)), "channels_last": False}, "Clip to [0.0, 1.0]: tfn has relu6"),
        ("tf", "Mean", {"inputs": ((None, 3, 4, 4),), "weights": (np.array([3]),)}, "a reduction of the feature axis that leaves a rank > 2 tensor"),
        ("tf", "Sum", {"inputs": ((None, 3, 4, 4),), "weights": (np.array([0]),)}, "a reduction over the batch axis"),
        ("keras", "Permute", {"attrs": {"dims": [1, 1, 2]}, "inputs": ((None, 3, 4, 4),)}, "perm [0, 1, 1, 2] moves the batch axis or is not a permutation"),
        ("keras", "ReLU", {"attrs": {"max_value": 6.0, "negative_slope": 0.1}}, "max_value 6.0 with negative_slope 0.1: tfn's relu6 has no slope"),
        ("keras", "LayerNormalization", {"attrs": {"rms_scaling": True}, "inputs": ((None, 3, 4, 4),)}, "rms_scaling"),
        ("onnx", "LRN", {"attrs": {"size": 4}, "inputs": ((None, 3, 4, 4),), "channels_last": False}, "size 4: TF's window is 2 * depth_radius + 1 (odd)"),
        ("onnx", "Pad", {"attrs": {"mode": "edge"}, "inputs": ((None, 3),), "weights": (np.array([0, 1, 0, 1]),), "channels_last": False}, "mode edge"),
    ],
)
def test_refusals_say_why(framework, kind, kwargs, message):
    with pytest.raises(im.NoMapping, match=re.escape(message)):
        _convert(framework, kind, **kwargs)


def test_an_unread_feature_order_is_refused(monkeypatch):
    """A rule that does not read a flattened input's order is not mapped silently."""
    from tfn.layers.base import get
    from tfn.runners.importers.build import Builder, Layer

    identity = type(get("identity"))
    monkeypatch.setattr(identity, "imports", identity.imports + (im.keras("Probe", lambda f: im.Emitted()),))
    builder = Builder("keras", channels_last=True)
    builder.add_input("x", "x", TensorType((None, 2, 3, 3)))
    builder.add(Layer("flat", "Flatten", "keras", {}, ["x"], ["f"]))
    builder.add(Layer("probe", "Probe", "keras", {}, ["f"], ["p"]))
    builder.add(Layer("same", "Reshape", "keras", {"target_shape": [18]}, ["f"], ["r"]))  # keeps the order: fine
    assert [(p.name, p.reason) for p in builder.problems] == [
        ("probe", "its input was flattened from a features-last tensor, and tfn's op would see the features in another order")
    ]
    assert builder.tensors["r"].order == im.flattened_order((2, 3, 3))


def test_the_keras_loss_rules_find_the_logits():
    table = im.rules("keras_loss")
    op, rule = table["sparse_categorical_crossentropy"]
    assert op == "sparse_softmax_cross_entropy_with_logits"
    assert rule.convert(_foreign("keras_loss", "x", {"from_logits": False}, inputs=())).logits_before == "softmax"
    assert rule.convert(_foreign("keras_loss", "x", {"from_logits": True}, inputs=())).logits_before is None
    assert table["binary_crossentropy"][1].convert(_foreign("keras_loss", "binary_crossentropy", {}, inputs=())).logits_before == "sigmoid"


def test_the_documented_mapping_table_is_the_generated_one():
    """docs/import.md's table is tfn.layers.imports.mapping_table(); TFN_REGENERATE_GOLDEN=1 rewrites it."""
    import os
    from pathlib import Path

    path = Path(__file__).parents[1] / "docs" / "import.md"
    text = path.read_text()
    start = text.index("<!-- mapping table: generated by tfn.layers.imports.mapping_table() -->\n") + len("<!-- mapping table: generated by tfn.layers.imports.mapping_table() -->\n")
    end = text.index("<!-- end of mapping table -->")
    if os.environ.get("TFN_REGENERATE_GOLDEN"):
        path.write_text(text[:start] + im.mapping_table() + text[end:])
        text = path.read_text()
        end = text.index("<!-- end of mapping table -->")
    assert text[start:end] == im.mapping_table()
    assert "| `conv2d` | `Conv2D` |  |  | `Conv2D` (+ BiasAdd) |  |" in text


def test_a_source_transpose_in_tfn_layout_against_numpy():
    rng = np.random.default_rng(2)
    source = rng.standard_normal((2, 3, 4, 5))  # NHWC
    perm = [0, 2, 1, 3]
    expected = np.moveaxis(np.transpose(source, perm), -1, 1)
    np.testing.assert_array_equal(np.transpose(np.moveaxis(source, -1, 1), im.tfn_perm(perm, 4)), expected)
    _, emitted = _convert("keras", "Permute", attrs={"dims": [2, 1, 3]}, inputs=((None, 5, 3, 4),))
    assert emitted.attrs == {"perm": im.tfn_perm(perm, 4)}


def test_a_reshape_to_a_features_last_shape_is_a_reshape_then_a_transpose():
    """Dense -> Reshape((H, W, C)): tfn reshapes to the source's [H, W, C], then moves C to axis 1."""
    rng = np.random.default_rng(3)
    flat = rng.standard_normal((2, 24))
    expected = np.moveaxis(flat.reshape(2, 2, 3, 4), -1, 1)
    _, emitted = _convert("keras", "Reshape", attrs={"target_shape": [2, 3, 4]}, inputs=((None, 24),))
    assert emitted.attrs == {"shape": [2, 3, 4]} and [(e.op, e.attrs) for e in emitted.then] == [("transpose", {"perm": [0, 3, 1, 2]})]
    np.testing.assert_array_equal(np.transpose(flat.reshape(2, *emitted.attrs["shape"]), emitted.then[0].attrs["perm"]), expected)
    nchw = rng.standard_normal((2, 4, 2, 3))  # a features-last [2, 3, 4] in tfn's layout, reshaped to (3, 2, 4)
    _, emitted = _convert("keras", "Reshape", attrs={"target_shape": [3, 2, 4]}, inputs=((None, 4, 2, 3),))
    out = nchw
    for step in (emitted, *emitted.then):
        out = np.transpose(out, step.attrs["perm"]) if (step.op or "transpose") == "transpose" else out.reshape(2, *step.attrs["shape"])
    np.testing.assert_array_equal(out, np.moveaxis(np.moveaxis(nchw, 1, -1).reshape(2, 3, 2, 4), -1, 1))
