"""Reference values for the activation, normalization, math, plumbing and resizing ops, computed with TensorFlow.

Run with a Python that has tensorflow-cpu, tf-keras and keras 3 (never a
dependency of tfn or of its tests):

    TF_CPP_MIN_LOG_LEVEL=2 python tests/tf_reference/make_ops_core.py

It writes tests/tf_reference/ops_core.npz, read by tests/test_ops_tf_oracle.py.
Each case holds, in tfn's layout (channels-first; the script transposes to
TF's NHWC / [N, T, F] and back): the node (`CASE/node`, a JSON object with
`op` and the attributes), the inputs `CASE/x0, x1, ...`, the variables
`CASE/var/ROLE`, the weights `CASE/g0, g1, ...` of the scalar sum(g_k * y_k)
whose gradient is taken, TF's outputs `CASE/y0, ...`, and TF's gradients
`CASE/dx0, ...` (float inputs) and `CASE/dvar/ROLE`. All values are
float32, as TF computes them. `versions` records the TF, tf-keras and Keras
versions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402  (Keras 3: hard_sigmoid's other slope)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402  (tf.keras 2: the layers TF 1.x users had)

OUT = Path(__file__).with_name("ops_core.npz")
rng = np.random.default_rng(20240611)
values: dict[str, np.ndarray] = {}


def f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def normal(*shape, scale=2.0) -> np.ndarray:
    return f32(rng.normal(scale=scale, size=shape))


def nhwc(x):  # tfn [N, C, ...] -> TF [N, ..., C]
    return np.moveaxis(x, 1, -1) if x.ndim > 2 else x


def nchw(x):  # TF [N, ..., C] -> tfn [N, C, ...]
    return np.moveaxis(np.asarray(x), -1, 1) if np.ndim(x) > 2 else np.asarray(x)


def case(name: str, node: dict, inputs: list[np.ndarray], fn, variables: dict | None = None, channels_last: bool = False, gradient: bool = True):
    """Record TF's outputs and gradients of `fn(*inputs, **variables)` (TF tensors in, a tensor or list out).

    With channels_last, inputs, outputs, gradients and the upstream weights are
    moved between tfn's layout and TF's around `fn`. `variables` maps a role
    to (tfn value, to_tf): `fn` then takes the values in TF's layout as
    keyword arguments and returns (output, {role: the layer's tf.Variable}),
    whose gradients are recorded.
    """
    assert name not in {k.split("/")[0] for k in values}, name
    variables = variables or {}
    tf_inputs = [tf.constant(nhwc(x) if channels_last and x.dtype.kind == "f" else x) for x in inputs]
    weights = {role: f32(to_tf(value)) for role, (value, to_tf) in variables.items()}
    tf_vars: dict = {}
    with tf.GradientTape() as tape:
        for t in tf_inputs:
            if t.dtype.is_floating:
                tape.watch(t)
        out = fn(*tf_inputs, **weights)
        if variables:
            out, tf_vars = out
            assert set(tf_vars) == set(variables), (name, tf_vars)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        ys = [np.asarray(o) for o in outs]
        gs = [f32(rng.normal(size=y.shape)) if y.dtype.kind == "f" else None for y in ys]
        total = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outs, gs) if g is not None]) if gradient else None
    values[f"{name}/node"] = np.array(json.dumps(node))
    for i, x in enumerate(inputs):
        values[f"{name}/x{i}"] = x
    for role, (value, _) in variables.items():
        values[f"{name}/var/{role}"] = value
    back = nchw if channels_last else np.asarray
    for k, (y, g) in enumerate(zip(ys, gs)):
        values[f"{name}/y{k}"] = back(y)
        if g is not None and gradient:
            values[f"{name}/g{k}"] = back(g)
    if not gradient:
        return
    float_inputs = [t for t in tf_inputs if t.dtype.is_floating]
    grads = tape.gradient(total, float_inputs + [tf_vars[role] for role in variables])
    grads = [tf.convert_to_tensor(g) if g is not None else None for g in grads]
    for i, g in zip([i for i, x in enumerate(inputs) if x.dtype.kind == "f"], grads):
        values[f"{name}/dx{i}"] = back(np.asarray(g))
    for (role, (value, to_tf)), g in zip(variables.items(), grads[len(float_inputs) :]):
        values[f"{name}/dvar/{role}"] = from_tf_layout(np.asarray(g), value, to_tf)


def from_tf_layout(g: np.ndarray, value: np.ndarray, to_tf) -> np.ndarray:
    """A variable's gradient, moved from TF's layout back to tfn's: invert `to_tf` on an index grid."""
    positions = np.asarray(to_tf(np.arange(value.size).reshape(value.shape)))
    out = np.empty(value.size, dtype=np.float32)
    out[positions.reshape(-1)] = g.reshape(-1)
    return out.reshape(value.shape)


def keras_layer(layer, *roles):
    """fn for `case`: call a tf.keras 2 layer with its weights set to the given values (TF layout)."""

    def run(x, **weights):
        layer.build(x.shape)
        by_name = {w.name.split("/")[-1].split(":")[0]: w for w in layer.weights}
        for role in roles:
            by_name[role].assign(weights[role])
        return layer(x), {role: by_name[role] for role in roles}

    return run


def with_points(x: np.ndarray, points) -> np.ndarray:
    """x with its first entries replaced by the given points (kinks, boundaries)."""
    flat = x.copy().reshape(-1)
    flat[: len(points)] = points
    return flat.reshape(x.shape)


# --- activations -------------------------------------------------------------------------------

kinks = [0.0, -0.0, 2.5, -2.5, 3.0, -3.0, 1e-3, -1e-3, 20.0, -20.0]
X = with_points(normal(3, 4, 5), kinks)
case("leaky_relu_default_alpha", {"op": "leaky_relu"}, [X], lambda x: tf.nn.leaky_relu(x))
case("leaky_relu_alpha_above_1", {"op": "leaky_relu", "alpha": 1.5}, [X], lambda x: tf.nn.leaky_relu(x, alpha=1.5))
case("gelu_exact", {"op": "gelu"}, [X], lambda x: tf.nn.gelu(x, approximate=False))
case("gelu_approximate", {"op": "gelu", "approximate": True}, [X], lambda x: tf.nn.gelu(x, approximate=True))
case("selu_gradient_at_0", {"op": "selu"}, [X], tf.nn.selu)
case("swish", {"op": "swish"}, [X], lambda x: tf.nn.swish(x))
case("swish_beta", {"op": "swish", "beta": 1.7}, [X], lambda x: tf.nn.swish(x, beta=1.7))
case("silu", {"op": "silu", "beta": 0.5}, [X], lambda x: tf.nn.silu(x, beta=0.5))
case("hard_sigmoid_tf_keras_2", {"op": "hard_sigmoid"}, [X], tf_keras.activations.hard_sigmoid)
# Keras 3's relu6 form has a zero gradient at its two corners (+-3): compare away from them
X_SMOOTH = with_points(normal(3, 4, 5), [0.0, 2.5, -2.5, 2.9, -2.9, 3.1, -3.1])
case("hard_sigmoid_keras_3_slope", {"op": "hard_sigmoid", "slope": 1 / 6}, [X_SMOOTH], keras.activations.hard_sigmoid)

IMG = with_points(normal(2, 3, 4, 5), kinks)
alpha_c = normal(3, 1, 1, scale=0.5)
case(
    "prelu_per_channel",
    {"op": "prelu"},
    [IMG],
    keras_layer(tf_keras.layers.PReLU(shared_axes=[1, 2]), "alpha"),
    {"alpha": (alpha_c, lambda a: a.reshape(1, 1, 3))},
    channels_last=True,
)
alpha_all = normal(3, 4, 5, scale=0.5)
case(
    "prelu_per_element",
    {"op": "prelu", "shared_axes": []},
    [IMG],
    keras_layer(tf_keras.layers.PReLU(), "alpha"),
    {"alpha": (alpha_all, lambda a: np.moveaxis(a, 0, -1))},
    channels_last=True,
)

# --- normalization -----------------------------------------------------------------------------

LRN_X = normal(2, 7, 3, 4)
case(
    "lrn_alpha_not_divided_by_window",
    {"op": "local_response_normalization", "depth_radius": 2, "bias": 2.0, "alpha": 0.5, "beta": 0.75},
    [LRN_X],
    lambda x: tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=0.5, beta=0.75),
    channels_last=True,
)
case(
    "lrn_defaults_window_wider_than_channels",
    {"op": "local_response_normalization"},
    [LRN_X],
    lambda x: tf.nn.local_response_normalization(x),
    channels_last=True,
)
case(
    "lrn_alexnet",
    {"op": "local_response_normalization", "depth_radius": 2, "bias": 1.0, "alpha": 2e-5, "beta": 0.75},
    [normal(2, 7, 3, 4, scale=30.0)],
    lambda x: tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=2e-5, beta=0.75),
    channels_last=True,
)

LN_X = normal(2, 3, 4, 5, scale=3.0) + 1.0
gamma_c, beta_c = normal(3, scale=1.0), normal(3, scale=1.0)


case(
    "layer_normalization_feature_axis_epsilon_1e-3",
    {"op": "layer_normalization"},
    [LN_X],
    keras_layer(tf_keras.layers.LayerNormalization(axis=-1), "gamma", "beta"),
    {"gamma": (gamma_c, lambda a: a), "beta": (beta_c, lambda a: a)},
    channels_last=True,
)
gamma_chw = normal(3, 4, 5, scale=1.0)
case(
    "layer_normalization_whole_sample_no_center",
    {"op": "layer_normalization", "axis": [1, 2, 3], "epsilon": 0.5, "center": False},
    [LN_X],
    keras_layer(tf_keras.layers.LayerNormalization(axis=[1, 2, 3], epsilon=0.5, center=False), "gamma"),
    {"gamma": (gamma_chw, lambda a: np.moveaxis(a, 0, -1))},
    channels_last=True,
)
gamma_t = normal(6, scale=1.0)
case(
    "layer_normalization_time_axis_of_a_sequence",
    {"op": "layer_normalization", "axis": 2, "scale": True, "center": False},
    [normal(2, 3, 6)],
    keras_layer(tf_keras.layers.LayerNormalization(axis=1, center=False), "gamma"),  # TF [N, T, F]: the time axis is 1
    {"gamma": (gamma_t, lambda a: a)},
    channels_last=True,
)

# --- dense on a rank > 2 input: axis 1 at every position (Keras's last axis in NHWC) -----------------

kernel_4, bias_4 = normal(6, 3, scale=0.5), normal(6, scale=0.5)


case(
    "dense_on_an_image",
    {"op": "dense", "units": 6},
    [normal(2, 3, 4, 5)],
    keras_layer(tf_keras.layers.Dense(6), "kernel", "bias"),
    {"kernel": (kernel_4, lambda w: w.T), "bias": (bias_4, lambda b: b)},
    channels_last=True,
)
kernel_3 = normal(4, 3, scale=0.5)
case(
    "dense_on_a_sequence",
    {"op": "dense", "units": 4},
    [normal(2, 3, 7)],
    keras_layer(tf_keras.layers.Dense(4), "kernel", "bias"),
    {"kernel": (kernel_3, lambda w: w.T), "bias": (normal(4), lambda b: b)},
    channels_last=True,
)

# --- math --------------------------------------------------------------------------------------

A, B = normal(2, 3, 4, 5), normal(2, 3, 5, 6)
case("matmul", {"op": "matmul"}, [A, B], tf.matmul)
case("matmul_transpose_a", {"op": "matmul", "transpose_a": True}, [normal(2, 5, 4), normal(2, 5, 3)], lambda a, b: tf.matmul(a, b, transpose_a=True))
case(
    "matmul_transpose_both",
    {"op": "matmul", "transpose_a": True, "transpose_b": True},
    [normal(2, 3, 5, 4), normal(2, 3, 6, 5)],
    lambda a, b: tf.matmul(a, b, transpose_a=True, transpose_b=True),
)
case("matmul_broadcast", {"op": "matmul"}, [normal(2, 1, 4, 5), normal(2, 3, 5, 2)], tf.matmul)

# small integers as floats: ties for max and min
R = f32(rng.integers(-2, 3, size=(2, 3, 4, 5)))
for reduce in ("mean", "sum", "max", "min"):
    fn = getattr(tf, f"reduce_{reduce}")
    case(f"reduce_{reduce}_all_sample_axes", {"op": f"reduce_{reduce}"}, [R], lambda x, fn=fn: fn(x, axis=[1, 2, 3]))
    case(f"reduce_{reduce}_axis_keepdims", {"op": f"reduce_{reduce}", "axis": [1, -1], "keepdims": True}, [R], lambda x, fn=fn: fn(x, axis=[1, 3], keepdims=True))
    case(f"reduce_{reduce}_one_axis", {"op": f"reduce_{reduce}", "axis": 2}, [R], lambda x, fn=fn: fn(x, axis=2))
case("reduce_sum_empty_axis_list", {"op": "reduce_sum", "axis": []}, [R], lambda x: tf.reduce_sum(x, axis=[]))

# --- plumbing ----------------------------------------------------------------------------------

P = normal(2, 3, 4, 5)
case("transpose", {"op": "transpose", "perm": [0, 3, 1, 2]}, [P], lambda x: tf.transpose(x, [0, 3, 1, 2]))
case("transpose_default_reverses_sample_axes", {"op": "transpose"}, [P], lambda x: tf.transpose(x, [0, 3, 2, 1]))
case("slice_to_the_end", {"op": "slice", "begin": [0, 1, 0, 2], "size": [-1, 2, -1, -1]}, [P], lambda x: tf.slice(x, [0, 1, 0, 2], [-1, 2, -1, -1]))
case("split_even", {"op": "split", "num_or_size_splits": 2, "axis": 2}, [P], lambda x: tf.split(x, 2, axis=2))
case("split_uneven_sizes", {"op": "split", "num_or_size_splits": [1, -1, 2], "axis": -1}, [P], lambda x: tf.split(x, [1, -1, 2], axis=-1))
IDS = np.array([[0, 3, 3, 1], [4, 0, 2, 2]], dtype=np.int64)  # repeats: gradients add up
case("gather_axis_2_repeated_indices", {"op": "gather", "axis": 2}, [normal(2, 3, 5, 2), IDS], lambda x, i: tf.gather(x, i, axis=2, batch_dims=1))
case("gather_axis_1_2d_indices", {"op": "gather"}, [normal(2, 6, 3), np.array([[[5, 0]], [[1, 1]]], dtype=np.int32)], lambda x, i: tf.gather(x, i, axis=1, batch_dims=1))
case("squeeze_listed", {"op": "squeeze", "axis": [2]}, [normal(2, 3, 1, 1)], lambda x: tf.squeeze(x, axis=[2]))
case("squeeze_all", {"op": "squeeze"}, [normal(2, 1, 3, 1)], lambda x: tf.squeeze(x, axis=[1, 3]))
case("expand_dims_end", {"op": "expand_dims", "axis": -1}, [normal(2, 3, 4)], lambda x: tf.expand_dims(x, -1))
case("expand_dims_after_batch", {"op": "expand_dims", "axis": 1}, [normal(2, 3, 4)], lambda x: tf.expand_dims(x, 1))
case("tile", {"op": "tile", "multiples": [1, 2, 1, 3]}, [normal(2, 3, 2, 2)], lambda x: tf.tile(x, [1, 2, 1, 3]))
case("stack_last", {"op": "stack", "axis": -1}, [normal(2, 3, 4), normal(2, 3, 4), normal(2, 3, 4)], lambda a, b, c: tf.stack([a, b, c], axis=-1))
case("stack_after_batch", {"op": "stack"}, [normal(2, 3, 4), normal(2, 3, 4)], lambda a, b: tf.stack([a, b], axis=1))
TRUNC = with_points(normal(2, 3, 4, scale=3.0), [-2.7, 2.7, -0.5, 0.5, -1.0, 1.999])
case("cast_float_to_int_truncates", {"op": "cast", "dtype": "int32"}, [TRUNC], lambda x: tf.cast(x, tf.int32), gradient=False)
case("cast_int_to_float", {"op": "cast", "dtype": "float32"}, [rng.integers(-9, 9, size=(2, 3, 4)).astype(np.int64)], lambda x: tf.cast(x, tf.float32), gradient=False)
case("cast_float_to_float_passes_the_gradient", {"op": "cast", "dtype": "float64"}, [normal(2, 3, 4)], lambda x: tf.cast(tf.cast(x, tf.float64), tf.float32))
case(
    "cropping2d",
    {"op": "cropping2d", "cropping": [[1, 0], [2, 1]]},
    [normal(2, 3, 5, 6)],
    tf_keras.layers.Cropping2D(((1, 0), (2, 1))),
    channels_last=True,
)
case("cropping2d_symmetric", {"op": "cropping2d", "cropping": [1, 2]}, [normal(2, 3, 5, 6)], tf_keras.layers.Cropping2D((1, 2)), channels_last=True)
case("zero_padding2d", {"op": "zero_padding2d", "padding": [[2, 0], [1, 3]]}, [normal(2, 3, 2, 3)], tf_keras.layers.ZeroPadding2D(((2, 0), (1, 3))), channels_last=True)
case("zero_padding2d_default", {"op": "zero_padding2d"}, [normal(2, 3, 2, 3)], tf_keras.layers.ZeroPadding2D(), channels_last=True)

# --- resizing: every method x corner rule, up and down, odd ratios ---------------------------------

RESIZE_OPS = {
    "NEAREST": tf.raw_ops.ResizeNearestNeighbor,
    "BILINEAR": tf.raw_ops.ResizeBilinear,
    "BICUBIC": tf.raw_ops.ResizeBicubic,
    "AREA": tf.raw_ops.ResizeArea,
}
CORNERS = {"default": (False, False), "align_corners": (True, False), "half_pixel_centers": (False, True)}
SIZES = {"up": ((4, 5), (7, 9)), "down": ((9, 7), (4, 3)), "mixed": ((5, 6), (8, 4)), "to_one": ((3, 4), (1, 2))}


def area_resize_with_gradient(x_nhwc, size, align_corners):
    """ResizeArea's output and, since TF registers no gradient for it, its adjoint from the
    Jacobian of TF's own forward (the op is linear: feed it every basis image)."""
    n, h, w, c = x_nhwc.shape
    basis = np.eye(h * w, dtype=np.float32).reshape(h * w, h, w, 1)
    columns = np.asarray(tf.raw_ops.ResizeArea(images=basis, size=size, align_corners=align_corners))  # [h*w, H', W', 1]
    jacobian = columns.reshape(h * w, -1)  # input pixel -> output pixels
    y = np.asarray(tf.raw_ops.ResizeArea(images=x_nhwc, size=size, align_corners=align_corners))
    return y, jacobian


for method, resize_op in RESIZE_OPS.items():
    for corner, (align, half) in CORNERS.items():
        if method == "AREA" and half:
            continue  # resize_area has no half_pixel_centers
        for label, (in_size, out_size) in SIZES.items():
            name = f"resize_{method.lower()}_{corner}_{label}"
            node = {"op": "resize", "size": list(out_size), "method": method, "align_corners": align, "half_pixel_centers": half}
            x = normal(1, 3, *in_size)  # 3 channels: TF's kernels have a 3-channel path of their own
            if method != "AREA":
                case(
                    name,
                    node,
                    [x],
                    lambda t, op=resize_op, s=out_size, a=align, h=half: op(images=t, size=s, align_corners=a, half_pixel_centers=h),
                    channels_last=True,
                )
                continue
            y, jacobian = area_resize_with_gradient(nhwc(x), out_size, align)
            g = normal(*y.shape, scale=1.0)  # NHWC
            dx = np.einsum("pq,ncq->ncp", jacobian, nchw(g).reshape(*x.shape[:2], -1)).reshape(x.shape)
            values.update({f"{name}/node": np.array(json.dumps(node)), f"{name}/x0": x, f"{name}/y0": nchw(y), f"{name}/g0": nchw(g), f"{name}/dx0": f32(dx)})

case(
    "resize_scale_factor",
    {"op": "resize", "scale": 1.5, "method": "BILINEAR"},
    [normal(2, 3, 4, 6)],
    lambda t: tf.raw_ops.ResizeBilinear(images=t, size=(6, 9), align_corners=False, half_pixel_centers=False),
    channels_last=True,
)
for interpolation in ("nearest", "bilinear"):
    case(
        f"upsampling2d_{interpolation}",
        {"op": "upsampling2d", "size": [2, 3], "interpolation": interpolation},
        [normal(2, 3, 3, 4)],
        tf_keras.layers.UpSampling2D((2, 3), interpolation=interpolation),
        channels_last=True,
    )

values["versions"] = np.array(json.dumps({"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__, "keras": keras.__version__}))
np.savez_compressed(OUT, **values)
print(f"wrote {OUT}: {len({k.split('/')[0] for k in values}) - 1} cases, {OUT.stat().st_size} bytes")
