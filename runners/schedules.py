"""Learning-rate schedules with TF 1.x's formulas (tf.train.*_decay), as a torch LRScheduler.

`learning_rate(spec, step)` is the formula itself, a pure function of the
global step (the number of updates already applied, as TF's global_step).
`Scheduler` puts multiplier * learning_rate(step) * plateau_scale into each
parameter group before every update; reduce-on-plateau scales it further.
"""

from __future__ import annotations

import bisect
import math
from functools import singledispatch

import torch

from tfn.specs import schema


def learning_rate(spec: schema.OptimizerBase, step: int) -> float:
    """The learning rate TF would use for the update at global step `step`."""
    schedule = spec.schedule
    if step < schedule.warmup_steps:
        # linear warmup from 0 to where the schedule stands when warmup ends
        return decayed(schedule, spec.learning_rate, schedule.warmup_steps) * step / schedule.warmup_steps
    return decayed(schedule, spec.learning_rate, step)


@singledispatch
def decayed(schedule, initial: float, step: int) -> float:
    raise TypeError(f"no schedule for {type(schedule).__name__}")


@decayed.register
def _constant(schedule: schema.ConstantSchedule, initial: float, step: int) -> float:
    return initial


@decayed.register
def _exponential(schedule: schema.ExponentialDecay, initial: float, step: int) -> float:
    exponent = step / schedule.decay_steps
    if schedule.staircase:
        exponent = math.floor(exponent)
    return initial * schedule.decay_rate**exponent


@decayed.register
def _piecewise(schedule: schema.PiecewiseConstant, initial: float, step: int) -> float:
    # values[0] up to and including boundaries[0], values[1] up to boundaries[1], ...
    return schedule.values[bisect.bisect_left(schedule.boundaries, step)]


@decayed.register
def _polynomial(schedule: schema.PolynomialDecay, initial: float, step: int) -> float:
    decay_steps = schedule.decay_steps
    if schedule.cycle:
        decay_steps = decay_steps * max(1, math.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    end = schedule.end_learning_rate
    return (initial - end) * (1 - step / decay_steps) ** schedule.power + end


@decayed.register
def _cosine(schedule: schema.CosineDecay, initial: float, step: int) -> float:
    step = min(step, schedule.decay_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * step / schedule.decay_steps))
    return initial * ((1 - schedule.alpha) * cosine + schedule.alpha)


class Scheduler(torch.optim.lr_scheduler.LRScheduler):
    """Sets each group's lr to lr_multiplier * learning_rate(spec, step) * plateau_scale.

    `last_epoch` counts optimizer steps (TF's global_step). Its state is two
    numbers, saved as JSON with the checkpoint.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, spec: schema.OptimizerBase, step: int = 0):
        self.spec = spec
        self.plateau_scale = 1.0
        super().__init__(optimizer, last_epoch=-1)
        if step:
            self.load_state_dict({"step": step, "plateau_scale": 1.0})

    def get_lr(self) -> list[float]:
        return self._rates()

    @property
    def rate(self) -> float:
        """The current base rate (before per-variable multipliers)."""
        return learning_rate(self.spec, self.last_epoch) * self.plateau_scale

    def _rates(self) -> list[float]:
        return [group.get("lr_multiplier", 1.0) * self.rate for group in self.optimizer.param_groups]

    def scale(self, factor: float, minimum: float = 0.0) -> None:
        """Reduce-on-plateau: multiply the rate from now on by `factor`, not below `minimum`."""
        base = learning_rate(self.spec, self.last_epoch)
        self.plateau_scale *= factor
        if base > 0 and base * self.plateau_scale < minimum:
            self.plateau_scale = minimum / base
        self._apply()

    def state_dict(self) -> dict:
        return {"step": self.last_epoch, "plateau_scale": self.plateau_scale}

    def load_state_dict(self, state: dict) -> None:
        self.last_epoch = int(state["step"])
        self._step_count = self.last_epoch + 1
        self.plateau_scale = float(state["plateau_scale"])
        self._apply()

    def _apply(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self._rates()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
