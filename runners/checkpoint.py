"""Checkpoints: weights-only safetensors files keyed by graph variable names.

    checkpoints/ckpt-000120.safetensors         weights (+ BN moving statistics)
    checkpoints/ckpt-000120.state.safetensors   what resuming needs: optimizer slots,
                                                RNG states (tensors) and a JSON header with
                                                step, epoch, data position, schedule, ...
    checkpoints/checkpoint.json                 {"latest", "kept", "kept_forever", "best", "final"}
                                                (TF's `checkpoint` file)

"final" names the run's model when it is not the latest checkpoint: a run
with `restore_best` ends on the weights of its best validation checkpoint.
A run directory stands for that checkpoint (`resolve`); resuming continues
from the latest.

The metadata names the format, step, epoch and graph hash. Nothing here
unpickles anything, and reading a header never imports torch.

Write order makes a kill at any moment harmless: the weights, then the state
file (each atomic), then checkpoint.json, which only ever names complete
pairs; files it no longer names are deleted last.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from tfn.runners.files import atomic_write, write_json
from tfn.specs.errors import UserError

CHECKPOINT_FORMAT = "tfn.checkpoint"
STATE_FILE = "checkpoint.json"


class CheckpointError(UserError):
    pass


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    metadata: dict[str, str]
    variables: dict[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape)


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:06d}.safetensors"


def state_name(weights_name: str) -> str:
    """The resume-state file beside a weights file."""
    return weights_name.removesuffix(".safetensors") + ".state.safetensors"


def save(path: str | Path, tensors: dict, *, step: int, epoch: int, graph_hash: str) -> None:
    from safetensors.torch import save as to_bytes

    metadata = {"format": CHECKPOINT_FORMAT, "step": str(step), "epoch": str(epoch), "graph_hash": graph_hash}
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    atomic_write(path, to_bytes(cpu, metadata))


def resolve(target: str | Path) -> Path:
    """A checkpoint file, a checkpoints directory or a run directory (then its final weights, else its latest)."""
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
        named = json.loads(state.read_text())
        chosen = named.get("final") or named["latest"]
    except (ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{state}: error: unreadable checkpoint state file: {exc}") from None
    return directory / chosen


def read_info(target: str | Path) -> CheckpointInfo:
    """Names, dtypes, shapes and metadata from the header alone (no torch, no tensor data)."""
    from safetensors import SafetensorError, safe_open

    path = resolve(target)
    check_safetensors(path)
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


# first bytes of files people mistake for checkpoints -> what they are
_FOREIGN_MAGIC = {
    b"PK\x03\x04": "a zip archive (PyTorch's torch.save format, a pickle inside)",
    b"\x80": "a pickle (an old PyTorch .pt/.pth file)",
    b"\x89HDF": "an HDF5 file (a Keras .h5 model?)",
    b"\x93NUMPY": "a NumPy .npy array",
    b"\x1f\x8b": "a gzip file",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"\x08\x01\x12": "a protobuf (a TensorFlow .pb/.index file?)",
}
# safetensors' own limit: a larger header is refused
_MAX_HEADER = 100_000_000


def check_safetensors(path: Path) -> None:
    """CheckpointError unless `path` starts like a safetensors file whose header fits inside it.

    Reads at most 9 bytes: the header's length and its first character. A file
    that is not safetensors is named for what it looks like (pickle, HDF5, ...).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    length = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else None
    if length is not None and length <= _MAX_HEADER and head[8:9] == b"{":
        if 8 + length > size:
            raise CheckpointError(f"{path}: error: truncated: the header announces {length} bytes, the file holds {size - 8} after the length")
        return
    # only now the first bytes may be another format's magic: a header length can begin with the same bytes
    for magic, what in _FOREIGN_MAGIC.items():
        if head.startswith(magic):
            hint = "; tfn reads only safetensors, which cannot run code" if "pickle" in what else ""
            raise CheckpointError(f"{path}: error: this is {what}, not a safetensors checkpoint{hint}")
    if size < 9:
        raise CheckpointError(f"{path}: error: truncated: {size} bytes, too short for a safetensors header")
    raise CheckpointError(f"{path}: error: not a safetensors checkpoint (it does not start with a header length and a JSON header)")



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


def read_state_file(directory: str | Path) -> dict:
    """checkpoint.json of a checkpoints directory."""
    state = Path(directory) / STATE_FILE
    try:
        return json.loads(state.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: error: no checkpoint here (no {STATE_FILE})") from None
    except ValueError as exc:
        raise CheckpointError(f"{state}: error: unreadable checkpoint state file: {exc}") from None


def save_resume_state(path: str | Path, tensors: dict, header: dict) -> None:
    """Tensors (optimizer slots, RNG states) plus a JSON header, in one safetensors file."""
    from safetensors.torch import save as to_bytes

    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    metadata = {"format": CHECKPOINT_FORMAT + ".state", "state": json.dumps(header, sort_keys=True)}
    atomic_write(path, to_bytes(cpu, metadata))


def load_resume_state(path: str | Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(path, framework="pt") as f:
            header = json.loads((f.metadata() or {})["state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: error: the checkpoint's resume state is missing; resume needs it (--init-from takes weights alone)") from None
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: error: unreadable resume state: {exc}") from None
    return tensors, header


@dataclass
class _Best:
    name: str
    metric: str
    value: float


class CheckpointManager:
    """Writes numbered checkpoints and decides which stay (TF's Saver policy).

    - the newest `keep` (max_to_keep);
    - one per `keep_every_steps` steps or `keep_every_hours` hours, forever
      (keep_checkpoint_every_n_hours: a checkpoint about to be dropped stays when
      it is the first past the next threshold);
    - the best by a validation metric (`best`), while it is the best.

    checkpoint.json names the latest, the kept ones (oldest first), the ones
    kept forever, the best, and the final weights when a finished run chose
    others than the latest (`finish`).
    """

    def __init__(
        self,
        directory: str | Path,
        keep: int,
        *,
        keep_every_steps: int | None = None,
        keep_every_hours: float | None = None,
        clock=time.time,
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.keep_every_steps = keep_every_steps
        self.keep_every_seconds = keep_every_hours * 3600 if keep_every_hours else None
        self.clock = clock
        self.kept: list[str] = []
        self.kept_forever: list[str] = []
        self.best: _Best | None = None
        self.final: str | None = None
        self.saved_at: dict[str, float] = {}
        self.next_forever_time = clock() + self.keep_every_seconds if self.keep_every_seconds else None
        if (self.directory / STATE_FILE).exists():
            self._reload()
        for stray in self.directory.glob(".*.tmp-*"):  # left by a process killed mid-write
            stray.unlink(missing_ok=True)

    def _reload(self) -> None:
        state = read_state_file(self.directory)
        self.kept = list(state.get("kept", []))
        self.kept_forever = list(state.get("kept_forever", []))
        self.saved_at = {k: float(v) for k, v in state.get("saved_at", {}).items()}
        if state.get("best"):
            self.best = _Best(**state["best"])
        self.final = state.get("final")
        if state.get("next_forever_time") is not None:
            self.next_forever_time = float(state["next_forever_time"])

    @property
    def latest(self) -> Path | None:
        return self.directory / self.kept[-1] if self.kept else None

    def save(self, tensors: dict, resume_tensors: dict, resume_header: dict, *, step: int, epoch: int, graph_hash: str) -> Path:
        name = checkpoint_name(step)
        save(self.directory / name, tensors, step=step, epoch=epoch, graph_hash=graph_hash)
        save_resume_state(self.directory / state_name(name), resume_tensors, resume_header)
        self.saved_at[name] = self.clock()
        self.kept = [k for k in self.kept if k != name] + [name]
        self.final = None  # the run goes on: its model is again the latest until it finishes
        dropped = []
        while len(self.kept) > self.keep:
            old = self.kept.pop(0)
            if self._keep_forever(old):
                self.kept_forever.append(old)
            else:
                dropped.append(old)
        self._commit(dropped)
        return self.directory / name

    def _keep_forever(self, name: str) -> bool:
        if self.keep_every_steps and int(name.split("-")[1].split(".")[0]) % self.keep_every_steps == 0:
            return True
        if self.next_forever_time is not None and self.saved_at.get(name, 0.0) >= self.next_forever_time:
            self.next_forever_time += self.keep_every_seconds
            return True
        return False

    def consider_best(self, metric: str, value: float, mode: str) -> bool:
        """Name the latest checkpoint the best when `value` beats the best so far."""
        if self.latest is None or value != value:  # NaN never wins
            return False
        if self.best is not None and self.best.metric == metric:
            improved = value < self.best.value if mode == "min" else value > self.best.value
            if not improved:
                return False
        previous = self.best.name if self.best else None
        self.best = _Best(self.latest.name, metric, value)
        self._commit([previous] if previous and previous != self.best.name else [])
        return True

    def finish(self, name: str) -> None:
        """Name checkpoint `name` (kept, e.g. the best) the model of the finished run."""
        self.final = name
        self._commit([])

    def _commit(self, candidates: list[str]) -> None:
        named = set(self.kept) | set(self.kept_forever) | ({self.best.name} if self.best else set()) | ({self.final} if self.final else set())
        write_json(
            self.directory / STATE_FILE,
            {
                "latest": self.kept[-1],
                "kept": self.kept,
                "kept_forever": self.kept_forever,
                "best": vars(self.best) if self.best else None,
                "final": self.final,
                "saved_at": {k: v for k, v in self.saved_at.items() if k in named},
                "next_forever_time": self.next_forever_time,
            },
        )
        # the state file no longer names these: deleting them now is safe
        for old in candidates:
            if old not in named:
                (self.directory / old).unlink(missing_ok=True)
                (self.directory / state_name(old)).unlink(missing_ok=True)
                self.saved_at.pop(old, None)


@dataclass
class InitReport:
    """What --init-from did: variables loaded, and the names that did not fit."""

    path: Path
    loaded: list[str]
    missing: list[str]  # in the graph, not in the checkpoint: left as initialised
    unexpected: list[str]  # in the checkpoint, not in the graph: ignored
    wrong_shape: list[tuple[str, tuple, tuple]]  # (name, checkpoint shape, graph shape): left as initialised

    def problems(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    def describe(self) -> str:
        lines = [f"{self.path}: initialised {len(self.loaded)} of {len(self.loaded) + len(self.missing) + len(self.wrong_shape)} variables"]
        lines += [f"  missing from checkpoint (kept as initialised): {n}" for n in self.missing]
        lines += [f"  not in graph (ignored): {n}" for n in self.unexpected]
        lines += [f"  shape differs (kept as initialised): {n} checkpoint {list(c)}, graph {list(g)}" for n, c, g in self.wrong_shape]
        return "\n".join(lines)


def init_from(module, target: str | Path, *, strict: bool = False) -> InitReport:
    """Copy the variables whose names and shapes match from a checkpoint of any graph.

    With `strict`, any missing, unexpected or wrong-shape name is an error and nothing is loaded.
    """
    import torch

    tensors, info = load(target)
    variables = module.variables()
    report = InitReport(info.path, [], [], sorted(set(tensors) - set(variables)), [])
    for name, variable in variables.items():
        if name not in tensors:
            report.missing.append(name)
        elif tuple(tensors[name].shape) != tuple(variable.shape):
            report.wrong_shape.append((name, tuple(tensors[name].shape), tuple(variable.shape)))
        else:
            report.loaded.append(name)
    if strict and report.problems():
        raise CheckpointError(report.describe().replace(": initialised", ": error: --strict: the checkpoint does not fit; it would initialise", 1))
    with torch.no_grad():
        for name in report.loaded:
            variables[name].copy_(tensors[name])
    return report
