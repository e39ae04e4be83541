"""Functional inner-loop optimisers: state in, state out, so ``vmap`` and ``grad`` see through them.

The released code's inner optimiser is TensorFlow 1's Adam with beta1 = 0 (``models.py``:
``partial(tf.train.AdamOptimizer, beta1=0)``), so the first moment is just the gradient and
only the second moments and the step count are state. TensorFlow adds eps to sqrt(v) *before*
the bias correction (its "epsilon hat"); PyTorch adds it after. We follow TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .params import Params

OptState = dict[str, Any]  # a pytree of tensors, e.g. {"step": t, "v": {...}}


@dataclass(frozen=True)
class SGD:
    """Plain gradient descent, ``theta - lr * g`` (the Figure 3 / Section 5 inner loop)."""

    lr: float

    def init(self, params: Params) -> OptState:
        return {}

    def step(self, params: Params, grads: Params, state: OptState) -> tuple[Params, OptState]:
        return {k: params[k] - self.lr * grads[k] for k in params}, state


@dataclass(frozen=True)
class Adam:
    """TensorFlow 1's Adam; the paper's inner optimiser uses ``beta1=0``.

    lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t);  theta <- theta - lr_t * m / (sqrt(v) + eps).
    """

    lr: float
    beta1: float = 0.0
    beta2: float = 0.999
    eps: float = 1e-8

    def init(self, params: Params) -> OptState:
        ref = next(iter(params.values()))
        state: OptState = {"step": torch.zeros((), dtype=ref.dtype, device=ref.device),
                           "v": {k: torch.zeros_like(p) for k, p in params.items()}}
        if self.beta1:
            state["m"] = {k: torch.zeros_like(p) for k, p in params.items()}
        return state

    def step(self, params: Params, grads: Params, state: OptState) -> tuple[Params, OptState]:
        t = state["step"] + 1
        lr_t = self.lr * torch.sqrt(1 - self.beta2 ** t)
        v = {k: self.beta2 * state["v"][k] + (1 - self.beta2) * grads[k] * grads[k] for k in params}
        new_state: OptState = {"step": t, "v": v}
        if self.beta1:
            m = {k: self.beta1 * state["m"][k] + (1 - self.beta1) * grads[k] for k in params}
            new_state["m"] = m
            lr_t = lr_t / (1 - self.beta1 ** t)
        else:
            m = grads  # beta1 = 0: the first moment is the gradient itself
        new = {k: params[k] - lr_t * m[k] / (torch.sqrt(v[k]) + self.eps) for k in params}
        return new, new_state


InnerOptimizer = SGD | Adam


def make_optimizer(sgd: bool, learning_rate: float) -> InnerOptimizer:
    """The released code's choice: Adam(beta1=0) by default, plain SGD with ``--sgd``."""
    return SGD(learning_rate) if sgd else Adam(learning_rate)


def map_state(fn, state: OptState) -> OptState:
    """Apply ``fn`` to every tensor of an optimiser state (e.g. mean over tasks, ``.to(device)``)."""
    if isinstance(state, dict):
        return {k: map_state(fn, v) for k, v in state.items()}
    return fn(state)


def mean_state(stacked: OptState) -> OptState:
    """The batched path's carry: the tasks' states averaged into one (``adam_carry='mean'``)."""
    return map_state(lambda x: x.mean(0), stacked)
