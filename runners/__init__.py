"""runners/: graph -> torch module; train, run (feed/fetch), predict, time, export; checkpoints.

The Python API (runners/api.py, its ``__all__``) is importable from here:
``tfn.runners.load_model``, ``run``, ``predict``, ``read_checkpoint``, ... It
loads on first use, so importing a torch-free module such as
``tfn.runners.checkpoint`` or ``tfn.runners.inspect`` does not import torch.
"""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    if not name.startswith("_") and name != "api":
        # import_module, not `from tfn.runners import api`: that would ask this very function for "api"
        api = importlib.import_module("tfn.runners.api")
        if name in api.__all__:
            return getattr(api, name)
    raise AttributeError(f"module 'tfn.runners' has no attribute {name!r}")
