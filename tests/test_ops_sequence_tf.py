"""embedding, lstm and gru against TensorFlow (tests/tf_reference/make_sequence.py): outputs and gradients.

TF's layouts are converted here: sequences [N, T, F] -> tfn's [N, F, T], kernels [in, out] -> [out, in].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfn import layers
from tfn.layers import TensorType

# case -> (op, attributes, {tfn variable role: the reference's variable name})
KERAS = {"kernel": "kernel", "recurrent_kernel": "recurrent_kernel", "bias": "bias"}
BIDIRECTIONAL = {f"{d}/{role}": f"{d}/{role}" for d in ("forward", "backward") for role in KERAS}
SEQUENCES = {"return_sequences": True, "return_state": True}
CASES = {
    "keras_lstm": ("lstm", SEQUENCES, KERAS),
    "keras_lstm_backwards": ("lstm", {**SEQUENCES, "go_backwards": True}, KERAS),
    "keras_lstm_last": ("lstm", {}, KERAS),
    "keras_gru_reset_after": ("gru", SEQUENCES, KERAS),
    "keras_gru_reset_before": ("gru", {**SEQUENCES, "reset_after": False}, KERAS),
    "keras_gru_reset_before_backwards": ("gru", {**SEQUENCES, "reset_after": False, "go_backwards": True}, KERAS),
    "keras_bidirectional_lstm_concat": ("lstm", {"return_sequences": True, "bidirectional": "concat"}, BIDIRECTIONAL),
    "keras_bidirectional_lstm_sum": ("lstm", {"return_sequences": True, "bidirectional": "sum"}, BIDIRECTIONAL),
    "keras_bidirectional_gru_concat": ("gru", {"return_sequences": True, "bidirectional": "concat"}, BIDIRECTIONAL),
    "keras_bidirectional_gru_sum": ("gru", {"return_sequences": True, "bidirectional": "sum"}, BIDIRECTIONAL),
    "tf1_lstm": ("lstm", {**SEQUENCES, "convention": "tf1"}, {"kernel": "rnn/lstm_cell/kernel", "bias": "rnn/lstm_cell/bias"}),
    "tf1_lstm_forget_bias_0.5": (
        "lstm",
        {**SEQUENCES, "convention": "tf1", "forget_bias": 0.5},
        {"kernel": "rnn/lstm_cell/kernel", "bias": "rnn/lstm_cell/bias"},
    ),
    "tf1_gru": (
        "gru",
        {**SEQUENCES, "convention": "tf1"},
        {f"{part}/{kind}": f"rnn/gru_cell/{part}/{kind}" for part in ("gates", "candidate") for kind in ("kernel", "bias")},
    ),
    "tf1_bidirectional_lstm": (
        "lstm",
        {**SEQUENCES, "convention": "tf1", "bidirectional": "concat"},
        {f"{d}/{kind}": f"bidirectional_rnn/{d[0]}w/lstm_cell/{kind}" for d in ("forward", "backward") for kind in ("kernel", "bias")},
    ),
}


def to_tfn(a: np.ndarray) -> torch.Tensor:
    """A TF sequence [N, T, F] as tfn's [N, F, T]; anything else as it is."""
    t = torch.from_numpy(np.asarray(a, dtype=np.float64))
    return t.transpose(1, 2) if t.dim() == 3 else t


def variable_to_tfn(role: str, a: np.ndarray) -> torch.Tensor:
    """TF's kernels are [in, out], tfn's [out, in]; biases keep their layout (Keras's GRU bias [2, 3u] too)."""
    t = torch.from_numpy(np.asarray(a, dtype=np.float64))
    return t if role.endswith("bias") else t.T


def from_tfn(t: torch.Tensor) -> np.ndarray:
    out = t.detach().numpy()
    return out.swapaxes(1, 2) if out.ndim == 3 else out


def reference_outputs(ref, case):
    """(the reference's outputs, their gradient weights), merged as tfn gives them (bidirectional TF1: [fw | bw])."""
    count = len([k for k in ref if k.startswith(f"{case}/out")])
    outs = [ref[f"{case}/out{i}"] for i in range(count)]
    gs = [ref[f"{case}/g{i}"] for i in range(count)]
    if case == "tf1_bidirectional_lstm":  # fw seq, bw seq, fw h, fw c, bw h, bw c
        pick = [(0, 1), (2, 4), (3, 5)]
        outs = [np.concatenate([outs[a], outs[b]], -1) for a, b in pick]
        gs = [np.concatenate([gs[a], gs[b]], -1) for a, b in pick]
    return outs, gs


def run(name, attrs, ref, case, roles, lengths=None):
    op = layers.get(name)
    p = op.Params.model_validate({"units": 3, **attrs})
    x = to_tfn(ref[f"{case}/x"]).requires_grad_()
    xs = [x] + ([torch.as_tensor(lengths)] if lengths is not None else [])
    types = [TensorType((None, *t.shape[1:]), str(t.dtype).removeprefix("torch.")) for t in xs]
    variables = {role: variable_to_tfn(role, ref[f"{case}/var/{source}"]).requires_grad_() for role, source in roles.items()}
    assert {d.role: d.shape for d in op.variables(p, types)} == {r: tuple(v.shape) for r, v in variables.items()}
    out = op.build(p, types)(xs, variables, True)
    out = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape[1:]) for o in out] == [t.shape[1:] for t in op.infer(p, types)]
    return x, variables, out


@pytest.mark.parametrize("case", list(CASES))
def test_recurrent_outputs_and_gradients_match_tensorflow(tf_reference, case):
    ref = tf_reference("sequence")
    name, attrs, roles = CASES[case]
    x, variables, out = run(name, attrs, ref, case, roles, ref.get(f"{case}/lengths"))
    want, gs = reference_outputs(ref, case)
    assert len(out) == len(want)
    for got, expected in zip(out, want):
        np.testing.assert_allclose(from_tfn(got), expected, rtol=1e-5, atol=2e-6, err_msg=case)
    total = sum((o * to_tfn(g)).sum() for o, g in zip(out, gs))
    grads = torch.autograd.grad(total, [x, *variables.values()])
    np.testing.assert_allclose(grads[0].numpy().swapaxes(1, 2), ref[f"{case}/grad_x"], rtol=1e-4, atol=2e-6, err_msg=case)
    for (role, source), grad in zip(roles.items(), grads[1:]):
        expected = ref[f"{case}/grad/{source}"]
        got = grad.numpy() if role.endswith("bias") else grad.numpy().T
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-6, err_msg=f"{case}: {role}")


@pytest.mark.parametrize("case", ["tf1_lstm", "tf1_bidirectional_lstm", "keras_lstm_backwards"])
def test_the_step_loop_that_export_uses_matches_tensorflow_too(tf_reference, monkeypatch, case):
    """Under ONNX export, sequences with lengths take a step loop instead of packing: same numbers."""
    from tfn.layers import sequence

    monkeypatch.setattr(sequence, "_exporting", lambda: True)
    ref = tf_reference("sequence")
    name, attrs, roles = CASES[case]
    lengths = ref.get(f"{case}/lengths", np.full(3, 5, dtype=np.int32))  # full lengths: Keras's unpadded case
    x, variables, out = run(name, attrs, ref, case, roles, lengths)
    want, gs = reference_outputs(ref, case)
    for got, expected in zip(out, want):
        np.testing.assert_allclose(from_tfn(got), expected, rtol=1e-5, atol=2e-6, err_msg=case)
    total = sum((o * to_tfn(g)).sum() for o, g in zip(out, gs))
    (grad,) = torch.autograd.grad(total, [x])
    np.testing.assert_allclose(grad.numpy().swapaxes(1, 2), ref[f"{case}/grad_x"], rtol=1e-4, atol=2e-6)


def test_keras_masking_and_tfn_lengths_agree_on_states_and_valid_steps(tf_reference):
    """An embedding's mask_zero feeding Keras's LSTM vs tfn's lengths: the final states and every step within a
    sequence's length agree; past it Keras repeats the last output, tfn (dynamic_rnn) gives zeros."""
    ref = tf_reference("sequence")
    lengths = ref["embedding/mask"].sum(1)
    _, _, (seq, h, c) = run("lstm", SEQUENCES, ref, "keras_lstm_masked", KERAS, lengths)
    want = ref["keras_lstm_masked/out0"]
    np.testing.assert_allclose(from_tfn(h), ref["keras_lstm_masked/out1"], rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(from_tfn(c), ref["keras_lstm_masked/out2"], rtol=1e-5, atol=2e-6)
    got = seq.detach().numpy().swapaxes(1, 2)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=1e-5, atol=2e-6)
        assert np.all(got[i, n:] == 0) and np.allclose(want[i, n:], want[i, n - 1])


def test_embedding_matches_keras(tf_reference):
    ref = tf_reference("sequence")
    op = layers.get("embedding")
    p = op.Params(input_dim=7, output_dim=4, mask_zero=True)
    ids = torch.from_numpy(ref["embedding/ids"])
    table = torch.from_numpy(ref["embedding/embeddings"]).double().requires_grad_()
    out, lengths = op.build(p, [TensorType((None, 5), "int32")])([ids], {"embeddings": table}, True)
    np.testing.assert_allclose(out.detach().numpy().swapaxes(1, 2), ref["embedding/out"], rtol=1e-7)
    assert lengths.dtype == torch.int64 and lengths.tolist() == ref["embedding/mask"].sum(1).tolist()
    (out * torch.from_numpy(ref["embedding/g"]).double().transpose(1, 2)).sum().backward()
    np.testing.assert_allclose(table.grad.numpy(), ref["embedding/grad_embeddings"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", ["tf1_lstm", "tf1_bidirectional_lstm"])
def test_lengths_without_the_cell_state_mask_a_padded_run_and_match_tensorflow(tf_reference, case):
    """Without return_state an LSTM with lengths runs over the padded batch and masks it (no packing):
    TF's outputs and final h; its gradients equal those of the packed run (which the test above checks)."""
    ref = tf_reference("sequence")
    name, attrs, roles = CASES[case]
    lengths = ref[f"{case}/lengths"]
    seq_attrs = {k: v for k, v in attrs.items() if k != "return_state"}
    x, variables, (seq,) = run(name, seq_attrs, ref, case, roles, lengths)
    want, _ = reference_outputs(ref, case)
    np.testing.assert_allclose(from_tfn(seq), want[0], rtol=1e-5, atol=2e-6)
    _, _, (last,) = run(name, {**seq_attrs, "return_sequences": False}, ref, case, roles, lengths)
    if "bidirectional" not in case:
        np.testing.assert_allclose(from_tfn(last), want[1], rtol=1e-5, atol=2e-6)  # the final h
    g = torch.from_numpy(np.random.default_rng(0).normal(size=tuple(seq.shape)))
    masked = torch.autograd.grad((seq * g).sum(), [x, *variables.values()])
    x2, variables2, (packed_seq, _, _) = run(name, attrs, ref, case, roles, lengths)
    packed = torch.autograd.grad((packed_seq * g).sum(), [x2, *variables2.values()])
    for a, b in zip(masked, packed):
        torch.testing.assert_close(a, b)
