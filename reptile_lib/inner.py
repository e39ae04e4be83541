"""The inner loop: k optimiser steps on a task's mini-batches, written as a pure function.

``inner_loop`` is what Algorithm 1 calls ``U^k_tau(phi)``. It takes parameters and optimiser
state and returns new ones, so the same code runs one task (the serial path), a meta-batch of
tasks under ``torch.func.vmap`` (Algorithm 2), and, differentiated with ``torch.func.grad``,
second-order MAML.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

from .optim import InnerOptimizer, OptState
from .params import Params

LossFn = Callable[[Params, Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]  # (inputs, targets)


@dataclass(frozen=True)
class CrossEntropy:
    """Softmax cross-entropy of ``model`` called with the given parameters.

    ``reduction='sum'`` is the released code's loss: its models hand TensorFlow the per-example
    loss vector, and ``minimize`` differentiates its *sum*. The sum matters wherever a step is
    not scale-free: plain SGD (Figure 3), and the Adam state carried from training batches into
    evaluation batches of another size. ``'mean'`` is kept only to measure that difference.
    """

    model: nn.Module
    reduction: str = "sum"

    def __post_init__(self):
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' (the released code) or 'mean', got {self.reduction!r}")

    def __call__(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(self.model, params, (x,)), y, reduction=self.reduction)


def classification_loss(model: nn.Module, reduction: str = "sum") -> LossFn:
    """The classification loss of the paper's runs (:class:`CrossEntropy`; summed over the batch)."""
    return CrossEntropy(model, reduction)


def regression_loss(model: nn.Module) -> LossFn:
    """Mean squared error (Figure 1's sine regression), as the authors' sine demo computes it."""

    def loss(params: Params, x: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(functional_call(model, params, (x,)), y)

    return loss


@dataclass
class InnerResult:
    params: Params          # phi_tilde = U^k(phi)
    state: OptState         # the optimiser state after the k steps
    losses: Tensor          # (k,) mini-batch loss before each step
    combined: Params | None  # sum_i w_i (phi_{i+1} - phi_i), when weights were given


def inner_loop(loss_fn: LossFn, params: Params, opt: InnerOptimizer, state: OptState,
               batches: Sequence[Batch], weights: Sequence[float] | None = None,
               first_order: bool = True) -> InnerResult:
    """Run ``len(batches)`` optimiser steps from ``params`` (Section 2, ``U^k_tau``).

    ``weights`` (one per step) accumulates a weighted sum of the steps' updates, the
    machinery behind FOMAML (only the last step) and the Figure 3 combinations. With
    ``first_order=False`` the gradients stay in the graph of an enclosing ``torch.func.grad``
    (second-order MAML); otherwise they are treated as constants.
    """
    combined = None
    losses = []
    for i, (x, y) in enumerate(batches):
        grads, loss = grad_and_value(loss_fn)(params, x, y)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        new, state = opt.step(params, grads, state)
        if weights is not None and weights[i]:
            step = {k: weights[i] * (new[k] - params[k]) for k in new}
            combined = step if combined is None else {k: combined[k] + step[k] for k in step}
        params = new
        losses.append(loss)
    if weights is not None and combined is None:
        combined = {k: torch.zeros_like(v) for k, v in params.items()}
    return InnerResult(params, state, torch.stack(losses), combined)
