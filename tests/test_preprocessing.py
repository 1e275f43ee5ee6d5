"""The preprocessing record (runners/preprocessing.py): written into every run, applied by every consumer.

The end-to-end test trains on an image folder whose images are resized,
converted to grayscale and normalised, then feeds one of its PNGs through
each consumer: all give the logits the evaluation pipeline gives. Before the
record, `tfn run` and `tfn predict` divided by 255 and skipped mean/std.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfn.runners.preprocessing import FILE, DecodeImage, Normalize, Preprocessing, PreprocessingError, Scale, record_for

SPEC = """
version: 1
name: folder
model:
  inputs: {{image: {{shape: [1, 4, 4]}}}}
  layers:
    - {{op: flatten}}
    - {{name: logits, op: dense, units: 2}}
loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
optimizer: {{type: gradient_descent, learning_rate: 0.5}}
data: {{source: image_folder, directory: {folder}, size: [4, 4], color: grayscale, mean: [0.4], std: [0.2], batch_size: 4, split: {{validation: 0, test: 0}}}}
train: {{steps: 2}}
"""


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A trained run on 6x5 RGB PNGs of random pixels, two classes."""
    from PIL import Image

    from tfn.runners.train import train
    from tfn.specs import load

    root = tmp_path_factory.mktemp("preprocessing")
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / "pets" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8), mode="RGB").save(root / "pets" / name / f"{i}.png")
    (root / "spec.yaml").write_text(SPEC.format(folder=root / "pets"))
    return train(load(root / "spec.yaml"), out=root / "run", quiet=True).run_dir


def _evaluation_logits(run: Path) -> tuple[Path, np.ndarray]:
    """The first training image and its logits through the evaluation pipeline (no augmentation), as `tfn eval` builds it."""
    import torch

    from tfn.runners.data import DataPipeline
    from tfn.runners.preprocessing import for_model
    from tfn.runners.session import load_model
    from tfn.specs import load

    loaded = load(run / "spec.yaml")
    data = DataPipeline(loaded.spec.data, loaded.graph, preprocessing=for_model(run))
    model = load_model(run)
    batch = next(data.eval_batches("train"))
    with torch.no_grad():
        logits = model(batch, ["logits"])["logits"][0].numpy()
    return data.source.paths["train"][0], logits


def test_the_run_records_its_preprocessing(image_run):
    record = json.loads((image_run / FILE).read_text())
    assert record == {
        "format": "tfn.preprocessing",
        "version": 1,
        "fields": {
            "image": [
                {"kind": "image", "size": [4, 4], "color": "grayscale"},
                {"kind": "scale", "divide_by": 255.0},
                {"kind": "normalize", "mean": [0.4], "std": [0.2]},
            ]
        },
    }


def test_every_consumer_gives_the_logits_of_the_evaluation_pipeline(image_run, tfn_cli, tmp_path):
    import tfn.runners as tfn

    png, expected = _evaluation_logits(image_run)
    assert np.abs(expected).max() > 0.1  # a trained model whose logits tell the inputs apart

    code, _, err = tfn_cli("run", str(image_run), "--feed", f"image={png}", "--fetch", "logits", "--out", str(tmp_path / "out.npz"))
    assert code == 0, err
    assert f"# image <- {png}: decode the image, grayscale, resized to 4x4 (bilinear); divided by 255; (x - mean) / std" in err
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_allclose(out["logits"][0], expected, rtol=1e-5, atol=1e-6)

    code, out, err = tfn_cli("predict", str(image_run), str(png), "--json", "-k", "2")
    assert code == 0, err
    probabilities = np.exp(expected) / np.exp(expected).sum()
    top = json.loads(out)[0]["top"]
    np.testing.assert_allclose([t["probability"] for t in top], np.sort(probabilities)[::-1], rtol=1e-5)

    model = tfn.load_model(image_run)
    np.testing.assert_allclose(tfn.run(model, {"image": png}, ["logits"]).values["logits"][0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tfn.predict(model, png).probabilities[0], probabilities, rtol=1e-5)


def test_a_run_without_the_record_is_read_as_its_spec_says(image_run, tfn_cli, tmp_path):
    """Runs made before tfn wrote preprocessing.json: the data section of their spec.yaml is what they did."""
    import shutil

    old = tmp_path / "old_run"
    shutil.copytree(image_run, old)
    (old / FILE).unlink()
    png, expected = _evaluation_logits(image_run)
    code, _, err = tfn_cli("run", str(old), "--feed", f"image={png}", "--fetch", "logits", "--out", str(tmp_path / "out.npz"))
    assert code == 0, err
    assert f"(from {old / 'spec.yaml'} (the run has no preprocessing.json))" in err
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_allclose(out["logits"][0], expected, rtol=1e-5, atol=1e-6)
    code, out, err = tfn_cli("eval", str(old), "--split", "train", "--json")
    assert code == 0, err


# --- the record itself ----------------------------------------------------------------


def test_a_record_round_trips_and_applies_its_steps(tmp_path):
    from PIL import Image

    record = Preprocessing({"image": (DecodeImage(size=(2, 3), color="rgb"), Scale(divide_by=255.0), Normalize(mean=[0.5, 0, 1], std=[0.5, 1, 2]))})
    record.write(tmp_path)
    again = Preprocessing.read(tmp_path / FILE)
    assert again.fields == record.fields and again.origin == str(tmp_path / FILE)
    Image.new("RGB", (3, 2), (255, 51, 0)).save(tmp_path / "solid.png")
    value = again.read_file("image", tmp_path / "solid.png")
    assert value.shape == (3, 2, 3) and value.dtype == np.float32
    np.testing.assert_allclose(value[:, 0, 0], [(1 - 0.5) / 0.5, 0.2, (0 - 1) / 2], rtol=1e-6)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"image": [{"kind": "imag", "size": [2, 2], "color": "rgb"}]}, "fields.image[0]: unknown preprocessing kind 'imag' (did you mean 'image'?)"),
        ({"image": [{"kind": "scale", "divide_by": 0}]}, "fields.image[0] (scale): divide_by: Input should be greater than 0"),
        ({"image": [{"kind": "scale", "divide_by": 2, "offset": 1}]}, "fields.image[0] (scale): offset: Extra inputs are not permitted"),
        ({"image": [{"kind": "scale", "divide_by": 2}, {"kind": "image", "size": [2, 2], "color": "rgb"}]}, "fields.image[1] (image): a decoding step comes first"),
        ({"image": ["scale"]}, "fields.image[0]: a step is an object with a `kind`"),
        ({"image": {"kind": "scale"}}, "`fields` must map each field name to a list of steps"),
    ],
)
def test_a_bad_record_is_a_clear_error(tmp_path, fields, message):
    (tmp_path / FILE).write_text(json.dumps({"format": "tfn.preprocessing", "version": 1, "fields": fields}))
    with pytest.raises(PreprocessingError, match=f"^{tmp_path / FILE}: error: " + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]").replace("?", r"\?")):
        Preprocessing.read(tmp_path / FILE)


def test_a_file_that_is_not_a_record(tmp_path):
    (tmp_path / FILE).write_text('{"format": "tfn.graph", "version": 1}')
    with pytest.raises(PreprocessingError, match="not a preprocessing record"):
        Preprocessing.read(tmp_path / FILE)
    (tmp_path / FILE).write_text("{")
    with pytest.raises(PreprocessingError, match="not a readable preprocessing record"):
        Preprocessing.read(tmp_path / FILE)


def test_what_each_source_records(tmp_path):
    import gzip
    import struct

    from tfn.specs import schema

    def steps(spec) -> list[dict]:
        return [s.to_json() for s in record_for(spec).fields.get("image", ())]

    assert steps(schema.DigitsData(source="digits")) == [{"kind": "image", "size": [8, 8], "color": "grayscale"}, {"kind": "scale", "divide_by": 255.0}]
    assert steps(schema.FashionMnistData(source="fashion_mnist"))[0]["size"] == [28, 28]
    folder = schema.ImageFolderData(source="image_folder", directory="x", size=[3, 2], std=[2.0, 2.0, 2.0])
    assert steps(folder)[-1] == {"kind": "normalize", "mean": [0.0, 0.0, 0.0], "std": [2.0, 2.0, 2.0]}
    assert len(steps(folder.model_copy(update={"std": None}))) == 2
    for code, expected in ((0x08, [{"kind": "image", "size": [5, 6], "color": "grayscale"}, {"kind": "scale", "divide_by": 255.0}]), (0x0D, [])):
        path = tmp_path / f"images-{code}.gz"
        path.write_bytes(gzip.compress(struct.pack(">BBBBIII", 0, 0, code, 3, 2, 5, 6)))
        assert steps(schema.IdxData(source="idx", images=str(path), labels=str(path))) == expected
    assert record_for(schema.CsvData(source="csv", path="x.csv", fields={"x": ["a"]})).fields == {}


def test_an_image_for_an_input_the_record_does_not_fit_is_refused(tmp_path):
    from PIL import Image

    from tfn.layers import TensorType

    Image.new("L", (8, 8)).save(tmp_path / "digit.png")
    record = record_for(__import__("tfn.specs.schema", fromlist=["DigitsData"]).DigitsData(source="digits"))
    with pytest.raises(PreprocessingError, match=r"digit.png: error: the preprocessing of 'image' .* makes the image \[1, 8, 8\]; the input takes \[1, 4, 4\]"):
        record.read_file("image", tmp_path / "digit.png", TensorType((None, 1, 4, 4)))
    with pytest.raises(PreprocessingError, match=r"an image feeds an input of one sample \[C, H, W\] with C 1, 3 or 4; input 'x' takes \[2, 4, 4\]"):
        Preprocessing().read_file("x", tmp_path / "digit.png", TensorType((None, 2, 4, 4)))


def test_every_data_source_has_a_preprocessing_rule():
    import typing

    from tfn.specs import schema

    union = typing.get_args(typing.get_args(schema.Data)[0])
    assert len(union) >= 9
    missing = [cls.__name__ for cls in union if record_for.dispatch(cls) is record_for.dispatch(object)]
    assert not missing, f"give these data sources a record_for rule in runners/preprocessing.py: {missing}"


def test_the_pipeline_applies_array_steps_and_not_what_a_source_already_did(write_spec, tmp_path):
    """A model directory's record with steps for an array field (normalisation) applies to the source's arrays;
    a field whose steps decode files (digits) is already what they make."""
    from tfn.runners.data import DataPipeline
    from tfn.specs import load

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(6, np.int64))
    spec = write_spec(
        f"""
        version: 1
        name: arrays
        model:
          inputs: {{x: {{shape: [2]}}}}
          layers: [{{name: logits, op: dense, units: 2}}]
        loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
        data: {{source: npz, path: {tmp_path / "d.npz"}, fields: {{x: x, label: y}}, shuffle: false, split: {{validation: 0, test: 0}}}}
        """
    )
    loaded = load(spec)
    record = Preprocessing({"x": (Normalize(mean=[1.0, 2.0], std=[2.0, 4.0]),)})
    data = DataPipeline(loaded.spec.data, loaded.graph, preprocessing=record)
    np.testing.assert_allclose(next(data.eval_batches("train"))["x"].numpy(), (x - [1, 2]) / [2, 4], rtol=1e-6)
    digits = load("digits_mlp")
    data = DataPipeline(digits.spec.data, digits.graph)
    assert data.preprocessing.fields["image"][0].decodes
    first = next(data.eval_batches("train", batch_size=1))["image"]
    assert 0 <= float(first.min()) and float(first.max()) <= 1  # the source's /16, not divided by 255 again
    assert float(first.max()) > 0.5
