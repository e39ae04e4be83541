"""Figures 3 and 4 as run groups: which runs, how they train together, one results file per figure.

- Figure 3 (Section 5): ten ways of turning the inner gradients g1..g4 of 5-shot 5-way Omniglot into
  a meta-update (``configs.FIGURE3_CURVES``: g1; g2, g3, g4; g1+g2, g1+g2+g3, g1+...+g4; the three
  averages), drawn as test accuracy against meta-iteration.
- Figure 4 (Section 7): Reptile, shared-tail and separate-tail FOMAML as (a) the inner iterations,
  (b) the inner batch size and (c) the outer step size vary (:data:`FIGURE4_AXES`, chosen here
  because the paper does not print them: see :func:`last_batch_overlap`).

Runs whose tensors have the same shapes (:func:`shape_key`) differ only in how the k inner updates
are combined (``Config.weights``) and in the outer step size: with the GPU engine installed, runs of
the batched path (Figure 3's: :func:`engine_trains`) train as one batched computation
(``reptile_lib.engine.meta_train_runs``); the others (Figure 4's, in the released order) and every
run without the engine train one after another with :func:`reptile_lib.train.meta_train`. Either
way each run is exactly the run ``meta_train`` would make alone (same tasks, same checkpoints), and
all runs of a figure use one seed, so their learning curves are measured on the same sampled tasks.
At paper scale on a CPU the queue trains each run as a unit of its own (``runs/plan.toml``) and
:mod:`reptile_lib.figures` joins their results into the figure's file; :func:`run_figure` serves the
smoke runs and a GPU machine.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .configs import FIGURE3_CURVES, Config, figure4_config
from .results import metric_name, provenance, summarize, write_results
from .tasks import ClassDataset
from .train import Learner, TrainState, TrainingDiverged, make_learner, meta_train

FIGURES = ("figure3", "figure4")
ALGORITHMS = ("reptile", "fomaml-shared", "fomaml-separate")

# ---------------------------------------------------------------- Figure 4: the sweep values (ours)
# Base point: the paper's 5-way Omniglot settings (train_shots 10, inner_batch 10, inner_iters 5,
# outer step 1 -> 0). A task has 5 x 10 = 50 training samples; shared-tail FOMAML's last batch
# starts to repeat earlier samples once inner_iters * inner_batch > 50 and repeats only them once
# (inner_iters - 1) * inner_batch >= 50. Each axis crosses that boundary:
#   (a) inner_iters at batch 10: 2, 4, 5 no overlap | 6, 8, 10 full overlap;
#   (b) inner_batch at 5 steps: 5, 10 none | 12 partial (80%) | 15, 20 full;
#   (c) outer step at the base point (no overlap): FOMAML's meta-update is one inner step, Reptile's
#       the sum of five, so their best outer steps differ; 0.25 to 2 brackets both.
FIGURE4_AXES: dict[str, tuple] = {
    "inner_iters": (2, 4, 5, 6, 8, 10),
    "inner_batch": (5, 10, 12, 15, 20),
    "meta_step": (0.25, 0.5, 1.0, 2.0),
}
FIGURE4_SMOKE_AXES: dict[str, tuple] = {"inner_iters": (2, 6), "inner_batch": (5, 15), "meta_step": (0.5, 1.0)}
PANEL_TITLES = {"inner_iters": "(a) inner iterations", "inner_batch": "(b) inner batch size",
                "meta_step": "(c) outer step size (initial, annealed to 0)"}


@dataclass(frozen=True)
class Point:
    """One run of a figure: where it is drawn (panel, x value, curve) and its config."""

    figure: str
    panel: str          # figure3: the curve family; figure4: the swept field
    value: float        # figure3: k; figure4: the swept value
    algorithm: str      # figure3: the curve label (g1+g2, ...); figure4: one of ALGORITHMS
    config: Config

    @property
    def label(self) -> str:
        return self.algorithm if self.figure == "figure3" else f"{self.algorithm}, {self.panel}={self.value:g}"

    def to_dict(self) -> dict:
        return {"figure": self.figure, "panel": self.panel, "value": self.value, "algorithm": self.algorithm,
                "config": self.config.name}


def _figure3_family(c: Config) -> str:
    if c.inner_iters == 1:
        return "g1 alone"
    if c.combine_average:
        return "average"
    return "fomaml" if len(c.combine) == 1 else "sum"


def _label(c: Config) -> str:
    return c.name[c.name.index("[") + 1:-1]


def smoke_figure3(c: Config) -> Config:
    """A CPU-sized Figure 3 curve (seconds): 20 meta-iterations, points at 1, 10, 20 on 5 tasks, 10 final tasks."""
    return dataclasses.replace(c, meta_iters=20, eval_interval=10, eval_interval_tasks=5, eval_samples=10)


def smoke_figure4(c: Config) -> Config:
    """A CPU-sized Figure 4 point (seconds): 4 meta-iterations, 10 test tasks adapted for 10 steps."""
    return dataclasses.replace(c, meta_iters=4, eval_samples=10, eval_interval=4, eval_interval_tasks=3,
                               evals=tuple(dataclasses.replace(e, eval_iters=10) for e in c.evals))


def figure3_points(profile: str = "paper") -> list[Point]:
    """The ten curves of Figure 3 (``configs.FIGURE3_CURVES``; the smoke profile shrinks them)."""
    _check_profile(profile)
    out = []
    for c in FIGURE3_CURVES:
        run = c if profile == "paper" else smoke_figure3(c)
        out.append(Point("figure3", _figure3_family(c), c.inner_iters, _label(c), run))
    return out


def figure4_points(profile: str = "paper") -> list[Point]:
    """Every (panel, value, algorithm) of Figure 4; the base point appears in each panel, one config."""
    _check_profile(profile)
    axes = FIGURE4_AXES if profile == "paper" else FIGURE4_SMOKE_AXES
    base = figure4_config("reptile")
    out = []
    for panel, values in axes.items():
        for v in values:
            for algorithm in ALGORITHMS:
                changes = {} if getattr(base, panel) == v else {panel: v}
                c = figure4_config(algorithm, **changes)
                out.append(Point("figure4", panel, v, algorithm, c if profile == "paper" else smoke_figure4(c)))
    return out


def figure_points(figure: str, profile: str = "paper") -> list[Point]:
    if figure == "figure3":
        return figure3_points(profile)
    if figure == "figure4":
        return figure4_points(profile)
    raise ValueError(f"unknown figure {figure!r}: choose one of {', '.join(FIGURES)}")


def unique_configs(points: Sequence[Point]) -> list[Config]:
    """The runs behind ``points``, each once (Figure 4's base point serves all three panels)."""
    seen: dict[str, Config] = {}
    for p in points:
        if p.config.name in seen and seen[p.config.name] != p.config:
            raise ValueError(f"two different configs are named {p.config.name}")
        seen.setdefault(p.config.name, p.config)
    return list(seen.values())


def figure_config(figure: str, profile: str = "paper", points: Sequence[Point] | None = None) -> dict:
    """What a figure's results file is made from (its ``config``; the hash refuses any other)."""
    points = points if points is not None else figure_points(figure, profile)
    return {"name": figure, "points": [p.to_dict() for p in points],
            "runs": [c.to_dict() for c in unique_configs(points)]}


def _check_profile(profile: str) -> None:
    if profile not in ("paper", "smoke"):
        raise ValueError(f"unknown profile {profile!r}: choose paper or smoke")


# ---------------------------------------------------------------- the overlap regime (Figure 4)
def last_batch_overlap(inner_iters: int, inner_batch: int, samples: int) -> float:
    """Expected fraction of shared-tail FOMAML's last mini-batch already seen by an earlier one.

    The released sampler deals the task's ``samples`` (= ways * train_shots) from a stream of
    independent shuffles. The last batch holds stream positions [(k-1)b, kb). When the earlier
    batches span a whole shuffle ((k-1)b >= n) every sample has been seen: overlap 1. Otherwise
    they saw r = (k-1)b distinct samples of the first shuffle; positions of the last batch in the
    first shuffle are new, and each position in a later shuffle is one of the r with probability r/n.
    """
    k, b, n = inner_iters, inner_batch, samples
    if k < 2:
        return 0.0
    seen = (k - 1) * b
    if seen >= n:
        return 1.0
    later = max(0, k * b - n)  # positions of the last batch beyond the first shuffle
    return later * (seen / n) / b


def overlap_onset(axis: str, base: Config | None = None) -> float:
    """The smallest ``inner_iters`` or ``inner_batch`` at which the shared tail starts to overlap."""
    base = base or figure4_config("fomaml-shared")
    n = base.classes * base.train_shots
    if axis == "inner_iters":
        return math.floor(n / base.inner_batch) + 1
    if axis == "inner_batch":
        return math.floor(n / base.inner_iters) + 1
    raise ValueError(f"the overlap depends on inner_iters and inner_batch, not {axis!r}")


# ---------------------------------------------------------------- run groups
_FREE_FIELDS = ("name", "foml", "combine", "combine_average", "meta_step", "meta_step_final", "notes")


def shape_key(config: Config) -> str:
    """Every field but those a group may vary (how the inner updates combine, the outer step)."""
    d = {k: v for k, v in config.to_dict().items() if k not in _FREE_FIELDS}
    return json.dumps(d, sort_keys=True, default=str)


def group_configs(configs: Sequence[Config]) -> list[list[Config]]:
    """Configs grouped by :func:`shape_key`, in order of first appearance."""
    groups: dict[str, list[Config]] = {}
    for c in configs:
        groups.setdefault(shape_key(c), []).append(c)
    return list(groups.values())


def engine_available() -> bool:
    """Whether the GPU engine (``reptile_lib.engine.meta_train_runs``) is installed in this checkout."""
    try:
        from .engine import meta_train_runs  # noqa: F401  (only whether it imports)
    except ImportError:
        return False
    return True


def engine_trains(engine: str | None, configs: Sequence[Config]) -> bool:
    """Whether ``engine`` is asked for, installed, and able to train ``configs``: it adapts a meta-batch's
    tasks at once (``batched=True, adam_carry='mean'``), so the released order trains with the library."""
    return bool(engine) and engine_available() and all(c.batched and c.adam_carry == "mean" for c in configs)


def checkpoint_path(checkpoint_dir: str | os.PathLike, config: Config, seed: int) -> Path:
    """``<dir>/<name>_seed<seed>.pt``, the file ``reptile train`` would use for this run."""
    from .experiment import slug
    return Path(checkpoint_dir) / f"{slug(config.name)}_seed{seed}.pt"


def train_runs(configs: Sequence[Config], train_data: ClassDataset, *, seed: int = 0, device: Any = "cpu",
               monitor_splits: dict[str, ClassDataset] | None = None,
               checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 1000,
               resume: bool = True, deadline: float | None = None, engine: str | None = None,
               progress: bool = False) -> dict[str, TrainState | TrainingDiverged]:
    """Meta-train runs of one shape group; returns each run's final state (or why it diverged).

    With ``engine`` (e.g. ``'graph'``), ``reptile_lib.engine`` installed and the batched path's configs
    (:func:`engine_trains`), the group trains as one batched computation (``engine.meta_train_runs``:
    one CUDA graph for all runs); otherwise, or if that fails because a run diverged, each run trains
    alone with :func:`reptile_lib.train.meta_train`. A diverged run is reported, not fatal: the other points of a figure still count. Runs are
    checkpointed as ``reptile train`` does (:func:`checkpoint_path`), so a later call resumes them.
    """
    ckpt = {c.name: (checkpoint_path(checkpoint_dir, c, seed) if checkpoint_dir is not None else None) for c in configs}
    common = dict(device=device, monitor_splits=monitor_splits, checkpoint_every=checkpoint_every, resume=resume,
                  deadline=deadline, progress=progress)
    if engine_trains(engine, configs) and len(configs) > 1:
        from .engine import RunSpec, meta_train_runs
        try:
            states = meta_train_runs([RunSpec(c, seed, ckpt[c.name]) for c in configs], train_data, engine=engine,
                                     **common)
            return {c.name: s for c, s in zip(configs, states)}
        except (TrainingDiverged, ValueError):
            pass  # a run diverged, or checkpoints at different iterations: one run at a time below
    out: dict[str, TrainState | TrainingDiverged] = {}
    for c in configs:
        if deadline is not None and time.time() > deadline and not _done(c, ckpt[c.name]):
            break
        try:
            if engine_trains(engine, [c]):
                from .engine import fast_meta_train
                out[c.name] = fast_meta_train(c, train_data, seed=seed, checkpoint=ckpt[c.name], engine=engine, **common)
            else:
                out[c.name] = meta_train(c, train_data, seed=seed, checkpoint=ckpt[c.name], **common)
        except TrainingDiverged as e:
            out[c.name] = e
    return out


def _done(c: Config, path: Path | None) -> bool:
    """Whether ``path`` holds a checkpoint of ``c`` at its last iteration (loading it costs no training)."""
    if path is None or not path.exists():
        return False
    return torch.load(path, map_location="cpu", weights_only=True)["iteration"] >= c.meta_iters


# ---------------------------------------------------------------- a figure, end to end
MONITOR_SPLIT = {"figure3": "test", "figure4": "train"}


def run_figure(figure: str, profile: str, *, splits: dict[str, ClassDataset], seed: int = 0, device: Any = "cpu",
               out: str | os.PathLike | None = None, checkpoint_dir: str | os.PathLike | None = None,
               checkpoint_every: int = 1000, resume: bool = True, max_minutes: float | None = None,
               eval_chunk: int = 100, points: Sequence[Point] | None = None, engine: str | None = None,
               extra: dict | None = None, progress: bool = False) -> dict:
    """Train every run of a figure (grouped by shape), evaluate the finished ones, write one results file.

    Curves (``train.monitor`` every ``eval_interval`` meta-iterations on ``eval_interval_tasks``
    tasks, mean and 95% interval): Figure 3 monitors the test classes, since the figure *is* test
    accuracy against meta-iteration as in the paper; Figure 4 monitors the training classes, since
    its curves only show whether the runs have levelled off, and no setting is chosen from test
    accuracy. All runs use seed ``seed``, so every curve is measured on the same tasks.
    Final metrics: each finished run on ``eval_samples`` test tasks, every protocol of its config,
    named ``<run name>|<metric>``. With ``max_minutes`` training stops in time (checkpointed), runs
    not finished are not evaluated, the file says ``finished: false``, and a re-run resumes them.
    """
    t0 = time.time()
    deadline = None if max_minutes is None else t0 + 60 * max_minutes
    points = list(points) if points is not None else figure_points(figure, profile)
    configs = unique_configs(points)
    monitor_split = MONITOR_SPLIT[figure]
    groups = group_configs(configs)
    results: dict[str, TrainState | TrainingDiverged] = {}
    for group in groups:
        results.update(train_runs(group, splits["train"], seed=seed, device=device,
                                  monitor_splits={monitor_split: splits[monitor_split]}, checkpoint_dir=checkpoint_dir,
                                  checkpoint_every=checkpoint_every, resume=resume, deadline=deadline, engine=engine,
                                  progress=progress))
    states = {k: v for k, v in results.items() if isinstance(v, TrainState)}
    waiting = {}  # runs not reached in this call: where their checkpoints stand
    for c in configs:
        path = checkpoint_path(checkpoint_dir, c, seed) if checkpoint_dir is not None else None
        if c.name not in results and path is not None and path.exists():
            blob = torch.load(path, map_location="cpu", weights_only=True)
            waiting[c.name] = (blob["iteration"], blob["history"])
    from .experiment import evaluate_model
    metrics: dict[str, dict] = {}
    learners: dict[str, Learner] = {}
    for c in configs:
        s = states.get(c.name)
        if s is None or not s.finished(c):
            continue
        learner = learners.setdefault(shape_key(c), make_learner(c, splits["train"].image_shape, device))
        accs = evaluate_model(c, learner, s.params, s.opt_state, splits["test"], "test", seed, device,
                              chunk=eval_chunk)
        for name, v in accs.items():
            metrics[f"{c.name}|{name}"] = summarize({seed: v.tolist()})
    # finished: every run trained to the end, or diverged (an outcome too, reported as such)
    finished = all((c.name in states and states[c.name].finished(c)) or isinstance(results.get(c.name), TrainingDiverged)
                   for c in configs)
    doc_extra = {
        "figure": figure, "points": [p.to_dict() for p in points],
        "curves": {c.name: states[c.name].history if c.name in states else waiting[c.name][1]
                   for c in configs if c.name in states or c.name in waiting},
        "iterations": {c.name: states[c.name].iteration if c.name in states else waiting.get(c.name, (0,))[0]
                       for c in configs},
        "diverged": {name: str(e) for name, e in results.items() if isinstance(e, TrainingDiverged)},
        "monitor": {"split": monitor_split, "tasks_per_point": configs[0].eval_interval_tasks,
                    "interval": configs[0].eval_interval},
        "groups": [[c.name for c in g] for g in groups], "eval_chunk": eval_chunk,
        "trainer": f"engine ({engine})" if engine_trains(engine, configs) else "library (reptile_lib.train.meta_train)",
        "data": {k: {"name": v.name, "classes": v.num_classes, "per_class": v.per_class} for k, v in splits.items()},
        **(extra or {}),
    }
    prov = provenance(device, [seed], time.time() - t0, finished)
    fig_config = figure_config(figure, profile, points)
    doc = {"experiment": figure, "profile": profile, "config": fig_config, "metrics": metrics, "provenance": prov,
           "extra": doc_extra}
    if out is not None:
        write_results(out, figure, profile, fig_config, metrics, prov, doc_extra)
    return doc



def obtain_figure(figure: str, profile: str = "paper", *, seed: int = 0,
                  device: Any = "cpu") -> tuple[dict | None, dict | None]:
    """What a figure chapter shows: ``(paper_doc, smoke_doc)``, exactly one of them not None.

    Profile ``paper``: the committed ``results/<figure>.json`` when its config matches (the queue's runs
    joined by :mod:`reptile_lib.figures`); otherwise, or in the ``smoke`` profile, a smoke run of the
    figure trained now (never written under ``results/``).
    """
    from . import book
    from .data import load_dataset

    doc = book.load_if_matching(figure, figure_config(figure, "paper"), "paper") if profile == "paper" else None
    if doc is not None:
        return doc, None
    return None, run_figure(figure, "smoke", splits=load_dataset("omniglot"), seed=seed, device=device)


def point_metric(doc: dict, point: Point | dict, protocol: str = "nontransductive") -> dict | None:
    """The final test metric of a figure point (the config's first eval protocol), or None."""
    name = point.config.name if isinstance(point, Point) else point["config"]
    run = next((r for r in doc["config"]["runs"] if r["name"] == name), None)
    if run is None:
        return None
    e = run["evals"][0]
    return doc["metrics"].get(f"{name}|{metric_name('test', e['shots'], run['classes'], protocol == 'transductive')}")


# ---------------------------------------------------------------- budget (estimates: GPU and CPU)
@dataclass(frozen=True)
class CostModel:
    """Seconds of training and evaluation: rough estimates for an H100-class GPU (not measured by this
    book) and for one CPU core (fitted to this book's benchmark).

    A meta-iteration costs ``steps x launch + image_steps x per_image``: one inner step launches a fixed
    set of kernels whatever its batch (``launch``, ms), and each image forward and backward costs
    ``per_image`` (us). The GPU values are fitted to 5-way timings taken elsewhere: CUDA graph 3.1 ms
    for one run (5 tasks x 5 steps x 10 images) and 10.2 ms for eight runs batched, so per_image = 7.1
    ms / 1,750 = 4.1 us and launch = (3.1 - 1.0) / 5 = 0.42 ms; eager vmap 36 ms gives launch = 7.0 ms.
    The 20-way figures (83 / 7.4 ms) agree within 15%. CIFAR-FS 32x32 images on the 32-filter net cost
    about 1,024/7,056 of the 84-pixel ones (17.8 ms graph: 36 us), i.e. ~5.2 us. Evaluation is priced
    the same way (a forward-only prediction as a third of an image step). Estimates, until a GPU run's
    log measures them.

    ``cpu``: one thread of a 2-core AMD EPYC CPU, the released order on flat buffers with the native
    kernels, one task at a time (so every evaluation task pays its own launches: ``tasks_at_once`` = 1).
    Fitted to the quiet benchmark on Omniglot (``benchmarks/results/cpu-1thread-amd-epyc.json``): 59.4
    ms per 5-way meta-iteration (5 tasks x 5 steps x 10 images) and 58 ms per 1-shot evaluation task (50
    steps of 5 images and the predictions): a step costs about 0.05 ms plus 0.23 ms per image. Two runs
    sharing the two cores (as the queue's two workers do) each run about a third slower than this.
    """

    launch_ms: float = 0.42
    per_image_us: float = 4.1
    startup_s: float = 60.0
    tasks_at_once: int | None = None   # evaluation tasks sharing one launch (None: the chunk)

    @staticmethod
    def of(path: str, dataset: str = "omniglot") -> "CostModel":
        if path == "cpu":
            if dataset != "omniglot":
                raise ValueError(f"no CPU cost measured for {dataset}: only omniglot")
            return CostModel(0.05, 230.0, 10.0, tasks_at_once=1)
        per_image = {"omniglot": 4.1, "cifar_fs": 5.2, "fc100": 5.2, "miniimagenet": 36.0}[dataset]
        launch = {"graph": 0.42, "eager": 7.0}[path]
        return CostModel(launch, per_image)


def _step_images(c: Config) -> list[int]:
    """Images per inner step of one task, step by step (the separate tail's last step is its tail)."""
    if c.foml_tail:
        return [c.inner_batch] * (c.inner_iters - 1) + [c.classes * c.foml_tail]
    return [c.inner_batch] * c.inner_iters


def train_seconds(group: Sequence[Config], cost: CostModel, batched: bool = True) -> float:
    """Meta-training a group of same-shape runs (all together if ``batched``, else one after another)."""
    c = group[0]
    steps, images = len(_step_images(c)), c.meta_batch * sum(_step_images(c))
    if cost.tasks_at_once == 1:   # one task at a time: each task's steps pay their own launches
        steps *= c.meta_batch
    per_iter_ms = (steps * cost.launch_ms * (1 if batched else len(group)) + len(group) * images * cost.per_image_us / 1000)
    return c.meta_iters * per_iter_ms / 1000


def eval_seconds(c: Config, n_tasks: int, cost: CostModel, chunk: int = 1000) -> float:
    """One split's evaluation (every protocol of ``c``) on ``n_tasks`` tasks."""
    total = 0.0
    chunk = cost.tasks_at_once or chunk
    for e in c.evals:
        chunks = math.ceil(n_tasks / chunk)
        adapt = n_tasks * e.eval_iters * e.eval_batch
        predict = n_tasks * c.classes * (c.classes * e.shots + 2) / 3
        total += chunks * (e.eval_iters + 2) * cost.launch_ms / 1000 + (adapt + predict) * cost.per_image_us / 1e6
    return total


def monitor_seconds(c: Config, splits: int, cost: CostModel) -> float:
    points = c.meta_iters // c.eval_interval + 1
    return points * splits * eval_seconds(dataclasses.replace(c, evals=c.evals[:1]), c.eval_interval_tasks, cost,
                                          chunk=c.eval_interval_tasks)


def estimate(configs: Sequence[Config], path: str = "graph", *, seeds: int = 1, batched: bool = True,
             eval_splits: int = 1, monitor_splits: int = 1, eval_chunk: int = 1000,
             eval_tasks: Sequence[int] | None = None) -> dict:
    """Estimated seconds of a set of runs (``path``: ``graph``/``eager`` on an H100-class GPU, ``cpu`` on one
    CPU core; :class:`CostModel`): training (grouped by shape), curves, final evaluation.

    ``eval_tasks``: tasks of each evaluated split (default ``eval_samples`` for each of ``eval_splits``).
    """
    cost = CostModel.of(path, configs[0].dataset)
    runs = [c for c in configs for _ in range(seeds)]
    groups = group_configs(runs)  # seeds of one config share a group too
    train = sum(train_seconds(g, cost, batched) for g in groups)
    monitor = sum(monitor_seconds(c, monitor_splits, cost) for c in runs)
    evaluation = sum(eval_seconds(c, n, cost, eval_chunk) for c in runs
                     for n in (eval_tasks if eval_tasks is not None else [c.eval_samples] * eval_splits))
    return {"path": path, "runs": len(runs), "groups": len(groups), "train_s": train,
            "monitor_s": monitor, "eval_s": evaluation, "startup_s": cost.startup_s,
            "total_s": train + monitor + evaluation + cost.startup_s}
