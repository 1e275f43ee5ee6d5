"""`tfn import` on the command line: the model directory every verb takes, --list, and every refusal."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from tests.import_helpers import FIXTURES, channels_first, meta, reference


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """lenet5.h5 imported once for the verbs below."""
    from tfn.runners.importers import read, write

    out = tmp_path_factory.mktemp("imports") / "lenet5"
    write(read(FIXTURES / "lenet5.h5"), out)
    return out


def _keras_with(tmp_path, name: str, change) -> str:
    """A copy of fixture NAME.keras whose config.json `change(config)` edited."""
    source = FIXTURES / f"{name}.keras"
    target = tmp_path / f"{name}_edited.keras"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.namelist():
            data = old.read(item)
            if item == "config.json":
                config = json.loads(data)
                change(config)
                data = json.dumps(config).encode()
            new.writestr(item, data)
    return str(target)


def _layer(config: dict, name: str) -> dict:
    def walk(layers):
        for entry in layers:
            if entry["config"].get("name") == name:
                return entry
            if "layers" in entry["config"]:
                found = walk(entry["config"]["layers"])
                if found:
                    return found
        return None

    return walk(config["config"]["layers"])


# --- the directory works with every verb ----------------------------------------


def test_the_import_command_writes_a_model_directory(tfn_cli, tmp_path):
    code, out, err = tfn_cli("import", str(FIXTURES / "cnn_bn.keras"), "-o", str(tmp_path / "m"))
    assert code == 0, err
    assert "cnn_bn.keras (keras3) ->" in out and "673 trainable" in out and "output logits -> logits" in out
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["checkpoints", "graph.json", "import.json", "preprocessing.json", "spec.yaml"]
    assert json.loads((tmp_path / "m" / "preprocessing.json").read_text()) == {"format": "tfn.preprocessing", "version": 1, "fields": {}}
    code, out, err = tfn_cli("import", str(FIXTURES / "cnn_bn.keras"), "-o", str(tmp_path / "m"))
    assert code == 2 and "exists and is not empty" in err


def test_check_run_and_predict_take_the_directory(lenet, tfn_cli, tmp_path):
    code, out, _ = tfn_cli("check", str(lenet / "spec.yaml"))
    assert code == 0 and "parameters: 61,706 (61,706 trainable, 0 non-trainable)" in out
    inputs, outputs = reference("lenet5")
    batch = tmp_path / "x.npy"
    np.save(batch, channels_first(inputs["conv1_input"]))
    code, out, err = tfn_cli("run", str(lenet), "--feed", f"conv1_input={batch}", "--fetch", "probs_softmax", "--out", str(tmp_path / "y.npz"))
    assert code == 0, err
    with np.load(tmp_path / "y.npz") as got:
        np.testing.assert_allclose(got["probs_softmax"], outputs["probs"], atol=1e-5, rtol=0)
    code, out, err = tfn_cli("predict", str(lenet), str(batch), "--json", "--top-k", "1")
    assert code == 0, err
    top = [row["top"][0] for row in json.loads(out)]
    assert [t["class"] for t in top] == list(outputs["probs"].argmax(axis=1))
    np.testing.assert_allclose([t["probability"] for t in top], outputs["probs"].max(axis=1), atol=1e-5)


def test_inspect_and_export_take_the_directory(lenet, tfn_cli, tmp_path):
    code, out, _ = tfn_cli("inspect-checkpoint", str(lenet))
    assert code == 0 and "conv1/kernel" in out and "[6, 1, 5, 5]" in out and "fc1/kernel" in out
    code, _, err = tfn_cli("export-graph", str(lenet), "-o", str(tmp_path / "graph.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "graph.json").read_text()) == json.loads((lenet / "graph.json").read_text())
    code, _, err = tfn_cli("export-graph", str(lenet), "--format", "tensorboard", "-o", str(tmp_path / "tb"))
    assert code == 0 and list((tmp_path / "tb").glob("events.out.tfevents.*")), err


def test_train_init_from_the_directory(lenet, tfn_cli, tmp_path):
    """The directory stands for its spec.yaml (tfn train DIR, tfn check DIR), and so does the run it makes."""
    code, out, err = tfn_cli(
        "train", str(lenet), "--init-from", str(lenet), "--strict", "--steps", "1", "--out", str(tmp_path / "run"),
        "--set", "data.samples={train: 32, validation: 8, test: 8}",
    )
    assert code == 0, err
    assert "initialised 10 of 10 variables" in out + err and "from initial weights" not in err
    code, out, err = tfn_cli("check", str(tmp_path / "run"))
    assert code == 0 and "parameters: 61,706 (61,706 trainable, 0 non-trainable)" in out, err


def test_check_takes_the_directory_itself(lenet, tfn_cli, tmp_path):
    code, out, err = tfn_cli("check", str(lenet), "--json")
    assert code == 0, err
    assert json.loads(out)["trainable_parameters"] == 61_706
    code, out, _ = tfn_cli("check", str(lenet), "--set", "model.layers.7.units=100")
    assert code == 0 and any(line.split()[:2] == ["fc1", "dense"] and "[?, 100]" in line for line in out.splitlines())
    code, _, err = tfn_cli("check", str(tmp_path))
    assert code == 2 and f"{tmp_path}: error: a directory without spec.yaml is not a model directory" in err


def test_train_says_a_directory_starts_from_initial_weights(lenet, tfn_cli, tmp_path, monkeypatch):
    """Without --init-from, tfn train DIR trains the spec from scratch, and says how to start from the directory's weights."""
    from tfn.runners import train as training

    seen = {}

    def record(loaded, **options):
        seen["spec"], seen["init_from"] = loaded.path, options["init_from"]
        raise SystemExit(0)

    monkeypatch.setattr(training, "train", record)
    code, _, err = tfn_cli("train", str(lenet))
    assert code == 0 and seen == {"spec": lenet / "spec.yaml", "init_from": None}
    assert f"note: training the spec of {lenet} from initial weights; --init-from {lenet} starts from its weights" in err


# --- --list ----------------------------------------------------------------------


def test_list_shows_each_layer_and_writes_nothing(tfn_cli, tmp_path):
    code, out, _ = tfn_cli("import", str(FIXTURES / "depthwise_separable.keras"), "--list")
    assert code == 0
    lines = out.splitlines()
    assert any(line.split()[:3] == ["depthwise", "DepthwiseConv2D", "depthwise_conv2d"] for line in lines)
    assert any(line.split()[:3] == ["separable2_elu", "elu", "elu"] for line in lines)
    assert out.rstrip().endswith("entries, 0 without a mapping")
    code, out, _ = tfn_cli("import", str(FIXTURES / "embedding_lstm.keras"), "--list", "--json")
    rows = {r["source"]: r for r in json.loads(out)}
    assert code == 0 and [rows[k]["op"] for k in ("embed", "lstm", "logits")] == ["embedding", "lstm", "dense"]
    assert all(rows[k]["reason"] == "" for k in ("embed", "lstm", "logits"))
    assert list(tmp_path.iterdir()) == []


def test_list_marks_layers_without_a_mapping(tfn_cli, tmp_path):
    edited = _keras_with(tmp_path, "mlp", lambda c: _layer(c, "drop").update(class_name="Lambda"))
    code, out, _ = tfn_cli("import", edited, "--list")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("drop "))
    assert "Lambda" in row and "no mapping: a Lambda layer holds Python code" in row
    assert "1 without a mapping" in out


# --- what cannot be imported: exit 2, each problem named --------------------------


def test_a_lambda_and_a_custom_layer_are_listed_with_their_place(tfn_cli, tmp_path):
    def change(config):
        _layer(config, "drop").update(class_name="Lambda")
        _layer(config, "hidden").update(class_name="Scale", module=None, registered_name="my_package>Scale")

    code, out, err = tfn_cli("import", _keras_with(tmp_path, "mlp", change), "-o", str(tmp_path / "out"))
    assert code == 2 and out == ""
    assert "error: 2 layer(s) or op(s) cannot be imported:" in err
    assert "  my_package>Scale 'hidden' (top level): a custom layer (its code is not in the file)" in err
    assert "  Lambda 'drop' (top level): a Lambda layer holds Python code" in err
    assert not (tmp_path / "out").exists()


def test_an_attribute_without_a_counterpart_names_the_layer(tfn_cli, tmp_path):
    edited = _keras_with(tmp_path, "cnn_bn", lambda c: _layer(c, "conv1")["config"].update(groups=3))
    code, _, err = tfn_cli("import", edited, "-o", str(tmp_path / "out"))
    assert code == 2 and "  Conv2D 'conv1' (top level): groups 3: tfn's grouped convolution is depthwise_conv2d only" in err
    (tmp_path / "cnn_bn_edited.keras").unlink()
    edited = _keras_with(tmp_path, "cnn_bn", lambda c: _layer(c, "relu1")["config"].update(threshold=0.5))
    code, _, err = tfn_cli("import", edited, "-o", str(tmp_path / "out"))
    assert code == 2 and "  ReLU 'relu1' (top level): threshold 0.5: tfn's relu has none" in err


def test_a_layer_inside_a_nested_model_is_placed(tfn_cli, tmp_path):
    edited = _keras_with(tmp_path, "nested", lambda c: _layer(c, "inner1").update(class_name="Lambda"))
    code, _, err = tfn_cli("import", edited, "-o", str(tmp_path / "out"))
    assert code == 2 and "  Lambda 'inner1' (in model block): a Lambda layer" in err


def test_a_tf_op_outside_the_catalogue(tfn_cli, tmp_path):
    from tensorboard.compat.proto import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString((FIXTURES / "tf1_cnn.pb").read_bytes())
    next(n for n in graph.node if n.name == "fc/Elu").op = "Atan"
    path = tmp_path / "edited.pb"
    path.write_bytes(graph.SerializeToString())
    code, _, err = tfn_cli("import", str(path), "-o", str(tmp_path / "out"))
    assert code == 2 and "  Atan 'fc/Elu' (node 'fc/Elu'): tfn has no op it maps to" in err


def test_the_training_subgraph_is_refused(tfn_cli, tmp_path):
    code, _, err = tfn_cli("import", str(FIXTURES / "tf1_cnn.ckpt"), "--outputs", "Momentum", "-o", str(tmp_path / "out"))
    assert code == 2
    assert "depend on the training subgraph" in err and "the graph's inference ends: probabilities" in err
    code, _, err = tfn_cli("import", str(FIXTURES / "tf1_cnn.ckpt"), "--outputs", "probabilitis", "-o", str(tmp_path / "out"))
    assert code == 2 and "the graph has no node 'probabilitis' (did you mean 'probabilities'?)" in err


def test_a_graph_that_reads_variables_needs_freezing(tfn_cli, tmp_path):
    from tfn.runners.importers.tensorflow import read_meta

    path = tmp_path / "unfrozen.pb"
    path.write_bytes(read_meta(FIXTURES / "tf1_cnn.ckpt").graph_def.SerializeToString())
    code, _, err = tfn_cli("import", str(path), "--outputs", "probabilities", "-o", str(tmp_path / "out"))
    assert code == 2 and "freeze it (convert_variables_to_constants) or import the checkpoint" in err


def test_an_onnx_op_without_a_counterpart(tfn_cli, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["h"], name="act"), helper.make_node("Hardmax", ["h"], ["y"], name="pick")], "g", [x], [y])
    path = tmp_path / "hardmax.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    code, _, err = tfn_cli("import", str(path), "-o", str(tmp_path / "out"))
    assert code == 2 and "  Hardmax 'pick' (node 1 of the graph): tfn has no op it maps to" in err


def test_preprocessing_layers_tfn_cannot_record(tfn_cli, tmp_path):
    """A Rescaling inside the model, an input that feeds its preprocessing and another layer, an inverted Normalization."""

    def inside(config):
        _layer(config, "drop").update(class_name="Rescaling")
        _layer(config, "drop")["config"].update(scale=0.5, offset=0.0)

    code, _, err = tfn_cli("import", _keras_with(tmp_path, "mlp", inside), "-o", str(tmp_path / "out"))
    assert code == 2 and "  Rescaling 'drop' (top level): a Rescaling after other layers: tfn takes Keras's preprocessing layers at a model input" in err

    def raw_image_too(config):
        _layer(config, "conv")["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0] = "image"
        _layer(config, "feature_norm")["config"]["invert"] = True

    code, _, err = tfn_cli("import", _keras_with(tmp_path, "keras_layers", raw_image_too), "-o", str(tmp_path / "out"))
    assert code == 2 and "error: 2 layer(s) or op(s) cannot be imported" in err
    assert "  Normalization 'feature_norm' (top level): invert: tfn's preprocessing normalises, it does not undo a normalisation" in err
    assert "  Rescaling 'rescale': input 'image' also feeds conv: preprocessing.json applies to the whole input" in err


def test_list_shows_where_preprocessing_goes(tfn_cli):
    code, out, _ = tfn_cli("import", str(FIXTURES / "keras_layers.keras"), "--list")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("rescale "))
    assert "Rescaling" in row and "preprocessing (image)" in row
    assert out.rstrip().endswith("entries, 0 without a mapping")


def test_a_region_that_computes_no_known_function_stays_op_by_op(tfn_cli, tmp_path):
    """x * erf(x) is no gelu: the Erf is reported, not replaced."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["e"], name="erf"), helper.make_node("Mul", ["x", "e"], ["y"], name="times")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    code, _, err = tfn_cli("import", str(path), "-o", str(tmp_path / "out"))
    assert code == 2 and "  Erf 'erf' (node 0 of the graph): tfn has no op it maps to" in err


def test_files_that_are_not_models(tfn_cli, tmp_path):
    import h5py

    code, _, err = tfn_cli("import", str(tmp_path / "none.keras"), "-o", str(tmp_path / "out"))
    assert code == 2 and "none.keras: error: no such file" in err
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = tfn_cli("import", str(tmp_path / "notes.txt"), "-o", str(tmp_path / "out"))
    assert code == 2 and "cannot tell the format" in err
    with h5py.File(tmp_path / "weights.h5", "w") as f:
        f.create_dataset("dense/kernel:0", data=np.zeros((2, 2)))
    code, _, err = tfn_cli("import", str(tmp_path / "weights.h5"), "-o", str(tmp_path / "out"))
    assert code == 2 and "weights alone (save_weights) hold no model" in err
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as z:
        z.writestr("readme.txt", "no model")
    code, _, err = tfn_cli("import", str(tmp_path / "other.keras"), "-o", str(tmp_path / "out"))
    assert code == 2 and "without config.json and model.weights.h5 is not a Keras 3 .keras file" in err


def test_a_corrupt_checkpoint_index(tfn_cli, tmp_path):
    for suffix in (".index", ".data-00000-of-00001", ".meta"):
        shutil.copy(FIXTURES / f"tf1_cnn.ckpt{suffix}", tmp_path / f"model.ckpt{suffix}")
    (tmp_path / "model.ckpt.index").write_bytes(b"\x00" * 100)
    code, _, err = tfn_cli("import", str(tmp_path / "model.ckpt"), "-o", str(tmp_path / "out"))
    assert code == 2 and "model.ckpt.index: error: not a TensorFlow checkpoint index" in err
    (tmp_path / "model.ckpt.meta").unlink()
    code, _, err = tfn_cli("import", str(tmp_path / "model.ckpt"), "-o", str(tmp_path / "out"))
    assert code == 2 and "model.ckpt.meta: error: no such file" in err and "--spec" in err


def test_verify_says_what_it_needs(tfn_cli, tmp_path):
    code, out, err = tfn_cli("import", str(FIXTURES / "mlp.keras"), "-o", str(tmp_path / "m"), "--verify")
    assert code == 2
    assert "--verify: error: running the original mlp.keras needs Keras 3 with TensorFlow: pip install tensorflow" in err
    assert (tmp_path / "m" / "spec.yaml").is_file()


def test_input_layout_nhwc_keeps_the_original_inputs(tfn_cli, tmp_path):
    """The arrays fed to Keras feed the import as they are: a transpose node after the input."""
    import yaml

    from tfn.runners.session import load_model, run

    code, _, err = tfn_cli("import", str(FIXTURES / "lenet5.h5"), "-o", str(tmp_path / "m"), "--input-layout", "nhwc")
    assert code == 0, err
    spec = yaml.safe_load((tmp_path / "m" / "spec.yaml").read_text())
    assert spec["model"]["inputs"] == {"conv1_input": {"shape": [28, 28, 1]}}
    assert spec["model"]["layers"][0] == {"name": "conv1_input_channels_first", "op": "transpose", "perm": [0, 3, 1, 2], "inputs": ["conv1_input"]}
    inputs, outputs = reference("lenet5")
    got = run(load_model(tmp_path / "m"), {"conv1_input": inputs["conv1_input"]}, ["probs_softmax"]).values["probs_softmax"]
    np.testing.assert_allclose(got, outputs["probs"], atol=1e-5, rtol=0)


def test_usage_errors(tfn_cli):
    code, _, err = tfn_cli("import", str(FIXTURES / "mlp.keras"))
    assert code == 2 and "give -o/--out DIR" in err
    code, _, err = tfn_cli("import", str(FIXTURES / "mlp.keras"), "--list", "--outputs", "x")
    assert code == 2 and "--outputs: error: a Keras model names its own outputs" in err


def test_pb_output_names_are_checked_and_found(tmp_path):
    from tfn.runners.importers import read

    imported = read(FIXTURES / "tf1_cnn.pb")
    assert imported.output_names == ["probabilities"] and meta("tf1_cnn_pb")["outputs"] == ["probabilities"]


TF1_SPEC = """
version: 1
name: tf1_cnn
model:
  inputs:
    image: {shape: [3, 12, 12]}
  layers:
    - {name: conv1, op: conv2d, filters: 6, kernel_size: 3, padding: SAME}
    - {name: bn1, op: batch_normalization}
    - {op: relu}
    - {op: max_pool, pool_size: 2}
    - scope: block
      layers:
        - {name: conv, op: conv2d, filters: 8, kernel_size: 3, strides: 2, padding: SAME}
        - {op: relu6}
        - {op: avg_pool, pool_size: 2, strides: 1, padding: SAME}
    - {op: flatten}
    - {name: fc, op: dense, units: 16}
    - {op: elu}
    - {name: logits, op: dense, units: 4}
    - {name: probabilities, op: softmax}
    - {name: extra, op: dense, units: 3}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: synthetic, classes: 4, fields: {image: {shape: [3, 12, 12]}}}
"""


def test_a_checkpoint_into_a_spec_by_variable_name(tfn_cli, write_spec, tmp_path):
    """The weights land by name, in tfn's layouts (the dense after the NHWC flatten permuted); what is missing is reported."""
    from tfn.runners.session import load_model, run

    spec = write_spec(TF1_SPEC)
    code, out, err = tfn_cli("import", str(FIXTURES / "tf1_cnn.ckpt"), "--spec", str(spec), "-o", str(tmp_path / "m"))
    assert code == 0, err
    assert "initialised 12 of 14 variables" in err and "missing from checkpoint (kept as initialised): extra/kernel" in err
    assert "not in graph" not in err  # optimizer slots (conv1/kernel/Momentum, ...) are not model variables
    inputs, outputs = reference("tf1_cnn_ckpt")
    got = run(load_model(tmp_path / "m"), {"image": channels_first(inputs["image"])}, ["probabilities"]).values
    np.testing.assert_allclose(got["probabilities"], outputs["probabilities"], atol=1e-5, rtol=0)
    record = json.loads((tmp_path / "m" / "import.json").read_text())
    assert record["missing"] == ["extra/kernel", "extra/bias"] and record["source"]["format"] == "tf1_checkpoint"


def test_a_spec_that_shares_no_name_with_the_checkpoint(tfn_cli, write_spec, tmp_path):
    spec = write_spec(
        """
        version: 1
        name: other
        model:
          inputs: {image: {shape: [3, 12, 12]}}
          layers:
            - {op: flatten}
            - {name: head, op: dense, units: 4}
        loss: {op: sparse_softmax_cross_entropy_with_logits, logits: head, labels: label}
        data: {source: synthetic, classes: 4, fields: {image: {shape: [3, 12, 12]}}}
        """
    )
    code, _, err = tfn_cli("import", str(FIXTURES / "tf1_cnn.ckpt"), "--spec", str(spec), "-o", str(tmp_path / "m"))
    assert code == 2 and "error: no variable of the spec is in the checkpoint" in err
    code, _, err = tfn_cli("import", str(FIXTURES / "mlp.keras"), "--spec", str(spec), "-o", str(tmp_path / "m"))
    assert code == 2 and "--spec takes a TF 1.x checkpoint" in err
