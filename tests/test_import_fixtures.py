"""`tfn import` of models made by Keras 3, tf.keras and TensorFlow 1.x graphs: outputs equal TensorFlow's.

The fixtures and their outputs on fixed inputs were made with TensorFlow by
tests/tf_reference/make_import_fixtures.py; these tests run without it.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile

import numpy as np
import pytest

from tfn import layers
from tests.import_helpers import FIXTURES, MAKER, channels_first, channels_last, fixture_names, import_fixture, meta, reference

#: fixtures whose layers need ops that are not in the catalogue yet: the test fails strictly as soon
#: as one of the named ops is registered, so that its import rule gets written then
NEEDS = {
    "bidirectional": ({"embedding"}, {"lstm"}, {"gru"}),
    "embedding_lstm": ({"embedding"}, {"lstm"}),
    "gru": ({"gru"},),
    "layernorm_gelu": ({"layer_normalization", "layer_norm"}, {"gelu"}),
}


def _missing(name: str) -> list[str]:
    ops = layers.all_ops()
    return [" or ".join(sorted(choices)) for choices in NEEDS.get(name, ()) if not choices & set(ops)]


def _parity_cases():
    for name in fixture_names():
        missing = _missing(name)
        marks = [pytest.mark.xfail(strict=True, reason=f"needs op {', '.join(missing)} (not in the catalogue yet)")] if missing else []
        yield pytest.param(name, marks=marks, id=name)


def test_every_fixture_names_the_versions_that_wrote_it():
    names = fixture_names()
    assert len(names) == 21
    for name in names:
        m = meta(name)
        assert m["made_by"] == "tests/tf_reference/make_import_fixtures.py" and MAKER.is_file()
        path = FIXTURES / m["file"]
        if m["format"] == "onnx":
            import onnx

            model = onnx.load(str(path))
            assert m["versions"]["onnx"][0].isdigit() and m["versions"]["onnxruntime"][0].isdigit(), name
            assert [o.version for o in model.opset_import] == [m["versions"]["opset"]] and model.producer_name == "make_import_fixtures"
            continue
        assert m["versions"]["tensorflow"][0].isdigit(), name
        assert (m["versions"].get("keras") or m["versions"].get("tf_keras"))[0].isdigit(), name
        if m["format"] == "keras3":
            stored = json.loads(zipfile.ZipFile(path).read("metadata.json"))["keras_version"]
            assert stored == m["versions"]["keras"], name
        elif m["format"] == "tf_keras_h5":
            import h5py

            with h5py.File(path, "r") as f:
                assert f.attrs["keras_version"] == m["versions"]["tf_keras"], name
        elif m["format"] == "tf1_checkpoint":
            from tfn.runners.importers.tensorflow import read_meta

            assert read_meta(path).meta_info_def.tensorflow_version == m["versions"]["tensorflow"]


def test_the_fixtures_stay_small():
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 2_000_000


@pytest.mark.parametrize("name", list(_parity_cases()))
def test_import_equals_the_original(name, tmp_path):
    """The original's inputs, through the import's preprocessing.json (Keras's own preprocessing layers), give its outputs."""
    from tfn.runners.preprocessing import for_model
    from tfn.runners.session import load_model, run

    m = meta(name)
    imported, record = import_fixture(name, tmp_path / "model")
    model = load_model(tmp_path / "model")
    preprocessing = for_model(tmp_path / "model")
    inputs, expected = reference(name)
    layout_in, layout_out = (channels_first, channels_last) if m["format"] != "onnx" else (np.asarray, np.asarray)
    names = dict(zip(imported.builder.source_inputs.values(), imported.builder.source_inputs))
    feeds = {names[k]: preprocessing.feed_of_decoded(names[k], layout_in(v)) for k, v in inputs.items()}
    fetches = [record["outputs"][o] for o in m["outputs"]]
    got = run(model, feeds, fetches).values
    for output, fetch in zip(m["outputs"], fetches):
        np.testing.assert_allclose(layout_out(got[fetch]), expected[output], rtol=0, atol=1e-5, err_msg=f"{name}: {output}")
    trainable, frozen = model.graph.parameter_counts()
    assert (trainable, frozen + m.get("params_in_preprocessing", 0)) == (m["params"]["trainable"], m["params"]["non_trainable"])
    assert record["parameters"] == {"trainable": trainable, "non_trainable": frozen}
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules


def test_variables_keep_the_original_names(tmp_path):
    from tfn.runners.checkpoint import read_info

    import_fixture("lenet5", tmp_path / "lenet5")
    names = set(read_info(tmp_path / "lenet5").variables)
    assert names == {f"{layer}/{role}" for layer in ("conv1", "conv2", "fc1", "fc2", "probs") for role in ("kernel", "bias")}
    import_fixture("tf1_cnn_ckpt", tmp_path / "tf1")
    tf_names = {"conv1/kernel", "conv1/bias", "bn1/gamma", "bn1/beta", "bn1/moving_mean", "bn1/moving_variance"}
    tf_names |= {"block/conv/kernel", "block/conv/bias", "fc/kernel", "fc/bias", "logits/kernel", "logits/bias"}
    assert set(read_info(tmp_path / "tf1").variables) == tf_names


def test_bn_statistics_arrive_where_keras_had_them(tmp_path):
    """The four BN variables in tfn's roles, the moving statistics away from their initial 0 and 1."""
    import h5py

    from tfn.runners.inspect import read_tensors

    import_fixture("cnn_bn", tmp_path / "m")
    weights = read_tensors(tmp_path / "m")
    with zipfile.ZipFile(FIXTURES / "cnn_bn.keras") as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
        group = next(g for g in h5["layers"].values() if g["vars"].attrs["name"] == "bn1")["vars"]
        keras = [np.asarray(group[str(i)]) for i in range(4)]
    for role, value in zip(("gamma", "beta", "moving_mean", "moving_variance"), keras):
        np.testing.assert_array_equal(weights[f"bn1/{role}"], value)
    assert np.abs(weights["bn1/moving_mean"]).max() > 0.01 and np.abs(weights["bn1/moving_variance"] - 1).max() > 0.01


def test_scopes_and_sharing_follow_the_keras_model(tmp_path):
    import yaml

    import_fixture("nested", tmp_path / "nested")
    spec = yaml.safe_load((tmp_path / "nested" / "spec.yaml").read_text())
    scope = next(item for item in spec["model"]["layers"] if "scope" in item)
    assert scope["scope"] == "block" and [n["name"] for n in scope["layers"]] == ["inner1", "inner1_tanh", "inner2"]
    graph = json.loads((tmp_path / "nested" / "graph.json").read_text())
    assert "block/inner1/kernel" in {v["name"] for v in graph["variables"]}
    import_fixture("shared", tmp_path / "shared")
    graph = json.loads((tmp_path / "shared" / "graph.json").read_text())
    nodes = {n["name"]: n for n in graph["nodes"]}
    assert nodes["shared_1"]["variables"] == nodes["shared"]["variables"] == {"kernel": "shared/kernel", "bias": "shared/bias"}
    assert sum(v["name"].startswith("shared") for v in graph["variables"]) == 2


def test_spec_takes_loss_and_optimizer_from_the_compile_config(tmp_path):
    import yaml

    import_fixture("lenet5", tmp_path / "lenet5")
    text = (tmp_path / "lenet5" / "spec.yaml").read_text()
    spec = yaml.safe_load(text)
    # Keras's loss took the softmax's probabilities: tfn's takes the logits before it
    assert spec["loss"] == {"op": "sparse_softmax_cross_entropy_with_logits", "logits": "probs", "labels": "label"}
    assert spec["optimizer"] == {"type": "momentum", "momentum": 0.9, "use_nesterov": False, "learning_rate": 0.05}
    assert "No loss was saved" not in text
    import_fixture("nested", tmp_path / "nested")
    text = (tmp_path / "nested" / "spec.yaml").read_text()
    assert "# No loss was saved with the model" in text and "# No optimizer was saved with the model" in text
    assert yaml.safe_load(text)["data"]["source"] == "synthetic"


def test_import_json_records_source_and_mapping(tmp_path):
    import hashlib

    _, record = import_fixture("tf1_cnn_pb", tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "import.json").read_text())
    assert stored == json.loads(json.dumps(record))
    assert stored["source"]["format"] == "tf_graphdef"
    assert stored["source"]["sha256"] == hashlib.sha256((FIXTURES / "tf1_cnn.pb").read_bytes()).hexdigest()
    conv = next(r for r in stored["mapped"] if r["source"] == "conv1/Conv2D")
    assert conv == {"source": "conv1/Conv2D", "kind": "Conv2D", "node": "conv1", "op": "conv2d", "folded": ["conv1/BiasAdd"]}
    assert stored["outputs"] == {"probabilities": "probabilities"}


def test_the_tensor_bundle_reader_agrees_with_the_frozen_graph():
    """The checkpoint and the frozen GraphDef were written from one TF session: same values, two encodings."""
    from tensorboard.compat.proto import graph_pb2
    from tensorboard.util import tensor_util

    from tfn.runners.importers import bundle

    graph = graph_pb2.GraphDef()
    graph.ParseFromString((FIXTURES / "tf1_cnn.pb").read_bytes())
    frozen = {n.name: tensor_util.make_ndarray(n.attr["value"].tensor) for n in graph.node if n.op == "Const" and "/" in n.name and "Reshape" not in n.name}
    saved = bundle.read(FIXTURES / "tf1_cnn.ckpt", sorted(frozen))
    assert sorted(saved) == sorted(frozen) and len(frozen) == 12
    for name, value in frozen.items():
        np.testing.assert_array_equal(saved[name], value, err_msg=name)
    everything = bundle.read(FIXTURES / "tf1_cnn.ckpt")
    assert "conv1/kernel/Momentum" in everything and everything["conv1/kernel/Momentum"].shape == (3, 3, 3, 6)


def test_keras_preprocessing_layers_become_the_preprocessing_record(tmp_path):
    """Rescaling and adapted Normalization at the inputs are preprocessing.json's steps (Keras's numbers), not nodes."""
    import zipfile as zf

    import h5py

    from tfn.runners.preprocessing import Preprocessing

    imported, record = import_fixture("keras_layers", tmp_path / "m")
    stored = Preprocessing.read(tmp_path / "m" / "preprocessing.json")
    assert [s.kind for s in stored.fields["image"]] == ["image", "normalize", "normalize"]
    assert stored.fields["image"][0].size == (8, 8) and stored.fields["image"][0].color == "rgb"
    assert stored.fields["image"][1].mean == [127.5] * 3 and stored.fields["image"][1].std == [127.5] * 3  # x / 127.5 - 1
    with zf.ZipFile(FIXTURES / "keras_layers.keras") as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
        group = next(g for g in h5["layers"].values() if g["vars"].attrs["name"] == "feature_norm")["vars"]
        mean, variance = np.asarray(group["0"]), np.asarray(group["1"])
    (normalize,) = stored.fields["features"]
    np.testing.assert_allclose(normalize.mean, mean.reshape(-1), rtol=1e-7)
    np.testing.assert_allclose(normalize.std, np.sqrt(variance.reshape(-1)), rtol=1e-7)
    assert "volume" not in stored.fields and record["preprocessing"] == stored.to_json()["fields"]
    rescale = next(r for r in record["mapped"] if r["source"] == "rescale")
    assert rescale == {"source": "rescale", "kind": "Rescaling", "preprocessing": "image", "steps": [stored.fields["image"][1].to_json()]}
    assert not {n.name for n in imported.builder.nodes} & {"rescale", "normalize", "feature_norm"}


def test_an_image_file_through_the_record_gives_the_keras_output(tmp_path):
    """The image field decodes a PNG to pixels 0 to 255 and rescales them as the Keras model did itself."""
    from PIL import Image

    from tfn.runners.preprocessing import for_model
    from tfn.runners.session import load_model, run

    import_fixture("keras_layers", tmp_path / "m")
    record = for_model(tmp_path / "m")
    inputs, expected = reference("keras_layers")
    model = load_model(tmp_path / "m")
    images = []
    for k, pixels in enumerate(inputs["image"]):
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(tmp_path / f"{k}.png")
        images.append(record.read_file("image", tmp_path / f"{k}.png", model.graph.type_of("image")))
    feeds = {"image": np.stack(images)} | {name: record.feed_of_decoded(name, channels_first(inputs[name])) for name in ("features", "volume")}
    got = run(model, feeds, ["probs"]).values["probs"]
    np.testing.assert_allclose(got, expected["probs"], rtol=0, atol=1e-5)
