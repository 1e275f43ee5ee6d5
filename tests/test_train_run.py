"""`tfn train` end to end on small specs: the run directory, TensorBoard tags read back with
TensorBoard's own reader, validation cadence, early stopping, plateau, `best`, init-from, `tfn eval`."""

from __future__ import annotations

import json
import textwrap

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

RUN_SPEC = """
version: 1
name: small
model:
  inputs: {image: {shape: [1, 8, 8]}}
  layers:
    - {op: flatten}
    - {name: hidden, op: dense, units: 32}
    - {op: relu}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
optimizer:
  type: momentum
  learning_rate: 0.05
  clip_global_norm: 5.0
  learning_rate_multipliers: {"logits/*": 2.0}
  schedule: {type: cosine_decay, decay_steps: 60, warmup_steps: 5}
data: {source: digits, batch_size: 64}
train:
  epochs: 3
  log_every: 5
  metrics: [accuracy, top_k_accuracy, per_class_accuracy, confusion_matrix, f1]
  top_k: 3
  checkpoints: {keep: 2, best: accuracy}
  summaries: {histogram_every: 10, images: 9}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tfn import specs
    from tfn.runners.train import train

    root = tmp_path_factory.mktemp("train_run")
    spec = root / "small.yaml"
    spec.write_text(textwrap.dedent(RUN_SPEC).lstrip())
    result = train(specs.load(spec), runs_root=root / "runs", quiet=True)
    return result


def records(run_dir, split):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if json.loads(line)["split"] == split]


def test_numbered_run_directory_and_learning(run):
    assert run.run_dir.parent.name == "small" and run.run_dir.name == "1"
    assert run.steps == 3 * 19
    train_losses = [r["loss"] for r in records(run.run_dir, "train")]
    assert train_losses[-1] < 0.5 * train_losses[0]
    assert run.metrics["test"]["accuracy"] > 0.8  # chance is 0.1
    assert run.metrics["test"]["top_3_accuracy"] >= run.metrics["test"]["accuracy"]


def test_validation_each_epoch_and_best_checkpoint(run):
    validations = records(run.run_dir, "validation")
    assert [r["step"] for r in validations] == [19, 38, 57]
    assert [r["epoch"] for r in validations] == [1, 2, 3]
    assert len(validations[-1]["confusion_matrix"]) == 10 and len(validations[-1]["per_class_accuracy"]) == 10
    state = json.loads((run.run_dir / "checkpoints" / "checkpoint.json").read_text())
    best = max(validations, key=lambda r: r["accuracy"])
    assert state["best"] == {"name": f"ckpt-{best['step']:06d}.safetensors", "metric": "accuracy", "value": best["accuracy"]}
    assert state["kept"] == ["ckpt-000038.safetensors", "ckpt-000057.safetensors"]


def test_learning_rate_follows_warmup_and_schedule(run):
    import math

    logged = {r["step"]: r["learning_rate"] for r in records(run.run_dir, "train")}
    # the rate logged at step k is the one the next update uses: TF's formula at global step k
    assert logged[5] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 5 / 60)))
    assert logged[30] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 30 / 60)))


def test_tensorboard_tags(run):
    train = EventAccumulator(str(run.run_dir / "train"), size_guidance={"histograms": 0, "images": 0, "scalars": 0})
    train.Reload()
    tags = train.Tags()
    assert {"loss", "optimizer/learning_rate", "samples_per_second", "accuracy"} <= set(tags["scalars"])
    assert {"weights/hidden/kernel", "gradients/hidden/kernel", "weights/logits/bias", "gradients/logits/bias"} <= set(tags["histograms"])
    assert [e.step for e in train.Histograms("weights/hidden/kernel")] == [10, 20, 30, 40, 50]
    assert "inputs/image" in tags["images"]
    image = train.Images("inputs/image")[0]
    assert (image.width, image.height) == (3 * 8 + 4, 3 * 8 + 4)  # 3x3 grid of 8x8 images, 1-pixel borders
    assert train.Graph() is not None
    assert not any(tag.startswith("hparams/") for tag in tags["scalars"])  # HParams reads validation/ and test/ instead
    session = EventAccumulator(str(run.run_dir), size_guidance={"tensors": 0})
    session.Reload()
    assert set(session.PluginTagToContent("hparams")) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}

    validation = EventAccumulator(str(run.run_dir / "validation"), size_guidance={"images": 0})
    validation.Reload()
    vtags = validation.Tags()
    assert {"loss", "accuracy", "top_3_accuracy", "f1", "per_class_accuracy/0", "per_class_accuracy/9"} <= set(vtags["scalars"])
    assert "confusion_matrix" in vtags["images"]
    assert [e.step for e in validation.Images("confusion_matrix")] == [19, 38, 57]


def test_run_json(run):
    data = json.loads((run.run_dir / "run.json").read_text())
    assert data["status"] == "completed" and data["steps"] == 57 and data["stopped"] is None
    assert data["metrics"]["test"]["accuracy"] == run.metrics["test"]["accuracy"]
    assert data["seed"] == 0 and data["threads"] >= 1


def test_eval_prints_the_checkpoint_metrics(run, tfn_cli):
    code, out, err = tfn_cli("eval", str(run.run_dir), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["split"] == "test" and result["checkpoint"].endswith("ckpt-000057.safetensors")
    # the final test evaluation of the run was on the same weights
    assert result["metrics"]["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"], abs=1e-12)
    code, out, err = tfn_cli("eval", str(run.run_dir), "--checkpoint", "best", "--split", "validation")
    assert code == 0, err
    assert "on validation:" in out and "accuracy" in out and "rows: true class" in out


def test_eval_of_a_spec_needs_a_checkpoint(tfn_cli, minimal_spec):
    code, _, err = tfn_cli("eval", str(minimal_spec))
    assert code == 2 and "give --checkpoint CKPT" in err


def test_init_from_reports_names_and_strict_exits_2(run, write_spec, tmp_path, tfn_cli):
    other = write_spec(
        RUN_SPEC.replace("name: small", "name: other").replace(
            "loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits",
            "loss: {op: sparse_softmax_cross_entropy_with_logits, logits: head",
        ).replace("    - {name: logits, op: dense, units: 10}", "    - {name: logits, op: dense, units: 16}\n    - {name: head, op: dense, units: 10}"),
        "other.yaml",
    )
    code, out, err = tfn_cli("train", str(other), "--init-from", str(run.run_dir), "--strict", "--out", str(tmp_path / "a"), "--steps", "1")
    assert code == 2
    assert "error: --strict" in err and "missing from checkpoint (kept as initialised): head/kernel" in err
    assert "shape differs (kept as initialised): logits/kernel checkpoint [10, 32], graph [16, 32]" in err
    code, out, err = tfn_cli("train", str(other), "--init-from", str(run.run_dir), "--out", str(tmp_path / "b"), "--steps", "1", "--quiet")
    assert code == 0, err
    assert "initialised 2 of 6 variables" in err  # hidden/kernel and hidden/bias; logits/* differ in shape, head/* are new


def test_early_stopping_and_plateau(write_spec, tmp_path):
    from tfn import specs
    from tfn.runners.train import train

    # a learning rate of ~0 never improves the validation loss after the first evaluation
    text = RUN_SPEC.replace("learning_rate: 0.05", "learning_rate: 1.0e-12").replace("epochs: 3", "epochs: 20") + textwrap.indent(
        "early_stopping: {monitor: loss, patience: 2, min_delta: 0.001}\nreduce_on_plateau: {monitor: accuracy, patience: 1, factor: 0.5}\nvalidate_every: 4\n",
        "  ",
    )
    result = train(specs.load(write_spec(text)), out=tmp_path / "run", quiet=True)
    assert result.stopped == "early_stopping"
    assert result.steps == 12  # validations at 4 (best), 8, 12: two without improvement
    lrs = {r["step"]: r["learning_rate"] for r in records(tmp_path / "run", "train")}
    assert lrs[10] < lrs[5]  # halved after the validation at step 8 (accuracy flat)
    assert "test" in result.metrics


def test_out_directory_must_be_new_or_empty(tmp_path, tfn_cli, minimal_spec):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    code, _, err = tfn_cli("train", str(minimal_spec), "--out", str(tmp_path / "busy"))
    assert code == 2 and "exists and is not empty" in err


def test_monitor_of_unknown_metric_is_a_user_error(write_spec, tmp_path, tfn_cli):
    spec = write_spec(RUN_SPEC.replace("best: accuracy", "best: acuracy"))
    code, _, err = tfn_cli("train", str(spec), "--out", str(tmp_path / "r"))
    assert code == 2
    assert "train.checkpoints.best: error: 'acuracy' is not a validation metric" in err and "did you mean 'accuracy'" in err


def test_seed_option_overrides_spec(write_spec, tmp_path, tfn_cli):
    code, _, err = tfn_cli("train", str(write_spec(RUN_SPEC)), "--seed", "3", "--steps", "2", "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "run.json").read_text())["seed"] == 3


TWO_LOSSES = """
version: 1
name: two_heads
model:
  inputs: {image: {shape: [1, 8, 8]}}
  layers:
    - {op: flatten}
    - {name: hidden, op: dense, units: 16, kernel_regularizer: 0.01}
    - {op: relu}
    - {name: logits, op: dense, units: 10}
    - {name: aux, op: dense, units: 10, inputs: [hidden]}
loss:
  - {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
  - {op: sparse_softmax_cross_entropy_with_logits, logits: aux, labels: label, weight: 0.3}
data: {source: digits}
"""


def test_several_weighted_losses_and_l2_are_summed(write_spec):
    import numpy as np
    import torch

    from tfn import specs
    from tfn.runners.module import GraphModule
    from tfn.runners.train import Loss

    graph = specs.load(write_spec(TWO_LOSSES)).graph
    assert [(l.node, l.weight) for l in graph.losses] == [("loss", 1.0), ("loss_1", 0.3)]
    model = GraphModule(graph, torch.Generator().manual_seed(0)).double()
    x = torch.from_numpy(np.random.default_rng(0).random((5, 1, 8, 8)))
    y = torch.tensor([0, 3, 9, 2, 2])
    total, out = Loss(model)({"image": x, "label": y})

    def xent(logits):  # float64 NumPy cross-entropy per example
        z = logits - logits.max(1, keepdims=True)
        return np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y.numpy()]

    hidden_kernel = model.variables()["hidden/kernel"].detach().numpy()
    expected = xent(out["logits"].detach().numpy()).mean() + 0.3 * xent(out["aux"].detach().numpy()).mean() + 0.01 * (hidden_kernel**2).sum() / 2
    assert float(total.detach()) == pytest.approx(expected, rel=1e-12)


def test_duplicate_loss_names_are_a_positioned_error(write_spec, tfn_cli):
    spec = write_spec(TWO_LOSSES.replace("labels: label, weight: 0.3}", "labels: label, weight: 0.3, name: loss}"))
    code, _, err = tfn_cli("check", str(spec))
    assert code == 2
    line = next(i for i, l in enumerate(spec.read_text().splitlines(), 1) if "name: loss}" in l)
    assert f"{spec}:{line}:" in err and "loss[1].name: the loss node is named 'loss', which a node already uses; set loss[1].name" in err


def test_resolved_spec_with_two_losses_round_trips(write_spec, tmp_path):
    from tfn import specs
    from tfn.runners.train import train

    loaded = specs.load(write_spec(TWO_LOSSES))
    result = train(loaded, out=tmp_path / "run", steps=2, quiet=True)
    assert specs.load(result.run_dir / "spec.yaml").graph == loaded.graph


def test_progress_lines_in_logs_and_none_with_quiet(write_spec, tmp_path, tfn_cli):
    spec = str(write_spec(TWO_LOSSES))
    code, out, err = tfn_cli("train", spec, "--steps", "2", "--set", "train.validate_every=1", "--out", str(tmp_path / "a"))
    assert code == 0, err
    # not a terminal: no bar, one line per validation
    assert [line.split(":")[0] for line in err.splitlines()] == ["epoch 1 step 1", "epoch 1 step 2"]
    assert "validation loss" in err and "validation accuracy" in err
    code, out, err = tfn_cli("train", spec, "--steps", "2", "--set", "train.validate_every=1", "--out", str(tmp_path / "b"), "--quiet")
    assert code == 0 and err == ""
    assert out.startswith(f"{tmp_path / 'b'}: 2 steps; test loss ")


def test_metrics_per_loss(write_spec, tmp_path, tfn_cli):
    from tfn import specs
    from tfn.runners.train import train

    text = TWO_LOSSES.replace("weight: 0.3}", "weight: 0.3, metrics: [accuracy, top_k_accuracy]}") + "train: {metrics: [accuracy, f1], top_k: 2, validate_every: 2, checkpoints: {best: loss_1/top_2_accuracy}}\n"
    result = train(specs.load(write_spec(text)), out=tmp_path / "run", steps=2, quiet=True)
    assert set(result.metrics["validation"]) == {"loss", "accuracy", "f1", "loss_1/accuracy", "loss_1/top_2_accuracy"}
    assert json.loads((tmp_path / "run" / "checkpoints" / "checkpoint.json").read_text())["best"]["metric"] == "loss_1/top_2_accuracy"
    validation = EventAccumulator(str(tmp_path / "run" / "validation"))
    validation.Reload()
    assert {"loss_1/accuracy", "loss_1/top_2_accuracy", "f1"} <= set(validation.Tags()["scalars"])
    bad = write_spec(TWO_LOSSES.replace("weight: 0.3}", "weight: 0.3, metrics: [mean_squared_error]}"), "bad.yaml")
    code, _, err = tfn_cli("train", str(bad), "--out", str(tmp_path / "bad"))
    assert code == 2 and "loss[1].metrics: error: mean_squared_error cannot be computed for class-index labels" in err


@pytest.mark.parametrize("command", ["train", "eval"])
def test_help_does_not_import_torch(command):
    import subprocess
    import sys

    code = f"import sys; from tfn.cli.main import main\ntry:\n main([{command!r}, '--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules, file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip().endswith("False")
    assert "Usage: tfn " + command in result.stdout


def test_cuda_device_on_a_machine_without_one_is_a_user_error(tmp_path, tfn_cli, minimal_spec):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = tfn_cli("train", str(minimal_spec), "--device", "gpu", "--out", str(tmp_path / "r"))
    assert code == 2 and "--device gpu: error: expected auto, cpu, cuda or cuda:N" in err
    code, _, err = tfn_cli("train", str(minimal_spec), "--device", "cuda:0", "--out", str(tmp_path / "r"))
    assert code == 2 and "--device cuda:0: error: CUDA is not available on this machine; use --device cpu" in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_divergence_names_the_first_non_finite_step_and_leaves_only_earlier_checkpoints(write_spec, tfn_cli, tmp_path):
    """The guard named the step at which it noticed (the next log or checkpoint), not the step the loss went NaN.

    Sample 2 holds a NaN, so step 3 (batch 1, no shuffle) is the first with a
    NaN loss; the loss is logged every 10 steps and a checkpoint is due every
    2: ckpt 2 stays the latest, ckpt 4 (NaN weights) is never written.
    """
    import numpy as np

    x = np.random.default_rng(0).normal(size=(12, 2)).astype(np.float32)
    x[2, 0] = np.nan
    np.savez(tmp_path / "rows.npz", x=x, y=np.zeros(12, np.int64))
    spec = write_spec(
        f"""
        version: 1
        name: diverges
        model:
          inputs: {{x: {{shape: [2]}}}}
          layers: [{{name: logits, op: dense, units: 2}}]
        loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
        data: {{source: npz, path: {tmp_path / "rows.npz"}, fields: {{x: x, label: y}}, batch_size: 1, shuffle: false, split: {{validation: 0, test: 0}}}}
        train: {{steps: 10, log_every: 10, checkpoints: {{every_steps: 2}}}}
        """
    )
    run = tmp_path / "run"
    code, _, err = tfn_cli("train", str(spec), "--out", str(run), "--quiet")
    assert code == 1, err
    assert "error: the loss became nan at step 3 (epoch 1); the last good checkpoint is" in err
    state = json.loads((run / "checkpoints" / "checkpoint.json").read_text())
    assert state["latest"] == "ckpt-000002.safetensors" and state["kept"] == ["ckpt-000002.safetensors"]
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
