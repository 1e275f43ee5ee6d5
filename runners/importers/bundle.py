"""TF 1.x checkpoints (tensor bundles) read without TensorFlow.

A checkpoint `PREFIX` is `PREFIX.index`, a LevelDB-format table mapping each
tensor name to a BundleEntryProto (dtype, shape, shard, offset, size), and
`PREFIX.data-NNNNN-of-MMMMM`, the raw little-endian bytes. The table format
is small and documented (leveldb's table_format.md; TF's
core/lib/io/table_format.txt): a footer with the index block's place, an
index block of data-block handles, and prefix-compressed key/value entries.
TF writes it uncompressed. Reading it here keeps TensorFlow out of tfn; the
protobufs are decoded by hand (a few varint fields) because TensorBoard's
copy of TF's protos does not ship tensor_bundle.proto.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from tfn.runners.importers.build import ImportFailed

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
# tensorflow/core/framework/types.proto
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}
_DTYPE_NAMES = {7: "string", 14: "bfloat16", 8: "complex64", 18: "complex128", 20: "resource", 21: "variant"}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message: varints as ints, length-delimited as bytes."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _block(data: bytes, offset: int, size: int, path: Path) -> list[tuple[bytes, bytes]]:
    """The key/value entries of one table block (prefix-compressed keys, restart array at the end)."""
    if data[offset + size] != 0:  # the block trailer's compression type: TF writes none
        raise ImportFailed(f"{path}: error: a compressed checkpoint index block (type {data[offset + size]}); tfn reads TF's uncompressed ones")
    block = data[offset : offset + size]
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + length]))
        pos += length
    return entries


def read_index(prefix: Path) -> tuple[int, dict[str, dict]]:
    """(number of data shards, {tensor name: entry}) from PREFIX.index."""
    path = Path(f"{prefix}.index")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFailed(f"{path}: error: cannot read the checkpoint index: {exc.strerror}") from None
    if len(data) < _FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
        raise ImportFailed(f"{path}: error: not a TensorFlow checkpoint index (no table footer)")
    try:
        footer = data[-_FOOTER:]
        _, pos = _varint(footer, 0)  # the metaindex handle: unused
        _, pos = _varint(footer, pos)
        index_offset, pos = _varint(footer, pos)
        index_size, pos = _varint(footer, pos)
        entries: dict[str, dict] = {}
        shards = 1
        for _, handle in _block(data, index_offset, index_size, path):
            offset, pos = _varint(handle, 0)
            size, _ = _varint(handle, pos)
            for key, value in _block(data, offset, size, path):
                if key == b"":
                    shards = next((v for n, _, v in _fields(value) if n == 1), 1)
                    continue
                entries[key.decode()] = _entry(value)
    except (IndexError, ValueError, struct.error) as exc:
        raise ImportFailed(f"{path}: error: corrupt checkpoint index: {exc}") from None
    return shards, entries


def _entry(value: bytes) -> dict:
    """A BundleEntryProto: dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6, slices 7."""
    entry = {"dtype": 0, "shape": [], "shard": 0, "offset": 0, "size": 0, "sliced": False}
    for number, _, v in _fields(value):
        if number == 1:
            entry["dtype"] = v
        elif number == 2:
            entry["shape"] = [_dim_size(dim) for n, _, dim in _fields(v) if n == 2]  # TensorShapeProto.dim
        elif number == 3:
            entry["shard"] = v
        elif number == 4:
            entry["offset"] = v
        elif number == 5:
            entry["size"] = v
        elif number == 7:
            entry["sliced"] = True
    return entry


def _dim_size(dim: bytes) -> int:
    return next((size for n, _, size in _fields(dim) if n == 1), 0)


def read(prefix: str | Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """The tensors of a TF checkpoint by name (all, or `names`); strings and other non-numeric tensors are skipped."""
    prefix = Path(prefix)
    shards, entries = read_index(prefix)
    wanted = entries if names is None else {n: entries[n] for n in names if n in entries}
    out: dict[str, np.ndarray] = {}
    files: dict[int, bytes] = {}
    for name, entry in wanted.items():
        if entry["sliced"]:
            raise ImportFailed(f"{prefix}: error: tensor {name!r} is saved in slices (a partitioned variable); tfn reads whole tensors")
        dtype = DTYPES.get(entry["dtype"])
        if dtype is None:
            if names is not None:
                raise ImportFailed(f"{prefix}: error: tensor {name!r} is {_DTYPE_NAMES.get(entry['dtype'], entry['dtype'])}, not a number")
            continue
        shard = entry["shard"]
        if shard not in files:
            data_path = Path(f"{prefix}.data-{shard:05d}-of-{shards:05d}")
            try:
                files[shard] = data_path.read_bytes()
            except OSError as exc:
                raise ImportFailed(f"{data_path}: error: cannot read the checkpoint's data: {exc.strerror}") from None
        raw = files[shard][entry["offset"] : entry["offset"] + entry["size"]]
        count = int(np.prod(entry["shape"], dtype=np.int64))
        if len(raw) != count * np.dtype(dtype).itemsize:
            raise ImportFailed(f"{prefix}: error: tensor {name!r} has {len(raw)} bytes, its shape {entry['shape']} needs {count * np.dtype(dtype).itemsize}")
        out[name] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(entry["shape"]).astype(dtype)
    return out
