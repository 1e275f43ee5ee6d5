"""Sequence ops: embedding, lstm, gru (tf_semantics.md §10).

Layout (DESIGN.md): token ids are [N, T]; sequences are [N, F, T], the layout
of conv1d, so embedding -> conv1d -> lstm chains need no transposes; the
recurrent ops transpose internally for their kernels.

The recurrent ops run on torch's fused LSTM/GRU kernels where the semantics
match (every LSTM, GRU with reset_after) by mapping the stored variables to
torch's gate order, and through a step loop where they do not (GRU that
resets before the recurrent matmul: Keras reset_after=False, TF 1.x GRUCell).
`sequence_length` (dynamic_rnn's meaning) masks the outputs of a run over the
padded batch; only an LSTM's final c needs the batch packed, and under ONNX
export (packing is not exportable) a step loop gives it. A forward LSTM over
lengths exports as one ONNX LSTM with sequence_lens (LSTM.build_onnx).
"""

from __future__ import annotations

import abc
from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from tfn.layers import imports as im
from tfn.layers.attrs import Initializer
from tfn.layers.base import Op, OpError, Params, TensorType, UserError, VariableDef, register
from tfn.layers.indexing import check_indices


def _exporting() -> bool:
    import torch

    return torch.compiler.is_exporting()


# --- embedding ----------------------------------------------------------------------


@register
class Embedding(Op):
    """Looks up a trainable vector for each integer id, as Keras's Embedding
    (tf.nn.embedding_lookup on a variable `NAME/embeddings` [input_dim, output_dim]).

    The vectors go on axis 1, the feature axis: ids [N, T] give a sequence
    [N, output_dim, T] that conv1d, lstm and gru read directly. Ids may have
    any integer dtype; an id outside [0, input_dim) is an error naming it
    (TF's CPU kernel raises too), never a gather from other memory.

    `mask_zero: true` makes 0 the padding id, as Keras: node:1 then gives each
    sequence's length [N] int64, the number of ids before the first 0, to feed
    an lstm's or gru's `sequence_length` (inputs: [embedding, embedding:1]).
    Sequences must be right-padded (Keras's pad_sequences(padding="post")); an
    id after a 0 is an error. Row 0 of the table is still a trainable vector,
    as in Keras; input_dim counts the padding id.

    Example:
        {op: embedding, input_dim: 50, output_dim: 8}

    Input ids [N, d1, ...] integer; output [N, output_dim, d1, ...] ([N, T] ->
    [N, output_dim, T]); with mask_zero (ids [N, T]), lengths [N] int64 at node:1.
    """

    name = "embedding"
    family = "sequence"
    imports = (im.keras("Embedding", im.keras_embedding),)
    pure_data_movement = True
    example_inputs = ((3, 6),)
    example_dtypes = ("int64",)
    tf_notes = (
        "Keras's output [N, T, output_dim] is tfn's [N, output_dim, T] (axis 1 is the feature axis); "
        "the default initializer is Keras's uniform(-0.05, 0.05)."
    )

    class Params(Params):
        input_dim: PositiveInt = Field(description="the vocabulary size: ids lie in [0, input_dim)")
        output_dim: PositiveInt = Field(description="the length of each vector")
        mask_zero: bool = Field(False, description="0 is padding: node:1 gives the sequence lengths")
        embeddings_initializer: Initializer = "uniform"

    def infer(self, p, inputs):
        (ids,) = inputs
        if not ids.dtype.startswith(("int", "uint")):
            raise OpError(f"expects integer ids, got {ids}; declare the input with dtype: int64 (or int32)")
        out = TensorType((ids.shape[0], p.output_dim, *ids.shape[1:]), "float32")
        if not p.mask_zero:
            return [out]
        if ids.rank != 2:
            raise OpError(f"mask_zero gives sequence lengths, so it expects ids [N, T], got {ids}", "mask_zero")
        return [out, TensorType((ids.shape[0],), "int64")]

    def integer_input_range(self, p, inputs, index):
        return (0, p.input_dim)

    def variables(self, p, inputs):
        return [VariableDef("embeddings", (p.input_dim, p.output_dim), p.embeddings_initializer)]

    def build(self, p, inputs):
        import torch
        import torch.nn.functional as F

        def embedding(xs, v, training):
            ids = xs[0]
            check_indices(ids, p.input_dim, "embedding", "id", "input_dim, the vocabulary size")
            table = v["embeddings"]
            out = F.embedding(ids if ids.dtype in (torch.int32, torch.int64) else ids.long(), table).movedim(-1, 1)
            if not p.mask_zero:
                return out
            present = ids != 0
            lengths = present.sum(1)
            if ids.device.type == "cpu" and not torch.compiler.is_compiling():
                steps = torch.arange(ids.shape[1], device=ids.device)
                gaps = (present != (steps < lengths[:, None])).any(1)
                if gaps.any():
                    sample = int(gaps.nonzero()[0, 0])
                    raise UserError(
                        f"mask_zero: sample {sample} has an id after a 0; the lengths need right-padded sequences "
                        "(padding at the end, as pad_sequences(padding='post'))"
                    )
            return out, lengths

        return embedding


# --- recurrent ----------------------------------------------------------------------

CONVENTION_DOC = (
    "keras: tf.keras's LSTM/GRU (separate kernel and recurrent_kernel); "
    "tf1: TF 1.x LSTMCell/GRUCell under dynamic_rnn (one fused kernel over [input, state])"
)


class RecurrentParams(Params):
    units: PositiveInt = Field(description="the size of the state and of each output")
    convention: Literal["keras", "tf1"] = Field("keras", description=CONVENTION_DOC)
    return_sequences: bool = Field(False, description="output every step [N, units, T]; false: the last output [N, units]")
    return_state: bool = Field(False, description="also output the final state(s) at node:1 (h) and, for lstm, node:2 (c)")
    go_backwards: bool = Field(False, description="run from the last step (of each sequence's length) to the first; outputs in that order")
    bidirectional: Literal["concat", "sum"] | None = Field(
        None, description="run both directions and merge their outputs (Keras's Bidirectional merge_mode)"
    )
    kernel_initializer: Initializer = "glorot_uniform"
    recurrent_initializer: Initializer | None = Field(None, description="keras only; default orthogonal")
    bias_initializer: Initializer | None = Field(None, description="default zeros (tf1 GRU gates: constant 1.0)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.convention == "tf1" and self.recurrent_initializer is not None:
            raise ValueError("recurrent_initializer is Keras's: the tf1 convention has one fused kernel (kernel_initializer)")
        if self.go_backwards and self.bidirectional is not None:
            raise ValueError("go_backwards and bidirectional: a bidirectional layer already runs both directions")
        return self


class Recurrent(Op, abc.ABC):
    """Shared rules of lstm and gru: shapes, sequence lengths, directions, the kernels."""

    family = "sequence"
    arity = (1, 2)
    example_inputs = ((3, 4, 5), (3,))
    example_dtypes = ("float32", "int64")
    #: gate blocks per step: 4 (LSTM), 3 (GRU)
    gates: int
    #: states: (h, c) for LSTM, (h,) for GRU
    states: int

    def directions(self, p) -> list[str]:
        """The variable prefix of each direction."""
        return ["forward/", "backward/"] if p.bidirectional else [""]

    def infer(self, p, inputs):
        x = inputs[0]
        if x.rank != 3 or x.shape[1] is None or x.shape[2] is None or not x.dtype.startswith("float"):
            raise OpError(f"expects a float sequence [N, features, steps] (conv1d's layout), got {x}")
        if len(inputs) == 2:
            lengths = inputs[1]
            if lengths.rank != 1 or not lengths.dtype.startswith(("int", "uint")):
                raise OpError(
                    f"the second input is the sequence lengths [N], an integer per sample (dynamic_rnn's sequence_length), got {lengths}",
                    "inputs",
                )
        width = p.units * (2 if p.bidirectional == "concat" else 1)
        out = TensorType((x.shape[0], width, x.shape[2]) if p.return_sequences else (x.shape[0], width), x.dtype)
        state = TensorType((x.shape[0], p.units * len(self.directions(p))), x.dtype)
        return [out] + ([state] * self.states if p.return_state else [])

    def integer_input_range(self, p, inputs, index):
        return (0, inputs[0].shape[2] + 1) if index == 1 else None

    def flops(self, p, inputs, outputs):
        features, steps = inputs[0].shape[1], inputs[0].shape[2]
        per_step = 2 * self.gates * p.units * (features + p.units) + 6 * self.gates * p.units
        return per_step * steps * len(self.directions(p))

    @abc.abstractmethod
    def kind(self, p) -> str:
        """'lstm' or 'gru' (torch's fused cells, torch's gate order) or 'gru_reset_before' (a step loop)."""

    @abc.abstractmethod
    def canonical(self, p, v: dict, prefix: str, features: int) -> tuple:
        """This direction's weights in the form its kernel takes (torch's gate order for the fused cells)."""

    def build(self, p, inputs):
        import torch

        kind, units = self.kind(p), p.units
        features, steps = inputs[0].shape[1], inputs[0].shape[2]
        prefixes = self.directions(p)
        name = self.name

        def recurrent(xs, v, training):
            x = xs[0].transpose(1, 2)  # [N, T, F]
            lengths = xs[1] if len(xs) == 2 else None
            if lengths is not None:
                check_indices(lengths, steps + 1, name, "sequence length", f"a length runs from 0 to the {steps} steps")
                lengths = lengths.to(device=x.device, dtype=torch.int64)
            weights = [tuple(w.to(x.dtype) for w in self.canonical(p, v, prefix, features)) for prefix in prefixes]
            cell_state = kind == "lstm" and p.return_state
            if kind == "gru_reset_before" or (lengths is not None and cell_state and _exporting()):
                seq, h, c = _looped(kind, x, weights, lengths, p.go_backwards, p.bidirectional is not None, units)
            else:
                seq, h, c = _fused(kind, x, weights, lengths, p.go_backwards, p.bidirectional is not None, units, cell_state)
            if p.bidirectional == "sum":
                seq, last = seq[..., :units] + seq[..., units:], h[0] + h[1]
            else:
                last = h.transpose(0, 1).reshape(x.shape[0], len(prefixes) * units)  # [N, directions * units], forward first
            out = seq.transpose(1, 2) if p.return_sequences else last
            if not p.return_state:
                return out
            states = [h] + ([c] if c is not None else [])
            return (out, *(s.transpose(0, 1).reshape(x.shape[0], len(prefixes) * units) for s in states))

        recurrent.__name__ = name
        return recurrent


def _reverse_within(x, lengths):
    """Each sequence reversed within its length (TF's reverse_sequence); steps past it stay in place."""
    import torch

    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.shape[1], device=x.device)
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def _fused(kind, x, weights, lengths, backwards, bidirectional, units, cell_state):
    """torch's LSTM/GRU kernel: (outputs [N, T, directions*units], h [directions, N, units], c or None).

    With lengths, each direction runs over the whole right-padded batch (a
    step's output depends only on the steps before it), its outputs past a
    sequence's length are zeroed and h is its output at the length; only an
    LSTM's final c needs the batch packed, which torch runs slower on CPU.
    """
    import torch

    if lengths is not None and cell_state and x.shape[0] > 0:  # torch cannot pack an empty batch
        return _packed(kind, x, weights, lengths, backwards, bidirectional, units)
    if lengths is None:
        seq, h, c = _cell(kind, x.flip(1) if backwards else x, [w for d in weights for w in d], units, bidirectional)
        return seq, h, c
    steps = torch.arange(x.shape[1], device=x.device)
    live = (steps < lengths[:, None]).to(x.dtype)[:, :, None]
    last = (lengths - 1).clamp(min=0)
    rows = torch.arange(x.shape[0], device=x.device)
    seqs, hs = [], []
    for w, reverse in zip(weights, [False, True] if bidirectional else [backwards]):
        seq, _, _ = _cell(kind, _reverse_within(x, lengths) if reverse else x, list(w), units, False)
        seq = seq * live
        hs.append(seq[rows, last])  # an empty sequence's output row is zero: so is its state
        seqs.append(_reverse_within(seq, lengths) if reverse and bidirectional else seq)
    return torch.cat(seqs, 2), torch.stack(hs), None


def _cell(kind, x, params, units, bidirectional):
    """One call of torch's fused kernel from zero states."""
    import warnings

    import torch

    h0 = x.new_zeros(2 if bidirectional else 1, x.shape[0], units)
    with warnings.catch_warnings():
        # cuDNN wants one contiguous weight buffer; tfn's variables are separate, by name
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")
        if kind == "lstm":
            return torch.lstm(x, (h0, h0), params, True, 1, 0.0, torch.is_grad_enabled(), bidirectional, True)
        seq, h = torch.gru(x, h0, params, True, 1, 0.0, torch.is_grad_enabled(), bidirectional, True)
        return seq, h, None


def _packed(kind, x, weights, lengths, backwards, bidirectional, units):
    """The batch packed by length (torch's PackedSequence), for an LSTM whose final c is asked for."""
    import warnings

    import torch
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

    if backwards:
        x = _reverse_within(x, lengths)
    params = [w for direction in weights for w in direction]
    h0 = x.new_zeros(len(weights), x.shape[0], units)
    cell = torch.lstm if kind == "lstm" else torch.gru
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        hx = (h0, h0) if kind == "lstm" else h0
        data, *states = cell(packed.data, packed.batch_sizes, hx, params, True, 1, 0.0, torch.is_grad_enabled(), bidirectional)
    again = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    seq, _ = pad_packed_sequence(again, batch_first=True, total_length=x.shape[1])
    # packing sorted the batch; an empty sequence ran one step, which dynamic_rnn does not
    present = (lengths > 0).to(x.dtype)
    seq = seq * present[:, None, None]
    states = [s.index_select(1, packed.unsorted_indices) * present[None, :, None] for s in states]
    return seq, states[0], states[1] if kind == "lstm" else None


def _looped(kind, x, weights, lengths, backwards, bidirectional, units):
    """The same contract as _fused, one step at a time (GRU resetting before the matmul; export with lengths)."""
    import torch

    seqs, hs, cs = [], [], []
    for w, reverse in zip(weights, [False, True] if bidirectional else [backwards]):
        xd = _reverse_within(x, lengths) if reverse else x
        seq, h, c = _one_direction(kind, xd, w, lengths, units)
        if reverse and bidirectional:  # back in input order, as Keras's Bidirectional and TF's bidirectional_dynamic_rnn
            seq = _reverse_within(seq, lengths)
        seqs.append(seq)
        hs.append(h)
        cs.append(c)
    return torch.cat(seqs, 2), torch.stack(hs), torch.stack(cs) if kind == "lstm" else None


def _one_direction(kind, x, w, lengths, units):
    import torch

    n, steps = x.shape[0], x.shape[1]
    h = c = x.new_zeros(n, units)
    if kind == "gru_reset_before":  # gate order z, r, h (Keras's)
        wx, wh, b = w
        projected = x @ wx.T + b
    else:  # torch's gate order: i, f, g, o (lstm) or r, z, n (gru)
        w_ih, w_hh, b_ih, b_hh = w
        projected = x @ w_ih.T + b_ih + (b_hh if kind == "lstm" else 0)
    outputs = []
    for t in range(steps):
        step = projected[:, t]
        if kind == "lstm":
            i, f, g, o = (step + h @ w_hh.T).chunk(4, 1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
        elif kind == "gru":
            x_r, x_z, x_n = step.chunk(3, 1)
            h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, 1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            h_new = (1 - z) * torch.tanh(x_n + r * h_n) + z * h
        else:
            x_z, x_r, x_h = step.chunk(3, 1)
            h_z, h_r = (h @ wh[: 2 * units].T).chunk(2, 1)
            z, r = torch.sigmoid(x_z + h_z), torch.sigmoid(x_r + h_r)
            h_new = z * h + (1 - z) * torch.tanh(x_h + (r * h) @ wh[2 * units :].T)
        if lengths is None:
            h, out = h_new, h_new
            c = c_new if kind == "lstm" else c
        else:  # dynamic_rnn: past its length a sequence keeps its state and outputs zeros
            live = (t < lengths)[:, None]
            h, out = torch.where(live, h_new, h), torch.where(live, h_new, torch.zeros_like(h_new))
            c = torch.where(live, c_new, c) if kind == "lstm" else c
        outputs.append(out)
    return torch.stack(outputs, 1), h, c


def _blocks(tensor, order: list[int], gates: int):
    """`tensor`'s gate blocks (along axis 0) in the given order."""
    import torch

    chunks = tensor.chunk(gates, 0)
    return torch.cat([chunks[k] for k in order], 0)


@register
class LSTM(Recurrent):
    """Long short-term memory over a sequence [N, F, T], with the variables of
    tf.keras's LSTM (convention: keras) or of TF 1.x's LSTMCell under
    dynamic_rnn (convention: tf1).

    Variables, as stored (PyTorch's [out, in] layout: TF's kernels transposed):
    - keras: `kernel` [4u, F], `recurrent_kernel` [4u, u], `bias` [4u]; gate
      blocks i, f, c, o (Keras's order, also PyTorch's). `unit_forget_bias`
      (default true) starts the f block of the bias at 1; nothing is added at run time.
    - tf1: `kernel` [4u, F + u] (the columns are [input, h]), `bias` [4u]; gate
      blocks i, j, f, o (j is the candidate); `forget_bias` (default 1.0) is
      added to the f block at run time, not stored.
    With `bidirectional`, each name gets `forward/` or `backward/` before it.

    A second input, integer lengths [N] (a data field, or an embedding's
    node:1), has dynamic_rnn's sequence_length meaning: outputs past a
    sequence's length are 0 and its final state is the state at its length.
    `go_backwards` reverses each sequence within its length and gives the
    outputs in that reversed order (Keras's go_backwards). `bidirectional`
    runs a second LSTM backwards and merges the two outputs, aligned in time
    (Keras's Bidirectional, TF's bidirectional_dynamic_rnn).

    Example:
        {op: lstm, units: 16, return_sequences: true, return_state: true, inputs: [embedded, length]}

    Inputs [N, F, T] float and, optionally, lengths [N] integer; output [N, u, T]
    (return_sequences) or [N, u] (the last output: the final h), 2u with
    bidirectional concat; with return_state, h [N, u] at node:1 and c [N, u] at
    node:2 (bidirectional: [N, 2u], forward then backward).
    """

    name = "lstm"
    gates, states = 4, 2
    imports = (
        im.keras("LSTM", im.keras_recurrent),
        im.keras("Bidirectional", im.keras_bidirectional, "of an LSTM or GRU"),
        im.onnx("LSTM", im.onnx_lstm, "forward, X [T, N, F] transposed from [N, F, T]; sequence_lens: lengths"),
    )
    tf_notes = (
        "Keras's [N, T, F] is tfn's [N, F, T]. Keras's masking (mask_zero) carries the last output across masked "
        "steps; tfn's lengths give zeros there, as dynamic_rnn; the final states agree. tf1's state tuple (c, h) "
        "is node:2, node:1 here. No peepholes, cell_clip or num_proj."
    )

    class Params(RecurrentParams):
        unit_forget_bias: bool | None = Field(None, description="keras only (default true): the forget gate's bias starts at 1")
        forget_bias: float | None = Field(None, description="tf1 only (default 1.0): added to the forget gate at run time")

        @model_validator(mode="after")
        def _forget(self):
            if self.convention == "keras" and self.forget_bias is not None:
                raise ValueError("forget_bias is TF 1.x LSTMCell's (convention: tf1); Keras's LSTM has unit_forget_bias")
            if self.convention == "tf1" and self.unit_forget_bias is not None:
                raise ValueError("unit_forget_bias is Keras's (convention: keras); TF 1.x LSTMCell adds forget_bias at run time")
            return self

    def variables(self, p, inputs):
        features, u = inputs[0].shape[1], p.units
        bias = p.bias_initializer or "zeros"
        found = []
        for prefix in self.directions(p):
            if p.convention == "tf1":
                found += [VariableDef(f"{prefix}kernel", (4 * u, features + u), p.kernel_initializer), VariableDef(f"{prefix}bias", (4 * u,), bias)]
                continue
            recurrent = p.recurrent_initializer or "orthogonal"
            found += [
                VariableDef(f"{prefix}kernel", (4 * u, features), p.kernel_initializer),
                VariableDef(f"{prefix}recurrent_kernel", (4 * u, u), recurrent),
                VariableDef(f"{prefix}bias", (4 * u,), {"unit_forget_bias": bias} if p.unit_forget_bias is not False else bias),
            ]
        return found

    def kind(self, p):
        return "lstm"

    def build_onnx(self, p, inputs):
        """One ONNX LSTM with sequence_lens, for a forward run over lengths (ONNX's gate order i, o, f, c; tf1's
        forget_bias folded into the bias); other runs export as build's kernel."""
        if len(inputs) != 2 or p.bidirectional or p.go_backwards or not inputs[0].dtype.startswith("float"):
            return None
        import torch

        from tfn.layers import onnx_nodes

        u, features, steps = p.units, inputs[0].shape[1], inputs[0].shape[2]

        def blocks(tensor, order):
            # slices, not chunk: the importer folds them back into the constants they come from
            return torch.cat([tensor[k * u : (k + 1) * u] for k in order])

        def lstm(xs, v, training):
            x, lengths = xs
            check_indices(lengths, steps + 1, self.name, "sequence length", f"a length runs from 0 to the {steps} steps")
            if p.convention == "keras":  # i, f, c, o
                order, kernel, recurrent, bias = [0, 3, 1, 2], v["kernel"], v["recurrent_kernel"], v["bias"]
            else:  # i, j, f, o over [input, h] columns; forget_bias added to f at run time
                order, kernel, bias = [0, 3, 2, 1], v["kernel"][:, :features], v["bias"]
                recurrent = v["kernel"][:, features:]
            w, r, b = (blocks(t.to(x.dtype), order) for t in (kernel, recurrent, bias))
            if p.convention == "tf1":
                b = torch.cat([b[: 2 * u], b[2 * u : 3 * u] + (1.0 if p.forget_bias is None else p.forget_bias), b[3 * u :]])
            b = torch.cat([b, torch.zeros_like(b)])
            y, h, c = onnx_nodes.lstm(x.permute(2, 0, 1), w[None], r[None], b[None], lengths.to(torch.int32), u)
            out = y.squeeze(1).permute(1, 2, 0) if p.return_sequences else h.squeeze(0)
            return (out, h.squeeze(0), c.squeeze(0)) if p.return_state else out

        lstm.__name__ = self.name
        return lstm

    def canonical(self, p, v, prefix, features):
        import torch

        bias = v[f"{prefix}bias"]
        if p.convention == "keras":
            return v[f"{prefix}kernel"], v[f"{prefix}recurrent_kernel"], bias, torch.zeros_like(bias)
        order = [0, 2, 1, 3]  # i, j, f, o -> torch's i, f, g(=j), o
        kernel = _blocks(v[f"{prefix}kernel"], order, 4)
        forget = 1.0 if p.forget_bias is None else p.forget_bias
        shift = torch.zeros_like(bias).index_fill(0, torch.arange(p.units, 2 * p.units, device=bias.device), forget)
        return kernel[:, :features], kernel[:, features:], _blocks(bias, order, 4) + shift, torch.zeros_like(bias)


@register
class GRU(Recurrent):
    """Gated recurrent unit over a sequence [N, F, T], with the variables of
    tf.keras's GRU (convention: keras) or of TF 1.x's GRUCell under
    dynamic_rnn (convention: tf1).

    Variables, as stored (PyTorch's [out, in] layout: TF's kernels transposed):
    - keras, reset_after true (tf.keras 2's default): `kernel` [3u, F],
      `recurrent_kernel` [3u, u], `bias` [2, 3u] (row 0 the input bias, row 1
      the recurrent bias); gate blocks z, r, h. The reset gate multiplies the
      recurrent projection, as PyTorch's GRU (whose fused kernel runs it).
    - keras, reset_after false: `bias` [3u]; the reset gate multiplies the
      state before the recurrent matmul (a step loop: PyTorch has no such GRU).
    - tf1: `gates/kernel` [2u, F + u] (blocks r, u; columns [input, h]),
      `gates/bias` [2u] (starts at 1.0), `candidate/kernel` [u, F + u],
      `candidate/bias` [u]; resets before the matmul; h' = u * h + (1 - u) * c.
    With `bidirectional`, each name gets `forward/` or `backward/` before it.

    Lengths, go_backwards and bidirectional work as for lstm.

    Example:
        {op: gru, units: 16, reset_after: false, return_sequences: true, inputs: [embedded, length]}

    Inputs [N, F, T] float and, optionally, lengths [N] integer; output [N, u, T]
    (return_sequences) or [N, u] (the final h), 2u with bidirectional concat;
    with return_state, h [N, u] at node:1 ([N, 2u] bidirectional).
    """

    name = "gru"
    gates, states = 3, 1
    imports = (im.keras("GRU", im.keras_recurrent),)
    tf_notes = "Keras's [N, T, F] is tfn's [N, F, T]; Keras's gate order z, r, h is kept in the stored kernels."

    class Params(RecurrentParams):
        reset_after: bool | None = Field(
            None, description="keras only (default true, tf.keras 2's): apply the reset gate after the recurrent matmul"
        )

        @model_validator(mode="after")
        def _reset(self):
            if self.convention == "tf1" and self.reset_after is not None:
                raise ValueError("reset_after is Keras's (convention: keras); TF 1.x GRUCell resets before the recurrent matmul")
            return self

    def variables(self, p, inputs):
        features, u = inputs[0].shape[1], p.units
        found = []
        for prefix in self.directions(p):
            if p.convention == "tf1":
                found += [
                    VariableDef(f"{prefix}gates/kernel", (2 * u, features + u), p.kernel_initializer),
                    VariableDef(f"{prefix}gates/bias", (2 * u,), p.bias_initializer or {"constant": 1.0}),
                    VariableDef(f"{prefix}candidate/kernel", (u, features + u), p.kernel_initializer),
                    VariableDef(f"{prefix}candidate/bias", (u,), p.bias_initializer or "zeros"),
                ]
                continue
            found += [
                VariableDef(f"{prefix}kernel", (3 * u, features), p.kernel_initializer),
                VariableDef(f"{prefix}recurrent_kernel", (3 * u, u), p.recurrent_initializer or "orthogonal"),
                VariableDef(f"{prefix}bias", (2, 3 * u) if p.reset_after is not False else (3 * u,), p.bias_initializer or "zeros"),
            ]
        return found

    def kind(self, p):
        return "gru" if p.convention == "keras" and p.reset_after is not False else "gru_reset_before"

    def canonical(self, p, v, prefix, features):
        import torch

        if p.convention == "tf1":  # to Keras's z, r, h blocks over [input | h] columns
            u = p.units
            gates, candidate = v[f"{prefix}gates/kernel"], v[f"{prefix}candidate/kernel"]
            stacked = torch.cat([gates[u:], gates[:u], candidate], 0)  # r, u, c -> z(=u), r, h(=c)
            gate_bias = v[f"{prefix}gates/bias"]
            bias = torch.cat([gate_bias[u:], gate_bias[:u], v[f"{prefix}candidate/bias"]])
            return stacked[:, :features], stacked[:, features:], bias
        kernel, recurrent, bias = v[f"{prefix}kernel"], v[f"{prefix}recurrent_kernel"], v[f"{prefix}bias"]
        if p.reset_after is False:
            return kernel, recurrent, bias
        order = [1, 0, 2]  # z, r, h -> torch's r, z, n
        return _blocks(kernel, order, 3), _blocks(recurrent, order, 3), _blocks(bias[0], order, 3), _blocks(bias[1], order, 3)
