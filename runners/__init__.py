"""runners/: graph -> torch module; train, run (feed/fetch), predict, time, export; checkpoints.

The Python API (runners/api.py, its ``__all__``) is importable from here:
``tfn.runners.load_model``, ``run``, ``predict``, ``read_checkpoint``, ... It
loads on first use, so importing a torch-free module such as
``tfn.runners.checkpoint`` or ``tfn.runners.inspect`` does not import torch.
"""

from __future__ import annotations


def __getattr__(name: str):
    if not name.startswith("_"):
        from tfn.runners import api

        if name in api.__all__:
            return getattr(api, name)
    raise AttributeError(f"module 'tfn.runners' has no attribute {name!r}")
