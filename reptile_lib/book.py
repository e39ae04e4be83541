"""Small helpers the book's notebooks share: which results a chapter shows, and how their origin is shown.

Every figure and table in the book says where it comes from; ``provenance_line`` is that
sentence, built from a results file's ``provenance``. ``obtain`` decides what a chapter shows:

- profile ``paper`` (the book's default): the committed paper-scale results under ``results/``
  if they were made by exactly the config asked for, otherwise a *smoke run* trained now;
- profile ``paper`` with ``retrain=True``: the paper-scale experiment, trained now (a GPU job),
  rewriting ``results/<name>.json``;
- profile ``smoke``: always the smoke run.

Smoke runs are never written under ``results/`` and never compared with the paper's numbers.
Tables and verdicts are plain functions of results files and :mod:`reptile_lib.paper`, so the
notebooks only narrate and display.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from .paths import REPO_ROOT
from .results import ResultsMismatchError, load_results, metric_parts

PROFILES = ("paper", "smoke")


def results_dir() -> Path:
    """``results/`` of the repository (independent of the notebook's working directory)."""
    return REPO_ROOT / "results"


def results_path(name: str, profile: str = "paper") -> Path:
    """``results/<name>.json`` for paper-scale runs, ``results/smoke/<name>.json`` for smoke runs."""
    return results_dir() / (f"{name}.json" if profile == "paper" else f"smoke/{name}.json")


def checkpoints_dir() -> Path:
    """``checkpoints/`` of the repository (git-ignored): paper-scale runs resume from here."""
    return REPO_ROOT / "checkpoints"


def benchmarks_dir() -> Path:
    """``benchmarks/results/`` of the repository (timings written by ``make bench``)."""
    return REPO_ROOT / "benchmarks" / "results"


def load_if_matching(name: str, config: Any, profile: str = "paper") -> dict | None:
    """The committed results of ``config``, or None if absent or made by another config."""
    path = results_path(name, profile)
    if not path.exists():
        return None
    try:
        return load_results(path, config, profile)
    except ResultsMismatchError:
        return None


def provenance_line(doc: dict) -> str:
    """'paper-scale run on NVIDIA H100 ..., commit 1a2b3c4, 2026-11-26, 12.3 min, seeds 0, 1, 2'.

    A run the queue trained over several stops names how many commits it spans (every segment's
    commit and machine are in ``runs/logs/``) and its compute time in hours once past two."""
    p = doc["provenance"]
    kind = "paper-scale run" if doc["profile"] == "paper" else "smoke run (small, CPU-sized)"
    when = str(p.get("date", ""))[:10]
    minutes = p["wall_time_s"] / 60
    status = "" if p["finished"] else " — NOT FINISHED (partial run)"
    seeds = ", ".join(str(s) for s in p["seeds"])
    commits = list(p.get("commits") or [p["commit"]])
    if len(commits) > 1:
        commit = f"{len(commits)} commits (each segment's commit and machine are in runs/logs/)"
    else:
        commit = "commit " + str(commits[0])[:7] + (" with uncommitted changes" if str(commits[0]).endswith("+dirty") else "")
    took = f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f"{kind} on {p['device']}, {commit}, {when}, {took}, seed{'s' if len(p['seeds']) != 1 else ''} {seeds}{status}"


# ---------------------------------------------------------------- which results a chapter shows
def book_smoke(config: Any, meta_iters: int = 40, eval_samples: int = 20, eval_interval: int = 20,
               eval_interval_tasks: int = 5) -> Any:
    """The book's smoke variant of ``config``: ``configs.smoke`` made smaller still, so that the
    whole book executes in a few minutes on two CPU cores. Shapes, hyper-parameters and the
    evaluation protocol are the paper's; only the numbers of meta-iterations (the outer step
    still anneals to its final value) and of evaluation tasks shrink."""
    from .configs import smoke

    return dataclasses.replace(smoke(config), meta_iters=meta_iters, eval_samples=eval_samples,
                               eval_interval=eval_interval, eval_interval_tasks=eval_interval_tasks)


@functools.lru_cache(maxsize=4)
def load_splits(dataset: str) -> dict:
    """``reptile_lib.data.load_dataset(dataset)``, read once per kernel."""
    from .data import load_dataset

    return load_dataset(dataset)


def result_name(config: Any) -> str:
    """The results file stem of a config: its name made file-name safe (as ``reptile train`` writes it)."""
    from .experiment import slug

    return slug(config.name)


def obtain(config: Any, *, profile: str = "paper", device: str = "cpu", seeds: Sequence[int] = (0,),
           retrain: bool = False, smoke: Any | None = None, fallback: bool = True,
           eval_splits: Sequence[str] = ("test",), max_minutes: float | None = None) -> dict | None:
    """The results a chapter shows for ``config`` (see the module docstring).

    Returns a results document (``experiment, profile, config, metrics, provenance, extra``);
    ``profile`` in it says what it is. ``smoke`` is the config of the smoke run (default
    :func:`book_smoke` of ``config``); with ``fallback=False`` there is no smoke run and the
    result is None where no paper-scale results exist. ``max_minutes`` bounds a retraining run:
    it then stops, checkpointed under ``checkpoints/``, its results marked unfinished, and the
    next call with ``retrain=True`` resumes it. Runs take ``reptile train``'s default path (on a CPU the
    fast one-task-at-a-time path).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    from .experiment import run_experiment
    from .results import config_dict

    name = result_name(config)
    if profile == "paper" and not retrain:
        doc = load_if_matching(name, config, "paper")
        if doc is not None:
            return doc
    if profile == "paper" and retrain:
        out = results_path(name, "paper")
        doc = run_experiment(config, "paper", list(seeds), splits=load_splits(config.dataset), device=device,
                             out=out, checkpoint_dir=checkpoints_dir(), weights_dir=results_dir() / "weights",
                             max_minutes=max_minutes, experiment=config.name, engine="auto")
        return load_results(out, config, "paper")
    if not fallback:
        return None
    run = smoke if smoke is not None else book_smoke(config)
    doc = run_experiment(run, "smoke", list(seeds)[:1], splits=load_splits(run.dataset), device=device,
                         eval_splits=eval_splits, experiment=run.name, engine="auto")
    return {**doc, "config": config_dict(run)}


# ---------------------------------------------------------------- tables
# Verdicts against the paper live in one place, reptile_lib.report.
def paper_scale(doc: dict | None) -> dict | None:
    """``doc`` if it is a paper-scale run, else None (smoke runs are never compared with the paper)."""
    return doc if doc is not None and doc.get("profile") == "paper" else None


def percent(metric: dict | None) -> str:
    """``'95.12 ± 0.41'`` (percent, 95% interval over tasks) or an em dash."""
    if metric is None:
        return "—"
    return f"{100 * metric['mean']:.2f} ± {100 * metric['ci95']:.2f}"


def paper_frame(numbers: Iterable) -> "pd.DataFrame":  # noqa: F821
    """The paper's numbers as a table: rows are algorithms, columns settings."""
    import pandas as pd

    rows: dict[str, dict[str, str]] = {}
    for n in numbers:
        rows.setdefault(n.algorithm, {})[n.setting] = n.text()
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna("—")
    frame.index.name = "algorithm (paper, %)"
    return frame


def metrics_frame(doc: dict, split: str = "test") -> "pd.DataFrame":  # noqa: F821
    """A run's accuracies (percent, 95% interval over tasks) by setting and protocol."""
    import pandas as pd

    rows: dict[str, dict[str, str]] = {}
    for name, m in sorted(doc["metrics"].items()):
        s, shots, ways, transductive = metric_parts(name)
        if s != split:
            continue
        rows.setdefault(f"{shots}-shot {ways}-way", {})["transductive" if transductive else "nontransductive"] = percent(m)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = f"{split} accuracy (%)"
    return frame[[c for c in ("nontransductive", "transductive") if c in frame]]


def table(rows: list[dict], index: str | None = None) -> "pd.DataFrame":  # noqa: F821
    """A list of dicts as a table (what the notebooks display)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    return frame.set_index(index) if index else frame


def n_tasks(doc: dict) -> int:
    """Evaluation tasks behind each number of a run (per seed, summed over seeds)."""
    return min(m["n_tasks"] for m in doc["metrics"].values())


def split_summary(splits: dict) -> "pd.DataFrame":  # noqa: F821
    """Classes, images per class and image shape of each split of a data set."""
    import pandas as pd

    return pd.DataFrame([{"split": k, "classes": v.num_classes, "images per class": v.per_class,
                          "image (C, H, W)": str(tuple(v.image_shape))} for k, v in splits.items()]).set_index("split")


def plot_history(doc: dict, ax=None, key: str = "transductive"):
    """Learning curves recorded during training (accuracy on a few tasks per split)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    for seed, hist in doc["extra"].get("history", {}).items():
        if not hist:
            continue
        its = [h["iteration"] for h in hist]
        for col in sorted(k for k in hist[0] if k.endswith(f"_{key}")):
            ax.plot(its, [100 * h[col] for h in hist], marker="o", ms=3,
                    label=f"{col.removesuffix('_' + key)} classes (seed {seed})")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"{key} accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_examples(data: Any, classes: int = 8, per_class: int = 3, title: str | None = None):
    """A grid of the first images of the first ``classes`` classes of a :class:`ClassDataset`."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(per_class, classes, figsize=(classes * 0.8, per_class * 0.8))
    for c in range(classes):
        for i in range(per_class):
            img = data.images[c, i].float() / data.scale  # (C, H, W)
            ax = axes[i, c]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img.permute(1, 2, 0).clamp(0, 1))
            ax.set_axis_off()
    fig.suptitle(title or data.name, fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- small computations the chapters show
def last_batch_overlap(inner_iters: int, inner_batch: int = 10, train_shots: int = 10, ways: int = 5,
                       tail_shots: int | None = None, n_tasks: int = 1000, seed: int = 0) -> float:
    """Fraction of the last inner mini-batch's samples already used by an earlier mini-batch (Figure 4).

    Drawn with the library's own sampler (``TaskSampler.train_batches``) on a stand-in data set
    whose every image holds its own index, averaged over ``n_tasks`` tasks. With a shared tail
    (``tail_shots=None``) the last batch overlaps once the k batches exceed one pass over the
    task's ``ways * train_shots`` samples; a separate tail (``tail_shots`` of the ``train_shots``
    reserved for the last step, as the released ``--foml-tail``) never does.
    """
    import torch

    from .tasks import ClassDataset, TaskSampler

    ids = torch.arange(ways * train_shots, dtype=torch.float32).reshape(ways, train_shots, 1, 1, 1)
    data = ClassDataset(ids, "indices", tuple(str(c) for c in range(ways)))
    sampler = TaskSampler(data, ways, torch.Generator().manual_seed(seed))
    batches = sampler.train_batches(n_tasks, train_shots, inner_batch, inner_iters, tail_shots=tail_shots)
    seen = torch.cat([x.reshape(n_tasks, -1) for x, _ in batches[:-1]], dim=1) if inner_iters > 1 else None
    last = batches[-1][0].reshape(n_tasks, -1)
    if seen is None:
        return 0.0
    overlap = (last[:, :, None] == seen[:, None, :]).any(-1).float().mean()
    return float(overlap)


BENCH_PATHS = {"serial": "one task at a time (nn.Module + torch.optim)",
               "reference_batched": "library: vmap over tasks",
               "reference_sequential": "library: released order",
               "engine_sequential": "released order, flat buffers",
               "engine_sequential_torch": "released order, flat buffers, PyTorch kernels",
               "engine_eager": "engine, eager", "engine_graph": "engine, one CUDA graph",
               "engine_graph_fused_adam": "engine, CUDA graph + fused Adam"}


def breakable(name: str) -> str:
    """A unit or experiment name for an HTML table cell, with line-break opportunities (``<wbr>``) after
    ``_``, ``+`` and before ``-seed``: ``figure3_avg_g1+g2+g3+g4-seed0`` has no space to wrap at and would
    widen its column past the page."""
    out = name.replace("_", "_<wbr>").replace("+", "+<wbr>")
    return out.replace("-seed", "<wbr>-seed")


def bench_path_label(path: str, kernels: str | None = None) -> str:
    """A ``benchmarks/bench.py`` path name in words (``runs3``: three runs batched); ``kernels``, where the
    file records it, says whether the released-order path ran one C++ call per inner step."""
    if path.startswith("runs") and path[4:].isdigit():
        return f"engine, {path[4:]} runs batched"
    if path == "engine_sequential" and kernels:
        return BENCH_PATHS[path] + (", one C++ call per step" if kernels == "native" else ", PyTorch kernels")
    return BENCH_PATHS.get(path, path)


def gflops(entry: dict, path: str) -> float | None:
    """GFLOP/s of one path of a ``benchmarks/bench.py`` config entry: its ``gflop_per_iter`` over its time."""
    ms = entry.get("paths", {}).get(path, {}).get("ms_per_iter")
    return entry["gflop_per_iter"] / (ms / 1e3) if entry.get("gflop_per_iter") and ms else None


def benchmark_rows(doc: dict) -> list[dict]:
    """One row per (config, path) of a ``benchmarks/bench.py`` results file: ms per meta-iteration and more.

    Readable labels, and a dash (never an empty cell) where a figure does not apply. GFLOP/s (files that
    record ``gflop_per_iter``): the meta-iteration's convolution and matrix-product work over its time.
    """
    rows = []
    for name, entry in doc.get("configs", {}).items():
        for path, p in entry.get("paths", {}).items():
            row = {"Config": name, "Path": bench_path_label(path, p.get("kernels"))}
            if "ms_per_iter" not in p:
                rows.append({**row, "ms / meta-iteration": "failed: " + str(p.get("error", "?"))[:80],
                             "ms / run": "—", "× serial": "—", "Operations / iteration": "—",
                             **({"GFLOP/s": "—"} if entry.get("gflop_per_iter") else {})})
                continue
            speed = entry.get("speedup_vs_serial", {}).get(path)
            ops = p.get("kernels_per_replay") or p.get("kernels_per_iter") or p.get("aten_ops_per_iter")
            rows.append({**row, "ms / meta-iteration": f"{p['ms_per_iter']:.1f}",
                         "ms / run": f"{p['ms_per_run']:.1f}" if "ms_per_run" in p else "—",
                         "× serial": f"{speed:.2f}" if speed is not None else "—",
                         "Operations / iteration": f"{ops:,}" if ops else "—",
                         **({"GFLOP/s": f"{gflops(entry, path):.1f}"} if entry.get("gflop_per_iter") else {})})
    return rows


def run_cost_rows(doc: dict, path: str = "engine_sequential", eval_tasks: dict[str, int] | None = None) -> list[dict]:
    """What each paper-scale run of the CPU queue costs, from a ``benchmarks/bench.py`` results file.

    Training: the config's meta-iterations x the path's ms per meta-iteration. Evaluation: for each of
    the config's eval settings, the tasks the queue evaluates (``eval_tasks[name]``, default from
    ``runs/plan.toml``: 10,000 test + 2,000 train tasks for Omniglot, 10,000 for CIFAR-FS) at the
    ``sequential`` scorer's seconds per task of the setting timed for that config (Omniglot 5-way
    1-shot, 20-way 5-shot, CIFAR-FS 5-shot: an upper bound for its 1-shot setting).
    """
    from .configs import PAPER_CONFIGS

    if eval_tasks is None:
        from .reproduce import load_plan

        plan = load_plan()
        eval_tasks = {e.config.name: sum(n for _, n in e.evaluate) for e in plan.experiments.values()}
    timed = {e["config"]: e for k, e in doc.items() if k.startswith("eval") and isinstance(e, dict) and "config" in e}
    rows = []
    for name, entry in doc.get("configs", {}).items():
        p = entry.get("paths", {}).get(path, {})
        if "ms_per_iter" not in p or name not in PAPER_CONFIGS:
            continue
        config = PAPER_CONFIGS[name]
        train_h = config.meta_iters * p["ms_per_iter"] / 1000 / 3600
        ev = timed.get(name, {})   # an evaluation timed on this config's network and ways
        per_10000 = ev.get("sequential_s_per_10000")
        tasks = eval_tasks.get(name, 10_000)
        eval_h = None if per_10000 is None else len(config.evals) * tasks * per_10000 / 10_000 / 3600
        rows.append({"config": name, "meta-iterations": config.meta_iters, "ms / meta-iteration": round(p["ms_per_iter"], 1),
                     "training hours": round(train_h, 1), "evaluation tasks per setting": tasks,
                     "evaluation hours": None if eval_h is None else round(eval_h, 1),
                     "total hours": None if eval_h is None else round(train_h + eval_h, 1),
                     "evaluation timed on": f"{ev['ways']}-way {ev['shots']}-shot" if per_10000 else "not timed"})
    return rows


def time_meta_iterations(config: Any, iters: int = 5, device: str = "cpu", seed: int = 0) -> list[dict]:
    """Milliseconds per meta-iteration of ``config`` (Algorithm 2), measured now, on each path that runs
    it here: batched (``vmap``, mean Adam carry), the reference loop in the released order, and, where
    there is one (a CPU), the fast path ``reptile train`` takes by default (``reproduce.train_step``).

    One warm-up iteration, then ``iters`` timed ones, each on freshly sampled tasks.
    """
    import time

    import torch

    from .algorithms import meta_step
    from .models import init_params
    from .reproduce import train_step
    from .tasks import TaskSampler
    from .train import make_learner

    data = load_splits(config.dataset)["train"].to(device)
    learner = make_learner(config, data.image_shape, device)
    paths = [("batched (vmap), adam_carry='mean'", meta_step, True, "mean"),
             ("reference loop, released order (--engine reference)", meta_step, False, "sequential")]
    fast = train_step(config, device)
    if fast is not None:
        paths.append(("fast path, released order (the default here)", fast, False, "sequential"))
    rows = []
    for label, step_fn, batched, carry in paths:
        phi = {k: v.to(device) for k, v in init_params(learner.model, torch.Generator().manual_seed(seed)).items()}
        state = learner.opt.init(phi)
        sampler = TaskSampler(data, config.classes, torch.Generator(device=device).manual_seed(seed))
        times = []
        for i in range(iters + 1):
            batches = sampler.train_batches(config.meta_batch, config.train_shots, config.inner_batch,
                                            config.inner_iters, config.replacement, config.foml_tail)
            if device != "cpu":
                torch.cuda.synchronize()
            t = time.perf_counter()
            r = step_fn(learner.loss_fn, phi, learner.opt, state, batches, 1.0, config.weights,
                        batched=batched, adam_carry=carry)
            if device != "cpu":
                torch.cuda.synchronize()
            if i:  # the first iteration warms up
                times.append(time.perf_counter() - t)
            phi, state = r.params, r.state
        rows.append({"path": label, "ms per meta-iteration": 1000 * sum(times) / len(times),
                     "timed iterations": len(times)})
    return rows


# ---------------------------------------------------------------- figures and boxes on the page
def figures_dir() -> Path:
    """``book/executed/figures/``: the PNGs of the chapters' numbered figures (committed with the notebooks)."""
    return REPO_ROOT / "book" / "executed" / "figures"


def show_figure(fig: Any, name: str, caption: str) -> None:
    """Show ``fig`` as a numbered figure with ``caption`` (MyST ``{figure}``, label ``fig-<name>``).

    The PNG is written at the figure's dpi (150, :mod:`reptile_lib.plots.style`) to
    ``book/executed/figures/<name>.png``, next to the executed notebooks, and the figure closed.
    """
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"figure name {name!r}: use letters, digits, '-' and '_' only")
    path = figures_dir() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    display(Markdown(f":::{{figure}} figures/{name}.png\n:name: fig-{name}\n:width: 100%\n\n{caption}\n:::\n"))



def show_unfinished_run(plan: Any, experiment: str, run: str, tasks_of: str, title: str) -> bool:
    """Show the learning curve that ``experiment``'s unfinished paper-scale units have logged so far,
    labelled "Unfinished, not a result" (``run``: how the text names the run, ``tasks_of``: where its
    curve's tasks come from). False, showing nothing, when no such unit has a curve point."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    from .plots.experiments import learning_curves
    from .reproduce import unfinished_curves

    so_far = unfinished_curves(plan, experiment)
    if so_far is None:
        return False
    exp = plan.experiments[experiment]
    config = exp.config
    its = ", ".join(f"seed {s} at {i:,}" for s, i in so_far["extra"]["iterations"].items())
    display(Markdown(
        f"**Unfinished, not a result.** {run} is still in the queue ({its} of {config.meta_iters:,} meta-iterations "
        f"when this page was executed). Its accuracy on {config.eval_interval_tasks} sampled tasks of {tasks_of} every "
        f"{config.eval_interval:,} iterations (the band is the 95% interval over those tasks) shows how far training "
        f"has got; its numbers join the table ({max(n for _, n in exp.evaluate):,} test tasks each) once it is done."))
    learning_curves(so_far, title=title)
    plt.show()
    return True
