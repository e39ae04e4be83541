"""The experiment chapters' figures, drawn from results files only (no training here).

- :func:`learning_curves`: accuracy on sampled tasks against meta-iteration (Tables 1-2 runs);
- :func:`figure3`: the ten gradient combinations of Figure 3, with 95% bands;
- :func:`figure4`: the three sensitivity panels of Figure 4, with the shared tail's overlap regime shaded;
- :func:`figure4_curves`: the training-class curves of the Figure 4 runs (have they levelled off?).
"""
from __future__ import annotations

from typing import Any, Mapping

from .style import legend_below, panels
from .style import panels as panel_grid

PROTOCOL_LABEL = {"nontransductive": "non-transductive", "transductive": "transductive"}
ALGORITHM_STYLE = {"reptile": ("tab:blue", "o", "Reptile"),
                   "fomaml-shared": ("tab:red", "s", "FOMAML, shared tail"),
                   "fomaml-separate": ("tab:green", "^", "FOMAML, separate tail")}
# Figure 3: a hue per family, darker with more inner steps k = 2, 3, 4 (g1 alone: black); a line style per
# family too, so that the families stay apart in grey
FAMILY_COLORS = {"fomaml": ("#6baed6", "#2171b5", "#08306b"), "sum": ("#fd8d3c", "#d94801", "#7f2704"),
                 "average": ("#74c476", "#238b45", "#00441b")}
FAMILY_STYLE = {"g1 alone": "-", "fomaml": ":", "sum": "-", "average": "--"}
FAMILY_ORDER = ("g1 alone", "fomaml", "sum", "average")
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}   # legend words for the splits


def _figure3_color(family: str, k: int) -> str:
    shades = FAMILY_COLORS.get(family)
    return "black" if shades is None else shades[min(max(k - 2, 0), len(shades) - 1)]


def _axes(ax, height=3.2):
    if ax is None:
        _, (ax,) = panels(1, height)
    return ax


def _kind(doc: Mapping[str, Any]) -> str:
    if doc.get("profile") != "paper":
        return "smoke run (not comparable)"
    return "paper-scale run" if doc["provenance"].get("finished") else "paper-scale run, UNFINISHED"


def learning_curves(doc: Mapping[str, Any], ax=None, protocol: str = "nontransductive", title: str | None = None):
    """Accuracy on freshly sampled tasks of each monitored split against meta-iteration.

    One line per split: the mean over seeds, with each seed as a thin line when there are several.
    """
    import numpy as np

    ax = _axes(ax)
    hist = {s: h for s, h in doc.get("extra", {}).get("history", {}).items() if h}
    splits = sorted({k[: -len(protocol) - 1] for h in hist.values() for k in h[0]
                     if k.endswith("_" + protocol)}, key=lambda s: (s != "train", s))
    colors = {"train": "tab:blue", "val": "tab:orange", "test": "tab:red"}
    for split in splits:
        key = f"{split}_{protocol}"
        series = [([p["iteration"] for p in h if key in p], [100 * p[key] for p in h if key in p]) for h in hist.values()]
        if len(series) > 1:
            for its, acc in series:
                ax.plot(its, acc, color=colors.get(split, "gray"), lw=0.6, alpha=0.35)
        n = min(len(s[0]) for s in series)
        its = series[0][0][:n]
        mean = np.mean([s[1][:n] for s in series], axis=0)
        ax.plot(its, mean, color=colors.get(split, "gray"), marker="o", ms=2.5, lw=1.4,
                label=f"{SPLIT_NAMES.get(split, split)} classes" + (f" (mean of {len(series)} seeds)" if len(series) > 1 else ""))
        h = next(iter(hist.values()))
        if len(series) == 1 and all(f"{key}_ci95" in p for p in h if key in p):  # one seed: its 95% band
            ci = np.array([100 * p[f"{key}_ci95"] for p in h if key in p][:n])
            ax.fill_between(its, mean - ci, mean + ci, color=colors.get(split, "gray"), alpha=0.12, lw=0)
    config = doc.get("config", {})
    tasks = config.get("eval_interval_tasks")
    spec = (config.get("evals") or [{}])[0]
    setting = f", {spec['shots']}-shot {config['classes']}-way" if spec and "classes" in config else ""
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"{PROTOCOL_LABEL[protocol]} accuracy{setting} (%)")
    ax.set_title(title or f"{doc.get('experiment', '')}: learning curve, {_kind(doc)}"
                 + (f"\n{tasks} sampled tasks per point and split" if tasks else ""), fontsize=9)
    ax.grid(alpha=0.3)
    legend_below(ax.figure, [ax])
    return ax


def figure3(doc: Mapping[str, Any], ax=None, protocol: str = "nontransductive", band: bool = True,
            zoom: bool = True):
    """Figure 3: test accuracy against meta-iteration for each gradient combination.

    Colour = family (blues: g_k alone, FOMAML; oranges: the sum, Reptile; greens: the average), darker
    with more inner steps k; line style = family too (dotted, solid, dashed). Bands: with one seed, the
    95% interval over the sampled tasks of a point; with several (``extra.seed_curves``), from the lowest
    to the highest seed. ``zoom``: an inset magnifies the last three quarters of training, where the
    nine curves other than g1 lie within a few points of each other (drawn where g1 leaves room).
    The legend has a column per family.
    """
    import numpy as np
    from matplotlib.lines import Line2D

    ax = _axes(ax, 3.8)
    curves = doc["extra"]["curves"]
    key = f"{doc['extra']['monitor']['split']}_{protocol}"
    drawn = []   # (point, iterations, accuracy, line)
    for p in doc["extra"]["points"]:
        h = [q for q in curves.get(p["config"], []) if key in q]
        if not h:
            continue
        its = np.array([q["iteration"] for q in h])
        acc = 100 * np.array([q[key] for q in h])
        color, style = _figure3_color(p["panel"], int(p["value"])), FAMILY_STYLE.get(p["panel"], "-")
        line, = ax.plot(its, acc, color=color, ls=style, lw=1.6 if p["panel"] != "g1 alone" else 2.0,
                        label=p["algorithm"])
        drawn.append((p, its, acc, line))
        seeds = list(doc["extra"].get("seed_curves", {}).get(p["config"], {}).values())
        if band and len(seeds) > 1:  # several seeds: the band spans them (lowest to highest seed)
            per_seed = np.array([[next(q[key] for q in s if q["iteration"] == i) for i in its] for s in seeds])
            ax.fill_between(its, 100 * per_seed.min(0), 100 * per_seed.max(0), color=color, alpha=0.12, lw=0)
        elif band and f"{key}_ci95" in h[0]:
            ci = 100 * np.array([q[f"{key}_ci95"] for q in h])
            ax.fill_between(its, acc - ci, acc + ci, color=color, alpha=0.08, lw=0)
    m = doc["extra"]["monitor"]
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"{m['split']} accuracy, 5-shot 5-way (%)")
    several = any(len(v) > 1 for v in doc["extra"].get("seed_curves", {}).values())
    bands = "range over seeds" if several else "95% interval over those tasks"
    ax.set_title(f"Figure 3: inner-gradient combinations ({_kind(doc)})\n{m['tasks_per_point']} {m['split']} tasks "
                 f"per point, {PROTOCOL_LABEL[protocol]}; bands: {bands}", fontsize=9)
    ax.grid(alpha=0.3)
    if zoom:
        _figure3_zoom(ax, drawn)
    # the legend: one column per family (g1 alone, FOMAML, sum, average), k growing downwards
    blank = Line2D([], [], lw=0, label=" ")
    columns = [col for fam in FAMILY_ORDER if (col := [line for p, _, _, line in drawn if p["panel"] == fam])]
    rows = max((len(col) for col in columns), default=0)
    handles = [h for col in columns for h in col + [blank] * (rows - len(col))]
    legend_below(ax.figure, [ax], ncol=len(columns) or None, handles=handles)
    return ax


def _figure3_zoom(ax, drawn) -> None:
    """An inset of the last three quarters of training, for the curves above g1, where g1 leaves room."""
    import numpy as np

    upper = [(its, acc, line) for p, its, acc, line in drawn if p["panel"] != "g1 alone"]
    if not upper:
        return
    top = max(int(its.max()) for its, _, _ in upper)
    start = top // 4
    tails = [acc[its >= start] for its, acc, _ in upper if (its >= start).any()]
    low = min(float(a.min()) for a in tails)
    lo_main, hi_main = ax.get_ylim()
    if low - lo_main < 0.5 * (hi_main - lo_main):   # the curves fill the panel: nothing to magnify
        return
    inset = ax.inset_axes([0.3, 0.25, 0.67, 0.42])
    for its, acc, line in upper:
        keep = its >= start
        inset.plot(its[keep], acc[keep], color=line.get_color(), ls=line.get_linestyle(), lw=1.2)
    inset.set_xlim(start, top)
    step = 10 ** int(np.log10(max(top - start, 1)))   # a few round ticks, in thousands
    ticks = [t for t in range(0, top + 1, step) if t >= start]
    inset.set_xticks(ticks, [f"{t / 1000:g}k" for t in ticks])
    inset.set_ylim(np.floor(low) - 0.5, min(100.0, float(max(a.max() for a in tails)) + 0.5))
    inset.set_title(f"zoom: meta-iterations {start:,}–{top:,}", fontsize=7)
    inset.tick_params(labelsize=7)
    inset.grid(alpha=0.3)
    inset.set_facecolor("white")


def figure4(doc: Mapping[str, Any], axes=None, protocol: str = "nontransductive"):
    """Figure 4: final 5-shot 5-way test accuracy against each swept value, one line per algorithm.

    Error bars: 95% interval over the evaluation tasks. Grey shading: values where shared-tail
    FOMAML's last mini-batch repeats samples of earlier ones (``sweeps.last_batch_overlap`` > 0).
    """
    import matplotlib.pyplot as plt

    from ..sweeps import PANEL_TITLES, last_batch_overlap, point_metric

    panels_ = list(dict.fromkeys(p["panel"] for p in doc["extra"]["points"]))
    if axes is None:
        _, axes = panel_grid(len(panels_), 2.9, sharey=True)
    runs = {r["name"]: r for r in doc["config"]["runs"]}
    for ax, panel in zip(axes, panels_):
        pts = [p for p in doc["extra"]["points"] if p["panel"] == panel]
        values = sorted({p["value"] for p in pts})
        if panel in ("inner_iters", "inner_batch"):  # shade from between the last clean and first overlapping value
            share = {}
            for v in values:
                run = next((runs[p["config"]] for p in pts if p["value"] == v and p["algorithm"] == "fomaml-shared"), None)
                if run is not None:
                    share[v] = last_batch_overlap(run["inner_iters"], run["inner_batch"], run["classes"] * run["train_shots"])
            over = [v for v in values if share.get(v, 0) > 0]
            if over:
                clean = [v for v in values if v < min(over)]
                margin = 0.04 * (max(values) - min(values) or 1)
                ax.axvspan((max(clean) + min(over)) / 2 if clean else min(over) - margin, max(values) + margin,
                           color="0.88", lw=0, zorder=0)
                for v in over:
                    if share[v] < 1:
                        ax.annotate(f"{share[v]:.0%}", (v, 0.02), xycoords=("data", "axes fraction"), ha="center",
                                    fontsize=7, color="0.4")
        for alg, (color, marker, label) in ALGORITHM_STYLE.items():
            xs, ys, es = [], [], []
            for v in values:
                p = next((p for p in pts if p["value"] == v and p["algorithm"] == alg), None)
                m = point_metric(doc, p, protocol) if p else None
                if m is not None:
                    xs.append(v)
                    ys.append(100 * m["mean"])
                    es.append(100 * m["ci95"])
            if xs:
                ax.errorbar(xs, ys, yerr=es, color=color, marker=marker, ms=4, lw=1.3, capsize=2, label=label)
        if panel == "meta_step":
            ax.set_xscale("log", base=2)
        ax.set_xticks(values)
        ax.set_xticklabels([f"{v:g}" for v in values])
        ax.set_title(PANEL_TITLES.get(panel, panel), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[::2]:
        ax.set_ylabel(f"test accuracy, 5-shot 5-way,\n{PROTOCOL_LABEL[protocol]} (%)")
    legend_below(axes[0].figure, axes)
    return axes


def figure4_curves(doc: Mapping[str, Any], ax=None, protocol: str = "nontransductive"):
    """Training-class accuracy of every Figure 4 run against meta-iteration (one thin line per run)."""
    ax = _axes(ax)
    split = doc["extra"]["monitor"]["split"]
    key = f"{split}_{protocol}"
    algs = {p["config"]: p["algorithm"] for p in doc["extra"]["points"]}
    seen = set()
    for name, h in doc["extra"]["curves"].items():
        h = [q for q in h if key in q]
        if not h:
            continue
        color, _, label = ALGORITHM_STYLE[algs[name]]
        ax.plot([q["iteration"] for q in h], [100 * q[key] for q in h], color=color, lw=0.8, alpha=0.6,
                label=None if label in seen else label)
        seen.add(label)
    m = doc["extra"]["monitor"]
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"{split} accuracy (%)")
    ax.set_title(f"Figure 4 runs on {split} classes ({_kind(doc)}): {m['tasks_per_point']} tasks per point", fontsize=9)
    ax.grid(alpha=0.3)
    legend_below(ax.figure, [ax])
    return ax
