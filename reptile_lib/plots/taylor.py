"""Section 5 from ``results/taylor.json``: error of the expansion against alpha, gradient alignment."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .style import legend_below, panels

NAMES = {"maml": "MAML", "fomaml": "FOMAML", "reptile": "Reptile"}
K_COLORS = {2: "tab:blue", 3: "tab:orange", 4: "tab:green"}


def step_errors(doc: dict) -> Figure:
    """|alpha (E[g] - prediction)| against alpha, log-log: slope 3 with AvgGradInner, 2 without."""
    e = doc["extra"]["expansion"]
    alphas = e["alphas"]
    fig, axes = panels(3, 2.9, sharey=True)
    for ax, alg in zip(axes, NAMES):
        for key in e["errors"]:
            a, k = key.split("_k")
            if a != alg:
                continue
            k = int(k)
            color = K_COLORS.get(k, None)
            # the fitted slopes are in the chapter's table; the legend stays the same for all panels
            ax.loglog(alphas, e["errors"][key], "o-", color=color, ms=3, label=f"k={k}, both terms")
            ax.loglog(alphas, e["errors_zeroth"][key], "s--", color=color, alpha=0.5, ms=3,
                      label=f"k={k}, without AvgGradInner")
        ref = 0.3 * e["errors"][f"{alg}_k2"][0]  # below the data, so the guide stays visible
        ax.loglog(alphas, [ref * (a / alphas[0]) ** 3 for a in alphas], color="black", lw=0.8, ls=":",
                  label=r"$\propto\alpha^3$")
        ax.set_title(NAMES[alg])
        ax.set_xlabel(r"inner step size $\alpha$")
        ax.grid(alpha=0.3, which="both")
    for ax in axes[::2]:
        ax.set_ylabel(r"$\|\alpha\,(E[g] - \mathrm{formula})\|$")
    legend_below(fig, axes, ncol=3)
    return fig


def alignment(doc: dict) -> Figure:
    """Inner product and cosine of different mini-batches' gradients while stepping along each direction."""
    al = doc["extra"]["alignment"]
    fig, axes = panels(3, 2.9)
    colors = {"+AvgGradInner": "tab:green", "-AvgGrad": "tab:blue", "random": "tab:gray"}
    for name, rows in al.items():
        steps = range(len(rows["inner_product"]))
        for ax, q in zip(axes[:2], ("inner_product", "cosine")):
            ax.plot(steps, rows[q], color=colors[name], label=f"{name} (tasks used)")
            ax.plot(steps, rows[q + "_held_out"], color=colors[name], ls="--", label=f"{name} (held-out tasks)")
        axes[2].plot(steps, rows["loss"], color=colors[name], label=name)
    axes[0].set_ylabel(r"mean $g_i \cdot g_j$, $i \neq j$")
    axes[1].set_ylabel(r"mean $\cos(g_i, g_j)$, $i \neq j$")
    axes[2].set_ylabel("mean loss (tasks used)")
    for ax in axes:
        ax.set_xlabel("normalised steps")
        ax.grid(alpha=0.3)
    legend_below(fig, axes, ncol=2)
    return fig
