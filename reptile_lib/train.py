"""Meta-training (Algorithm 2) with checkpoints, resume, learning curves and a clear stop on NaN.

``meta_train`` is the released ``train.py`` loop: sample a meta-batch of tasks, adapt, move phi,
anneal the outer step linearly. What we add: explicit generators (same seed, same numbers),
checkpoints every N iterations that a run resumes from bit-identically, learning curves from a
separate generator (so monitoring never changes training), and a stop on a non-finite loss.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .algorithms import meta_step, meta_step_size
from .configs import Config
from .evaluate import Accuracy, evaluate
from .inner import LossFn, classification_loss
from .models import build_model, init_params
from .optim import InnerOptimizer, OptState, make_optimizer, map_state
from .params import Params
from .results import atomic_write_text, config_hash
from .tasks import ClassDataset, TaskSampler


class TrainingDiverged(RuntimeError):
    """The inner loss became NaN or infinite; nothing after the last good checkpoint is kept."""


class CheckpointMismatchError(ValueError):
    """A checkpoint belongs to another config."""


@dataclass
class Learner:
    """What a config needs besides data: the network, its loss and the inner optimiser."""

    model: nn.Module
    loss_fn: LossFn
    opt: InnerOptimizer


def make_learner(config: Config, image_shape: tuple[int, int, int], device: Any = "cpu") -> Learner:
    """The paper's network for ``config`` (Section 7) and its inner optimiser."""
    channels, height, _ = image_shape
    model = build_model(config.model, config.classes, config.image_size or height, channels).to(device)
    return Learner(model, classification_loss(model, config.loss_reduction),
                   make_optimizer(config.sgd, config.learning_rate))


@dataclass
class TrainState:
    """Everything a run needs to continue: checkpointed and restored as a whole."""

    iteration: int
    params: Params
    opt_state: OptState
    generators: dict[str, torch.Generator]
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0

    def finished(self, config: Config) -> bool:
        return self.iteration >= config.meta_iters


def _generator(device: Any, seed: int) -> torch.Generator:
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(seed)
    return g


def init_state(config: Config, learner: Learner, seed: int, device: Any = "cpu") -> TrainState:
    """Fresh phi (Glorot, from ``seed``) and inner-optimiser state; task and monitor generators."""
    params = init_params(learner.model, _generator("cpu", seed))
    params = {k: v.to(device) for k, v in params.items()}
    gens = {"tasks": _generator(device, seed), "monitor": _generator(device, seed + 7919)}
    return TrainState(0, params, learner.opt.init(params), gens)


def save_checkpoint(path: str | os.PathLike, config: Config, state: TrainState) -> Path:
    """Atomically write parameters, optimiser state, generator states, iteration and history."""
    blob = {"config_hash": config_hash(config), "config": config.to_dict(), "iteration": state.iteration,
            # clone: a view of a flat buffer would otherwise save the whole buffer once per tensor
            "params": {k: v.detach().cpu().clone() for k, v in state.params.items()},
            "opt_state": map_state(lambda t: t.detach().cpu().clone(), state.opt_state),
            "generators": {k: g.get_state() for k, g in state.generators.items()},
            "generator_devices": {k: str(g.device) for k, g in state.generators.items()},
            "history": state.history, "wall_time_s": state.wall_time_s}
    return atomic_save(blob, path)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, config: Config, device: Any = "cpu") -> TrainState:
    """Restore a :class:`TrainState`; refuses a checkpoint written for another config."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("config_hash") != config_hash(config):
        raise CheckpointMismatchError(
            f"{path} was written for another config (hash {blob.get('config_hash')}, expected "
            f"{config_hash(config)}); delete it or use another --checkpoint-dir")
    gens = {}
    for k, st in blob["generators"].items():
        g = torch.Generator(device=torch.device(device))
        # the kind of device, not its index: a unit checkpointed on cuda:0 resumes on cuda:1 (another rank)
        if g.device.type != torch.device(blob["generator_devices"][k]).type:
            raise CheckpointMismatchError(f"{path} was written on {blob['generator_devices'][k]}; resume it "
                                          f"on the same kind of device (got {device})")
        g.set_state(st)
        gens[k] = g
    return TrainState(blob["iteration"], {k: v.to(device) for k, v in blob["params"].items()},
                      map_state(lambda t: t.to(device), blob["opt_state"]), gens, blob["history"],
                      blob["wall_time_s"])


def monitor(config: Config, learner: Learner, state: TrainState, splits: dict[str, ClassDataset],
            iteration: int, train_loss: float, scorer: Callable | None = None) -> dict:
    """A learning-curve point: accuracy (mean, 95% interval) on a few sampled tasks of each split (first eval protocol).

    ``scorer(learner, params, opt_state)``, if given, makes the per-chunk scorer of ``evaluate.evaluate``
    (e.g. ``engine.sequential.task_scorer``); the tasks are the same whichever scores them.
    """
    spec = config.evals[0]
    score = scorer(learner, state.params, state.opt_state) if scorer is not None else None
    point: dict[str, Any] = {"iteration": iteration, "train_loss": train_loss,
                             "meta_step": meta_step_size(config.meta_step, config.meta_step_final,
                                                         iteration, config.meta_iters)}
    for split, data in splits.items():
        sampler = TaskSampler(data, config.classes, state.generators["monitor"])
        acc = evaluate(learner.model, learner.loss_fn, state.params, learner.opt, state.opt_state, sampler,
                       spec.shots, spec.eval_batch, spec.eval_iters, config.eval_interval_tasks,
                       chunk=config.eval_interval_tasks, replacement=config.replacement, score=score)
        for proto, v in acc.items():
            point[f"{split}_{proto}"] = float(v.mean())
            point[f"{split}_{proto}_ci95"] = Accuracy.of(v).ci95  # 95% interval over those tasks (curve bands)
    return point


def meta_train(config: Config, train_data: ClassDataset, *, seed: int = 0, device: Any = "cpu",
               monitor_splits: dict[str, ClassDataset] | None = None,
               checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 1000,
               resume: bool = True, deadline: float | None = None, progress: bool = False,
               stop_at: int | None = None, learner: Learner | None = None,
               step_fn: Callable | None = None, checkpoint_seconds: float | None = None,
               stop: Callable[[], bool] | None = None, scorer: Callable | None = None) -> TrainState:
    """Meta-train ``config`` on ``train_data`` (Algorithm 2 with the released code's details).

    Args:
      monitor_splits: splits for learning curves every ``config.eval_interval`` iterations
        (e.g. ``{'train': ..., 'val': ...}``); sampled with their own generator.
      checkpoint: file to save to every ``checkpoint_every`` iterations and at the end; with
        ``resume`` an existing file (same config) is continued bit-identically.
      deadline: ``time.time()`` after which the run checkpoints and stops early (unfinished).
      stop_at: stop (and checkpoint) after this iteration, e.g. to test resumption.
      step_fn: a replacement for :func:`reptile_lib.algorithms.meta_step` with the same
        signature (``engine.sequential.SequentialMetaStep`` on a CPU, ``distributed.split_step``).
      checkpoint_seconds: also checkpoint when this much wall time passed since the last one
        (a killed run then loses at most that much).
      stop: called after every iteration; True checkpoints and stops (e.g. on SIGTERM).
      scorer: how the learning-curve points are scored (see :func:`monitor`).
    Returns the final :class:`TrainState`; ``state.finished(config)`` says whether all
    ``meta_iters`` were done.
    """
    learner = learner or make_learner(config, train_data.image_shape, device)
    if checkpoint is not None and resume and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, config, device)
    else:
        state = init_state(config, learner, seed, device)
    train_data = train_data.to(device)
    monitor_splits = {k: v.to(device) for k, v in (monitor_splits or {}).items()}
    sampler = TaskSampler(train_data, config.classes, state.generators["tasks"])
    step = step_fn or meta_step
    weights, tail = config.weights, config.foml_tail
    end = min(config.meta_iters, stop_at) if stop_at is not None else config.meta_iters
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.meta_iters, initial=state.iteration, desc=config.name, unit="it",
                   mininterval=2.0)
    t0 = time.time() - state.wall_time_s
    last_save = time.time()
    try:
        while state.iteration < end:
            i = state.iteration
            batches = sampler.train_batches(config.meta_batch, config.train_shots, config.inner_batch,
                                            config.inner_iters, config.replacement, tail)
            eps = meta_step_size(config.meta_step, config.meta_step_final, i, config.meta_iters)
            r = step(learner.loss_fn, state.params, learner.opt, state.opt_state, batches, eps, weights,
                     batched=config.batched, adam_carry=config.adam_carry)
            loss = float(r.losses.mean())
            if not torch.isfinite(r.losses).all() or not all(bool(torch.isfinite(v).all()) for v in r.params.values()):
                raise TrainingDiverged(
                    f"{config.name}: the inner loss became {loss} at meta-iteration {i}; nothing after the "
                    f"last checkpoint was kept. Lower --learning-rate or --meta-step and re-run.")
            state.params, state.opt_state, state.iteration = r.params, r.state, i + 1
            if monitor_splits and (state.iteration % config.eval_interval == 0 or state.iteration == 1):
                state.history.append(monitor(config, learner, state, monitor_splits, state.iteration, loss, scorer))
            state.wall_time_s = time.time() - t0
            due = checkpoint_seconds is not None and time.time() - last_save >= checkpoint_seconds
            if checkpoint is not None and (state.iteration % checkpoint_every == 0 or due):
                save_checkpoint(checkpoint, config, state)
                last_save = time.time()
            if bar is not None:
                bar.update(1)
                if state.iteration % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}", eps=f"{eps:.3f}")
            if (deadline is not None and time.time() > deadline) or (stop is not None and stop()):
                break
    finally:
        if bar is not None:
            bar.close()
    state.wall_time_s = time.time() - t0
    if checkpoint is not None and (state.iteration % checkpoint_every != 0 or checkpoint_seconds is not None):
        save_checkpoint(checkpoint, config, state)
    return state
