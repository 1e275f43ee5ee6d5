"""train.precision: bf16 autocast on CPU keeps the digits example's curves close to fp32's; weights stay float32."""

from __future__ import annotations

import json

import pytest
import torch

from tfn.runners import checkpoint as ckpt
from tfn.runners.module import GraphModule
from tfn.runners.precision import Precision
from tfn.runners.train import Loss, train
from tfn.specs import load

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _curves(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return (
        [r["loss"] for r in records if r["split"] == "train"],
        [r["loss"] for r in records if r["split"] == "validation"],
    )


def test_bf16_autocasts_the_forward_pass_and_keeps_float32_variables_and_gradients():
    loaded = load("digits_cnn")
    model = GraphModule(loaded.graph, torch.Generator().manual_seed(0))
    model.train()
    loss_fn = Loss(model)
    precision = Precision("bf16", torch.device("cpu"))
    feeds = {"image": torch.randn(8, 1, 8, 8), "label": torch.arange(8)}
    with precision.autocast():
        loss, out = loss_fn(feeds)
    assert out["logits"].dtype == torch.bfloat16  # the dense layers ran in bfloat16
    assert loss.dtype == torch.float32  # cross-entropy is on autocast's float32 list
    precision.backward(loss)
    for name, variable in model.variables().items():
        assert variable.dtype == torch.float32, name
    for name, param in model.trainable_variables().items():
        assert param.grad is not None and param.grad.dtype == torch.float32, name


def test_bf16_training_of_the_digits_example_stays_close_to_fp32(tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        settings = [f"train.precision={precision}", "train.epochs=2", "train.log_every=10"]
        runs[precision] = train(load("digits_cnn", settings), out=tmp_path / precision, quiet=True)
    (train32, valid32), (train16, valid16) = _curves(runs["fp32"].run_dir), _curves(runs["bf16"].run_dir)
    assert len(train16) == len(train32) == 8 and len(valid16) == len(valid32) == 2
    # bfloat16 keeps 8 significant bits (rounding 2**-9 = 0.2% per operand); products accumulate in
    # float32, but the two trajectories drift apart step by step (dropout masks are drawn in the
    # activations' dtype too). Measured: at most 0.05 apart per logged batch loss (batches of 32),
    # 1.5% on the validation loss. The bounds below are about twice that: a wrong cast (fp16-like
    # overflow, a lost gradient, a variable kept in bfloat16) moves the curves far more.
    for step, (a, b) in enumerate(zip(train32, train16)):
        assert abs(a - b) <= 0.1 + 0.1 * a, (step, a, b)
    for a, b in zip(valid32, valid16):
        assert abs(a - b) <= 0.03 * a, (a, b)
    assert train16[-1] < train16[0] / 3  # and it learns
    assert abs(runs["fp32"].metrics["test"]["accuracy"] - runs["bf16"].metrics["test"]["accuracy"]) <= 0.02

    # checkpoints hold the float32 master weights
    info = ckpt.read_info(runs["bf16"].run_dir)
    assert info.variables and {dtype for dtype, _ in info.variables.values()} == {"F32"}
    assert "precision: bf16" in (runs["bf16"].run_dir / "spec.yaml").read_text()  # the resolved spec records it


def test_fp16_on_cpu_is_refused_with_the_alternative(tfn_cli, tmp_path):
    code, out, err = tfn_cli("train", "digits_cnn", "--device", "cpu", "--set", "train.precision=fp16", "--out", str(tmp_path / "run"), "--quiet")
    assert code == 2
    assert "train.precision: error: fp16 needs a CUDA device (this run is on cpu); use bf16 on CPU" in err
    assert "Traceback" not in err


def test_an_unknown_precision_is_a_positioned_spec_error(tfn_cli, write_spec, minimal_spec):
    text = minimal_spec.read_text().replace("train: {epochs: 1}", "train: {epochs: 1, precision: bf32}")
    code, out, err = tfn_cli("check", str(write_spec(text, "bad.yaml")))
    assert code == 2
    assert "train.precision" in err and "fp32" in err and "bf16" in err


def test_without_a_scaler_the_step_is_the_optimizers_and_no_state_is_saved():
    precision = Precision("bf16", torch.device("cpu"))
    weight = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    precision.backward((weight * 2).sum())
    precision.unscale(optimizer)
    precision.step(optimizer)
    assert weight.item() == pytest.approx(0.0)  # 1 - 0.5 * 2
    assert precision.state_dict() == {}


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_mixed_precision_on_cuda_trains_with_float32_checkpoints(tmp_path, name):
    if name == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    result = train(load("digits_cnn", [f"train.precision={name}", "train.epochs=2"]), out=tmp_path / name, device="cuda", quiet=True)
    assert result.metrics["test"]["accuracy"] > 0.8
    info = ckpt.read_info(result.run_dir)
    assert {dtype for dtype, _ in info.variables.values()} == {"F32"}
    _, header = ckpt.load_resume_state(info.path.with_name(ckpt.state_name(info.path.name)))
    if name == "fp16":  # the loss scale resumes where it was
        assert header["loss_scale"]["scale"] > 0
    else:
        assert header["loss_scale"] == {}


@pytest.mark.gpu
@needs_cuda
def test_fp16_loss_scaling_skips_a_step_whose_gradients_overflow():
    precision = Precision("fp16", torch.device("cuda"))
    weight = torch.nn.Parameter(torch.tensor([1.0], device="cuda"))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    scale = precision.state_dict()["scale"]
    precision.backward((weight * float("inf")).sum())
    precision.unscale(optimizer)
    precision.step(optimizer)
    assert weight.item() == 1.0  # skipped
    assert precision.state_dict()["scale"] < scale  # and the scale backs off
