"""Refusing a model that cannot fit: its memory floor for a batch against what the device has free.

`tfn train`, `tfn time` and `tfn run` call :func:`require_memory` before they
allocate, so a model too large for the machine stops at once with exit status
2 and a message, never in an allocator failure (or the kernel's OOM killer)
minutes later. The floor is specs.summary.memory_estimate: the variables plus
the activations of the batch; what is free is CUDA's free memory on a GPU,
the system's available memory on the CPU.

Reusing host memory: a training step allocates and frees the same large
activation and gradient buffers every time. glibc's malloc returns the top of
its heap to the OS once more than its trim threshold is free (and serves blocks
above its mmap threshold from fresh mappings), so the next step touches new
pages: on a 2-core VM that cost thousands of page faults per step, about a
fifth of the reference CNN's step (TensorFlow's allocator keeps its memory).
:func:`keep_freed_memory` raises both thresholds, so the heap keeps what a step
freed for the next one; peak memory is unchanged (the heap holds at most what
was live at the peak).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
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


# --- reusing host memory ------------------------------------------------------------

# mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: the largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: mallopt takes an int: the heap keeps up to 2 GiB free at its top
TRIM_THRESHOLD = 2**31 - 1
#: a user who tunes malloc through its environment keeps their settings
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (once per process); True when applied.

    Does nothing (False) off Linux, under another C library, or when the
    environment already tunes malloc (MALLOC_*_ variables, GLIBC_TUNABLES).
    """
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    tuned = any(name in os.environ for name in USER_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
    if not sys.platform.startswith("linux") or tuned:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt answers 1 on success; setting either threshold also ends glibc's own adjustment of them
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
