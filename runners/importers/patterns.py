"""Functions that graphs spell out op by op: found by what they compute, replaced by one tfn op.

tf.nn.gelu is no TensorFlow op: a graph holds `0.5 * x * erfc(-x / sqrt(2))`
(or erf, or the tanh approximation), and ONNX files below opset 20 spell it
as Div, Erf, Add, Mul, Mul. The exact arrangement changes between versions
and exporters, so a candidate is recognised by its values rather than its
shape: a region of element-wise ops that reads one tensor (and scalar
constants), whose intermediate values nothing outside it reads, is
evaluated with NumPy on sample points and compared with each known function.

A reader lists its nodes as :class:`Step` (its own op types, with the NumPy
function of each element-wise one) and replaces each :class:`Match` by a
foreign layer of kind :attr:`Match.kind` with :attr:`Match.attrs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])

#: the element-wise op types of TF and ONNX, as NumPy functions of their inputs
ELEMENTWISE: dict[str, Callable[..., np.ndarray]] = {
    "Mul": np.multiply,
    "Add": np.add,
    "AddV2": np.add,
    "Sub": np.subtract,
    "RealDiv": np.divide,
    "Div": np.divide,
    "Neg": np.negative,
    "Erf": _erf,
    "Erfc": lambda x: 1.0 - _erf(x),
    "Tanh": np.tanh,
    "Pow": np.power,
    "Sqrt": np.sqrt,
    "Rsqrt": lambda x: 1.0 / np.sqrt(x),
    "Reciprocal": np.reciprocal,
    "Square": np.square,
    "Cast": lambda x: x,
    "CastLike": lambda x, _like: x,
    "Identity": lambda x: x,
}
#: the ops a recognised function must contain (a region of plain arithmetic stays as it is)
_SEEDS = ("Erf", "Erfc", "Tanh")
_SAMPLES = np.linspace(-5.0, 5.0, 81)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


#: (kind of the foreign layer, its attributes, the function): what a region may compute
KNOWN = (("Gelu", {"approximate": False}, _gelu), ("Gelu", {"approximate": True}, _gelu_tanh))


@dataclass(frozen=True)
class Step:
    """One node of a graph: its op type, the tensors it reads and the one it makes."""

    name: str
    op: str
    inputs: tuple[str, ...]
    output: str


@dataclass(frozen=True)
class Match:
    """A region that computes a known function of `input`; its last node makes `output`."""

    kind: str
    attrs: dict
    input: str
    output: str
    end: str  # the last node's name: the foreign layer takes it
    covered: frozenset  # the names of every node of the region


def find(steps: list[Step], constant: Callable[[str], np.ndarray | None], kept: set[str]) -> list[Match]:
    """Every region of `steps` (in topological order) that computes a function of KNOWN.

    `constant(tensor)` is a tensor's value when it is a constant; `kept` are
    tensors read from outside the graph's nodes (its outputs): no region hides one.
    """
    made_by = {s.output: s for s in steps}
    position = {s.name: i for i, s in enumerate(steps)}
    readers: dict[str, list[Step]] = {}
    for s in steps:
        for t in s.inputs:
            readers.setdefault(t, []).append(s)
    matches: list[Match] = []
    taken: set[str] = set()
    for seed in steps:
        if seed.op not in _SEEDS or seed.name in taken:
            continue
        ends, current = [seed], seed
        while len(ends) < 6:
            after = readers.get(current.output, [])
            if len(after) != 1 or after[0].op not in ELEMENTWISE or current.output in kept:
                break
            current = after[0]
            ends.append(current)
        for end in reversed(ends):  # the largest region first
            match = _region(end, made_by, readers, constant, kept, position)
            if match is not None and not match.covered & taken:
                matches.append(match)
                taken |= match.covered
                break
    return matches


def _region(end: Step, made_by: dict, readers: dict, constant, kept: set[str], position: dict) -> Match | None:
    """The region that ends at `end`, when it reads one tensor, hides no value read elsewhere and computes a KNOWN function."""
    covered: dict[str, Step] = {}
    leaves: set[str] = set()
    stack = [end.output]
    while stack:
        tensor = stack.pop()
        step = made_by.get(tensor)
        if constant(tensor) is not None:
            continue
        if step is None or step.op not in ELEMENTWISE:
            leaves.add(tensor)
            continue
        if step.name not in covered:
            covered[step.name] = step
            stack += list(step.inputs)
    if len(leaves) != 1 or not any(s.op in _SEEDS for s in covered.values()):
        return None
    (source,) = leaves
    for step in covered.values():
        if step is not end and (step.output in kept or any(r.name not in covered for r in readers.get(step.output, []))):
            return None
    values = {source: _SAMPLES}
    for step in sorted(covered.values(), key=lambda s: position[s.name]):
        args = []
        for t in step.inputs:
            if t in values:
                args.append(values[t])
                continue
            value = np.asarray(constant(t), dtype=np.float64)
            if value.size != 1:
                return None
            args.append(value.reshape(()))
        with np.errstate(all="ignore"):
            values[step.output] = np.asarray(ELEMENTWISE[step.op](*args), dtype=np.float64)
    got = values[end.output]
    for kind, attrs, function in KNOWN:
        if got.shape == _SAMPLES.shape and np.allclose(got, function(_SAMPLES), rtol=0, atol=1e-6):
            return Match(kind, dict(attrs), source, end.output, end.name, frozenset(covered))
    return None

