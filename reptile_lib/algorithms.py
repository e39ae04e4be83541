"""Reptile, FOMAML, MAML and the Figure 3 gradient combinations as meta-steps.

A meta-step takes phi, adapts a meta-batch of tasks with ``inner_loop`` and moves phi:

- Reptile (Algorithms 1 and 2):  phi <- phi + eps * (mean_tau phi_tilde_tau - phi)
- FOMAML, released ``--foml``:    phi <- phi + eps * mean_tau (phi_k - phi_{k-1})   (the last step)
- any combination (Figure 3):    phi <- phi + eps * mean_tau sum_i w_i (phi_{i+1} - phi_i)
- MAML (Section 4):              the gradient of the last mini-batch's loss through the inner loop

The tasks of a meta-batch adapt one after another (``batched=False``: the released code's
loop) or all at once under ``torch.func.vmap`` (``batched=True``). The released code carries
Adam's state from one task to the next (``adam_carry='sequential'``); tasks adapting in
parallel cannot, so the batched path starts every task from the shared state and then
keeps the tasks' mean state (``adam_carry='mean'``). The serial path implements both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor
from torch.func import grad_and_value, vmap

from . import params as P
from .inner import Batch, LossFn, inner_loop
from .optim import InnerOptimizer, OptState, mean_state
from .params import Params

AdamCarry = Literal["sequential", "mean"]


def step_weights(k: int, steps: Sequence[int] | None = None, average: bool = False) -> tuple[float, ...]:
    """Weights over the k inner updates (1-based ``steps``; ``None`` = all of them).

    Reptile is ``step_weights(k)`` (g1 + ... + gk), FOMAML ``step_weights(k, [k])`` (gk),
    Figure 3's averages ``step_weights(k, average=True)`` ((g1 + ... + gk) / k).
    """
    chosen = set(range(1, k + 1) if steps is None else steps)
    if not chosen or not chosen <= set(range(1, k + 1)):
        raise ValueError(f"steps must be a non-empty subset of 1..{k}, got {sorted(chosen)}")
    w = 1.0 / len(chosen) if average else 1.0
    return tuple(w if i in chosen else 0.0 for i in range(1, k + 1))


def is_reptile(weights: Sequence[float]) -> bool:
    return all(w == 1.0 for w in weights)


def meta_step_size(meta_step: float, meta_step_final: float, iteration: int, meta_iters: int) -> float:
    """Outer step size annealed linearly from ``meta_step`` to ``meta_step_final`` (released ``train.py``)."""
    frac = iteration / meta_iters
    return frac * meta_step_final + (1 - frac) * meta_step


@dataclass
class MetaStepResult:
    params: Params    # the new phi
    state: OptState   # the inner optimiser's state carried to the next meta-iteration
    losses: Tensor    # (tasks, k) inner mini-batch losses


def task_slice(batches: Sequence[Batch], t: int) -> list[Batch]:
    """The mini-batches of task ``t`` of a meta-batch (each tensor has a leading task axis)."""
    return [(x[t], y[t]) for x, y in batches]


def meta_step(loss_fn: LossFn, phi: Params, opt: InnerOptimizer, state: OptState,
              batches: Sequence[Batch], eps: float, weights: Sequence[float],
              batched: bool = True, adam_carry: AdamCarry = "mean") -> MetaStepResult:
    """One meta-iteration of Reptile / FOMAML / a gradient combination (see module docstring).

    ``batches`` holds the k inner mini-batches, each ``(x, y)`` with a leading task axis:
    x is (tasks, batch, ...). ``weights`` comes from :func:`step_weights`.
    """
    if adam_carry not in ("sequential", "mean"):
        raise ValueError(f"adam_carry must be 'sequential' or 'mean', got {adam_carry!r}")
    if len(weights) != len(batches):
        raise ValueError(f"{len(weights)} step weights for {len(batches)} inner steps")
    reptile = is_reptile(weights)
    w = None if reptile else tuple(weights)
    if batched:
        if adam_carry == "sequential":
            raise ValueError("adam_carry='sequential' runs tasks one after another: use batched=False")

        def adapt(task_batches):
            r = inner_loop(loss_fn, phi, opt, state, task_batches, w)
            return r.params, r.state, r.losses, (r.combined if w is not None else {})

        finals, states, losses, combined = vmap(adapt)(list(batches))
        new_state = mean_state(states)
        phi_tilde = P.mean_over_tasks(finals)
        direction = None if reptile else P.mean_over_tasks(combined)
    else:
        n_tasks = batches[0][0].shape[0]
        results, carried = [], state
        for t in range(n_tasks):
            r = inner_loop(loss_fn, phi, opt, carried if adam_carry == "sequential" else state,
                           task_slice(batches, t), w)
            carried = r.state
            results.append(r)
        if adam_carry == "sequential":
            new_state = carried
        else:
            new_state = mean_state(_stack_states([r.state for r in results]))
        losses = torch.stack([r.losses for r in results])
        phi_tilde = P.average(r.params for r in results)
        direction = None if reptile else P.average(r.combined for r in results)
    if reptile:
        new_phi = P.interpolate(phi, phi_tilde, eps)  # phi + eps * (phi_tilde - phi)
    else:
        new_phi = P.add(phi, P.scale(direction, eps))
    return MetaStepResult(P.detach(new_phi), new_state, losses.detach())


def _stack_states(states: list[OptState]) -> OptState:
    first = states[0]
    if isinstance(first, dict):
        return {k: _stack_states([s[k] for s in states]) for k in first}
    return torch.stack(states)


def maml_meta_gradient(loss_fn: LossFn, phi: Params, opt: InnerOptimizer,
                       support: Sequence[Batch], query: Batch,
                       first_order: bool = False) -> tuple[Params, Tensor]:
    """MAML's meta-gradient for one task: d/dphi L_query(U(phi)) (Section 4, eq. 3).

    ``support`` are the inner mini-batches; the inner optimiser starts from a fresh state.
    ``first_order=True`` treats the inner gradients as constants (first-order MAML).
    """

    def outer_loss(p: Params) -> Tensor:
        r = inner_loop(loss_fn, p, opt, opt.init(p), support, first_order=first_order)
        return loss_fn(r.params, *query)

    return grad_and_value(outer_loss)(phi)


def maml_batch_gradient(loss_fn: LossFn, phi: Params, opt: InnerOptimizer,
                        support: Sequence[Batch], query: Batch,
                        first_order: bool = False) -> tuple[Params, Tensor]:
    """The meta-gradient averaged over a meta-batch, tasks batched with ``vmap``.

    Tensors of ``support`` and ``query`` carry a leading task axis.
    """

    def one(task_support, task_query):
        return maml_meta_gradient(loss_fn, phi, opt, task_support, task_query, first_order)

    grads, losses = vmap(one)(list(support), query)
    return P.mean_over_tasks(grads), losses.mean()
