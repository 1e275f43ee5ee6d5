"""Optimizers with TensorFlow 1.x's update rules and defaults (tf_semantics.md §6).

`make_optimizer(spec, named_parameters)` dispatches on the spec's optimizer
class. Where a torch.optim optimizer computes exactly what TF computes it is
used as is (with TF's defaults passed explicitly); RMSProp and Adam differ in
substance, so they have vectorised (torch._foreach_*) implementations here.

Every parameter group carries `lr_multiplier` (from the spec's
`learning_rate_multipliers`); the schedule sets each group's lr to
multiplier * schedule(step).
"""

from __future__ import annotations

import abc

import fnmatch
import functools
from functools import singledispatch
from typing import Iterable

import torch

from tfn.specs import schema


def param_groups(spec: schema.OptimizerBase, named_parameters: Iterable[tuple[str, torch.nn.Parameter]]) -> list[dict]:
    """One group per learning-rate multiplier; a variable takes the first pattern it matches (else 1)."""
    by_multiplier: dict[float, dict] = {}
    for name, param in named_parameters:
        multiplier = next((m for pattern, m in spec.learning_rate_multipliers.items() if fnmatch.fnmatchcase(name, pattern)), 1.0)
        group = by_multiplier.setdefault(multiplier, {"params": [], "names": [], "lr_multiplier": multiplier})
        group["params"].append(param)
        group["names"].append(name)
    for group in by_multiplier.values():
        group["lr"] = spec.learning_rate * group["lr_multiplier"]
    return list(by_multiplier.values())


def unmatched_multiplier_patterns(spec: schema.OptimizerBase, names: Iterable[str]) -> list[str]:
    """Patterns in learning_rate_multipliers that match no trainable variable (almost surely a typo)."""
    names = list(names)
    return [p for p in spec.learning_rate_multipliers if not any(fnmatch.fnmatchcase(n, p) for n in names)]


@singledispatch
def make_optimizer(spec, named_parameters) -> torch.optim.Optimizer:
    raise TypeError(f"no optimizer for {type(spec).__name__}")


@make_optimizer.register
def _gradient_descent(spec: schema.GradientDescent, named_parameters):
    # var -= lr * grad: identical to torch's SGD (§6.1)
    return torch.optim.SGD(param_groups(spec, named_parameters), lr=spec.learning_rate, foreach=True)


@make_optimizer.register
def _momentum(spec: schema.Momentum, named_parameters):
    # torch's SGD keeps the un-scaled accumulator and multiplies by the current
    # lr, exactly as TF's ApplyMomentum, also under an lr schedule (§6.2, T17)
    return torch.optim.SGD(
        param_groups(spec, named_parameters),
        lr=spec.learning_rate,
        momentum=spec.momentum,
        dampening=0.0,
        nesterov=spec.use_nesterov,
        foreach=True,
    )


@make_optimizer.register
def _adagrad(spec: schema.Adagrad, named_parameters):
    # TF has no epsilon and starts the accumulator at 0.1 (§6.3)
    return torch.optim.Adagrad(
        param_groups(spec, named_parameters),
        lr=spec.learning_rate,
        initial_accumulator_value=spec.initial_accumulator_value,
        eps=0.0,
        foreach=True,
    )


@make_optimizer.register
def _adadelta(spec: schema.Adadelta, named_parameters):
    # the same formula as TF's; only the defaults differ, and the spec carries TF's (§6.4)
    return torch.optim.Adadelta(param_groups(spec, named_parameters), lr=spec.learning_rate, rho=spec.rho, eps=spec.epsilon, foreach=True)


@make_optimizer.register
def _rmsprop(spec: schema.RMSProp, named_parameters):
    return TFRMSProp(
        param_groups(spec, named_parameters),
        lr=spec.learning_rate,
        decay=spec.decay,
        momentum=spec.momentum,
        epsilon=spec.epsilon,
        centered=spec.centered,
    )


@make_optimizer.register
def _adam(spec: schema.Adam, named_parameters):
    return TFAdam(param_groups(spec, named_parameters), lr=spec.learning_rate, beta1=spec.beta1, beta2=spec.beta2, epsilon=spec.epsilon)


@make_optimizer.register
def _adamw(spec: schema.AdamW, named_parameters):
    # PyTorch's decoupled weight decay; documented as not a TF 1.x optimizer
    return torch.optim.AdamW(
        param_groups(spec, named_parameters),
        lr=spec.learning_rate,
        betas=(spec.beta1, spec.beta2),
        eps=spec.epsilon,
        weight_decay=spec.weight_decay,
        foreach=True,
    )


@functools.lru_cache(maxsize=64)
def _one_minus(value: float, dtype: torch.dtype) -> float:
    """1 - value as TF computes it: in the variable's dtype (for float32, 1 - 0.9f = 0.10000002)."""
    return float(1 - torch.tensor(value, dtype=dtype))


def _with_grads(group: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    params = [p for p in group["params"] if p.grad is not None]
    return params, [p.grad for p in params]


class _ForeachOptimizer(torch.optim.Optimizer, metaclass=abc.ABCMeta):
    """An optimizer whose update is written once over lists of tensors (torch._foreach_*).

    A subclass gives each variable's initial slots and the update of one group.
    """

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            params, grads = _with_grads(group)
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p].update(self.initial_state(p, group))
            self.update(group, params, grads, [self.state[p] for p in params])
        return loss

    @abc.abstractmethod
    def initial_state(self, p: torch.Tensor, group: dict) -> dict[str, torch.Tensor]:
        """The slots of variable `p` before its first update."""

    @abc.abstractmethod
    def update(self, group: dict, params: list, grads: list, states: list[dict]) -> None:
        """Apply one step to `params` in place, from `grads` and their slots."""


class TFRMSProp(_ForeachOptimizer):
    """tf.train.RMSPropOptimizer (training_ops.cc ApplyRMSProp / ApplyCenteredRMSProp).

        ms  = ms + (grad**2 - ms) * (1 - decay)          ms starts at ONES
        mg  = mg + (grad - mg) * (1 - decay)              centered only
        mom = momentum * mom + lr * grad / sqrt(ms [- mg**2] + epsilon)
        var -= mom

    State keys are TF's slot names: `rms` (v/RMSProp), `mg`, `momentum`.
    """

    def __init__(self, params, lr: float = 0.001, decay: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-10, centered: bool = False):
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, epsilon=epsilon, centered=centered))

    def initial_state(self, p, group):
        state = {"rms": torch.ones_like(p, memory_format=torch.preserve_format), "momentum": torch.zeros_like(p, memory_format=torch.preserve_format)}
        if group["centered"]:
            state["mg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def update(self, group, params, grads, states):
        ms = [s["rms"] for s in states]
        mom = [s["momentum"] for s in states]
        weight = _one_minus(group["decay"], params[0].dtype)
        torch._foreach_lerp_(ms, torch._foreach_mul(grads, grads), weight)
        if group["centered"]:
            mg = [s["mg"] for s in states]
            torch._foreach_lerp_(mg, grads, weight)
            denominator = torch._foreach_sub(ms, torch._foreach_mul(mg, mg))
        else:
            denominator = torch._foreach_add(ms, 0.0)
        torch._foreach_add_(denominator, group["epsilon"])
        torch._foreach_sqrt_(denominator)
        torch._foreach_mul_(mom, group["momentum"])
        torch._foreach_addcdiv_(mom, torch._foreach_mul(grads, group["lr"]), denominator)
        torch._foreach_sub_(params, mom)


class TFAdam(_ForeachOptimizer):
    """tf.train.AdamOptimizer in TF's epsilon-hat form (training_ops.cc ApplyAdam).

        lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
        m = m + (grad - m) * (1 - beta1);  v = v + (grad**2 - v) * (1 - beta2)
        var -= lr_t * m / (sqrt(v) + epsilon)

    PyTorch's Adam puts epsilon after the bias correction, which differs for a
    large epsilon (TF's docs suggest 1.0 for Inception). State keys: `m`
    (v/Adam), `v` (v/Adam_1), `beta1_power` and `beta2_power`.
    """

    POWERS = ("beta1_power", "beta2_power")

    def __init__(self, params, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8):
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, epsilon=epsilon))

    def initial_state(self, p, group):
        # TF's non-slot variables beta1_power and beta2_power, in the variable's dtype
        # (float32 rounding included) and on the CPU, so reading them never waits for a GPU
        return {
            "beta1_power": torch.tensor(group["beta1"], dtype=p.dtype),
            "beta2_power": torch.tensor(group["beta2"], dtype=p.dtype),
            "m": torch.zeros_like(p, memory_format=torch.preserve_format),
            "v": torch.zeros_like(p, memory_format=torch.preserve_format),
        }

    def update(self, group, params, grads, states):
        # the group's variables step together; the first one's powers serve them all
        lr_t = float(group["lr"] * torch.sqrt(1 - states[0]["beta2_power"]) / (1 - states[0]["beta1_power"]))
        m = [s["m"] for s in states]
        v = [s["v"] for s in states]
        torch._foreach_lerp_(m, grads, _one_minus(group["beta1"], params[0].dtype))
        torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), _one_minus(group["beta2"], params[0].dtype))
        denominator = torch._foreach_sqrt(v)
        torch._foreach_add_(denominator, group["epsilon"])
        update = torch._foreach_mul(m, lr_t)
        torch._foreach_div_(update, denominator)
        torch._foreach_sub_(params, update)
        torch._foreach_mul_([s["beta1_power"] for s in states], group["beta1"])
        torch._foreach_mul_([s["beta2_power"] for s in states], group["beta2"])

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        # torch moves loaded state to each variable's device; the powers belong on the CPU
        for state in self.state.values():
            for key in self.POWERS:
                if key in state:
                    state[key] = state[key].cpu()


def clip_gradients(parameters: list[torch.nn.Parameter], spec: schema.OptimizerBase) -> None:
    """TF's clip_by_value, then clip_by_global_norm: grads * clip / max(global_norm, clip).

    No host synchronisation: the scale stays a device tensor.
    """
    if spec.clip_value is None and spec.clip_global_norm is None:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    if spec.clip_value is not None:
        torch._foreach_clamp_min_(grads, -spec.clip_value)
        torch._foreach_clamp_max_(grads, spec.clip_value)
    if spec.clip_global_norm is not None:
        norms = torch._foreach_norm(grads)
        global_norm = torch.linalg.vector_norm(torch.stack(norms))
        scale = spec.clip_global_norm / torch.clamp(global_norm, min=spec.clip_global_norm)
        torch._foreach_mul_(grads, scale)
