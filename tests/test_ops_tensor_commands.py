"""A spec with every op of issue 11's non-sequence part, through tfn check, tfn time,
tfn run, the TensorBoard graph and ONNX export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfn import layers

EVERY_NEW_OP = """
version: 1
name: plumbing
model:
  inputs:
    image: {shape: [3, 6, 6]}
    ids: {shape: [4], dtype: int64}
  layers:
    - {name: pad, op: zero_padding2d, padding: 1, inputs: [image]}
    - {name: crop, op: cropping2d, cropping: [[1, 0], [0, 1]]}
    - {name: lrn, op: local_response_normalization, depth_radius: 1, alpha: 0.1}
    - {name: up, op: resize, size: [9, 5], method: bicubic}
    - {name: near, op: resize, scale: 0.5, method: nearest, align_corners: true}
    - {name: area, op: resize, size: [3, 4], method: area, inputs: [up]}
    - {name: ups, op: upsampling2d, size: 2, interpolation: bilinear}
    - {name: proj, op: dense, units: 3}
    - {name: act, op: leaky_relu}
    - {name: ln, op: layer_normalization}
    - {name: pr, op: prelu}
    - {name: parts, op: split, num_or_size_splits: [1, -1]}
    - {name: g, op: gelu, approximate: true, inputs: ["parts:1"]}
    - {name: flat, op: reshape, shape: [2, -1]}
    - {name: t, op: transpose}
    - {name: scores, op: matmul, inputs: [t, flat]}
    - {name: picked, op: gather, axis: 1, inputs: [scores, ids]}
    - {name: m, op: reduce_max, axis: -1}
    - {name: e, op: expand_dims, axis: 1}
    - {name: tiled, op: tile, multiples: [1, 2, 1]}
    - {name: st, op: stack, inputs: [tiled], axis: -1}
    - {name: sq, op: squeeze, axis: [3]}
    - {name: sl, op: slice, begin: [0, 0, 0], size: [-1, 1, -1]}
    - {name: s, op: swish, beta: 2.0}
    - {name: hs, op: hard_sigmoid}
    - {name: se, op: selu}
    - {name: si, op: silu}
    - {name: head, op: flatten}
    - {name: mean, op: reduce_mean, axis: [2, 3], inputs: [near]}
    - {name: total, op: reduce_sum, axis: [2, 3], inputs: [near]}
    - {name: low, op: reduce_min, axis: [-1, -2], inputs: [near]}
    - {name: idf, op: cast, dtype: float32, inputs: [ids]}
    - {name: features, op: concat, inputs: [head, mean, total, low, idf]}
    - {name: logits, op: dense, units: 3}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: synthetic, classes: 3, fields: {image: {shape: [3, 6, 6]}, ids: {shape: [4], dtype: int64, high: 48}}, batch_size: 4}
train: {epochs: 1}
"""


@pytest.fixture
def spec(write_spec):
    return write_spec(EVERY_NEW_OP)


@pytest.fixture
def feeds(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "image.npy", rng.normal(size=(2, 3, 6, 6)).astype(np.float32))
    np.save(tmp_path / "ids.npy", np.array([[0, 1, 47, 3], [5, 5, 5, 5]]))
    np.save(tmp_path / "bad.npy", np.array([[0, 1, 48, 3], [5, 5, 5, 5]]))
    return tmp_path


NEW_OPS = {
    "leaky_relu", "gelu", "selu", "swish", "silu", "hard_sigmoid", "prelu", "local_response_normalization", "layer_normalization",
    "matmul", "reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "transpose", "slice", "split", "gather", "squeeze",
    "expand_dims", "tile", "stack", "cast", "cropping2d", "zero_padding2d", "resize", "upsampling2d",
}  # fmt: skip


def test_the_spec_uses_every_op_the_issue_added(spec):
    from tfn.specs import load

    assert NEW_OPS <= set(layers.all_ops())
    assert NEW_OPS <= {node.op for node in load(spec).graph.nodes}


def test_check(spec, tfn_cli):
    code, out, err = tfn_cli("check", str(spec), "--json")
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)["nodes"]}
    assert rows["parts"]["output_shapes"] == [[None, 1, 6, 8], [None, 2, 6, 8]]
    assert rows["picked"]["output_shapes"] == [[None, 4, 48]]
    assert rows["features"]["output_shapes"] == [[None, 4 + 3 + 3 + 3 + 4]]
    assert rows["ln"]["parameters"] == 2 * 3 and rows["pr"]["parameters"] == 3 and rows["proj"]["parameters"] == 3 * 3 + 3
    assert rows["scores"]["flops"] == 2 * 48 * 2 * 48 and rows["up"]["flops"] > 0 and rows["near"]["flops"] == 0


def test_check_imports_no_torch(spec):
    import subprocess
    import sys

    code = f"import sys\nfrom tfn.cli.main import main\ntry:\n main(['check', {str(spec)!r}])\nexcept SystemExit: pass\nprint('torch' in sys.modules, file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "picked" in result.stdout and result.stderr.strip().endswith("False")


def test_time(spec, tfn_cli):
    code, out, err = tfn_cli("time", str(spec), "--batch-size", "2", "-n", "1", "--json")
    assert code == 0, err
    timed = {row["name"] for row in json.loads(out)["nodes"]}
    assert {"picked", "parts", "up", "area", "idf", "logits"} <= timed


def test_run_fetches_any_output_and_refuses_bad_indices(spec, feeds, tfn_cli):
    out_file = feeds / "out.npz"
    code, _, err = tfn_cli(
        "run", str(spec), "--feed", f"image={feeds / 'image.npy'}", "--feed", f"ids={feeds / 'ids.npy'}", "--fetch", "scores,picked,parts:1,idf", "--out", str(out_file)
    )
    assert code == 0, err
    with np.load(out_file) as values:
        scores, picked, idf = values["scores"], values["picked"], values["idf"]
        assert values["parts:1"].shape == (2, 2, 6, 8)
    ids = np.load(feeds / "ids.npy")
    np.testing.assert_array_equal(picked, np.stack([scores[n][ids[n]] for n in range(2)]))
    np.testing.assert_array_equal(idf, ids.astype(np.float32))
    code, _, err = tfn_cli("run", str(spec), "--feed", f"image={feeds / 'image.npy'}", "--feed", f"ids={feeds / 'bad.npy'}", "--fetch", "logits")
    assert code == 2
    assert "feeds: error: gather: index 48 is outside [0, 48)" in err and "Traceback" not in err


def test_tensorboard_graph(spec):
    from tfn.runners.summaries import graph_def
    from tfn.specs import load

    nodes = {n.name: n for n in graph_def(load(spec).graph).node}
    assert nodes["g"].input == ["parts:1"] and nodes["g"].op == "gelu"
    assert list(nodes["picked"].input) == ["scores", "ids"] and nodes["ids"].op == "Placeholder"
    assert list(nodes["ln"].input) == ["act", "ln/gamma", "ln/beta"]
    shapes = nodes["parts"].attr["_output_shapes"].list.shape
    assert [[d.size for d in s.dim] for s in shapes] == [[-1, 1, 6, 8], [-1, 2, 6, 8]]


def test_onnx_export_matches(spec, feeds, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from tfn.runners.api import export_onnx
    from tfn.runners.session import load_model, run

    model = load_model(spec)
    path = export_onnx(model, tmp_path / "plumbing.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "ids"]
    for batch in (1, 2):  # the batch dimension stays dynamic
        given = {"image": np.load(feeds / "image.npy")[:batch], "ids": np.load(feeds / "ids.npy")[:batch]}
        (logits,) = session.run(None, given)
        np.testing.assert_allclose(logits, run(model, given).values["logits"], rtol=1e-5, atol=1e-5)
