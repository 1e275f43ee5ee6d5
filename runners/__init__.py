"""runners/: graph -> torch module; train, run (feed/fetch), predict, time, export; checkpoints.

The Python API (runners/api.py) is importable from here: ``tfn.runners.load_model``,
``run``, ``predict``, ``read_checkpoint``, ... It loads on first use, so importing
a torch-free module such as ``tfn.runners.checkpoint`` does not import torch.
"""

from __future__ import annotations

_API = (
    "Prediction",
    "RunResult",
    "check_checkpoint",
    "diff_checkpoints",
    "export_onnx",
    "list_variables",
    "load_graph",
    "load_model",
    "predict",
    "read_checkpoint",
    "run",
)


def __getattr__(name: str):
    if name in _API:
        from tfn.runners import api

        return getattr(api, name)
    raise AttributeError(f"module 'tfn.runners' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))


__all__ = list(_API)
