"""Learning-rate schedules against TF 1.x's formulas, written out independently here
(tensorflow/python/training/learning_rate_decay.py), and the torch scheduler that applies them."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import TypeAdapter, ValidationError

from tfn.runners.optimizers import make_optimizer
from tfn.runners.schedules import Scheduler, learning_rate
from tfn.specs import schema

OPTIMIZER = TypeAdapter(schema.Optimizer)


def opt(schedule: dict, lr: float = 0.1):
    return OPTIMIZER.validate_python({"type": "gradient_descent", "learning_rate": lr, "schedule": schedule})


def test_exponential_decay():
    s = opt({"type": "exponential_decay", "decay_steps": 10, "decay_rate": 0.5})
    assert [learning_rate(s, k) for k in (0, 5, 10, 25)] == pytest.approx([0.1, 0.1 * 0.5**0.5, 0.05, 0.1 * 0.5**2.5], rel=1e-15)


def test_exponential_decay_staircase():
    s = opt({"type": "exponential_decay", "decay_steps": 10, "decay_rate": 0.5, "staircase": True})
    assert [learning_rate(s, k) for k in (0, 9, 10, 19, 20)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025], rel=1e-15)


def test_piecewise_constant_boundaries_are_inclusive_on_the_left_value():
    s = opt({"type": "piecewise_constant", "boundaries": [100, 200], "values": [1.0, 0.5, 0.1]})
    # TF: values[0] for step <= 100, values[1] for 100 < step <= 200, values[2] after
    assert [learning_rate(s, k) for k in (0, 100, 101, 200, 201, 10_000)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]


def test_piecewise_constant_needs_one_more_value():
    with pytest.raises(ValidationError, match="one more value than boundaries"):
        opt({"type": "piecewise_constant", "boundaries": [10, 20], "values": [1.0, 0.5]})


def test_polynomial_decay():
    s = opt({"type": "polynomial_decay", "decay_steps": 100, "end_learning_rate": 0.01, "power": 2.0})
    expected = [(0.1 - 0.01) * (1 - min(k, 100) / 100) ** 2 + 0.01 for k in (0, 30, 100, 150)]
    assert [learning_rate(s, k) for k in (0, 30, 100, 150)] == pytest.approx(expected, rel=1e-15)
    assert learning_rate(s, 150) == pytest.approx(0.01)


def test_polynomial_decay_cycle():
    s = opt({"type": "polynomial_decay", "decay_steps": 100, "end_learning_rate": 0.0, "cycle": True})
    # step 150: decay_steps becomes 200 -> 0.1 * (1 - 150/200); step 0 keeps 100
    assert learning_rate(s, 150) == pytest.approx(0.025, rel=1e-15)
    assert learning_rate(s, 0) == pytest.approx(0.1)
    assert learning_rate(s, 100) == pytest.approx(0.0, abs=1e-18)


def test_cosine_decay():
    s = opt({"type": "cosine_decay", "decay_steps": 100, "alpha": 0.1})
    for k in (0, 25, 50, 100, 300):
        cosine = 0.5 * (1 + math.cos(math.pi * min(k, 100) / 100))
        assert learning_rate(s, k) == pytest.approx(0.1 * (0.9 * cosine + 0.1), rel=1e-15)
    assert learning_rate(s, 50) == pytest.approx(0.1 * 0.55)


def test_linear_warmup_reaches_the_schedule_continuously():
    s = opt({"type": "cosine_decay", "decay_steps": 100, "warmup_steps": 10})
    at_end = 0.1 * 0.5 * (1 + math.cos(math.pi * 10 / 100))
    assert [learning_rate(s, k) for k in (0, 5, 10)] == pytest.approx([0.0, at_end / 2, at_end], rel=1e-15)


def test_scheduler_sets_lr_before_each_update_and_restores_state():
    s = opt({"type": "exponential_decay", "decay_steps": 1, "decay_rate": 0.5, "staircase": True}, lr=1.0)
    var = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    optimizer = make_optimizer(s, [("v", var)])
    scheduler = Scheduler(optimizer, s)
    used = []
    for _ in range(4):
        used.append(optimizer.param_groups[0]["lr"])
        var.grad = torch.ones((), dtype=torch.float64)
        optimizer.step()
        scheduler.step()
    assert used == [1.0, 0.5, 0.25, 0.125]
    assert float(var.detach()) == -1.875
    # a fresh scheduler restored from the state continues where this one stands
    scheduler.scale(0.1)
    state = scheduler.state_dict()
    assert state == {"step": 4, "plateau_scale": pytest.approx(0.1)}
    other_optimizer = make_optimizer(s, [("v", torch.nn.Parameter(torch.zeros(())))])
    restored = Scheduler(other_optimizer, s)
    restored.load_state_dict(state)
    assert other_optimizer.param_groups[0]["lr"] == pytest.approx(0.0625 * 0.1)


def test_reduce_on_plateau_respects_minimum():
    s = opt({"type": "constant"}, lr=0.1)
    optimizer = make_optimizer(s, [("v", torch.nn.Parameter(torch.zeros(())))])
    scheduler = Scheduler(optimizer, s)
    scheduler.scale(0.1, minimum=0.05)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
