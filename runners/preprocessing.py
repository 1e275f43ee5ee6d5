"""The input preprocessing of each data field: recorded in a model directory as data, applied by every consumer.

    preprocessing.json
    {"format": "tfn.preprocessing", "version": 1,
     "fields": {"image": [{"kind": "image", "size": [64, 64], "color": "rgb"},
                          {"kind": "scale", "divide_by": 255.0},
                          {"kind": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}]}}

A field's steps turn raw data into what the model input takes. A decoding
step (kind `image`: an image file; `csv`: the cells of CSV rows; `text` and
`text_length`: a text's token ids and its number of tokens) makes
samples; the steps after it act on a NumPy batch [N, C, ...]. The training
run writes the record: what its data section implies (``record_for``), plus
what the training split alone teaches (``fit_csv``, ``fit_arrays``: CSV
vocabularies, `standard` and `minmax` statistics; ``fit_text``: a text
source's vocabulary; never validation or test data). The data pipeline makes fields through it, and `tfn eval`, `tfn run`,
`tfn predict`, the Python API and the ONNX export's metadata take it from the
model directory.

Arrays fed to `tfn run`, `tfn predict` or the API (.npy, .npz, literals)
for a field whose steps start by decoding are the input tensors themselves,
as TF's feed_dict feeds a placeholder; for a field whose steps are array
steps only (an npz field's normalisation) they are raw data, and the steps
apply, as in training (`Preprocessing.apply`).

A kind is one :class:`Step` subclass registered with :func:`step_kind`: its
parameters (pydantic fields), `apply` on a batch and `describe`. Nothing
in a record is code: reading one never runs anything.
"""

from __future__ import annotations

import abc
import json
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from functools import singledispatch
from pathlib import Path
from typing import Callable, ClassVar, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError, model_validator

from tfn.layers import TensorType, suggest
from tfn.runners.data_files import CsvTable, DataError, idx_header, read_csv_table
from tfn.runners.files import write_json
from tfn.specs import schema

FILE = "preprocessing.json"
FORMAT = "tfn.preprocessing"
VERSION = 1


class PreprocessingError(DataError):
    """A preprocessing record that cannot be read, or a file its steps cannot take: exit status 2."""


class CellError(PreprocessingError):
    """A CSV cell a column cannot take; `row` is its row in the table read, so that the first bad row is the one reported."""

    def __init__(self, table: CsvTable, row: int, message: str):
        super().__init__(f"{table.where(row)} {message}")
        self.row = row


def first_bad_row(attempts: list[Callable[[], np.ndarray]]) -> list[np.ndarray]:
    """Run each attempt; of the CellErrors they raise, raise the one of the earliest row (as a reader going row by row would)."""
    results, errors = [], []
    for attempt in attempts:
        try:
            results.append(attempt())
        except CellError as exc:
            errors.append(exc)
    if errors:
        first: CellError = min(errors, key=lambda e: e.row)
        raise first
    return results


class Step(BaseModel):
    """One step of a field's preprocessing; its fields are the step's parameters, as stored in the record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str]
    #: a decoding step reads a file (read()); it comes first, and the other steps act on what it gives
    decodes: ClassVar[bool] = False

    @abc.abstractmethod
    def apply(self, batch: np.ndarray) -> np.ndarray:
        """The step on a batch [N, ...] of the field."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One readable line: what the step does, with its parameters."""

    def to_json(self) -> dict:
        return {"kind": self.kind, **self.model_dump(mode="json")}


class Decoder(Step):
    """A step that makes samples from raw data (a file, CSV cells); on a batch it only checks the samples' shape."""

    decodes = True

    @property
    @abc.abstractmethod
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample this step makes."""

    def apply(self, batch: np.ndarray) -> np.ndarray:
        if tuple(batch.shape[1:]) != self.sample_shape:
            raise PreprocessingError(f"error: {self.kind} steps make samples {list(self.sample_shape)}, this batch holds {list(batch.shape[1:])}")
        return batch


KINDS: dict[str, type[Step]] = {}


def step_kind(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step kind readable from records."""
    if cls.kind in KINDS:
        raise RuntimeError(f"preprocessing kind {cls.kind!r} is registered twice")
    KINDS[cls.kind] = cls
    return cls


_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


@step_kind
class DecodeImage(Decoder):
    """Decode an image file, convert its colours, resize it (bilinear): float32 [C, H, W] with values 0 to 255."""

    kind = "image"

    size: tuple[PositiveInt, PositiveInt] = Field(description="[height, width]")
    color: Literal["grayscale", "rgb", "rgba"]

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (_CHANNELS[self.color], *self.size)

    def read(self, path: str | Path) -> np.ndarray:
        from PIL import Image

        height, width = self.size
        try:
            with Image.open(path) as image:
                image = image.convert(_MODES[self.color])
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.float32)
        except FileNotFoundError:
            raise PreprocessingError(f"{path}: error: no such file") from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL reports bad data as any of these
            raise PreprocessingError(f"{path}: error: cannot decode the image: {exc}") from None
        return np.ascontiguousarray(pixels.reshape(height, width, -1).transpose(2, 0, 1))

    def describe(self) -> str:
        return f"decode the image, {self.color}, resized to {self.size[0]}x{self.size[1]} (bilinear)"


@step_kind
class Scale(Step):
    """Divide by a constant (255: pixel values to [0, 1])."""

    kind = "scale"

    divide_by: PositiveFloat

    def apply(self, batch: np.ndarray) -> np.ndarray:
        return batch / np.float32(self.divide_by)

    def describe(self) -> str:
        return f"divided by {self.divide_by:g}"


@step_kind
class Normalize(Step):
    """Per channel (axis 1 of a batch): (x - mean) / std."""

    kind = "normalize"

    mean: list[float] = Field(min_length=1)
    std: list[PositiveFloat] = Field(min_length=1)

    def apply(self, batch: np.ndarray) -> np.ndarray:
        mean, std = _per_feature(self.kind, batch, self.mean, self.std)
        return (batch - mean) / std

    def describe(self) -> str:
        return f"(x - mean) / std per channel with mean {self.mean} and std {self.std}"


@step_kind
class Standardize(Step):
    """(x - mean) / std per feature (axis 1), with the mean and standard deviation of the training split.

    The standard deviation is the population one (ddof 0), as Keras's
    Normalization layer adapts it; a constant feature (std 0) is only centred.
    """

    kind = "standard"

    mean: list[float] = Field(min_length=1)
    std: list[NonNegativeFloat] = Field(min_length=1)
    samples: PositiveInt = Field(description="the training samples the statistics come from")

    def apply(self, batch: np.ndarray) -> np.ndarray:
        mean, std = _per_feature(self.kind, batch, self.mean, self.std)
        return (batch - mean) / np.where(std > 0, std, 1).astype(std.dtype)

    def describe(self) -> str:
        return f"(x - mean) / std per feature, statistics of {self.samples} training samples: mean {_rounded(self.mean)}, std {_rounded(self.std)}"


@step_kind
class MinMax(Step):
    """(x - minimum) / (maximum - minimum) per feature (axis 1), with the extremes of the training split: [0, 1] there.

    A constant feature (maximum = minimum) is only shifted to 0.
    """

    kind = "minmax"

    minimum: list[float] = Field(min_length=1)
    maximum: list[float] = Field(min_length=1)
    samples: PositiveInt = Field(description="the training samples the statistics come from")

    @model_validator(mode="after")
    def _ordered(self):
        if any(hi < lo for lo, hi in zip(self.minimum, self.maximum)):
            raise ValueError("every maximum must be at least its minimum")
        return self

    def apply(self, batch: np.ndarray) -> np.ndarray:
        low, high = _per_feature(self.kind, batch, self.minimum, self.maximum)
        span = high - low
        return (batch - low) / np.where(span > 0, span, 1).astype(span.dtype)

    def describe(self) -> str:
        return f"(x - min) / (max - min) per feature, from {self.samples} training samples: min {_rounded(self.minimum)}, max {_rounded(self.maximum)}"


def _per_feature(kind: str, batch: np.ndarray, *vectors: list[float]) -> list[np.ndarray]:
    """Per-feature values shaped to broadcast along axis 1 of `batch` (a field of one number per sample: one value), in its float type."""
    width = batch.shape[1] if batch.ndim >= 2 else 1
    if any(len(v) != width for v in vectors):
        raise PreprocessingError(f"error: {kind} has {' and '.join(str(len(v)) for v in vectors)} values for a batch {list(batch.shape)}: one per feature (axis 1)")
    dtype = batch.dtype if batch.dtype.kind == "f" else np.float32
    shape = (1, -1) + (1,) * (batch.ndim - 2) if batch.ndim >= 2 else (1,)
    return [np.asarray(v, dtype=dtype).reshape(shape) for v in vectors]


def _rounded(values: list[float], shown: int = 8) -> str:
    text = ", ".join(f"{v:.4g}" for v in values[:shown])
    return f"[{text}{', ...' if len(values) > shown else ''}]"


class CsvColumn(BaseModel):
    """How one CSV column becomes part of a field.

    - ``number``: the cell as a float;
    - ``class``: a class index: the cell's position in `vocabulary` (the class
      names), or, without one, the cell itself as an integer;
    - ``index``: a categorical value's position in `vocabulary` (an id, e.g. for
      an embedding); with `oov`, unseen values are 0 and the vocabulary counts from 1;
    - ``one_hot``: the same position as a block of 0s with one 1 (with `oov`, the first slot is the unseen values').
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    encoding: Literal["number", "class", "one_hot", "index"] = "number"
    vocabulary: list[str] | None = None
    oov: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        if self.encoding in ("one_hot", "index") and self.vocabulary is None:
            raise ValueError(f"a {self.encoding} column needs its vocabulary")
        if self.encoding == "number" and self.vocabulary is not None:
            raise ValueError("a number column has no vocabulary")
        if self.oov and self.encoding not in ("one_hot", "index"):
            raise ValueError("only one_hot and index columns have an out-of-vocabulary index")
        return self

    @property
    def integer(self) -> bool:
        return self.encoding in ("class", "index")

    @property
    def width(self) -> int:
        return len(self.vocabulary) + self.oov if self.encoding == "one_hot" else 1

    def encode(self, table: CsvTable) -> np.ndarray:
        """This column of every row of `table`: float32 [N] (number), int64 [N] (class, index) or float32 [N, width] (one_hot)."""
        cells = table.columns[self.column]
        if self.encoding == "number":
            try:
                return np.asarray([float(cell) for cell in cells], dtype=np.float32)
            except ValueError:
                row = next(i for i, cell in enumerate(cells) if not _parses(float, cell))
                raise CellError(table, row, f"column {self.column!r}: {cells[row]!r} is not a number") from None
        if self.encoding == "class" and self.vocabulary is None:
            try:
                return np.asarray([int(cell) for cell in cells], dtype=np.int64)
            except ValueError:
                row = next(i for i, cell in enumerate(cells) if not _parses(int, cell))
                raise CellError(
                    table,
                    row,
                    f"column {self.column!r}: {cells[row]!r} is not an integer class index "
                    f"(one column makes a class-label field; a list of columns, [{self.column}], makes a float field)"
                ) from None
        indices = self._indices(cells, table)
        if self.encoding != "one_hot":
            return indices
        block = np.zeros((len(cells), self.width), dtype=np.float32)
        block[np.arange(len(cells)), indices] = 1.0
        return block

    def _indices(self, cells: list[str], table: CsvTable) -> np.ndarray:
        first = int(self.oov)
        index = {value: i for i, value in enumerate(self.vocabulary, start=first)}
        out = np.fromiter((index.get(cell, -1) for cell in cells), dtype=np.int64, count=len(cells))
        unseen = np.flatnonzero(out < 0)
        if unseen.size and self.oov:
            out[unseen] = 0
        elif unseen.size:
            row = int(unseen[0])
            if self.encoding == "class":
                raise CellError(table, row, f"column {self.column!r}: {cells[row]!r} is not one of the classes {', '.join(self.vocabulary)}")
            raise CellError(
                table,
                row,
                f"column {self.column!r}: {cells[row]!r} is not in the vocabulary of the training split "
                f"({_listed(self.vocabulary)}); set `unseen: oov` in the data section to give unseen values an index of their own"
            )
        return out

    def describe(self) -> str:
        if self.encoding == "number":
            return self.column
        unseen = "; unseen values: index 0" if self.oov else ""
        if self.encoding == "class":
            return f"{self.column} (class " + (f"index in {_listed(self.vocabulary)})" if self.vocabulary else "indices as they are)")
        return f"{self.column} ({self.encoding.replace('_', '-')} over {_listed(self.vocabulary)}{unseen})"


def _listed(values: list[str], shown: int = 12) -> str:
    text = ", ".join(values[:shown])
    return f"{text}, ... ({len(values)} values)" if len(values) > shown else text


def _parses(convert: Callable[[str], object], text: str) -> bool:
    """Whether `convert` (float, int) takes `text`."""
    try:
        convert(text)
        return True
    except ValueError:
        return False


class TableDecoder(Decoder):
    """A decoding step that makes a field from the cells of a table's rows (a CSV or TSV file, JSON lines)."""

    @property
    @abc.abstractmethod
    def column_names(self) -> list[str]:
        """The table columns the step reads."""

    @abc.abstractmethod
    def decode(self, table: CsvTable) -> np.ndarray:
        """The field of every row of `table`: [N, *sample_shape]; PreprocessingError naming the line of a bad cell."""


@step_kind
class CsvColumns(TableDecoder):
    """Make a field from columns of CSV rows, in order: numbers, class indices, categorical indices or one-hot blocks.

    A field that lists its columns is a vector: float32 [width] (number and
    one-hot columns side by side) or int64 [k] (index columns); a field of one
    column (`single`) is one class or category index per sample, shape [], or
    its one-hot block.
    """

    kind = "csv"

    columns: list[CsvColumn] = Field(min_length=1)
    single: bool = Field(default=False, description="the field names one column rather than a list of them")
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @model_validator(mode="after")
    def _one_kind(self):
        if self.single and len(self.columns) != 1:
            raise ValueError("a single-column field has one column")
        if len({c.integer for c in self.columns}) > 1:
            ids = ", ".join(c.column for c in self.columns if c.integer)
            raise ValueError(f"columns {ids} give integer indices and the others floats: a field holds one or the other")
        return self

    @property
    def column_names(self) -> list[str]:
        return [c.column for c in self.columns]

    @property
    def integer(self) -> bool:
        return self.columns[0].integer

    @property
    def sample_shape(self) -> tuple[int, ...]:
        if self.single and self.integer:
            return ()
        return (sum(c.width for c in self.columns),)

    def numeric(self) -> np.ndarray:
        """Which features (axis 1) hold numbers rather than one-hot blocks: what normalisation may change."""
        return np.concatenate([np.full(c.width, c.encoding == "number") for c in self.columns])

    def decode(self, table: CsvTable) -> np.ndarray:
        blocks = first_bad_row([lambda column=column: column.encode(table) for column in self.columns])
        if self.single and self.integer:
            return blocks[0]
        if self.integer:
            return np.stack(blocks, axis=1)
        return np.concatenate([b.reshape(len(table), c.width) for b, c in zip(blocks, self.columns)], axis=1)

    def describe(self) -> str:
        return f"CSV columns {', '.join(c.describe() for c in self.columns)}"

    def to_json(self) -> dict:
        # a number column is just its name: {"column": "age"}
        return {**super().to_json(), "columns": [c.model_dump(mode="json", exclude_defaults=True) for c in self.columns]}


#: Keras's DEFAULT_STRIP_REGEX: the ASCII punctuation (Python's string.punctuation)
STRIP_PUNCTUATION = re.compile(r"""[!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']""")
#: tf.strings.split's separator: runs of ASCII whitespace (a no-break space is part of a token)
ASCII_WHITESPACE = re.compile(r"[ \t\n\v\f\r]+")
#: tf.strings.lower's default: ASCII letters only ("Über" stays)
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
PADDING_ID, OOV_ID = 0, 1
OOV_TOKEN = "[UNK]"


class Tokenizer(TableDecoder):
    """Tokenisation of a text column as Keras's TextVectorization does it: standardize, then split.

    Texts are cut to their first `max_length` tokens.
    """

    column: str = Field(min_length=1)
    standardize: schema.Standardize = "lower_and_strip_punctuation"
    tokenize: schema.Tokenize = "whitespace"
    separator: str | None = None
    max_length: PositiveInt

    @model_validator(mode="after")
    def _separator(self):
        schema.check_separator(self.tokenize, self.separator)
        return self

    @property
    def column_names(self) -> list[str]:
        return [self.column]

    def tokens(self, text: str) -> list[str]:
        """All the tokens of one text, in order (before `max_length` cuts them)."""
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            text = text.translate(ASCII_LOWER)
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = STRIP_PUNCTUATION.sub("", text)
        if self.tokenize == "character":
            return list(text)
        pieces = ASCII_WHITESPACE.split(text) if self.tokenize == "whitespace" else re.split(self.separator, text)
        return [piece for piece in pieces if piece]

    def decode(self, table: CsvTable) -> np.ndarray:
        return self.encode(table.columns[self.column])

    @abc.abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The field for each of `texts`."""

    def _how(self) -> str:
        split = {"whitespace": "split on whitespace", "character": "split into characters", "regex": f"split on /{self.separator}/"}[self.tokenize]
        return f"text column {self.column!r}, {self.standardize.replace('_', ' ')}, {split}"


@step_kind
class TextIds(Tokenizer):
    """Token ids [max_length] int64 of a text: 0 pads, 1 is a token out of the vocabulary, token k of `vocabulary` is k + 2."""

    kind = "text"

    vocabulary: list[str] = Field(description="the tokens of ids 2, 3, ...: by count in the training split, ties by UTF-8 bytes in reverse")

    @model_validator(mode="after")
    def _distinct(self):
        seen = set()
        for token in self.vocabulary:
            if token in seen or token in ("", OOV_TOKEN):
                raise ValueError(f"the vocabulary holds {token!r} " + ("twice" if token in seen else "(a reserved token: padding and OOV have ids 0 and 1)"))
            seen.add(token)
        return self

    @property
    def sample_shape(self) -> tuple[int]:
        return (self.max_length,)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ids = {token: i for i, token in enumerate(self.vocabulary, start=OOV_ID + 1)}
        out = np.full((len(texts), self.max_length), PADDING_ID, dtype=np.int64)
        for row, text in enumerate(texts):
            found = [ids.get(token, OOV_ID) for token in self.tokens(text)[: self.max_length]]
            out[row, : len(found)] = found
        return out

    def describe(self) -> str:
        first = ", ".join(self.vocabulary[:8]) + (", ..." if len(self.vocabulary) > 8 else "")
        return (
            f"{self._how()}, ids over {len(self.vocabulary) + 2} tokens (0 padding, 1 out of vocabulary, then {first}), "
            f"padded or cut to {self.max_length}"
        )


@step_kind
class TextLength(Tokenizer):
    """The number of tokens of a text, up to `max_length` [] int64: a recurrent op's sequence_length."""

    kind = "text_length"

    @property
    def sample_shape(self) -> tuple[()]:
        return ()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.fromiter((min(len(self.tokens(text)), self.max_length) for text in texts), dtype=np.int64, count=len(texts))

    def describe(self) -> str:
        return f"{self._how()}, the number of tokens up to {self.max_length}"


def text_vocabulary(tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int | None = None, min_count: int = 1) -> list[str]:
    """The vocabulary of `texts` as Keras's TextVectorization adapts it: tokens by count, ties broken by their UTF-8 bytes
    in reverse (Keras's lexsort of (token, count), reversed), at most max_tokens - 2 of them (padding and OOV count);
    tokens seen fewer than `min_count` times are left out (Keras has no min_count)."""
    counts = Counter(token for text in texts for token in tokenizer.tokens(text))
    counts.pop(OOV_TOKEN, None)  # Keras never learns its own OOV token
    kept = sorted((token for token, count in counts.items() if count >= min_count), key=lambda t: (counts[t], t.encode("utf-8")), reverse=True)
    return kept if max_tokens is None else kept[: max_tokens - 2]


@dataclass(frozen=True)
class Preprocessing:
    """Each field's steps; `origin` says where they come from (a file, a spec, or the default)."""

    fields: dict[str, tuple[Step, ...]] = field(default_factory=dict)
    origin: str = "the default"

    # --- applying -------------------------------------------------------------------

    def steps_for_files(self, name: str, expected: TensorType | None = None, path: str | Path = "") -> tuple[Step, ...]:
        """The steps that make a file into field `name`'s input: the record's, else the default for an image input.

        The default (no record for the field, e.g. a run made before tfn
        recorded preprocessing) decodes to the input's channels (1, 3 or 4)
        and size and divides by 255.
        """
        where = f"{path}: error" if path else "error"
        steps = self.fields.get(name)
        if steps:
            if not isinstance(steps[0], DecodeImage):
                raise PreprocessingError(f"{where}: field {name!r} is not read from image files: its preprocessing starts with {steps[0].kind!r}")
            return steps
        sample = tuple(expected.sample_shape) if expected is not None else ()
        colors = {c: color for color, c in _CHANNELS.items()}
        if len(sample) != 3 or sample[0] not in colors:
            raise PreprocessingError(f"{where}: an image feeds an input of one sample [C, H, W] with C 1, 3 or 4; input {name!r} takes {list(sample)}")
        return (DecodeImage(size=sample[1:], color=colors[sample[0]]), Scale(divide_by=255.0))

    def read_file(self, name: str, path: str | Path, expected: TensorType | None = None) -> np.ndarray:
        """One sample of field `name` from a file, through the field's steps (float32)."""
        decoder, *rest = self.steps_for_files(name, expected, path)
        batch = decoder.read(path)[None]
        for step in rest:
            batch = step.apply(batch)
        if expected is not None and tuple(batch.shape[1:]) != tuple(expected.sample_shape):
            raise PreprocessingError(
                f"{path}: error: the preprocessing of {name!r} (from {self.origin}) makes the image {list(batch.shape[1:])}; "
                f"the input takes {list(expected.sample_shape)}"
            )
        return np.ascontiguousarray(batch[0], dtype=np.float32)

    def read_table(self, name: str, table: CsvTable) -> np.ndarray:
        """Field `name` of every row of a table (CSV, TSV, JSON lines), through the field's steps (a `csv` or text step first)."""
        decoder, *rest = self._table_steps(name, table.path, TableDecoder)
        batch = decoder.decode(table)
        for step in rest:
            batch = step.apply(batch)
        return batch

    def read_csv(self, name: str, path: str | Path, expected: TensorType | None = None) -> tuple[np.ndarray, CsvTable]:
        """Field `name` of each data row of a CSV file, and the rows read (their lines).

        Only the columns the field's record names are read: others (the
        label, say) may be absent. A bad cell is an error naming its line.
        """
        decoder = self._table_steps(name, path, CsvColumns)[0]
        table = read_csv_table(path, {name: decoder.column_names}, decoder.delimiter)
        batch = self.read_table(name, table)
        if expected is not None and tuple(batch.shape[1:]) != tuple(expected.sample_shape):
            raise PreprocessingError(
                f"{path}: error: the preprocessing of {name!r} (from {self.origin}) makes samples {list(batch.shape[1:])}; "
                f"the input takes {list(expected.sample_shape)}"
            )
        return batch, table

    def _table_steps(self, name: str, path: str | Path, decoder: type[TableDecoder]) -> tuple[Step, ...]:
        steps = self.fields.get(name, ())
        if not steps or not isinstance(steps[0], decoder):
            how = f"its preprocessing starts with {steps[0].kind!r}" if steps else f"the preprocessing record (from {self.origin}) has no columns for it"
            made = "CSV columns" if decoder is CsvColumns else "the columns of a table"
            raise PreprocessingError(f"{path}: error: field {name!r} is not made from {made}: {how}")
        return steps

    def text_fields(self) -> list[str]:
        """The fields made from a text (token ids, lengths), in the record's order."""
        return [name for name, steps in self.fields.items() if isinstance(steps[0], Tokenizer)]

    def read_texts(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Each text field (token ids, lengths) for each of `texts`, through its steps: the batches a model takes."""
        fields = {}
        for name in self.text_fields():
            decoder, *rest = self.fields[name]
            batch = decoder.encode(list(texts))
            for step in rest:
                batch = step.apply(batch)
            fields[name] = batch
        return fields

    def steps_text(self, name: str) -> str | None:
        """Field `name`'s steps in words, or None when the record has none for it."""
        steps = self.fields.get(name)
        return "; ".join(step.describe() for step in steps) if steps else None

    def apply(self, name: str, batch: np.ndarray) -> np.ndarray:
        """Field `name`'s steps on a batch a source read as arrays [N, ...].

        A field whose steps start by decoding is read from files; a source that
        holds it as arrays (digits, MNIST) already holds what the steps make,
        so they do not apply again.
        """
        steps = self.fields.get(name, ())
        if not steps or steps[0].decodes:
            return batch
        for step in steps:
            batch = step.apply(batch)
        return batch

    def feed_of_decoded(self, name: str, batch: np.ndarray) -> np.ndarray:
        """What to feed field `name` (session.run's feeds) for a batch of raw values, as a Keras model with its
        own preprocessing layers took them (pixels 0 to 255, unnormalised features). A field whose steps start
        by decoding is fed its input tensor (as TF's feed_dict feeds a placeholder), so the steps after the
        decoding apply here; an array fed to any other field is raw data that `run` puts through its steps
        (`apply`), so it goes as it is. `tfn import --verify` feeds the original the batch and the import this."""
        steps = self.fields.get(name, ())
        if not steps or not steps[0].decodes:
            return batch
        for step in steps[1:]:
            batch = step.apply(batch)
        return batch

    def describe(self, name: str, expected: TensorType | None = None) -> str:
        """What happens to a file fed to field `name`, in words."""
        return "; ".join(step.describe() for step in self.steps_for_files(name, expected)) + f" (from {self.origin})"

    # --- storing --------------------------------------------------------------------

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "fields": {name: [s.to_json() for s in steps] for name, steps in self.fields.items()}}

    def write(self, directory: str | Path) -> Path:
        """Write `directory`/preprocessing.json, atomically."""
        path = Path(directory) / FILE
        write_json(path, self.to_json())
        return path

    @classmethod
    def read(cls, path: str | Path) -> Preprocessing:
        """A record file; PreprocessingError naming the file and the step for anything it cannot take."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PreprocessingError(f"{path}: error: no such file") from None
        except (ValueError, OSError) as exc:
            raise PreprocessingError(f"{path}: error: not a readable preprocessing record: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise PreprocessingError(f'{path}: error: not a preprocessing record: expected {{"format": "{FORMAT}", "version": {VERSION}, "fields": ...}}')
        fields = data.get("fields")
        if not isinstance(fields, dict) or not all(isinstance(steps, list) for steps in fields.values()):
            raise PreprocessingError(f"{path}: error: `fields` must map each field name to a list of steps")
        return cls({name: tuple(_step(path, name, i, raw) for i, raw in enumerate(steps)) for name, steps in fields.items()}, str(path))


def _step(path: Path, name: str, index: int, raw) -> Step:
    where = f"{path}: error: fields.{name}[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str):
        raise PreprocessingError(f"{where}: a step is an object with a `kind`; the kinds are {', '.join(KINDS)}")
    params = {k: v for k, v in raw.items() if k != "kind"}
    kind = raw["kind"]
    if kind not in KINDS:
        hint = suggest(kind, KINDS)
        raise PreprocessingError(
            f"{where}: unknown preprocessing kind {kind!r}" + (f" (did you mean {hint!r}?)" if hint else "") + f"; the kinds are {', '.join(KINDS)}"
        )
    try:
        step = KINDS[kind].model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ") for e in exc.errors()
        )
        raise PreprocessingError(f"{where} ({kind}): {problems}") from None
    if step.decodes and index:
        raise PreprocessingError(f"{where} ({kind}): a decoding step comes first")
    return step


# --- what a data source does to its fields --------------------------------------------


@singledispatch
def record_for(spec) -> Preprocessing:
    """The preprocessing a data section applies, read from the spec alone (never the data)."""
    raise TypeError(f"no preprocessing rule for data source {type(spec).__name__}")


def _images(size: tuple[int, int], color: str, scale: bool = True, origin: str = "the data section") -> Preprocessing:
    steps: tuple[Step, ...] = (DecodeImage(size=size, color=color),) + ((Scale(divide_by=255.0),) if scale else ())
    return Preprocessing({"image": steps}, origin)


@record_for.register
def _digits(spec: schema.DigitsData) -> Preprocessing:
    # training sees intensities 0..16 scaled to [0, 1]: an 8-bit image file maps to the same range
    return _images((8, 8), "grayscale")


@record_for.register
def _mnist(spec: schema.MnistData) -> Preprocessing:  # fashion_mnist too: a subclass
    return _images((28, 28), "grayscale")


@record_for.register
def _idx(spec: schema.IdxData) -> Preprocessing:
    # uint8 images are divided by 255; images of other types are fed as they are, with no known image-file form
    try:
        dtype, shape = idx_header(spec.images)
    except DataError:
        return Preprocessing()
    if dtype != np.uint8 or len(shape) not in (3, 4) or (len(shape) == 4 and shape[1] not in (1, 3)):
        return Preprocessing()
    return _images(tuple(shape[-2:]), "grayscale" if len(shape) == 3 or shape[1] == 1 else "rgb")


@record_for.register
def _image_folder(spec: schema.ImageFolderData) -> Preprocessing:
    record = _images(tuple(spec.size), spec.color)
    if spec.mean is None and spec.std is None:
        return record
    channels = _CHANNELS[spec.color]
    normalize = Normalize(mean=spec.mean or [0.0] * channels, std=spec.std or [1.0] * channels)
    return Preprocessing({"image": record.fields["image"] + (normalize,)}, record.origin)


@record_for.register(schema.SyntheticData)
@record_for.register(schema.KeyValueData)
@record_for.register(schema.NpzData)
@record_for.register(schema.NpyData)
@record_for.register(schema.CsvData)
@record_for.register(schema.TextData)
def _as_given(spec) -> Preprocessing:
    return Preprocessing({}, "the data section")


# --- what the training split adds: statistics and vocabularies ---------------------------

FITTED = "the data section (statistics and vocabularies of its training split)"


def fitted_from_data(spec) -> bool:
    """Whether a data section's record holds anything learnt from its training data (CSV columns, normalisation):
    such a record is made when the data is read (`tfn train`), never by `tfn check`."""
    return isinstance(spec, (schema.CsvData, schema.TextData)) or any(method != "none" for method in (getattr(spec, "normalize", None) or {}).values())


#: the two statistics of each normalisation: standard's mean and population std (ddof 0, as Keras adapts them), minmax's extremes
_STATISTICS = {"standard": (np.mean, np.std), "minmax": (np.min, np.max)}


def fit_normalization(method: str, batch: np.ndarray, *, keep: np.ndarray | None = None, where: Callable[[int], str] | None = None, name: str = "") -> Step:
    """The `standard` or `minmax` step of a field from its training batch [N, ...]: statistics per feature (axis 1,
    over every other axis; a field of one number per sample has one), computed in float64.

    `keep` marks features left as they are (one-hot blocks: mean 0 and std 1,
    minimum 0 and maximum 1); `where(sample)` names a sample for the error a
    NaN or infinity gives.
    """
    values = np.asarray(batch, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
    if bad.size:
        sample = int(bad[0])
        at = where(sample) if where is not None else None
        raise DataError(
            f"{at or f'data.normalize.{name}: error:'} field {name!r} holds {values[sample][~np.isfinite(values[sample])].flat[0]} "
            f"(sample {sample} of the training split); normalize needs finite values"
        )
    axes = tuple(a for a in range(values.ndim) if a != 1)
    first, second = _STATISTICS[method]
    low, high = np.atleast_1d(first(values, axis=axes)), np.atleast_1d(second(values, axis=axes))
    if keep is not None:
        low[keep], high[keep] = 0.0, 1.0
    if method == "standard":
        return Standardize(mean=low.tolist(), std=high.tolist(), samples=len(values))
    return MinMax(minimum=low.tolist(), maximum=high.tolist(), samples=len(values))


def fit_arrays(spec, train: Mapping[str, np.ndarray], where: Callable[[str, int], str | None], given: Preprocessing | None = None) -> Preprocessing:
    """The record of an array source (npz, npy): the normalisation statistics `spec.normalize` asks for, from the
    training arrays; the fields `given` (a model directory's record) has keep its steps."""
    fields = dict(given.fields) if given is not None else {}
    for name, method in (getattr(spec, "normalize", None) or {}).items():
        if method == "none" or name in fields:
            continue
        array = train[name]
        if array.dtype.kind != "f":
            raise DataError(f"data.normalize.{name}: error: field {name!r} holds {array.dtype}; normalize applies to float fields", ("data", "normalize", name))
        fields[name] = (fit_normalization(method, array, where=lambda sample, name=name: where(name, sample), name=name),)
    return Preprocessing(fields, given.origin if given is not None else FITTED)


def fit_csv(spec: schema.CsvData, file: CsvTable, train: CsvTable, given: Preprocessing | None = None) -> Preprocessing:
    """The record of a CSV source: each field's columns (class names from the whole training file, as `classes`
    or sorted; categorical vocabularies, sorted, from the training split) and the normalisation statistics of the
    training split. The fields `given` (a model directory's record) has keep its steps."""
    fields = {name: given.fields[name] for name in spec.fields if given is not None and name in given.fields}
    decoders = {}
    for name, columns in spec.fields.items():
        if name not in fields:
            single = isinstance(columns, str)
            listed = [columns] if single else columns
            decoders[name] = CsvColumns(columns=[_csv_column(spec, c, single, file, train) for c in listed], single=single, delimiter=spec.delimiter)
    normalized = [name for name in decoders if spec.normalize.get(name, "none") != "none"]
    decoded = first_bad_row([lambda decoder=decoders[name]: decoder.decode(train) for name in normalized])
    for name, decoder in decoders.items():
        fields[name] = (decoder,)
    for name, batch in zip(normalized, decoded):
        decoder = decoders[name]
        fields[name] += (fit_normalization(spec.normalize[name], batch, keep=~decoder.numeric(), where=train.where, name=name),)
    return Preprocessing({name: fields[name] for name in spec.fields}, given.origin if given is not None else FITTED)


def _encoding(spec: schema.CsvData, column: str, single: bool) -> str:
    """How a column becomes part of its field: its `categorical` encoding; else a class index (a field of one column) or a number."""
    return spec.categorical.get(column) or ("class" if single else "number")


def _csv_column(spec: schema.CsvData, column: str, single: bool, file: CsvTable, train: CsvTable) -> CsvColumn:
    encoding = _encoding(spec, column, single)
    if encoding in ("one_hot", "index"):
        return CsvColumn(column=column, encoding=encoding, vocabulary=sorted(set(train.columns[column])), oov=spec.unseen == "oov")
    if encoding == "number":
        return CsvColumn(column=column)
    return class_column(column, file.columns[column], spec.classes)


def class_column(column: str, cells: list[str], classes: list[str] | None) -> CsvColumn:
    """A label column: class names in the order `classes` gives, else the sorted distinct names of `cells`;
    cells that are numbers are class indices as they are."""
    names = classes or (sorted(set(cells)) if not any(_parses(float, c) for c in cells) else None)
    return CsvColumn(column=column, encoding="class", vocabulary=names)


TEXT_FIELDS = ("tokens", "length", "label")


def fit_text(spec: schema.TextData, file: CsvTable, train: CsvTable, given: Preprocessing | None = None) -> Preprocessing:
    """The record of a text source: `tokens` (ids over the vocabulary of the training split), `length` and `label`
    (class names from the whole training file, as the csv source). The fields `given` (a model directory's record) has keep its steps."""
    if given is not None and all(name in given.fields for name in TEXT_FIELDS):  # nothing to learn: eval, resume
        return Preprocessing({name: given.fields[name] for name in TEXT_FIELDS}, given.origin)
    tokenizer = {"column": spec.text, "standardize": spec.standardize, "tokenize": spec.tokenize, "separator": spec.separator, "max_length": spec.max_length}
    length = TextLength(**tokenizer)
    fields = {
        "tokens": (TextIds(**tokenizer, vocabulary=text_vocabulary(length, train.columns[spec.text], spec.max_tokens, spec.min_count)),),
        "length": (length,),
        "label": (CsvColumns(columns=[class_column(spec.label, file.columns[spec.label], spec.classes)], single=True),),
    }
    if given is not None:
        fields.update({name: steps for name, steps in given.fields.items() if name in fields})
    return Preprocessing(fields, given.origin if given is not None else FITTED)


def csv_field_type(spec: schema.CsvData, name: str) -> tuple[tuple[int | None, ...], str]:
    """The sample shape and dtype of CSV field `name` from the spec alone (`tfn check`): a width that one-hot blocks
    make is None, for their vocabularies come from the training split."""
    columns = spec.fields[name]
    single = isinstance(columns, str)
    encodings = [_encoding(spec, c, single) for c in ([columns] if single else columns)]
    if all(e in ("class", "index") for e in encodings):
        return ((), "int64") if single else ((len(encodings),), "int64")
    return (None if "one_hot" in encodings else len(encodings),), "float32"


def class_names(record: Preprocessing, field: str | None = None) -> list[str] | None:
    """The class names of a class-index field made from a CSV column (default: the first such field), if it names them."""
    for name, steps in record.fields.items():
        if field is not None and name != field:
            continue
        first = steps[0].columns[0] if isinstance(steps[0], CsvColumns) else None
        if first is not None and first.encoding == "class" and first.vocabulary:
            return list(first.vocabulary)
    return None


def for_model(directory: Path) -> Preprocessing:
    """The record of a model directory: its preprocessing.json; for a run made before tfn wrote one, what its spec.yaml's
    data section implies (what that run did); without either, the default (see Preprocessing.steps_for_files)."""
    if (directory / FILE).is_file():
        return Preprocessing.read(directory / FILE)
    if (directory / "spec.yaml").is_file():
        from tfn.specs import load

        record = record_for(load(directory / "spec.yaml").spec.data)
        return Preprocessing(record.fields, f"{directory / 'spec.yaml'} (the run has no {FILE})")
    return Preprocessing()
