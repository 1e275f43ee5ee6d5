"""Image resizing exactly as TF 1.x's kernels (tf.compat.v1.image.resize_*; tf_semantics.md §10).

Every method is separable: along each of H and W, output position i reads a
few input positions ("taps") with fixed weights. :func:`resize_taps` computes
them as TF's CPU kernels do, in float32 arithmetic, so the index choices at
the boundaries of `floor` and `round` are TF's; the op then gathers the taps
and sums them with their weights, one axis after the other. The gradient is
the exact adjoint of that linear map (TF's ResizeBilinearGrad and friends are
the same adjoint; TF defines no gradient for area resizing).

The coordinate rules (TF's names):
- default (align_corners and half_pixel_centers false): output i reads input
  i * in / out, TF 1.x's default and no mode of F.interpolate;
- align_corners: i * (in - 1) / (out - 1), the corner pixels' centres align;
- half_pixel_centers: (i + 0.5) * in / out - 0.5 (nearest: floor((i + 0.5) * in / out)),
  TF 2's tf.image.resize and PyTorch's align_corners=False.
Bicubic reads TF's 1025-entry coefficient table (a = -0.75; a = -0.5 with
half_pixel_centers, whose out-of-image taps get weight 0 and the rest are
renormalised); area averages the input cells each output cell covers.
"""

from __future__ import annotations

import abc
import functools
import math
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from tfn.layers import imports as im
from tfn.layers.imports import NoMapping
from tfn.layers.attrs import Choice, Size2
from tfn.layers.base import Op, OpError, Params, TensorType, register


# --- import rules (layers/imports.py) ------------------------------------------

_TF_RESIZE = {"ResizeBilinear": "BILINEAR", "ResizeNearestNeighbor": "NEAREST", "ResizeBicubic": "BICUBIC", "ResizeArea": "AREA"}
_KERAS_RESIZE = {"bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC", "area": "AREA"}


def keras_upsampling(f: im.Foreign) -> im.Emitted:
    im.channels_last_only(f)
    interpolation = str(f.attr("interpolation", "nearest")).upper()
    f.require(interpolation in ("NEAREST", "BILINEAR"), f"interpolation {interpolation.lower()}: tfn upsamples NEAREST or BILINEAR")
    return im.Emitted({"size": f.spatial_sizes(f.attr("size", 2), 2, "size"), "interpolation": interpolation})


def tf_resize(f: im.Foreign) -> im.Emitted:
    """TF 1.x's Resize* ops: the size is their constant input; align_corners and half_pixel_centers as given."""
    attrs = {"size": [int(d) for d in f.weight(0).reshape(-1)], "method": _TF_RESIZE[f.kind]}
    return im.Emitted(attrs | {k: bool(f.attr(k, False)) for k in ("align_corners", "half_pixel_centers")})


def keras_resizing(f: im.Foreign) -> im.Emitted:
    """Keras's Resizing layer is tf.image.resize: half-pixel centres, no antialiasing, no cropping or padding."""
    im.channels_last_only(f)
    f.require(not f.attr("crop_to_aspect_ratio", False) and not f.attr("pad_to_aspect_ratio", False), "crop_to_aspect_ratio / pad_to_aspect_ratio")
    method = _KERAS_RESIZE.get(str(f.attr("interpolation", "bilinear")))
    f.require(method is not None, f"interpolation {f.attrs.get('interpolation')}: tfn resizes nearest, bilinear, bicubic and area")
    size = [int(f.attr("height")), int(f.attr("width"))]
    return im.Emitted({"size": size, "method": method, "half_pixel_centers": method != "AREA"})

def _onnx_source(transform: str, i: int, n_in: int, n_out: int, scale) -> float | None:
    """ONNX Resize's coordinate_transformation_mode: where output i samples the input (float32, as onnxruntime)."""
    import numpy as np

    x, s, half = np.float32(i), np.float32(scale), np.float32(0.5)
    if transform == "asymmetric":
        return x / s
    if transform == "align_corners":
        return np.float32(0) if n_out == 1 else x * np.float32(n_in - 1) / np.float32(n_out - 1)
    if transform == "half_pixel" or transform == "pytorch_half_pixel" and n_out > 1:
        return (x + half) / s - half
    if transform == "pytorch_half_pixel":
        return np.float32(0)
    if transform == "tf_half_pixel_for_nn":
        return (x + half) / s
    if transform == "half_pixel_symmetric":
        adjustment = np.float32(n_out) / (s * np.float32(n_in))
        offset = np.float32(n_in) / np.float32(2) * (np.float32(1) - adjustment)
        return offset + (x + half) / s - half
    return None


def onnx_resize_matrix(mode: str, transform: str, nearest_mode: str, cubic_a: float, exclude_outside: bool, n_in: int, n_out: int, scale) -> np.ndarray | None:
    """ONNX Resize along one axis as a matrix [n_out, n_in] (onnxruntime's rules); None for a transform tfn never matches."""
    import numpy as np

    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = _onnx_source(transform, i, n_in, n_out, scale)
        if x is None:
            return None
        if mode == "nearest":
            frac = float(x) - math.floor(x)
            if nearest_mode == "floor":
                j = math.floor(x)
            elif nearest_mode == "ceil":
                j = math.ceil(x)
            elif frac == 0.5:
                j = math.floor(x) if nearest_mode == "round_prefer_floor" else math.ceil(x)
            else:
                j = math.floor(float(x) + 0.5)
            matrix[i, _bound(j, n_in)] = 1.0
        elif mode == "linear":
            x = min(max(float(x), 0.0), float(n_in - 1))
            low = int(x)
            matrix[i, low] += 1.0 - (x - low)
            matrix[i, min(low + 1, n_in - 1)] += x - low
        else:
            base = math.floor(x)
            t = float(x) - base
            a = cubic_a
            weights = [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a, ((a + 2) * t - (a + 3)) * t * t + 1]
            weights += [((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1, ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a]
            taps = [base - 1, base, base + 1, base + 2]
            if exclude_outside:
                weights = [w if 0 <= t_ < n_in else 0.0 for w, t_ in zip(weights, taps)]
                total = sum(weights)
                weights = [w / total for w in weights]
            for t_, w in zip(taps, weights):
                matrix[i, _bound(t_, n_in)] += w
    return matrix


def tf_resize_matrix(method: str, n_in: int, n_out: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """tfn's resize along one axis as a matrix [n_out, n_in] (an axis that keeps its size is left as it is)."""
    import numpy as np

    if n_in == n_out:
        return np.eye(n_in)
    indices, weights = resize_taps(method, n_in, n_out, align_corners, half_pixel_centers)
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        np.add.at(matrix[i], indices[i], weights[i])
    return matrix


_ONNX_METHODS = {"nearest": "NEAREST", "linear": "BILINEAR", "cubic": "BICUBIC"}


#: ONNX Resize's attributes for the TF 1.x resizes (method, align_corners, half_pixel_centers) it can compute:
#: tfn exports a node as this Resize where the two maps are equal for its sizes (:func:`onnx_resize_computes`).
#: TF's bicubic reads a coefficient table, and AREA is no ONNX mode: they export as their arithmetic.
_ONNX_RESIZE = {
    ("NEAREST", False, False): {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    ("NEAREST", True, False): {"mode": "nearest", "coordinate_transformation_mode": "align_corners", "nearest_mode": "round_prefer_ceil"},
    ("NEAREST", False, True): {"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_ceil"},
    ("BILINEAR", False, False): {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
    ("BILINEAR", True, False): {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
    ("BILINEAR", False, True): {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
}


def onnx_resize_attributes(method: str, align_corners: bool, half_pixel_centers: bool) -> dict | None:
    """The attributes of the ONNX Resize that computes this TF 1.x resize; None where ONNX has none."""
    return _ONNX_RESIZE.get((method, align_corners, half_pixel_centers))


def onnx_resize_computes(method: str, align_corners: bool, half_pixel_centers: bool, in_size, out_size) -> bool:
    """Whether ONNX's Resize (:func:`onnx_resize_attributes`, given the output sizes) samples exactly
    the taps of this resize from `in_size` to `out_size`, axis by axis (float32 coordinates, as onnxruntime)."""
    import numpy as np

    attributes = onnx_resize_attributes(method, align_corners, half_pixel_centers)
    if attributes is None:
        return False
    mode, transform = attributes["mode"], attributes["coordinate_transformation_mode"]
    for n_in, n_out in zip(in_size, out_size):
        scale = np.float32(n_out) / np.float32(n_in)
        onnx_map = onnx_resize_matrix(mode, transform, attributes.get("nearest_mode", "round_prefer_floor"), -0.75, False, n_in, n_out, scale)
        if np.abs(onnx_map - tf_resize_matrix(method, n_in, n_out, align_corners, half_pixel_centers)).max() >= 1e-6:
            return False
    return True


def onnx_resize(f: im.Foreign) -> im.Emitted:
    """ONNX Resize (opset 10 on) of the spatial axes of [N, C, H, W]: the TF 1.x resize (method, align_corners,
    half_pixel_centers) whose taps are ONNX's for these sizes, found by comparing the two linear maps; refused
    when none computes the same values (a cubic between the steps of TF's coefficient table, ONNX's
    round_prefer_floor at a tie, antialias, tf_crop_and_resize)."""
    import numpy as np

    f.require(f.rank == 4, f"a rank-{f.rank} input: tfn resizes [N, C, H, W]")
    f.require(len(f.inputs) == 1, "computed scales or sizes")
    mode = str(f.attr("mode", "nearest"))
    # opset 10's Resize (X, scales) has no transformation mode: it is asymmetric
    transform = str(f.attr("coordinate_transformation_mode", "half_pixel" if len(f.sources) > 2 else "asymmetric"))
    f.require(mode in _ONNX_METHODS, f"mode {mode}: tfn resizes nearest, linear and cubic")
    f.require(not f.attr("antialias", 0), "antialias: TF 1.x's resize does not filter")
    f.require(str(f.attr("keep_aspect_ratio_policy", "stretch")) == "stretch", f"keep_aspect_ratio_policy {f.attrs.get('keep_aspect_ratio_policy')}")
    constants = [f.constant(i) for i in range(1, 4)] if f.sources else list(f.weights)
    integers = [c for c in constants if c is not None and c.size and np.issubdtype(c.dtype, np.integer)]
    floats = [c for c in constants if c is not None and c.size and np.issubdtype(c.dtype, np.floating)]
    axes = [int(a) % 4 for a in f.attr("axes", [0, 1, 2, 3])]
    dims = list(f.inputs[0].shape)
    if integers:
        sizes = dict(zip(axes, (int(d) for d in integers[-1].reshape(-1))))
        scales = {a: np.float32(sizes[a]) / np.float32(dims[a]) for a in (2, 3) if a in sizes}
    else:
        given = [c for c in floats if c.size == len(axes)]
        f.require(bool(given), "no scales or sizes")
        scales = dict(zip(axes, (np.float32(v) for v in given[-1].reshape(-1))))
        f.require(all(scales.get(a, 1) == 1 for a in (0, 1)), "a resize of the batch or channel axis")
        sizes = {a: math.floor(dims[a] * float(scales[a])) for a in (2, 3) if a in scales}
    f.require(sizes.get(1, dims[1]) == dims[1], "a resize of the channel axis")
    out = [sizes.get(a, dims[a]) for a in (2, 3)]
    f.require(min(out) >= 1, f"an output of {out} pixels")
    method = _ONNX_METHODS[mode]
    nearest_mode, cubic_a = str(f.attr("nearest_mode", "round_prefer_floor")), float(f.attr("cubic_coeff_a", -0.75))
    onnx_maps = [
        onnx_resize_matrix(mode, transform, nearest_mode, cubic_a, bool(f.attr("exclude_outside", 0)), n, m, scales.get(a, np.float32(1)))
        for a, n, m in zip((2, 3), dims[2:], out)
    ]
    f.require(all(m is not None for m in onnx_maps), f"coordinate_transformation_mode {transform}")
    worst = np.inf
    # the corner rule this transform states comes first: where several give the same taps it is the one exported
    rules = sorted(((False, False), (True, False), (False, True)), key=lambda rule: (_ONNX_RESIZE.get((method, *rule)) or {}).get("coordinate_transformation_mode") != transform)
    for align, half in rules:
        if method == "NEAREST" or not (align and half):
            tf_maps = [tf_resize_matrix(method, n, m, align, half) for n, m in zip(dims[2:], out)]
            difference = max(float(np.abs(t - o).max()) for t, o in zip(tf_maps, onnx_maps))
            if difference < 1e-6:
                return im.Emitted({"size": out, "method": method, "align_corners": align, "half_pixel_centers": half})
            worst = min(worst, difference)
    detail = "; TF 1.x's bicubic reads a 1024-step coefficient table" if method == "BICUBIC" else ""
    raise NoMapping(
        f"mode {mode}, coordinate_transformation_mode {transform}" + (f", nearest_mode {nearest_mode}" if mode == "nearest" else "")
        + f": no TF 1.x resize computes these taps for {dims[2:]} -> {out} (the nearest differs by {worst:.2g}{detail})"
    )


if TYPE_CHECKING:
    import numpy as np

_TABLE_SIZE = 1024


def _scale(n_in: int, n_out: int, align_corners: bool) -> np.float32:
    """TF's CalculateResizeScale, in float32."""
    import numpy as np

    if align_corners and n_out > 1:
        return np.float32(n_in - 1) / np.float32(n_out - 1)
    return np.float32(n_in) / np.float32(n_out)


def _source(i: int, scale: np.float32, half_pixel_centers: bool) -> np.float32:
    """TF's HalfPixelScaler / LegacyScaler: where output i samples the input."""
    import numpy as np

    if half_pixel_centers:
        return (np.float32(i) + np.float32(0.5)) * scale - np.float32(0.5)
    return np.float32(i) * scale


@functools.cache
def _cubic_table(a: float) -> np.ndarray:
    """TF's InitCoeffsTable: [k, 0] is the weight at distance k / 1024, [k, 1] at 1 + k / 1024 (float32)."""
    import numpy as np

    table = np.empty((_TABLE_SIZE + 1, 2), dtype=np.float32)
    for k in range(_TABLE_SIZE + 1):
        x = float(np.float32(k * 1.0 / _TABLE_SIZE))
        table[k, 0] = ((a + 2) * x - (a + 3)) * x * x + 1
        x = float(np.float32(x + 1.0))
        table[k, 1] = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return table


def _bound(i: int, n: int) -> int:
    return min(n - 1, max(0, i))


def resize_taps(method: str, n_in: int, n_out: int, align_corners: bool, half_pixel_centers: bool) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each [n_out, taps]: output i is sum_k weights[i, k] * input[indices[i, k]].

    `method` is NEAREST, BILINEAR, BICUBIC or AREA; the rules are those of
    TF's resize_*_op.cc CPU kernels, computed in float32 as they are.
    """
    import numpy as np

    scale = _scale(n_in, n_out, align_corners)
    rows: list[list[tuple[int, float]]] = []
    if method == "NEAREST":
        for i in range(n_out):
            source = (np.float32(i) + np.float32(0.5)) * scale if half_pixel_centers else np.float32(i) * scale
            # roundf rounds halves away from zero; the source is never negative
            index = math.floor(float(source) + 0.5) if align_corners else math.floor(source)
            index = min(index, n_in - 1)
            rows.append([(max(index, 0) if half_pixel_centers else index, 1.0)])
    elif method == "BILINEAR":
        for i in range(n_out):
            source = _source(i, scale, half_pixel_centers)
            low = np.float32(math.floor(source))
            lerp = float(source - low)
            rows.append([(max(int(low), 0), 1.0 - lerp), (min(math.ceil(source), n_in - 1), lerp)])
    elif method == "BICUBIC":
        table = _cubic_table(-0.5 if half_pixel_centers else -0.75)
        for i in range(n_out):
            source = _source(i, scale, half_pixel_centers)
            base = math.floor(source)
            offset = int(np.rint(np.float32(source - np.float32(base)) * np.float32(_TABLE_SIZE)))  # lrintf: halves to even
            weights = [table[offset, 1], table[offset, 0], table[_TABLE_SIZE - offset, 0], table[_TABLE_SIZE - offset, 1]]
            taps = [base - 1, base, base + 1, base + 2]
            if half_pixel_centers:
                # Keys' kernel: taps outside the image weigh 0 and the rest are renormalised
                weights = [w if 0 <= t < n_in else np.float32(0) for w, t in zip(weights, taps)]
                total = np.float32(weights[0] + weights[1] + weights[2] + weights[3])
                if abs(total) >= 1000 * np.finfo(np.float32).tiny:
                    weights = [w * (np.float32(1) / total) for w in weights]
            rows.append([(_bound(t, n_in), float(w)) for t, w in zip(taps, weights)])
    elif method == "AREA":
        for i in range(n_out):
            start, end = np.float32(i) * scale, np.float32(i + 1) * scale
            taps = []
            for k in range(math.floor(start), math.ceil(end)):
                if k < start:
                    covered = scale if k + 1 > end else np.float32(k + 1) - start
                else:
                    covered = end - np.float32(k) if k + 1 > end else np.float32(1)
                taps.append((_bound(k, n_in), float(covered) / float(scale)))
            rows.append(taps)
    else:
        raise ValueError(f"unknown resize method {method!r}")
    width = max(len(r) for r in rows)
    # pad short rows with weight-0 taps of their own first index (an in-range read)
    indices = np.array([[t for t, _ in r] + [r[0][0]] * (width - len(r)) for r in rows], dtype=np.int64)
    weights = np.array([[w for _, w in r] + [0.0] * (width - len(r)) for r in rows], dtype=np.float64)
    return indices, weights


def separable_resampler(method: str, in_size, out_size, align_corners: bool, half_pixel_centers: bool):
    """A function x [N, C, H, W] -> [N, C, H', W'] that applies :func:`resize_taps` along H, then W."""
    import torch

    axes = []
    for axis, (n_in, n_out) in enumerate(zip(in_size, out_size), 2):
        if n_in == n_out:
            continue  # every method and corner rule maps an axis that keeps its size onto itself
        indices, weights = resize_taps(method, n_in, n_out, align_corners, half_pixel_centers)
        axes.append((axis, n_out, torch.from_numpy(indices), None if method == "NEAREST" else torch.from_numpy(weights)))
    cache: dict = {}

    def on(tensor, like):
        """The taps on `like`'s device (weights in its dtype), moved once per device and dtype."""
        dtype = like.dtype if tensor.is_floating_point() else tensor.dtype
        if torch.compiler.is_compiling():  # a trace (export, compile) sees fake tensors: cache none of them
            return tensor.to(device=like.device, dtype=dtype)
        key = (id(tensor), dtype, like.device)
        if key not in cache:
            cache[key] = tensor.to(device=like.device, dtype=dtype)
        return cache[key]

    def resample(x):
        for axis, n_out, indices, weights in axes:
            taps = indices.shape[1]
            picked = x.index_select(axis, on(indices, x).flatten())
            if weights is None:
                x = picked
                continue
            picked = picked.unflatten(axis, (n_out, taps))
            shape = [1] * picked.dim()
            shape[axis], shape[axis + 1] = n_out, taps
            x = (picked * on(weights, x).view(shape)).sum(axis + 1)
        return x

    return resample


class ResizeParams(Params):
    size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None
    scale: PositiveFloat | Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] | None = None
    method: Choice("NEAREST", "BILINEAR", "BICUBIC", "AREA") = "BILINEAR"
    align_corners: bool = False
    half_pixel_centers: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        if (self.size is None) == (self.scale is None):
            raise ValueError("give size ([height, width]) or scale (a factor, or [height factor, width factor]), one of them")
        if self.align_corners and self.half_pixel_centers:
            raise ValueError("align_corners and half_pixel_centers cannot both be true (as in TF)")
        if self.method == "AREA" and self.half_pixel_centers:
            raise ValueError("AREA has no half_pixel_centers (tf.compat.v1.image.resize_area takes align_corners only)")
        return self


class Resampling(Op, abc.ABC):
    """Shared rules of the resizing ops: [N, C, H, W] -> [N, C, H', W'] through :func:`separable_resampler`."""

    family = "resizing"
    example_inputs = ((2, 3, 4, 5),)

    @abc.abstractmethod
    def geometry(self, p, x: TensorType) -> tuple[tuple[int, int], str, bool, bool]:
        """((H', W'), method, align_corners, half_pixel_centers)."""

    def infer(self, p, inputs):
        (x,) = inputs
        if x.rank != 4:
            raise OpError(f"expects a 4-D input [N, C, H, W], got {x}")
        (height, width), method, _, _ = self.geometry(p, x)
        if method != "NEAREST" and not x.dtype.startswith("float"):
            raise OpError(f"{method} resizing needs a float input, got {x}; cast it first", "method")
        return [TensorType((*x.shape[:2], height, width), x.dtype)]

    def flops(self, p, inputs, outputs):
        x = inputs[0]
        size, method, align, half = self.geometry(p, x)
        if method == "NEAREST":
            return 0
        taps = [resize_taps(method, n, m, align, half)[0].shape[1] for n, m in zip(x.shape[2:], size)]
        # a multiply-add per tap: along H on the input's width, then along W on the output
        return 2 * x.shape[1] * size[0] * (taps[0] * x.shape[3] + taps[1] * size[1])

    def build(self, p, inputs):
        x = inputs[0]
        size, method, align, half = self.geometry(p, x)
        resample = separable_resampler(method, x.shape[2:], size, align, half)

        def resize(xs, v, training):
            return resample(xs[0])

        resize.__name__ = self.name
        return resize

    def build_onnx(self, p, inputs):
        x = inputs[0]
        size, method, align, half = self.geometry(p, x)
        if not x.dtype.startswith("float") or not onnx_resize_computes(method, align, half, x.shape[2:], size):
            return None
        from tfn.layers import onnx_nodes

        return onnx_nodes.as_kernel(self.name, onnx_nodes.resize, list(size), method, align, half)


#: TF 1.x's resize op for each method (what TensorBoard's Graphs tab shows)
TF_RESIZE_OPS = {method: op for op, method in _TF_RESIZE.items()}


@register
class Resize(Resampling):
    """Resizes images exactly as TF 1.x's tf.compat.v1.image.resize_* ops do, corner rules included.

    Give `size: [height, width]` or `scale` (a factor or [height factor,
    width factor]; the output is floor(size * factor)). `method` is
    NEAREST, BILINEAR (the default, as TF's), BICUBIC or AREA.
    `align_corners` and `half_pixel_centers` are TF's flags: both false (TF
    1.x's default) samples input i * in / out, which no mode of PyTorch's
    interpolate does; half_pixel_centers is TF 2's tf.image.resize (and
    PyTorch's align_corners=False); both true is an error, as in TF. Bicubic
    uses TF's coefficient table (a = -0.75, or -0.5 with half-pixel
    centres); AREA averages the covered input cells (no half_pixel_centers).

    Example:
        {op: resize, size: [7, 9], method: BICUBIC, align_corners: true}

    Input [N, C, H, W]; output [N, C, height, width]. Float input, except NEAREST (any dtype).
    """

    name = "resize"
    imports = (
        (im.keras("Resizing", keras_resizing),)
        + tuple(im.tf(kind, tf_resize) for kind in _TF_RESIZE)
        + (im.onnx("Resize", onnx_resize, "the TF 1.x corner rule whose taps ONNX's are"),)
    )
    tf_notes = (
        "tf.compat.v1.image.resize_images(images, size, method, align_corners) and the resize_* ops with half_pixel_centers; "
        "TF 2's tf.image.resize(antialias=False) is half_pixel_centers: true (BICUBIC there uses Keys' kernel without TF 1.x's table)."
    )
    Params = ResizeParams

    def tf_op_name(self, p):
        return TF_RESIZE_OPS[p.method]

    def geometry(self, p, x):
        if p.size is not None:
            size = tuple(p.size)
        else:
            factors = p.scale if isinstance(p.scale, list) else [p.scale, p.scale]
            size = tuple(math.floor(n * f) for n, f in zip(x.shape[2:], factors))
            if min(size) < 1:
                raise OpError(f"scale {p.scale} leaves no pixel of {x}: the output would be {list(size)}", "scale")
        return size, p.method, p.align_corners, p.half_pixel_centers


@register
class Upsampling2D(Resampling):
    """Upsamples images by integer factors, as tf.keras.layers.UpSampling2D.

    `size` is the factor for rows and columns (an int or [rows, columns]).
    `interpolation` NEAREST repeats each pixel; BILINEAR interpolates with
    half-pixel centres, as Keras's (tf.image.resize) does.

    Example:
        {op: upsampling2d, size: 2, interpolation: bilinear}

    Input [N, C, H, W]; output [N, C, H * rows, W * columns].
    """

    name = "upsampling2d"
    imports = (im.keras("UpSampling2D", keras_upsampling),)
    tf_op = "ResizeNearestNeighbor"
    tf_notes = "tf.keras.layers.UpSampling2D(size, interpolation) with data_format channels_first; TF 1.x's resize with other corner rules is `resize`."

    class Params(Params):
        size: Size2 = [2, 2]
        interpolation: Choice("NEAREST", "BILINEAR") = "NEAREST"

    def tf_op_name(self, p):
        return TF_RESIZE_OPS[p.interpolation]

    def geometry(self, p, x):
        return (x.shape[2] * p.size[0], x.shape[3] * p.size[1]), p.interpolation, False, True
