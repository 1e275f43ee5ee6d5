"""Shared helpers of the `tfn import` tests: the fixtures TensorFlow made (tests/fixtures/imports)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
MAKER = Path(__file__).parent / "tf_reference" / "make_import_fixtures.py"


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


def meta(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def reference(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, outputs) as the original saw them (features-last), by the original's names."""
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as arrays:
        inputs = {k.split(":", 1)[1]: arrays[k] for k in arrays if k.startswith("input:")}
        outputs = {k.split(":", 1)[1]: arrays[k] for k in arrays if k.startswith("output:")}
    return inputs, outputs


def channels_first(array: np.ndarray) -> np.ndarray:
    """A features-last batch (NHWC, NTF) in tfn's layout; rank 2 stays."""
    return np.moveaxis(array, -1, 1) if array.ndim >= 3 else array


def channels_last(array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, 1, -1) if array.ndim >= 3 else array


def import_fixture(name: str, out: Path, **options):
    """Import one fixture into `out`; returns (Imported, import.json's record)."""
    from tfn.runners.importers import read, write

    m = meta(name)
    if m["format"] == "tf1_checkpoint":
        options.setdefault("outputs", m["outputs"])
    imported = read(FIXTURES / m["file"], **options)
    return imported, write(imported, out)
