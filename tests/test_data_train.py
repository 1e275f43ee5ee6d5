"""`tfn train` end to end on data the tests create: each source learns; each data mistake exits 2 with a clear message."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

SPEC = """
version: 1
name: {name}
model:
  inputs:
    {input}: {{shape: {shape}}}
  layers:
    - {{op: flatten}}
    - {{name: hidden, op: dense, units: 16}}
    - {{op: relu}}
    - {{name: logits, op: dense, units: {classes}}}
loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
optimizer: {{type: adam, learning_rate: 0.02}}
data: {data}
train: {{epochs: {epochs}, seed: 1}}
"""


def spec_text(data: str, *, name="data", input="x", shape="[4]", classes=3, epochs=6) -> str:
    return SPEC.format(name=name, input=input, shape=shape, classes=classes, data=data, epochs=epochs)


def blobs(n: int, features: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian clusters, one per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, features))
    labels = rng.integers(0, classes, n)
    return (centres[labels] + rng.normal(0, 0.7, (n, features))).astype(np.float32), labels


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def bars(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8x8 uint8 images: class 0 a horizontal bar, class 1 a vertical bar, at random places, over noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 60, (n, 8, 8))
    where = rng.integers(0, 8, n)
    for i in range(n):
        if labels[i] == 0:
            images[i, where[i], :] = 250
        else:
            images[i, :, where[i]] = 250
    return images.astype(np.uint8), labels


@pytest.fixture
def train_run(tfn_cli, write_spec, tmp_path):
    """train_run(spec text) -> (exit code, stderr, run.json or None)."""

    def run(text: str):
        out = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        code, _, err = tfn_cli("train", str(write_spec(text)), "--out", str(out), "--quiet")
        run_json = out / "run.json"
        return code, err, json.loads(run_json.read_text()) if run_json.exists() else None

    return run


def assert_learned(result, chance: float) -> None:
    code, err, run = result
    assert code == 0, err
    accuracy = run["metrics"]["test"]["accuracy"]
    assert accuracy > 0.9 > chance + 0.3, f"test accuracy {accuracy}"


# --- each source learns --------------------------------------------------------------


def test_trains_on_synthetic(train_run):
    data = "{source: synthetic, classes: 3, fields: {x: {shape: [4]}}, samples: {train: 300, validation: 60, test: 60}, noise: 0.5, batch_size: 32}"
    assert_learned(train_run(spec_text(data)), chance=1 / 3)


def test_trains_on_npz(train_run, tmp_path):
    x, y = blobs(400, 4, 3)
    np.savez(tmp_path / "blobs.npz", features=x, classes=y)
    data = f"{{source: npz, path: {tmp_path / 'blobs.npz'}, fields: {{x: features, label: classes}}, batch_size: 32}}"
    assert_learned(train_run(spec_text(data)), chance=1 / 3)


def test_trains_on_csv_with_class_names(train_run, tmp_path):
    x, y = blobs(400, 4, 3, seed=2)
    names = np.array(["setosa", "versicolor", "virginica"])
    rows = ["a,b,c,d,species"] + [",".join(f"{v:.4f}" for v in row) + f",{names[k]}" for row, k in zip(x, y)]
    (tmp_path / "flowers.csv").write_text("\n".join(rows) + "\n")
    data = f"{{source: csv, path: {tmp_path / 'flowers.csv'}, fields: {{x: [a, b, c, d], label: species}}, batch_size: 32}}"
    assert_learned(train_run(spec_text(data)), chance=1 / 3)


def test_trains_on_idx_files(train_run, tmp_path):
    images, labels = bars(500)
    (tmp_path / "images.idx.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "labels.idx").write_bytes(idx_bytes(labels))
    data = f"{{source: idx, images: {tmp_path / 'images.idx.gz'}, labels: {tmp_path / 'labels.idx'}, batch_size: 32}}"
    assert_learned(train_run(spec_text(data, input="image", shape="[1, 8, 8]", classes=2)), chance=1 / 2)


def test_trains_on_an_image_folder(train_run, tmp_path):
    from PIL import Image

    images, labels = bars(240, seed=3)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "bars" / ("horizontal", "vertical")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{i:03d}.png")
    data = f"{{source: image_folder, directory: {tmp_path / 'bars'}, size: [8, 8], color: grayscale, batch_size: 16, workers: 1}}"
    assert_learned(train_run(spec_text(data, input="image", shape="[1, 8, 8]", classes=2, epochs=8)), chance=1 / 2)


# --- data mistakes: exit 2, no traceback ---------------------------------------------


def assert_user_error(result, *fragments: str) -> None:
    code, err, _ = result
    assert code == 2, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_missing_file(train_run, tmp_path):
    data = f"{{source: npz, path: {tmp_path / 'nope.npz'}, fields: {{x: a, label: b}}}}"
    assert_user_error(train_run(spec_text(data)), f"{tmp_path / 'nope.npz'}: error: no such file")


def test_label_out_of_range(train_run, tmp_path):
    x, y = blobs(50, 4, 3)
    y[17] = 5
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = f"{{source: npz, path: {tmp_path / 'd.npz'}, fields: {{x: x, label: y}}, split: {{validation: 0, test: 0}}}}"
    assert_user_error(
        train_run(spec_text(data)),
        f"{tmp_path / 'd.npz'}: error: array 'y', index 17: the label 5 of field 'label' is out of range: "
        "the logits 'logits' give 3 classes, so labels must lie in 0..2",
    )


def test_an_out_of_range_label_in_a_csv_names_its_line_also_in_a_carved_split(train_run, tmp_path):
    """It was "validation split sample 0": the CSV reader knows the line."""
    x, y = blobs(40, 4, 3)
    y[23] = 7
    rows = [",".join(map(str, [*features, label])) for features, label in zip(x.tolist(), y.tolist())]
    (tmp_path / "d.csv").write_text("a,b,c,d,y\n" + "\n".join(rows) + "\n")
    for split in ("{validation: 0.5, test: 0, seed: 0}", "{validation: 0, test: 0}"):
        data = f"{{source: csv, path: {tmp_path / 'd.csv'}, fields: {{x: [a, b, c, d], label: y}}, split: {split}}}"
        assert_user_error(
            train_run(spec_text(data)),
            f"{tmp_path / 'd.csv'}:25: error: the label 7 of field 'label' is out of range: the logits 'logits' give 3 classes",
        )


def test_an_out_of_range_label_in_a_npy_file_names_its_index(train_run, tmp_path):
    x, y = blobs(30, 4, 3)
    y[29] = -1
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    data = f"{{source: npy, fields: {{x: {tmp_path / 'x.npy'}, label: {tmp_path / 'y.npy'}}}, split: {{validation: 0.2, test: 0.2}}}}"
    assert_user_error(train_run(spec_text(data)), f"{tmp_path / 'y.npy'}: error: index 29: the label -1 of field 'label' is out of range")


def test_data_that_does_not_fit_the_input(train_run, tmp_path):
    x, y = blobs(50, 5, 3)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = f"{{source: npz, path: {tmp_path / 'd.npz'}, fields: {{x: x, label: y}}}}"
    assert_user_error(train_run(spec_text(data)), "field 'x' of source 'npz' has samples of shape [5]; the model input 'x' expects [4]")


def test_corrupt_image(train_run, tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), 30 + 100 * (name == "b")).save(tmp_path / "imgs" / name / f"{i}.png")
    (tmp_path / "imgs" / "b" / "bad.png").write_bytes(b"not an image at all")
    data = f"{{source: image_folder, directory: {tmp_path / 'imgs'}, size: [8, 8], color: grayscale, split: {{validation: 0, test: 0}}}}"
    assert_user_error(train_run(spec_text(data, input="image", shape="[1, 8, 8]", classes=2, epochs=1)), f"{tmp_path / 'imgs' / 'b' / 'bad.png'}: error: cannot decode the image")


def test_bad_csv_row(train_run, tmp_path):
    (tmp_path / "t.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n1,2,x,4,1\n")
    data = f"{{source: csv, path: {tmp_path / 't.csv'}, fields: {{x: [a, b, c, d], label: label}}}}"
    assert_user_error(train_run(spec_text(data)), f"{tmp_path / 't.csv'}:3: error: column 'c': 'x' is not a number")


def test_unknown_field_binding(train_run, tmp_path):
    data = "{source: synthetic, classes: 3, fields: {features: {shape: [4]}}}"
    assert_user_error(
        train_run(spec_text(data)),
        "the graph input 'x' is fed by the data field of that name, but source 'synthetic' has no such field; its fields are features, label",
    )
