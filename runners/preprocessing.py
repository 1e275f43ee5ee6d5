"""The input preprocessing of each data field: recorded in a model directory as data, applied by every consumer.

    preprocessing.json
    {"format": "tfn.preprocessing", "version": 1,
     "fields": {"image": [{"kind": "image", "size": [64, 64], "color": "rgb"},
                          {"kind": "scale", "divide_by": 255.0},
                          {"kind": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}]}}

A field's steps turn raw data into what the model input takes. A decoding
step (kind `image`) reads a file into an array; the steps after it act on a
NumPy batch [N, C, ...]. The training run writes the record (``record_for``
its data section); the data pipeline decodes image files through it, and
`tfn eval`, `tfn run` and `tfn predict` on image files, the Python API and
the ONNX export's metadata take it from the model directory. Arrays fed to
`tfn run`, `tfn predict` or the API (.npy, .npz, literals) are the input
tensors themselves, as TF's feed_dict feeds a placeholder: no step applies.

A kind is one :class:`Step` subclass registered with :func:`step_kind`: its
parameters (pydantic fields), `apply` on a batch and `describe`. Nothing
in a record is code: reading one never runs anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import singledispatch
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from tfn.layers import TensorType, suggest
from tfn.runners.data_files import DataError, idx_header
from tfn.runners.files import write_json
from tfn.specs import schema

FILE = "preprocessing.json"
FORMAT = "tfn.preprocessing"
VERSION = 1


class PreprocessingError(DataError):
    """A preprocessing record that cannot be read, or a file its steps cannot take: exit status 2."""


class Step(BaseModel):
    """One step of a field's preprocessing; its fields are the step's parameters, as stored in the record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str]
    #: a decoding step reads a file (read()); it comes first, and the other steps act on what it gives
    decodes: ClassVar[bool] = False

    def apply(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"preprocessing step {self.kind} has no apply()")

    def describe(self) -> str:
        raise NotImplementedError(f"preprocessing step {self.kind} has no describe()")

    def to_json(self) -> dict:
        return {"kind": self.kind, **self.model_dump(mode="json")}


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
class DecodeImage(Step):
    """Decode an image file, convert its colours, resize it (bilinear): float32 [C, H, W] with values 0 to 255."""

    kind = "image"
    decodes = True

    size: tuple[PositiveInt, PositiveInt] = Field(description="[height, width]")
    color: Literal["grayscale", "rgb", "rgba"]

    @property
    def shape(self) -> tuple[int, int, int]:
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

    def apply(self, batch: np.ndarray) -> np.ndarray:
        if tuple(batch.shape[1:]) != self.shape:
            raise PreprocessingError(f"error: decoded images are {list(self.shape)}, this batch holds {list(batch.shape[1:])}")
        return batch

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
        if batch.ndim < 2 or batch.shape[1] != len(self.mean) or len(self.std) != len(self.mean):
            raise PreprocessingError(f"error: normalize has {len(self.mean)} means and {len(self.std)} stds for a batch {list(batch.shape)}")
        shape = (1, -1) + (1,) * (batch.ndim - 2)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        return (batch - mean) / std

    def describe(self) -> str:
        return f"(x - mean) / std per channel with mean {self.mean} and std {self.std}"


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
            if not steps[0].decodes:
                raise PreprocessingError(f"{where}: field {name!r} is not read from files: its preprocessing starts with {steps[0].kind!r}")
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
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or kind}: {e['msg']}" for e in exc.errors())
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
def _as_given(spec) -> Preprocessing:
    return Preprocessing({}, "the data section")


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
