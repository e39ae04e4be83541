"""Parameters as plain dicts of tensors, and the algebra the meta-updates need.

Every algorithm in this library reads like the paper because of these one-liners
(the released code keeps the same algebra in ``supervised_reptile/variables.py``).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

Params = dict[str, Tensor]


def add(a: Params, b: Params) -> Params:
    return {k: a[k] + b[k] for k in a}


def subtract(a: Params, b: Params) -> Params:
    return {k: a[k] - b[k] for k in a}


def scale(a: Params, s: float | Tensor) -> Params:
    return {k: a[k] * s for k in a}


def interpolate(old: Params, new: Params, eps: float | Tensor) -> Params:
    """The Reptile outer step, ``phi + eps * (phi_tilde - phi)`` (Algorithm 1, last line)."""
    return {k: old[k] + eps * (new[k] - old[k]) for k in old}


def average(many: Iterable[Params]) -> Params:
    """Mean of a sequence of parameter dicts (Algorithm 2's ``1/n sum_i W_i``)."""
    many = list(many)
    return {k: torch.stack([p[k] for p in many]).mean(0) for k in many[0]}


def mean_over_tasks(stacked: Params) -> Params:
    """Mean over the leading (task) dimension of a ``vmap``-stacked parameter dict."""
    return {k: v.mean(0) for k, v in stacked.items()}


def stack(many: Iterable[Params]) -> Params:
    many = list(many)
    return {k: torch.stack([p[k] for p in many]) for k in many[0]}


def unstack(stacked: Params) -> list[Params]:
    n = next(iter(stacked.values())).shape[0]
    return [{k: v[i] for k, v in stacked.items()} for i in range(n)]


def clone(a: Params) -> Params:
    return {k: v.detach().clone() for k, v in a.items()}


def detach(a: Params) -> Params:
    return {k: v.detach() for k, v in a.items()}


def all_finite(a: Params) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in a.values())


def flatten(a: Params) -> Tensor:
    """One vector of all parameters, in the dict's order (for distances and dot products)."""
    return torch.cat([v.reshape(-1) for v in a.values()])


def dot(a: Params, b: Params) -> Tensor:
    return sum((a[k] * b[k]).sum() for k in a)  # type: ignore[return-value]


def norm(a: Params) -> Tensor:
    return dot(a, a).sqrt()
