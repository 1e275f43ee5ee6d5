"""Refusing a model that cannot fit: its memory floor for a batch against what the device has free.

`tfn train`, `tfn time` and `tfn run` call :func:`require_memory` before they
allocate, so a model too large for the machine stops at once with exit status
2 and a message, never in an allocator failure (or the kernel's OOM killer)
minutes later. The floor is specs.summary.memory_estimate: the variables plus
the activations of the batch; what is free is CUDA's free memory on a GPU,
the system's available memory on the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from tfn.specs.errors import UserError
from tfn.specs.graph import Graph
from tfn.specs.summary import format_bytes, memory_estimate


def available_memory(device: torch.device | str) -> int | None:
    """Bytes the device can still allocate (None where the system does not say)."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count():
            return None  # placing the model reports the missing device
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def require_memory(graph: Graph, batch_size: int, device: torch.device | str, *, parameters_allocated: bool = False) -> None:
    """UserError when the model's memory floor for `batch_size` exceeds what `device` has free.

    With `parameters_allocated` (a model already loaded) only the activations must still fit.
    """
    estimate = memory_estimate(graph)
    need = estimate.for_batch(batch_size, parameters=not parameters_allocated)
    free = available_memory(device)
    if free is None or need <= free:
        return
    parts = [] if parameters_allocated else [f"{format_bytes(estimate.parameter_bytes)} of variables"]
    parts.append(f"{batch_size:,} x {format_bytes(estimate.activation_bytes_per_sample)} of activations per sample")
    raise UserError(
        f"{graph.name}: error: a batch of {batch_size:,} needs at least {format_bytes(need)} ({' + '.join(parts)}), "
        f"more than the {format_bytes(free)} {torch.device(device)} has free; use a smaller batch or a smaller model"
    )
