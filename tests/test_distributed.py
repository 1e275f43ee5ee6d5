"""Data-parallel training: `tfn train --nproc 2` over loopback (gloo), sharding, synchronized batch normalization.

The multi-process tests start real jobs through torch's elastic launcher, as
users do; tests/distributed_job.py adds what only a test needs (each rank's
weights written out, a rank that fails on purpose).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tfn.runners import checkpoint as ckpt
from tfn.runners.data import DataError, DataPipeline
from tfn.runners.distributed import Replicas, launched
from tfn.specs import load

JOB = Path(__file__).with_name("distributed_job.py")
TIMEOUT = 120  # seconds for a whole job: a hang fails the test instead of the suite

# no dropout: two ranks and one process draw no random numbers, so they can agree
SYNC_BN_SPEC = """
version: 1
name: ddp_bn
model:
  inputs:
    image: {shape: [1, 8, 8]}
  layers:
    - {name: conv, op: conv2d, filters: 4, kernel_size: 3, padding: SAME, use_bias: false}
    - {name: bn, op: batch_normalization}
    - {op: relu}
    - {op: flatten}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits, batch_size: 64}
train: {steps: 6, log_every: 2, sync_batchnorm: true}
"""

# dropout draws from each rank's own RNG: resuming must restore every rank's
DROPOUT_SPEC = """
version: 1
name: ddp_dropout
model:
  inputs:
    image: {shape: [1, 8, 8]}
  layers:
    - {op: flatten}
    - {name: hidden, op: dense, units: 32}
    - {op: relu}
    - {op: dropout, rate: 0.5}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits, batch_size: 32}
train: {steps: 8, log_every: 2}
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def _job(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """tests/distributed_job.py 2 ARGS...: two ranks of `tfn train ARGS...`."""
    return subprocess.run(
        [sys.executable, str(JOB), "2", *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=TIMEOUT
    )


def _tfn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfn.cli.main", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / ckpt.checkpoint_name(step))


# --- in one process ---------------------------------------------------------------------


def test_a_process_outside_a_job_is_rank_0_of_1_and_its_hooks_change_nothing():
    assert not launched()
    replicas = Replicas.join(torch.device("cpu"))
    assert (replicas.rank, replicas.world_size, replicas.is_writer, replicas.shard) == (0, 1, True, (0, 1))
    loss = torch.tensor(2.5)
    assert replicas.mean(loss) is loss
    assert replicas.agree("SIGTERM") == "SIGTERM" and replicas.agree(None) is None
    tensors, header = {"rng/torch": torch.arange(3)}, {"numpy": [1]}
    assert replicas.gather_rng(tensors, header) == (tensors, header)
    model = torch.nn.Linear(2, 2)
    assert replicas.wrap(model, ("x",), sync_batchnorm=True) is model


def test_each_rank_takes_every_nth_sample_of_the_global_batch(write_spec):
    loaded = load(write_spec(SYNC_BN_SPEC))
    whole = DataPipeline(loaded.spec.data, loaded.graph, seed=3)
    ranks = [DataPipeline(loaded.spec.data, loaded.graph, seed=3, shard=(r, 2)) for r in range(2)]
    assert [r.steps_per_epoch for r in ranks] == [whole.steps_per_epoch] * 2
    for epoch in (1, 2):
        batches = zip(whole.train_batches(epoch), *(r.train_batches(epoch) for r in ranks))
        for step, (batch, first, second) in enumerate(batches):
            for field in ("image", "label"):
                # DistributedSampler's rule on the global batch: rank r holds samples r, r + 2, r + 4, ...
                assert torch.equal(first[field], batch[field][0::2]), (epoch, step, field)
                assert torch.equal(second[field], batch[field][1::2]), (epoch, step, field)
    # resuming mid-epoch takes the same shard
    assert torch.equal(next(ranks[1].train_batches(2, start_step=5))["label"], list(whole.train_batches(2))[5]["label"][1::2])


def test_streamed_sources_are_sharded_the_same_way(tmp_path, write_spec):
    from PIL import Image

    for label, name in enumerate(("a", "b", "c")):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(6):  # every image its own grey level: the batches show which images they hold
            Image.fromarray(np.full((4, 4), 10 * (label * 6 + i), dtype=np.uint8), mode="L").save(tmp_path / "images" / name / f"{i}.png")
    spec = write_spec(
        f"""
        version: 1
        name: folder
        model:
          inputs: {{image: {{shape: [1, 4, 4]}}}}
          layers: [{{op: flatten}}, {{name: logits, op: dense, units: 3}}]
        loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
        data: {{source: image_folder, directory: {tmp_path / "images"}, size: [4, 4], color: grayscale, batch_size: 4, drop_remainder: true, split: {{validation: 0.25, test: 0}}}}
        """
    )
    loaded = load(spec)
    whole = DataPipeline(loaded.spec.data, loaded.graph, seed=1)
    ranks = [DataPipeline(loaded.spec.data, loaded.graph, seed=1, shard=(r, 2)) for r in range(2)]
    try:
        for batch, first, second in zip(whole.train_batches(1), *(r.train_batches(1) for r in ranks)):
            assert torch.equal(first["image"], batch["image"][0::2]) and torch.equal(second["image"], batch["image"][1::2])
            assert torch.equal(first["label"], batch["label"][0::2]) and torch.equal(second["label"], batch["label"][1::2])
    finally:
        for pipeline in (whole, *ranks):
            pipeline.close()


def test_the_global_batch_must_split_evenly(write_spec):
    loaded = load(write_spec(SYNC_BN_SPEC.replace("batch_size: 64", "batch_size: 63")))
    with pytest.raises(DataError, match=r"data.batch_size: error: 63 is the global batch of the 2 processes, so it must be a multiple of 2"):
        DataPipeline(loaded.spec.data, loaded.graph, shard=(0, 2))
    # 1167 training samples in batches of 2: the last batch holds one sample, too few for two processes
    loaded = load(write_spec(SYNC_BN_SPEC.replace("batch_size: 64", "batch_size: 2")))
    with pytest.raises(DataError, match="the last batch of each epoch has 1 of the 1167 training samples, fewer than the 2 processes; set drop_remainder: true"):
        DataPipeline(loaded.spec.data, loaded.graph, shard=(0, 2))


def test_nproc_reports_a_spec_error_once_without_starting_processes(tfn_cli, write_spec):
    spec = write_spec(SYNC_BN_SPEC.replace("units: 10", "unit: 10"))
    code, out, err = tfn_cli("train", str(spec), "--nproc", "2")
    assert code == 2
    assert err.count("error:") == 1 and "unit" in err


# --- synchronized batch normalization, replicas simulated in one process ----------------


def _twin_all_reduce(t: torch.Tensor) -> torch.Tensor:
    """all_reduce over two replicas that hold the same batch: the sum is twice the tensor, and so is its gradient."""
    return 2 * t


@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (7, 3)])
def test_synchronized_batch_normalization_uses_the_statistics_of_all_replicas(shape):
    from tfn import layers
    from tfn.layers.base import TensorType

    op = layers.get("batch_normalization")
    params = op.Params(momentum=0.9, epsilon=1e-3)
    types = [TensorType(shape, "float64")]
    kernel = op.build_synchronized(params, types, _twin_all_reduce)
    rng = np.random.default_rng(0)
    x_np = rng.normal(2.0, 3.0, shape)
    gamma_np, beta_np = rng.normal(size=shape[1]), rng.normal(size=shape[1])
    variables = {
        "gamma": torch.tensor(gamma_np, requires_grad=True),
        "beta": torch.tensor(beta_np, requires_grad=True),
        "moving_mean": torch.zeros(shape[1], dtype=torch.float64),
        "moving_variance": torch.ones(shape[1], dtype=torch.float64),
    }
    x = torch.tensor(x_np, requires_grad=True)
    y = kernel([x], variables, True)

    # NumPy over the global batch (the same batch on both replicas: twice the samples)
    axes = (0, *range(2, len(shape)))
    both = np.concatenate([x_np, x_np])
    mean, var = both.mean(axis=axes), both.var(axis=axes)
    c = [1, -1] + [1] * (len(shape) - 2)
    expected = (x_np - mean.reshape(c)) / np.sqrt(var.reshape(c) + 1e-3) * gamma_np.reshape(c) + beta_np.reshape(c)
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-10, atol=1e-10)
    n = both.size / shape[1]
    unbiased = n / (n - 1) if len(shape) == 4 else 1.0  # TF's fused kernel (4-D) updates with the unbiased variance
    np.testing.assert_allclose(variables["moving_mean"].numpy(), 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(variables["moving_variance"].numpy(), 0.9 + 0.1 * var * unbiased, rtol=1e-12)

    # gradients: those of plain batch normalization over the concatenated batch, first half
    upstream = torch.tensor(rng.normal(size=shape))
    (y * upstream).sum().backward()
    xx = torch.tensor(both, requires_grad=True)
    gamma, beta = torch.tensor(gamma_np, requires_grad=True), torch.tensor(beta_np, requires_grad=True)
    reference = torch.nn.functional.batch_norm(xx, None, None, gamma, beta, True, 0.0, 1e-3)
    (reference * torch.cat([upstream, upstream])).sum().backward()
    torch.testing.assert_close(x.grad, xx.grad[: shape[0]], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(variables["gamma"].grad, gamma.grad / 2, rtol=1e-9, atol=1e-12)

    # finite differences of the whole kernel, float64
    fresh = {k: v.detach().clone() for k, v in variables.items()}
    assert torch.autograd.gradcheck(
        lambda xi, g, b: kernel([xi], {**fresh, "gamma": g, "beta": b}, True),
        (torch.tensor(x_np[:3] if len(shape) == 2 else x_np[:2], requires_grad=True), torch.tensor(gamma_np, requires_grad=True), torch.tensor(beta_np, requires_grad=True)),
    )


def test_synchronized_batch_normalization_evaluates_without_communication():
    from tfn import layers
    from tfn.layers.base import TensorType

    op = layers.get("batch_normalization")

    def no_communication(t):
        raise AssertionError("evaluation must not all-reduce")

    kernel = op.build_synchronized(op.Params(), [TensorType((2, 3, 4, 4), "float32")], no_communication)
    moving = {"moving_mean": torch.tensor([1.0, 2.0, 3.0]), "moving_variance": torch.tensor([4.0, 1.0, 0.25])}
    x = torch.randn(2, 3, 4, 4)
    y = kernel([x], {**moving, "gamma": torch.ones(3), "beta": torch.zeros(3)}, False)
    expected = (x - moving["moving_mean"].reshape(1, 3, 1, 1)) / torch.sqrt(moving["moving_variance"].reshape(1, 3, 1, 1) + 1e-3)
    torch.testing.assert_close(y, expected)


# --- jobs of two processes --------------------------------------------------------------


def test_two_ranks_hold_the_same_weights_equal_to_one_process_with_the_same_global_batch(tmp_path, write_spec):
    from tfn.runners.train import train

    spec = write_spec(SYNC_BN_SPEC)
    (tmp_path / "dump").mkdir()
    job = _job(str(spec), "--out", "two", "--quiet", cwd=tmp_path, TFN_TEST_DUMP=str(tmp_path / "dump"))
    assert job.returncode == 0, job.stderr
    assert "Traceback" not in job.stderr and "Exception ignored" not in job.stderr, job.stderr  # a clean exit on both ranks
    rank0, rank1 = (load_file(tmp_path / "dump" / f"rank{r}.safetensors") for r in range(2))
    assert rank0.keys() == rank1.keys() and "bn/moving_variance" in rank0
    for name in rank0:  # replicas: bit for bit, moving statistics included
        assert torch.equal(rank0[name], rank1[name]), name
    written = _weights(tmp_path / "two", 6)
    assert all(torch.equal(written[name], rank0[name]) for name in rank0)
    assert not list((tmp_path / "two" / "checkpoints").glob("*rank*")), "only rank 0 writes checkpoints"

    one = train(load(spec), out=tmp_path / "one", quiet=True)
    single = _weights(one.run_dir, 6)
    # The same 6 steps over the same 64-sample batches; the sums are only split (32 + 32, then
    # all-reduced), so float32 rounding differs by ~1e-7 relative per step, and Adam keeps the
    # difference at that scale (its step is lr * m / sqrt(v)). 1e-5 is a hundred times that.
    for name in single:
        torch.testing.assert_close(rank0[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
    # the logged loss is the global batch's: the mean over the ranks
    two_losses = [r["loss"] for r in _records(tmp_path / "two") if r["split"] == "train"]
    one_losses = [r["loss"] for r in _records(one.run_dir) if r["split"] == "train"]
    assert len(two_losses) == 3
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-5)
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["processes"] == 2 and run["status"] == "completed"


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_failing_rank_ends_the_job_with_its_error_and_a_nonzero_status(tmp_path, write_spec):
    spec = write_spec(SYNC_BN_SPEC)
    job = _job(str(spec), "--out", "run", "--quiet", "--steps", "100000", cwd=tmp_path, TFN_TEST_FAIL_STEP="3")
    assert job.returncode == 1
    assert "injected failure in rank 1 at step 3" in job.stderr
    assert "error: rank 1 of 2 failed with exit status 1" in job.stderr
    assert "Traceback" not in job.stderr


def test_a_resumed_two_process_run_equals_an_uninterrupted_one(tmp_path, write_spec):
    spec = write_spec(DROPOUT_SPEC)
    whole = _tfn("train", str(spec), "--nproc", "2", "--out", "whole", "--quiet", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    first = _tfn("train", str(spec), "--nproc", "2", "--out", "part", "--quiet", "--steps", "3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    tensors, header = ckpt.load_resume_state(tmp_path / "part" / "checkpoints" / ckpt.state_name(ckpt.checkpoint_name(3)))
    # rank 1's RNG state is saved beside rank 0's, and differs from it (its own dropout masks)
    assert set(header["rng"]["ranks"]) == {"1"}
    assert not torch.equal(tensors["rng/torch"], tensors["rank1/rng/torch"])
    rest = _tfn("train", "--resume", "part", "--nproc", "2", "--quiet", "--steps", "8", cwd=tmp_path)
    assert rest.returncode == 0, rest.stderr
    resumed, uninterrupted = _weights(tmp_path / "part", 8), _weights(tmp_path / "whole", 8)
    for name in uninterrupted:
        assert torch.equal(resumed[name], uninterrupted[name]), name
    assert "warning" not in rest.stderr and "Traceback" not in rest.stderr and "Exception ignored" not in rest.stderr, rest.stderr
