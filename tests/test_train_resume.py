"""Exact resume: a run interrupted and resumed ends bit for bit where the uninterrupted run ends."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tfn import specs
from tfn.runners.checkpoint import resolve
from tfn.runners.train import resume, train

# dropout (the global torch RNG), momentum RMSProp slots, a decaying schedule,
# batch norm moving statistics, a mid-epoch stop and an epoch boundary crossed after resuming
RESUME_SPEC = """
version: 1
name: resumable
model:
  inputs: {image: {shape: [1, 8, 8]}}
  layers:
    - {op: flatten}
    - {name: hidden, op: dense, units: 32}
    - {name: bn, op: batch_normalization}
    - {op: relu}
    - {op: dropout, rate: 0.3}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
optimizer:
  type: rmsprop
  learning_rate: 0.01
  momentum: 0.9
  centered: true
  schedule: {type: exponential_decay, decay_steps: 5, decay_rate: 0.9}
data: {source: digits, batch_size: 128}
train:
  seed: 7
  log_every: 3
  validate_every: 4
  summaries: {histogram_every: 0, images: 0}
  reduce_on_plateau: {monitor: loss, patience: 1, factor: 0.5}
"""


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(resolve(run_dir))


def train_records(run_dir) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "samples_per_second"} for r in records if r["split"] in ("train", "validation")]


def test_interrupted_and_resumed_equals_uninterrupted_bit_for_bit(write_spec, tmp_path):
    loaded = specs.load(write_spec(RESUME_SPEC))
    whole = train(loaded, out=tmp_path / "whole", steps=14, quiet=True)
    part = train(loaded, out=tmp_path / "part", steps=6, quiet=True)
    assert part.steps == 6
    state = json.loads((tmp_path / "part" / "checkpoints" / "checkpoint.json").read_text())
    assert state["latest"] == "ckpt-000006.safetensors"  # mid-epoch: 10 steps per epoch
    resumed = resume(tmp_path / "part", steps=14, quiet=True)
    assert resumed.steps == whole.steps == 14

    a, b = weights(tmp_path / "whole"), weights(tmp_path / "part")
    assert a.keys() == b.keys() and "bn/moving_variance" in a
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # the logged losses and validations after the resume are the uninterrupted ones, no duplicates
    assert train_records(tmp_path / "part") == train_records(tmp_path / "whole")
    assert resumed.metrics["validation"] == whole.metrics["validation"]

    run = json.loads((tmp_path / "part" / "run.json").read_text())
    assert run["status"] == "completed" and run["steps"] == 14
    assert [r["step"] for r in run["resumed"]] == [6]
    assert run["threads"] == torch.get_num_threads() and run["versions"]["torch"] == torch.__version__


def test_resume_warns_when_threads_differ(write_spec, tmp_path, capsys):
    loaded = specs.load(write_spec(RESUME_SPEC))
    train(loaded, out=tmp_path / "run", steps=2, quiet=True)
    run_json = tmp_path / "run" / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "threads": 999}))
    resume(tmp_path / "run", steps=3, quiet=True)
    assert "warning: the run used threads 999" in capsys.readouterr().err


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path, tfn_cli):
    code, out, err = tfn_cli("train", "--resume", str(tmp_path))
    assert code == 2
    assert f"{tmp_path}: error: not a run directory" in err


def test_resume_rejects_a_spec_with_it(tmp_path, tfn_cli, minimal_spec):
    code, out, err = tfn_cli("train", str(minimal_spec), "--resume", str(tmp_path))
    assert code == 2 and "drop SPEC" in err


@pytest.mark.parametrize("kind", ["adam", "momentum", "adagrad", "adadelta", "gradient_descent", "adamw"])
def test_every_optimizer_state_survives_resume(write_spec, tmp_path, kind):
    text = RESUME_SPEC.replace("type: rmsprop", f"type: {kind}").replace("  momentum: 0.9\n  centered: true\n", "")
    loaded = specs.load(write_spec(text))
    train(loaded, out=tmp_path / "whole", steps=5, quiet=True)
    train(loaded, out=tmp_path / "part", steps=2, quiet=True)
    resume(tmp_path / "part", steps=5, quiet=True)
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "part")
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_every_rng_state_round_trips():
    import random

    import numpy as np

    from tfn.runners.train import rng_state, set_rng_state

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    tensors, header = rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(tensors, json.loads(json.dumps(header)))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
