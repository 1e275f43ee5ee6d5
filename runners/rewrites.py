"""Graph rewrites: pairs of nodes the module runs as one step where the graph proves it safe.

The compiled graph is not changed (graph.json, its hash and every checkpoint
stay as they are): runners/module.py runs a pair through the kernel built here
instead of its two kernels, and only when the pair's inner value is invisible:
its first node's output feeds its second node and nothing else (no other
consumer, no control edge), and no fetch or feed of the run touches the first
node or a feed the second (:meth:`GraphModule.plan` checks each run). What a
pair may be is decided by attributes of the ops (layers/base.py), never by op
names.

    max_pool_first    f, then a max pooling  ->  the pooling, then f, for an f that
                      `commutes_with_max` (relu, relu6): the same values and gradients
                      bit for bit, with f on a quarter of the elements (2x2 pools)
    fold_batch_norm   a convolution or dense layer, then batch normalization: in
                      inference, the normalization's scale and shift folded into the
                      kernel and bias (one pass instead of two); in training, as written

ONNX export runs the graph as written (runners/export.py): its variables stay
initializers under their graph names, which `tfn import` reads back, and
onnxruntime folds batch norm into a convolution itself when it loads a model.

TFN_REWRITES chooses them: unset, all; `none`, none; or a comma-separated list
of names (benchmarks compare with and without).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from tfn import layers
from tfn.layers.base import Op
from tfn.specs.errors import UserError
from tfn.specs.graph import Graph, Node, split_ref

REWRITES = ("max_pool_first", "fold_batch_norm")
ENVIRONMENT = "TFN_REWRITES"


def enabled() -> frozenset[str]:
    """The rewrites TFN_REWRITES asks for (all when unset)."""
    value = os.environ.get(ENVIRONMENT)
    if value is None:
        return frozenset(REWRITES)
    names = {name.strip() for name in value.split(",") if name.strip()} - {"none"}
    unknown = sorted(names - set(REWRITES))
    if unknown:
        raise UserError(f"{ENVIRONMENT}={value}: error: unknown rewrite(s) {', '.join(unknown)}; the rewrites are {', '.join(REWRITES)} (or none)")
    return frozenset(names)


@dataclass(frozen=True)
class Pair:
    """Two nodes run as one step: `first` feeds only `second`; the pair's output is `second`'s."""

    rewrite: str
    first: str
    second: str

    @property
    def members(self) -> tuple[str, str]:
        return (self.first, self.second)


def _has_inference_affine(op: Op) -> bool:
    return type(op).inference_affine is not Op.inference_affine


def _rewrite_for(graph: Graph, a: Node, b: Node, chosen: frozenset[str]) -> str | None:
    op_a, op_b = layers.get(a.op), layers.get(b.op)
    if "max_pool_first" in chosen and op_a.commutes_with_max and op_b.takes_window_maximum(b.params):
        return "max_pool_first"
    inputs_a = [graph.type_of(r) for r in a.inputs]
    if "fold_batch_norm" in chosen and op_a.folds_channel_affine(a.params, inputs_a) and _has_inference_affine(op_b):
        return "fold_batch_norm"
    return None


def find_pairs(graph: Graph, chosen: frozenset[str]) -> list[Pair]:
    """Disjoint pairs in graph order, each node in at most one."""
    data_uses: Counter[str] = Counter()
    controlled: set[str] = set()
    for node in graph.nodes:
        data_uses.update(split_ref(r)[0] for r in node.inputs)
        controlled.update(split_ref(r)[0] for r in node.control_inputs)
    outputs = set(graph.outputs)
    taken: set[str] = set()
    pairs = []
    for b in graph.nodes:
        if len(b.inputs) != 1 or b.name in taken:
            continue
        name, index = split_ref(b.inputs[0])
        a = graph.by_name.get(name)
        if a is None or name in taken or index != 0 or len(a.outputs) != 1 or len(b.outputs) != 1:
            continue
        if data_uses[name] != 1 or name in controlled or name in outputs or a.device != b.device:
            continue
        rewrite = _rewrite_for(graph, a, b, chosen)
        if rewrite:
            pairs.append(Pair(rewrite, a.name, b.name))
            taken.update((a.name, b.name))
    return pairs


Kernel = Callable  # (xs, variables by role, training) -> tensor, as layers/base.py's Kernel


def pair_kernel(graph: Graph, pair: Pair, first: Kernel, second: Kernel) -> Kernel:
    """The kernel of a pair. Its variables are the members' roles prefixed `0:` (first) and `1:` (second)."""

    def split(v: dict) -> tuple[dict, dict]:
        return {k[2:]: t for k, t in v.items() if k[0] == "0"}, {k[2:]: t for k, t in v.items() if k[0] == "1"}

    if pair.rewrite == "max_pool_first":

        def max_pool_first(xs, v, training):
            return first([second(xs, {}, training)], {}, training)

        return max_pool_first

    node = graph.node(pair.second)
    op, params, types = layers.get(node.op), node.params, [graph.type_of(r) for r in node.inputs]

    def fold_batch_norm(xs, v, training):
        v_first, v_second = split(v)
        if training:  # normalised with the batch's statistics: nothing to fold
            return second([first(xs, v_first, True)], v_second, True)
        scale, shift = op.inference_affine(params, types, v_second)
        kernel = v_first["kernel"]
        folded = {"kernel": kernel * scale.reshape(-1, *([1] * (kernel.dim() - 1))), "bias": shift}
        if "bias" in v_first:
            folded["bias"] = v_first["bias"] * scale + shift
        return first(xs, folded, False)

    return fold_batch_norm
