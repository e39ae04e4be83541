"""Figure 3 (Section 5) assembled from the queue's ten curves: ``results/figure3.json``.

The queue trains each curve of Figure 3 as its own experiment (``runs/plan.toml``:
``figure3_g1``, ``figure3_g1+g2`` ...) and writes each one's results to ``results/figure3/<curve>.json``
when a seed of it finishes. This module joins those files into the one document the chapter, the
figure and the scoreboard read, in the layout of :func:`reptile_lib.sweeps.run_figure`:
``metrics['<curve config>|<metric>']``, ``extra.curves[<curve config>]`` (the mean over finished seeds
of each curve point) and ``extra.seed_curves`` (each seed's points, for a band across seeds). It is
``finished`` once every curve has at least one finished seed; until then it holds the curves done so far.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from .results import ResultsMismatchError, load_results, provenance, results_document, write_document

FIGURE = "figure3"


def curve_experiments(plan: Any) -> dict[str, Any]:
    """The plan's experiments that train one of Figure 3's curves exactly (``configs.FIGURE3_CURVES``),
    by curve config name (``figure3[g1]`` -> its experiment). Others (a smaller test plan) are not Figure 3."""
    from .sweeps import figure3_points

    curves = {p.config.name: p.config for p in figure3_points("paper")}
    return {e.config.name: e for e in plan.experiments.values() if curves.get(e.config.name) == e.config}


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


def assemble(plan: Any) -> dict | None:
    """The Figure 3 document from the curves' results files (None: no curve has a finished seed)."""
    from .reproduce import results_path
    from .sweeps import figure3_points, figure_config

    points = figure3_points("paper")
    exps = curve_experiments(plan)
    metrics, curves, seed_curves, iterations = {}, {}, {}, {}
    seeds, devices, commits, wall, done = set(), set(), set(), 0.0, 0
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
        wall += prov["wall_time_s"]
    if not done:
        return None
    base = points[0].config
    extra = {"figure": FIGURE, "points": [q.to_dict() for q in points], "curves": curves, "seed_curves": seed_curves,
             "iterations": iterations, "diverged": {}, "curves_finished": done,
             "monitor": {"split": split or "test", "tasks_per_point": base.eval_interval_tasks,
                         "interval": base.eval_interval},
             "trainer": "the queue (reptile reproduce), one experiment per curve"}
    prov = provenance("cpu", sorted(seeds), wall, done == len(points), commits=sorted(commits))
    prov["device"] = "; ".join(sorted(devices))
    return results_document(FIGURE, "paper", figure_config(FIGURE, "paper", points), metrics, prov, extra)


def write(plan: Any, path: str | Path | None = None) -> Path | None:
    """Write ``results/figure3.json`` from the finished curves (None: none finished yet)."""
    doc = assemble(plan)
    if doc is None:
        return None
    return write_document(Path(path) if path is not None else plan.results / f"{FIGURE}.json", doc)


def has_unit(plan: Any, curve: str, seed: int) -> bool:
    """Whether ``results/figure3.json`` already holds ``seed`` of the curve named ``curve``."""
    import json

    path = plan.results / f"{FIGURE}.json"
    if not path.exists():
        return False
    return str(seed) in json.loads(path.read_text())["extra"].get("seed_curves", {}).get(curve, {})
