"""Which checkpoints stay (TF's Saver: max_to_keep, keep_checkpoint_every_n_hours, plus `best`),
what checkpoint.json names, and what the state file beside each checkpoint holds."""

from __future__ import annotations

import json

import pytest
import torch

from tfn.runners.checkpoint import CheckpointManager, init_from, load_resume_state, read_info, state_name
from tfn.runners.module import GraphModule
from tfn.specs import load


def save(manager: CheckpointManager, step: int) -> None:
    manager.save({"w": torch.full((2,), float(step))}, {"rng/torch": torch.get_rng_state()}, {"step": step}, step=step, epoch=1, graph_hash="h")


def files(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_keep_newest_n_like_max_to_keep(tmp_path):
    # T18: saves at 0, 10, 20 with max_to_keep=2 leave 10 and 20, oldest first
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (0, 10, 20):
        save(manager, step)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["latest"] == "ckpt-000020.safetensors"
    assert state["kept"] == ["ckpt-000010.safetensors", "ckpt-000020.safetensors"]
    assert files(tmp_path) == [
        "checkpoint.json",
        "ckpt-000010.safetensors",
        "ckpt-000010.state.safetensors",
        "ckpt-000020.safetensors",
        "ckpt-000020.state.safetensors",
    ]


def test_keep_every_steps_keeps_multiples_forever(tmp_path):
    manager = CheckpointManager(tmp_path, keep=1, keep_every_steps=20)
    for step in (10, 20, 30, 40, 50):
        save(manager, step)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["kept"] == ["ckpt-000050.safetensors"]
    assert state["kept_forever"] == ["ckpt-000020.safetensors", "ckpt-000040.safetensors"]
    assert not (tmp_path / "ckpt-000030.safetensors").exists()


def test_keep_every_hours_follows_tf_threshold(tmp_path):
    now = [1000.0]
    manager = CheckpointManager(tmp_path, keep=1, keep_every_hours=1.0, clock=lambda: now[0])
    # TF: the first checkpoint saved at or after start + 1 h survives, then the threshold moves 1 h on
    for step, t in ((1, 1000.0), (2, 1000.0 + 1800), (3, 1000.0 + 3700), (4, 1000.0 + 3800), (5, 1000.0 + 7300), (6, 1000.0 + 7400)):
        now[0] = t
        save(manager, step)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["kept_forever"] == ["ckpt-000003.safetensors", "ckpt-000005.safetensors"]
    assert state["kept"] == ["ckpt-000006.safetensors"]


def test_best_checkpoint_stays_while_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep=1)
    save(manager, 1)
    assert manager.consider_best("accuracy", 0.5, "max")
    save(manager, 2)
    assert not manager.consider_best("accuracy", 0.4, "max")
    assert (tmp_path / "ckpt-000001.safetensors").exists()  # dropped from `kept` but still the best
    save(manager, 3)
    assert manager.consider_best("accuracy", 0.9, "max")
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["best"] == {"name": "ckpt-000003.safetensors", "metric": "accuracy", "value": 0.9}
    assert files(tmp_path) == ["checkpoint.json", "ckpt-000003.safetensors", "ckpt-000003.state.safetensors"]


def test_manager_reloads_its_state_and_clears_stray_temporaries(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    save(manager, 1)
    save(manager, 2)
    (tmp_path / ".ckpt-000003.safetensors.tmp-4242").write_bytes(b"half a file")
    again = CheckpointManager(tmp_path, keep=2)
    assert again.kept == ["ckpt-000001.safetensors", "ckpt-000002.safetensors"]
    save(again, 3)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["kept"] == ["ckpt-000002.safetensors", "ckpt-000003.safetensors"]
    assert not list(tmp_path.glob(".*tmp*"))


def test_weights_metadata_and_state_file(tmp_path):
    manager = CheckpointManager(tmp_path, keep=1)
    save(manager, 7)
    info = read_info(tmp_path)
    assert info.metadata == {"format": "tfn.checkpoint", "step": "7", "epoch": "1", "graph_hash": "h"}
    assert info.variables == {"w": ("F32", (2,))}
    tensors, header = load_resume_state(tmp_path / state_name("ckpt-000007.safetensors"))
    assert header == {"step": 7}
    assert torch.equal(tensors["rng/torch"], torch.get_rng_state())


def test_state_file_is_not_pickle(tmp_path):
    manager = CheckpointManager(tmp_path, keep=1)
    save(manager, 1)
    for path in tmp_path.glob("*.safetensors"):
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK"


# --- --init-from ---------------------------------------------------------------------

SOURCE = """
version: 1
name: source
model:
  inputs: {image: {shape: [1, 8, 8]}}
  layers:
    - {name: conv, op: conv2d, filters: 4, kernel_size: 3, padding: SAME}
    - {op: flatten}
    - {name: hidden, op: dense, units: 16}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits}
"""


def test_init_from_lists_missing_unexpected_and_wrong_shape(write_spec, tmp_path):
    source = GraphModule(load(write_spec(SOURCE, "source.yaml")).graph)
    manager = CheckpointManager(tmp_path / "ckpt", keep=1)
    manager.save(source.variables(), {}, {}, step=1, epoch=1, graph_hash="other")
    target_text = SOURCE.replace("name: source", "name: target").replace("units: 16", "units: 32").replace(
        "- {name: logits", "- {name: extra, op: dense, units: 8}\n    - {name: logits"
    )
    target = GraphModule(load(write_spec(target_text, "target.yaml")).graph)
    report = init_from(target, tmp_path / "ckpt")
    assert sorted(report.loaded) == ["conv/bias", "conv/kernel", "logits/bias"]
    assert sorted(report.missing) == ["extra/bias", "extra/kernel"]
    assert report.unexpected == []
    assert sorted(n for n, _, _ in report.wrong_shape) == ["hidden/bias", "hidden/kernel", "logits/kernel"]
    assert torch.equal(target.variables()["conv/kernel"], source.variables()["conv/kernel"])
    text = report.describe()
    assert "missing from checkpoint (kept as initialised): extra/kernel" in text
    assert "shape differs (kept as initialised): hidden/kernel checkpoint [16, 256], graph [32, 256]" in text


def test_init_from_strict_refuses_and_loads_nothing(write_spec, tmp_path):
    source = GraphModule(load(write_spec(SOURCE, "source.yaml")).graph)
    CheckpointManager(tmp_path / "ckpt", keep=1).save(source.variables(), {}, {}, step=1, epoch=1, graph_hash="x")
    target = GraphModule(load(write_spec(SOURCE.replace("units: 16", "units: 17"), "target.yaml")).graph)
    before = target.variables()["conv/kernel"].clone()
    from tfn.runners.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="error: --strict") as exc:
        init_from(target, tmp_path / "ckpt", strict=True)
    assert "hidden/kernel checkpoint [16, 256], graph [17, 256]" in str(exc.value)
    assert torch.equal(target.variables()["conv/kernel"], before)


def test_final_names_the_run_model_until_training_goes_on(tmp_path):
    """restore_best ends a run on its best checkpoint: a run directory then stands for it; a new save clears it."""
    from tfn.runners.checkpoint import resolve

    manager = CheckpointManager(tmp_path, keep=1)
    save(manager, 10)
    manager.consider_best("accuracy", 0.9, "max")
    save(manager, 20)  # keep=1, but the best stays
    manager.finish("ckpt-000010.safetensors")
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["final"] == "ckpt-000010.safetensors" and state["latest"] == "ckpt-000020.safetensors"
    assert resolve(tmp_path) == tmp_path / "ckpt-000010.safetensors"
    assert CheckpointManager(tmp_path, keep=1).final == "ckpt-000010.safetensors"  # read back on resume
    save(manager, 30)  # a resumed run trains on: its model is the latest again
    assert json.loads((tmp_path / "checkpoint.json").read_text())["final"] is None
    assert resolve(tmp_path) == tmp_path / "ckpt-000030.safetensors"
