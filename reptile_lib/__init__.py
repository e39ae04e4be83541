"""reptile_lib: Reptile, FOMAML and MAML (Nichol, Achiam & Schulman 2018) as a small functional PyTorch library.

Importing the package is cheap (PyTorch loads when a submodule is first used)::

    from reptile_lib import algorithms, models, tasks, configs
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("algorithms", "book", "cli", "configs", "data", "distributed", "encoding_check", "engine", "evaluate",
               "experiment", "figures", "geometry", "inner", "models", "optim", "paper", "params", "paths", "plots",
               "report", "results", "reproduce", "sine", "sweeps", "tasks", "taylor", "train")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
