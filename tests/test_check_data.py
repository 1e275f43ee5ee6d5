"""`tfn check` knows the data: fields, shapes, dtypes and classes from cheap metadata only.

Each source is described from its declaration (digits, synthetic, mnist),
file headers (npz, npy, IDX), a CSV's header line or one image of an image
folder, never by loading the data; what does not fit the graph is a
positioned error, and what cannot be known that way is said.
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tfn.runners import data_files
from tfn.runners.data_sources import describe_source, load_source
from tfn.specs import load

SPEC = """\
version: 1
name: t
model:
  inputs:
    {input}: {{shape: {shape}{dtype}}}
  layers:
    - {{op: flatten}}
    - {{name: logits, op: dense, units: {classes}}}
loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: {labels}}}
data: {data}
"""


def spec(data: str, *, input="x", shape="[4]", dtype="", classes=3, labels="label") -> str:
    """A spec around a data section: line 5 declares the input, line 9 is the loss, line 10 the data."""
    return SPEC.format(input=input, shape=shape, dtype=f", dtype: {dtype}" if dtype else "", classes=classes, labels=labels, data=data)


@pytest.fixture
def check(tfn_cli, tmp_path, monkeypatch):
    """check(spec text, *options) -> (exit code, stdout, stderr lines) of `tfn check spec.yaml`, run in tmp_path."""
    monkeypatch.chdir(tmp_path)

    def run(text: str, *options: str):
        (tmp_path / "spec.yaml").write_text(text)
        code, out, err = tfn_cli("check", "spec.yaml", *options)
        return code, out, err.splitlines()

    return run


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype("uint8"): 0x08, np.dtype("float32"): 0x0D}[array.dtype]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_images(root: Path, classes=("cat", "dog"), per_class: int = 2) -> None:
    from PIL import Image

    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (6, 5), (200, 10, 10)).save(root / name / f"{i}.png")


@pytest.fixture
def files(tmp_path):
    """A file of each kind in tmp_path: d.npz, x.npy, y.npy, u8.npy, iris.csv, img.gz / lab (IDX), pets/."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.normal(size=(10, 4)).astype(np.float32), y_train=np.arange(10) % 3, x_test=np.zeros((5, 4), np.float32), y_test=np.zeros(5, int))
    np.save(tmp_path / "x.npy", rng.normal(size=(10, 4)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(10) % 3)
    np.save(tmp_path / "u8.npy", np.zeros((10, 4), np.uint8))
    (tmp_path / "iris.csv").write_text("sepal_length,sepal_width,petal_length,petal_width,species\n5.1,3.5,1.4,0.2,setosa\n4.9,3.0,1.4,0.2,virginica\n")
    (tmp_path / "img.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((6, 2, 2), np.uint8))))
    (tmp_path / "lab").write_bytes(idx_bytes((np.arange(6) % 3).astype(np.uint8)))
    write_images(tmp_path / "pets")
    return tmp_path


CSV = "{source: csv, path: iris.csv, fields: {x: [sepal_length, sepal_width, petal_length, petal_width], label: species}}"
SOURCES = {  # data section -> (the model input's name, shape, dtype) that fits it
    "digits": ("{source: digits}", "image", "[1, 8, 8]", "", 10),
    "synthetic": ("{source: synthetic, classes: 3, fields: {x: {shape: [4]}, ids: {shape: [2], dtype: int64, high: 5}}}", "x", "[4]", "", 3),
    "key_value": ("{source: key_value, pairs: 3, key_vocabulary: 5, classes: 3, samples: {train: 20, validation: 4, test: 4}}", "keys", "[5, 3]", "", 3),
    "npz": ("{source: npz, path: d.npz, fields: {x: x_train, label: y_train}, test_fields: {x: x_test, label: y_test}}", "x", "[4]", "", 3),
    "npy": ("{source: npy, fields: {x: x.npy, label: y.npy}}", "x", "[4]", "", 3),
    "csv": (CSV, "x", "[4]", "", 3),
    "idx": ("{source: idx, images: img.gz, labels: lab}", "image", "[1, 2, 2]", "", 3),
    "image_folder": ("{source: image_folder, directory: pets, size: [4, 3]}", "image", "[3, 4, 3]", "", 2),
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_the_fields_check_finds_are_the_fields_training_loads(source, files, check):
    data, name, shape, dtype, classes = SOURCES[source]
    text = spec(data, input=name, shape=shape, dtype=dtype, classes=classes)
    code, out, err = check(text)
    assert code == 0, err
    assert "data: source " + source.split("_")[0] in out and "they fit the graph's inputs" in out
    loaded = load("spec.yaml")
    described, source_data = describe_source(loaded.spec.data), load_source(loaded.spec.data)
    assert described.fields == source_data.field_types()
    assert described.classes in (None, len(source_data.class_names or []))


def test_check_reads_no_data_only_metadata(files, check, monkeypatch):
    """Every reader of whole data files fails here: check still knows every field."""

    def forbidden(*args, **kwargs):
        raise AssertionError("tfn check read the data")

    from tfn.runners import data_sources

    for reader in ("read_npz", "read_npy", "read_csv_table", "read_idx"):
        monkeypatch.setattr(data_files, reader, forbidden)
        if hasattr(data_sources, reader):  # where the loaders hold it
            monkeypatch.setattr(data_sources, reader, forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    for source in SOURCES:
        data, name, shape, dtype, classes = SOURCES[source]
        code, out, err = check(spec(data, input=name, shape=shape, dtype=dtype, classes=classes))
        assert code == 0, (source, err)


def test_a_misspelt_label_field_is_caught_by_check_with_a_suggestion(check):
    code, out, err = check(spec("{source: digits}", input="image", shape="[1, 8, 8]", classes=10, labels="lable"))
    assert code == 2 and out == ""
    assert err == [
        "spec.yaml:9:78: error: loss.labels: the graph input 'lable' is fed by the data field of that name, "
        "but source 'digits' has no such field (did you mean 'label'?); its fields are image, label"
    ]


def test_labels_that_do_not_fit_the_logits_are_one_error(check):
    # no flatten: dense acts per position, the logits keep spatial axes, the labels would need them too
    text = spec("{source: digits}", input="image", shape="[1, 8, 8]", classes=10).replace("    - {op: flatten}\n", "")
    code, out, err = check(text)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("spec.yaml:8:78: error: loss.labels: field 'label' of source 'digits' has samples of shape []; the loss 'loss'")


def test_a_model_input_without_a_field_is_reported_at_its_declaration(check):
    text = spec("{source: digits}", input="image", shape="[1, 8, 8]", classes=10)
    text = text.replace("    image: {shape: [1, 8, 8]}\n", "    image: {shape: [1, 8, 8]}\n    extra: {shape: [3]}\n").replace("{op: flatten}", "{op: flatten, inputs: [image]}")
    message = "the graph input 'extra' is fed by the data field of that name, but source 'digits' has no such field; its fields are image, label"
    code, _, err = check(text)
    assert code == 2 and err == [f"spec.yaml:6:12: error: model.inputs.extra: {message}"]
    # declared through --set, it is reported at the option, as model.inputs.extra, not as `loss:`
    code, _, err = check(text.replace("    extra: {shape: [3]}\n", ""), "--set", "model.inputs.extra={shape: [3]}")
    assert code == 2 and err == [f"--set model.inputs.extra={{shape: [3]}}: error: model.inputs.extra: {message}"]


def test_train_reports_a_model_input_set_from_the_command_line_at_its_declaration(tfn_cli, write_spec, tmp_path):
    path = write_spec(spec("{source: digits}", input="image", shape="[1, 8, 8]", classes=10).replace("{op: flatten}", "{op: flatten, inputs: [image]}"))
    code, _, err = tfn_cli("train", str(path), "--set", "model.inputs.extra={shape: [3]}", "--out", str(tmp_path / "run"), "--quiet")
    assert code == 2
    assert err.startswith("--set model.inputs.extra={shape: [3]}: error: model.inputs.extra: the graph input 'extra' is fed by the data field")
    assert "its fields are image, label" in err


def test_shapes_and_dtypes_from_file_headers(files, check):
    code, _, err = check(spec("{source: npz, path: d.npz, fields: {x: x_train, label: y_train}}", shape="[5]"))
    assert err == ["spec.yaml:5:16: error: model.inputs.x.shape: field 'x' of source 'npz' has samples of shape [4]; the model input 'x' expects [5]"]
    code, _, err = check(spec("{source: npy, fields: {x: u8.npy, label: y.npy}}"))
    assert err == [
        "spec.yaml:5:8: error: model.inputs.x: field 'x' of source 'npy' holds uint8; the model input 'x' expects float32 (scale integer pixels to floats first, e.g. x / 255)"
    ]
    code, _, err = check(spec("{source: npz, path: d.npz, fields: {x: x_train, label: x_train}}"))
    assert err[0].startswith("spec.yaml:9:78: error: loss.labels: field 'label' of source 'npz' has samples of shape [4]; the loss 'loss'")
    code, _, err = check(spec("{source: idx, images: img.gz, labels: lab}", input="image", shape="[1, 3, 2]"))
    assert err == ["spec.yaml:5:20: error: model.inputs.image.shape: field 'image' of source 'idx' has samples of shape [1, 2, 2]; the model input 'image' expects [1, 3, 2]"]


def test_missing_files_arrays_and_columns_point_at_the_data_section(files, check):
    code, _, err = check(spec("{source: npz, path: nothing.npz, fields: {x: x_train, label: y_train}}"))
    assert code == 2 and len(err) == 1
    assert err[0].startswith("spec.yaml:10:27: error: data.path: ") and err[0].endswith("nothing.npz: no such file (the .npz file named in the spec's data section)")
    code, _, err = check(spec("{source: npz, path: d.npz, fields: {x: x_trian, label: y_train}}"))
    assert err == ["spec.yaml:10:42: error: data.fields: d.npz: no array named 'x_trian' (did you mean 'x_train'?); the file has x_train, y_train, x_test, y_test"]
    code, _, err = check(spec(CSV.replace("label: species", "label: specie")))
    assert err == [
        "spec.yaml:10:112: error: data.fields.label: iris.csv:1: field 'label': no column 'specie' (did you mean 'species'?); "
        "the columns are sepal_length, sepal_width, petal_length, petal_width, species"
    ]
    code, _, err = check(spec("{source: npy, fields: {x: x.npy, label: nowhere.npy}}"))
    assert len(err) == 1 and err[0].startswith("spec.yaml:10:47: error: data.fields.label: ") and "nowhere.npy: no such file" in err[0]
    code, _, err = check(spec("{source: idx, images: img.gz, labels: img.gz}", input="image", shape="[1, 2, 2]"))
    assert err == ["spec.yaml:10:45: error: data.labels: img.gz: labels must be one number per sample; the IDX array has shape [6, 2, 2]"]
    code, _, err = check(spec("{source: image_folder, directory: nowhere, size: [4, 3]}", input="image", shape="[3, 4, 3]", classes=2))
    assert len(err) == 1 and err[0].startswith("spec.yaml:10:41: error: data.directory: ") and err[0].endswith("nowhere: no such directory (the image folder named in the spec's data section)")


def test_classes_the_logits_cannot_score(files, check):
    code, _, err = check(spec("{source: image_folder, directory: pets, size: [4, 3]}", input="image", shape="[3, 4, 3]", classes=1))
    assert err == ["spec.yaml:10:7: error: data: source 'image_folder' has 2 classes, but the logits 'logits' give 1; give the last layer 2 units"]


def test_an_image_folder_whose_image_does_not_decode(files, check):
    (files / "pets" / "cat" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    for extra in ("", ", skip_bad: true"):
        code, out, err = check(spec(f"{{source: image_folder, directory: pets, size: [4, 3]{extra}}}", input="image", shape="[3, 4, 3]", classes=2))
        if extra:
            assert code == 0 and "0.png does not decode and would be skipped" in out
        else:
            assert code == 2 and len(err) == 1 and "data.directory: " in err[0] and "0.png: cannot decode the image" in err[0]


def test_what_check_cannot_know_is_said(files, check, tmp_path, monkeypatch):
    monkeypatch.setenv("TFN_DATA_DIR", str(tmp_path / "datasets"))
    code, out, err = check(spec(CSV.replace("species}}", "species}, classes: [setosa, virginica]}")))
    assert code == 0, err
    assert "not checked without reading the data: the CSV rows (numbers, class names): read when training starts" in out
    code, out, _ = check(spec("{source: npy, fields: {x: x.npy, label: y.npy}}"))
    assert "not checked without reading the data: the values of field 'label' (class indices for the 3 logits of 'logits': 0..2): read when training starts" in out
    code, out, _ = check(spec("{source: mnist}", input="image", shape="[1, 28, 28]", classes=10))
    assert code == 0 and "the mnist files, not in" in out and "downloaded and verified when training starts" in out
    code, out, err = check(spec("{source: mnist, download: false}", input="image", shape="[1, 28, 28]", classes=10))
    assert code == 2 and err[0].startswith("spec.yaml:10:33: error: data.download: ") and "the mnist files are missing and `download: false`" in err[0]


def test_augmentation_of_a_field_that_is_not_an_image(check):
    code, _, err = check(spec("{source: synthetic, classes: 3, fields: {x: {shape: [4]}}, augment: {field: x, horizontal_flip: true}}"))
    assert err == ["spec.yaml:10:83: error: data.augment.field: augmentation needs float images [C, H, W]; field 'x' is float32 [4]"]


def test_a_crop_padding_beyond_the_image(check, tfn_cli):
    """It made training allocate [N, C, H + 2p, W + 2p] and fail inside torch (internal error)."""
    text = spec("{source: digits, augment: {crop_padding: 2147483647}}", input="image", shape="[1, 8, 8]", classes=10)
    code, _, err = check(text)
    assert err == ["spec.yaml:10:48: error: data.augment.crop_padding: 2147483647 is more than the images' size [8, 8]: crops would be mostly padding"]
    code, _, err = tfn_cli("train", "spec.yaml", "--steps", "1", "--out", "run", "--quiet")
    assert code == 2 and err.startswith("data.augment.crop_padding: error: 2147483647 is more than")


def test_check_json_carries_the_data_and_the_memory(check):
    code, out, _ = check(spec("{source: digits}", input="image", shape="[1, 8, 8]", classes=10), "--json")
    report = json.loads(out)
    assert report["data"] == {"source": "digits", "fields": {"image": {"shape": [1, 8, 8], "dtype": "float32"}, "label": {"shape": [], "dtype": "int64"}}, "classes": 10, "unchecked": []}
    # variables: dense kernel 10 x 64 and bias 10, float32; per sample: the image (64 floats), flatten (64),
    # the logits (10), the label (one int64) and the loss (one float)
    assert report["memory"] == {"parameter_bytes": (640 + 10) * 4, "activation_bytes_per_sample": (64 + 64 + 10) * 4 + 8 + 4}


def test_check_prints_the_memory_floor_for_the_batch(check):
    code, out, _ = check(spec("{source: digits, batch_size: 100}", input="image", shape="[1, 8, 8]", classes=10))
    assert "memory: 2.5 KiB of variables + 564 bytes of activations per sample (at least 57.6 KiB for a batch of 100)" in out
    assert (round(2600 / 1024, 1), round((2600 + 100 * 564) / 1024, 1)) == (2.5, 57.6)  # the figures above, by hand


def test_check_of_every_source_imports_no_torch(files):
    texts = []
    for source, (data, name, shape, dtype, classes) in SOURCES.items():
        (files / f"{source}.yaml").write_text(spec(data, input=name, shape=shape, dtype=dtype, classes=classes))
        texts.append(f"{source}.yaml")
    code = textwrap.dedent(f"""
        import sys
        from tfn.cli.main import main
        for name in {texts!r}:
            try:
                main(["check", name])
            except SystemExit as exc:
                assert not exc.code, (name, exc.code)
        print("torch" in sys.modules, file=sys.stderr)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=files)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("False")
