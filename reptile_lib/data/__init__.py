"""Data sets by name: ``load_dataset('omniglot')`` -> {'train': ClassDataset, 'test': ...}.

A small registry in the spirit of learn2learn's benchmarks: one function per data set returns
its splits. Data is read from ``../shared/datasets`` by default (see :mod:`reptile_lib.paths`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..tasks import ClassDataset


def _omniglot(root, **kw):
    from .omniglot import load_omniglot
    return load_omniglot(root, **kw)


LOADERS: dict[str, Callable[..., dict[str, ClassDataset]]] = {"omniglot": _omniglot}


def load_dataset(name: str, root: str | Path | None = None, **kwargs) -> dict[str, ClassDataset]:
    """The splits of data set ``name`` (``train``, ``test`` and, where defined, ``val``)."""
    if name not in LOADERS:
        raise KeyError(f"unknown data set {name!r}: choose one of {', '.join(sorted(LOADERS))}")
    return LOADERS[name](root, **kwargs)
