"""The README's main job end to end: `tfn train digits_cnn` writes a complete run directory."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tfn import specs
from tfn.specs.graph import Graph


def _tfn_command() -> list[str]:
    exe = shutil.which("tfn", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "tfn.cli.main"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """`tfn train digits_cnn` through the console script, on a shortened schedule."""
    out = tmp_path_factory.mktemp("run") / "digits"
    result = subprocess.run(
        [*_tfn_command(), "train", "digits_cnn", "--epochs", "2", "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "test loss" in result.stdout and "accuracy" in result.stdout
    return out


def test_run_directory_holds_every_artifact(run_dir):
    for name in ("spec.yaml", "graph.json", "run.json", "metrics.jsonl", "checkpoints/checkpoint.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "train").glob("events.out.tfevents.*"))
    assert list((run_dir / "validation").glob("events.out.tfevents.*"))


def test_resolved_spec_validates_and_compiles_to_the_same_graph(run_dir):
    resolved = specs.load(run_dir / "spec.yaml")
    assert resolved.spec.data.batch_size == 32
    assert resolved.graph == Graph.from_json((run_dir / "graph.json").read_text())
    # every default filled in: the resolved file names the optimizer's epsilon though the example does not
    assert yaml.safe_load((run_dir / "spec.yaml").read_text())["optimizer"]["epsilon"] == 1e-8


def test_graph_json_round_trips_byte_for_byte(run_dir):
    text = (run_dir / "graph.json").read_text()
    graph = Graph.from_json(text)
    assert graph.to_json() == text
    assert json.loads(text)["format"] == "tfn.graph"
    assert graph == specs.load("digits_cnn").graph


def test_checkpoint_keys_and_shapes_match_graph_variables(run_dir):
    from safetensors import safe_open

    graph = Graph.from_json((run_dir / "graph.json").read_text())
    state = json.loads((run_dir / "checkpoints" / "checkpoint.json").read_text())
    with safe_open(run_dir / "checkpoints" / state["latest"], framework="numpy") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        metadata = f.metadata()
    assert shapes == {v.name: v.shape for v in graph.variables}
    assert "bn1/moving_mean" in shapes and "bn1/moving_variance" in shapes
    assert not any("num_batches_tracked" in k for k in shapes)
    assert metadata["graph_hash"] == graph.hash
    assert metadata["format"] == "tfn.checkpoint"
    # the last checkpoint of a 2-epoch run of 37 steps an epoch: step 74, in epoch 2
    assert (metadata["step"], metadata["epoch"]) == ("74", "2")


def test_run_json_and_metrics(run_dir):
    run = json.loads((run_dir / "run.json").read_text())
    assert run["versions"]["torch"] and run["threads"] >= 1 and run["device"] == "cpu"
    assert run["command"][:3] == ["tfn", "train", "digits_cnn"]
    assert 0.0 <= run["metrics"]["test"]["accuracy"] <= 1.0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "validation", "test"}
    assert all(math.isfinite(r["loss"]) for r in records)


def test_tensorboard_reader_finds_scalars_and_graph(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train = EventAccumulator(str(run_dir / "train"))
    train.Reload()
    assert {"loss", "optimizer/learning_rate"} <= set(train.Tags()["scalars"])
    graph = train.Graph()
    names = {n.name for n in graph.node}
    assert {"conv1", "conv1/kernel", "bn1/moving_mean", "logits", "loss", "image"} <= names
    conv1 = next(n for n in graph.node if n.name == "conv1")
    assert list(conv1.input) == ["image", "conv1/kernel", "conv1/bias"]
    validation = EventAccumulator(str(run_dir / "validation"))
    validation.Reload()
    assert {"loss", "accuracy"} <= set(validation.Tags()["scalars"])


def test_graph_def_keeps_scopes_and_control_edges(write_spec):
    from tfn.runners.summaries import graph_def

    path = write_spec(
        """
        version: 1
        name: scoped
        model:
          inputs: {image: {shape: [1, 8, 8]}}
          layers:
            - scope: block1
              layers:
                - {name: conv, op: conv2d, filters: 2, kernel_size: 3}
                - {op: relu}
            - {op: flatten, after: [block1/conv]}
            - {name: logits, op: dense, units: 10}
        loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
        data: {source: digits}
        """
    )
    nodes = {n.name: n for n in graph_def(specs.load(path).graph).node}
    assert {"block1/conv", "block1/conv/kernel", "block1/relu"} <= set(nodes)
    assert "^block1/conv" in nodes["flatten"].input


def test_full_schedule_reaches_98_percent_on_test(tmp_path):
    from tfn.runners.train import train

    result = train(specs.load("digits_cnn"), out=tmp_path / "full", quiet=True)
    assert result.metrics["test"]["accuracy"] >= 0.98
