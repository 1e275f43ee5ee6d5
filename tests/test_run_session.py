"""`tfn run` and runners/session.py: feeds, fetches, pruning, and every bad input -> exit 2."""

from __future__ import annotations

import re

import numpy as np
import pytest

CONV_SPEC = """
version: 1
name: convnet
model:
  inputs:
    image: {shape: [1, 4, 4]}
  layers:
    - {name: conv, op: conv2d, filters: 2, kernel_size: 3, padding: SAME}
    - {name: act, op: relu}
    - {name: flat, op: flatten}
    - {name: logits, op: dense, units: 3}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits, batch_size: 4}
train: {epochs: 1}
"""

SIGMOID_SPEC = """
version: 1
name: sigmoid_only
model:
  inputs:
    x: {shape: [2]}
  layers:
    - {name: sig, op: sigmoid}
    - {name: logits, op: dense, units: 2}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits, batch_size: 4}
train: {epochs: 1}
"""

ARGMAX_SPEC = """
version: 1
name: argmax
model:
  inputs:
    image: {shape: [2, 4, 4]}
  layers:
    - {name: pool, op: max_pool_with_argmax, pool_size: 2}
    - {op: flatten}
    - {name: logits, op: dense, units: 2}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits, batch_size: 4}
train: {epochs: 1}
"""


def _conv_same_reference(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """float64 cross-correlation, stride 1, SAME padding (1 each side for 3x3), NCHW / OIHW."""
    n, _, h, w = x.shape
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, kernel.shape[0], h, w))
    for i in range(h):
        for j in range(w):
            window = padded[:, :, i : i + 3, j : j + 3]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", window, kernel.astype(np.float64))
    return out + bias[None, :, None, None]


@pytest.fixture
def conv_model(write_spec):
    from tfn.runners.session import load_model

    path = write_spec(CONV_SPEC)
    model = load_model(path)
    weights = {name: t.detach().numpy().copy() for name, t in model.variables().items()}
    return path, model, weights


def test_literal_feed_like_the_tf_book(write_spec, tfn_cli, tmp_path):
    spec = write_spec(SIGMOID_SPEC)
    out = tmp_path / "out.npz"
    code, stdout, stderr = tfn_cli("run", str(spec), "--feed", "x=[[1.0, 2.0], [1.0, 2.0]]", "--fetch", "sig", "--out", str(out))
    assert code == 0, stderr
    assert "sig: float32 [2, 2]" in stdout
    assert "# computed 1 of 3 nodes: sig" in stderr  # neither the dense layer nor the loss ran
    with np.load(out, allow_pickle=False) as saved:
        expected = 1.0 / (1.0 + np.exp(-np.array([[1.0, 2.0], [1.0, 2.0]])))
        np.testing.assert_allclose(saved["sig"], expected, rtol=1e-6)
    assert "0.731059" in stdout and "0.880797" in stdout  # sigmoid(1), sigmoid(2) to 6 places


def test_fetch_intermediate_node_computes_only_its_ancestors(conv_model):
    from tfn.runners.session import run

    _, model, w = conv_model
    x = np.random.default_rng(0).standard_normal((3, 1, 4, 4)).astype(np.float32)
    result = run(model, {"image": x}, ["conv"])
    assert result.computed == ("conv",)
    np.testing.assert_allclose(result.values["conv"], _conv_same_reference(x, w["conv/kernel"], w["conv/bias"]), rtol=1e-5, atol=1e-6)


def test_feeding_an_intermediate_node_skips_everything_above_it(conv_model):
    from tfn.runners.session import run

    _, model, w = conv_model
    act = np.random.default_rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32)
    # no image is fed: had conv run, it would have failed for want of its input
    result = run(model, {"act": act}, ["logits"])
    assert result.computed == ("flat", "logits")
    expected = act.reshape(2, -1).astype(np.float64) @ w["logits/kernel"].T.astype(np.float64) + w["logits/bias"]
    np.testing.assert_allclose(result.values["logits"], expected, rtol=1e-5, atol=1e-6)


def test_whole_model_without_labels_prunes_the_loss(conv_model):
    from tfn.runners.session import run

    _, model, w = conv_model
    x = np.random.default_rng(2).standard_normal((1, 4, 4)).astype(np.float32)  # one sample: a batch axis is added
    result = run(model, {"image": x})
    assert list(result.values) == ["logits"]
    assert "loss" not in result.computed and result.computed[0] == "conv"
    conv = np.maximum(_conv_same_reference(x[None], w["conv/kernel"], w["conv/bias"]), 0)
    expected = conv.reshape(1, -1) @ w["logits/kernel"].T.astype(np.float64) + w["logits/bias"]
    np.testing.assert_allclose(result.values["logits"], expected, rtol=1e-5, atol=1e-6)


def test_multi_output_node_both_outputs(write_spec, tfn_cli, tmp_path):
    spec = write_spec(ARGMAX_SPEC)
    x = np.random.default_rng(3).permutation(2 * 2 * 4 * 4).reshape(2, 2, 4, 4).astype(np.float32)  # distinct: no ties
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "pool.npz"
    code, _, stderr = tfn_cli("run", str(spec), "--feed", f"image={tmp_path / 'x.npy'}", "--fetch", "pool,pool:1", "--out", str(out))
    assert code == 0, stderr
    assert "# computed 1 of 4 nodes: pool" in stderr
    # TF's max_pool_with_argmax: the max of each 2x2 window and its index (y * W + x) * C + c in NHWC
    values, indices = np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2), np.int64)
    for n in range(2):
        for c in range(2):
            for i in range(2):
                for j in range(2):
                    window = x[n, c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
                    dy, dx = np.unravel_index(window.argmax(), (2, 2))
                    values[n, c, i, j] = window.max()
                    indices[n, c, i, j] = ((2 * i + dy) * 4 + (2 * j + dx)) * 2 + c
    with np.load(out, allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved["pool"], values)
        np.testing.assert_array_equal(saved["pool:1"], indices)
        assert saved["pool:1"].dtype == np.int64


def test_npy_npz_and_image_feeds(conv_model, tmp_path):
    from PIL import Image

    from tfn.runners.session import read_feeds

    path, model, _ = conv_model
    pixels = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    Image.fromarray(pixels, mode="L").save(tmp_path / "digit.png")
    np.save(tmp_path / "one.npy", np.ones((1, 4, 4), np.float64))
    np.savez(tmp_path / "many.npz", image=np.zeros((5, 1, 4, 4), np.float32), other=np.ones(3))
    feeds = read_feeds(model.graph, [f"image={tmp_path / 'digit.png'}"])
    np.testing.assert_allclose(feeds["image"], (pixels / 255.0)[None, None], rtol=1e-6)
    assert read_feeds(model.graph, [f"image={tmp_path / 'one.npy'}"])["image"].dtype == np.float32
    assert read_feeds(model.graph, [f"image={tmp_path / 'many.npz'}"])["image"].shape == (5, 1, 4, 4)
    # an int label fed from integral floats is fine; the value is kept exactly
    assert read_feeds(model.graph, ["label=[1.0, 2.0]"])["label"].tolist() == [1, 2]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fetch", "logit"], "unknown node 'logit' in fetches (did you mean 'logits'?)"),
        (["--feed", "imag=[1.0]"], "feed 'imag': error: the graph has no input or node 'imag' (did you mean 'image'?)"),
        (["--feed", "image=[[1.0, 2.0]]"], "feed 'image': error: shape [1, 2] does not fit [?, 1, 4, 4]"),
        (["--feed", "label=[1.5]", "--fetch", "label"], "feed 'label': error: the input is int64, but the value holds 1.5, which is not an integer"),
        (["--feed", "image=hello"], "--feed image=hello: error: not a file, a number or a rectangular nested list of numbers"),
        (["--feed", "image=[[1, 2], [3]]"], "not a file, a number or a rectangular nested list of numbers"),
        (["--feed", "image=missing.npy"], "missing.npy: error: no such file"),
        (["--feed", "image"], "expected NAME=FILE or NAME=VALUE"),
        (["--fetch", "logits"], "input 'image' must be fed to compute 'conv'"),
        (["--fetch", "conv:1"], "'conv:1': node 'conv' has 1 output(s)"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(conv_model, tfn_cli, args, message):
    path, _, _ = conv_model
    code, stdout, stderr = tfn_cli("run", str(path), *args)
    assert code == 2, (stdout, stderr)
    assert message in stderr
    assert "Traceback" not in stderr


def test_object_npy_is_refused_without_unpickling(conv_model, tfn_cli, tmp_path):
    path, _, _ = conv_model
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, stderr = tfn_cli("run", str(path), "--feed", f"image={tmp_path / 'objects.npy'}")
    assert code == 2
    assert "not a plain numeric .npy array" in stderr


def test_checkpoint_for_another_graph_is_refused(conv_model, write_spec, tfn_cli, tmp_path):
    from tfn.runners.checkpoint import save
    from tfn.runners.session import load_model

    path, _, _ = conv_model
    other = load_model(write_spec(SIGMOID_SPEC, "other.yaml"))
    save(tmp_path / "other.safetensors", other.variables(), step=1, epoch=1, graph_hash=other.graph.hash)
    code, _, stderr = tfn_cli("run", str(path), "--checkpoint", str(tmp_path / "other.safetensors"), "--feed", "image=[[[[0.0]]]]")
    assert code == 2
    assert "does not fit graph 'convnet'" in stderr
    assert re.search(r"missing from checkpoint: conv/kernel \[2, 1, 3, 3\]", stderr)
    assert re.search(r"not in graph: logits/kernel \[2, 2\]", stderr) or "shape differs: logits/kernel" in stderr


def test_checkpoint_weights_replace_the_initial_ones(conv_model, tmp_path):
    import torch

    from tfn.runners.checkpoint import save
    from tfn.runners.session import load_model, run

    path, model, _ = conv_model
    trained = {name: torch.full_like(t, 0.5) for name, t in model.variables().items()}
    save(tmp_path / "ckpt.safetensors", trained, step=7, epoch=1, graph_hash=model.graph.hash)
    loaded = load_model(path, tmp_path / "ckpt.safetensors")
    assert all(torch.equal(t, torch.full_like(t, 0.5)) for t in loaded.variables().values())
    x = np.ones((1, 1, 4, 4), np.float32)
    conv = run(loaded, {"image": x}, ["conv"]).values["conv"][0, 0]
    # 0.5 per in-image tap plus the bias 0.5: 9 taps inside, 6 on an edge, 4 in a corner
    assert conv[1, 1] == pytest.approx(0.5 * 9 + 0.5) and conv[0, 1] == pytest.approx(0.5 * 6 + 0.5) and conv[0, 0] == pytest.approx(0.5 * 4 + 0.5)


@pytest.mark.parametrize(
    "value, dtype, message",
    [
        ([300], "uint8", "300 is outside the range of the uint8 input (0 to 255)"),
        ([-1], "uint8", "-1 is outside the range of the uint8 input (0 to 255)"),
        ([2**40], "int32", f"{2**40} is outside the range of the int32 input"),
        (np.array([2.0**63]), "int64", f"{2**63} is outside the range of the int64 input"),
        (np.array([1e39]), "float32", "1e+39 is beyond the range of the float32 input"),
    ],
)
def test_feeds_that_overflow_the_input_dtype_are_refused(value, dtype, message):
    """astype wrapped them around silently: 300 fed a uint8 input as 44."""
    from tfn.layers import TensorType
    from tfn.runners.session import FeedError, conform

    with pytest.raises(FeedError, match=re.escape(message)):
        conform("x", np.asarray(value), TensorType((None,), dtype))


def test_feeds_cast_as_tf_feed_dict_does():
    """Any number feeds a float input; whole floats and narrower or wider integers feed an integer one, values kept."""
    from tfn.layers import TensorType
    from tfn.runners.session import conform

    scalar = TensorType((None,), "int16")
    assert conform("x", np.array([3.0, -7.0]), scalar).tolist() == [3, -7] and conform("x", np.array([3.0]), scalar).dtype == np.int16
    assert conform("x", np.array([255], np.int64), TensorType((None,), "uint8")).tolist() == [255]
    floats = conform("x", np.array([[1, 2]], np.int64), TensorType((None, 2), "float32"))
    assert floats.dtype == np.float32 and floats.tolist() == [[1.0, 2.0]]
    assert conform("x", np.float64(0.1), TensorType((None,), "float32")).tolist() == [np.float32(0.1)]


def test_a_per_sample_scalar_input_is_fed_and_trained(write_spec, tfn_cli, tmp_path):
    """`shape: []` (TF's placeholder of shape [None]) was refused by the schema."""
    spec = write_spec(
        """
        version: 1
        name: scalar_feature
        model:
          inputs:
            x: {shape: [3]}
            w: {shape: []}
          layers:
            - {name: w_column, op: reshape, shape: [1], inputs: [w]}
            - {name: both, op: concat, inputs: [x, w_column]}
            - {name: logits, op: dense, units: 2}
        loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
        data: {source: synthetic, classes: 2, samples: {train: 20, validation: 4, test: 4}, fields: {x: {shape: [3]}, w: {shape: []}}}
        train: {epochs: 1}
        """
    )
    code, out, err = tfn_cli("run", str(spec), "--feed", "x=[[1, 2, 3], [4, 5, 6]]", "--feed", "w=[7, 8]", "--fetch", "both")
    assert code == 0, err
    assert "[[1. 2. 3. 7.]\n [4. 5. 6. 8.]]" in out
    code, _, err = tfn_cli("train", str(spec), "--out", str(tmp_path / "run"), "--quiet")
    assert code == 0, err
