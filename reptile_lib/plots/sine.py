"""Figure 1 from ``results/sine.json``: adapted predictions, loss against adaptation step, learning curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .style import legend_below, panels

LABELS = {"random": "random initialisation", "reptile": "Reptile", "maml": "MAML"}
COLORS = {"random": "tab:gray", "reptile": "tab:blue", "maml": "tab:orange"}
STEP_COLORS = ["tab:red", "tab:purple", "tab:blue", "tab:cyan"]


def adaptation_examples(doc: dict, activation: str | None = None) -> Figure:
    """The paper's figure: true curve, the 10 points, predictions after 0, 1 and 32 steps, per init."""
    activation = activation or doc["extra"]["main_activation"]
    ex = doc["extra"]["example"][activation]
    inits = [n for n in LABELS if n in ex["predictions"]]
    fig, axes = panels(len(inits), 2.8, sharey=True)
    for ax, name in zip(axes, inits):
        ax.plot(ex["x_plot"], ex["y_true"], color="black", lw=2, label="true")
        for color, (steps, pred) in zip(STEP_COLORS, ex["predictions"][name].items()):
            ax.plot(ex["x_plot"], pred, color=color, lw=1.5, ls="--" if steps == "0" else "-",
                    label=f"after {steps} step{'s' if steps != '1' else ''}")
        ax.plot(ex["x_support"], ex["y_support"], "x", color="black", ms=8, mew=2, label="10 points")
        ax.set_title(f"{LABELS[name]} ({activation})")
        ax.set_xlabel("x")
        ax.set_xlim(-5, 5)
    lim = 1.3 * max(abs(v) for v in ex["y_true"]) + 0.5
    axes[0].set_ylim(-lim, lim)
    for ax in axes[::2]:
        ax.set_ylabel("y")
    legend_below(fig, axes, ncol=3)
    return fig


def loss_curves(doc: dict) -> Figure:
    """Mean grid MSE against adaptation step, with 95% bands over the test tasks, per activation."""
    curves = doc["extra"]["loss_curves"]
    fig, axes = panels(len(curves), 3.2, sharey=True)
    n = doc["metrics"]["mse_after_32_steps_random"]["n_tasks"]
    for ax, (activation, by_init) in zip(axes, curves.items()):
        for name, c in by_init.items():
            steps = range(len(c["mean"]))
            lo = [m - h for m, h in zip(c["mean"], c["ci95"])]
            hi = [m + h for m, h in zip(c["mean"], c["ci95"])]
            ax.plot(steps, c["mean"], color=COLORS[name], label=LABELS[name])
            ax.fill_between(steps, lo, hi, color=COLORS[name], alpha=0.25)
        ax.set_yscale("log")
        ax.set_xlabel("SGD steps on the 10 points")
        ax.set_title(f"{activation}: mean over {n:,} new tasks")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("MSE on the 50-point grid")
    legend_below(fig, axes)
    return fig


def learning_curves(doc: dict) -> Figure:
    """Held-out MSE after 32 adaptation steps during meta-training (every run of the file)."""
    fig, (ax,) = panels(1, 3.2)
    styles = {"relu": "-", "tanh": ":"}
    for key, h in doc["extra"]["learning_curves"].items():
        algorithm, activation, seed = key.split("_")
        ax.plot(h["iteration"], h["val_mse_after_adaptation"], styles.get(activation, "-"),
                color=COLORS[algorithm], alpha=0.9 if seed == "seed0" else 0.5,
                label=f"{LABELS[algorithm]}, {activation}, {seed}")
    ax.set_yscale("log")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("held-out MSE after 32 steps")
    ax.grid(alpha=0.3, which="both")
    legend_below(fig, [ax], ncol=2)
    return fig
