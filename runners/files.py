"""Atomic file writes and run directories.

Every file tfn writes goes through `atomic_write`: a temporary file in the
same directory, fsync, rename, fsync of the directory. A crash at any moment
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tfn.specs.errors import UserError


def atomic_write(path: str | Path, data: bytes | str) -> None:
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | Path, value) -> None:
    atomic_write(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def new_run_dir(root: str | Path, name: str) -> Path:
    """runs/<name>/<N>, N one more than the largest there; never reuses a directory."""
    parent = Path(root) / name
    parent.mkdir(parents=True, exist_ok=True)
    existing = [int(p.name) for p in parent.iterdir() if p.name.isdigit()]
    n = max(existing, default=0) + 1
    while True:
        try:
            (parent / str(n)).mkdir()  # exclusive: two runs starting together get different N
            return parent / str(n)
        except FileExistsError:
            n += 1


def prepare_out_dir(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: error: the output directory exists and is not empty; tfn never overwrites a run")
    out.mkdir(parents=True, exist_ok=True)
    return out
