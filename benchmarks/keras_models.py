"""The benchmark models in Keras, as a Keras user would write them (NHWC, Keras defaults).

Imported only by the TensorFlow side of the benchmarks (throughput_worker.py,
op_compare.py), run with an interpreter that has TensorFlow; TensorFlow is
never a dependency of tfn. Layer names are tfn's node names, so per-op
profiles line up: `layer_name("res1/conv1")` is "res1__conv1_k", a name that
TensorFlow's op names (which add `_1`, `_2` to scopes) cannot confuse with another.
"""

from __future__ import annotations

import re

import tensorflow as tf
from tensorflow import keras

L = keras.layers
SUFFIX = "_k"


def layer_name(node: str) -> str:
    """The Keras layer name of tfn's node `node`."""
    return node.replace("/", "__") + SUFFIX


def node_name(scope: str) -> str | None:
    """tfn's node for a TensorFlow name-scope component (`conv2_k_1` -> conv2), None for other scopes."""
    match = re.fullmatch(rf"(.+){SUFFIX}(_\d+)?", scope)
    return match.group(1).replace("__", "/") if match else None


def _bn(node: str) -> L.Layer:
    return L.BatchNormalization(momentum=0.99, epsilon=1e-3, name=layer_name(node))


def reference_cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(32, 3, padding="same", activation="relu", name=layer_name("conv1")),
            L.MaxPooling2D(2, name=layer_name("max_pool")),
            L.Conv2D(64, 3, padding="same", name=layer_name("conv2")),
            _bn("bn"),
            L.ReLU(name=layer_name("relu_1")),
            L.MaxPooling2D(2, name=layer_name("max_pool_1")),
            L.Flatten(name=layer_name("flatten")),
            L.Dense(128, activation="relu", name=layer_name("fc1")),
            L.Dropout(0.5, name=layer_name("dropout")),
            L.Dense(10, name=layer_name("logits"), dtype="float32"),
        ],
        name="reference_cnn",
    )


def _conv(filters: int, kernel: int, node: str, strides: int = 1) -> L.Layer:
    return L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=layer_name(node))


def resnet_small() -> keras.Model:
    image = keras.Input((32, 32, 3))
    stem = L.ReLU(name=layer_name("stem"))(_bn("bn0")(_conv(16, 3, "conv0")(image)))
    h = L.ReLU(name=layer_name("res1/relu"))(_bn("res1/bn1")(_conv(16, 3, "res1/conv1")(stem)))
    h = _bn("res1/bn2")(_conv(16, 3, "res1/conv2")(h))
    out1 = L.ReLU(name=layer_name("res1/out"))(L.Add(name=layer_name("res1/add"))([h, stem]))
    h = L.ReLU(name=layer_name("res2/relu"))(_bn("res2/bn1")(_conv(32, 3, "res2/conv1", strides=2)(out1)))
    h = _bn("res2/bn2")(_conv(32, 3, "res2/conv2")(h))
    shortcut = L.Conv2D(32, 1, strides=2, use_bias=False, name=layer_name("res2/shortcut"))(out1)
    out2 = L.ReLU(name=layer_name("res2/out"))(L.Add(name=layer_name("res2/add"))([h, shortcut]))
    logits = L.Dense(10, name=layer_name("logits"), dtype="float32")(L.GlobalAveragePooling2D(name=layer_name("pool"))(out2))
    return keras.Model(image, logits, name="resnet_small")


def vgg_small() -> keras.Model:
    layers: list = [keras.Input((32, 32, 3))]
    for block, width in enumerate((16, 32, 64), start=1):
        layers += [
            L.Conv2D(width, 3, padding="same", activation="relu", name=layer_name(f"block{block}/conv1")),
            L.Conv2D(width, 3, padding="same", activation="relu", name=layer_name(f"block{block}/conv2")),
            L.MaxPooling2D(2, name=layer_name(f"block{block}/pool")),
        ]
    layers += [
        L.Flatten(name=layer_name("flatten")),
        L.Dense(128, activation="relu", name=layer_name("fc1")),
        L.Dropout(0.5, name=layer_name("dropout")),
        L.Dense(10, name=layer_name("logits"), dtype="float32"),
    ]
    return keras.Sequential(layers, name="vgg_small")


MODELS = {"reference_cnn": reference_cnn, "resnet_small": resnet_small, "vgg_small": vgg_small}


def training_step(net: keras.Model):
    """A plain `tf.function` training step of `net`: Adam 1e-3, sparse cross-entropy on logits."""
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, net(images, training=True))
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        return loss

    return step
