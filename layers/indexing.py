"""Tensor plumbing: transpose, slice, split, gather, squeeze, expand_dims, tile, stack, cast.

TF's ops with the batch axis kept where it is (tf_semantics.md §10): axis
attributes count channels-first with the batch as 0, and axis 0 is never
moved, sliced, split, squeezed or tiled. Attributes that list every axis
(transpose's perm, slice's begin/size, tile's multiples) list the batch axis
first, as TF's arguments do, and fix its entry.
"""

from __future__ import annotations

import math
from typing import Annotated, Sequence

from pydantic import Field, PositiveInt, field_validator

from tfn.layers import imports as im
from tfn.layers.attrs import DType, resolve_axis
from tfn.layers.base import IndexRangeError, Op, OpError, Params, TensorType, register
from tfn.layers.structure import same_types


# --- import rules (layers/imports.py) ------------------------------------------


def permutation(f: im.Foreign) -> im.Emitted:
    """Keras Permute (`dims` from 1, the batch left out), TF Transpose (a constant perm), ONNX Transpose (`perm`),
    converted to the transpose of tfn's channels-first tensors."""
    if f.framework == "keras":
        source = [0, *(int(d) for d in f.attr("dims"))]
    elif f.framework == "tf":
        source = [int(d) for d in f.weight(0).reshape(-1)]
    else:
        source = [int(d) for d in f.attr("perm", list(reversed(range(f.rank))))]
    f.require(sorted(source) == list(range(f.rank)) and source[0] == 0, f"perm {source} moves the batch axis or is not a permutation")
    f.require(f.order(0) is None, "a transpose of features flattened from an NHWC tensor")
    return im.Emitted({"perm": im.tfn_perm(source, f.rank) if f.channels_last else source})


def source_dims(f: im.Foreign, index: int = 0) -> list[int | None]:
    """Input `index`'s shape in the source's layout (features last for TF and Keras), the batch as None."""
    t = f.inputs[index]
    return [t.shape[a] for a in im.source_order(f, t.rank)]


def _batch_untouched(entry) -> bool:
    """A NumPy index entry that keeps the whole batch axis (TF's masks or an end past any batch)."""
    return isinstance(entry, slice) and entry.start in (None, 0) and entry.step in (None, 1) and (entry.stop is None or entry.stop >= 2**31 - 1)


def indexed(f: im.Foreign, index: tuple) -> im.Emitted:
    """Input 0 indexed by `index` as NumPy takes it on the source's layout (slices of step 1, ints that drop an
    axis, None for a new axis, one Ellipsis): tfn's slice, then squeeze / expand_dims / a transpose (im.regroup)."""
    dims, axes = source_dims(f), im.source_order(f)
    rank = len(dims)
    specified = sum(1 for e in index if e is not None and e is not Ellipsis)
    f.require(specified <= rank, f"an index of {specified} axes for a rank-{rank} input")
    entries: list = []
    for e in index:
        entries += [slice(None)] * (rank - specified) if e is Ellipsis else [e]
        specified = rank if e is Ellipsis else specified
    entries += [slice(None)] * (rank - specified)
    begin, size, sliced = [0] * rank, [-1] * rank, False
    source_out, axis = [], 0
    for e in entries:
        if e is None:
            source_out.append(f"new{len(source_out)}")
            continue
        n, tfn_axis = dims[axis], axes[axis]
        if axis == 0:
            f.require(_batch_untouched(e), "an index of the batch axis")
            source_out.append(tfn_axis)
        elif isinstance(e, slice):
            start, stop, step = e.indices(n)
            f.require(step == 1, f"step {step} on axis {axis}: tfn's slice takes every element")
            f.require(stop > start, f"an empty slice of axis {axis}")
            begin[tfn_axis], size[tfn_axis] = start, stop - start
            sliced |= stop - start != n
            source_out.append(tfn_axis)
        else:
            f.require(-n <= int(e) < n, f"index {int(e)} is out of range for axis {axis} of size {n}")
            begin[tfn_axis], size[tfn_axis], sliced = int(e) % n, 1, sliced or n != 1
        axis += 1
    steps = [im.Emitted({"begin": begin, "size": size}, op="slice")] if sliced else []
    return im.chain(steps + im.regroup(f, source_out))


def strided_index(begin, end, strides, masks: dict) -> tuple:
    """TF's StridedSlice arguments (constants) and its bit masks as the NumPy index that takes the same elements."""

    def bit(mask: str, i: int) -> bool:
        return bool(int(masks.get(mask, 0) or 0) >> i & 1)

    index: list = []
    for i in range(len(begin)):
        if bit("ellipsis_mask", i):
            index.append(Ellipsis)
        elif bit("new_axis_mask", i):
            index.append(None)
        elif bit("shrink_axis_mask", i):
            index.append(int(begin[i]))
        else:
            index.append(slice(None if bit("begin_mask", i) else int(begin[i]), None if bit("end_mask", i) else int(end[i]), int(strides[i])))
    return tuple(index)


def tf_slice(f: im.Foreign) -> im.Emitted:
    """TF Slice (constant begin and size, -1: to the end) and StridedSlice (constant begin, end and strides; masks)."""
    f.require(len(f.inputs) == 1, "computed begin / end / size")
    if f.kind == "Slice":
        begin, size = (f.weight(i).reshape(-1) for i in (0, 1))
        return indexed(f, tuple(slice(int(b), None if s == -1 else int(b + s)) for b, s in zip(begin, size)))
    begin, end, strides = (f.weight(i).reshape(-1) for i in (0, 1, 2))
    return indexed(f, strided_index(begin, end, strides, f.attrs))


def onnx_slice(f: im.Foreign) -> im.Emitted:
    """ONNX Slice: starts, ends, axes and steps as constant inputs (opset 10 on) or attributes (opset 1)."""
    f.require(len(f.inputs) == 1, "computed starts / ends")
    given = [f.constant(i) for i in range(1, 5)] if len(f.sources) > 1 else [f.attrs.get(k) for k in ("starts", "ends", "axes", "steps")]
    starts, ends, axes, steps = ([int(v) for v in (value.reshape(-1) if hasattr(value, "reshape") else value)] if value is not None else None for value in given)
    f.require(starts is not None and ends is not None, "no starts or ends")
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    index = [slice(None)] * f.rank
    for axis, start, end, step in zip(axes, starts, ends, steps):
        index[axis % f.rank] = slice(start, end, step)
    return indexed(f, tuple(index))


def keras_cropping_nd(f: im.Foreign) -> im.Emitted:
    """Keras Cropping1D / Cropping3D: (start, end) cells off each spatial axis, as a slice."""
    im.channels_last_only(f)
    spatial, given = f.rank - 2, f.attr("cropping")
    if isinstance(given, int):
        pairs = [[given, given]] * spatial
    elif spatial == 1:
        pairs = [list(given)]
    else:
        pairs = [[p, p] if isinstance(p, int) else list(p) for p in given]
    f.require(len(pairs) == spatial and all(len(p) == 2 for p in pairs), f"cropping {given!r} for {spatial} spatial axes")
    dims = source_dims(f)
    return indexed(f, (slice(None), *(slice(a, dims[1 + i] - b) for i, (a, b) in enumerate(pairs))))


def gather_indices(f: im.Foreign) -> im.Emitted:
    """TF GatherV2 / ONNX Gather. Constant indices (one index, or a run of consecutive ones) are a slice, each index
    of the axis repeated alike (nearest-neighbour upsampling) reshape + tile + reshape; TF's
    batch_dims=1 of two computed tensors is tfn's gather; ONNX's lookup of computed ids in a constant table is an
    embedding (:func:`table_lookup`)."""
    import numpy as np

    if f.constant(0) is not None and f.framework == "onnx":
        return table_lookup(f)
    f.require(f.constant(0) is None, "a lookup in a constant table (an embedding): tfn's gather takes its params from the graph")
    axis = int(f.constant(2) if f.framework == "tf" else f.attr("axis", 0))
    ids = f.constant(1)
    if ids is None:
        batch_dims = int(f.attr("batch_dims", 0)) if f.framework == "tf" else 0
        f.require(batch_dims == 1, "computed indices that pick across the batch (tfn's gather picks within each sample: TF's batch_dims=1)")
        f.require(f.inputs[1].rank == 2, f"indices of rank {f.inputs[1].rank}: tfn's gather takes them [N, k] here")
        axis = f.axis(axis)
        f.require(axis != 0, "gathering along the batch axis")
        return im.Emitted({"axis": axis})
    dims = source_dims(f)
    f.require(-len(dims) <= axis < len(dims), f"axis {axis} is out of range for a rank-{len(dims)} input")
    axis %= len(dims)
    f.require(axis != 0, "gathering along the batch axis")
    ids = np.asarray(ids, dtype=np.int64)
    index: list = [slice(None)] * len(dims)
    if ids.ndim == 0:
        index[axis] = int(ids)
    else:
        flat = [int(i) % dims[axis] for i in ids.reshape(-1)]
        times = len(flat) // dims[axis]
        if ids.ndim == 1 and times > 1 and flat == [i for i in range(dims[axis]) for _ in range(times)] and (f.rank > 2 or f.order(0) is None):
            return repeat_cells(f.inputs[0].sample_shape, [times if k + 1 == f.axis(axis) else 1 for k in range(f.rank - 1)])
        f.require(
            ids.ndim == 1 and flat == list(range(flat[0], flat[0] + len(flat))),
            f"indices {ids.tolist()}: tfn's slice takes one run of consecutive indices (or each index of the axis repeated alike: an upsampling)",
        )
        index[axis] = slice(flat[0], flat[-1] + 1)
    return indexed(f, tuple(index))


def table_lookup(f: im.Foreign) -> im.Emitted:
    """ONNX Gather of computed integer ids [N, ...] from a constant table [V, D] on axis 0 (how tfn's own export,
    and PyTorch's nn.Embedding, write an embedding): tfn's embedding, whose [N, D, ...] is then transposed to
    Gather's [N, ..., D]."""
    table = f.constant(0)
    f.require(f.constant(1) is None, "a constant table read at constant indices: arithmetic on constants")
    f.require(int(f.attr("axis", 0)) == 0 and table.ndim == 2, f"a lookup along axis {f.attr('axis', 0)} of a rank-{table.ndim} constant: tfn's embedding reads rows of a [V, D] table")
    ids = f.inputs[0]
    f.require(ids.dtype.startswith(("int", "uint")), f"ids {ids}: an embedding reads integer ids")
    embedding = im.Emitted({"input_dim": int(table.shape[0]), "output_dim": int(table.shape[1])}, {"embeddings": table}, op="embedding")
    if ids.rank < 2:
        return embedding
    features_last = [0, *range(2, ids.rank + 1), 1]
    return im.chain([embedding, im.Emitted({"perm": features_last}, op="transpose")])


def split_sizes(f: im.Foreign) -> im.Emitted:
    """TF Split (axis, value; num_split) / SplitV (value, sizes, axis) and ONNX Split (split input or attribute, or
    num_outputs pieces: ONNX's last piece may be smaller)."""
    if f.kind == "Split" and f.framework == "tf":
        axis, pieces = int(f.constant(0)), int(f.attr("num_split"))
    elif f.framework == "tf":
        axis, pieces = int(f.constant(2)), [int(s) for s in f.constant(1).reshape(-1)]
    else:
        axis = int(f.attr("axis", 0))
        split = f.constant(1) if f.constant(1) is not None else f.attrs.get("split")
        pieces = [int(s) for s in split] if split is not None else int(f.attr("num_outputs"))
    tfn_axis = f.axis(axis)
    f.require(tfn_axis != 0, "a split of the batch axis")
    n = f.inputs[0].shape[tfn_axis]
    if isinstance(pieces, int) and n % pieces and f.framework == "onnx":
        step = -(-n // pieces)
        pieces = [step] * (pieces - 1) + [n - step * (pieces - 1)]
    return im.Emitted({"num_or_size_splits": pieces, "axis": tfn_axis})


def squeeze_axes(f: im.Foreign) -> im.Emitted:
    """TF Squeeze (squeeze_dims), ONNX Squeeze (axes input or attribute); none given: every size-1 axis after the batch."""
    given = f.attr("squeeze_dims", None) if f.framework == "tf" else f.constant(1) if f.constant(1) is not None else f.attrs.get("axes")
    dims = source_dims(f)
    axes = {int(a) % len(dims) for a in (list(given.reshape(-1)) if hasattr(given, "reshape") else given or [])}
    axes = axes or {a for a in range(1, len(dims)) if dims[a] == 1}
    f.require(0 not in axes, "a squeeze of the batch axis")
    f.require(all(dims[a] == 1 for a in axes), f"axes {sorted(axes)} of a {dims[1:]} sample are not all of size 1")
    return im.chain(im.regroup(f, [a for k, a in enumerate(im.source_order(f)) if k not in axes]))


def new_axes(f: im.Foreign) -> im.Emitted:
    """TF ExpandDims (a constant axis), ONNX Unsqueeze (axes input or attribute; several: one expand_dims each)."""
    given = f.constant(1) if f.constant(1) is not None else f.attrs.get("axes")
    f.require(given is not None, "no axes")
    given = [int(a) for a in (given.reshape(-1) if hasattr(given, "reshape") else given)]
    rank = f.rank + len(given)
    axes = sorted(a % rank for a in given)
    f.require(0 not in axes, "a new axis before the batch axis")
    source_out: list = im.source_order(f)
    for k, a in enumerate(axes):
        source_out.insert(a, f"new{k}")
    return im.chain(im.regroup(f, source_out))


def tile_multiples(f: im.Foreign) -> im.Emitted:
    """TF Tile / ONNX Tile: a constant multiple per axis (the source's order), the batch's 1."""
    multiples = [int(m) for m in f.weight(0).reshape(-1)]
    f.require(len(multiples) == f.rank, f"multiples {multiples} for a rank-{f.rank} input")
    f.require(multiples[0] == 1, f"multiples {multiples} tile the batch axis")
    tfn = [1] * f.rank
    for source, axis in enumerate(im.source_order(f)):
        tfn[axis] = multiples[source]
    return im.Emitted({"multiples": tfn})


def keras_repeat_vector(f: im.Foreign) -> im.Emitted:
    """Keras RepeatVector(n): [N, F] -> [N, n, F] features-last, tfn's [N, F, n]: a new last axis, tiled n times."""
    f.require(f.rank == 2, f"a rank-{f.rank} input: RepeatVector takes [N, F]")
    f.require(f.order(0) is None, "a RepeatVector of features flattened from an NHWC tensor")
    steps = im.regroup(f, [0, "new", 1])
    return im.chain([*steps, im.Emitted({"multiples": [1, 1, int(f.attr("n"))]}, op="tile")])


def keras_upsampling_nd(f: im.Foreign) -> im.Emitted:
    """Keras UpSampling1D / UpSampling3D (each cell repeated `size` times along each spatial axis): a size-1 axis
    after each spatial axis, tiled, then merged back (reshape, tile, reshape)."""
    im.channels_last_only(f)
    sizes = f.spatial_sizes(f.attr("size", 2), f.rank - 2, "size")
    return repeat_cells(f.inputs[0].sample_shape, [1, *sizes])


def repeat_cells(sample: Sequence[int], sizes: Sequence[int]) -> im.Emitted:
    """Each cell repeated sizes[i] times along sample axis i (nearest-neighbour upsampling): a size-1 axis after
    each repeated axis, tiled, then merged back (reshape, tile, reshape)."""
    spread = [d for n, s in zip(sample, sizes) for d in ((n, 1) if s > 1 else (n,))]
    multiples = [1, *(m for s in sizes for m in ((1, s) if s > 1 else (1,)))]
    merged = [n * s for n, s in zip(sample, sizes)]
    return im.chain([im.Emitted({"shape": spread}, op="reshape"), im.Emitted({"multiples": multiples}, op="tile"), im.Emitted({"shape": merged}, op="reshape")])


#: TF's DataType and ONNX's TensorProto codes of the dtypes tfn casts to
_TF_DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 9: "int64"}
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 11: "float64"}


def dtype_name(framework: str, code) -> str | None:
    """tfn's name of a TF DataType or ONNX TensorProto dtype code; None for one tfn has no dtype for."""
    return (_TF_DTYPES if framework == "tf" else _ONNX_DTYPES).get(int(code))


def cast_dtype(f: im.Foreign) -> im.Emitted:
    code = int(f.attr("DstT") if f.framework == "tf" else f.attr("to"))
    dtype = dtype_name(f.framework, code)
    f.require(dtype is not None, f"to type code {code}: tfn casts to {', '.join(sorted(set(_ONNX_DTYPES.values())))}")
    return im.Emitted({"dtype": dtype}, feature_order=im.same_order(f))


def tf_pack(f: im.Foreign) -> im.Emitted:
    """TF Pack (tf.stack) of computed tensors of one shape, along a new axis of the source's layout."""
    f.require(not f.weights, "a constant operand")
    rank = f.rank + 1
    axis = int(f.attr("axis", 0))
    f.require(-rank <= axis < rank and axis % rank != 0, f"axis {axis}: a new axis before the batch axis")
    source_out: list = im.source_order(f)
    source_out.insert(axis % rank, "new")
    return im.chain(im.regroup(f, source_out, insert=lambda position: im.Emitted({"axis": position}, op="stack")))


def _per_axis(values: list[int], x: TensorType, field: str) -> None:
    if len(values) != x.rank:
        raise OpError(f"has {len(values)} entries {values} for a rank-{x.rank} input {x}; give one per axis, the batch axis first", field)


def _new_axis(axis: int, rank: int) -> int:
    """Where a new axis goes in a rank-`rank` tensor (TF's expand_dims/stack rule: -1 appends); never before the batch."""
    if not -rank - 1 <= axis <= rank:
        raise OpError(f"axis {axis} is out of range for a new axis of a rank-{rank} input (valid: 1 to {rank}, or -{rank} to -1)", "axis")
    axis = axis + rank + 1 if axis < 0 else axis
    if axis == 0:
        raise OpError("a new axis cannot go before the batch axis 0; use 1 or more", "axis")
    return axis


@register
class Transpose(Op):
    """Permutes the axes, as tf.transpose; the batch axis stays first.

    `perm` lists every axis, the batch axis included, as TF's argument does:
    output axis i is input axis perm[i], and perm[0] must be 0. Omitted, the
    axes after the batch are reversed ([0, 2, 1] for [N, F, T]); TF's
    default reverses the batch axis too.

    Example:
        {op: transpose, perm: [0, 2, 1]}

    Input [N, d1, ..., dk]; output [N, d_perm[1], ..., d_perm[k]].
    """

    name = "transpose"
    imports = (im.keras("Permute", permutation), im.tf("Transpose", permutation), im.onnx("Transpose", permutation))
    family = "structure"
    pure_data_movement = True
    tf_notes = "tf.transpose(a, perm) with perm[0] = 0 (the batch); TF's NHWC perm [0, 3, 1, 2] has no use here: tensors are channels-first already."
    example_inputs = ((2, 3, 4),)

    class Params(Params):
        perm: list[int] | None = None

    def permutation(self, p, x: TensorType) -> list[int]:
        if p.perm is None:
            return [0, *range(x.rank - 1, 0, -1)]
        _per_axis(p.perm, x, "perm")
        if sorted(p.perm) != list(range(x.rank)):
            raise OpError(f"{p.perm} is not a permutation of the axes 0 to {x.rank - 1}", "perm")
        if p.perm[0] != 0:
            raise OpError(f"{p.perm} moves the batch axis; perm[0] must be 0", "perm")
        return p.perm

    def infer(self, p, inputs):
        (x,) = inputs
        return [TensorType(tuple(x.shape[a] for a in self.permutation(p, x)), x.dtype)]

    def build(self, p, inputs):
        perm = tuple(self.permutation(p, inputs[0]))

        def transpose(xs, v, training):
            return xs[0].permute(perm)

        return transpose


@register
class Slice(Op):
    """Extracts a block, as tf.slice: `size` entries from `begin` along each axis.

    `begin` and `size` list every axis, the batch axis first (begin 0, size
    -1: the whole batch). A size of -1 takes everything from begin to the
    end of the axis.

    Example:
        {op: slice, begin: [0, 1, 0], size: [-1, 2, -1]}

    Input [N, d1, ..., dk]; output [N, size1, ..., sizek] (-1: d - begin).
    """

    name = "slice"
    imports = (
        im.tf("Slice", tf_slice),
        im.tf("StridedSlice", tf_slice, "constant begin / end, strides 1; shrink and new axes by squeeze / expand_dims"),
        im.onnx("Slice", onnx_slice, "steps 1"),
        im.keras("Cropping1D", keras_cropping_nd),
        im.keras("Cropping3D", keras_cropping_nd),
    )
    family = "structure"
    pure_data_movement = True
    tf_notes = "tf.slice(input_, begin, size) in channels-first order; the batch entries must be begin 0, size -1."
    example_inputs = ((2, 4, 5),)

    class Params(Params):
        begin: list[Annotated[int, Field(ge=0)]] = Field(min_length=2)
        size: list[int] = Field(min_length=2)

        @field_validator("size")
        @classmethod
        def _sizes(cls, size):
            if any(s == 0 or s < -1 for s in size):
                raise ValueError(f"every entry must be positive, or -1 (to the end), got {size}")
            return size

    def extents(self, p, x: TensorType) -> list[tuple[int, int]]:
        """(begin, size) for each axis after the batch."""
        _per_axis(p.begin, x, "begin")
        _per_axis(p.size, x, "size")
        if p.begin[0] != 0 or p.size[0] != -1:
            raise OpError(f"the batch axis cannot be sliced: begin[0] must be 0 and size[0] -1, got {p.begin[0]} and {p.size[0]}", "begin")
        out = []
        for axis, (b, s, n) in enumerate(zip(p.begin[1:], p.size[1:], x.shape[1:]), 1):
            size = n - b if s == -1 else s
            if b >= n or size < 1 or b + size > n:
                raise OpError(f"axis {axis} has size {n}: begin {b} with size {s} does not fit in it", "size" if b < n else "begin")
            out.append((b, size))
        return out

    def infer(self, p, inputs):
        (x,) = inputs
        return [TensorType((x.shape[0], *(size for _, size in self.extents(p, x))), x.dtype)]

    def build(self, p, inputs):
        index = (slice(None), *(slice(b, b + size) for b, size in self.extents(p, inputs[0])))

        def slice_(xs, v, training):
            return xs[0][index]

        slice_.__name__ = "slice"
        return slice_


@register
class Split(Op):
    """Splits a tensor along `axis` into several outputs, as tf.split.

    `num_or_size_splits` is an int (that many equal pieces; the axis size
    must divide evenly, as in TF) or a list of piece sizes summing to the
    axis size, one of which may be -1 (the rest). Output k is `node:k`
    (`node` is the first piece).

    Example:
        {op: split, num_or_size_splits: [1, -1, 2]}

    Input [N, ..., d, ...]; outputs [N, ..., d_k, ...], one per piece.
    """

    name = "split"
    imports = (im.tf("Split", split_sizes), im.tf("SplitV", split_sizes), im.onnx("Split", split_sizes))
    tf_op = "SplitV"
    family = "structure"
    pure_data_movement = True
    tf_notes = "tf.split(value, num_or_size_splits, axis); the default axis is 1 (TF: 0, the batch axis here, which cannot be split)."
    example_inputs = ((2, 6, 3),)

    class Params(Params):
        num_or_size_splits: PositiveInt | Annotated[list[int], Field(min_length=1)]
        axis: int = 1

        @field_validator("num_or_size_splits")
        @classmethod
        def _sizes(cls, value):
            if isinstance(value, list):
                if any(s == 0 or s < -1 for s in value):
                    raise ValueError(f"every size must be positive, or -1 once (the rest), got {value}")
                if value.count(-1) > 1:
                    raise ValueError(f"only one size may be -1, got {value}")
            return value

    def sizes(self, p, x: TensorType) -> tuple[int, list[int]]:
        axis = resolve_axis(p.axis, x.rank)
        n = x.shape[axis]
        if isinstance(p.num_or_size_splits, int):
            k = p.num_or_size_splits
            if n % k:
                raise OpError(f"axis {axis} has size {n}, which does not split into {k} equal pieces; give a list of sizes", "num_or_size_splits")
            return axis, [n // k] * k
        sizes = p.num_or_size_splits
        known = sum(s for s in sizes if s != -1)
        if -1 in sizes:
            if known >= n:
                raise OpError(f"the sizes {sizes} leave nothing for -1 on axis {axis} of size {n}", "num_or_size_splits")
            return axis, [n - known if s == -1 else s for s in sizes]
        if known != n:
            raise OpError(f"the sizes {sizes} sum to {known}, but axis {axis} has size {n}", "num_or_size_splits")
        return axis, list(sizes)

    def tf_op_name(self, p):
        return "Split" if isinstance(p.num_or_size_splits, int) else "SplitV"

    def infer(self, p, inputs):
        (x,) = inputs
        axis, sizes = self.sizes(p, x)
        return [TensorType(tuple(s if a == axis else d for a, d in enumerate(x.shape)), x.dtype) for s in sizes]

    def build(self, p, inputs):
        import torch

        axis, sizes = self.sizes(p, inputs[0])

        def split(xs, v, training):
            return tuple(torch.split(xs[0], sizes, axis))

        return split


@register
class Gather(Op):
    """Gathers slices of each sample along `axis` by index, as tf.gather with batch_dims=1.

    The second input holds integer indices, from a data field (an integer
    model input) or a node; each sample's indices pick from that sample:
    out[n, a..., i..., b...] = params[n, a..., indices[n, i...], b...]. An
    index below 0 or at least the size of `axis` is an error when the graph
    runs, as in TF on CPU (never a wrapped-around or garbage read). The
    gradient of repeated indices adds up, as TF's.

    Example:
        {op: gather, inputs: [table, ids], axis: 2}

    Inputs params [N, ..., d, ...] and indices [N, i1, ...] int; output [N, ..., i1, ..., ...] (axis replaced by the indices' axes).
    """

    name = "gather"
    imports = (
        im.tf("GatherV2", gather_indices, "batch_dims 1; constant indices: slice, or tile for each index repeated"),
        im.onnx("Gather", gather_indices, "constant indices: slice, or tile for each index repeated; rows of a constant table: embedding"),
    )
    family = "structure"
    arity = (2, 2)
    pure_data_movement = True
    tf_notes = (
        "tf.gather(params, indices, axis, batch_dims=1): both inputs have the batch axis and each sample gathers from itself; "
        "negative indices are errors, as in TF 1.x (TF 2 also refuses them on CPU)."
    )
    example_inputs = ((2, 3, 5), (2, 4))
    example_dtypes = ("float32", "int64")

    class Params(Params):
        axis: int = 1

    def infer(self, p, inputs):
        params, indices = inputs
        axis = resolve_axis(p.axis, params.rank)
        if not indices.dtype.startswith("int"):
            raise OpError(f"indices (input 1) must be integers, got {indices}; use an int64 or int32 model input, or cast", "inputs")
        shape = (params.shape[0], *params.shape[1:axis], *indices.shape[1:], *params.shape[axis + 1 :])
        return [TensorType(shape, params.dtype)]

    def integer_input_range(self, p, inputs, index):
        params = inputs[0]
        return (0, params.shape[resolve_axis(p.axis, params.rank)]) if index == 1 else None

    def build(self, p, inputs):
        import torch

        params, indices = inputs
        axis = resolve_axis(p.axis, params.rank)
        size = params.shape[axis]
        before, after = math.prod(params.shape[1:axis]), math.prod(params.shape[axis + 1 :])
        out_shape = self.infer(p, inputs)[0].shape[1:]
        picks = math.prod(inputs[1].shape[1:])  # known here: reshape's -1 is ambiguous for an empty batch

        def gather(xs, v, training):
            x, ids = xs
            check_indices(ids, size, "gather")
            n = x.shape[0]
            flat = ids.long().reshape(n, 1, picks, 1).expand(n, before, picks, after)
            picked = torch.gather(x.reshape(n, before, size, after), 2, flat)
            return picked.reshape(n, *out_shape)

        return gather


def check_indices(indices, size: int, op: str, what: str = "index", bound: str = "the size of the gathered axis") -> None:
    """IndexRangeError naming the first index outside [0, size), as TF's kernels refuse them.
    `what` names the values (an id, a sequence length), `bound` what `size` is.

    On an accelerator the check is a device-side assertion (no host sync).
    While torch traces the graph (ONNX export, train.compile) it is left
    out: a traced graph cannot raise. torch.gather still refuses an index
    out of range there, without naming the op; an exported ONNX model
    follows ONNX's Gather, which wraps negative indices around.
    """
    import torch

    if torch.compiler.is_compiling():
        return
    if indices.device.type != "cpu":
        torch._assert_async(((indices >= 0) & (indices < size)).all(), f"{op}: {what} outside [0, {size})")
        return
    bad = (indices < 0) | (indices >= size)
    if bad.any():
        value = int(indices[bad][0])
        raise IndexRangeError(f"{op}: {what} {value} is outside [0, {size}) ({bound})")


@register
class Squeeze(Op):
    """Removes axes of size 1, as tf.squeeze.

    `axis` (an int or a list) names the axes to remove; each must have size
    1, or it is an error (as in TF). Omitted, every size-1 axis after the
    batch is removed; the batch axis never is, even for a batch of one.

    Example:
        {op: squeeze, axis: [2, 3]}

    Input [N, ...]; output [N, ...] without the squeezed axes.
    """

    name = "squeeze"
    imports = (im.tf("Squeeze", squeeze_axes), im.onnx("Squeeze", squeeze_axes))
    family = "structure"
    pure_data_movement = True
    tf_notes = "tf.squeeze(input, axis); TF's axis=None would also squeeze a batch of one, tfn's never touches the batch axis."
    example_inputs = ((2, 3, 1, 1),)

    class Params(Params):
        axis: int | list[int] | None = None

    def infer(self, p, inputs):
        (x,) = inputs
        if p.axis is None:
            axes = {a for a in range(1, x.rank) if x.shape[a] == 1}
        else:
            axes = set()
            for a in [p.axis] if isinstance(p.axis, int) else p.axis:
                axis = resolve_axis(a, x.rank)
                if x.shape[axis] != 1:
                    raise OpError(f"cannot squeeze axis {axis} of {x}: its size is {x.shape[axis]}, not 1", "axis")
                axes.add(axis)
        return [TensorType(tuple(n for a, n in enumerate(x.shape) if a not in axes), x.dtype)]

    def build(self, p, inputs):
        shape = self.infer(p, inputs)[0].shape[1:]

        def squeeze(xs, v, training):
            return xs[0].reshape(xs[0].shape[0], *shape)

        return squeeze


@register
class ExpandDims(Op):
    """Inserts an axis of size 1 at `axis`, as tf.expand_dims.

    `axis` counts in the output with the batch as 0: 1 puts the new axis
    right after the batch; -1 appends it at the end, as in TF. It cannot go
    before the batch axis.

    Example:
        {op: expand_dims, axis: -1}

    Input [N, d1, ..., dk]; output with a size-1 axis at `axis` (rank k + 2).
    """

    name = "expand_dims"
    imports = (im.tf("ExpandDims", new_axes), im.onnx("Unsqueeze", new_axes))
    family = "structure"
    pure_data_movement = True
    tf_notes = "tf.expand_dims(input, axis); axis 0 (before the batch) is refused."
    example_inputs = ((2, 3, 4),)

    class Params(Params):
        axis: int

    def infer(self, p, inputs):
        (x,) = inputs
        axis = _new_axis(p.axis, x.rank)
        return [TensorType((*x.shape[:axis], 1, *x.shape[axis:]), x.dtype)]

    def build(self, p, inputs):
        axis = _new_axis(p.axis, inputs[0].rank)

        def expand_dims(xs, v, training):
            return xs[0].unsqueeze(axis)

        return expand_dims


@register
class Tile(Op):
    """Repeats a tensor along each axis, as tf.tile.

    `multiples` lists every axis, the batch axis first, as TF's argument
    does; the batch entry must be 1.

    Example:
        {op: tile, multiples: [1, 2, 3]}

    Input [N, d1, ..., dk]; output [N, d1 * m1, ..., dk * mk].
    """

    name = "tile"
    imports = (
        im.tf("Tile", tile_multiples),
        im.onnx("Tile", tile_multiples),
        im.keras("RepeatVector", keras_repeat_vector, "expand_dims + tile"),
        im.keras("UpSampling1D", keras_upsampling_nd, "reshape + tile + reshape"),
        im.keras("UpSampling3D", keras_upsampling_nd, "reshape + tile + reshape"),
    )
    family = "structure"
    pure_data_movement = True
    tf_notes = "tf.tile(input, multiples) in channels-first order; multiples[0] (the batch) must be 1."
    example_inputs = ((2, 3, 2),)

    class Params(Params):
        multiples: list[PositiveInt] = Field(min_length=2)

    def infer(self, p, inputs):
        (x,) = inputs
        _per_axis(p.multiples, x, "multiples")
        if p.multiples[0] != 1:
            raise OpError(f"the batch axis cannot be tiled: multiples[0] must be 1, got {p.multiples[0]}", "multiples")
        return [TensorType((x.shape[0], *(n * m for n, m in zip(x.shape[1:], p.multiples[1:]))), x.dtype)]

    def build(self, p, inputs):
        multiples = tuple(p.multiples)

        def tile(xs, v, training):
            return xs[0].repeat(multiples)

        return tile


@register
class Stack(Op):
    """Stacks tensors of one shape along a new axis, as tf.stack.

    `axis` counts in the output with the batch as 0; the default 1 puts the
    new axis right after the batch (TF's default 0 would be the batch axis).

    Example:
        {op: stack, inputs: [a, b], axis: -1}

    Inputs [N, d1, ..., dk] each, all the same shape; output with a new axis of size len(inputs) at `axis`.
    """

    name = "stack"
    imports = (im.tf("Pack", tf_pack),)
    family = "structure"
    arity = (1, None)
    pure_data_movement = True
    tf_notes = "tf.stack(values, axis); the default axis is 1 (TF: 0, the batch axis here)."
    example_inputs = ((2, 3, 4), (2, 3, 4))

    class Params(Params):
        axis: int = 1

    def infer(self, p, inputs):
        x = same_types(inputs)
        axis = _new_axis(p.axis, x.rank)
        return [TensorType((*x.shape[:axis], len(inputs), *x.shape[axis:]), x.dtype)]

    def build(self, p, inputs):
        import torch

        axis = _new_axis(p.axis, inputs[0].rank)

        def stack(xs, v, training):
            return torch.stack(list(xs), axis)

        return stack


@register
class Cast(Op):
    """Converts a tensor to another dtype, as tf.cast.

    Float to integer truncates toward zero, as TF (C's conversion) does.
    The gradient passes through a float-to-float cast and stops at an
    integer one, as in TF.

    Example:
        {op: cast, dtype: float32}

    Input any shape; output the same shape in `dtype`.
    """

    name = "cast"
    imports = (im.tf("Cast", cast_dtype), im.onnx("Cast", cast_dtype))
    family = "structure"
    pure_data_movement = True
    tf_notes = "tf.cast(x, dtype) for float32, float64, int32, int64."
    example_inputs = ((2, 3, 4),)
    example_dtypes = ("int64",)

    class Params(Params):
        dtype: DType

    def infer(self, p, inputs):
        return [TensorType(inputs[0].shape, p.dtype)]

    def build(self, p, inputs):
        import torch

        dtype = getattr(torch, p.dtype)

        def cast(xs, v, training):
            return xs[0].to(dtype)

        return cast
