"""Meta-training with the engine: ``meta_train``'s loop, results and checkpoints, R runs at once.

``meta_train_runs`` trains several runs that share every shape (seeds of one config, or e.g.
Figure 3 curves that differ only in step weights or outer step size) as one batched computation,
and ``fast_meta_train`` is its one-run form with ``meta_train``'s signature. What stays exactly
``meta_train``'s: the task stream (each run's own ``tasks`` generator draws the same numbers in the
same order), the outer step-size schedule, learning curves (``train.monitor`` with the run's own
``monitor`` generator, at iteration 1 and every ``eval_interval``), checkpoint files (the same
format, per run; ``meta_train`` and the engine resume each other's), ``stop_at``, ``deadline`` and
``TrainingDiverged`` with nothing non-finite kept. What differs: the NaN check reads the device
every ``check_every`` iterations (and before every checkpoint and learning-curve point) instead of
every iteration, so a GPU never waits for the host.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..configs import Config
from ..optim import make_optimizer
from ..tasks import ClassDataset
from ..train import Learner, TrainingDiverged, TrainState, init_state, load_checkpoint, make_learner, monitor, save_checkpoint
from .runner import MetaStepRunner, eps_schedule, resolve_engine
from .sampling import TaskShape

# Fields that fix a meta-iteration's shapes or schedule: batched runs must agree on them.
SHARED_FIELDS = ("dataset", "model", "classes", "train_shots", "inner_batch", "inner_iters", "meta_batch",
                 "meta_iters", "replacement", "foml_tail", "sgd", "image_size", "batched", "adam_carry")


@dataclass(frozen=True)
class RunSpec:
    """One run of a batch: its config, seed and (optional) checkpoint file."""

    config: Config
    seed: int = 0
    checkpoint: str | os.PathLike | None = None


def check_batchable(configs: Sequence[Config]) -> None:
    """Refuse, with the field named, runs that cannot share one batched meta-iteration."""
    first = configs[0]
    for c in configs:
        if not c.batched or c.adam_carry != "mean":
            released = " (the released order)" if c.adam_carry == "sequential" else ""
            raise ValueError(f"{c.name}: the engine batches tasks (batched=True, adam_carry='mean'); "
                             f"this config has batched={c.batched}, adam_carry={c.adam_carry!r}{released}: use "
                             f"--engine auto or reference, or --set batched=true adam_carry=mean for the batched path")
        for f in SHARED_FIELDS:
            if getattr(c, f) != getattr(first, f):
                raise ValueError(f"runs batched together must share {f}: {first.name} has {getattr(first, f)!r}, "
                                 f"{c.name} has {getattr(c, f)!r}; train them separately")


def default_check_every(device: Any) -> int:
    """How often the host reads the NaN flag: every iteration on a CPU (as ``meta_train``), every 100 on a GPU."""
    return 100 if torch.device(device).type == "cuda" else 1


def meta_train_runs(runs: Sequence[RunSpec], train_data: ClassDataset, *, device: Any = "cpu",
                    engine: str = "graph", grads: str = "auto", fuse_adam: bool = False,
                    monitor_splits: dict[str, ClassDataset] | None = None, checkpoint_every: int = 1000,
                    resume: bool = True, deadline: float | None = None, progress: bool = False,
                    stop_at: int | None = None, learner: Learner | None = None,
                    check_every: int | None = None) -> list[TrainState]:
    """Meta-train every run of ``runs`` together (Algorithm 2 per run); returns their final states.

    The arguments are ``meta_train``'s (see there), plus: ``engine`` ('graph' on CUDA, 'eager'
    anywhere), ``grads`` (the gradient backend of :mod:`.nets`), ``fuse_adam`` (compile the Adam
    update into one kernel) and ``check_every`` (iterations between host reads of the NaN flag).
    """
    if not runs:
        raise ValueError("no runs to train")
    configs = [r.config for r in runs]
    check_batchable(configs)
    c0 = configs[0]
    engine = resolve_engine(engine, device)
    check_every = check_every or default_check_every(device)
    base = learner or make_learner(c0, train_data.image_shape, device)
    learners = [Learner(base.model, base.loss_fn, make_optimizer(c.sgd, c.learning_rate)) for c in configs]
    states = []
    for spec, lrn in zip(runs, learners):
        if spec.checkpoint is not None and resume and Path(spec.checkpoint).exists():
            states.append(load_checkpoint(spec.checkpoint, spec.config, device))
        else:
            states.append(init_state(spec.config, lrn, spec.seed, device))
    start = [s.iteration for s in states]
    if len(set(start)) > 1:  # checkpoints of different progress: batch the runs that are at the same point
        kwargs = dict(device=device, engine=engine, grads=grads, fuse_adam=fuse_adam, monitor_splits=monitor_splits,
                      checkpoint_every=checkpoint_every, resume=resume, deadline=deadline, progress=progress,
                      stop_at=stop_at, learner=base, check_every=check_every)
        out: list[TrainState | None] = [None] * len(runs)
        for it in sorted(set(start)):
            idx = [i for i, s in enumerate(start) if s == it]
            for i, st in zip(idx, meta_train_runs([runs[i] for i in idx], train_data, **kwargs)):
                out[i] = st
        return out  # type: ignore[return-value]
    iteration = start[0]
    train_data = train_data.to(device)
    monitor_splits = {k: v.to(device) for k, v in (monitor_splits or {}).items()}
    runner = MetaStepRunner(base.model, base.loss_fn, [l.opt for l in learners], TaskShape.of(c0), train_data,
                            [eps_schedule(c.meta_step, c.meta_step_final, c.meta_iters) for c in configs],
                            [c.weights for c in configs], device, engine, grads, fuse_adam,
                            ring=max(check_every, max(c.eval_interval for c in configs), checkpoint_every))
    runner.load([s.params for s in states], [s.opt_state for s in states], iteration)
    generators = [s.generators["tasks"] for s in states]
    end = min(c0.meta_iters, stop_at) if stop_at is not None else c0.meta_iters
    bar = None
    if progress:
        from tqdm.auto import tqdm
        label = c0.name if len(runs) == 1 else f"{c0.name} x{len(runs)}"
        bar = tqdm(total=c0.meta_iters, initial=iteration, desc=label, unit="it", mininterval=2.0)
    t0 = time.time()
    walls = [s.wall_time_s for s in states]
    checked = iteration

    def sync_states() -> None:
        for r, s in enumerate(states):
            s.params, s.opt_state, s.iteration = runner.params(r), runner.opt_state(r), iteration
            s.wall_time_s = walls[r] + time.time() - t0

    def verify() -> None:  # raise on the first non-finite iteration since the last check
        nonlocal checked
        if iteration > checked and not all(runner.finite()):
            losses = runner.ring_losses(checked, iteration)
            for r, ok in enumerate(runner.finite()):
                if not ok:
                    bad = (~torch.isfinite(losses[r])).nonzero()
                    j = int(bad[0]) if len(bad) else 0
                    raise TrainingDiverged(
                        f"{configs[r].name}: the inner loss became {float(losses[r, j])} at meta-iteration "
                        f"{checked + j}; nothing after the last checkpoint was kept. Lower --learning-rate or "
                        f"--meta-step and re-run.")
        checked = iteration

    try:
        while iteration < end:
            runner.step(generators)
            iteration += 1
            curve = [r for r, c in enumerate(configs)
                     if monitor_splits and (iteration % c.eval_interval == 0 or iteration == 1)]
            save = any(s.checkpoint is not None for s in runs) and iteration % checkpoint_every == 0
            late = deadline is not None and time.time() > deadline
            if curve or save or late or iteration - checked >= check_every or iteration == end:
                verify()
                if bar is not None:
                    bar.set_postfix(loss=f"{float(runner.ring_losses(iteration - 1, iteration).mean()):.3f}")
            if curve or save:
                sync_states()
            for r in curve:
                loss = float(runner.ring_losses(iteration - 1, iteration)[r, 0])
                states[r].history.append(monitor(configs[r], learners[r], states[r], monitor_splits, iteration, loss))
            if save:
                for spec, s in zip(runs, states):
                    if spec.checkpoint is not None:
                        save_checkpoint(spec.checkpoint, spec.config, s)
            if bar is not None:
                bar.update(1)
            if late:
                break
    finally:
        if bar is not None:
            bar.close()
    verify()
    sync_states()
    for spec, s in zip(runs, states):
        if spec.checkpoint is not None and iteration % checkpoint_every != 0:
            save_checkpoint(spec.checkpoint, spec.config, s)
    return states


def fast_meta_train(config: Config, train_data: ClassDataset, *, seed: int = 0, device: Any = "cpu",
                    monitor_splits: dict[str, ClassDataset] | None = None,
                    checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 1000,
                    resume: bool = True, deadline: float | None = None, progress: bool = False,
                    stop_at: int | None = None, learner: Learner | None = None, engine: str = "graph",
                    grads: str = "auto", fuse_adam: bool = False, check_every: int | None = None) -> TrainState:
    """``train.meta_train`` on the engine (same arguments and result; see :func:`meta_train_runs`)."""
    return meta_train_runs([RunSpec(config, seed, checkpoint)], train_data, device=device, engine=engine,
                           grads=grads, fuse_adam=fuse_adam, monitor_splits=monitor_splits,
                           checkpoint_every=checkpoint_every, resume=resume, deadline=deadline, progress=progress,
                           stop_at=stop_at, learner=learner, check_every=check_every)[0]
