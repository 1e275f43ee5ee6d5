"""Variable initializers by name (TF's names and formulas).

Fans follow the PyTorch layout of the variable ([out, in, *window]) unless the
op gives them explicitly; TF computes the same fans from its own layout.
"""

from __future__ import annotations

import math

INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "truncated_normal", "zeros", "ones", "uniform", "orthogonal")


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    window = math.prod(shape[2:])
    return shape[1] * window, shape[0] * window


def initialize(tensor, name: str | dict, fan: tuple[int, int] | None, generator=None) -> None:
    """Fill `tensor` in place according to the named initializer, or {"constant": value}."""
    import torch

    fan_in, fan_out = fan or fans(tuple(tensor.shape))
    with torch.no_grad():
        if isinstance(name, dict) and "unit_forget_bias" in name:
            # Keras's LSTM bias: the base initializer, then ones on the forget gate (the second quarter)
            initialize(tensor, name["unit_forget_bias"], fan, generator)
            units = tensor.shape[-1] // 4
            tensor[..., units : 2 * units] = 1.0
        elif isinstance(name, dict):
            tensor.fill_(name["constant"])
        elif name == "zeros":
            tensor.zero_()
        elif name == "ones":
            tensor.fill_(1.0)
        elif name == "glorot_uniform":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            tensor.uniform_(-limit, limit, generator=generator)
        elif name == "glorot_normal":
            _truncated_normal(tensor, math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978, generator)
        elif name == "he_normal":
            _truncated_normal(tensor, math.sqrt(2.0 / fan_in) / 0.87962566103423978, generator)
        elif name == "he_uniform":
            limit = math.sqrt(6.0 / fan_in)
            tensor.uniform_(-limit, limit, generator=generator)
        elif name == "truncated_normal":
            _truncated_normal(tensor, 0.05, generator)
        elif name == "uniform":  # Keras's default for embeddings: RandomUniform(-0.05, 0.05)
            tensor.uniform_(-0.05, 0.05, generator=generator)
        elif name == "orthogonal":  # Keras's default for recurrent kernels (gain 1)
            torch.nn.init.orthogonal_(tensor, generator=generator)
        else:
            raise KeyError(f"unknown initializer {name!r}")


def _truncated_normal(tensor, stddev: float, generator) -> None:
    """TF's truncated normal: draws beyond two standard deviations are redrawn.

    The 0.8796... above is the standard deviation of a unit normal truncated to
    [-2, 2]; Keras's variance-scaling initializers divide by it so the
    truncated draw keeps the intended variance.
    """
    import torch

    torch.nn.init.trunc_normal_(tensor, 0.0, stddev, -2 * stddev, 2 * stddev, generator=generator)
