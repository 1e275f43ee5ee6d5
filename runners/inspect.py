"""Look inside checkpoints (TF's inspect_checkpoint, better): list, values, statistics, diff, fit to a graph.

Listing reads the safetensors header only. Values are read through
safetensors' NumPy reader, so nothing here imports torch, and nothing
unpickles: a file that is not safetensors is named for what it is and refused
before any parser sees it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tfn.runners.checkpoint import CheckpointError, CheckpointInfo, read_info
from tfn.specs.graph import Graph

def read_header(target: str | Path) -> CheckpointInfo:
    """Names, dtypes, shapes and metadata of a checkpoint file, checkpoints directory or run directory (latest)."""
    return read_info(target)


def read_tensors(target: str | Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Tensor values as NumPy arrays (all, or `names`), without torch."""
    from safetensors import SafetensorError, safe_open

    info = read_header(target)
    wanted = list(info.variables) if names is None else names
    missing = [n for n in wanted if n not in info.variables]
    if missing:
        from tfn.layers import suggest

        hint = suggest(missing[0], info.variables)
        raise CheckpointError(
            f"{info.path}: error: no variable {missing[0]!r} in this checkpoint" + (f" (did you mean {hint!r}?)" if hint else "")
        )
    try:
        with safe_open(info.path, framework="numpy") as f:
            return {name: f.get_tensor(name) for name in wanted}
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{info.path}: error: cannot read tensor data: {exc}") from None


# --- listing and statistics --------------------------------------------------


@dataclass(frozen=True)
class TensorStats:
    min: float
    max: float
    mean: float
    std: float
    l2_norm: float
    nan: int
    inf: int

    @classmethod
    def of(cls, value: np.ndarray) -> TensorStats:
        """Over the finite values, in float64; NaN and Inf are counted, not averaged."""
        x = np.asarray(value, dtype=np.float64).ravel()
        finite = x[np.isfinite(x)]
        nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        if finite.size == 0:
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan, nan, inf)
        return cls(
            float(finite.min()), float(finite.max()), float(finite.mean()), float(finite.std()), float(np.sqrt(np.dot(finite, finite))), nan, inf
        )

    def to_dict(self) -> dict:
        """JSON-ready: a statistic of no finite values is null."""
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class VariableRow:
    name: str
    dtype: str
    shape: tuple[int, ...]
    size: int
    stats: TensorStats | None = None


@dataclass(frozen=True)
class Listing:
    path: Path
    metadata: dict[str, str]
    variables: list[VariableRow]

    @property
    def total_size(self) -> int:
        return sum(v.size for v in self.variables)

    @property
    def total_bytes(self) -> int:
        return sum(v.size * _ITEMSIZE.get(v.dtype, 4) for v in self.variables)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "metadata": self.metadata,
            "variables": [
                {"name": v.name, "dtype": v.dtype, "shape": list(v.shape), "size": v.size, **({"stats": v.stats.to_dict()} if v.stats else {})}
                for v in self.variables
            ],
            "total_size": self.total_size,
            "total_bytes": self.total_bytes,
        }


_ITEMSIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def list_variables(target: str | Path, stats: bool = False) -> Listing:
    """Every variable with dtype, shape and element count (header only); `stats` reads values too."""
    info = read_header(target)
    values = read_tensors(info.path) if stats else {}
    rows = [
        VariableRow(name, dtype, shape, math.prod(shape), TensorStats.of(values[name]) if stats else None)
        for name, (dtype, shape) in info.variables.items()
    ]
    return Listing(info.path, info.metadata, rows)


def _var_json(dtype: str, shape: tuple[int, ...]) -> dict:
    return {"dtype": dtype, "shape": list(shape)}


def _vars_json(variables: dict[str, tuple[str, tuple[int, ...]]]) -> dict:
    return {name: _var_json(*v) for name, v in variables.items()}


# --- diff --------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    name: str
    max_abs: float  # largest |other - this|
    relative_l2: float | None  # ||other - this|| / ||this||; None when this is all zeros


@dataclass(frozen=True)
class Reshaped:
    name: str
    this: tuple[str, tuple[int, ...]]  # (dtype, shape)
    other: tuple[str, tuple[int, ...]]


@dataclass
class CheckpointDiff:
    this: Path
    other: Path
    added: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # in other only
    removed: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # in this only
    reshaped: list[Reshaped] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.reshaped or self.changed)

    def to_dict(self) -> dict:
        return {
            "this": str(self.this),
            "other": str(self.other),
            "identical": self.identical,
            "added": _vars_json(self.added),
            "removed": _vars_json(self.removed),
            "reshaped": [{"name": r.name, "this": _var_json(*r.this), "other": _var_json(*r.other)} for r in self.reshaped],
            "changed": [asdict(c) for c in self.changed],
            "unchanged": self.unchanged,
        }


def diff(this: str | Path, other: str | Path) -> CheckpointDiff:
    """What changed from checkpoint `this` to `other`: added, removed, reshaped, changed (and by how much)."""
    a, b = read_header(this), read_header(other)
    result = CheckpointDiff(a.path, b.path)
    result.added = {n: v for n, v in b.variables.items() if n not in a.variables}
    result.removed = {n: v for n, v in a.variables.items() if n not in b.variables}
    common = [n for n in a.variables if n in b.variables]
    result.reshaped = [Reshaped(n, a.variables[n], b.variables[n]) for n in common if a.variables[n] != b.variables[n]]
    comparable = [n for n in common if a.variables[n] == b.variables[n]]
    for name in comparable:  # one tensor pair in memory at a time
        x = read_tensors(a.path, [name])[name].astype(np.float64)
        y = read_tensors(b.path, [name])[name].astype(np.float64)
        if np.array_equal(x, y, equal_nan=True):
            result.unchanged.append(name)
            continue
        with np.errstate(invalid="ignore"):  # inf - inf: counted as NaN, left out below
            delta = (y - x).ravel()
        delta = delta[np.isfinite(delta)]
        norm = float(np.sqrt(np.dot(x.ravel(), x.ravel())))
        change = float(np.sqrt(np.dot(delta, delta)))
        largest = float(np.abs(delta).max()) if delta.size else math.nan
        result.changed.append(Change(name, largest, change / norm if norm else None))
    return result


# --- against a graph ---------------------------------------------------------


@dataclass
class Fit:
    """How a checkpoint fits a graph: what the graph expects that the checkpoint lacks, and the reverse."""

    checkpoint: Path
    graph_name: str
    graph_hash: str
    checkpoint_hash: str | None
    missing: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # the graph's (dtype, shape)
    extra: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # the checkpoint's
    mismatched: list[Reshaped] = field(default_factory=list)  # this = checkpoint, other = graph
    matching: int = 0

    @property
    def fits(self) -> bool:
        return not (self.missing or self.extra or self.mismatched)

    @property
    def same_graph(self) -> bool:
        return self.checkpoint_hash == self.graph_hash

    def to_dict(self) -> dict:
        return {
            "checkpoint": str(self.checkpoint),
            "graph": self.graph_name,
            "graph_hash": self.graph_hash,
            "checkpoint_graph_hash": self.checkpoint_hash,
            "fits": self.fits,
            "same_graph": self.same_graph,
            "missing": _vars_json(self.missing),
            "extra": _vars_json(self.extra),
            "mismatched": [{"name": m.name, "checkpoint": _var_json(*m.this), "graph": _var_json(*m.other)} for m in self.mismatched],
            "matching": self.matching,
        }


_GRAPH_DTYPES = {
    "float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
}  # fmt: skip


def against(target: str | Path, graph: Graph) -> Fit:
    """Compare a checkpoint's variables with those `graph` expects (names, dtypes, shapes)."""
    info = read_header(target)
    expected = {v.name: (_GRAPH_DTYPES.get(v.dtype, v.dtype), tuple(v.shape)) for v in graph.variables}
    fit = Fit(info.path, graph.name, graph.hash, info.metadata.get("graph_hash"))
    fit.missing = {n: v for n, v in expected.items() if n not in info.variables}
    fit.extra = {n: v for n, v in info.variables.items() if n not in expected}
    fit.mismatched = [Reshaped(n, info.variables[n], v) for n, v in expected.items() if n in info.variables and info.variables[n] != v]
    fit.matching = sum(1 for n, v in expected.items() if info.variables.get(n) == v)
    return fit


def format_value(value: np.ndarray, full: bool = False) -> str:
    """Values as NumPy prints them, summarised with '...' when large unless `full`."""
    threshold = max(value.size, 1) if full else 200
    return np.array2string(value, threshold=threshold, edgeitems=3, precision=6, suppress_small=False, max_line_width=120)
