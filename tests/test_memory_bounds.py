"""Bounded models: sizes and tensors are bounded at check time, and a model whose memory floor for
the batch exceeds what the device has free is refused before anything is allocated (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest

from tfn.runners import memory
from tfn.specs import load
from tfn.specs.errors import UserError
from tfn.specs.summary import format_bytes, memory_estimate

# 512 inputs -> (2**31 - 1) units: a kernel of 2**40 - 512 elements, within the tensor bound, 4 TiB of float32
HUGE = """\
version: 1
name: huge
model:
  inputs:
    x: {shape: [512]}
  layers:
    - {name: logits, op: dense, units: 2147483647}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: synthetic, classes: 2, fields: {x: {shape: [512]}}, samples: {train: 8, validation: 0, test: 0}}
"""


def test_the_estimate_counts_variables_and_every_tensor_of_a_sample(write_spec):
    graph = load(write_spec(HUGE.replace("2147483647", "3"))).graph
    estimate = memory_estimate(graph)
    assert estimate.parameter_bytes == (512 * 3 + 3) * 4
    # x (512 floats), logits (3 floats), label (one int64), the per-example loss (one float)
    assert estimate.activation_bytes_per_sample == (512 + 3) * 4 + 8 + 4
    assert estimate.for_batch(10) == estimate.parameter_bytes + 10 * estimate.activation_bytes_per_sample
    assert [format_bytes(n) for n in (0, 1023, 1024, 1536, 5 * 2**40)] == ["0 bytes", "1,023 bytes", "1.0 KiB", "1.5 KiB", "5.0 TiB"]


def test_check_accepts_the_huge_model_and_states_its_memory(write_spec, tfn_cli):
    code, out, err = tfn_cli("check", str(write_spec(HUGE)))
    assert code == 0, err
    assert "memory: 4.0 TiB of variables + 8.0 GiB of activations per sample (at least 4.3 TiB for a batch of 32)" in out


@pytest.mark.parametrize("command", [("train", "--steps", "1", "--quiet"), ("time", "-n", "1", "--warmup", "0"), ("run", "--feed", "x=@zeros")])
def test_train_time_and_run_refuse_a_model_larger_than_memory(command, write_spec, tfn_cli, tmp_path, monkeypatch):
    """The real machine's free memory: no machine has the 4 TiB the variables alone need."""
    allocated = []
    monkeypatch.setattr("tfn.runners.module.GraphModule.__init__", lambda *a, **k: allocated.append(a))
    args = list(command)
    if command[0] == "run":
        np.save(tmp_path / "zeros.npy", np.zeros((1, 512), np.float32))
        args[-1] = f"x={tmp_path / 'zeros.npy'}"
    if command[0] == "train":
        args += ["--out", str(tmp_path / "run")]
    code, out, err = tfn_cli(args[0], str(write_spec(HUGE)), *args[1:])
    assert code == 2, err
    assert err.startswith("huge: error: a batch of ") and "4.0 TiB of variables" in err and " has free; use a smaller batch or a smaller model" in err
    assert "Traceback" not in err and not allocated


def test_run_refuses_a_batch_whose_activations_do_not_fit(write_spec, monkeypatch):
    from tfn.runners.session import load_model, run

    model = load_model(write_spec(HUGE.replace("2147483647", "3")))
    per_sample = (512 + 3) * 4 + 8 + 4  # x, logits, label, loss
    monkeypatch.setattr(memory, "available_memory", lambda device: 1000 * per_sample - 1)  # 999 samples fit, not 1,000
    run(model, {"x": np.zeros((999, 512), np.float32)})
    with pytest.raises(UserError, match=r"a batch of 1,000 needs at least 2.0 MiB \(1,000 x 2.0 KiB of activations per sample\)"):
        run(model, {"x": np.zeros((1000, 512), np.float32)})


def test_free_memory_is_read_from_the_system():
    free = memory.available_memory("cpu")
    assert free is None or free > 0
