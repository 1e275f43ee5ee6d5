"""Each optimizer against TF's numbers (tf_semantics.md §9 T13, T17) and a
multi-step trajectory computed independently in float64 NumPy from TF's
update rules (training_ops.cc), with an lr schedule where the rule reads lr."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tfn.runners.optimizers import clip_gradients, make_optimizer, param_groups, unmatched_multiplier_patterns
from tfn.runners.schedules import Scheduler
from tfn.specs import schema
from pydantic import TypeAdapter

OPTIMIZER = TypeAdapter(schema.Optimizer)


def spec(**fields):
    return OPTIMIZER.validate_python(fields)


def run_steps(opt_spec, grads: list[np.ndarray], var0: np.ndarray, lrs: list[float] | None = None, dtype=torch.float64) -> list[np.ndarray]:
    """Apply the given gradients one per step; lr from `lrs` (set on the group) when given."""
    var = torch.nn.Parameter(torch.tensor(var0, dtype=dtype))
    optimizer = make_optimizer(opt_spec, [("v", var)])
    trajectory = []
    for i, g in enumerate(grads):
        if lrs is not None:
            optimizer.param_groups[0]["lr"] = lrs[i]
        var.grad = torch.tensor(g, dtype=dtype)
        optimizer.step()
        trajectory.append(var.detach().numpy().copy())
    return trajectory


# --- T13: var=1, g=0.5, lr=0.1, two steps (values computed with TF) ------------------

T13 = [
    (dict(type="gradient_descent", learning_rate=0.1), (0.95, 0.90)),
    (dict(type="momentum", learning_rate=0.1, momentum=0.9), (0.95, 0.855)),
    (dict(type="nesterov", learning_rate=0.1, momentum=0.9), (0.905, 0.7695)),
    (dict(type="momentum", learning_rate=0.1, momentum=0.9, use_nesterov=True), (0.905, 0.7695)),
    (dict(type="adagrad", learning_rate=0.1), (0.9154845, 0.8509348)),
    (dict(type="rmsprop", learning_rate=0.1), (0.9480125, 0.8940175)),
    (dict(type="rmsprop", learning_rate=0.1, momentum=0.9, centered=True), (0.9479421, 0.8468086)),
    (dict(type="adam", learning_rate=0.1), (0.9000000, 0.8000004)),
    (dict(type="adam", learning_rate=0.1, epsilon=1.0), (0.9984435, 0.9962569)),
    (dict(type="adadelta", learning_rate=1.0, epsilon=1e-6), (0.9955280, 0.9909991)),
    (dict(type="adadelta"), (0.99999952, 0.99999905)),
]


@pytest.mark.parametrize("fields,expected", T13, ids=[f"{f['type']}-{i}" for i, (f, _) in enumerate(T13)])
def test_t13_two_steps_match_tensorflow(fields, expected):
    trajectory = run_steps(spec(**fields), [np.array([0.5])] * 2, np.array([1.0]), dtype=torch.float32)
    assert [float(v[0]) for v in trajectory] == pytest.approx(expected, abs=1e-7)


def test_t13_naive_pytorch_ports_differ():
    # the regression guard: PyTorch's own RMSprop and Adam give other numbers
    var = torch.nn.Parameter(torch.tensor([1.0]))
    rms = torch.optim.RMSprop([var], lr=0.1, alpha=0.9, eps=1e-10)
    var.grad = torch.tensor([0.5])
    rms.step()
    assert float(var.detach()) == pytest.approx(0.6837722, abs=1e-6)
    assert run_steps(spec(type="rmsprop", learning_rate=0.1), [np.array([0.5])], np.array([1.0]))[0][0] == pytest.approx(0.9480125, abs=1e-7)
    var = torch.nn.Parameter(torch.tensor([1.0]))
    adam = torch.optim.Adam([var], lr=0.1, eps=1.0)
    var.grad = torch.tensor([0.5])
    adam.step()
    assert float(var.detach()) == pytest.approx(0.9666667, abs=1e-6)


# --- multi-step trajectories against float64 NumPy references --------------------

RNG = np.random.default_rng(1234)
GRADS = [RNG.normal(size=(3, 2)) for _ in range(6)]
VAR0 = RNG.normal(size=(3, 2))
LRS = [0.1, 0.1, 0.05, 0.05, 0.2, 0.02]  # T17's schedule, one step longer


def numpy_momentum(lrs, momentum, nesterov):
    var, accum, out = VAR0.copy(), np.zeros_like(VAR0), []
    for g, lr in zip(GRADS, lrs):
        accum = momentum * accum + g
        var = var - (lr * g + lr * momentum * accum if nesterov else lr * accum)
        out.append(var)
    return out


def numpy_rmsprop(lrs, decay, momentum, eps, centered):
    var, ms, mg, mom, out = VAR0.copy(), np.ones_like(VAR0), np.zeros_like(VAR0), np.zeros_like(VAR0), []
    for g, lr in zip(GRADS, lrs):
        ms = ms + (g * g - ms) * (1 - decay)
        if centered:
            mg = mg + (g - mg) * (1 - decay)
            denominator = np.sqrt(ms - mg * mg + eps)
        else:
            denominator = np.sqrt(ms + eps)
        mom = momentum * mom + lr * g / denominator
        var = var - mom
        out.append(var)
    return out


def numpy_adam(lrs, beta1, beta2, eps):
    var, m, v, out = VAR0.copy(), np.zeros_like(VAR0), np.zeros_like(VAR0), []
    for t, (g, lr) in enumerate(zip(GRADS, lrs), start=1):
        lr_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        m = m + (g - m) * (1 - beta1)
        v = v + (g * g - v) * (1 - beta2)
        var = var - lr_t * m / (np.sqrt(v) + eps)
        out.append(var)
    return out


def numpy_adagrad(lrs, initial):
    var, accum, out = VAR0.copy(), np.full_like(VAR0, initial), []
    for g, lr in zip(GRADS, lrs):
        accum = accum + g * g
        var = var - lr * g / np.sqrt(accum)
        out.append(var)
    return out


def numpy_adadelta(lrs, rho, eps):
    var, accum, accum_update, out = VAR0.copy(), np.zeros_like(VAR0), np.zeros_like(VAR0), []
    for g, lr in zip(GRADS, lrs):
        accum = rho * accum + (1 - rho) * g * g
        update = np.sqrt(accum_update + eps) / np.sqrt(accum + eps) * g
        var = var - lr * update
        accum_update = rho * accum_update + (1 - rho) * update * update
        out.append(var)
    return out


def numpy_adamw(lrs, beta1, beta2, eps, wd):
    # PyTorch's AdamW (torch.optim.AdamW docs): decay first, eps after the bias correction
    var, m, v, out = VAR0.copy(), np.zeros_like(VAR0), np.zeros_like(VAR0), []
    for t, (g, lr) in enumerate(zip(GRADS, lrs), start=1):
        var = var * (1 - lr * wd)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        var = var - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
        out.append(var)
    return out


TRAJECTORIES = [
    (dict(type="gradient_descent"), lambda: numpy_momentum(LRS, 0.0, False)),
    (dict(type="momentum", momentum=0.9), lambda: numpy_momentum(LRS, 0.9, False)),
    (dict(type="nesterov", momentum=0.8), lambda: numpy_momentum(LRS, 0.8, True)),
    (dict(type="rmsprop", decay=0.9, momentum=0.0), lambda: numpy_rmsprop(LRS, 0.9, 0.0, 1e-10, False)),
    (dict(type="rmsprop", decay=0.8, momentum=0.9, centered=True, epsilon=1e-3), lambda: numpy_rmsprop(LRS, 0.8, 0.9, 1e-3, True)),
    (dict(type="adam", epsilon=0.5), lambda: numpy_adam(LRS, 0.9, 0.999, 0.5)),
    (dict(type="adam", beta1=0.5, beta2=0.9), lambda: numpy_adam(LRS, 0.5, 0.9, 1e-8)),
    (dict(type="adagrad", initial_accumulator_value=0.3), lambda: numpy_adagrad(LRS, 0.3)),
    (dict(type="adadelta", rho=0.9, epsilon=1e-4), lambda: numpy_adadelta(LRS, 0.9, 1e-4)),
    (dict(type="adamw", weight_decay=0.1), lambda: numpy_adamw(LRS, 0.9, 0.999, 1e-8, 0.1)),
]


@pytest.mark.parametrize("fields,reference", TRAJECTORIES, ids=[f"{f['type']}-{i}" for i, (f, _) in enumerate(TRAJECTORIES)])
def test_trajectory_under_lr_schedule_matches_numpy(fields, reference):
    got = run_steps(spec(**fields), GRADS, VAR0, LRS)
    for step, (g, want) in enumerate(zip(got, reference())):
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12, err_msg=f"step {step + 1}")


def test_t17_momentum_equals_torch_sgd_under_schedule():
    grads = [np.random.default_rng(i).normal(size=4).astype(np.float32) for i in range(5)]
    ours = run_steps(spec(type="momentum", momentum=0.9), grads, np.ones(4, np.float32), [0.1, 0.1, 0.05, 0.05, 0.2], dtype=torch.float32)
    var = torch.nn.Parameter(torch.ones(4))
    sgd = torch.optim.SGD([var], lr=0.1, momentum=0.9)
    for g, lr in zip(grads, [0.1, 0.1, 0.05, 0.05, 0.2]):
        sgd.param_groups[0]["lr"] = lr
        var.grad = torch.from_numpy(g)
        sgd.step()
    np.testing.assert_allclose(ours[-1], var.detach().numpy(), atol=1e-7)


def test_tf_defaults():
    assert spec(type="adadelta").model_dump(include={"learning_rate", "rho", "epsilon"}) == {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-8}
    assert spec(type="rmsprop").model_dump(include={"decay", "momentum", "epsilon", "centered"}) == {
        "decay": 0.9, "momentum": 0.0, "epsilon": 1e-10, "centered": False
    }
    assert spec(type="adagrad").initial_accumulator_value == 0.1
    assert spec(type="adam").model_dump(include={"learning_rate", "beta1", "beta2", "epsilon"}) == {
        "learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8
    }


def test_rmsprop_state_uses_tf_initial_values():
    var = torch.nn.Parameter(torch.zeros(3))
    optimizer = make_optimizer(spec(type="rmsprop", centered=True, momentum=0.5), [("v", var)])
    var.grad = torch.zeros(3)
    optimizer.step()
    state = optimizer.state[var]
    # a zero gradient decays the ONES-initialised mean square: 1 * 0.9
    np.testing.assert_allclose(state["rms"].numpy(), [0.9] * 3, rtol=1e-7)
    assert state["mg"].abs().sum() == 0 and state["momentum"].abs().sum() == 0


# --- per-variable multipliers and clipping -----------------------------------------


def test_learning_rate_multipliers_by_glob_and_schedule():
    a, b, c, d = (torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)) for _ in range(4))
    s = spec(
        type="gradient_descent",
        learning_rate=0.1,
        learning_rate_multipliers={"logits/*": 10.0, "*/bias": 0.0},
        schedule={"type": "exponential_decay", "decay_steps": 1, "decay_rate": 0.5},
    )
    named = [("conv/kernel", a), ("logits/kernel", b), ("logits/bias", c), ("conv/bias", d)]
    optimizer = make_optimizer(s, named)
    scheduler = Scheduler(optimizer, s)
    for _ in range(2):
        for p in (a, b, c, d):
            p.grad = torch.ones(2, dtype=torch.float64)
        optimizer.step()
        scheduler.step()
    # lr 0.1 then 0.05: conv/kernel moves 0.15, logits/* ten times that; logits/bias
    # matches 'logits/*' before '*/bias' (the first pattern wins); conv/bias stays
    np.testing.assert_allclose(a.detach().numpy(), [-0.15, -0.15], rtol=1e-12)
    np.testing.assert_allclose(b.detach().numpy(), [-1.5, -1.5], rtol=1e-12)
    np.testing.assert_allclose(c.detach().numpy(), [-1.5, -1.5], rtol=1e-12)
    assert d.detach().tolist() == [0.0, 0.0]
    assert unmatched_multiplier_patterns(s, [name for name, _ in named]) == []
    assert unmatched_multiplier_patterns(spec(type="adam", learning_rate_multipliers={"logit/*": 2.0}), ["logits/kernel"]) == ["logit/*"]


def test_param_groups_keep_names():
    groups = param_groups(spec(type="adam", learning_rate_multipliers={"b": 0.5}), [("a", torch.zeros(1)), ("b", torch.zeros(1))])
    assert [(g["names"], g["lr_multiplier"], g["lr"]) for g in groups] == [(["a"], 1.0, 0.001), (["b"], 0.5, 0.0005)]


def test_clip_by_global_norm_is_tf_formula():
    a = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    a.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    b.grad = torch.tensor([12.0], dtype=torch.float64)  # global norm 13
    clip_gradients([a, b], spec(type="adam", clip_global_norm=6.5))
    np.testing.assert_allclose(a.grad.numpy(), [1.5, 2.0], rtol=1e-15)
    np.testing.assert_allclose(b.grad.numpy(), [6.0], rtol=1e-15)
    # under the threshold nothing changes (TF: scale clip / max(norm, clip) == 1)
    clip_gradients([a, b], spec(type="adam", clip_global_norm=100.0))
    np.testing.assert_allclose(b.grad.numpy(), [6.0], rtol=1e-15)


def test_clip_by_value():
    a = torch.nn.Parameter(torch.zeros(3))
    a.grad = torch.tensor([-5.0, 0.2, 7.0])
    clip_gradients([a], spec(type="gradient_descent", clip_value=1.0))
    assert a.grad.tolist() == pytest.approx([-1.0, 0.2, 1.0])
