"""Data sets by name: ``load_dataset('omniglot')`` -> {'train': ClassDataset, 'test': ...}.

A small registry in the spirit of learn2learn's benchmarks: one function per data set returns
its splits. Data is read from ``../shared/datasets`` by default (see :mod:`reptile_lib.paths`).
Importing this package is cheap: each loader imports torch, numpy and Pillow when it runs.

| name | splits | images |
| --- | --- | --- |
| ``omniglot`` | train (4,800 = 1,200 x 4 rotations), test (423) | 20 x 1x28x28, 0/1 |
| ``cifar_fs`` | train / val / test = 64 / 16 / 20 | 600 x 3x32x32, /255 |
| ``fc100`` | train / val / test = 60 / 20 / 20 | 600 x 3x32x32, /255 |
| ``miniimagenet`` | train / val / test = 64 / 16 / 20 (if you have it) | 600 x 3x84x84, /255 |
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..tasks import ClassDataset


def _omniglot(root, **kw):
    from .omniglot import load_omniglot
    return load_omniglot(root, **kw)


def _cifar_fs(root, **kw):
    from .cifar import load_cifar
    return load_cifar(root, "cifar_fs", **kw)


def _fc100(root, **kw):
    from .cifar import load_cifar
    return load_cifar(root, "fc100", **kw)


def _miniimagenet(root, **kw):
    from .miniimagenet import load_miniimagenet
    return load_miniimagenet(root, **kw)


LOADERS: dict[str, Callable[..., dict[str, "ClassDataset"]]] = {
    "omniglot": _omniglot, "cifar_fs": _cifar_fs, "fc100": _fc100, "miniimagenet": _miniimagenet,
}


def load_dataset(name: str, root: str | Path | None = None, **kwargs) -> dict[str, "ClassDataset"]:
    """The splits of data set ``name`` (``train``, ``test`` and, where defined, ``val``)."""
    if name not in LOADERS:
        raise KeyError(f"unknown data set {name!r}: choose one of {', '.join(sorted(LOADERS))}")
    return LOADERS[name](root, **kwargs)
