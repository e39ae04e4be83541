"""One experiment end to end: meta-train each seed, evaluate with the paper's protocol, write results.

This is what ``reptile train`` runs and what the book's notebooks call. Evaluation follows
Section 7: ``eval_samples`` tasks per split and protocol, transductive and not, for each
``EvalSpec`` (1- and 5-shot share the trained model, as in the released code).
"""
from __future__ import annotations

import os
import re
import time
import zlib
from pathlib import Path
from typing import Any, Sequence

import torch

from .configs import Config
from .evaluate import evaluate
from .optim import map_state
from .results import config_hash, metric_name, provenance, summarize, write_results
from .tasks import ClassDataset, TaskSampler
from .train import Learner, TrainState, atomic_save, make_learner, meta_train


def slug(name: str) -> str:
    """A file-name-safe form of a config name (``figure3[g1+g2]`` -> ``figure3-g1+g2``)."""
    return re.sub(r"[^A-Za-z0-9_.+=,-]+", "-", name).strip("-")


def save_weights(path: str | os.PathLike, config: Config, state: TrainState, seed: int) -> Path:
    """The trained phi and inner-optimiser state (evaluation starts from both), written atomically."""
    return atomic_save({"config_hash": config_hash(config), "config": config.to_dict(), "seed": seed,
                "iteration": state.iteration, "params": {k: v.detach().cpu().clone() for k, v in state.params.items()},
                "opt_state": map_state(lambda t: t.detach().cpu().clone(), state.opt_state)}, path)


def load_weights(path: str | os.PathLike, config: Config, device: Any = "cpu") -> tuple[dict, dict, dict]:
    """(params, inner-optimiser state, file contents) of a weights file written for ``config``."""
    from .results import ResultsMismatchError

    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("config_hash") != config_hash(config):
        raise ResultsMismatchError(f"{path} holds weights of another config (hash {blob.get('config_hash')}, "
                                   f"expected {config_hash(config)})")
    params = {k: v.to(device) for k, v in blob["params"].items()}
    return params, map_state(lambda t: t.to(device), blob["opt_state"]), blob


def eval_generator(seed: int, split: str, shots: int, device: Any = "cpu") -> torch.Generator:
    """A generator per (seed, split, shots): evaluation tasks do not depend on anything else."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(zlib.crc32(f"eval/{seed}/{split}/{shots}".encode()))
    return g


PATHS = ("auto", "reference", "sequential", "eager", "graph")


def choose_path(engine: str, config: Config, device: Any = "cpu", training: bool = False) -> str:
    """The path a run takes (``reptile train --engine``): ``auto`` is ``sequential`` where it applies (the
    paper's two networks on a CPU: one task at a time on flat buffers, what the queue trains with, the
    reference's results to float rounding), else ``reference`` (the library's plain loop); ``eager`` /
    ``graph`` are the GPU engine, which trains only the batched path's configs (``training``: checked)."""
    from .reproduce import train_step

    if engine not in PATHS:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(PATHS)}")
    fast = train_step(config, str(device)) is not None
    if engine == "sequential" and not fast:
        raise ValueError(f"the sequential path runs the paper's two networks on a CPU, not {config.model!r} on "
                         f"{device}: use --engine reference (or eager / graph on a GPU, for a batched-path config: "
                         f"--set batched=true adam_carry=mean)")
    if engine == "auto":
        return "sequential" if fast else "reference"
    if engine in ("eager", "graph"):
        from .engine import resolve_engine
        from .engine.trainer import check_batchable
        if training:
            check_batchable([config])
        engine = resolve_engine(engine, device)   # graph without CUDA runs eagerly: record what ran
    return engine


def evaluate_model(config: Config, learner: Learner, params: dict, opt_state: dict, data: ClassDataset,
                   split: str, seed: int, device: Any = "cpu", n_tasks: int | None = None,
                   chunk: int = 100, progress: bool = False, engine: str = "reference") -> dict[str, torch.Tensor]:
    """Per-task accuracies for every eval protocol of ``config``: ``{metric_name: (n_tasks,)}``.

    ``engine`` (:func:`choose_path`; the CLI's default is 'auto'): 'sequential' scores the same tasks
    one at a time on flat buffers; 'eager' or 'graph' with ``engine.fast_evaluate`` (``chunk`` then
    only fixes how tasks are drawn; the engine sizes its batches to the device).
    """
    engine = choose_path(engine, config, device)
    out = {}
    data = data.to(device)
    for spec in config.evals:
        sampler = TaskSampler(data, config.classes, eval_generator(seed, split, spec.shots, device))
        if engine in ("reference", "sequential"):
            score = None
            if engine == "sequential":
                from .reproduce import eval_scorer
                score = eval_scorer(config, device)(learner, params, opt_state)
            acc = evaluate(learner.model, learner.loss_fn, params, learner.opt, opt_state, sampler, spec.shots,
                           spec.eval_batch, spec.eval_iters, n_tasks or config.eval_samples, chunk,
                           config.replacement, progress, score=score)
        else:
            from .engine import fast_evaluate
            acc = fast_evaluate(learner.model, learner.loss_fn, params, learner.opt, opt_state, sampler, spec.shots,
                                spec.eval_batch, spec.eval_iters, n_tasks or config.eval_samples,
                                replacement=config.replacement, progress=progress, engine=engine, block=chunk)
        for proto, v in acc.items():
            out[metric_name(split, spec.shots, config.classes, proto == "transductive")] = v
    return out


def monitor_splits(splits: dict[str, ClassDataset]) -> dict[str, ClassDataset]:
    """Learning curves use train and validation classes; test classes only where no validation split exists."""
    return {"train": splits["train"], **({"val": splits["val"]} if "val" in splits else {"test": splits["test"]})}


def check_splits(config: Config, splits: dict[str, ClassDataset], eval_splits: Sequence[str]) -> None:
    """Fail before any training if a task of ``config`` cannot be drawn from the splits used."""
    missing = [s for s in ("train", *eval_splits) if s not in splits]
    if missing:
        raise ValueError(f"{config.dataset} has no split {missing}; it has {sorted(splits)}")
    for name in ("train", *eval_splits):
        data = splits[name]
        if config.classes > data.num_classes:
            raise ValueError(f"{data.name}: {config.classes}-way tasks need {config.classes} classes, this split has "
                             f"{data.num_classes}; lower --classes")
        need = [("train_shots", config.train_shots)] if name == "train" else []
        need += [(f"shots + 1 (the {e.shots}-shot evaluation)", e.shots + 1) for e in config.evals]
        for what, n in need:
            if n > data.per_class:
                raise ValueError(f"{data.name}: {what} = {n} images per class, but each class has "
                                 f"{data.per_class}; lower it")


def run_experiment(config: Config, profile: str, seeds: Sequence[int], *, splits: dict[str, ClassDataset],
                   device: Any = "cpu", out: str | os.PathLike | None = None,
                   weights_dir: str | os.PathLike | None = None,
                   checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 1000,
                   resume: bool = True, max_minutes: float | None = None, eval_splits: Sequence[str] = ("test", "train"),
                   eval_chunk: int = 100, progress: bool = False, experiment: str | None = None,
                   engine: str = "reference", batch_seeds: bool = True) -> dict:
    """Train every seed, evaluate, and (if ``out``) write the results file. Returns its contents.

    ``engine`` (:func:`choose_path`; the CLI's default is 'auto'): 'reference' (``train.meta_train``,
    seeds one after another), 'sequential' (the same with the CPU's one-task-at-a-time step and
    scorer), 'auto' (sequential where it applies), or the fast path (``reptile_lib.engine``) 'eager' /
    'graph' (CUDA graphs; eager elsewhere), which trains the seeds together as one batched computation
    (``batch_seeds``) and evaluates thousands of tasks at once.
    """
    engine = choose_path(engine, config, device, training=True)
    t0 = time.time()
    deadline = None if max_minutes is None else t0 + 60 * max_minutes
    check_splits(config, splits, eval_splits)
    learner = make_learner(config, splits["train"].image_shape, device)
    per_task: dict[str, dict[int, list[float]]] = {}
    histories, finished, iterations = {}, True, {}

    def ckpt_path(seed: int) -> Path | None:
        return Path(checkpoint_dir) / f"{slug(config.name)}_seed{seed}.pt" if checkpoint_dir else None

    trained: dict[int, TrainState] = {}
    step_fn = scorer = None
    path = {"engine": engine}
    if engine == "sequential":
        from .reproduce import eval_scorer, sequential_kernels, train_step
        step_fn, scorer = train_step(config, str(device)), eval_scorer(config, str(device))
        path["kernels"] = sequential_kernels(config, str(device))   # native (C++) or torch
    if engine not in ("reference", "sequential"):
        from .engine import RunSpec, meta_train_runs
        specs = [RunSpec(config, seed, ckpt_path(seed)) for seed in seeds]
        for group in ([specs] if batch_seeds else [[s] for s in specs]):
            states = meta_train_runs(group, splits["train"], device=device, engine=engine,
                                     monitor_splits=monitor_splits(splits), checkpoint_every=checkpoint_every,
                                     resume=resume, deadline=deadline, progress=progress, learner=learner)
            trained.update({spec.seed: st for spec, st in zip(group, states)})
    for seed in seeds:
        if engine in ("eager", "graph"):
            state = trained[seed]
        else:
            state = meta_train(config, splits["train"], seed=seed, device=device,
                               monitor_splits=monitor_splits(splits), checkpoint=ckpt_path(seed),
                               checkpoint_every=checkpoint_every, resume=resume, deadline=deadline,
                               progress=progress, learner=learner, step_fn=step_fn, scorer=scorer)
        finished &= state.finished(config)
        histories[str(seed)], iterations[str(seed)] = state.history, state.iteration
        if weights_dir is not None:
            save_weights(Path(weights_dir) / f"{slug(config.name)}_seed{seed}.pt", config, state, seed)
        for split in eval_splits:
            accs = evaluate_model(config, learner, state.params, state.opt_state, splits[split], split, seed,
                                  device, chunk=eval_chunk, progress=progress, engine=engine)
            for name, v in accs.items():
                per_task.setdefault(name, {})[seed] = v.tolist()
    metrics = {name: summarize(v) for name, v in per_task.items()}
    doc_extra = {"history": histories, "iterations": iterations, "algorithm": config.algorithm,
                 "data": {k: {"name": v.name, "classes": v.num_classes, "per_class": v.per_class}
                          for k, v in splits.items()}}
    prov = provenance(device, seeds, time.time() - t0, finished, **path)
    doc = {"experiment": experiment or config.name, "profile": profile, "metrics": metrics, "provenance": prov,
           "extra": doc_extra}
    if out is not None:
        write_results(out, experiment or config.name, profile, config, metrics, prov, doc_extra)
    return doc
