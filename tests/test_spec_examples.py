"""The shipped examples: shapes and parameter counts worked out by hand, and a forward and backward pass each."""

from __future__ import annotations

import json

import pytest
import torch

from tfn.runners.module import DTYPES, GraphModule
from tfn.specs import example_names, load


def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def bn(c: int) -> tuple[int, int]:
    return 2 * c, 2 * c  # gamma, beta trainable; moving mean and variance not


def shapes(graph) -> dict[str, tuple]:
    return {n.name: n.outputs[0].shape for n in graph.nodes}


def test_the_examples_are_shipped_and_named():
    shipped = {"lenet5", "vgg_small", "resnet_small", "inception_small", "siamese", "digits_mlp", "digits_cnn"}
    assert shipped | {"alexnet_small", "conv_autoencoder", "attention_toy", "tabular_regression"} <= set(example_names())


def test_lenet5(tfn_cli):
    graph = load("lenet5").graph
    # 32 -5+1-> 28 /2-> 14 -5+1-> 10 /2-> 5; 16 * 5 * 5 = 400
    expected = {"c1": (None, 6, 28, 28), "s2": (None, 6, 14, 14), "c3": (None, 16, 10, 10), "s4": (None, 16, 5, 5),
                "flatten": (None, 400), "c5": (None, 120), "f6": (None, 84), "logits": (None, 10)}
    assert {k: shapes(graph)[k] for k in expected} == expected
    total = conv(1, 6, 5) + conv(6, 16, 5) + dense(400, 120) + dense(120, 84) + dense(84, 10)
    assert total == 61_706
    assert graph.parameter_counts() == (61_706, 0)
    code, out, _ = tfn_cli("check", "lenet5")
    assert code == 0
    assert "parameters: 61,706 (61,706 trainable, 0 non-trainable)" in out
    row = next(line for line in out.splitlines() if line.startswith("c3 "))
    assert row.split()[1:3] == ["conv2d", "s2"] and "[?, 16, 10, 10]" in row and row.split()[-2] == f"{conv(6, 16, 5):,}"


def test_vgg_small():
    graph = load("vgg_small").graph
    s = shapes(graph)
    assert s["block1/pool"] == (None, 16, 16, 16) and s["block2/pool"] == (None, 32, 8, 8) and s["block3/pool"] == (None, 64, 4, 4)
    assert s["flatten"] == (None, 1024)
    total = conv(3, 16, 3) + conv(16, 16, 3) + conv(16, 32, 3) + conv(32, 32, 3) + conv(32, 64, 3) + conv(64, 64, 3) + dense(1024, 128) + dense(128, 10)
    assert graph.parameter_counts() == (total, 0) == (204_570, 0)
    assert "block2/conv1/kernel" in {v.name for v in graph.variables}


def test_resnet_small():
    graph = load("resnet_small").graph
    s = shapes(graph)
    assert s["res1/add"] == (None, 16, 32, 32)
    assert s["res2/conv1"] == s["res2/shortcut"] == s["res2/add"] == (None, 32, 16, 16)  # SAME, stride 2: ceil(32 / 2)
    assert s["pool"] == (None, 32)
    assert graph.node("res1/add").inputs == ("res1/bn2", "stem")
    assert graph.node("res2/add").inputs == ("res2/bn2", "res2/shortcut")
    assert graph.node("res2/shortcut").inputs == ("res1/out",)
    trainable = conv(3, 16, 3, False) + 2 * conv(16, 16, 3, False) + conv(16, 32, 3, False) + conv(32, 32, 3, False) + conv(16, 32, 1, False) + dense(32, 10)
    trainable += bn(16)[0] * 3 + bn(32)[0] * 2
    frozen = bn(16)[1] * 3 + bn(32)[1] * 2
    assert graph.parameter_counts() == (trainable, frozen) == (19_930, 224)


def test_inception_small():
    graph = load("inception_small").graph
    s = shapes(graph)
    assert s["pool0"] == (None, 32, 16, 16)
    branches = ["mixed/branch_0/relu", "mixed/branch_1/relu", "mixed/branch_2/relu", "mixed/branch_3/relu"]
    assert [s[b][1] for b in branches] == [16, 24, 8, 8] and all(s[b][2:] == (16, 16) for b in branches)
    assert graph.node("mixed/concat").inputs == tuple(branches)
    assert s["mixed/concat"] == (None, 56, 16, 16)
    assert all(graph.node(f"mixed/branch_{i}/{first}").inputs == ("pool0",) for i, first in enumerate(["conv_1x1", "conv_1x1", "conv_1x1", "pool"]))
    total = conv(3, 32, 3) + conv(32, 16, 1) + conv(32, 16, 1) + conv(16, 24, 3) + conv(32, 4, 1) + conv(4, 8, 5) + conv(32, 8, 1) + dense(56, 10)
    assert graph.parameter_counts() == (total, 0) == (7_206, 0)
    assert "mixed/branch_1/conv_3x3/kernel" in {v.name for v in graph.variables}


def test_siamese_towers_share_their_variables(tfn_cli):
    graph = load("siamese").graph
    assert [i.name for i in graph.inputs] == ["left", "right", "label"]
    assert graph.node("right/conv").variables == {"kernel": "left/conv/kernel", "bias": "left/conv/bias"}
    assert graph.node("right/embed").variables == graph.node("left/embed").variables
    assert not any(v.name.startswith("right/") for v in graph.variables)
    assert shapes(graph)["joined"] == (None, 64)
    total = conv(1, 8, 3) + dense(8 * 8 * 8, 32) + dense(64, 10)
    assert graph.parameter_counts() == (total, 0) == (17_146, 0)
    code, out, _ = tfn_cli("check", "siamese")
    assert "parameters: 17,146 " in out  # shared variables counted once
    module = GraphModule(graph)
    assert sorted(module.state_dict()) == sorted(v.name for v in graph.variables)  # what a checkpoint holds: no right/...


def test_digits_mlp_toml():
    graph = load("digits_mlp").graph
    assert shapes(graph)["hidden"] == (None, 64)
    assert graph.parameter_counts() == (dense(64, 64) + dense(64, 10), 0)


def test_alexnet_small():
    graph = load("alexnet_small").graph
    s = shapes(graph)
    # 8 -resize-> 32 -conv stride 2 SAME-> 16 -pool 3/2 SAME-> 8 -pool-> 4 -pool-> 2
    expected = {"resize": (None, 1, 32, 32), "conv1": (None, 16, 16, 16), "norm1": (None, 16, 16, 16), "pool1": (None, 16, 8, 8),
                "conv2": (None, 32, 8, 8), "pool2": (None, 32, 4, 4), "conv5": (None, 32, 4, 4), "pool5": (None, 32, 2, 2),
                "flatten": (None, 128), "fc7": (None, 256), "logits": (None, 10)}
    assert {k: s[k] for k in expected} == expected
    assert graph.node("norm1").attrs == {"depth_radius": 2, "bias": 2.0, "alpha": 1e-4, "beta": 0.75}  # the paper's k, n, alpha, beta
    assert graph.node("resize").attrs["half_pixel_centers"] is True
    total = conv(1, 16, 5) + conv(16, 32, 5) + conv(32, 48, 3) + conv(48, 48, 3) + conv(48, 32, 3) + dense(128, 256) + dense(256, 256) + dense(256, 10)
    assert graph.parameter_counts() == (total, 0) == (163_146, 0)
    assert [n.op for n in graph.nodes].count("dropout") == 2


def test_conv_autoencoder_reconstructs_its_input():
    graph = load("conv_autoencoder").graph
    s = shapes(graph)
    assert s["encoder/code"] == (None, 8, 2, 2) and s["decoder/deconv1"] == (None, 16, 4, 4) and s["decoder/up"] == (None, 16, 8, 8)
    assert s["reconstruction"] == (None, 1, 8, 8)
    assert [i.name for i in graph.inputs] == ["image"]  # the loss's labels are the model's own input, not a second one
    assert graph.node("loss").inputs == ("reconstruction", "image")
    # conv2d_transpose's kernel [C_in, filters, kh, kw] holds as many weights as a conv's
    total = conv(1, 16, 3) + conv(16, 8, 3) + conv(8, 16, 3) + conv(16, 1, 3)
    assert graph.parameter_counts() == (total, 0) == (2_633, 0)


def test_attention_toy():
    graph = load("attention_toy").graph
    s = shapes(graph)
    expected = {"q": (None, 32, 1), "k": (None, 32, 8), "v": (None, 32, 8), "scores": (None, 1, 8), "weights": (None, 1, 8),
                "weights_t": (None, 8, 1), "read": (None, 32, 1), "pooled": (None, 32), "logits": (None, 10)}
    assert {k: s[k] for k in expected} == expected
    assert graph.parameter_counts() == (dense(16, 32) * 2 + dense(10, 32) + dense(32, 10), 0) == (1_770, 0)


def test_tabular_regression():
    graph = load("tabular_regression").graph
    assert shapes(graph)["prediction"] == (None, 1)
    assert [i.name for i in graph.inputs] == ["x", "y"]  # y feeds only the loss
    assert graph.node("loss").op == "huber_loss" and graph.node("loss").inputs == ("prediction", "y")
    assert graph.parameter_counts() == (dense(10, 16) + dense(16, 1), 0) == (193, 0)


@pytest.mark.parametrize("example", ["alexnet_small", "conv_autoencoder", "attention_toy", "tabular_regression"])
def test_the_vocabulary_examples_check_and_time(example, tfn_cli):
    code, out, err = tfn_cli("check", example)
    assert code == 0, err
    code, out, err = tfn_cli("time", example, "-n", "1", "--warmup", "0", "--batch-size", "4", "--sort", "graph", "--json")
    assert code == 0, err
    timing = json.loads(out)
    assert [n["name"] for n in timing["nodes"]] == [n.name for n in load(example).graph.nodes]
    assert timing["batch_size"] == 4 and all(n["forward_ms"] > 0 for n in timing["nodes"])


@pytest.mark.parametrize("example", example_names())
def test_forward_and_backward_on_random_inputs(example):
    graph = load(example).graph
    torch.manual_seed(0)
    module = GraphModule(graph, torch.Generator().manual_seed(0)).place("cpu")
    module.train()
    output = graph.type_of(graph.outputs[0])
    classes = output.shape[1]
    feeds = {}
    for i in graph.inputs:
        shape = (2, *i.type.sample_shape)
        if i.type.dtype.startswith("int"):
            feeds[i.name] = torch.randint(0, classes, shape, dtype=DTYPES[i.type.dtype])
        else:
            feeds[i.name] = torch.randn(shape, dtype=DTYPES[i.type.dtype])
    losses = [l.node for l in graph.losses]
    out = module(feeds, [*graph.outputs, *losses])
    assert out[graph.outputs[0]].shape == (2, *output.sample_shape)
    loss = sum(out[name].mean() for name in losses)
    assert torch.isfinite(loss)
    loss.backward()
    for name, variable in module.trainable_variables().items():
        assert variable.grad is not None and torch.isfinite(variable.grad).all(), name
