"""Section 6 from ``results/geometry.json``: solution sets, trajectories, projections, distance vs k."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .style import legend_below, panels

K_COLORS = ["tab:orange", "tab:purple", "tab:red", "tab:brown"]


def _draw_sets(ax, fam: dict, lim: tuple[float, float, float, float]) -> None:
    x0, x1, y0, y1 = lim
    if fam["kind"] == "lines":  # W = {w : x w1 + w2 = y}
        w1 = np.linspace(x0, x1, 2)
        for (x,), (y,) in zip(fam["x"], fam["y"]):
            ax.plot(w1, y - x * w1, color="0.6", lw=1)
    else:
        t = np.linspace(0, 2 * math.pi, 300)
        for ((cx, cy),), (r,) in zip(fam["x"], fam["y"]):
            ax.plot(cx + r * np.cos(t), cy + r * np.sin(t), color="0.6", lw=1)
            ax.plot(cx, cy, "+", color="0.6")


def _project(fam: dict, w: np.ndarray) -> np.ndarray:
    if fam["kind"] == "lines":
        out = []
        for (x,), (y,) in zip(fam["x"], fam["y"]):
            a = np.array([x, 1.0])
            out.append(w - (a @ w - y) * a / (a @ a))
        return np.array(out)
    c = np.array([cc[0] for cc in fam["x"]])
    r = np.array([rr[0] for rr in fam["y"]])
    d = w - c
    return c + r[:, None] * d / np.linalg.norm(d, axis=1, keepdims=True)


def trajectories(doc: dict, kind: str, ks: tuple[int, ...] | None = None) -> Figure:
    """Deterministic runs (every task each step), one stochastic run per method, and a zoom on the optimum."""
    fam = doc["extra"][kind]
    opt = np.array(fam["optimum"])
    ks = ks or tuple(int(k[len("reptile_k"):]) for k in fam["stochastic"] if k.startswith("reptile_k"))
    fig, axes = panels(3, 3.4)
    pts = [np.array(fam["start"]), opt]
    lo, hi = np.min(pts, 0) - 1.2, np.max(pts, 0) + 1.2
    for ax, mode in zip(axes[:2], ("full", "stochastic")):
        if mode == "full":
            proj = np.array(fam["projection_full"]["trajectory"])
            runs = {k: np.array(fam["reptile_full"][str(k)]["trajectory"]) for k in ks}
            title = "deterministic: all tasks in every step"
        else:
            proj = np.array(fam["stochastic"]["projection"]["trajectory_run0"])
            runs = {k: np.array(fam["stochastic"][f"reptile_k{k}"]["trajectory_run0"]) for k in ks}
            title = "stochastic: one task per step, eps annealed (run 0)"
        _draw_sets(ax, fam, (lo[0], hi[0], lo[1], hi[1]))
        ax.plot(proj[:, 0], proj[:, 1], color="black", lw=1.5, label="SGD on E[D²/2] (exact projections)")
        for color, (k, tr) in zip(K_COLORS, runs.items()):
            ax.plot(tr[:, 0], tr[:, 1], color=color, lw=1.2, label=f"Reptile, k={k}")
        ax.plot(*fam["start"], "ks", ms=6, label="start")
        ax.plot(*opt, "*", color="tab:green", ms=14, label="argmin E[D²/2]")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_title(title, fontsize=9)
    # zoom: where each method ends, and the optimum's projections onto every W_tau
    ax = axes[2]
    finals = {k: np.array(v["final"]) for k, v in fam["reptile_full"].items()}
    spread = max(np.abs(np.array(list(finals.values())) - opt).max(), 0.05)
    half = 1.6 * spread
    _draw_sets(ax, fam, (opt[0] - half, opt[0] + half, opt[1] - half, opt[1] + half))
    for p in _project(fam, opt):
        ax.plot([opt[0], p[0]], [opt[1], p[1]], ":", color="tab:green", lw=1.2)
    for name, v in fam["stochastic"].items():
        f = np.array(v["finals"])
        color = "black" if name == "projection" else K_COLORS[list(ks).index(int(name[len("reptile_k"):]))]
        ax.plot(f[:, 0], f[:, 1], ".", color=color, alpha=0.5, ms=5)
    cmap = plt.get_cmap("viridis")
    for i, (k, f) in enumerate(sorted(finals.items(), key=lambda kv: int(kv[0]))):
        ax.plot(*f, "o", color=cmap(i / max(len(finals) - 1, 1)), ms=7, label=f"Reptile k={k} (deterministic)")
    ax.plot(*np.array(fam["projection_full"]["final"]), "k+", ms=14, mew=2, label="exact projections (deterministic)")
    ax.plot(*opt, "*", color="tab:green", ms=14, mfc="none", label="argmin E[D²/2]")
    if "joint_training_optimum" in fam:
        ax.plot(*fam["joint_training_optimum"], "D", color="tab:red", mfc="none", ms=10,
                label="joint-training optimum")
    ax.set_xlim(opt[0] - half, opt[0] + half)
    ax.set_ylim(opt[1] - half, opt[1] + half)
    ax.set_title("zoom on the end points (dots: stochastic runs)", fontsize=9)
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xlabel("$w_1$")
    for ax in axes[::2]:
        ax.set_ylabel("$w_2$")
    legend_below(fig, axes, ncol=2)
    return fig


def distance_vs_k(doc: dict) -> Figure:
    """Distance of the final phi to the optimum against k (deterministic runs), both families."""
    fig, (ax,) = panels(1, 3.2)
    for kind, color in (("lines", "tab:blue"), ("circles", "tab:red")):
        fam = doc["extra"][kind]
        ks = sorted(int(k) for k in fam["reptile_full"])
        d = [fam["reptile_full"][str(k)]["distance"] for k in ks]
        ax.loglog(ks, d, "o-", color=color, label=f"{kind}: Reptile (deterministic)")
        if "reptile_fixed_point_analytic" in fam:
            opt = np.array(fam["optimum"])
            da = [np.linalg.norm(np.array(fam["reptile_fixed_point_analytic"][str(k)]) - opt) for k in ks]
            ax.loglog(ks, da, "x", color="black", ms=8, label="lines: analytic fixed point")
        ax.axhline(max(fam["projection_full"]["distance"], 1e-16), color=color, ls=":", lw=1,
                   label=f"{kind}: exact projections")
    ax.set_xlabel("inner SGD steps k")
    ax.set_ylabel(r"distance of final $\phi$ to the optimum")
    ax.grid(alpha=0.3, which="both")
    legend_below(fig, [ax], ncol=2)
    return fig
