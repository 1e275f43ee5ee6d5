"""Checkpoints: weights-only safetensors files keyed by graph variable names.

    checkpoints/ckpt-000120.safetensors   weights (+ BN moving statistics)
    checkpoints/checkpoint.json           {"latest": ..., "kept": [...]} (TF's `checkpoint` file)

The metadata names the format, step, epoch and graph hash. Nothing here
unpickles anything, and reading a header never imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tfn.runners.files import atomic_write, write_json
from tfn.specs.errors import UserError

CHECKPOINT_FORMAT = "tfn.checkpoint"
STATE_FILE = "checkpoint.json"
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class CheckpointError(UserError):
    pass


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    metadata: dict[str, str]
    variables: dict[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape)


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:06d}.safetensors"


def save(path: str | Path, tensors: dict, *, step: int, epoch: int, graph_hash: str) -> None:
    from safetensors.torch import save as to_bytes

    metadata = {"format": CHECKPOINT_FORMAT, "step": str(step), "epoch": str(epoch), "graph_hash": graph_hash}
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    atomic_write(path, to_bytes(cpu, metadata))


def resolve(target: str | Path) -> Path:
    """A checkpoint file, a checkpoints directory or a run directory (then its latest)."""
    path = Path(target)
    if not path.exists():
        raise CheckpointError(f"{path}: error: no such checkpoint file or directory")
    if path.is_file():
        return path
    directory = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    state = directory / STATE_FILE
    if not state.exists():
        raise CheckpointError(f"{path}: error: no checkpoint here (no {STATE_FILE} in {directory})")
    try:
        latest = json.loads(state.read_text())["latest"]
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{state}: error: unreadable checkpoint state file: {exc}") from None
    return directory / latest


def read_info(target: str | Path) -> CheckpointInfo:
    """Names, dtypes, shapes and metadata from the header alone (no torch, no tensor data)."""
    from safetensors import SafetensorError, safe_open

    path = resolve(target)
    _refuse_foreign(path)
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            variables = {}
            for name in f.keys():
                part = f.get_slice(name)
                variables[name] = (part.get_dtype(), tuple(part.get_shape()))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: error: not a readable safetensors checkpoint: {exc}") from None
    return CheckpointInfo(path, metadata, dict(sorted(variables.items())))


def _refuse_foreign(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_PICKLE_MAGIC):
        raise CheckpointError(
            f"{path}: error: this is a pickle (PyTorch .pt/.pth) file; tfn reads only safetensors, which cannot run code"
        )
    if len(head) < 8:
        raise CheckpointError(f"{path}: error: truncated: {len(head)} bytes, too short for a safetensors header")


def load(target: str | Path) -> tuple[dict, CheckpointInfo]:
    """All tensors (torch) and the header info."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    info = read_info(target)
    try:
        return load_file(info.path), info
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{info.path}: error: corrupt checkpoint: {exc}") from None


def restore(module, target: str | Path) -> CheckpointInfo:
    """Load a checkpoint into a GraphModule; refuses one made for another graph."""
    tensors, info = load(target)
    expected = {name: tuple(t.shape) for name, t in module.variables().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if expected != found or info.metadata.get("graph_hash") not in (None, module.graph.hash):
        lines = [f"{info.path}: error: the checkpoint does not fit graph {module.graph.name!r}"]
        lines += [f"  missing from checkpoint: {n} {list(s)}" for n, s in expected.items() if n not in found]
        lines += [f"  not in graph: {n} {list(s)}" for n, s in found.items() if n not in expected]
        lines += [f"  shape differs: {n} checkpoint {list(found[n])}, graph {list(s)}" for n, s in expected.items() if n in found and found[n] != s]
        if len(lines) == 1:
            lines.append(f"  graph hash differs: checkpoint {info.metadata.get('graph_hash', '?')[:12]}, graph {module.graph.hash[:12]}")
        raise CheckpointError("\n".join(lines))
    variables = module.variables()
    import torch

    with torch.no_grad():
        for name, value in tensors.items():
            variables[name].copy_(value)
    return info


class CheckpointManager:
    """Writes numbered checkpoints, keeps the newest `keep`, and names the latest in checkpoint.json."""

    def __init__(self, directory: str | Path, keep: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.kept: list[str] = []

    def save(self, tensors: dict, *, step: int, epoch: int, graph_hash: str) -> Path:
        name = checkpoint_name(step)
        save(self.directory / name, tensors, step=step, epoch=epoch, graph_hash=graph_hash)
        self.kept = [k for k in self.kept if k != name] + [name]
        dropped, self.kept = self.kept[: -self.keep], self.kept[-self.keep :]
        # the state file names only complete files; old ones go after it no longer names them
        write_json(self.directory / STATE_FILE, {"latest": name, "kept": self.kept})
        for old in dropped:
            (self.directory / old).unlink(missing_ok=True)
        return self.directory / name
