"""``fused_meta_step``: the engine's step behind ``algorithms.meta_step``'s signature (``meta_train(step_fn=...)``)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..algorithms import AdamCarry, MetaStepResult, meta_step
from ..inner import Batch, LossFn
from ..optim import Adam, InnerOptimizer, OptState
from ..params import Params
from .flat import BatchLayout, FlatLayout
from .nets import VmapGrads
from .step import FlatOptimizer, meta_step_flat, run_weights


def fused_meta_step(loss_fn: LossFn, phi: Params, opt: InnerOptimizer, state: OptState,
                    batches: Sequence[Batch], eps: float, weights: Sequence[float],
                    batched: bool = True, adam_carry: AdamCarry = "mean") -> MetaStepResult:
    """Drop-in for :func:`reptile_lib.algorithms.meta_step`: the engine's flat step, vmap backend, one run.

    What the engine does not batch (``batched=False``, sequential Adam carry, Adam with beta1 != 0)
    goes to the reference ``meta_step`` unchanged. Builds its index maps on every call: a
    correctness bridge (``meta_train(step_fn=fused_meta_step)``), not the fast path.
    """
    if not batched or adam_carry != "mean" or (isinstance(opt, Adam) and opt.beta1):
        return meta_step(loss_fn, phi, opt, state, batches, eps, weights, batched, adam_carry)
    if len(weights) != len(batches):
        raise ValueError(f"{len(weights)} step weights for {len(batches)} inner steps")
    layout = FlatLayout.of(phi)
    ref = next(iter(phi.values()))
    batch = BatchLayout(layout, 1, batches[0][1].shape[0], ref.device)
    fopt = FlatOptimizer.of([opt])
    out = meta_step_flat(
        VmapGrads(loss_fn, batch), batch, fopt, layout.flatten(phi)[None],
        layout.flatten(state["v"])[None] if fopt.adam else None,
        state["step"].reshape(1) if fopt.adam else None,
        torch.tensor([opt.lr], dtype=ref.dtype, device=ref.device),
        [(x[None], y[None]) for x, y in batches], torch.tensor([eps], dtype=ref.dtype, device=ref.device),
        run_weights([weights])[0])
    new_state = {"step": out.step[0], "v": layout.views(out.v[0])} if fopt.adam else {}
    return MetaStepResult(layout.views(out.phi[0]), new_state, out.losses[0].detach())
