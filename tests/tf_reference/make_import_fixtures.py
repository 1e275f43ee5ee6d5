"""Make the model files `tfn import` is tested on, with the outputs TensorFlow computes for them.

Run with TensorFlow 2.x, Keras 3 and tf-keras installed (never a dependency of tfn):

    TF_CPP_MIN_LOG_LEVEL=2 python tests/tf_reference/make_import_fixtures.py [GROUP ...]

and the ONNX fixture (no TensorFlow: onnx and onnxruntime, tfn's test extra) with

    python tests/tf_reference/make_import_fixtures.py onnx_ops

It writes tests/fixtures/imports/: for each fixture NAME the model file
(NAME.keras, NAME.h5, NAME.pb, NAME.onnx, or NAME.ckpt.* with NAME.ckpt.meta)
and NAME.json (the versions that wrote it, the format, the parameter counts
as Keras counts them, the input and output names) plus NAME.npz (fixed inputs
and the original's outputs on them, float32). Keras 3 files are made in this
process; tf.keras (legacy .h5) and TF 1.x graph files in a child process with
TF_USE_LEGACY_KERAS=1, since tf.keras is chosen when TensorFlow is imported.
GROUP names the functions below to run (default: every TensorFlow one), so
that adding a fixture leaves the committed others as they are.
Widths are small: the whole folder stays well under 2 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
SCRIPT = "tests/tf_reference/make_import_fixtures.py"


def record(name: str, fmt: str, file: str, versions: dict, params: tuple[int, int], inputs: dict, outputs: dict, extra: dict | None = None) -> None:
    meta = {
        "made_by": SCRIPT,
        "format": fmt,
        "file": file,
        "versions": versions,
        "params": {"trainable": int(params[0]), "non_trainable": int(params[1])},
        "inputs": {k: list(v.shape[1:]) for k, v in inputs.items()},
        "input_dtypes": {k: str(v.dtype) for k, v in inputs.items()},
        "outputs": list(outputs),
        **(extra or {}),
    }
    (OUT / f"{name}.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    arrays = {f"input:{k}": v for k, v in inputs.items()} | {f"output:{k}": np.asarray(v, np.float32) for k, v in outputs.items()}
    np.savez_compressed(OUT / f"{name}.npz", **arrays)


def rng(seed: int):
    return np.random.default_rng(seed)


def randomize_bn(model, seed: int) -> None:
    """Moving statistics away from their initial 0 and 1, gamma/beta away from 1 and 0."""
    r = rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            weights = layer.get_weights()
            layer.set_weights([(r.uniform(0.5, 1.5, w.shape) if i in (0, 3) else r.normal(0, 0.3, w.shape)).astype("float32") for i, w in enumerate(weights)])


# --- Keras 3 -----------------------------------------------------------------


def keras3() -> None:
    import keras
    import tensorflow as tf
    from keras import layers

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    keras.utils.set_random_seed(0)

    def save(name: str, model, inputs: dict, compiled: bool = True, extra: dict | None = None):
        path = OUT / f"{name}.keras"
        model.save(path)
        feeds = [inputs[k] for k in [t.name for t in model.inputs]] if len(model.inputs) > 1 else inputs[model.inputs[0].name]
        result = model(feeds, training=False)
        result = result if isinstance(result, (list, tuple)) else [result]
        names = [t._keras_history.operation.name for t in model.outputs]
        outputs = {name_: np.asarray(r) for name_, r in zip(names, result)}
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
        record(name, "keras3", path.name, versions, (trainable, frozen), inputs, outputs, extra)

    # MLP: Sequential, dropout, softmax output, compiled
    model = keras.Sequential(
        [keras.Input((8,), name="features"), layers.Dense(16, activation="relu", name="hidden"), layers.Dropout(0.2, name="drop"), layers.Dense(4, activation="softmax", name="probs")],
        name="mlp",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.002), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    save("mlp", model, {"features": rng(1).normal(size=(3, 8)).astype("float32")})

    # CNN with batch normalization (trained a few steps: moving statistics move) and dropout
    x = keras.Input((10, 10, 3), name="image")
    h = layers.Conv2D(6, 3, padding="same", name="conv1")(x)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.ReLU(name="relu1")(h)
    h = layers.MaxPooling2D(2, name="pool1")(h)
    h = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv2")(h)
    h = layers.BatchNormalization(momentum=0.9, epsilon=1e-3, name="bn2")(h)
    h = layers.Activation("relu", name="act2")(h)
    h = layers.Dropout(0.3, name="drop")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    y = layers.Dense(5, name="logits")(h)
    model = keras.Model(x, y, name="cnn_bn")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    r = rng(2)
    model.fit(r.normal(size=(32, 10, 10, 3)).astype("float32"), r.integers(0, 5, 32), batch_size=16, epochs=2, verbose=0)
    randomize_bn(model, 3)
    save("cnn_bn", model, {"image": rng(4).normal(size=(2, 10, 10, 3)).astype("float32")})

    # Inception-style block: parallel branches joined by Concatenate on the channel axis, flatten + dense
    x = keras.Input((8, 8, 4), name="image")
    b1 = layers.Conv2D(4, 1, activation="relu", name="branch1x1")(x)
    b3 = layers.Conv2D(3, 1, activation="relu", name="branch3x3_reduce")(x)
    b3 = layers.Conv2D(5, 3, padding="same", activation="relu", name="branch3x3")(b3)
    bp = layers.AveragePooling2D(3, strides=1, padding="same", name="branch_pool")(x)
    bp = layers.Conv2D(2, 1, name="branch_pool_proj")(bp)
    h = layers.Concatenate(axis=-1, name="mixed")([b1, b3, bp])
    h = layers.MaxPooling2D(2, name="pool")(h)
    h = layers.Flatten(name="flatten")(h)
    y = layers.Dense(6, name="logits")(h)
    save("inception", keras.Model(x, y, name="inception"), {"image": rng(5).normal(size=(2, 8, 8, 4)).astype("float32")})

    # depthwise + separable convolutions
    x = keras.Input((9, 9, 3), name="image")
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6", name="depthwise")(x)
    h = layers.SeparableConv2D(8, 3, strides=2, depth_multiplier=1, padding="valid", name="separable")(h)
    h = layers.SeparableConv2D(4, 3, padding="same", depth_multiplier=2, use_bias=False, activation="elu", name="separable2")(h)
    h = layers.GlobalMaxPooling2D(name="gmp")(h)
    y = layers.Dense(3, activation="sigmoid", name="scores")(h)
    model = keras.Model(x, y, name="depthwise_separable")
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    save("depthwise_separable", model, {"image": rng(6).normal(size=(2, 9, 9, 3)).astype("float32")})

    # transposed-convolution decoder from a spatial latent code, with zero padding
    x = keras.Input((3, 3, 6), name="code")
    h = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu", name="up1")(x)
    h = layers.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(h)
    h = layers.Conv2DTranspose(4, 3, strides=2, padding="valid", activation="tanh", name="up2")(h)
    y = layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="pixels")(h)
    model = keras.Model(x, y, name="decoder")
    model.compile(optimizer="adam", loss="mse")
    save("decoder", model, {"code": rng(7).normal(size=(2, 3, 3, 6)).astype("float32")})

    # embedding + LSTM classifier over token ids
    x = keras.Input((7,), dtype="int32", name="tokens")
    h = layers.Embedding(20, 6, name="embed")(x)
    h = layers.LSTM(5, name="lstm")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(x, y, name="embedding_lstm")
    randomize_recurrent_bias(model, 8)
    save("embedding_lstm", model, {"tokens": rng(9).integers(0, 20, (2, 7)).astype("int32")})

    # layer normalization + gelu
    model = keras.Sequential(
        [
            keras.Input((6,), name="x"),
            layers.Dense(8, name="dense"),
            layers.LayerNormalization(name="norm"),
            layers.Activation("gelu", name="gelu"),
            layers.Dense(2, name="out"),
        ],
        name="layernorm_gelu",
    )
    norm = model.get_layer("norm")
    norm.set_weights([rng(10).uniform(0.5, 1.5, (8,)).astype("float32"), rng(11).normal(0, 0.3, (8,)).astype("float32")])
    save("layernorm_gelu", model, {"x": rng(12).normal(size=(3, 6)).astype("float32")})

    # a nested Sequential inside a functional model
    inner = keras.Sequential([keras.Input((8,)), layers.Dense(8, activation="tanh", name="inner1"), layers.Dense(8, name="inner2")], name="block")
    x = keras.Input((6,), name="x")
    h = layers.Dense(8, activation="relu", name="stem")(x)
    h = inner(h)
    y = layers.Dense(3, name="head")(h)
    save("nested", keras.Model(x, y, name="nested"), {"x": rng(13).normal(size=(2, 6)).astype("float32")})


def keras3_more() -> None:
    """Keras 3 layers of the newer ops: a decoder from a dense code (Reshape to NHWC), resampling, cropping, permutes."""
    import keras
    import tensorflow as tf
    from keras import layers

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    keras.utils.set_random_seed(1)
    x = keras.Input((6,), name="code")
    h = layers.Dense(3 * 3 * 4, name="project")(x)
    h = layers.Reshape((3, 3, 4), name="to_map")(h)
    h = layers.UpSampling2D(2, interpolation="bilinear", name="up")(h)
    h = layers.Conv2D(4, 3, padding="same", activation="swish", name="conv")(h)
    h = layers.Cropping2D(((1, 0), (0, 1)), name="crop")(h)
    h = layers.LayerNormalization(axis=[1, 2, 3], name="norm")(h)
    h = layers.LeakyReLU(negative_slope=0.1, name="leaky")(h)
    h = layers.Permute((2, 1, 3), name="swap")(h)
    h = layers.Conv2D(3, 3, activation="hard_sigmoid", name="conv2")(h)
    h = layers.PReLU(shared_axes=[1, 2], name="prelu")(h)
    h = layers.Resizing(4, 5, name="resize")(h)
    h = layers.Flatten(name="flat")(h)
    y = layers.Dense(3, activation="selu", name="out")(h)
    model = keras.Model(x, y, name="resampling")
    r = rng(40)
    for layer in (model.get_layer("norm"), model.get_layer("prelu")):
        layer.set_weights([r.uniform(0.5, 1.5, w.shape).astype("float32") if i == 0 else r.normal(0, 0.3, w.shape).astype("float32") for i, w in enumerate(layer.get_weights())])
    path = OUT / "resampling.keras"
    model.save(path)
    feed = rng(41).normal(size=(2, 6)).astype("float32")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    record("resampling", "keras3", path.name, versions, (trainable, 0), {"code": feed}, {"out": np.asarray(model(feed, training=False))})


def keras3_recurrent() -> None:
    """A Bidirectional LSTM over embedded tokens, then a GRU without reset_after, returning sequences between."""
    import keras
    import tensorflow as tf
    from keras import layers

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    keras.utils.set_random_seed(2)
    x = keras.Input((6,), dtype="int32", name="tokens")
    h = layers.Embedding(15, 5, name="embed")(x)
    h = layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode="concat", name="bilstm")(h)
    h = layers.GRU(3, reset_after=False, go_backwards=True, name="gru")(h)
    y = layers.Dense(2, name="logits")(h)
    model = keras.Model(x, y, name="bidirectional")
    r = rng(60)
    for layer in model.layers:
        if layer.name in ("bilstm", "gru"):
            layer.set_weights([w if w.ndim > 1 else r.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    path = OUT / "bidirectional.keras"
    model.save(path)
    feed = rng(61).integers(0, 15, (2, 6)).astype("int32")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    record("bidirectional", "keras3", path.name, versions, (trainable, 0), {"tokens": feed}, {"logits": np.asarray(model(feed, training=False))})


def keras3_layers() -> None:
    """Keras 3 layers mapped later: preprocessing (Rescaling, adapted Normalization) into preprocessing.json,
    CenterCrop, RepeatVector, UpSampling1D/3D, Cropping1D/3D, Conv3D, an Activation('linear'), a 3-way Add."""
    import keras
    import tensorflow as tf
    from keras import layers

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    keras.utils.set_random_seed(3)
    r = rng(70)
    image = keras.Input((8, 8, 3), name="image")
    h = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(image)
    normalize = layers.Normalization(axis=-1, name="normalize")
    normalize.adapt(r.uniform(-1, 0.6, (16, 8, 8, 3)).astype("float32") * np.array([1.0, 0.5, 2.0], "float32"))
    h = normalize(h)
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(h)
    h = layers.CenterCrop(5, 6, name="center")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    a = layers.Dense(5, name="image_head")(h)

    features = keras.Input((6,), name="features")
    feature_norm = layers.Normalization(name="feature_norm")
    feature_norm.adapt(r.normal(2.0, 3.0, (32, 6)).astype("float32"))
    g = feature_norm(features)
    g = layers.RepeatVector(4, name="repeat")(g)
    g = layers.Conv1D(3, 2, padding="same", activation="elu", name="conv1d")(g)
    g = layers.UpSampling1D(2, name="up1d")(g)
    g = layers.Cropping1D((1, 2), name="crop1d")(g)
    g = layers.Flatten(name="flat")(g)
    b = layers.Dense(5, name="sequence_head")(g)

    volume = keras.Input((4, 4, 4, 2), name="volume")
    v = layers.Cropping3D(((1, 0), (0, 1), (1, 1)), name="crop3d")(volume)
    v = layers.UpSampling3D((1, 2, 1), name="up3d")(v)
    v = layers.Conv3D(3, 2, name="conv3d")(v)
    v = layers.GlobalMaxPooling3D(name="gmp3d")(v)
    c = layers.Dense(5, name="volume_head")(v)

    y = layers.Add(name="sum")([a, b, c])
    y = layers.Activation("linear", name="linear")(y)
    y = layers.Softmax(name="probs")(y)
    model = keras.Model([image, features, volume], y, name="keras_layers")
    path = OUT / "keras_layers.keras"
    model.save(path)
    feeds = {
        "image": rng(71).integers(0, 256, (2, 8, 8, 3)).astype("float32"),  # pixel values: the model rescales them
        "features": rng(72).normal(2.0, 3.0, (2, 6)).astype("float32"),
        "volume": rng(73).normal(size=(2, 4, 4, 4, 2)).astype("float32"),
    }
    out = np.asarray(model([feeds["image"], feeds["features"], feeds["volume"]], training=False))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    # the Normalization layers' statistics (mean, variance, count) become preprocessing.json, not variables
    in_preprocessing = sum(int(np.prod(w.shape)) for layer in (normalize, feature_norm) for w in layer.weights)
    record("keras_layers", "keras3", path.name, versions, (trainable, frozen), feeds, {"probs": out}, {"params_in_preprocessing": in_preprocessing})


def randomize_recurrent_bias(model, seed: int) -> None:
    """Recurrent biases away from zero (Keras initialises them to 0, the forget gate to 1)."""
    r = rng(seed)
    for layer in model.layers:
        if type(layer).__name__ in ("LSTM", "GRU"):
            weights = layer.get_weights()
            weights[-1] = r.normal(0, 0.5, weights[-1].shape).astype("float32")
            layer.set_weights(weights)


# --- tf.keras (legacy .h5) and TF 1.x graphs ---------------------------------


def legacy() -> None:
    import tensorflow as tf
    import tf_keras as keras
    from tf_keras import layers

    versions = {"tensorflow": tf.__version__, "tf_keras": keras.__version__}
    keras.utils.set_random_seed(0)

    def save(name: str, model, inputs: dict):
        path = OUT / f"{name}.h5"
        model.save(path, save_format="h5")
        feeds = [inputs[n] for n in model.input_names]
        result = model(feeds if len(feeds) > 1 else feeds[0], training=False)
        result = result if isinstance(result, (list, tuple)) else [result]
        outputs = {n: np.asarray(r) for n, r in zip(model.output_names, result)}
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
        record(name, "tf_keras_h5", path.name, versions, (trainable, frozen), inputs, outputs)

    # LeNet-5 (Sequential; the dense after an NHWC flatten)
    model = keras.Sequential(
        [
            layers.Conv2D(6, 5, padding="same", activation="tanh", input_shape=(28, 28, 1), name="conv1"),
            layers.AveragePooling2D(2, name="pool1"),
            layers.Conv2D(16, 5, activation="tanh", name="conv2"),
            layers.AveragePooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(120, activation="tanh", name="fc1"),
            layers.Dense(84, activation="tanh", name="fc2"),
            layers.Dense(10, activation="softmax", name="probs"),
        ],
        name="lenet5",
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    save("lenet5", model, {"conv1_input": rng(20).uniform(size=(2, 28, 28, 1)).astype("float32")})

    # residual block: Add shortcut
    x = keras.Input((8, 8, 3), name="image")
    h = layers.Conv2D(4, 3, padding="same", name="stem")(x)
    h = layers.BatchNormalization(name="stem_bn")(h)
    h = layers.Activation("relu", name="stem_relu")(h)
    r = layers.Conv2D(4, 3, padding="same", activation="relu", name="res_conv1")(h)
    r = layers.Conv2D(4, 3, padding="same", name="res_conv2")(r)
    h = layers.Add(name="residual")([h, r])
    h = layers.Activation("relu", name="res_relu")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    y = layers.Dense(4, activation="softmax", name="probs")(h)
    model = keras.Model(x, y, name="residual")
    randomize_bn(model, 21)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    save("residual", model, {"image": rng(22).normal(size=(2, 8, 8, 3)).astype("float32")})

    # GRU (reset_after=True, tf.keras 2's default)
    x = keras.Input((5, 4), name="sequence")
    h = layers.GRU(6, name="gru")(x)
    y = layers.Dense(2, name="logits")(h)
    model = keras.Model(x, y, name="gru")
    randomize_recurrent_bias(model, 23)
    save("gru", model, {"sequence": rng(24).normal(size=(2, 5, 4)).astype("float32")})

    # a shared layer: one Dense applied to two inputs (its variables exist once)
    a = keras.Input((5,), name="left")
    b = keras.Input((5,), name="right")
    shared = layers.Dense(4, activation="relu", name="shared")
    h = layers.Concatenate(name="both")([shared(a), shared(b)])
    y = layers.Dense(2, name="logits")(h)
    save("shared", keras.Model([a, b], y, name="shared"), {"left": rng(25).normal(size=(2, 5)).astype("float32"), "right": rng(26).normal(size=(2, 5)).astype("float32")})

    # tf.keras 2's activations where Keras 3 differs: hard_sigmoid (slope 0.2), LeakyReLU's alpha, gelu
    model = keras.Sequential(
        [
            layers.Dense(6, activation="hard_sigmoid", input_shape=(5,), name="hard"),
            layers.LeakyReLU(alpha=0.25, name="leaky"),
            layers.Dense(4, activation="gelu", name="gelu"),
            layers.Dense(3, activation="swish", name="out"),
        ],
        name="legacy_activations",
    )
    save("legacy_activations", model, {"hard_input": rng(27).normal(0, 3, size=(3, 5)).astype("float32")})

    tf1_graph(versions)


def tf1_graph(versions: dict) -> None:
    """A TF 1.x graph (tf.compat.v1 layers): a frozen GraphDef, and a checkpoint with its .meta (optimizer included)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        image = v1.placeholder(tf.float32, [None, 12, 12, 3], name="image")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        h = v1.layers.conv2d(image, 6, 3, padding="same", name="conv1")
        h = v1.layers.batch_normalization(h, training=False, name="bn1")
        h = tf.nn.relu(h)
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        with v1.variable_scope("block"):
            h = v1.layers.conv2d(h, 8, 3, strides=2, padding="same", activation=tf.nn.relu6, name="conv")
            h = tf.nn.avg_pool2d(h, 2, 1, "SAME")
        h = tf.reshape(h, [-1, 3 * 3 * 8])
        h = v1.layers.dense(h, 16, activation=tf.nn.elu, name="fc")
        logits = v1.layers.dense(h, 4, name="logits")
        tf.nn.softmax(logits, name="probabilities")
        loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
        train = v1.train.MomentumOptimizer(0.01, 0.9).minimize(loss)
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            r = rng(30)
            for _ in range(2):
                sess.run(train, {image: r.normal(size=(8, 12, 12, 3)), labels: r.integers(0, 4, 8)})
            for var in v1.global_variables():
                if "moving" in var.name:
                    low, high = (0.5, 1.5) if "variance" in var.name else (-0.3, 0.3)
                    var.load(r.uniform(low, high, var.shape.as_list()).astype("float32"), sess)
            feed = rng(31).normal(size=(2, 12, 12, 3)).astype("float32")
            probs, logit_values = sess.run(["probabilities:0", logits], {image: feed})
            trainable = sum(int(np.prod(v.shape)) for v in v1.trainable_variables())
            model_vars = [v for v in v1.global_variables() if "moving" in v.name]
            frozen = sum(int(np.prod(v.shape)) for v in model_vars)
            outputs = {"probabilities": probs, "logits/BiasAdd": logit_values}
            saver.save(sess, str(OUT / "tf1_cnn.ckpt"), write_meta_graph=True)
            record("tf1_cnn_ckpt", "tf1_checkpoint", "tf1_cnn.ckpt", versions, (trainable, frozen), {"image": feed}, outputs)
            frozen_def = v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["probabilities"])
            frozen_def = v1.graph_util.remove_training_nodes(frozen_def)
            (OUT / "tf1_cnn.pb").write_bytes(frozen_def.SerializeToString())
            record("tf1_cnn_pb", "tf_graphdef", "tf1_cnn.pb", versions, (trainable, frozen), {"image": feed}, {"probabilities": probs})


def tf1_ops(versions: dict) -> None:
    """A frozen TF 1.x graph of the newer ops: LRN, TF 1.x's bilinear resize, leaky ReLU, a transpose, a mean over one axis."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(1)
        image = v1.placeholder(tf.float32, [None, 6, 6, 3], name="image")
        h = v1.layers.conv2d(image, 4, 3, padding="same", name="conv")
        h = tf.nn.local_response_normalization(h, depth_radius=2, bias=1.5, alpha=0.3, beta=0.75)
        h = v1.image.resize_bilinear(h, [9, 9], align_corners=False)
        h = tf.nn.leaky_relu(h, alpha=0.15)
        h = tf.transpose(h, [0, 2, 1, 3])
        h = tf.reduce_mean(h, axis=[1], keepdims=True)
        h = tf.reshape(h, [-1, 9 * 4])
        logits = v1.layers.dense(h, 3, name="logits")
        tf.identity(logits, name="scores")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            feed = rng(50).normal(size=(2, 6, 6, 3)).astype("float32")
            scores = sess.run("scores:0", {image: feed})
            trainable = sum(int(np.prod(v.shape)) for v in v1.trainable_variables())
            frozen_def = v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["scores"])
            (OUT / "tf1_ops.pb").write_bytes(frozen_def.SerializeToString())
            record("tf1_ops_pb", "tf_graphdef", "tf1_ops.pb", versions, (trainable, 0), {"image": feed}, {"scores": scores})


def tf1_more(versions: dict) -> None:
    """A frozen TF 1.x graph of plumbing and resampling ops: Split/SplitV, StridedSlice (with shrink and new axes),
    Slice, GatherV2 (constant indices, and batch_dims=1 with computed ones), Squeeze, ExpandDims, Tile, Pack, Cast,
    BatchMatMulV2, MaxPoolWithArgmax, the Resize* corner rules, reductions, tf.nn.gelu (exact and tanh), a bias reshaped by
    constant arithmetic and a flatten whose shape comes from tf.shape (Shape, StridedSlice, Pack)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(2)
        r = rng(80)
        image = v1.placeholder(tf.float32, [None, 6, 6, 4], name="image")
        sequence = v1.placeholder(tf.float32, [None, 5, 3], name="sequence")
        ids = v1.placeholder(tf.int32, [None, 2], name="ids")
        kernel = tf.constant(r.normal(0, 0.3, (3, 3, 4, 4)).astype("float32"))
        bias = tf.squeeze(tf.reshape(tf.constant(r.normal(0, 0.3, 4).astype("float32")), [1, 4]))  # as Keras's frozen graphs hold it
        h = tf.nn.bias_add(tf.nn.conv2d(image, kernel, 1, "SAME"), bias)
        left, right = tf.split(h, 2, axis=-1)
        top, middle, bottom = tf.split(h, [1, 3, 2], axis=1)
        mixed = tf.nn.relu(left) * right  # [N, 6, 6, 2]
        branches = [
            v1.image.resize_nearest_neighbor(mixed, [9, 8], align_corners=True),
            v1.image.resize_bicubic(mixed, [4, 5], half_pixel_centers=True),
            v1.image.resize_area(h, [4, 3]),
            v1.image.resize_bilinear(middle, [5, 4]),
            h[:, 1:5, ::1, :3],  # StridedSlice of three axes
            h[:, 2, :, tf.newaxis, 1:],  # shrink an axis, add one: [N, 6, 1, 3]
            tf.slice(bottom, [0, 0, 1, 0], [-1, -1, 4, -1]),
            tf.gather(h, [1, 2, 3], axis=2),
            tf.gather(h, 4, axis=1),
            tf.squeeze(tf.reduce_max(top, axis=[1], keepdims=True), [1]),
            tf.tile(tf.expand_dims(tf.reduce_min(h, axis=[1, 2]), -1), [1, 1, 2]),
            tf.stack([tf.reduce_sum(left, axis=[1, 2]), tf.reduce_mean(right, axis=[1, 2])], axis=1),
            tf.nn.gelu(tf.transpose(mixed, [0, 2, 1, 3]), approximate=False),
            tf.nn.gelu(sequence, approximate=True),
            tf.matmul(sequence, sequence, transpose_b=True),  # BatchMatMulV2, [N, 5, 5]
            tf.gather(tf.reduce_mean(h, axis=[1, 2]), ids, axis=1, batch_dims=1),
            tf.cast(ids, tf.float32),
            *(tf.cast(out, tf.float32) for out in tf.nn.max_pool_with_argmax(mixed, 2, 2, "VALID", include_batch_in_index=True)),
        ]
        flat = [tf.reshape(b, [tf.shape(b)[0], -1]) for b in branches]
        features = tf.concat(flat, axis=1)
        width = sum(int(np.prod(b.shape[1:])) for b in branches)
        weights = tf.constant(r.normal(0, 0.1, (width, 6)).astype("float32"))
        tf.identity(tf.matmul(features, weights), name="scores")
        with v1.Session(graph=graph) as sess:
            feeds = {
                "image": rng(81).normal(size=(2, 6, 6, 4)).astype("float32"),
                "sequence": rng(82).normal(size=(2, 5, 3)).astype("float32"),
                "ids": rng(83).integers(0, 4, (2, 2)).astype("int32"),
            }
            scores = sess.run("scores:0", {f"{k}:0": v for k, v in feeds.items()})
            frozen_def = v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["scores"])
            (OUT / "tf1_more.pb").write_bytes(frozen_def.SerializeToString())
            params = 3 * 3 * 4 * 4 + 4 + width * 6
            record("tf1_more_pb", "tf_graphdef", "tf1_more.pb", versions, (params, 0), feeds, {"scores": scores})


def onnx_ops() -> None:
    """An ONNX graph (onnx.helper; outputs by onnxruntime) of the ops mapped later: Resize in four corner rules, Slice,
    Gather, Squeeze, Unsqueeze, Split, Transpose, MatMul of two computed tensors, Tile, Cast, the reductions, PRelu,
    LeakyRelu, Gelu and its Div-Erf-Add-Mul-Mul form, LRN, LayerNormalization and a Sum of three."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    r = rng(90)
    inits: dict[str, np.ndarray] = {
        "conv.weight": r.normal(0, 0.3, (4, 3, 3, 3)),
        "conv.bias": r.normal(0, 0.3, 4),
        "act.slope": r.uniform(0.05, 0.3, (4, 1, 1)),
        "norm.scale": r.uniform(0.5, 1.5, 8),
        "norm.bias": r.normal(0, 0.3, 8),
    }
    inits = {k: v.astype("float32") for k, v in inits.items()}
    big = np.iinfo(np.int64).max

    def const(name, value, dtype="int64"):
        inits[name] = np.asarray(value, dtype=dtype)
        return name

    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["c", "act.slope"], ["p"]),
        helper.make_node("LRN", ["p"], ["l"], size=3, alpha=0.3, beta=0.75, bias=1.5),
        # Resize: TF 1.x's default, align_corners, half-pixel (linear) and half-pixel nearest, and an exact cubic
        helper.make_node("Resize", ["l", "", const("s_up", [1, 1, 2, 1.5], "float32")], ["r1"], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Resize", ["l", "", "", const("size_9", [9, 7])], ["r2"], mode="linear", coordinate_transformation_mode="half_pixel", axes=[2, 3]),
        helper.make_node("Resize", ["l", "", const("s_down", [1, 1, 0.5, 0.5], "float32")], ["r3"], mode="linear", coordinate_transformation_mode="align_corners"),
        helper.make_node("Resize", ["l", "", "", const("size_4", [4, 3])], ["r4"], mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil", axes=[2, 3]),
        helper.make_node("Resize", ["l", "", const("s_cubic", [1, 1, 2, 2], "float32")], ["r5"], mode="cubic", coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.75),
        helper.make_node("Slice", ["l", const("starts", [1, 0]), const("ends", [5, big]), const("slice_axes", [2, 3])], ["s"]),
        helper.make_node("Gather", ["s", const("one", 2)], ["g1"], axis=2),  # [N, 4, 6]
        helper.make_node("Gather", ["s", const("run", [1, 2, 3])], ["g2"], axis=3),  # [N, 4, 4, 3]
        helper.make_node("ReduceMax", ["g2", const("last", [3])], ["g2max"], keepdims=1),
        helper.make_node("Squeeze", ["g2max", const("squeeze_axes", [3])], ["sq"]),  # [N, 4, 4]
        helper.make_node("Unsqueeze", ["g1", const("new_axes", [1, 4])], ["u"]),  # [N, 1, 4, 6, 1]
        helper.make_node("Split", ["l", const("pieces", [1, 2, 1])], ["sp0", "sp1", "sp2"], axis=1),
        helper.make_node("ReduceSum", ["sp1", const("spatial", [2, 3])], ["sp1sum"], keepdims=0),
        helper.make_node("ReduceMin", ["sp2", const("spatial2", [2, 3])], ["sp2min"], keepdims=0),
        helper.make_node("ReduceMean", ["sp0", const("spatial3", [2, 3])], ["sp0mean"], keepdims=0),
        helper.make_node("Sum", ["sp0mean", "sp2min", "sp2min"], ["three"]),
        helper.make_node("Transpose", ["g1"], ["t"], perm=[0, 2, 1]),  # [N, 6, 4]
        helper.make_node("MatMul", ["g1", "t"], ["m"]),  # [N, 4, 4]
        helper.make_node("LeakyRelu", ["m"], ["lr"], alpha=0.1),
        helper.make_node("Gelu", ["lr"], ["ge"]),
        helper.make_node("Tile", ["ge", const("repeats", [1, 1, 2])], ["tl"]),  # [N, 4, 8]
        helper.make_node("LayerNormalization", ["tl", "norm.scale", "norm.bias"], ["ln"], axis=-1, epsilon=1e-5),
        helper.make_node("Div", ["ln", const("sqrt2", 1.4142135, "float32")], ["erf_in"]),
        helper.make_node("Erf", ["erf_in"], ["erf"]),
        helper.make_node("Add", ["erf", const("one_f", 1.0, "float32")], ["erf1"]),
        helper.make_node("Mul", ["ln", "erf1"], ["gx"]),
        helper.make_node("Mul", ["gx", const("half", 0.5, "float32")], ["gelu2"]),
        helper.make_node("Cast", ["ids"], ["idsf"], to=TensorProto.FLOAT),
    ]
    flat = []
    for k, name in enumerate(["r1", "r2", "r3", "r4", "r5", "sq", "u", "sp1sum", "three", "gelu2", "idsf"]):
        nodes.append(helper.make_node("Flatten", [name], [f"flat{k}"], axis=1))
        flat.append(f"flat{k}")
    nodes.append(helper.make_node("Concat", flat, ["features"], axis=1))
    sizes = {"r1": 4 * 12 * 9, "r2": 4 * 9 * 7, "r3": 4 * 3 * 3, "r4": 4 * 4 * 3, "r5": 4 * 12 * 12, "sq": 16, "u": 24, "sp1sum": 2, "three": 1, "gelu2": 32, "idsf": 3}
    inits["head.weight"] = r.normal(0, 0.05, (5, sum(sizes.values()))).astype("float32")
    inits["head.bias"] = r.normal(0, 0.1, 5).astype("float32")
    nodes.append(helper.make_node("Gemm", ["features", "head.weight", "head.bias"], ["scores"], transB=1))
    graph = helper.make_graph(
        nodes,
        "onnx_ops",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6]), helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], producer_name="make_import_fixtures")
    onnx.checker.check_model(model, full_check=True)
    path = OUT / "onnx_ops.onnx"
    onnx.save(model, str(path))
    feeds = {"x": rng(91).normal(size=(2, 3, 6, 6)).astype("float32"), "ids": rng(92).integers(-3, 9, (2, 3)).astype("int64")}
    (scores,) = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["scores"], feeds)
    params = sum(int(v.size) for k, v in inits.items() if "." in k)
    versions = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "opset": 20}
    record("onnx_ops", "onnx", path.name, versions, (params, 0), feeds, {"scores": scores})


#: the groups each process makes: Keras 3 here, tf.keras and TF 1.x graphs with TF_USE_LEGACY_KERAS=1
KERAS3 = ("keras3", "keras3_more", "keras3_recurrent", "keras3_layers")
LEGACY = ("legacy", "tf1_ops", "tf1_more")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    chosen = [a for a in sys.argv[1:] if not a.startswith("--")] or [*KERAS3, *LEGACY]
    unknown = set(chosen) - {*KERAS3, *LEGACY, "onnx_ops"}
    if unknown:
        sys.exit(f"unknown group(s) {sorted(unknown)}; the groups are {', '.join([*KERAS3, *LEGACY, 'onnx_ops'])}")
    if "--legacy" in sys.argv:
        import tensorflow as tf
        import tf_keras

        tf_versions = {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__}
        for group in chosen:
            legacy() if group == "legacy" else globals()[group](tf_versions)
    else:
        for group in chosen:
            if group in KERAS3 or group == "onnx_ops":
                globals()[group]()
        legacy_groups = [g for g in chosen if g in LEGACY]
        if legacy_groups:
            env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
            subprocess.run([sys.executable, __file__, "--legacy", *legacy_groups], check=True, env=env)
    (OUT / "checkpoint").unlink(missing_ok=True)  # the Saver's state file: tfn takes the prefix
    print(f"wrote {OUT}")
