"""Mixed precision (`train.precision`): autocast for the forward pass, fp32 master weights.

    fp32   no autocast: every op in float32 (the default)
    bf16   torch.autocast to bfloat16, on CPU and on CUDA; bfloat16 has float32's
           exponent range, so gradients need no loss scaling
    fp16   torch.autocast to float16 with a dynamic loss scale (torch.amp.GradScaler);
           CUDA only

The variables stay float32 whatever the precision: autocast casts them per op
inside the forward pass, the optimizer updates the float32 values, and
checkpoints hold float32. Validation and test run in float32.
"""

from __future__ import annotations

import contextlib

import torch

from tfn.specs.errors import UserError

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The training step's precision: `autocast()` around the forward pass, then
    `backward(loss)`, `unscale(optimizer)` before gradient clipping and `step(optimizer)`.

    With fp32 and bf16 these are the plain calls; fp16 scales the loss before
    the backward pass and skips a step whose gradients overflowed (then lowers
    the scale), as torch.amp.GradScaler does.
    """

    def __init__(self, name: str, device: torch.device):
        if name == "fp16" and device.type != "cuda":
            # autocast to float16 on CPU runs, but slower than fp32 and without a loss scaler: no reason to offer it
            raise UserError(f"train.precision: error: fp16 needs a CUDA device (this run is on {device}); use bf16 on CPU")
        if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError(f"train.precision: error: {torch.cuda.get_device_name(device)} has no bfloat16 support; use fp16")
        self.name = name
        self.device_type = device.type
        self.dtype = AUTOCAST_DTYPES[name]
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the loss scale (fp16), so clipping sees their true norms."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict:
        """The loss scale and its growth counter (JSON numbers); empty without a scaler."""
        return {} if self.scaler is None else dict(self.scaler.state_dict())

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
