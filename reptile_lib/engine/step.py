"""The meta-step of ``algorithms.meta_step`` (batched path) on flat parameters, for R runs at once.

Same semantics as the reference (``adam_carry='mean'``): every task of run r starts from phi_r and
the run's Adam state, takes k inner steps, and then

- Reptile:              phi_r <- phi_r + eps_r * (mean_tau phi_tilde_tau - phi_r)
- weights w (FOMAML, Figure 3):  phi_r <- phi_r + eps_r * mean_tau sum_i w_ri (phi_{i+1} - phi_i)
- Adam state:           the tasks' states averaged (step + k, mean of the second moments).

Only the layout of the arithmetic differs, for the GPU: the parameters of all R x T adaptations
live in one buffer (:class:`~.flat.BatchLayout`), so each Adam step is 9 elementwise kernels
whatever the number of layers, runs or tasks; gradients come from one backend call
(:mod:`.nets`); the operation order of Adam, SGD and the outer update is the reference's, so on
the CPU the vmap backend reproduces ``meta_step`` bit for bit on the tests' problems
(``tests/test_engine.py``) and to the last bit of a few values at Omniglot scale (``benchmarks``).
Nothing here reads a tensor back to the host, so the step can be captured as a CUDA graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..optim import SGD, Adam, InnerOptimizer
from .flat import BatchLayout


@dataclass(frozen=True)
class FlatOptimizer:
    """The inner optimiser (``optim.Adam`` with beta1 = 0, or ``optim.SGD``) on flat buffers."""

    kind: str          # "adam" | "sgd"
    beta2: float = 0.999
    eps: float = 1e-8

    @staticmethod
    def of(opts: Sequence[InnerOptimizer]) -> "FlatOptimizer":
        kinds = {type(o) for o in opts}
        if len(kinds) != 1:
            raise ValueError("batched runs must all use Adam or all use SGD")
        first = opts[0]
        if isinstance(first, SGD):
            return FlatOptimizer("sgd")
        if not isinstance(first, Adam):
            raise TypeError(f"the engine supports optim.Adam and optim.SGD, not {type(first).__name__}")
        if any(o.beta1 for o in opts):
            raise ValueError("the engine's Adam has beta1 = 0 (the paper's inner optimiser); use the reference path")
        if len({(o.beta2, o.eps) for o in opts}) != 1:
            raise ValueError("batched runs must share Adam's beta2 and eps")
        return FlatOptimizer("adam", first.beta2, first.eps)

    @property
    def adam(self) -> bool:
        return self.kind == "adam"

    def step_sizes(self, lr: Tensor, step: Tensor | None, k: int) -> Tensor:
        """The step size of each of k inner steps: (k, R). Adam's is lr * sqrt(1 - beta2^t), t = step+1..step+k,
        computed as ``optim.Adam`` computes it."""
        if not self.adam:
            return lr.expand(k, -1)
        t = step + torch.arange(1, k + 1, dtype=step.dtype, device=step.device)[:, None]  # exact: small integers
        return lr * torch.sqrt(1 - self.beta2 ** t)

    def update(self, p: Tensor, g: Tensor, v: Tensor | None, lr_t: Tensor) -> tuple[Tensor, Tensor | None]:
        """One step on flat buffers; ``lr_t`` is a scalar tensor or one value per element."""
        if not self.adam:
            return p - lr_t * g, None
        v = self.beta2 * v + (1 - self.beta2) * g * g
        return p - lr_t * g / (torch.sqrt(v) + self.eps), v


@dataclass
class StepOutput:
    phi: Tensor              # (R, P) new meta-parameters
    v: Tensor | None         # (R, P) Adam's second moments carried on (None for SGD)
    step: Tensor | None      # (R,) Adam's step count
    losses: Tensor           # (R, T, k) inner mini-batch losses before each step


def meta_step_flat(grads, batch: BatchLayout, opt: FlatOptimizer, phi: Tensor, v: Tensor | None,
                   step: Tensor | None, lr: Tensor, batches: Sequence[tuple[Tensor, Tensor]], eps: Tensor,
                   weights: Sequence[float] | Tensor | None, uniform_lr: bool = True,
                   reptile_runs: Tensor | None = None, update=None) -> StepOutput:
    """One meta-iteration of R runs (see the module docstring).

    Args:
      grads: a backend of :mod:`.nets`.
      phi, v, step: the runs' state, (R, P), (R, P), (R,); v and step None for SGD.
      lr, eps: (R,) inner step size and this iteration's outer step size per run.
      batches: k pairs (x (R, T, B, ...), y (R, T, B)).
      weights: None for Reptile; one tuple of k step weights shared by all runs (zeros are skipped,
        as in the reference); or an (R, k) tensor of per-run weights.
      uniform_lr: all runs share ``lr`` (then no per-element step sizes are needed).
      reptile_runs: with per-run weights, (R,) True for the runs that are Reptile: they take the
        interpolation form, so a run computes the same numbers batched with others as alone.
      update: a replacement for ``opt.update`` with the same arithmetic (e.g. compiled into one kernel).
    """
    k = len(batches)
    update = update or opt.update
    lr_ts = opt.step_sizes(lr, step, k)
    p = batch.expand_runs(phi)
    state_v = batch.expand_runs(v) if opt.adam else None
    combined, losses = None, []
    for i, (x, y) in enumerate(batches):
        shared = grads.shares_first_step and i == 0
        g, l = grads(p, x, y, batch.layout.views(phi) if shared else None)
        lr_t = lr_ts[i, 0] if uniform_lr else batch.per_element(lr_ts[i])
        new, state_v = update(p, g, state_v, lr_t)
        if weights is not None:
            if isinstance(weights, Tensor):  # per-run weights: zero weights add exact zeros
                d = batch.per_element(weights[:, i]) * (new - p)
            elif weights[i]:                 # shared weights: skip zeros as the reference does
                d = weights[i] * (new - p)
            else:
                d = None
            if d is not None:
                combined = d if combined is None else combined + d
        p = new
        losses.append(l)
    e = eps[:, None]
    if weights is None or reptile_runs is not None:  # Reptile: phi + eps * (phi_tilde - phi)
        phi_tilde = batch.to_instances(p).mean(1)
        new_phi = phi + e * (phi_tilde - phi)
    if weights is not None:  # phi + eps * mean_tau sum_i w_i (phi_{i+1} - phi_i)
        direction = batch.to_instances(combined).mean(1) if combined is not None else torch.zeros_like(phi)
        general = phi + direction * e
        new_phi = general if reptile_runs is None else torch.where(reptile_runs[:, None], new_phi, general)
    new_v = batch.to_instances(state_v).mean(1) if opt.adam else None
    new_step = step + k if opt.adam else None
    return StepOutput(new_phi, new_v, new_step, torch.stack(losses, -1))


def run_weights(weights: Sequence[Sequence[float]]) -> tuple[Sequence[float] | Tensor | None, Tensor | None]:
    """``(weights, reptile_runs)`` arguments for R runs' step weights: None (all Reptile), one shared
    tuple, or per-run (R, k) weights with the mask of the Reptile runs."""
    from ..algorithms import is_reptile
    weights = [tuple(float(x) for x in w) for w in weights]
    if len({len(w) for w in weights}) != 1:
        raise ValueError("batched runs must have the same number of inner steps")
    if all(is_reptile(w) for w in weights):
        return None, None
    if len(set(weights)) == 1:
        return weights[0], None
    mask = torch.tensor([is_reptile(w) for w in weights])
    return torch.tensor(weights, dtype=torch.get_default_dtype()), (mask if bool(mask.any()) else None)
