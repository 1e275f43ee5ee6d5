"""Data sources on small files the tests write: IDX, MNIST download (local HTTP), npz/npy, CSV, image folders; synthetic and key_value."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from tfn.runners import data_sources
from tfn.runners.data_files import DataError, read_idx
from tfn.runners.data_sources import load_source
from tfn.specs.schema import CsvData, IdxData, ImageFolderData, KeyValueData, MnistData, NpyData, NpzData, SyntheticData


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file written from its definition: 0, 0, type code, rank, big-endian dims, big-endian data."""
    code = {np.dtype("uint8"): 0x08, np.dtype("int16"): 0x0B, np.dtype("float32"): 0x0D}[array.dtype]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


# --- IDX -----------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_read_idx_round_trips(tmp_path, compress, dtype):
    array = (np.arange(2 * 3 * 4) * 7 - 20).reshape(2, 3, 4).astype(dtype) if dtype != "uint8" else np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(array)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and np.array_equal(out, array)


def test_read_idx_errors_name_the_file(tmp_path):
    truncated = tmp_path / "short.idx"
    truncated.write_bytes(idx_bytes(np.zeros((3, 2), np.uint8))[:-1])
    with pytest.raises(DataError, match=r"short.idx: error: an IDX array of shape \[3, 2\] needs 18 bytes, the file has 17"):
        read_idx(truncated)
    not_idx = tmp_path / "text.idx"
    not_idx.write_text("hello")
    with pytest.raises(DataError, match="text.idx: error: not an IDX file"):
        read_idx(not_idx)
    with pytest.raises(DataError, match="missing.idx: error: no such file"):
        read_idx(tmp_path / "missing.idx")


def test_idx_source_scales_images_and_carves_splits(tmp_path):
    images = np.arange(20 * 2 * 2, dtype=np.uint8).reshape(20, 2, 2)
    labels = (np.arange(20) % 3).astype(np.uint8)
    (tmp_path / "img.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "lab").write_bytes(idx_bytes(labels))
    spec = IdxData(source="idx", images=str(tmp_path / "img.gz"), labels=str(tmp_path / "lab"), split={"validation": 0.2, "test": 0.1, "seed": 3})
    source = load_source(spec)
    assert [source.size(s) for s in ("train", "validation", "test")] == [14, 4, 2]
    rebuilt = np.concatenate([source.splits[s]["image"] for s in ("train", "validation", "test")])
    assert rebuilt.shape[1:] == (1, 2, 2) and rebuilt.dtype == np.float32
    # every image exactly once, scaled by 1/255, its label kept beside it
    everything = np.concatenate([source.splits[s]["label"] for s in ("train", "validation", "test")])
    first_pixel = np.rint(rebuilt[:, 0, 0, 0] * 255).astype(int)
    assert sorted(first_pixel) == list(range(0, 80, 4))
    assert np.array_equal(everything, (first_pixel // 4) % 3)
    assert np.array_equal(load_source(spec).splits["test"]["image"], source.splits["test"]["image"])  # deterministic


def test_idx_label_count_mismatch(tmp_path):
    (tmp_path / "img").write_bytes(idx_bytes(np.zeros((4, 2, 2), np.uint8)))
    (tmp_path / "lab").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match="3 labels for the 4 images"):
        load_source(IdxData(source="idx", images=str(tmp_path / "img"), labels=str(tmp_path / "lab")))


# --- MNIST download from a local server ------------------------------------------------


@pytest.fixture
def mnist_server(tmp_path):
    """Generated MNIST-format files served over HTTP on 127.0.0.1; yields (base URL, {name: sha256})."""
    served = tmp_path / "served"
    served.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (30, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(30) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.arange(10).astype(np.uint8),
    }
    hashes = {}
    for name, array in arrays.items():
        data = gzip.compress(idx_bytes(array))
        (served / name).write_bytes(data)
        hashes[name] = hashlib.sha256(data).hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", hashes, arrays
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_mnist_downloads_verifies_and_loads(tmp_path, mnist_server, monkeypatch, capsys):
    url, hashes, arrays = mnist_server
    monkeypatch.setattr(data_sources, "MNIST_FILES", hashes)
    spec = MnistData(source="mnist", directory=str(tmp_path / "cache"), url=url, validation=5)
    source = load_source(spec)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(hashes)
    assert "downloading" in capsys.readouterr().err
    assert [source.size(s) for s in ("train", "validation", "test")] == [25, 5, 10]
    # TF's read_data_sets: validation is the first training images
    assert np.array_equal(source.splits["validation"]["image"][:, 0], arrays["train-images-idx3-ubyte.gz"][:5] / np.float32(255))
    assert np.array_equal(source.splits["test"]["label"], np.arange(10))
    assert source.class_names == [str(d) for d in range(10)]
    # the second load reads the verified files without the network
    monkeypatch.setenv("TFN_MNIST_URL", "http://127.0.0.1:9/")
    again = load_source(MnistData(source="mnist", directory=str(tmp_path / "cache"), download=False, validation=5))
    assert np.array_equal(again.splits["train"]["image"], source.splits["train"]["image"])


def test_mnist_url_and_directory_from_the_environment(tmp_path, mnist_server, monkeypatch):
    url, hashes, _ = mnist_server
    monkeypatch.setattr(data_sources, "MNIST_FILES", hashes)
    monkeypatch.setenv("TFN_MNIST_URL", url)
    monkeypatch.setenv("TFN_DATA_DIR", str(tmp_path / "data"))
    load_source(MnistData(source="mnist", validation=0))
    assert (tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_mnist_checksum_mismatch_keeps_nothing(tmp_path, mnist_server, monkeypatch):
    url, hashes, _ = mnist_server
    wrong = dict(hashes, **{"t10k-images-idx3-ubyte.gz": "0" * 64})
    monkeypatch.setattr(data_sources, "MNIST_FILES", wrong)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: error: the download's SHA-256 [0-9a-f]{64} does not match the published 0000"):
        load_source(MnistData(source="mnist", directory=str(tmp_path / "cache"), url=url))
    assert not (tmp_path / "cache" / "t10k-images-idx3-ubyte.gz").exists()


def test_mnist_offline_names_the_files_and_the_directory(tmp_path):
    spec = MnistData(source="mnist", directory=str(tmp_path / "cache"), url="http://127.0.0.1:9/")  # port 9: nothing listens
    with pytest.raises(DataError) as info:
        load_source(spec)
    message = str(info.value)
    assert "cannot download http://127.0.0.1:9/train-images-idx3-ubyte.gz" in message
    assert f"put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz into {tmp_path / 'cache'}" in message
    with pytest.raises(DataError, match="are missing and `download: false`; put train-images"):
        load_source(MnistData(source="mnist", directory=str(tmp_path / "cache"), download=False))


def test_a_corrupted_local_file_is_not_silently_replaced(tmp_path, mnist_server, monkeypatch):
    url, hashes, _ = mnist_server
    monkeypatch.setattr(data_sources, "MNIST_FILES", hashes)
    cache = tmp_path / "cache"
    load_source(MnistData(source="mnist", directory=str(cache), url=url, validation=0))
    (cache / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: error: SHA-256 .* delete the file to download it again"):
        load_source(MnistData(source="mnist", directory=str(cache), url=url))


# --- npz / npy -----------------------------------------------------------------------


def test_npz_fields_and_given_test_split(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(10, 4)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(10) % 2, x_test=x[:3], y_test=np.array([1, 0, 1]))
    spec = NpzData(
        source="npz",
        path=str(tmp_path / "d.npz"),
        fields={"x": "x_train", "label": "y_train"},
        test_fields={"x": "x_test", "label": "y_test"},
        split={"validation": 0.2},
    )
    source = load_source(spec)
    assert [source.size(s) for s in ("train", "validation", "test")] == [8, 2, 3]
    assert np.array_equal(source.splits["test"]["label"], [1, 0, 1])
    assert np.array_equal(np.sort(np.concatenate([source.splits["train"]["x"][:, 0], source.splits["validation"]["x"][:, 0]])), x[:, 0])


def test_npz_missing_array_lists_the_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(DataError, match="no array named 'c'; the file has a, b"):
        load_source(NpzData(source="npz", path=str(tmp_path / "d.npz"), fields={"x": "a", "label": "c"}))


def test_npy_files_must_agree_in_length(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 2)))
    np.save(tmp_path / "y.npy", np.zeros(4, dtype=np.int64))
    with pytest.raises(DataError, match="different numbers of samples: x 5, label 4"):
        load_source(NpyData(source="npy", fields={"x": str(tmp_path / "x.npy"), "label": str(tmp_path / "y.npy")}))


def test_npy_refuses_pickled_objects(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", np.zeros(1, dtype=np.int64))
    with pytest.raises(DataError, match="without pickle"):
        load_source(NpyData(source="npy", fields={"x": str(tmp_path / "o.npy"), "label": str(tmp_path / "y.npy")}))


# --- CSV -----------------------------------------------------------------------------

IRIS = """sepal_length,sepal_width,species
5.1,3.5,setosa
7.0,3.2,versicolor
6.3,3.3,virginica
4.9,3.0,setosa
"""


def csv_spec(path: Path, **kw) -> CsvData:
    return CsvData(source="csv", path=str(path), fields={"features": ["sepal_length", "sepal_width"], "label": "species"}, **kw)


def test_csv_columns_become_fields_and_names_become_classes(tmp_path):
    (tmp_path / "iris.csv").write_text(IRIS)
    source = load_source(csv_spec(tmp_path / "iris.csv", split={"validation": 0, "test": 0}))
    assert source.class_names == ["setosa", "versicolor", "virginica"]
    train = source.splits["train"]
    assert train["features"].dtype == np.float32 and train["features"].shape == (4, 2)
    assert np.allclose(train["features"], [[5.1, 3.5], [7.0, 3.2], [6.3, 3.3], [4.9, 3.0]])
    assert train["label"].tolist() == [0, 1, 2, 0]
    fixed = load_source(csv_spec(tmp_path / "iris.csv", classes=["virginica", "versicolor", "setosa"], split={"validation": 0, "test": 0}))
    assert fixed.splits["train"]["label"].tolist() == [2, 1, 0, 2]


@pytest.mark.parametrize(
    "row, message",
    [
        ("5.0,abc,setosa", r"bad.csv:4: error: column 'sepal_width': 'abc' is not a number"),
        ("5.0,3.1", r"bad.csv:4: error: 2 columns, the header has 3"),
    ],
)
def test_a_bad_csv_row_names_its_line(tmp_path, row, message):
    lines = IRIS.splitlines()
    lines.insert(3, row)
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        load_source(csv_spec(tmp_path / "bad.csv"))


def test_csv_unknown_class_and_unknown_column(tmp_path):
    (tmp_path / "iris.csv").write_text(IRIS)
    with pytest.raises(DataError, match=r"iris.csv:3: error: column 'species': 'versicolor' is not one of the classes setosa, virginica"):
        load_source(csv_spec(tmp_path / "iris.csv", classes=["setosa", "virginica"]))
    spec = CsvData(source="csv", path=str(tmp_path / "iris.csv"), fields={"features": ["sepal_lenght"], "label": "species"})
    with pytest.raises(DataError, match=r"iris.csv:1: error: field 'features': no column 'sepal_lenght' \(did you mean 'sepal_length'\?\); the columns are"):
        load_source(spec)


def test_csv_integer_labels_and_a_stray_value(tmp_path):
    (tmp_path / "n.csv").write_text("a,y\n1.5,0\n2.5,2\n3.5,x1\n")
    with pytest.raises(DataError, match=r"n.csv:4: error: column 'y': 'x1' is not an integer class index"):
        load_source(CsvData(source="csv", path=str(tmp_path / "n.csv"), fields={"a": ["a"], "label": "y"}))


# --- image folders -------------------------------------------------------------------


def write_image_folder(root: Path, per_class: int = 3, size=(6, 5)) -> None:
    from PIL import Image

    for label, (name, colour) in enumerate((("cat", (200, 10, 10)), ("dog", (10, 10, 200)))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            suffix = ".png" if i % 2 == 0 else ".jpg"
            Image.new("RGB", size, colour).save(root / name / f"{i}{suffix}")


def test_image_folder_decodes_resizes_and_normalises(tmp_path):
    write_image_folder(tmp_path / "pets")
    (tmp_path / "pets" / "notes.txt").write_text("not a class")
    spec = ImageFolderData(
        source="image_folder", directory=str(tmp_path / "pets"), size=[4, 3], split={"validation": 0, "test": 0}, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]
    )
    source = load_source(spec)
    assert source.class_names == ["cat", "dog"]
    assert source.size("train") == 6 and source.labels("train", "label").tolist() == [0, 0, 0, 1, 1, 1]
    image = source.decode(source.paths["train"][0])  # a solid (200, 10, 10) PNG: lossless
    assert image.shape == (3, 4, 3) and image.dtype == np.float32
    assert np.allclose(image[0], (200 / 255 - 0.5) / 0.5) and np.allclose(image[2], (10 / 255 - 0.5) / 0.5)
    grey = load_source(spec.model_copy(update={"color": "grayscale", "mean": None, "std": None}))
    value = grey.decode(grey.paths["train"][0])
    # ITU-R 601-2 luma, as Pillow's "L" conversion: (200*299 + 10*587 + 10*114) / 1000
    assert value.shape == (1, 4, 3) and np.allclose(value, round((200 * 299 + 10 * 587 + 10 * 114) / 1000) / 255)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="nowhere: error: no such directory"):
        load_source(ImageFolderData(source="image_folder", directory=str(tmp_path / "nowhere"), size=[4, 4]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_source(ImageFolderData(source="image_folder", directory=str(tmp_path / "empty"), size=[4, 4]))
    write_image_folder(tmp_path / "train")
    write_image_folder(tmp_path / "test")
    (tmp_path / "test" / "bird").mkdir()
    with pytest.raises(DataError, match="class folder\\(s\\) bird are not among the training classes cat, dog"):
        load_source(ImageFolderData(source="image_folder", directory=str(tmp_path / "train"), test_directory=str(tmp_path / "test"), size=[4, 4]))


def test_corrupt_image_is_an_error_naming_the_file(tmp_path):
    write_image_folder(tmp_path / "pets")
    bad = tmp_path / "pets" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    source = load_source(ImageFolderData(source="image_folder", directory=str(tmp_path / "pets"), size=[4, 4]))
    with pytest.raises(DataError, match=r"broken.png: error: cannot decode the image"):
        source.decode(bad)


# --- synthetic -----------------------------------------------------------------------


def test_synthetic_is_deterministic_learnable_and_split_independent():
    spec = SyntheticData(source="synthetic", classes=4, fields={"x": {"shape": [3, 2]}, "ids": {"shape": [5], "dtype": "int64", "high": 7}}, noise=0.1)
    a, b = load_source(spec), load_source(spec)
    assert np.array_equal(a.splits["train"]["x"], b.splits["train"]["x"])
    train = a.splits["train"]
    assert train["x"].shape == (1024, 3, 2) and train["x"].dtype == np.float32
    assert train["ids"].min() >= 0 and train["ids"].max() < 7 and train["label"].max() < 4
    # samples of a class sit around that class's pattern: the nearest class mean recovers the label
    means = np.stack([train["x"][train["label"] == c].mean(0) for c in range(4)])
    test = a.splits["test"]
    nearest = np.argmin(((test["x"][:, None] - means[None]) ** 2).sum(axis=(2, 3)), axis=1)
    assert (nearest == test["label"]).mean() > 0.95
    # a bigger test split leaves the training data as it was
    bigger = load_source(spec.model_copy(update={"samples": spec.samples.model_copy(update={"test": 999})}))
    assert np.array_equal(bigger.splits["train"]["x"], train["x"])


# --- key_value -----------------------------------------------------------------------


def test_key_value_samples_store_the_label_under_the_query():
    spec = KeyValueData(source="key_value", pairs=5, key_vocabulary=7, classes=4, samples={"train": 300, "validation": 20, "test": 30})
    source = load_source(spec)
    assert source.class_names == ["0", "1", "2", "3"]
    assert {s: source.size(s) for s in ("train", "validation", "test")} == {"train": 300, "validation": 20, "test": 30}
    types = source.field_types()
    assert {name: (t.shape, t.dtype) for name, t in types.items()} == {
        "keys": ((7, 5), "float32"), "values": ((4, 5), "float32"), "query": ((7, 1), "float32"), "label": ((), "int64")}
    for split in ("train", "test"):
        f = source.splits[split]
        for name in ("keys", "values", "query"):  # one symbol per position: one-hot columns
            assert set(np.unique(f[name])) == {0.0, 1.0} and (f[name].sum(axis=1) == 1).all()
        keys, values, query = f["keys"].argmax(1), f["values"].argmax(1), f["query"][:, :, 0].argmax(1)  # symbol ids [n, pairs], [n]
        assert all(len(set(row)) == 5 for row in keys)  # a sample's keys differ, so the query matches one position
        matches = keys == query[:, None]
        assert (matches.sum(1) == 1).all()
        assert np.array_equal(f["label"], values[matches])  # the value stored at the matching position
    train = source.splits["train"]
    # every position and every value is asked for: no shortcut through a fixed position or class
    assert set((train["keys"].argmax(1) == train["query"][:, :, 0].argmax(1)[:, None]).argmax(1)) == set(range(5))
    assert set(train["label"]) == set(range(4))


def test_key_value_is_deterministic_and_its_splits_independent():
    spec = KeyValueData(source="key_value", samples={"train": 64, "validation": 8, "test": 8})
    a, b = load_source(spec), load_source(spec)
    assert all(np.array_equal(a.splits[s][n], b.splits[s][n]) for s in a.splits for n in a.splits[s])
    bigger = load_source(spec.model_copy(update={"samples": spec.samples.model_copy(update={"test": 99})}))
    assert np.array_equal(bigger.splits["train"]["keys"], a.splits["train"]["keys"])
    other = load_source(spec.model_copy(update={"seed": 1}))
    assert not np.array_equal(other.splits["train"]["keys"], a.splits["train"]["keys"])
    assert not np.array_equal(a.splits["train"]["keys"][:8], a.splits["test"]["keys"])


def test_key_value_needs_as_many_key_symbols_as_pairs(write_spec, tfn_cli):
    path = write_spec(
        """
        version: 1
        name: kv
        model:
          inputs: {query: {shape: [4, 1]}}
          layers:
            - {op: flatten}
            - {name: logits, op: dense, units: 10}
        loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
        data: {source: key_value, pairs: 8, key_vocabulary: 4}
        """
    )
    code, _, err = tfn_cli("check", str(path))
    assert code == 2
    assert "spec.yaml:9:7: error: data: key_vocabulary (4) must be at least pairs (8): the keys of a sample are distinct" in err


def test_csv_that_is_not_utf8(tmp_path):
    (tmp_path / "latin.csv").write_bytes("a,label\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv: error: not UTF-8 text"):
        load_source(CsvData(source="csv", path=str(tmp_path / "latin.csv"), fields={"a": ["a"], "label": "label"}))


def test_a_given_split_must_match_the_training_shapes(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 3)), y=np.zeros(6, np.int64), tx=np.zeros((2, 4)), ty=np.zeros(2, np.int64))
    spec = NpzData(source="npz", path=str(tmp_path / "d.npz"), fields={"x": "x", "label": "y"}, test_fields={"x": "tx", "label": "ty"})
    with pytest.raises(DataError, match=r"field 'x' has samples of shape \[4\] in the test split but \[3\] in the training split"):
        load_source(spec)
