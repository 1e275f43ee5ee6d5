"""A training process killed (SIGKILL) at random moments leaves its latest named checkpoint
complete and loadable; SIGTERM writes a checkpoint and exits cleanly; a NaN loss exits 1."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tfn.runners.checkpoint import load_resume_state, read_info, resolve, state_name

ENDLESS = """
version: 1
name: endless
model:
  inputs: {image: {shape: [1, 8, 8]}}
  layers:
    - {op: flatten}
    - {name: hidden, op: dense, units: 32}
    - {op: relu}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
optimizer: {type: adam}
data: {source: digits, batch_size: 16}
train:
  steps: 1000000
  log_every: 5
  checkpoints: {every_steps: 1, keep: 3}
  summaries: {histogram_every: 0, images: 0}
"""


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tfn.cli.main", "train", *args, "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_checkpoints(process: subprocess.Popen, out: Path, at_least: int = 1, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    state = out / "checkpoints" / "checkpoint.json"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training exited early ({process.returncode}): {process.stderr.read()}")
        try:
            if int(json.loads(state.read_text())["latest"].split("-")[1].split(".")[0]) >= at_least:
                return
        except (FileNotFoundError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared")


def assert_latest_complete(out: Path) -> int:
    latest = resolve(out)
    info = read_info(latest)
    tensors = load_file(latest)
    assert set(tensors) == set(info.variables) == {"hidden/kernel", "hidden/bias", "logits/kernel", "logits/bias"}
    assert all(torch.isfinite(t).all() for t in tensors.values())
    slots, header = load_resume_state(latest.with_name(state_name(latest.name)))
    assert header["step"] == int(info.metadata["step"])
    assert {"optimizer/hidden/kernel/m", "optimizer/hidden/kernel/v", "rng/torch"} <= set(slots)
    return header["step"]


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_loadable_latest_checkpoint(write_spec, tmp_path):
    out = tmp_path / "run"
    chance = random.Random(os.getpid())
    process = start(str(write_spec(ENDLESS)), "--out", str(out))
    step = 0
    for attempt in range(3):
        try:
            wait_for_checkpoints(process, out, at_least=step + 2)
            time.sleep(chance.uniform(0.0, 0.3))  # somewhere inside the write sequence, or not
        finally:
            process.kill()
            process.communicate()
        assert process.returncode == -signal.SIGKILL
        step = assert_latest_complete(out)
        if attempt < 2:  # the killed run resumes from that checkpoint, and is killed again
            process = start("--resume", str(out))


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(write_spec, tmp_path):
    out = tmp_path / "run"
    process = start(str(write_spec(ENDLESS.replace("every_steps: 1", "every_steps: 1000"))), "--out", str(out))
    # every_steps 1000: the only checkpoint before step 1000 is the one SIGTERM writes
    deadline = time.monotonic() + 60
    try:
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
    except BaseException:
        process.kill()
        process.communicate()
        raise
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert "stopped by SIGTERM" in err and f"tfn train --resume {out}" in err
    step = assert_latest_complete(out)
    assert step >= 5
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["stopped"] == "SIGTERM" and run["steps"] == step


NAN_SPEC = """
version: 1
name: diverges
model:
  inputs: {image: {shape: [1, 8, 8]}}
  layers:
    - {op: flatten}
    - {name: hidden, op: dense, units: 32}
    - {op: relu}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
optimizer: {type: gradient_descent, learning_rate: 1.0e+30}
data: {source: digits, batch_size: 64}
train:
  epochs: 3
  log_every: 1
  checkpoints: {every_steps: 1}
  summaries: {histogram_every: 0, images: 0}
"""


def test_nan_loss_stops_with_exit_1_naming_the_step_and_keeps_the_last_good_checkpoint(write_spec, tmp_path, tfn_cli):
    out = tmp_path / "run"
    code, _, err = tfn_cli("train", str(write_spec(NAN_SPEC)), "--out", str(out), "--quiet")
    assert code == 1
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and " at step " in line
    failed_step = int(line.split(" at step ")[1].split()[0])
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and f"at step {failed_step}" in run["error"]
    state = json.loads((out / "checkpoints" / "checkpoint.json").read_text())
    latest = out / "checkpoints" / state["latest"]
    assert int(read_info(latest).metadata["step"]) < failed_step
    assert all(bool(torch.isfinite(t).all()) for t in load_file(latest).values())
    assert f"the last good checkpoint is {latest}" in line
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in records)
