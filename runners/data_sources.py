"""Data sources: each spec data class -> named fields for the train, validation and test splits.

`load_source(spec)` dispatches on the spec's class (specs/schema.py). A source
is either held in memory as arrays (`ArraySource`: batched later by slicing
tensors) or streamed from image files (`ImageFileSource`: decoded by
DataLoader workers). Nothing here imports torch; runners/data.py turns a
source into batches.
"""

from __future__ import annotations

import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import singledispatch
from pathlib import Path

import numpy as np

from tfn.runners.data_files import (
    DATASETS,
    ArrayHeader,
    CsvTable,
    DataError,
    absent_files,
    csv_header,
    fetch_verified,
    idx_header,
    jsonl_keys,
    npy_header,
    npz_headers,
    read_csv_table,
    read_idx,
    read_jsonl_table,
    read_npy,
    read_npz,
    require_directory,
    require_file,
    resolve,
)
from tfn.runners.preprocessing import Preprocessing, csv_field_type, first_bad_row, fit_arrays, fit_csv, fit_text, record_for
from tfn.runners.preprocessing import class_names as csv_class_names
from tfn.specs import schema

SPLITS = ("train", "validation", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SKIP_BAD_HINT = "; set `skip_bad: true` in the data section to skip bad images with a warning"


@dataclass(frozen=True)
class FieldType:
    """The shape of one sample of a field and its NumPy dtype name; a None dimension is not known before training
    (a CSV field's one-hot width)."""

    shape: tuple[int | None, ...]
    dtype: str

    def __str__(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + f"] {self.dtype}"


@dataclass(frozen=True)
class Rows:
    """Where the samples of a split come from, for messages: sample i is row index[i] of the fields' files.

    `files` names each field's file and, in an archive, its array; `lines` gives a CSV row's line.
    """

    files: dict[str, tuple[str, str | None]]
    index: np.ndarray | None = None
    lines: list[int] | None = None

    def take(self, index: np.ndarray) -> Rows:
        return Rows(self.files, index if self.index is None else self.index[index], self.lines)

    def where(self, name: str, sample: int) -> str | None:
        """`iris.csv:34: error:` or `d.npz: error: array 'y', index 12:` for a sample of field `name`; None for a field of no file."""
        if name not in self.files:
            return None
        path, array = self.files[name]
        row = int(self.index[sample]) if self.index is not None else sample
        if self.lines is not None:
            return f"{path}:{self.lines[row]}: error:"
        return f"{path}: error: " + (f"array {array!r}, " if array else "") + f"index {row}:"


@dataclass
class ArraySource:
    """A source held in memory: splits[split][field] is an array [N, ...]; rows[split] says where it came from."""

    splits: dict[str, dict[str, np.ndarray]]
    class_names: list[str] | None = None
    rows: dict[str, Rows] = field(default_factory=dict)
    #: the record fitted to (or given for) the fields: CSV columns, normalisation; None: what the data section implies
    preprocessing: Preprocessing | None = None

    def where(self, split: str, name: str, sample: int) -> str | None:
        """`FILE:LINE: error:` (CSV) or `FILE: error: index I:` for a sample of a field the source read from a file."""
        rows = self.rows.get(split)
        return rows.where(name, sample) if rows is not None else None

    def size(self, split: str) -> int:
        return len(next(iter(self.splits[split].values())))

    def field_types(self) -> dict[str, FieldType]:
        return {name: FieldType(tuple(a.shape[1:]), a.dtype.name) for name, a in self.splits["train"].items()}

    def labels(self, split: str, name: str) -> np.ndarray:
        return self.splits[split][name]


@dataclass
class ImageFileSource:
    """Images streamed from files: paths[split] and their class indices labels[split].

    `preprocessing` makes a file into the `image` field: the spec's (size,
    colour, scale, mean/std), or a model directory's record (tfn eval).
    """

    paths: dict[str, list[Path]]
    labels_by_split: dict[str, np.ndarray]
    class_names: list[str]
    spec: schema.ImageFolderData
    preprocessing: Preprocessing | None = None
    channels: int = field(init=False)

    def __post_init__(self):
        self.channels = 1 if self.spec.color == "grayscale" else 3
        if self.preprocessing is None:
            self.preprocessing = record_for(self.spec)

    def size(self, split: str) -> int:
        return len(self.paths[split])

    def field_types(self) -> dict[str, FieldType]:
        height, width = self.spec.size
        return {"image": FieldType((self.channels, height, width), "float32"), "label": FieldType((), "int64")}

    def labels(self, split: str, name: str) -> np.ndarray:
        return self.labels_by_split[split]

    def decode(self, path: Path) -> np.ndarray:
        """One image as float32 [C, H, W] through the `image` field's preprocessing; DataError naming the file."""
        return self.preprocessing.read_file("image", path)


Source = ArraySource | ImageFileSource


@singledispatch
def load_source(spec, preprocessing: Preprocessing | None = None) -> Source:
    """The data of a spec's data section, split.

    `preprocessing`, a model directory's record, makes the fields as that model
    saw them (its CSV vocabularies and normalisation statistics, its image
    size); without one, a source whose record is learnt from the data fits it
    to the training split (ArraySource.preprocessing). Sources whose arrays
    are what their record makes (digits, MNIST) ignore it.
    """
    raise TypeError(f"no loader for data source {type(spec).__name__}")


@dataclass
class SourceFields:
    """What a source gives, known without loading its data: the fields' types, the
    number of classes where the source says, and what could not be known that way."""

    fields: dict[str, FieldType]
    classes: int | None = None
    unchecked: list[str] = field(default_factory=list)


@singledispatch
def describe_source(spec) -> SourceFields:
    """The fields of a source from cheap metadata only (its declaration, file headers, a CSV's
    first line, one image): never the data. DataError (with the spec field at fault) when a
    file or column is missing or is not what the source reads."""
    raise TypeError(f"no description of data source {type(spec).__name__}")


# --- splitting ---------------------------------------------------------------------


def carve_splits(n: int, fractions: schema.SplitFractions, carve: set[str], source: str) -> dict[str, np.ndarray]:
    """Indices of each split carved from n samples: a permutation drawn from fractions.seed, validation first, then test."""
    order = np.random.default_rng(np.random.SeedSequence(fractions.seed % 2**64)).permutation(n)
    # rounded half up (not Python's half to even): 18 samples at 0.25 give 5
    counts = {s: int(n * getattr(fractions, s) + 0.5) if s in carve else 0 for s in ("validation", "test")}
    if n - counts["validation"] - counts["test"] < 1:
        raise DataError(f"data: error: source {source!r} has {n} samples; split {fractions.validation} / {fractions.test} leaves none to train on")
    out = {"validation": order[: counts["validation"]], "test": order[counts["validation"] : counts["validation"] + counts["test"]]}
    out["train"] = order[counts["validation"] + counts["test"] :]
    return {s: np.sort(out[s]) for s in carve | {"train"}}


def _same_length(shapes: dict[str, tuple], split: str, source: str) -> int:
    lengths = {name: shape[0] if shape else 0 for name, shape in shapes.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise DataError(f"data: error: the {split} fields of source {source!r} have different numbers of samples: {listed}", ("data",))
    return next(iter(lengths.values()))


def check_split_shapes(shapes: dict[str, dict[str, tuple]], source: str) -> int:
    """The arrays' shapes of each given split fit together: as many samples in every field of a
    split, the same fields and sample shapes in every split. The training split's sample count."""
    n = _same_length(shapes["train"], "train", source)
    for split in ("validation", "test"):
        if split in shapes:
            _same_length(shapes[split], split, source)
            if set(shapes[split]) != set(shapes["train"]):
                raise DataError(
                    f"data: error: source {source!r}: the {split} fields ({', '.join(shapes[split])}) differ from the training fields ({', '.join(shapes['train'])})",
                    ("data",),
                )
            for name, shape in shapes[split].items():
                train = shapes["train"][name]
                if shape[1:] != train[1:]:
                    raise DataError(
                        f"data: error: source {source!r}: field {name!r} has samples of shape {list(shape[1:])} in the {split} split "
                        f"but {list(train[1:])} in the training split",
                        ("data",),
                    )
    return n


def arrays_to_splits(
    given: dict[str, dict[str, np.ndarray]], fractions: schema.SplitFractions, source: str, rows: dict[str, Rows]
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Rows]]:
    """given["train"] plus any given validation/test arrays; the splits not given are carved from train.

    Also where each split's samples come from, from `rows` of the given splits.
    """
    n = check_split_shapes({split: {name: a.shape for name, a in arrays.items()} for split, arrays in given.items()}, source)
    carve = {s for s in ("validation", "test") if s not in given}
    if not carve:
        return dict(given), dict(rows)
    index = carve_splits(n, fractions, carve, source)
    out = {s: {name: a[index[s]] for name, a in given["train"].items()} for s in index}
    out.update({s: given[s] for s in given if s != "train"})
    where = {s: rows["train"].take(index[s]) for s in index}
    where.update({s: rows[s] for s in given if s != "train"})
    return out, where


# --- sources -----------------------------------------------------------------------


DIGITS_FIELDS = {"image": FieldType((1, 8, 8), "float32"), "label": FieldType((), "int64")}


@describe_source.register
def _describe_digits(spec: schema.DigitsData) -> SourceFields:
    return SourceFields(dict(DIGITS_FIELDS), classes=10)


@load_source.register
def _digits(spec: schema.DigitsData, preprocessing: Preprocessing | None = None) -> ArraySource:
    with np.load(DATASETS / "digits.npz", allow_pickle=False) as f:
        images, labels, split = f["images"], f["labels"], f["split"]
    splits = {}
    for index, name in enumerate(SPLITS):
        rows = split == index
        splits[name] = {"image": (images[rows].astype(np.float32) / 16.0)[:, None], "label": labels[rows].astype(np.int64)}
    return ArraySource(splits, [str(d) for d in range(10)])


@load_source.register
def _synthetic(spec: schema.SyntheticData, preprocessing: Preprocessing | None = None) -> ArraySource:
    seed = spec.seed % 2**64
    splits = {}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 1 + index])  # one stream per split: resizing one split leaves the others alone
        n = getattr(spec.samples, split)
        labels = rng.integers(0, spec.classes, n)
        fields = {}
        for name, f in spec.fields.items():
            if f.dtype.startswith("float"):
                values = rng.standard_normal((n, *f.shape), dtype=np.dtype(f.dtype).type) * np.asarray(spec.noise, dtype=f.dtype)
                for label in range(spec.classes):  # one class at a time: no [classes, *shape] table in memory
                    rows = np.flatnonzero(labels == label)
                    if rows.size:
                        values[rows] += _class_pattern(seed, name, label, f)
                fields[name] = values
            else:
                fields[name] = rng.integers(0, f.high or spec.classes, (n, *f.shape)).astype(f.dtype)
        fields[spec.label] = labels.astype(np.int64)
        splits[split] = fields
    return ArraySource(splits, [str(c) for c in range(spec.classes)])


@describe_source.register
def _describe_synthetic(spec: schema.SyntheticData) -> SourceFields:
    fields = {name: FieldType(tuple(f.shape), f.dtype) for name, f in spec.fields.items()}
    return SourceFields({**fields, spec.label: FieldType((), "int64")}, classes=spec.classes)


def _class_pattern(seed: int, field_name: str, label: int, f: schema.SyntheticField) -> np.ndarray:
    """The standard-normal pattern of one class in one field: the same in every split."""
    rng = np.random.default_rng([seed, 0, zlib.crc32(field_name.encode()), label])
    return rng.standard_normal(tuple(f.shape), dtype=np.dtype(f.dtype).type)


@load_source.register
def _key_value(spec: schema.KeyValueData, preprocessing: Preprocessing | None = None) -> ArraySource:
    seed = spec.seed % 2**64
    key_symbols, value_symbols = np.eye(spec.key_vocabulary, dtype=np.float32), np.eye(spec.classes, dtype=np.float32)
    splits = {}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 1 + index])  # one stream per split, as `synthetic`
        n = getattr(spec.samples, split)
        keys = rng.random((n, spec.key_vocabulary)).argsort(axis=1)[:, : spec.pairs]  # distinct within a sample
        values = rng.integers(0, spec.classes, (n, spec.pairs))
        asked = rng.integers(0, spec.pairs, n)
        rows = np.arange(n)
        splits[split] = {
            "keys": np.ascontiguousarray(key_symbols[keys].transpose(0, 2, 1)),  # [n, pairs, F] -> [n, F, pairs]
            "values": np.ascontiguousarray(value_symbols[values].transpose(0, 2, 1)),
            "query": key_symbols[keys[rows, asked]][:, :, None],
            "label": values[rows, asked].astype(np.int64),
        }
    return ArraySource(splits, [str(c) for c in range(spec.classes)])


@describe_source.register
def _describe_key_value(spec: schema.KeyValueData) -> SourceFields:
    fields = {
        "keys": FieldType((spec.key_vocabulary, spec.pairs), "float32"),
        "values": FieldType((spec.classes, spec.pairs), "float32"),
        "query": FieldType((spec.key_vocabulary, 1), "float32"),
        "label": FieldType((), "int64"),
    }
    return SourceFields(fields, classes=spec.classes)


@contextmanager
def _blame(*spec_path):
    """DataErrors raised inside concern this field of the spec's data section (unless they say another)."""
    try:
        yield
    except DataError as exc:
        exc.spec_path = exc.spec_path or spec_path
        raise


def _idx_fields(images_path: str | Path, images: ArrayHeader, labels_path: str | Path, labels: ArrayHeader) -> dict[str, tuple]:
    """The fields an image IDX file and a label IDX file make, as array shapes [N, ...] by field
    (images: [N, C, H, W]), from their shapes and dtypes; DataError when they do not go together."""
    (_, image_shape), (label_dtype, label_shape) = images, labels
    if len(label_shape) != 1:
        raise DataError(f"{resolve(labels_path)}: error: labels must be one number per sample; the IDX array has shape {list(label_shape)}")
    if image_shape[0] != label_shape[0]:
        raise DataError(f"{resolve(labels_path)}: error: {label_shape[0]} labels for the {image_shape[0]} images of {resolve(images_path)}")
    if not np.issubdtype(label_dtype, np.integer):
        raise DataError(f"{resolve(labels_path)}: error: labels must be integers, the IDX file holds {label_dtype}")
    if len(image_shape) not in (3, 4):
        raise DataError(f"{resolve(images_path)}: error: images must be [N, H, W] or [N, C, H, W]; the IDX array has shape {list(image_shape)}")
    return {"image": image_shape[:1] + (1,) + image_shape[1:] if len(image_shape) == 3 else image_shape, "label": label_shape}


def _idx_image_dtype(dtype: np.dtype) -> str:
    return "float32" if dtype == np.uint8 else dtype.name  # uint8 pixels are scaled to [0, 1]


def _images_and_labels(images_path: str | Path, labels_path: str | Path) -> dict[str, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    shapes = _idx_fields(images_path, (images.dtype, images.shape), labels_path, (labels.dtype, labels.shape))
    images = images.reshape(shapes["image"])
    images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
    return {"image": images, "label": labels.astype(np.int64)}


def _idx_rows(images: str | Path, labels: str | Path) -> Rows:
    return Rows({"image": (str(resolve(images)), None), "label": (str(resolve(labels)), None)})


def _idx_pair(images_path: str | Path, labels_path: str | Path, keys: tuple[str, str]) -> tuple[dict[str, tuple], str]:
    """The array shapes by field and the image dtype of an image and a label IDX file, from their headers."""
    with _blame("data", keys[0]):
        images = idx_header(images_path)
    with _blame("data", keys[1]):
        labels = idx_header(labels_path)
        return _idx_fields(images_path, images, labels_path, labels), _idx_image_dtype(images[0])


def _array_fields(shapes: dict[str, tuple], dtypes: dict[str, str]) -> dict[str, FieldType]:
    return {name: FieldType(tuple(shape[1:]), dtypes[name]) for name, shape in shapes.items()}


@describe_source.register
def _describe_idx(spec: schema.IdxData) -> SourceFields:
    shapes = {}
    shapes["train"], image_dtype = _idx_pair(spec.images, spec.labels, ("images", "labels"))
    if spec.test_images is not None:
        shapes["test"], _ = _idx_pair(spec.test_images, spec.test_labels, ("test_images", "test_labels"))
    check_split_shapes(shapes, "idx")
    return SourceFields(_array_fields(shapes["train"], {"image": image_dtype, "label": "int64"}))


@load_source.register
def _idx(spec: schema.IdxData, preprocessing: Preprocessing | None = None) -> ArraySource:
    given = {"train": _images_and_labels(spec.images, spec.labels)}
    rows = {"train": _idx_rows(spec.images, spec.labels)}
    if spec.test_images is not None:
        given["test"] = _images_and_labels(spec.test_images, spec.test_labels)
        rows["test"] = _idx_rows(spec.test_images, spec.test_labels)
    splits, rows = arrays_to_splits(given, spec.split, "idx", rows)
    return ArraySource(splits, rows=rows)


MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MNIST_FILES = {  # the published SHA-256 of each file
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def data_directory(source: str, directory: str | None) -> Path:
    """The spec's directory, else $TFN_DATA_DIR/<source>, else ~/.cache/tfn/datasets/<source>."""
    if directory is not None:
        return resolve(directory)
    root = os.environ.get("TFN_DATA_DIR")
    return (resolve(root) if root else Path.home() / ".cache" / "tfn" / "datasets") / source


MNIST_FIELDS = {"image": FieldType((1, 28, 28), "float32"), "label": FieldType((), "int64")}
MNIST_TRAIN_IMAGES = 60000


def _mnist_location(spec: schema.MnistData, default_url: str) -> tuple[Path, str]:
    return data_directory(spec.source, spec.directory), spec.url or os.environ.get(f"TFN_{spec.source.upper()}_URL") or default_url


def _mnist_validation(spec: schema.MnistData, train_images: int) -> None:
    if spec.validation >= train_images:
        raise DataError(
            f"data: error: validation {spec.validation} leaves none of the {train_images} {spec.source} training images to train on", ("data", "validation")
        )


def _describe_mnist_like(spec: schema.MnistData, files: dict[str, str], default_url: str) -> SourceFields:
    directory, url = _mnist_location(spec, default_url)
    with _blame("data", "directory" if spec.directory else "download"):
        missing = absent_files(directory, files, url, download=spec.download, source=spec.source)
    _mnist_validation(spec, MNIST_TRAIN_IMAGES)
    if missing:
        unchecked = f"the {spec.source} files, not in {directory} yet: downloaded and verified when training starts"
    else:
        unchecked = f"the {spec.source} files in {directory} (their SHA-256): verified when training starts"
    return SourceFields(dict(MNIST_FIELDS), classes=10, unchecked=[unchecked])


@describe_source.register
def _describe_mnist(spec: schema.MnistData) -> SourceFields:
    return _describe_mnist_like(spec, MNIST_FILES, MNIST_URL)


@describe_source.register
def _describe_fashion_mnist(spec: schema.FashionMnistData) -> SourceFields:
    return _describe_mnist_like(spec, FASHION_MNIST_FILES, FASHION_MNIST_URL)


def _mnist_like(spec: schema.MnistData, files: dict[str, str], default_url: str, class_names: list[str]) -> ArraySource:
    directory, url = _mnist_location(spec, default_url)
    fetch_verified(directory, files, url, download=spec.download, source=spec.source)
    train = _images_and_labels(directory / "train-images-idx3-ubyte.gz", directory / "train-labels-idx1-ubyte.gz")
    test = _images_and_labels(directory / "t10k-images-idx3-ubyte.gz", directory / "t10k-labels-idx1-ubyte.gz")
    n_val = spec.validation
    _mnist_validation(spec, len(train["label"]))
    splits = {
        "train": {k: v[n_val:] for k, v in train.items()},
        "validation": {k: v[:n_val] for k, v in train.items()},  # TF's read_data_sets: the first images
        "test": test,
    }
    train_rows = _idx_rows(directory / "train-images-idx3-ubyte.gz", directory / "train-labels-idx1-ubyte.gz")
    rows = {
        "train": train_rows.take(np.arange(n_val, len(train["label"]))),
        "validation": train_rows.take(np.arange(n_val)),
        "test": _idx_rows(directory / "t10k-images-idx3-ubyte.gz", directory / "t10k-labels-idx1-ubyte.gz"),
    }
    return ArraySource(splits, class_names, rows)


@load_source.register
def _mnist(spec: schema.MnistData, preprocessing: Preprocessing | None = None) -> ArraySource:
    return _mnist_like(spec, MNIST_FILES, MNIST_URL, [str(d) for d in range(10)])


@load_source.register
def _fashion_mnist(spec: schema.FashionMnistData, preprocessing: Preprocessing | None = None) -> ArraySource:
    return _mnist_like(spec, FASHION_MNIST_FILES, FASHION_MNIST_URL, FASHION_MNIST_CLASSES)


def _split_mappings(spec: schema.NpzData | schema.NpyData):
    """(split, the spec's key, its field mapping) for each split the spec names arrays of."""
    for split, key in (("train", "fields"), ("validation", "validation_fields"), ("test", "test_fields")):
        if getattr(spec, key) is not None:
            yield split, key, getattr(spec, key)


def _describe_arrays(spec: schema.NpzData | schema.NpyData, headers) -> SourceFields:
    shapes, dtypes = {}, {}
    for split, key, mapping in _split_mappings(spec):
        with _blame("data", key):
            found = headers(mapping, key)
        shapes[split] = {name: shape for name, (_, shape) in found.items()}
        dtypes = dtypes or {name: dtype.name for name, (dtype, _) in found.items()}
    check_split_shapes(shapes, spec.source)
    return SourceFields(_array_fields(shapes["train"], dtypes))


@describe_source.register
def _describe_npz(spec: schema.NpzData) -> SourceFields:
    with _blame("data", "path"):
        require_file(spec.path, ".npz file")

    def headers(mapping: dict[str, str], key: str) -> dict[str, ArrayHeader]:
        found = npz_headers(spec.path, list(mapping.values()))
        return {name: found[array] for name, array in mapping.items()}

    return _describe_arrays(spec, headers)


@describe_source.register
def _describe_npy(spec: schema.NpyData) -> SourceFields:
    def headers(mapping: dict[str, str], key: str) -> dict[str, ArrayHeader]:
        found = {}
        for name, path in mapping.items():
            with _blame("data", key, name):
                found[name] = npy_header(path)
        return found

    return _describe_arrays(spec, headers)


@load_source.register
def _npz(spec: schema.NpzData, preprocessing: Preprocessing | None = None) -> ArraySource:
    given, rows = {}, {}
    for split, _, mapping in _split_mappings(spec):
        arrays = read_npz(spec.path, list(mapping.values()))
        given[split] = {name: arrays[key] for name, key in mapping.items()}
        rows[split] = Rows({name: (str(resolve(spec.path)), key) for name, key in mapping.items()})
    return _fitted_arrays(spec, given, rows, "npz", preprocessing)


@load_source.register
def _npy(spec: schema.NpyData, preprocessing: Preprocessing | None = None) -> ArraySource:
    given, rows = {}, {}
    for split, _, mapping in _split_mappings(spec):
        given[split] = {name: read_npy(path) for name, path in mapping.items()}
        rows[split] = Rows({name: (str(resolve(path)), None) for name, path in mapping.items()})
    return _fitted_arrays(spec, given, rows, "npy", preprocessing)


def _fitted_arrays(spec, given, rows, source: str, preprocessing: Preprocessing | None) -> ArraySource:
    splits, rows = arrays_to_splits(given, spec.split, source, rows)
    record = fit_arrays(spec, splits["train"], rows["train"].where, preprocessing)
    return ArraySource(splits, rows=rows, preprocessing=record)


@describe_source.register
def _describe_csv(spec: schema.CsvData) -> SourceFields:
    for key in ("path", "validation_path", "test_path"):
        if getattr(spec, key) is not None:
            with _blame("data", key):
                csv_header(getattr(spec, key), spec.fields, spec.delimiter)
    fields = {name: FieldType(*csv_field_type(spec, name)) for name in spec.fields}
    unchecked = ["the CSV rows (numbers, class names" + (", categories" if spec.categorical else "") + "): read when training starts"]
    for name, columns in spec.fields.items():
        hot = [c for c in ([columns] if isinstance(columns, str) else columns) if spec.categorical.get(c) == "one_hot"]
        if hot:
            unchecked.append(f"the width of field {name!r}: the one-hot blocks of {', '.join(hot)} are as wide as their vocabularies in the training split")
    return SourceFields(fields, classes=len(spec.classes) if spec.classes else None, unchecked=unchecked)


@load_source.register
def _csv(spec: schema.CsvData, preprocessing: Preprocessing | None = None) -> ArraySource:
    file = read_csv_table(spec.path, spec.fields, spec.delimiter)
    tables = {"train": file}
    for split, path in (("validation", spec.validation_path), ("test", spec.test_path)):
        if path is not None:
            tables[split] = read_csv_table(path, spec.fields, spec.delimiter)
    carve = {s for s in ("validation", "test") if s not in tables}
    if carve:
        index = carve_splits(len(file), spec.split, carve, "csv")
        tables.update({split: file.take(rows) for split, rows in index.items()})
    # vocabularies and statistics from the training split alone: validation and test data never reach them
    record = fit_csv(spec, file, tables["train"], preprocessing)
    splits = {}
    for split, table in tables.items():  # a bad cell: the first of the split's rows is reported, whichever field it is in
        splits[split] = dict(zip(spec.fields, first_bad_row([lambda name=name: record.read_table(name, table) for name in spec.fields])))
    rows = {split: Rows(dict.fromkeys(spec.fields, (str(table.path), None)), lines=table.lines) for split, table in tables.items()}
    return ArraySource(splits, csv_class_names(record), rows, record)


TEXT_SUFFIXES = {".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def _text_files(spec: schema.TextData) -> dict[str, tuple[str, Path]]:
    """(the spec key, the file) of each split the spec names a file for."""
    files = {"train": ("path", Path(spec.path))}
    for split, key in (("validation", "validation_path"), ("test", "test_path")):
        if getattr(spec, key) is not None:
            files[split] = (key, Path(getattr(spec, key)))
    return files


@contextmanager
def _text_columns(key: str):
    """A missing column is the fault of the spec's `text:` or `label:` (the readers blame data.fields.FIELD); anything else of `key`."""
    try:
        yield
    except DataError as exc:
        exc.spec_path = ("data", exc.spec_path[2]) if exc.spec_path[:2] == ("data", "fields") else exc.spec_path or ("data", key)
        raise


def _text_table(spec: schema.TextData, key: str, path: Path, header_only: bool = False) -> CsvTable | list[str]:
    """The texts and labels of a file (its header only, for `tfn check`), by the spec's format or the file's suffix."""
    form = spec.format or TEXT_SUFFIXES.get(path.suffix.lower(), "csv")
    columns = {"text": spec.text, "label": spec.label}
    with _text_columns(key):
        if form == "jsonl":
            return jsonl_keys(path, columns) if header_only else read_jsonl_table(path, columns)
        delimiter = "\t" if form == "tsv" else ","
        return csv_header(path, columns, delimiter) if header_only else read_csv_table(path, columns, delimiter)


@describe_source.register
def _describe_text(spec: schema.TextData) -> SourceFields:
    for key, path in _text_files(spec).values():
        _text_table(spec, key, path, header_only=True)
    fields = {"tokens": FieldType((spec.max_length,), "int64"), "length": FieldType((), "int64"), "label": FieldType((), "int64")}
    unchecked = ["the texts, the labels and the vocabulary (from the training split): read when training starts"]
    return SourceFields(fields, classes=len(spec.classes) if spec.classes else None, unchecked=unchecked)


@load_source.register
def _text(spec: schema.TextData, preprocessing: Preprocessing | None = None) -> ArraySource:
    tables = {split: _text_table(spec, key, path) for split, (key, path) in _text_files(spec).items()}
    file = tables["train"]
    carve = {s for s in ("validation", "test") if s not in tables}
    if carve:
        index = carve_splits(len(file), spec.split, carve, "text")
        tables.update({split: file.take(rows) for split, rows in index.items()})
    # the vocabulary from the training split alone: validation and test texts never reach it
    record = fit_text(spec, file, tables["train"], preprocessing)
    splits = {split: {name: record.read_table(name, table) for name in record.fields} for split, table in tables.items()}
    rows = {split: Rows(dict.fromkeys(record.fields, (str(table.path), None)), lines=table.lines) for split, table in tables.items()}
    return ArraySource(splits, csv_class_names(record, "label"), rows, record)


def _class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _training_classes(spec: schema.ImageFolderData) -> tuple[Path, list[str]]:
    with _blame("data", "directory"):
        root = require_directory(spec.directory, "image folder")
        class_names = _class_folders(root)
        if not class_names:
            raise DataError(f"{root}: error: no class sub-folders; an image folder holds one sub-folder of images per class")
    return root, class_names


def _known_classes(root: Path, class_names: list[str]) -> None:
    unknown = [name for name in _class_folders(root) if name not in class_names]
    if unknown:
        raise DataError(f"{root}: error: class folder(s) {', '.join(unknown)} are not among the training classes {', '.join(class_names)}")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


@describe_source.register
def _describe_image_folder(spec: schema.ImageFolderData) -> SourceFields:
    root, class_names = _training_classes(spec)
    for key in ("validation_directory", "test_directory"):
        if getattr(spec, key) is not None:
            with _blame("data", key):
                _known_classes(require_directory(getattr(spec, key), f"{key.split('_')[0]} image folder"), class_names)
    first = next((p for name in class_names for p in (root / name).rglob("*") if _is_image(p)), None)
    if first is None:
        raise DataError(f"{root}: error: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders {', '.join(class_names)}", ("data", "directory"))
    source = ImageFileSource({}, {}, class_names, spec)
    unchecked = f"the images but one ({first} decodes): decoded during training"
    try:
        source.decode(first)
    except DataError as exc:
        if not spec.skip_bad:
            raise DataError(f"{exc}{SKIP_BAD_HINT}", ("data", "directory")) from None
        unchecked = f"the images ({first} does not decode and would be skipped): decoded during training"
    return SourceFields(source.field_types(), classes=len(class_names), unchecked=[unchecked])


@load_source.register
def _image_folder(spec: schema.ImageFolderData, preprocessing: Preprocessing | None = None) -> ImageFileSource:
    root, class_names = _training_classes(spec)
    train_paths, train_labels = _scan_images(root, class_names)
    given = {"train": (train_paths, train_labels)}
    for split, directory in (("validation", spec.validation_directory), ("test", spec.test_directory)):
        if directory is not None:
            given[split] = _scan_images(require_directory(directory, f"{split} image folder"), class_names)
    carve = {s for s in ("validation", "test") if s not in given}
    paths, labels = {}, {}
    index = carve_splits(len(train_paths), spec.split, carve, "image_folder") if carve else {"train": np.arange(len(train_paths))}
    for split, rows in index.items():
        paths[split] = [train_paths[i] for i in rows]
        labels[split] = train_labels[rows]
    for split, (p, l) in given.items():
        if split != "train":
            paths[split], labels[split] = p, l
    return ImageFileSource(paths, labels, class_names, spec, preprocessing)


def _scan_images(root: Path, class_names: list[str]) -> tuple[list[Path], np.ndarray]:
    _known_classes(root, class_names)
    paths, labels = [], []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if _is_image(path):
                paths.append(path)
                labels.append(label)
    if not paths:
        raise DataError(f"{root}: error: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders {', '.join(class_names)}")
    return paths, np.asarray(labels, dtype=np.int64)
