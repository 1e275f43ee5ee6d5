"""Optimizers by spec class (specs/schema.py), with TF's update rules (tf_semantics.md §6)."""

from __future__ import annotations

from functools import singledispatch

import torch

from tfn.specs import schema


@singledispatch
def make_optimizer(spec, parameters) -> torch.optim.Optimizer:
    raise TypeError(f"no optimizer for {type(spec).__name__}")


@make_optimizer.register
def _gradient_descent(spec: schema.GradientDescent, parameters):
    # var -= lr * grad: identical to torch's SGD (tf_semantics.md §6.1)
    return torch.optim.SGD(parameters, lr=spec.learning_rate, foreach=True)


@make_optimizer.register
def _adam(spec: schema.Adam, parameters):
    # torch's Adam agrees with TF's to ~1e-6 at epsilon 1e-8 (tf_semantics.md §6.6);
    # TF's epsilon-hat form for large epsilon is the training issue's work.
    return torch.optim.Adam(parameters, lr=spec.learning_rate, betas=(spec.beta1, spec.beta2), eps=spec.epsilon, foreach=True)
