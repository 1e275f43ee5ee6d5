"""runners/: graph -> torch module; train, run (feed/fetch), predict, time, export; checkpoints.

The Python API (runners/api.py, its ``__all__``) is importable from here:
``tfn.runners.load_model``, ``run``, ``predict``, ``read_checkpoint``, ... It
loads on first use, so importing a torch-free module such as
``tfn.runners.checkpoint`` or ``tfn.runners.inspect`` does not import torch.
"""

from __future__ import annotations

import importlib
import importlib.util


def __getattr__(name: str):
    # `from tfn.runners import checkpoint` asks here before importing the submodule: let it
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is None:
        api = importlib.import_module(f"{__name__}.api")
        if name in api.__all__:
            return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
