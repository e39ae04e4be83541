"""Sine-wave regression tasks (Figure 1): f(x) = a sin(x + b), a ~ U[0.1, 5], b ~ U[0, 2 pi], x ~ U[-5, 5].

Every draw takes an explicit ``torch.Generator``: the global RNG is never touched, so the
same seed gives the same tasks in a test, a notebook and a training run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, 2 * math.pi)
X_RANGE = (-5.0, 5.0)


@dataclass(frozen=True)
class SineTasks:
    """A batch of sine tasks: ``amplitude`` and ``phase`` are (tasks,)."""

    amplitude: Tensor
    phase: Tensor

    def __len__(self) -> int:
        return self.amplitude.shape[0]

    def __call__(self, x: Tensor) -> Tensor:
        """Targets a sin(x + b) for inputs x of shape (tasks, points) -> (tasks, points)."""
        if x.dim() != 2 or x.shape[0] != len(self):
            raise ValueError(f"x must be (tasks={len(self)}, points), got {tuple(x.shape)}")
        return self.amplitude[:, None] * torch.sin(x + self.phase[:, None])

    def __getitem__(self, i) -> "SineTasks":
        return SineTasks(self.amplitude[i], self.phase[i])


def _uniform(n: int, low: float, high: float, generator: torch.Generator, dtype=torch.float32) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=dtype)


def sample_tasks(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> SineTasks:
    """``n`` tasks with a ~ U[0.1, 5] and b ~ U[0, 2 pi] (Nichol et al. 2018, Figure 1)."""
    if n < 1:
        raise ValueError(f"need at least one task, got n={n}")
    amplitude = _uniform(n, *AMPLITUDE, generator, dtype)
    phase = _uniform(n, *PHASE, generator, dtype)
    return SineTasks(amplitude, phase)


def sample_inputs(n_tasks: int, n_points: int, generator: torch.Generator,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Inputs x ~ U[-5, 5], shape (n_tasks, n_points)."""
    low, high = X_RANGE
    return low + (high - low) * torch.rand(n_tasks, n_points, generator=generator, dtype=dtype)


def grid(n: int = 50, dtype: torch.dtype = torch.float32) -> Tensor:
    """The evaluation grid: ``n`` evenly spaced points over [-5, 5], ends included.

    The authors' demo measures its loss on ``np.linspace(-5, 5, 50)``; we use the same grid.
    """
    return torch.linspace(*X_RANGE, n, dtype=dtype)


def inner_batches(x: Tensor, y: Tensor, inner_batch: int, inner_iters: int,
                  generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    """Cut each task's points into ``inner_iters`` mini-batches of ``inner_batch`` (Reptile's inner loop).

    The points of every task are shuffled (one permutation per task) and taken in order;
    when the k mini-batches need more points than a task has, a fresh shuffle continues the
    sequence, as the released code's mini-batch iterator does. x, y: (tasks, points).
    Returns k pairs (x_i, y_i) of shape (tasks, inner_batch).
    """
    n_tasks, n_points = x.shape
    if inner_batch > n_points:
        raise ValueError(f"inner_batch={inner_batch} exceeds the {n_points} points of a task")
    needed = inner_batch * inner_iters
    order = []
    while sum(o.shape[1] for o in order) < needed:
        order.append(torch.argsort(torch.rand(n_tasks, n_points, generator=generator), dim=1))
    idx = torch.cat(order, dim=1)[:, :needed].reshape(n_tasks, inner_iters, inner_batch)
    return [(x.gather(1, idx[:, i]), y.gather(1, idx[:, i])) for i in range(inner_iters)]
