"""Reading data files: IDX, CSV, NumPy arrays, images, and verified downloads.

Pure NumPy (and Pillow for images); every problem is a DataError that names
the file (and the line, for CSV). Nothing here imports torch.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import os
import sys
import urllib.error
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfn.layers import suggest
from tfn.runners.files import atomic_write
from tfn.specs.errors import UserError
from tfn.specs.schema import SHIPPED

#: the data files shipped with tfn: a spec names one as `shipped:NAME` (README.md there says where each comes from)
DATASETS = Path(__file__).parent / "datasets"


class DataError(UserError):
    """The data is missing, malformed or does not fit the model: exit status 2.

    `spec_path` names the field of the spec's data section at fault (("data", "path")),
    where one does, so that `tfn check` can point at its line.
    """

    def __init__(self, message: str, spec_path: tuple = ()):
        super().__init__(message)
        self.spec_path = spec_path


ArrayHeader = tuple[np.dtype, tuple[int, ...]]  # the dtype and shape of a stored array


def resolve(path: str | Path) -> Path:
    """A spec's path: `~` expanded, relative to the current directory; `shipped:NAME` is the shipped data file NAME."""
    if str(path).startswith(SHIPPED):
        return DATASETS / str(path)[len(SHIPPED) :]
    return Path(os.path.expanduser(str(path)))


def shipped_files() -> list[str]:
    """The names a spec may give as `shipped:NAME`."""
    return sorted(p.name for p in DATASETS.iterdir() if p.is_file() and p.suffix not in (".md", ".py"))  # not the documentation or a generator


def require_file(path: str | Path, what: str = "file") -> Path:
    return _require(path, what, directory=False)


def require_directory(path: str | Path, what: str = "directory") -> Path:
    return _require(path, what, directory=True)


def _require(path: str | Path, what: str, directory: bool) -> Path:
    if str(path).startswith(SHIPPED) and not resolve(path).is_file():
        name = str(path)[len(SHIPPED) :]
        hint = suggest(name, shipped_files())
        raise DataError(
            f"{path}: error: tfn ships no data file {name!r}"
            + (f" (did you mean '{SHIPPED}{hint}'?)" if hint else f"; it ships {', '.join(SHIPPED + n for n in shipped_files())}")
        )
    path = resolve(path)
    if path.is_dir() if directory else path.is_file():
        return path
    if not path.exists():
        problem = "no such directory" if directory else "no such file"
    else:
        problem = "is a file, not a directory" if directory else "is a directory, not a file"
    raise DataError(f"{path}: error: {problem} (the {what} named in the spec's data section)")


# --- IDX ---------------------------------------------------------------------------

# the third byte of an IDX file's magic number -> big-endian element type
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (http://yann.lecun.com/exdb/mnist/), gzipped or not, as an array in native byte order."""
    path = require_file(path, "IDX file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: error: not a valid gzip file ({exc})") from None
    dtype, shape = _idx_header(path, raw)
    header = 4 + 4 * len(shape)
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: error: an IDX array of shape {list(shape)} needs {expected} bytes, the file has {len(raw)} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def idx_header(path: str | Path) -> tuple[np.dtype, tuple[int, ...]]:
    """An IDX file's element type (native byte order) and shape, from its first bytes alone."""
    path = require_file(path, "IDX file")
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open if compressed else open)(path, "rb") as f:
            head = f.read(4)
            head += f.read(4 * head[3]) if len(head) == 4 else b""
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: error: not a valid gzip file ({exc})") from None
    dtype, shape = _idx_header(path, head)
    return dtype.newbyteorder("="), shape


def _idx_header(path: Path, raw: bytes) -> tuple[np.dtype, tuple[int, ...]]:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(f"{path}: error: not an IDX file (its magic number is {raw[:4].hex() or 'missing'}; IDX starts 0000 then a type byte)")
    rank = raw[3]
    if rank == 0 or len(raw) < 4 + 4 * rank:
        raise DataError(f"{path}: error: the IDX header is truncated (rank {rank})")
    return np.dtype(IDX_TYPES[raw[2]]), tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=rank, offset=4))


# --- NumPy -------------------------------------------------------------------------


def read_npy(path: str | Path) -> np.ndarray:
    path = require_file(path, ".npy file")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle, which tfn never loads
        raise DataError(f"{path}: error: cannot read this .npy file without pickle ({exc}); save plain numeric arrays") from None
    except OSError as exc:
        raise DataError(f"{path}: error: not a .npy file ({exc})") from None


def npy_header(path: str | Path) -> ArrayHeader:
    """The dtype and shape of a .npy file, from its header only."""
    path = require_file(path, ".npy file")
    with open(path, "rb") as f:
        dtype, shape = _npy_header(path, f)
        if path.stat().st_size < f.tell() + math.prod(shape) * dtype.itemsize:
            raise DataError(f"{path}: error: the file is shorter than its header's array of shape {list(shape)} {dtype} (truncated)")
    return dtype, shape


def npz_headers(path: str | Path, names: list[str]) -> dict[str, ArrayHeader]:
    """The dtype and shape of the named arrays of a .npz file, from their headers only."""
    path = require_file(path, ".npz file")
    try:
        with zipfile.ZipFile(path) as archive:
            stored = [n.removesuffix(".npy") for n in archive.namelist() if n.endswith(".npy")]
            _require_arrays(path, names, stored)
            out = {}
            for name in names:
                with archive.open(f"{name}.npy") as f:
                    out[name] = _npy_header(path, f, name)
            return out
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: error: not a .npz file ({exc})") from None


def _npy_header(path: Path, f, name: str = "") -> ArrayHeader:
    what = f"array {name!r}" if name else "the file"
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read(f)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise DataError(f"{path}: error: {what} is not a .npy array ({exc})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: error: {what} holds Python objects, which need pickle to read; save plain numeric arrays")
    return dtype, tuple(shape)


def _require_arrays(path: Path, names: list[str], stored: list[str]) -> None:
    missing = [n for n in names if n not in stored]
    if missing:
        hint = suggest(missing[0], stored)
        raise DataError(
            f"{path}: error: no array named {', '.join(map(repr, missing))}"
            + (f" (did you mean {hint!r}?)" if hint else "")
            + f"; the file has {', '.join(stored) or 'no arrays'}"
        )


def read_npz(path: str | Path, names: list[str]) -> dict[str, np.ndarray]:
    """The named arrays of a .npz file; a missing name lists the arrays there are."""
    path = require_file(path, ".npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            _require_arrays(path, names, archive.files)
            return {n: archive[n] for n in names}
    except ValueError as exc:
        raise DataError(f"{path}: error: cannot read this .npz file without pickle ({exc}); save plain numeric arrays") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: error: not a .npz file ({exc})") from None


# --- CSV ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvTable:
    """The data rows of a CSV file: the cells (stripped) of the columns read, by name, and each row's line in the file."""

    path: Path
    header: tuple[str, ...]
    columns: dict[str, list[str]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.lines)

    def take(self, rows: np.ndarray) -> CsvTable:
        """The rows at `rows`, in that order."""
        return CsvTable(self.path, self.header, {c: [cells[i] for i in rows] for c, cells in self.columns.items()}, [self.lines[i] for i in rows])

    def where(self, row: int) -> str:
        """`FILE:LINE: error:` of row `row`."""
        return f"{self.path}:{self.lines[row]}: error:"


def read_csv_table(path: str | Path, fields: dict[str, str | list[str]], delimiter: str = ",") -> CsvTable:
    """The columns that `fields` (field name -> its column or columns) name, from a CSV file with a header row.

    A column the header lacks is an error with a did-you-mean (spec path
    data.fields.FIELD); a row with another number of cells than the header
    names its line; empty rows are skipped.
    """
    path = require_file(path, "CSV file")
    with _csv_reader(path, delimiter) as reader:
        header = _header(path, reader, fields)
        position = {name: i for i, name in enumerate(header)}
        wanted = {col: position[col] for cols in fields.values() for col in _listed(cols)}
        columns: dict[str, list[str]] = {col: [] for col in wanted}
        lines: list[int] = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{reader.line_num}: error: {len(row)} columns, the header has {len(header)}")
            for col, i in wanted.items():
                columns[col].append(row[i].strip())
            lines.append(reader.line_num)
    if not lines:
        raise DataError(f"{path}: error: no data rows after the header")
    return CsvTable(path, tuple(header), columns, lines)


def read_jsonl_table(path: str | Path, fields: dict[str, str]) -> CsvTable:
    """The keys that `fields` (field name -> its key) name, from a JSON-lines file (one object per line) as a table:
    a string as it is, any other value as its JSON text. A line that is not an object, or lacks a key, names its line."""
    path = require_file(path, "JSON-lines file")
    columns: dict[str, list[str]] = {key: [] for key in fields.values()}
    lines: list[int] = []
    with _text_lines(path) as numbered:
        for number, line in numbered:
            if line.strip():
                row = _jsonl_row(path, number, line, fields)
                for key in columns:
                    value = row[key]
                    columns[key].append(value.strip() if isinstance(value, str) else json.dumps(value))
                lines.append(number)
    if not lines:
        raise DataError(f"{path}: error: no data rows: the file holds no JSON objects")
    return CsvTable(path, tuple(columns), columns, lines)


def jsonl_keys(path: str | Path, fields: dict[str, str]) -> list[str]:
    """The keys of the first object of a JSON-lines file; every key a field names must be there."""
    path = require_file(path, "JSON-lines file")
    with _text_lines(path) as numbered:
        for number, line in numbered:
            if line.strip():
                return list(_jsonl_row(path, number, line, fields))
    raise DataError(f"{path}: error: no data rows: the file holds no JSON objects")


def _jsonl_row(path: Path, number: int, line: str, fields: dict[str, str]) -> dict:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise DataError(f"{path}:{number}: error: not a JSON value: {exc}") from None
    if not isinstance(row, dict):
        raise DataError(f'{path}:{number}: error: a JSON-lines file holds one object per line, e.g. {{"text": "...", "label": "..."}}')
    for field, key in fields.items():
        if key not in row:
            hint = suggest(key, row)
            raise DataError(
                f"{path}:{number}: error: field {field!r}: no key {key!r}" + (f" (did you mean {hint!r}?)" if hint else "") + f"; the keys are {', '.join(row)}",
                ("data", "fields", field),
            )
    return row


@contextmanager
def _text_lines(path: Path):
    """(line number from 1, line) of a UTF-8 file; bytes that are not UTF-8 are a DataError naming it."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            yield enumerate(f, start=1)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: error: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None


def csv_header(path: str | Path, fields: dict[str, str | list[str]], delimiter: str) -> list[str]:
    """The column names of a CSV file, from its first line only; every column a field names must be there."""
    path = require_file(path, "CSV file")
    with _csv_reader(path, delimiter) as reader:
        return _header(path, reader, fields)


@contextmanager
def _csv_reader(path: Path, delimiter: str):
    """A csv.reader over a UTF-8 file; what the file's bytes or quoting break is a DataError naming it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            yield csv.reader(f, delimiter=delimiter)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: error: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: error: not readable as CSV: {exc}") from None


def _listed(columns: str | list[str]) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns)


def _header(path: Path, reader, fields: dict[str, str | list[str]]) -> list[str]:
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: error: the file is empty; a CSV source needs a header row naming the columns")
    header = [h.strip() for h in header]
    for field, cols in fields.items():
        for i, col in enumerate(_listed(cols)):
            if col not in header:
                hint = suggest(col, header)
                raise DataError(
                    f"{path}:1: error: field {field!r}: no column {col!r}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + f"; the columns are {', '.join(header)}",
                    ("data", "fields", field) + (() if isinstance(cols, str) else (i,)),
                )
    return header


# --- downloads ---------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def absent_files(directory: Path, files: dict[str, str], base_url: str, *, download: bool, source: str) -> list[str]:
    """The names of `files` that `directory` lacks; DataError naming them when they may not be downloaded."""
    missing = [name for name in files if not (directory / name).is_file()]
    if missing and not download:
        raise DataError(f"{directory}: error: the {source} files are missing and `download: false`; {_put_files(missing, directory, base_url)}")
    return missing


def _put_files(missing: list[str], directory: Path, base_url: str) -> str:
    return f"put {', '.join(missing)} into {directory} (from {base_url})"


def fetch_verified(directory: Path, files: dict[str, str], base_url: str, *, download: bool, source: str, timeout: float = 60.0) -> None:
    """Make sure `directory` holds each file of `files` (name -> SHA-256), downloading those absent.

    A file already there with the wrong checksum is an error (never silently
    replaced); a downloaded file is verified before it is moved into place.
    Offline, the error names the files and where to put them.
    """
    missing = absent_files(directory, files, base_url, download=download, source=source)
    for name in files:
        if name not in missing:
            actual = sha256_of(directory / name)
            if actual != files[name]:
                raise DataError(f"{directory / name}: error: SHA-256 {actual} does not match the published {files[name]}; delete the file to download it again")
    if not missing:
        return
    help_text = _put_files(missing, directory, base_url)
    directory.mkdir(parents=True, exist_ok=True)
    for name in missing:
        url = base_url.rstrip("/") + "/" + name
        print(f"downloading {url}", file=sys.stderr, flush=True)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"{directory}: error: cannot download {url} ({reason}); {help_text}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != files[name]:
            raise DataError(f"{url}: error: the download's SHA-256 {actual} does not match the published {files[name]}; nothing was kept")
        atomic_write(directory / name, data)
