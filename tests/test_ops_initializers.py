"""Initializers by name: Keras/TF formulas checked by their bounds and moments."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from tfn import layers
from tfn.layers.initializers import INITIALIZERS, fans, initialize

SHAPE = (64, 32, 5, 5)  # OIHW: fan_in 32*25 = 800, fan_out 64*25 = 1600
FAN_IN, FAN_OUT = 800, 1600


def draw(name, shape=SHAPE, fan=None):
    t = torch.empty(shape, dtype=torch.float64)
    initialize(t, name, fan, torch.Generator().manual_seed(0))
    return t


def test_fans_follow_tf_for_pytorch_layouts():
    assert fans(SHAPE) == (FAN_IN, FAN_OUT)  # TF's HWIO [5, 5, 32, 64] gives the same
    assert fans((10, 6)) == (6, 10)  # dense [units, in]: TF's [in, units]
    assert fans((7,)) == (7, 7)


def std_error(n):
    return 5 / math.sqrt(n)  # a loose bound: the relative standard error of a sample std is below 1 / sqrt(n) here


def test_glorot_uniform_is_tfs_default_limit():
    t = draw("glorot_uniform")
    limit = math.sqrt(6 / (FAN_IN + FAN_OUT))
    assert t.abs().max() <= limit and t.abs().max() > 0.999 * limit
    assert abs(t.std().item() / (limit / math.sqrt(3)) - 1) < std_error(t.numel())


def test_he_uniform_limit():
    t = draw("he_uniform")
    limit = math.sqrt(6 / FAN_IN)
    assert t.abs().max() <= limit and t.abs().max() > 0.999 * limit


@pytest.mark.parametrize("name,target", [("he_normal", math.sqrt(2 / FAN_IN)), ("glorot_normal", math.sqrt(2 / (FAN_IN + FAN_OUT)))])
def test_truncated_variance_scaling_keeps_the_intended_std(name, target):
    t = draw(name)
    # Keras draws a normal of std target / 0.8796 truncated at two of its stds: the result has std `target`
    assert abs(t.std().item() / target - 1) < std_error(t.numel())
    assert t.abs().max() <= 2 * target / 0.87962566103423978


def test_truncated_normal_is_keras_default():
    t = draw("truncated_normal")
    assert t.abs().max() <= 0.1  # std 0.05, truncated at 2 std
    assert abs(t.std().item() / (0.05 * 0.87962566103423978) - 1) < std_error(t.numel())


def test_zeros_ones_constant():
    assert torch.all(draw("zeros", (3,)) == 0) and torch.all(draw("ones", (3,)) == 1)
    assert torch.all(draw({"constant": -0.25}, (2, 2)) == -0.25)


def test_explicit_fans_override_the_layout():
    t = draw("glorot_uniform", (8, 1, 3, 3), fan=(36, 18))
    assert t.abs().max() <= math.sqrt(6 / 54)


def test_every_named_initializer_is_accepted_by_ops_and_runs():
    Params = layers.get("dense").Params
    for name in INITIALIZERS:
        assert Params.model_validate({"units": 2, "kernel_initializer": name}).kernel_initializer == name
        draw(name, (4, 3))
    for bad in ("Glorot_Uniform", {"constant": True}, {"value": 1.0}, {"constant": 1.0, "extra": 2}, 3):
        with pytest.raises(ValidationError):
            Params.model_validate({"units": 2, "kernel_initializer": bad})
