"""Structural ops: combine, reshape and pad tensors (no variables)."""

from __future__ import annotations

import abc
import math
from typing import Annotated

from pydantic import Field, field_validator

from tfn.layers import imports as im
from tfn.layers.attrs import Choice, EdgePairs2D, resolve_axis
from tfn.layers.base import Op, OpError, Params, TensorType, register


# --- import rules (layers/imports.py) ------------------------------------------


def elementwise_inputs(f: im.Foreign) -> im.Emitted:
    """Add / Multiply of computed tensors of one shape (a constant operand or broadcasting has no mapping)."""
    f.require(
        not f.weights,
        f"a constant operand of shape {list(f.weights[0].shape) if f.weights else []}: tfn's add and multiply take computed tensors "
        "(a constant added right after a layer with weights is folded into it as its bias)",
    )
    f.require(len({x.shape[1:] for x in f.inputs}) == 1, "inputs of different shapes (broadcasting)")
    return im.Emitted(feature_order=im.same_order(f))


def concat_axis(f: im.Foreign) -> im.Emitted:
    """Keras Concatenate / ONNX Concat (`axis`), TF ConcatV2 (the axis is its last, constant input)."""
    axis = int(f.weight(len(f.weights) - 1)) if f.framework == "tf" else f.attr("axis", -1)
    axis = f.axis(axis)
    orders = [f.order(i) for i in range(len(f.inputs))]
    if axis != 1 or f.rank != 2 or not any(o is not None for o in orders):
        f.require(all(o is None for o in orders), "concatenating features flattened from an NHWC tensor along another axis")
        return im.Emitted({"axis": axis})
    joined, start = [], 0
    for x, order in zip(f.inputs, orders):
        joined += [start + i for i in (order if order is not None else range(x.shape[1]))]
        start += x.shape[1]
    return im.Emitted({"axis": axis}, feature_order=tuple(joined))


def _target_shape(f: im.Foreign, shape: list[int]) -> im.Emitted:
    """A per-sample target shape (the source's layout) as tfn's reshape."""
    if len(shape) == 1:  # flattening: a features-last input keeps the source's order through feature_order
        from tfn.layers.core import flatten_order

        return im.Emitted({"shape": shape}, feature_order=flatten_order(f))
    f.require(f.order(0) is None, "a reshape of features flattened from an NHWC tensor")
    if not f.channels_last:
        return im.Emitted({"shape": shape})
    # the source reshapes its features-last tensor: back to that layout, reshape, then channels-first again
    rank = len(shape) + 1
    then = (im.Emitted({"shape": shape}, op="reshape"), im.Emitted({"perm": im.to_channels_first(rank)}, op="transpose"))
    if f.rank > 2:
        back = im.to_channels_first(f.rank)
        return im.Emitted({"perm": [back.index(i) for i in range(f.rank)]}, op="transpose", then=then)
    return im.Emitted({"shape": shape}, then=then[1:])


def keras_cropping(f: im.Foreign) -> im.Emitted:
    im.channels_last_only(f)
    return im.Emitted({"cropping": f.attr("cropping")})


def keras_center_crop(f: im.Foreign) -> im.Emitted:
    """Keras CenterCrop of a larger image: the centred window (the odd cell off the end), as cropping2d."""
    im.channels_last_only(f)
    f.require(f.rank == 4, f"a rank-{f.rank} input: CenterCrop takes images")
    _, height, width = f.inputs[0].sample_shape
    h, w = int(f.attr("height")), int(f.attr("width"))
    f.require(height >= h and width >= w, f"{h}x{w} from a {height}x{width} image: Keras resizes an image smaller than the crop")
    top, left = (height - h) // 2, (width - w) // 2
    return im.Emitted({"cropping": [[top, height - h - top], [left, width - w - left]]})


def keras_reshape(f: im.Foreign) -> im.Emitted:
    return _target_shape(f, [int(d) for d in f.attr("target_shape")])


def batched_reshape(f: im.Foreign) -> im.Emitted:
    """TF / ONNX Reshape with a constant shape whose first entry is the batch (-1, or ONNX's 0)."""
    shape = [int(d) for d in f.weight(0).reshape(-1)]
    f.require(len(shape) >= 2 and (shape[0] in (-1, 0) or -1 in shape[1:]), f"shape {shape} does not keep the batch axis first")
    rest = shape[1:]
    if shape[0] not in (-1, 0):  # the batch is fixed and a later entry is inferred: not per sample
        f.require(False, f"shape {shape} fixes the batch size")
    return _target_shape(f, rest)


def keras_zero_padding(f: im.Foreign) -> im.Emitted:
    im.channels_last_only(f)
    spatial = f.rank - 2
    given = f.attr("padding", 1)
    if isinstance(given, int):
        pairs = [[given, given]] * spatial
    else:
        pairs = [[p, p] if isinstance(p, int) else list(p) for p in given]
        if spatial == 1 and len(pairs) == 2 and all(len(p) == 2 and p[0] == p[1] for p in pairs):
            pairs = [[given[0], given[1]]]  # ZeroPadding1D's (left, right)
    f.require(len(pairs) == spatial, f"padding {given!r} for {spatial} spatial axes")
    return im.Emitted({"paddings": [[0, 0], [0, 0]] + pairs})


def tf_pad(f: im.Foreign) -> im.Emitted:
    pairs = [[int(a), int(b)] for a, b in f.weight(0)]
    if f.channels_last and len(pairs) >= 3:
        pairs = [pairs[0], pairs[-1], *pairs[1:-1]]
    attrs = {"paddings": pairs, "mode": str(f.attr("mode", "CONSTANT")).upper()}
    if len(f.weights) > 1:
        attrs["constant_values"] = float(f.weight(1))
    return im.Emitted(attrs)


def onnx_pad(f: im.Foreign) -> im.Emitted:
    pads = [int(p) for p in f.weight(0)]
    rank = f.rank
    f.require(len(f.weights) < 3, "Pad with axes")
    f.require(len(pads) == 2 * rank, f"pads {pads} for a rank-{rank} input")
    mode = str(f.attr("mode", "constant")).upper()
    f.require(mode in ("CONSTANT", "REFLECT"), f"mode {mode.lower()}: tfn pads CONSTANT, REFLECT and SYMMETRIC")
    attrs = {"paddings": [[pads[i], pads[i + rank]] for i in range(rank)], "mode": mode}
    if len(f.weights) > 1 and f.weights[1] is not None and f.weights[1].size:
        attrs["constant_values"] = float(f.weights[1].reshape(-1)[0])
    return im.Emitted(attrs)


def same_types(inputs) -> TensorType:
    """The one type of every input, or OpError naming the first that differs."""
    first = inputs[0]
    for i, other in enumerate(inputs[1:], 1):
        if other.shape[1:] != first.shape[1:] or other.dtype != first.dtype:
            raise OpError(f"needs inputs of one shape and dtype: input 0 is {first}, input {i} is {other}", "inputs")
    return first


class Combine(Op):
    """Shared rules of n-ary element-wise ops: every input has the same shape (no broadcasting)."""

    family = "structure"
    arity = (2, None)

    def infer(self, p, inputs):
        return [same_types(inputs)]

    def flops(self, p, inputs, outputs):
        return (len(inputs) - 1) * outputs[0].sample_size


@register
class Add(Combine):
    """Element-wise sum of two or more tensors of the same shape, as tf.add_n.

    Residual connections use it. Shapes must agree exactly: there is no
    broadcasting, so a mistake shows at `tfn check`, not as a silent expand.

    Example:
        {op: add, inputs: [conv1, conv2]}

    Inputs [N, ...] each, all the same shape; output the same shape.
    """

    name = "add"
    imports = (im.keras("Add", elementwise_inputs), im.tf("Add", elementwise_inputs), im.tf("AddV2", elementwise_inputs), im.tf("AddN", elementwise_inputs), im.onnx("Add", elementwise_inputs), im.onnx("Sum", elementwise_inputs))
    example_inputs = ((2, 3, 4, 4), (2, 3, 4, 4))

    def build(self, p, inputs):
        def add(xs, v, training):
            out = xs[0] + xs[1]
            for x in xs[2:]:
                out = out + x
            return out

        return add


@register
class Multiply(Combine):
    """Element-wise product of two or more tensors of the same shape, as tf.multiply.

    Example:
        {op: multiply, inputs: [features, gate]}

    Inputs [N, ...] each, all the same shape; output the same shape.
    """

    name = "multiply"
    imports = (im.keras("Multiply", elementwise_inputs), im.tf("Mul", elementwise_inputs), im.onnx("Mul", elementwise_inputs))
    example_inputs = ((2, 3, 4), (2, 3, 4))

    def build(self, p, inputs):
        def multiply(xs, v, training):
            out = xs[0] * xs[1]
            for x in xs[2:]:
                out = out * x
            return out

        return multiply


@register
class Concat(Op):
    """Joins tensors along one axis, as tf.concat.

    `axis` counts in the channels-first layout with the batch axis as 0; the
    default 1 is the channel axis (TF's usual -1 in NHWC). Every other axis
    must agree.

    Example:
        {op: concat, inputs: [branch1, branch2], axis: 1}

    Inputs [N, C_i, ...]; output [N, sum(C_i), ...].
    """

    name = "concat"
    imports = (im.keras("Concatenate", concat_axis), im.tf("ConcatV2", concat_axis), im.onnx("Concat", concat_axis))
    family = "structure"
    arity = (1, None)
    pure_data_movement = True
    tf_notes = "tf.concat(values, axis); axis counts channels-first, batch is 0 (TF NHWC -1 is tfn 1)."
    example_inputs = ((2, 3, 4, 4), (2, 5, 4, 4))

    class Params(Params):
        axis: int = 1

    def infer(self, p, inputs):
        first = inputs[0]
        axis = resolve_axis(p.axis, first.rank)
        for i, other in enumerate(inputs[1:], 1):
            rest = [d for k, d in enumerate(first.shape) if k not in (0, axis)]
            if other.rank != first.rank or [d for k, d in enumerate(other.shape) if k not in (0, axis)] != rest or other.dtype != first.dtype:
                raise OpError(
                    f"inputs must agree on every axis but axis {axis}: input 0 is {first}, input {i} is {other}", "inputs"
                )
        size = sum(x.shape[axis] for x in inputs)
        shape = list(first.shape)
        shape[axis] = size
        return [TensorType(tuple(shape), first.dtype)]

    def build(self, p, inputs):
        import torch

        axis = p.axis % inputs[0].rank

        def concat(xs, v, training):
            return torch.cat(list(xs), axis)

        return concat


@register
class Identity(Op):
    """Passes its input through unchanged, as tf.identity.

    Useful to give a tensor a name to fetch, or to hang control dependencies
    (`after:`) on.

    Example:
        {op: identity, name: features}

    Input any shape; output the same tensor.
    """

    name = "identity"
    imports = (im.keras("Identity"), im.keras_activation("linear"))
    tf_op = "Identity"
    family = "structure"
    pure_data_movement = True
    example_inputs = ((2, 3, 4),)

    def infer(self, p, inputs):
        return [inputs[0]]

    def build(self, p, inputs):
        def identity(xs, v, training):
            return xs[0]

        return identity


@register
class Reshape(Op):
    """Reshapes each sample, as tf.reshape with the batch axis kept.

    `shape` is the target shape of one sample (without the batch axis), in
    channels-first order; one entry may be -1 and is inferred from the rest.

    Example:
        {op: reshape, shape: [4, -1]}

    Input [N, d1, ..., dk]; output [N, *shape] with the same number of elements per sample.
    """

    name = "reshape"
    imports = (im.keras("Reshape", keras_reshape), im.tf("Reshape", batched_reshape), im.onnx("Reshape", batched_reshape))
    family = "structure"
    pure_data_movement = True
    tf_notes = "tf.reshape(x, [-1, *shape]): give the per-sample shape; the batch axis is kept."
    example_inputs = ((2, 3, 4, 4),)

    class Params(Params):
        shape: list[int] = Field(min_length=1)

        @field_validator("shape")
        @classmethod
        def _sizes(cls, shape):
            if any(d == 0 or d < -1 for d in shape):
                raise ValueError(f"every entry must be positive, or -1 once, got {shape}")
            if shape.count(-1) > 1:
                raise ValueError(f"only one entry may be -1, got {shape}")
            return shape

    def infer(self, p, inputs):
        (x,) = inputs
        size = x.sample_size
        known = math.prod(d for d in p.shape if d != -1)
        if -1 in p.shape:
            if size % known:
                raise OpError(f"cannot reshape {x} ({size} values per sample) to {p.shape}: {size} is not a multiple of {known}", "shape")
            shape = [size // known if d == -1 else d for d in p.shape]
        else:
            if known != size:
                raise OpError(f"cannot reshape {x} ({size} values per sample) to {p.shape} ({known} values)", "shape")
            shape = list(p.shape)
        return [TensorType((x.shape[0], *shape), x.dtype)]

    def build(self, p, inputs):
        shape = tuple(self.infer(p, inputs)[0].shape[1:])

        def reshape(xs, v, training):
            return xs[0].reshape(xs[0].shape[0], *shape)

        return reshape


@register
class Pad(Op):
    """Pads a tensor, as tf.pad.

    `paddings` has one `[before, after]` pair per axis, the batch axis first
    (TF's layout of the argument), in channels-first order; the batch pair
    must be [0, 0]. Modes: CONSTANT (with `constant_values`), REFLECT (the
    edge is not repeated; each pad must be smaller than its axis) and
    SYMMETRIC (the edge is repeated; each pad at most the axis size).

    Example:
        {op: pad, paddings: [[0, 0], [0, 0], [1, 1], [2, 2]], mode: REFLECT}

    Input [N, d1, ..., dk]; output [N, d1 + before1 + after1, ...].
    """

    name = "pad"
    imports = tuple(im.keras(f"ZeroPadding{d}D", keras_zero_padding) for d in (1, 2, 3)) + tuple(im.tf(k, tf_pad) for k in ("Pad", "PadV2", "MirrorPad")) + (im.onnx("Pad", onnx_pad),)
    family = "structure"
    pure_data_movement = True
    tf_notes = "tf.pad(tensor, paddings, mode, constant_values); paddings follow channels-first order (TF NHWC: permute them)."
    example_inputs = ((2, 2, 3, 4),)

    class Params(Params):
        paddings: list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]] = Field(min_length=1)
        mode: Choice("CONSTANT", "REFLECT", "SYMMETRIC") = "CONSTANT"
        constant_values: float = 0.0

    def tf_op_name(self, p):
        if p.mode != "CONSTANT":
            return "MirrorPad"
        return "PadV2" if p.constant_values else "Pad"

    def infer(self, p, inputs):
        (x,) = inputs
        if len(p.paddings) != x.rank:
            raise OpError(f"has {len(p.paddings)} pairs for a rank-{x.rank} input {x}; give one [before, after] per axis, the batch axis first", "paddings")
        if p.paddings[0] != [0, 0]:
            raise OpError(f"the batch axis cannot be padded, got {p.paddings[0]}; its pair must be [0, 0]", "paddings")
        for axis, ((before, after), n) in enumerate(zip(p.paddings[1:], x.shape[1:]), 1):
            limit = n - 1 if p.mode == "REFLECT" else n
            if p.mode != "CONSTANT" and max(before, after) > limit:
                raise OpError(f"{p.mode} padding of axis {axis} (size {n}) must be at most {limit} on each side, got {[before, after]}", "paddings")
        shape = (x.shape[0], *(n + before + after for n, (before, after) in zip(x.shape[1:], p.paddings[1:])))
        return [TensorType(shape, x.dtype)]

    def build(self, p, inputs):
        import torch
        import torch.nn.functional as F

        (x,) = inputs
        if p.mode == "CONSTANT":
            pads = tuple(v for before, after in reversed(p.paddings[1:]) for v in (before, after))
            value = p.constant_values

            def pad(xs, v, training):
                return F.pad(xs[0], pads, value=value)

            return pad

        # REFLECT and SYMMETRIC for any rank: gather with mirrored indices, axis by axis
        symmetric = p.mode == "SYMMETRIC"
        gathers = []
        for axis, ((before, after), n) in enumerate(zip(p.paddings[1:], x.shape[1:]), 1):
            if before or after:
                index = [_mirror(i, n, symmetric) for i in range(-before, n + after)]
                gathers.append((axis, torch.tensor(index)))

        def pad(xs, v, training):
            out = xs[0]
            for axis, index in gathers:
                out = out.index_select(axis, index.to(out.device))
            return out

        return pad


def _mirror(i: int, n: int, symmetric: bool) -> int:
    """The source index of position i of an axis of size n padded by mirroring."""
    if i < 0:
        return -i - 1 if symmetric else -i
    if i >= n:
        return 2 * n - 1 - i if symmetric else 2 * (n - 1) - i
    return i


class Edges2D(Op, abc.ABC):
    """Shared rules of Keras's 2-D cropping and zero padding: [[top, bottom], [left, right]] on [N, C, H, W]."""

    family = "structure"
    pure_data_movement = True
    example_inputs = ((2, 3, 6, 7),)
    #: +1 pads the edges, -1 crops them
    direction: int
    #: the attribute that holds the edges
    field: str

    @abc.abstractmethod
    def edges(self, p) -> list[list[int]]:
        """[[top, bottom], [left, right]] from the op's attribute."""

    def infer(self, p, inputs):
        (x,) = inputs
        if x.rank != 4:
            raise OpError(f"expects a 4-D input [N, C, H, W], got {x}")
        (top, bottom), (left, right) = self.edges(p)
        height, width = x.shape[2] + self.direction * (top + bottom), x.shape[3] + self.direction * (left + right)
        if height < 1 or width < 1:
            raise OpError(f"cropping {self.edges(p)} leaves nothing of {x}: each axis must keep at least one row or column", self.field)
        return [TensorType((*x.shape[:2], height, width), x.dtype)]


@register
class Cropping2D(Edges2D):
    """Crops rows and columns off the edges of an image, as tf.keras.layers.Cropping2D.

    `cropping` is an int (every edge), [rows, columns] (both edges of each
    axis) or [[top, bottom], [left, right]], as Keras takes it.

    Example:
        {op: cropping2d, cropping: [[1, 0], [2, 2]]}

    Input [N, C, H, W]; output [N, C, H - top - bottom, W - left - right].
    """

    name = "cropping2d"
    imports = (im.keras("Cropping2D", keras_cropping), im.keras("CenterCrop", keras_center_crop))
    tf_op = "StridedSlice"
    direction, field = -1, "cropping"
    tf_notes = "tf.keras.layers.Cropping2D(cropping) with data_format channels_first."

    class Params(Params):
        cropping: EdgePairs2D = [[0, 0], [0, 0]]

    def edges(self, p):
        return p.cropping

    def build(self, p, inputs):
        (top, bottom), (left, right) = p.cropping
        _, _, height, width = inputs[0].shape
        rows, columns = slice(top, height - bottom), slice(left, width - right)

        def cropping2d(xs, v, training):
            return xs[0][:, :, rows, columns]

        return cropping2d


@register
class ZeroPadding2D(Edges2D):
    """Pads an image with rows and columns of zeros, as tf.keras.layers.ZeroPadding2D.

    `padding` is an int (every edge), [rows, columns] (both edges of each
    axis) or [[top, bottom], [left, right]], as Keras takes it.

    Example:
        {op: zero_padding2d, padding: [[1, 0], [1, 0]]}

    Input [N, C, H, W]; output [N, C, H + top + bottom, W + left + right].
    """

    name = "zero_padding2d"
    tf_op = "Pad"
    direction, field = 1, "padding"
    tf_notes = "tf.keras.layers.ZeroPadding2D(padding) with data_format channels_first; `pad` is tf.pad for any rank and mode."

    class Params(Params):
        padding: EdgePairs2D = [[1, 1], [1, 1]]

    def edges(self, p):
        return p.padding

    def build(self, p, inputs):
        import torch.nn.functional as F

        (top, bottom), (left, right) = p.padding

        def zero_padding2d(xs, v, training):
            return F.pad(xs[0], (left, right, top, bottom))

        return zero_padding2d
