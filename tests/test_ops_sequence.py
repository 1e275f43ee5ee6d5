"""embedding, lstm, gru: attribute rules, variables as stored, initializers, and the errors for bad ids and lengths.
(Values against TensorFlow: tests/test_ops_sequence_tf.py.)"""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from tfn import layers
from tfn.layers import IndexRangeError, OpError, TensorType, UserError
from tfn.layers.initializers import initialize

IDS = TensorType((None, 5), "int64")
SEQUENCE = TensorType((None, 4, 5))


def embed(ids, **attrs):
    op = layers.get("embedding")
    p = op.Params(input_dim=6, output_dim=3, **attrs)
    table = torch.arange(18, dtype=torch.float64).reshape(6, 3)
    return op.build(p, [TensorType((None, *ids.shape[1:]), str(ids.dtype).removeprefix("torch."))])([ids], {"embeddings": table}, False)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8])
def test_embedding_takes_every_integer_dtype_and_puts_features_on_axis_1(dtype):
    ids = torch.tensor([[1, 5, 0], [2, 2, 3]], dtype=dtype)
    out = embed(ids)
    assert out.shape == (2, 3, 3)
    assert out[0, :, 1].tolist() == [15.0, 16.0, 17.0]  # id 5 -> row 5, along axis 1


@pytest.mark.parametrize("bad", [6, -1])
def test_an_id_outside_the_vocabulary_is_an_error_naming_it(bad):
    ids = torch.tensor([[1, 2, 3], [4, bad, 0]])
    with pytest.raises(IndexRangeError, match=rf"embedding: id {bad} is outside \[0, 6\) \(input_dim, the vocabulary size\)"):
        embed(ids)


def test_mask_zero_gives_lengths_and_refuses_gaps():
    out, lengths = embed(torch.tensor([[1, 2, 0, 0], [3, 3, 3, 3], [0, 0, 0, 0]]), mask_zero=True)
    assert lengths.tolist() == [2, 4, 0] and lengths.dtype == torch.int64
    with pytest.raises(UserError, match="sample 1 has an id after a 0.*right-padded"):
        embed(torch.tensor([[1, 0, 0], [2, 0, 4]]), mask_zero=True)


def test_embedding_shape_rules():
    op = layers.get("embedding")
    p = op.Params(input_dim=6, output_dim=3, mask_zero=True)
    assert op.infer(p, [IDS]) == [TensorType((None, 3, 5)), TensorType((None,), "int64")]
    with pytest.raises(OpError, match="expects integer ids"):
        op.infer(p, [TensorType((None, 5))])
    with pytest.raises(OpError, match=r"mask_zero gives sequence lengths, so it expects ids \[N, T\]") as e:
        op.infer(p, [TensorType((None, 5, 2), "int64")])
    assert e.value.field == "mask_zero"
    assert op.infer(op.Params(input_dim=6, output_dim=3), [TensorType((None, 5, 2), "int32")]) == [TensorType((None, 3, 5, 2))]
    assert op.integer_input_range(p, [IDS], 0) == (0, 6)


def variables(name, **attrs):
    op = layers.get(name)
    p = op.Params.model_validate({"units": 3, **attrs})
    return {d.role: (d.shape, d.initializer) for d in op.variables(p, [SEQUENCE])}


def test_variables_as_stored_for_each_convention():
    assert variables("lstm") == {
        "kernel": ((12, 4), "glorot_uniform"),
        "recurrent_kernel": ((12, 3), "orthogonal"),
        "bias": ((12,), {"unit_forget_bias": "zeros"}),
    }
    assert variables("lstm", unit_forget_bias=False)["bias"] == ((12,), "zeros")
    assert variables("lstm", convention="tf1") == {"kernel": ((12, 7), "glorot_uniform"), "bias": ((12,), "zeros")}
    assert variables("gru")["bias"] == ((2, 9), "zeros")
    assert variables("gru", reset_after=False)["bias"] == ((9,), "zeros")
    assert variables("gru", convention="tf1") == {
        "gates/kernel": ((6, 7), "glorot_uniform"),
        "gates/bias": ((6,), {"constant": 1.0}),
        "candidate/kernel": ((3, 7), "glorot_uniform"),
        "candidate/bias": ((3,), "zeros"),
    }
    both = variables("lstm", bidirectional="sum")
    assert sorted(both) == sorted(f"{d}/{r}" for d in ("forward", "backward") for r in ("kernel", "recurrent_kernel", "bias"))


def test_keras_initializers_of_the_recurrent_variables():
    bias = torch.empty(12)
    initialize(bias, {"unit_forget_bias": "zeros"}, None, torch.Generator().manual_seed(0))
    assert bias.tolist() == [0.0] * 3 + [1.0] * 3 + [0.0] * 6  # blocks i, f, c, o: the forget block starts at 1
    recurrent = torch.empty(12, 3, dtype=torch.float64)
    initialize(recurrent, "orthogonal", None, torch.Generator().manual_seed(0))
    torch.testing.assert_close(recurrent.T @ recurrent, torch.eye(3, dtype=torch.float64))
    table = torch.empty(50, 4)
    initialize(table, "uniform", None, torch.Generator().manual_seed(0))
    assert table.abs().max() <= 0.05 and table.std() > 0.02


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"forget_bias": 1.0}, "forget_bias is TF 1.x LSTMCell's"),
        ({"convention": "tf1", "unit_forget_bias": True}, "unit_forget_bias is Keras's"),
        ({"convention": "tf1", "recurrent_initializer": "orthogonal"}, "recurrent_initializer is Keras's"),
        ({"go_backwards": True, "bidirectional": "concat"}, "a bidirectional layer already runs both directions"),
        ({"convention": "tf2"}, "keras"),
    ],
)
def test_lstm_attributes_that_do_not_fit_the_convention(attrs, message):
    with pytest.raises(ValidationError, match=message):
        layers.get("lstm").Params.model_validate({"units": 3, **attrs})


def test_gru_reset_after_is_keras_only():
    with pytest.raises(ValidationError, match="TF 1.x GRUCell resets before the recurrent matmul"):
        layers.get("gru").Params.model_validate({"units": 3, "convention": "tf1", "reset_after": True})


def test_recurrent_shape_rules():
    op = layers.get("lstm")
    p = op.Params(units=3, return_state=True, bidirectional="concat")
    lengths = TensorType((None,), "int32")
    assert op.infer(p, [SEQUENCE, lengths]) == [TensorType((None, 6)), TensorType((None, 6)), TensorType((None, 6))]
    assert op.infer(op.Params(units=3, return_sequences=True, bidirectional="sum"), [SEQUENCE]) == [TensorType((None, 3, 5))]
    assert layers.get("gru").infer(layers.get("gru").Params(units=2, return_state=True), [SEQUENCE]) == [TensorType((None, 2))] * 2
    assert op.integer_input_range(p, [SEQUENCE, lengths], 1) == (0, 6)  # a length may be 0 .. T
    with pytest.raises(OpError, match=r"expects a float sequence \[N, features, steps\]"):
        op.infer(p, [TensorType((None, 4))])
    with pytest.raises(OpError, match=r"the second input is the sequence lengths \[N\]"):
        op.infer(p, [SEQUENCE, TensorType((None, 5))])


def test_a_length_beyond_the_steps_is_an_error():
    op = layers.get("gru")
    p = op.Params(units=2)
    types = [SEQUENCE, TensorType((None,), "int64")]
    v = {d.role: torch.zeros(d.shape) for d in op.variables(p, types)}
    with pytest.raises(IndexRangeError, match=r"gru: sequence length 6 is outside \[0, 6\) \(a length runs from 0 to the 5 steps\)"):
        op.build(p, types)([torch.zeros(2, 4, 5), torch.tensor([5, 6])], v, False)


def test_lengths_equal_to_the_steps_change_nothing_and_shorter_ones_freeze_the_state():
    op = layers.get("lstm")
    p = op.Params(units=3, return_sequences=True, return_state=True)
    types = [SEQUENCE, TensorType((None,), "int64")]
    gen = torch.Generator().manual_seed(0)
    v = {d.role: torch.randn(d.shape, generator=gen, dtype=torch.float64) for d in op.variables(p, types)}
    x = torch.randn(2, 4, 5, generator=gen, dtype=torch.float64)
    kernel = op.build(p, types)
    full = kernel([x], v, False)
    same = kernel([x, torch.tensor([5, 5])], v, False)
    for a, b in zip(full, same):
        torch.testing.assert_close(a, b)
    seq, h, c = kernel([x, torch.tensor([5, 2])], v, False)
    cut = kernel([x[1:, :, :2]], v, False)  # the second sequence alone, cut to its length
    torch.testing.assert_close(h[1:], cut[1])
    torch.testing.assert_close(c[1:], cut[2])
    torch.testing.assert_close(seq[1:, :, :2], cut[0])
    assert torch.all(seq[1, :, 2:] == 0)
