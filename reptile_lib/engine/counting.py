"""Counting what a meta-iteration launches: ATen compute ops (any device) and CUDA kernels (profiler).

A 5-way meta-iteration is a few GFLOP spread over hundreds of small dependent kernels, so on a GPU
its time is about (kernels x launch-to-launch latency) even inside a CUDA graph. ``count_ops`` counts
the ATen operators that do work (views and metadata changes excluded) under a dispatch mode: on a
CPU-only machine that is the best available estimate of the kernel count (roughly one kernel each;
convolutions, sorts and reductions can launch two or three). ``count_cuda_kernels`` counts the real
kernels with ``torch.profiler`` where CUDA is present.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Operators that only make views or change metadata: no kernel.
_NO_KERNEL = {
    "view", "_unsafe_view", "reshape", "_reshape_alias", "expand", "as_strided", "t", "transpose", "permute",
    "select", "slice", "split", "split_with_sizes", "unbind", "unsqueeze", "squeeze", "alias", "detach",
    "unflatten", "flatten", "narrow", "diagonal", "lift_fresh", "empty", "empty_like", "empty_strided",
    "new_empty", "new_empty_strided", "_to_copy_noop", "resize_", "set_", "result_type", "is_same_size",
    "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "_local_scalar_dense", "expand_as", "view_as",
    "movedim", "_has_compatible_shallow_copy_type", "size", "stride", "dim", "numel", "is_nonzero",
}


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in _NO_KERNEL:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> Counter:
    """ATen operators that do work while ``fn()`` runs (an estimate of kernel launches)."""
    with _OpCounter() as counter:
        fn()
    return counter.ops


def count_cuda_kernels(fn: Callable[[], object]) -> int:
    """CUDA kernels (and memcpy/memset) launched while ``fn()`` runs, from ``torch.profiler`` (CUDA only)."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    n = 0
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            n += 1
    return n
