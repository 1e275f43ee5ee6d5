"""Reference values for tfn's sequence ops (embedding, lstm, gru), computed with TensorFlow.

Run with TensorFlow and tf-keras installed (not a dependency of tfn or its tests):

    TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 python tests/tf_reference/make_sequence.py

writes tests/tf_reference/sequence.npz. Everything is in TensorFlow's layouts:
sequences [N, T, F], Keras kernels [in, gates*units] in Keras's gate order, the
TF 1.x fused LSTMCell kernel [in+units, 4*units] in gate order i, j, f, o.
Each case stores its weights, inputs, outputs, and the gradients of
sum(output * g) (g random, stored) with respect to the inputs and every variable.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

OUT = Path(__file__).with_name("sequence.npz")
N, T, F, U, VOCAB = 3, 5, 4, 3, 7
rng = np.random.default_rng(11)
values: dict[str, np.ndarray] = {"tf_version": np.array(tf.__version__), "keras_version": np.array(keras.__version__)}


def normal(*shape, scale=0.5):
    return (rng.normal(size=shape) * scale).astype(np.float32)


def put(prefix: str, **arrays) -> None:
    for key, value in arrays.items():
        values[f"{prefix}/{key}"] = np.asarray(value)


def keras_case(prefix: str, layer, x: np.ndarray, mask=None) -> None:
    """Run a Keras layer (weights already set), store outputs and gradients of sum(out_k * g_k)."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        outs = layer(xt, mask=None if mask is None else tf.constant(mask))
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        gs = [normal(*o.shape) for o in outs]
        total = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outs, gs)])
    variables = layer.trainable_variables
    grads = tape.gradient(total, [xt] + variables)
    put(prefix, x=x, grad_x=grads[0].numpy())
    for i, (o, g) in enumerate(zip(outs, gs)):
        put(prefix, **{f"out{i}": o.numpy(), f"g{i}": g})
    for v, grad in zip(variables, grads[1:]):
        # kernel, recurrent_kernel, bias; in a Bidirectional forward/kernel, backward/kernel, ...
        name = re.sub(r"^(forward|backward)_[a-z]+(_\d+)?/", r"\1/", re.sub(r"(lstm|gru)_cell/|:0", "", v.name))
        put(prefix, **{f"var/{name}": v.numpy(), f"grad/{name}": grad.numpy()})


def set_random_weights(layer) -> None:
    layer.set_weights([normal(*w.shape) for w in layer.get_weights()])


# --- embedding ---------------------------------------------------------------------
ids = np.array([[1, 4, 6, 0, 0], [2, 2, 0, 0, 0], [5, 3, 1, 6, 2]], dtype=np.int32)
emb = keras.layers.Embedding(VOCAB, F, mask_zero=True)
emb.build((None, T))
set_random_weights(emb)
with tf.GradientTape() as tape:
    out = emb(tf.constant(ids))
    g = normal(*out.shape)
    total = tf.reduce_sum(out * g)
put("embedding", ids=ids, embeddings=emb.get_weights()[0], out=out.numpy(), g=g,
    grad_embeddings=tf.convert_to_tensor(tape.gradient(total, emb.trainable_variables[0])).numpy(),
    mask=emb.compute_mask(tf.constant(ids)).numpy())

# --- Keras LSTM and GRU --------------------------------------------------------------
x = normal(N, T, F, scale=1.0)
for name, kwargs in {
    "keras_lstm": {},
    "keras_lstm_backwards": {"go_backwards": True},
}.items():
    layer = keras.layers.LSTM(U, return_sequences=True, return_state=True, **kwargs)
    layer.build((None, T, F))
    set_random_weights(layer)
    keras_case(name, layer, x)

layer = keras.layers.LSTM(U, return_sequences=False)
layer.build((None, T, F))
set_random_weights(layer)
keras_case("keras_lstm_last", layer, x)

for name, kwargs in {
    "keras_gru_reset_after": {"reset_after": True},
    "keras_gru_reset_before": {"reset_after": False},
    "keras_gru_reset_before_backwards": {"reset_after": False, "go_backwards": True},
}.items():
    layer = keras.layers.GRU(U, return_sequences=True, return_state=True, **kwargs)
    layer.build((None, T, F))
    set_random_weights(layer)
    keras_case(name, layer, x)

for merge in ("concat", "sum"):
    for cell in ("lstm", "gru"):
        inner = keras.layers.LSTM(U, return_sequences=True) if cell == "lstm" else keras.layers.GRU(U, return_sequences=True)
        layer = keras.layers.Bidirectional(inner, merge_mode=merge)
        layer.build((None, T, F))
        set_random_weights(layer)
        keras_case(f"keras_bidirectional_{cell}_{merge}", layer, x)

# Keras masking (embedding mask_zero -> LSTM) on right-padded ids: what tfn's lengths reproduce
mask = ids != 0
layer = keras.layers.LSTM(U, return_sequences=True, return_state=True)
layer.build((None, T, F))
set_random_weights(layer)
keras_case("keras_lstm_masked", layer, x, mask=mask)

# --- TF 1.x cells under dynamic_rnn, with sequence_length ----------------------------
lengths = np.array([5, 2, 0], dtype=np.int32)


def tf1_case(prefix: str, make_cell, bidirectional: bool = False) -> None:
    graph = tf.Graph()
    with graph.as_default():
        xs = tf.compat.v1.placeholder(tf.float32, (N, T, F))
        if bidirectional:
            (fw, bw), (fw_state, bw_state) = tf.compat.v1.nn.bidirectional_dynamic_rnn(
                make_cell(), make_cell(), xs, sequence_length=lengths, dtype=tf.float32)
            outs = [fw, bw, fw_state.h, fw_state.c, bw_state.h, bw_state.c]
        else:
            seq, state = tf.compat.v1.nn.dynamic_rnn(make_cell(), xs, sequence_length=lengths, dtype=tf.float32)
            outs = [seq] + ([state.h, state.c] if hasattr(state, "h") else [state])
        variables = tf.compat.v1.trainable_variables()
        gs = [tf.constant(normal(*o.shape)) for o in outs]
        total = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outs, gs)])
        grads = tf.gradients(total, [xs] + variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for v in variables:
                v.load(normal(*v.shape.as_list()), sess)
            got = sess.run({"outs": outs, "gs": gs, "grads": grads, "vars": variables}, {xs: x})
    put(prefix, x=x, lengths=lengths, grad_x=got["grads"][0])
    for i, (o, g) in enumerate(zip(got["outs"], got["gs"])):
        put(prefix, **{f"out{i}": o, f"g{i}": g})
    for v, value, grad in zip(variables, got["vars"], got["grads"][1:]):
        name = v.name.replace(":0", "")
        put(prefix, **{f"var/{name}": value, f"grad/{name}": grad})


tf1_case("tf1_lstm", lambda: tf.compat.v1.nn.rnn_cell.LSTMCell(U))
tf1_case("tf1_lstm_forget_bias_0.5", lambda: tf.compat.v1.nn.rnn_cell.LSTMCell(U, forget_bias=0.5))
tf1_case("tf1_gru", lambda: tf.compat.v1.nn.rnn_cell.GRUCell(U))
tf1_case("tf1_bidirectional_lstm", lambda: tf.compat.v1.nn.rnn_cell.LSTMCell(U), bidirectional=True)

np.savez_compressed(OUT, **values)
print(f"wrote {OUT} ({len(values)} arrays, TensorFlow {tf.__version__})")
