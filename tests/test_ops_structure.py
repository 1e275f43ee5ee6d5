"""Structural ops against NumPy references, and their errors at `tfn check`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tfn import layers
from tfn.layers import OpError, TensorType


def run(name, attrs, *arrays):
    op = layers.get(name)
    p = op.Params.model_validate(attrs)
    types = [TensorType((None, *a.shape[1:]), "float64") for a in arrays]
    op.infer(p, types)
    out = op.build(p, types)([torch.from_numpy(a) for a in arrays], {}, False)
    return out.numpy()


def infer(name, attrs, *shapes):
    op = layers.get(name)
    return op.infer(op.Params.model_validate(attrs), [TensorType((None, *s)) for s in shapes])


rng = np.random.default_rng(0)


def test_add_and_multiply_are_n_ary():
    a, b, c = (rng.normal(size=(2, 3, 4)) for _ in range(3))
    np.testing.assert_allclose(run("add", {}, a, b, c), a + b + c)
    np.testing.assert_allclose(run("multiply", {}, a, b, c), a * b * c)


@pytest.mark.parametrize("name", ["add", "multiply"])
def test_elementwise_shape_mismatch_names_both_shapes(name):
    with pytest.raises(OpError) as info:
        infer(name, {}, (3, 4), (3, 5))
    assert "[?, 3, 4]" in str(info.value) and "[?, 3, 5]" in str(info.value)
    assert info.value.field == "inputs"


def test_concat_defaults_to_the_channel_axis():
    a, b = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 5, 4, 4))
    np.testing.assert_array_equal(run("concat", {}, a, b), np.concatenate([a, b], axis=1))
    c = rng.normal(size=(2, 3, 4, 2))
    np.testing.assert_array_equal(run("concat", {"axis": -1}, a, c), np.concatenate([a, c], axis=3))
    assert infer("concat", {}, (3, 4, 4), (5, 4, 4))[0].shape == (None, 8, 4, 4)


def test_concat_errors():
    with pytest.raises(OpError) as info:
        infer("concat", {}, (3, 4, 4), (5, 4, 3))
    assert "[?, 3, 4, 4]" in str(info.value) and "[?, 5, 4, 3]" in str(info.value)
    with pytest.raises(OpError, match="batch axis") as info:
        infer("concat", {"axis": 0}, (3,), (3,))
    assert info.value.field == "axis"
    with pytest.raises(OpError, match="out of range"):
        infer("concat", {"axis": 4}, (3, 4, 4), (3, 4, 4))


def test_identity_returns_its_input():
    a = rng.normal(size=(2, 3))
    np.testing.assert_array_equal(run("identity", {}, a), a)


def test_reshape_keeps_the_batch_and_infers_one_axis():
    a = rng.normal(size=(2, 3, 4, 4))
    np.testing.assert_array_equal(run("reshape", {"shape": [4, -1]}, a), a.reshape(2, 4, 12))
    assert infer("reshape", {"shape": [-1]}, (3, 4, 4))[0].shape == (None, 48)


def test_reshape_errors():
    with pytest.raises(OpError, match="48 values per sample") as info:
        infer("reshape", {"shape": [5, -1]}, (3, 4, 4))
    assert info.value.field == "shape"
    with pytest.raises(OpError, match=r"\(50 values\)"):
        infer("reshape", {"shape": [5, 10]}, (3, 4, 4))
    with pytest.raises(ValidationError, match="only one entry may be -1"):
        layers.get("reshape").Params.model_validate({"shape": [-1, -1]})
    with pytest.raises(ValidationError, match="positive"):
        layers.get("reshape").Params.model_validate({"shape": [0, 4]})


def mirror_pad_reference(a, paddings, mode):
    """np.pad's reflect / symmetric are TF's REFLECT / SYMMETRIC."""
    return np.pad(a, paddings, mode={"REFLECT": "reflect", "SYMMETRIC": "symmetric"}[mode])


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
def test_pad_mirror_modes_match_numpy(mode):
    a = rng.normal(size=(2, 3, 4, 5))
    paddings = [[0, 0], [1, 2], [3, 0], [2, 4]]  # REFLECT's limit is size - 1: 2, 3, 4
    np.testing.assert_array_equal(run("pad", {"paddings": paddings, "mode": mode.lower()}, a), mirror_pad_reference(a, paddings, mode))


def test_pad_modes_by_hand():
    # tf.pad([[1, 2, 3]], [[0, 0], [2, 2]]) for each mode, from the TF docs
    a = np.array([[1.0, 2.0, 3.0]])
    assert run("pad", {"paddings": [[0, 0], [2, 2]], "mode": "REFLECT"}, a).tolist() == [[3, 2, 1, 2, 3, 2, 1]]
    assert run("pad", {"paddings": [[0, 0], [2, 2]], "mode": "SYMMETRIC"}, a).tolist() == [[2, 1, 1, 2, 3, 3, 2]]
    assert run("pad", {"paddings": [[0, 0], [2, 1]], "constant_values": 9.0}, a).tolist() == [[9, 9, 1, 2, 3, 9]]


def test_pad_errors():
    with pytest.raises(OpError, match="one \\[before, after\\] per axis") as info:
        infer("pad", {"paddings": [[1, 1], [1, 1]]}, (3, 4, 4))
    assert info.value.field == "paddings"
    with pytest.raises(OpError, match="batch axis cannot be padded"):
        infer("pad", {"paddings": [[1, 0], [1, 1]]}, (3,))
    with pytest.raises(OpError, match="at most 2"):  # REFLECT needs pad < size
        infer("pad", {"paddings": [[0, 0], [3, 0]], "mode": "REFLECT"}, (3,))
    assert infer("pad", {"paddings": [[0, 0], [3, 0]], "mode": "SYMMETRIC"}, (3,))[0].shape == (None, 6)
    with pytest.raises(ValidationError):
        layers.get("pad").Params.model_validate({"paddings": [[0, 0], [-1, 0]]})
    with pytest.raises(ValidationError):
        layers.get("pad").Params.model_validate({"paddings": [[0, 0]], "mode": "WRAP"})


def test_shape_mismatch_is_a_positioned_spec_error(write_spec, tfn_cli):
    spec = write_spec(
        """
        version: 1
        name: bad_add
        model:
          inputs:
            image: {shape: [1, 8, 8]}
          layers:
            - {name: a, op: conv2d, filters: 4, kernel_size: 3, padding: SAME}
            - {name: b, op: conv2d, filters: 4, kernel_size: 3, inputs: [image]}
            - {op: add, inputs: [a, b]}
            - {op: flatten}
            - {name: logits, op: dense, units: 10}
        loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
        data: {source: digits, batch_size: 8}
        train: {epochs: 1}
        """
    )
    code, out, err = tfn_cli("check", str(spec))
    assert code == 2
    assert f"{spec}:9:" in err
    assert "model.layers[2].inputs: needs inputs of one shape and dtype: input 0 is [?, 4, 8, 8], input 1 is [?, 4, 6, 6]" in err
