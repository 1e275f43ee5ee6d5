"""Data sources: each spec data class -> named fields per split, as tensors.

Sources dispatch on the spec's data class (specs/schema.py); in-memory
sources are batched by slicing, with no per-sample Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch
from pathlib import Path

import numpy as np
import torch

from tfn.specs import schema
from tfn.specs.errors import UserError
from tfn.specs.graph import Graph

SPLITS = ("train", "validation", "test")
DATASETS = Path(__file__).parent / "datasets"


class DataError(UserError):
    pass


@dataclass
class Splits:
    """Named fields for each split: splits["train"]["image"] is a tensor [N, ...]."""

    fields: dict[str, dict[str, torch.Tensor]]
    class_names: list[str] | None = None

    def size(self, split: str) -> int:
        return len(next(iter(self.fields[split].values())))


@singledispatch
def load_data(spec) -> Splits:
    raise TypeError(f"no loader for data source {type(spec).__name__}")


@load_data.register
def _digits(spec: schema.DigitsData) -> Splits:
    with np.load(DATASETS / "digits.npz", allow_pickle=False) as f:
        images, labels, split = f["images"], f["labels"], f["split"]
    fields = {}
    for index, name in enumerate(SPLITS):
        rows = split == index
        fields[name] = {
            "image": torch.from_numpy(images[rows].astype(np.float32) / 16.0).unsqueeze(1),
            "label": torch.from_numpy(labels[rows].astype(np.int64)),
        }
    return Splits(fields, [str(d) for d in range(10)])


def check_fits(graph: Graph, splits: Splits, source: str) -> None:
    """Every graph input binds to a data field of the same name, shape and dtype."""
    for split, fields in splits.fields.items():
        for inp in graph.inputs:
            if inp.name not in fields:
                raise DataError(
                    f"data: error: the graph input {inp.name!r} binds to a data field of that name, "
                    f"but source {source!r} gives {', '.join(fields)}"
                )
            tensor = fields[inp.name]
            want = tuple(inp.type.shape[1:])
            if tuple(tensor.shape[1:]) != want:
                raise DataError(
                    f"data: error: field {inp.name!r} ({split}) has samples of shape {list(tensor.shape[1:])}, "
                    f"the model input expects {list(want)}"
                )
            if (tensor.dtype.is_floating_point) != inp.type.dtype.startswith("float"):
                raise DataError(f"data: error: field {inp.name!r} is {tensor.dtype}, the model input expects {inp.type.dtype}")
