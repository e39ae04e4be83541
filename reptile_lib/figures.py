"""Figures 3 and 4 (Sections 5 and 7) assembled from the queue's runs: ``results/figure3.json``,
``results/figure4.json``.

The queue trains each run of a figure as its own experiment (``runs/plan.toml``: Figure 3's ten curves
``figure3_g1``, ``figure3_g1+g2`` ...; Figure 4's sweep, whose experiments the plan generates) and
writes each one's results to ``results/<figure>/<run>.json`` when a seed of it finishes. This module
joins those files into the one document the chapter, the figure and the scoreboard read, in the
layout of :func:`reptile_lib.sweeps.run_figure`: ``metrics['<run config>|<metric>']``,
``extra.curves[<run config>]`` (the mean over finished seeds of each curve point) and
``extra.seed_curves`` (each seed's points, for a band across seeds). It is ``finished`` once every run
has at least one finished seed; until then it holds the runs done so far.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from .results import ResultsMismatchError, load_results, provenance, results_document, write_document

def curve_experiments(plan: Any, figure: str = "figure3") -> dict[str, Any]:
    """The plan's experiments that train one of a figure's runs exactly (``sweeps.figure_points``), by run
    config name (``figure3[g1]`` -> its experiment). Others (a smaller test plan) are not the figure's."""
    from .sweeps import figure_points

    runs = {p.config.name: p.config for p in figure_points(figure, "paper")}
    return {e.config.name: e for e in plan.experiments.values() if runs.get(e.config.name) == e.config}


def figure_of(plan: Any, config_name: str) -> str | None:
    """The figure whose run ``config_name`` trains in ``plan`` (None: no figure's)."""
    from .sweeps import FIGURES

    return next((f for f in FIGURES if config_name in curve_experiments(plan, f)), None)


def mean_curve(histories: Sequence[Sequence[dict]], key: str) -> list[dict]:
    """Points present in every seed's history: the mean of ``key`` over seeds, intervals combined."""
    common = set.intersection(*({q["iteration"] for q in h if key in q} for h in histories))
    out = []
    for it in sorted(common):
        pts = [next(q for q in h if q["iteration"] == it) for h in histories]
        n = len(pts)
        out.append({"iteration": it, key: sum(q[key] for q in pts) / n,
                    f"{key}_ci95": math.sqrt(sum(q.get(f"{key}_ci95", 0.0) ** 2 for q in pts)) / n,
                    "seeds": n})
    return out


def assemble(plan: Any, figure: str = "figure3") -> dict | None:
    """A figure's document from its runs' results files (None: no run has a finished seed). A run that
    serves several points (Figure 4's base point, in every panel) counts once per point."""
    from .reproduce import results_path
    from .sweeps import figure_config, figure_points

    points = figure_points(figure, "paper")
    exps = curve_experiments(plan, figure)
    metrics, curves, seed_curves, iterations = {}, {}, {}, {}
    seeds, devices, commits, dates, wall, done = set(), set(), set(), set(), 0.0, 0
    split = None
    for p in points:
        exp = exps.get(p.config.name)
        path = results_path(plan, exp.name) if exp is not None else None
        if path is None or not path.exists():
            continue
        try:
            doc = load_results(path, p.config, "paper")
        except ResultsMismatchError:
            continue
        done += 1
        for name, m in doc["metrics"].items():
            metrics[f"{p.config.name}|{name}"] = m
        hist = doc["extra"].get("history", {})
        split = (doc["extra"].get("curve") or ["test"])[0]
        key = f"{split}_nontransductive"
        seed_curves[p.config.name] = {s: [q for q in h if key in q] for s, h in hist.items()}
        if hist:
            curves[p.config.name] = mean_curve(list(hist.values()), key)
        iterations[p.config.name] = doc["extra"].get("iterations", {})
        prov = doc["provenance"]
        seeds.update(prov["seeds"])
        devices.update(d for d in prov["device"].split("; ") if d)
        commits.update(prov.get("commits", [prov["commit"]]))
        dates.add(str(prov.get("date", "")))
        wall += prov["wall_time_s"]
    if not done:
        return None
    base = points[0].config
    extra = {"figure": figure, "points": [q.to_dict() for q in points], "curves": curves, "seed_curves": seed_curves,
             "iterations": iterations, "diverged": {}, "curves_finished": done,
             "monitor": {"split": split or "test", "tasks_per_point": base.eval_interval_tasks,
                         "interval": base.eval_interval},
             "trainer": "the queue (reptile reproduce), one experiment per run"}
    names = {e.name for e in exps.values() if e is not None}
    planned = sorted({u.seed for u in plan.units if u.experiment.name in names} | seeds)
    prov = provenance("cpu", sorted(seeds), wall, done == len(points), commits=sorted(commits), seeds_planned=planned)
    prov["device"] = "; ".join(sorted(devices))
    prov["date"] = max(dates) or prov["date"]   # when its newest run was written, not when the runs were joined
    return results_document(figure, "paper", figure_config(figure, "paper", points), metrics, prov, extra)


def write(plan: Any, figure: str = "figure3", path: str | Path | None = None) -> Path | None:
    """Write ``results/<figure>.json`` from the finished runs (None: none finished yet)."""
    doc = assemble(plan, figure)
    if doc is None:
        return None
    return write_document(Path(path) if path is not None else plan.results / f"{figure}.json", doc)


def has_unit(plan: Any, figure: str, curve: str, seed: int) -> bool:
    """Whether ``results/<figure>.json`` already holds ``seed`` of the run named ``curve``."""
    import json

    path = plan.results / f"{figure}.json"
    if not path.exists():
        return False
    return str(seed) in json.loads(path.read_text())["extra"].get("seed_curves", {}).get(curve, {})


def obtain(figure: str, profile: str = "paper", *, retrain: bool = False, max_minutes: float | None = None,
           seed: int = 0, device: str = "cpu", plan: Any = None) -> tuple[dict | None, dict | None]:
    """What a figure chapter shows, ``(paper_doc, smoke_doc)`` (:func:`reptile_lib.sweeps.obtain_figure`).

    With ``retrain`` (profile ``paper``) the queue's units of the figure advance first, resumably, as
    ``reptile reproduce --only ...`` would (``max_minutes``: stop in time, checkpointed), and
    ``results/<figure>.json`` is rewritten from the runs finished so far.
    """
    from . import reproduce
    from .sweeps import obtain_figure

    if profile == "paper" and retrain:
        plan = plan or reproduce.load_plan()
        units = [e.name for e in curve_experiments(plan, figure).values()]
        reproduce.reproduce(plan, device=device, max_minutes=max_minutes, only=units, rebuild=False,
                            install_signals=False)
        write(plan, figure)
    return obtain_figure(figure, profile, seed=seed, device=device)
