"""`tfn time` (caffe time): every node timed forward and backward, with parameters, FLOPs and totals."""

from __future__ import annotations

import json

import pytest

SPEC = """
version: 1
name: timed
model:
  inputs:
    image: {shape: [1, 8, 8]}
  layers:
    - {name: conv, op: conv2d, filters: 4, kernel_size: 3, padding: SAME}
    - {name: act, op: relu}
    - {name: pool, op: max_pool, pool_size: 2}
    - {name: flat, op: flatten}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits, batch_size: 16}
train: {epochs: 1}
"""
NODES = ["conv", "act", "pool", "flat", "logits", "loss"]


def test_json_lists_every_node_with_params_flops_and_totals(write_spec, tfn_cli):
    spec = write_spec(SPEC)
    code, out, err = tfn_cli("time", str(spec), "-n", "3", "--warmup", "1", "--batch-size", "8", "--sort", "graph", "--json")
    assert code == 0, err
    timing = json.loads(out)
    nodes = {n["name"]: n for n in timing["nodes"]}
    assert [n["name"] for n in timing["nodes"]] == NODES
    assert timing["batch_size"] == 8 and timing["iterations"] == 3 and timing["warmup"] == 1
    # parameters by hand: conv 1*4*9 + 4; logits (4*4*4)*10 + 10
    assert nodes["conv"]["parameters"] == 40 and nodes["logits"]["parameters"] == 650 and nodes["act"]["parameters"] == 0
    # FLOPs for the batch: conv 2 * 9 * 1 multiply-adds per output of 4*8*8, plus the bias, times 8 samples
    assert nodes["conv"]["flops"] == 8 * (4 * 8 * 8) * (2 * 9 + 1)
    assert nodes["logits"]["flops"] == 8 * (2 * 64 * 10 + 10)
    assert all(n["forward_ms"] > 0 for n in timing["nodes"])
    # gradients flow through every node here (conv has weights, all else follows it)
    assert all(n["backward_ms"] is not None and n["backward_ms"] >= 0 for n in timing["nodes"])
    assert sum(n["share"] for n in timing["nodes"]) == pytest.approx(1.0)
    assert timing["forward_ms"] == pytest.approx(sum(n["forward_ms"] for n in timing["nodes"]))
    assert timing["samples_per_second"] == pytest.approx(8 / (timing["step_ms"] / 1000))


def test_table_sorted_by_time_with_a_totals_line(write_spec, tfn_cli):
    spec = write_spec(SPEC)
    code, out, err = tfn_cli("time", str(spec), "-n", "2", "--warmup", "0")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["node", "op", "output", "forward", "ms"]
    assert lines[0].split()[-1] == "FLOPs/batch"  # the unit: for the whole batch, unlike `tfn check`'s per sample
    body = lines[2 : 2 + len(NODES)]
    assert sorted(line.split()[0] for line in body) == sorted(NODES)
    totals = [float(line.split("%")[0].split()[-1]) for line in body]
    assert totals == sorted(totals, reverse=True)  # slowest first: share falls down the table
    assert lines[-1].startswith("timed on cpu (fp32), batch 16, median of 2 after 0 warm-up: nodes forward ")
    assert lines[-1].endswith("samples/s")


def test_nodes_before_any_variable_have_no_backward(write_spec):
    """The input gets no gradient in training, so a node fed only by it has none to time."""
    from tfn.runners.timing import time_graph
    from tfn.specs import load

    spec = write_spec(SPEC.replace("    - {name: conv, op: conv2d", "    - {name: first, op: relu}\n    - {name: conv, op: conv2d"))
    timing = time_graph(load(spec).graph, batch_size=4, iterations=1, warmup=0)
    by_name = {n.name: n for n in timing.nodes}
    assert by_name["first"].backward_ms is None
    assert by_name["conv"].backward_ms is not None


def test_bad_device_exits_2(write_spec, tfn_cli):
    code, _, err = tfn_cli("time", str(write_spec(SPEC)), "--device", "cuda:7")
    assert code == 2
    assert "cuda" in err and "Traceback" not in err


def test_time_takes_the_training_layout(monkeypatch):
    from tfn import specs
    from tfn.runners import timing
    from tfn.runners.module import GraphModule

    calls = []
    original = GraphModule.use_channels_last
    monkeypatch.setattr(GraphModule, "use_channels_last", lambda self: calls.append(1) or original(self))
    graph = specs.load("digits_cnn").graph
    for memory_format, expected in (("auto", 1), ("channels_first", 0), ("channels_last", 1)):
        calls.clear()
        result = timing.time_graph(graph, batch_size=4, iterations=1, warmup=0, memory_format=memory_format)
        assert len(calls) == expected, memory_format
        assert [n.name for n in result.nodes] == [n.name for n in graph.nodes]


@pytest.mark.parametrize("step_ms, rate", [(3400.0, "0.294"), (50.0, "20"), (1000 / 3494.2, "3,494"), (1000 / 99.96, "100")])
def test_samples_per_second_keep_their_significant_digits(monkeypatch, write_spec, tfn_cli, step_ms, rate):
    """A large model's 0.29 samples/s printed as "0 samples/s"."""
    from tfn.runners import timing

    def slow(graph, batch_size, **kwargs):
        return timing.Timing(graph.name, "cpu", batch_size, 1, 0, [], step_ms)

    monkeypatch.setattr(timing, "time_graph", slow)
    code, out, err = tfn_cli("time", str(write_spec(SPEC)), "--batch-size", "1")
    assert code == 0, err
    assert out.strip().splitlines()[-1].endswith(f"= {rate} samples/s")


def test_time_takes_the_training_precision(write_spec, tfn_cli, monkeypatch):
    import torch

    from tfn.runners import timing

    seen = []
    original = timing.time_graph
    monkeypatch.setattr(timing, "time_graph", lambda *a, **k: seen.append(k["precision"]) or original(*a, **k))
    spec = write_spec(SPEC.replace("train: {epochs: 1}", "train: {epochs: 1, precision: bf16}"))
    code, out, err = tfn_cli("time", str(spec), "-n", "1", "--warmup", "0", "--batch-size", "4", "--json")
    assert code == 0, err
    assert json.loads(out)["precision"] == "bf16" and seen == ["bf16"]
    # the nodes really run under autocast: a conv's output is bfloat16 there
    dtypes = []
    conv = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda *a, **k: dtypes.append(conv(*a, **k).dtype) or conv(*a, **k))
    code, out, err = tfn_cli("time", str(spec), "-n", "1", "--warmup", "0", "--batch-size", "4", "--precision", "fp32", "--json")
    assert code == 0 and json.loads(out)["precision"] == "fp32" and set(dtypes) == {torch.float32}
    dtypes.clear()
    code, out, err = tfn_cli("time", str(spec), "-n", "1", "--warmup", "0", "--batch-size", "4", "--json")
    assert code == 0 and set(dtypes) == {torch.bfloat16}
    code, _, err = tfn_cli("time", str(spec), "--precision", "fp16")
    assert code == 2 and "fp16 needs a CUDA device" in err and "Traceback" not in err
