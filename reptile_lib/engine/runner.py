"""A meta-iteration of R runs with static buffers, run eagerly or replayed as one CUDA graph.

:class:`MetaStepRunner` owns everything a meta-iteration reads and writes as fixed tensors:
phi, Adam's state, the uniform draws of the task sampler, the outer step-size schedule, an
iteration counter, a per-run "still finite" flag and a ring of per-iteration mean losses. One
call of :meth:`body` is a whole meta-iteration of every run (tasks built from the draws, k inner
steps of every task, the outer update, the NaN flag) and touches the host only through Python
scalars fixed at construction. So on a GPU it is captured once as a CUDA graph and each training
iteration is: three ``torch.rand`` calls per run into the draw buffers, then one graph replay.
Nothing is read back; the trainer looks at the flag and the loss ring every N iterations.
On a CPU the same :meth:`body` runs eagerly.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..algorithms import meta_step_size
from ..inner import LossFn
from ..optim import InnerOptimizer, OptState
from ..params import Params
from ..tasks import ClassDataset
from .flat import BatchLayout, FlatLayout
from .nets import make_grads
from .sampling import TaskDraws, TaskShape, batches_from_draws
from .step import FlatOptimizer, meta_step_flat, run_weights

ENGINES = ("eager", "graph")


def resolve_engine(engine: str, device: Any) -> str:
    """``graph`` needs CUDA: elsewhere fall back to ``eager`` and say so."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)} (or 'reference')")
    if engine == "graph" and torch.device(device).type != "cuda":
        warnings.warn(f"engine='graph' needs a CUDA device, got {device}: running the same step eagerly "
                      f"(engine='eager')", stacklevel=3)
        return "eager"
    return engine


class GraphOrEager:
    """What the training and evaluation runners share: ``body()`` runs the work eagerly; with
    ``engine == "graph"`` it is captured once (``capture()``, on first use) and replayed after."""

    engine: str
    graph: Any = None

    def run_step(self) -> None:
        """Replay the graph (capturing it first) or run the body eagerly."""
        if self.engine == "graph":
            if self.graph is None:
                self.capture()
            self.graph.replay()
        else:
            self.body()


class MetaStepRunner(GraphOrEager):
    """R runs of one task shape (seeds, or configs differing only in step sizes and step weights).

    Args:
      model, loss_fn: the network (all runs share its shapes) and its loss.
      opts: each run's inner optimiser (all Adam with beta1 = 0, or all SGD; learning rates may differ).
      shape: the meta-batch's shape (:class:`~.sampling.TaskShape`).
      data: the training split (moved to ``device``).
      eps_schedules: per run, the outer step size of every meta-iteration (``meta_step_size``).
      weights: per run, the k step weights (``Config.weights``).
      engine: ``eager`` or ``graph`` (CUDA graph; CUDA only).
      grads: gradient backend, ``auto`` | ``batched`` | ``vmap`` (see :mod:`.nets`).
      fuse_adam: compile the flat Adam update into one kernel with ``torch.compile`` (GPU).
      ring: how many iterations of mean losses are kept on the device between host checks.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, opts: Sequence[InnerOptimizer], shape: TaskShape,
                 data: ClassDataset, eps_schedules: Sequence[Sequence[float]], weights: Sequence[Sequence[float]],
                 device: Any = "cpu", engine: str = "eager", grads: str = "auto", fuse_adam: bool = False,
                 ring: int = 1000, warmup: int = 3):
        self.device = torch.device(device)
        self.engine = resolve_engine(engine, self.device)
        self.runs, self.shape = len(opts), shape
        if len(eps_schedules) != self.runs or len(weights) != self.runs:
            raise ValueError(f"{self.runs} optimisers, {len(eps_schedules)} step-size schedules, {len(weights)} weights")
        if len(weights[0]) != shape.inner_iters:
            raise ValueError(f"{len(weights[0])} step weights for {shape.inner_iters} inner steps")
        shape.check(data)
        self.data = data.to(self.device)
        self.model = model
        self.layout = FlatLayout.of(dict(model.named_parameters()))
        self.batch = BatchLayout(self.layout, self.runs, shape.meta_batch, self.device)
        self.grads = make_grads(grads, model, loss_fn, self.batch)
        self.opt = FlatOptimizer.of(opts)
        lrs = [float(o.lr) for o in opts]
        self.uniform_lr = len(set(lrs)) == 1
        self.lr = torch.tensor(lrs, device=self.device)
        w, reptile_runs = run_weights(weights)
        self.weights = w.to(self.device) if isinstance(w, Tensor) else w
        self.reptile_runs = reptile_runs.to(self.device) if reptile_runs is not None else None
        self.eps_schedule = torch.tensor([list(s) for s in eps_schedules], dtype=torch.get_default_dtype(), device=self.device)
        self.update = torch.compile(self.opt.update, dynamic=False) if fuse_adam else self.opt.update
        self.fuse_adam = fuse_adam
        R, P = self.runs, self.layout.numel
        self.phi = torch.zeros(R, P, device=self.device)
        self.v = torch.zeros(R, P, device=self.device) if self.opt.adam else None
        self.step_count = torch.zeros(R, device=self.device) if self.opt.adam else None
        self.counter = torch.zeros((), dtype=torch.long, device=self.device)
        self.ok = torch.ones(R, dtype=torch.bool, device=self.device)
        self.ring_size = ring
        self.ring = torch.zeros(R, ring, device=self.device)
        self.last_losses = torch.zeros(R, shape.meta_batch, shape.inner_iters, device=self.device)
        self.draws = TaskDraws(shape, self.data.num_classes, self.data.per_class, R, self.device)
        for buf in (self.draws.classes, self.draws.index, self.draws.batches):
            buf.copy_(torch.rand(buf.shape, generator=torch.Generator().manual_seed(0)))
        self.warmup = warmup
        self.graph = None

    # ------------------------------------------------------------------ state in and out
    def load(self, params: Sequence[Params], opt_states: Sequence[OptState], iteration: int) -> None:
        """Set every run's phi and inner-optimiser state, and the iteration the next step will be."""
        if len(params) != self.runs or len(opt_states) != self.runs:
            raise ValueError(f"{len(params)} parameter sets for {self.runs} runs")
        with torch.no_grad():
            self.phi.copy_(torch.stack([self.layout.flatten({k: v.to(self.device) for k, v in p.items()}) for p in params]))
            if self.opt.adam:
                self.v.copy_(torch.stack([self.layout.flatten({k: t.to(self.device) for k, t in s["v"].items()})
                                          for s in opt_states]))
                self.step_count.copy_(torch.stack([s["step"].to(self.device, torch.get_default_dtype()).reshape(()) for s in opt_states]))
            self.counter.fill_(iteration)
            self.ok.fill_(True)

    def params(self, r: int) -> Params:
        """Run r's phi (a copy)."""
        return {k: v.clone() for k, v in self.layout.views(self.phi[r]).items()}

    def opt_state(self, r: int) -> OptState:
        """Run r's inner-optimiser state in ``optim``'s format (a copy)."""
        if not self.opt.adam:
            return {}
        return {"step": self.step_count[r].clone(), "v": {k: v.clone() for k, v in self.layout.views(self.v[r]).items()}}

    # ------------------------------------------------------------------ one meta-iteration
    def body(self) -> None:
        """One meta-iteration of every run from the current draws, written back into the buffers."""
        batches = batches_from_draws(self.data, self.draws)
        it = self.counter.reshape(1)
        eps = self.eps_schedule.index_select(1, it)[:, 0]
        out = meta_step_flat(self.grads, self.batch, self.opt, self.phi, self.v, self.step_count, self.lr, batches,
                             eps, self.weights, self.uniform_lr, self.reptile_runs, self.update)
        phi_finite = torch.isfinite(out.phi).all(1)
        self.ok.logical_and_(torch.isfinite(out.losses).flatten(1).all(1) & phi_finite)
        self.phi.copy_(out.phi)
        if self.opt.adam:
            self.v.copy_(out.v)
            self.step_count.copy_(out.step)
        self.last_losses.copy_(out.losses)
        mean_loss = torch.where(phi_finite, out.losses.flatten(1).mean(1), torch.nan)  # NaN marks a bad phi too
        self.ring.index_copy_(1, torch.remainder(it, self.ring_size), mean_loss[:, None])
        self.counter.add_(1)

    def capture(self) -> None:
        """Capture :meth:`body` as a CUDA graph (warm-up on a side stream; the state is restored after)."""
        if self.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        mutable = [t for t in (self.phi, self.v, self.step_count, self.counter, self.ok, self.ring, self.last_losses)
                   if t is not None]
        saved = [t.clone() for t in mutable]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.body()
        torch.cuda.synchronize(self.device)
        for t, s in zip(mutable, saved):
            t.copy_(s)
        self.graph = graph

    def step(self, generators: Sequence[torch.Generator]) -> None:
        """Draw this iteration's tasks with the runs' generators, then run the meta-iteration."""
        self.draws.draw(generators)
        self.run_step()

    # ------------------------------------------------------------------ host checks
    def finite(self) -> list[bool]:
        """Whether each run has stayed finite so far (one device-to-host read)."""
        return [bool(x) for x in self.ok.tolist()]

    def ring_losses(self, start: int, stop: int) -> Tensor:
        """Mean inner losses of iterations ``start..stop-1`` (at most ``ring`` back): (R, stop - start)."""
        if stop - start > self.ring_size:
            raise ValueError(f"only the last {self.ring_size} iterations are kept")
        idx = torch.arange(start, stop, device=self.device) % self.ring_size
        return self.ring[:, idx].cpu()


def eps_schedule(meta_step: float, meta_step_final: float, meta_iters: int) -> list[float]:
    """The outer step size of every meta-iteration, as ``meta_train`` computes it."""
    return [meta_step_size(meta_step, meta_step_final, i, meta_iters) for i in range(meta_iters)]
