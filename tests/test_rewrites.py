"""runners/rewrites.py: pairs of nodes run as one step give what the two nodes give, and only where nothing can see inside.

The ops a rewrite may take are found from their attributes over the whole
registry (no list of names here): every op that `commutes_with_max` after
every op whose docstring example `takes_window_maximum`, and every op whose
example `folds_channel_affine` before batch normalization.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from tfn import layers
from tfn.runners import rewrites
from tfn.runners.module import GraphModule
from tfn.specs import load
from tfn.specs.documents import parse_yaml
from tfn.specs.errors import UserError

OPS = layers.all_ops()


def two_node_spec(shape, first: str, second: str) -> str:
    return textwrap.dedent(
        f"""
        version: 1
        name: pair
        model:
          inputs:
            x: {{shape: {list(shape)}}}
          layers:
            - {first}
            - {second}
            - {{name: logits, op: flatten}}
        loss: {{op: mean_squared_error, logits: logits, labels: target}}
        data: {{source: digits}}
        """
    )


def example_node(op) -> str:
    """The op's docstring example without a name, as a flow mapping."""
    data = parse_yaml(op.example(), op.name).data
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in data.items() if k != "name") + "}"


def compiled(write_spec, shape, first, second):
    try:
        return load(write_spec(two_node_spec(shape, first, second))).graph
    except UserError:
        return None


def pooling_pairs(write_spec):
    """(activation op, pool op, graph) for every activation that commutes with max and every example that takes window maxima."""
    found = []
    for act in (op for op in OPS.values() if op.commutes_with_max):
        for pool in OPS.values():
            if pool.arity != (1, 1) or pool.is_loss:
                continue
            graph = compiled(write_spec, pool.example_inputs[0][1:], f"{{op: {act.name}}}", example_node(pool))
            if graph is not None and layers.get(graph.nodes[1].op).takes_window_maximum(graph.nodes[1].params):
                found.append((act.name, pool.name, graph))
    return found


def modules(graph, chosen):
    """The graph's module with the rewrites in `chosen` and without any, with the same variables."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv(rewrites.ENVIRONMENT, chosen)
        rewritten = GraphModule(graph, torch.Generator().manual_seed(0)).double()
        env.setenv(rewrites.ENVIRONMENT, "none")
        plain = GraphModule(graph, torch.Generator().manual_seed(0)).double()
    assert rewritten.rewritten and not plain.rewritten
    return rewritten, plain


def forward_backward(module, x, fetch, weights):
    x = x.clone().requires_grad_()
    out = module({"x": x}, [fetch])[fetch]
    (out * weights).sum().backward()
    return out.detach(), x.grad, {k: p.grad for k, p in module.named_parameters()}


def test_the_registry_has_pairs_of_each_kind(write_spec):
    kinds = {(a, p) for a, p, _ in pooling_pairs(write_spec)}
    assert {a for a, _ in kinds} >= {"relu", "relu6"} and len({p for _, p in kinds}) >= 3  # max_pool, max_pool3d, pool (MAX)


def test_an_activation_after_max_pooling_gives_the_same_values_and_gradients_bit_for_bit(write_spec):
    pairs = pooling_pairs(write_spec)
    for act, pool, graph in pairs:
        rewritten, plain = modules(graph, "max_pool_first")
        gen = torch.Generator().manual_seed(1)
        # small integers: ties inside windows, zeros and relu6's 6 at the kinks, negatives everywhere
        shape = (3, *graph.inputs[0].type.shape[1:])
        x = torch.randint(-8, 9, shape, generator=gen).double()
        x[0] = -1.0  # a sample with no positive value at all
        fetch = graph.nodes[1].name
        weights = torch.randn(plain({"x": x}, [fetch])[fetch].shape, generator=gen, dtype=torch.float64)
        for training in (True, False):
            rewritten.train(training), plain.train(training)
            got, want = forward_backward(rewritten, x, fetch, weights), forward_backward(plain, x, fetch, weights)
            assert torch.equal(got[0], want[0]), (act, pool)
            assert torch.equal(got[1], want[1]), (act, pool)
        assert [s.nodes for s in rewritten.plan([fetch], ["x"])] == [(graph.nodes[0].name, fetch)]


def test_folding_batch_normalization_into_each_foldable_op_matches_numpy(write_spec):
    checked = []
    for op in OPS.values():
        if op.arity != (1, 1) or op.is_loss:
            continue
        graph = compiled(write_spec, op.example_inputs[0][1:], example_node(op), "{name: bn, op: batch_normalization, epsilon: 0.01}")
        if graph is None or not op.folds_channel_affine(graph.nodes[0].params, [graph.inputs[0].type]):
            continue
        first = graph.nodes[0]
        rewritten, plain = modules(graph, "fold_batch_norm")
        gen = torch.Generator().manual_seed(2)
        channels = graph.nodes[1].outputs[0].shape[1]
        for module in (rewritten, plain):
            with torch.no_grad():
                stats = {
                    "bn/moving_mean": torch.randn(channels, generator=torch.Generator().manual_seed(3), dtype=torch.float64),
                    "bn/moving_variance": torch.rand(channels, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.5,
                    "bn/gamma": torch.randn(channels, generator=torch.Generator().manual_seed(5), dtype=torch.float64),
                    "bn/beta": torch.randn(channels, generator=torch.Generator().manual_seed(6), dtype=torch.float64),
                }
                for name, value in stats.items():
                    module.variables()[name].copy_(value)
                for name, value in module.variables().items():  # a nonzero bias, where the op has one
                    if name.endswith("/bias"):
                        value.copy_(torch.randn(value.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
        x = torch.randn((4, *graph.inputs[0].type.shape[1:]), generator=gen, dtype=torch.float64)
        rewritten.eval(), plain.eval()
        with torch.no_grad():
            pre = plain({"x": x}, [first.name])[first.name].numpy()  # the op alone, as written
            got = rewritten({"x": x}, ["bn"])["bn"].numpy()
        shape = [1, -1] + [1] * (pre.ndim - 2)
        s = {k: v.numpy().reshape(shape) for k, v in stats.items()}
        eps = 0.01
        want = (pre - s["bn/moving_mean"]) / np.sqrt(s["bn/moving_variance"] + eps) * s["bn/gamma"] + s["bn/beta"]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=op.name)
        # gradients through the folded kernel (inference with autograd on) equal the unfolded ones
        weights = torch.randn(got.shape, generator=gen, dtype=torch.float64)
        a, b = forward_backward(rewritten, x, "bn", weights), forward_backward(plain, x, "bn", weights)
        torch.testing.assert_close(a[1], b[1], rtol=1e-10, atol=1e-10)
        for name in a[2]:
            torch.testing.assert_close(a[2][name], b[2][name], rtol=1e-10, atol=1e-10, msg=f"{op.name}: {name}")
        # training normalises with the batch's statistics: no folding, the same numbers bit for bit
        rewritten.train(), plain.train()
        assert torch.equal(rewritten({"x": x}, ["bn"])["bn"], plain({"x": x}, ["bn"])["bn"])
        checked.append(op.name)
    assert {"conv2d", "dense", "conv1d", "conv3d"} <= set(checked)


GUARDS = """
version: 1
name: guards
model:
  inputs:
    image: {shape: [1, 8, 8]}
  layers:
    - {name: conv, op: conv2d, filters: 4, kernel_size: 3, padding: SAME}
    - {name: bn, op: batch_normalization}
    - {name: act, op: relu}
    - {name: pool, op: max_pool, pool_size: 2}
    - {name: act2, op: relu, inputs: [image]}                     # used twice: no pair
    - {name: pool2, op: max_pool, pool_size: 2}
    - {name: twice, op: add, inputs: [act2, act2]}
    - {name: act3, op: relu, inputs: [image]}                     # a control edge waits for it: no pair
    - {name: pool3, op: max_pool, pool_size: 2}
    - {name: late, op: flatten, inputs: [pool3], after: [act3]}
    - {op: flatten, inputs: [pool]}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits}
"""


@pytest.fixture
def guarded(write_spec):
    graph = load(write_spec(GUARDS)).graph
    return GraphModule(graph, torch.Generator().manual_seed(0)), GraphModule(graph, torch.Generator().manual_seed(0))


def test_pairs_only_where_the_inner_value_has_one_consumer_and_no_control_edge(guarded):
    module, _ = guarded
    assert {(p.rewrite, p.first, p.second) for p in module.rewritten} == {("fold_batch_norm", "conv", "bn"), ("max_pool_first", "act", "pool")}


def test_a_fetch_or_feed_inside_a_pair_runs_its_nodes_one_by_one(guarded):
    module, plain = guarded
    plain._pairs.clear()  # the same module without pairs, for reference values
    image = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    module.eval(), plain.eval()

    def nodes(fetches, feeds):
        return [s.nodes for s in module.plan(fetches, feeds)]

    assert nodes(["logits"], ["image"])[:2] == [("conv", "bn"), ("act", "pool")]
    assert ("act",) in nodes(["act", "logits"], ["image"]) and ("pool",) in nodes(["act", "logits"], ["image"])
    assert ("conv",) in nodes(["conv", "logits"], ["image"]) and ("bn",) in nodes(["conv", "logits"], ["image"])
    assert nodes(["pool"], ["act"]) == [("pool",)]  # fed inside: the pool alone, on the fed value
    assert nodes(["bn"], ["conv"]) == [("bn",)]
    assert ("conv", "bn") not in nodes(["logits"], ["image", "bn"])  # bn fed: conv does not run
    with torch.no_grad():
        for fetches in (["act", "pool"], ["conv", "bn"]):
            got = module({"image": image}, fetches)
            want = plain({"image": image}, fetches)
            for f in fetches:
                torch.testing.assert_close(got[f], want[f], rtol=1e-6, atol=1e-6)
        fed = {"image": image, "act": torch.full((2, 4, 8, 8), -1.0)}
        assert torch.equal(module(fed, ["pool"])["pool"], torch.full((2, 4, 4, 4), -1.0))  # the fed value, not relu's


def test_a_replaced_kernel_ends_its_pair(guarded):
    module, _ = guarded
    assert any(s.nodes == ("conv", "bn") for s in module.plan(["logits"], ["image"]))
    module.replace_kernel("bn", lambda xs, v, training: xs[0] * 0)
    assert not any(s.nodes == ("conv", "bn") for s in module.plan(["logits"], ["image"]))
    image = torch.randn(2, 1, 8, 8)
    assert torch.equal(module({"image": image}, ["bn"])["bn"], torch.zeros(2, 4, 8, 8))


def test_tfn_rewrites_chooses_and_refuses_unknown_names(monkeypatch, guarded):
    graph = guarded[0].graph
    monkeypatch.setenv(rewrites.ENVIRONMENT, "max_pool_first")
    assert {p.rewrite for p in GraphModule(graph).rewritten} == {"max_pool_first"}
    monkeypatch.setenv(rewrites.ENVIRONMENT, "none")
    assert GraphModule(graph).rewritten == []
    monkeypatch.setenv(rewrites.ENVIRONMENT, "fold_batchnorm")
    with pytest.raises(UserError, match="unknown rewrite.*fold_batchnorm.*fold_batch_norm"):
        GraphModule(graph)


def test_training_with_rewrites_follows_the_same_loss_curve_as_without(monkeypatch, tmp_path):
    """fp32: the training losses of digits_cnn (one pair of each kind) bit for bit; validation (folded) within rounding."""
    from tfn.runners.train import train

    curves = {}
    for chosen in ("max_pool_first,fold_batch_norm", "none"):
        monkeypatch.setenv(rewrites.ENVIRONMENT, chosen)
        loaded = load("digits_cnn", ["train.log_every=1", "train.validate_every=15", "train.summaries.histogram_every=0"])
        assert len(GraphModule(loaded.graph).rewritten) == (2 if chosen != "none" else 0)
        train(loaded, out=tmp_path / chosen, steps=30, quiet=True)
        curves[chosen] = [json.loads(line) for line in (tmp_path / chosen / "metrics.jsonl").read_text().splitlines()]
    rewritten, plain = curves.values()
    train_losses = [[r["loss"] for r in run if r["split"] == "train"] for run in (rewritten, plain)]
    assert len(train_losses[0]) == 30 and train_losses[0] == train_losses[1]
    validation = [[r["loss"] for r in run if r["split"] == "validation"] for run in (rewritten, plain)]
    assert len(validation[0]) == 2
    np.testing.assert_allclose(validation[0], validation[1], rtol=1e-5)


@pytest.mark.gpu
def test_rewrites_on_cuda_give_what_the_nodes_give(write_spec):
    """benchmarks/gpu_check.sh runs this: the pairs on CUDA tensors (training bit for bit, inference within rounding)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    graph = load(write_spec(GUARDS)).graph
    rewritten = GraphModule(graph, torch.Generator().manual_seed(0)).place("cuda")
    plain = GraphModule(graph, torch.Generator().manual_seed(0)).place("cuda")
    plain._pairs.clear()
    assert len(rewritten.rewritten) == 2
    image = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1)).cuda()
    for training in (True, False):
        rewritten.train(training), plain.train(training)
        outs = []
        for module in (rewritten, plain):
            module.zero_grad(set_to_none=True)
            out = module({"image": image}, ["logits"])["logits"]
            out.square().sum().backward()
            outs.append((out.detach(), {k: p.grad for k, p in module.named_parameters()}))
        (a, grads_a), (b, grads_b) = outs
        check = torch.equal if training else lambda x, y: torch.allclose(x, y, rtol=1e-5, atol=1e-5)
        assert check(a, b), training
        assert all(check(grads_a[k], grads_b[k]) for k in grads_a), training
