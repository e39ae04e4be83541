# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Section 6: the geometric view

# %% tags=["parameters"]
profile = "paper"
device = "cpu"
seed = 0
retrain = False

# %% tags=["remove-input"]
import dataclasses

import torch
from IPython.display import Markdown, display

from reptile_lib import book, geometry, report
from reptile_lib.book import load_if_matching, provenance_line, results_path
from reptile_lib.plots import geometry as plots
from reptile_lib.plots.style import use_book_style

use_book_style()

torch.set_num_threads(1)  # two parameters: one thread is faster than two

config = geometry.get_config(profile)
if profile == "paper":
    doc = None if retrain else load_if_matching("geometry", config)
    if doc is None:  # several minutes on one CPU core
        doc = geometry.run_experiment(config, "paper", out=results_path("geometry"))
else:
    doc = geometry.run_experiment(dataclasses.replace(config, seed=seed), "smoke")
display(Markdown(report.claim_box("03_geometry")))

# %% [markdown]
# Section 6 gives Reptile a second reading. Every task $\tau$ has a set $\mathcal{W}_\tau$ of
# optimal weights. A good initialisation is one from which every task's set is close, so the
# paper proposes the objective
#
# $$\min_\phi\; \mathbb{E}_\tau\!\left[\tfrac12 D(\phi, \mathcal{W}_\tau)^2\right],$$ (eq-distance)
#
# with $D(\phi, \mathcal{W}) = \min_{W\in\mathcal{W}}\|\phi - W\|$ the Euclidean distance. Where
# the projection $P_{\mathcal{W}_\tau}(\phi)$ (the nearest point of $\mathcal{W}_\tau$) is unique,
# $\nabla_\phi \tfrac12 D(\phi, \mathcal{W}_\tau)^2 = \phi - P_{\mathcal{W}_\tau}(\phi)$, so a
# stochastic gradient step on one task is
#
# $$\phi \leftarrow \phi + \epsilon\,\big(P_{\mathcal{W}_\tau}(\phi) - \phi\big).$$ (eq-projection-step)
#
# Computing the projection means solving the task exactly. Reptile replaces it with $k$ SGD steps
# on the task's loss, $U^k_\tau(\phi)$, which for large $k$ lands near a point of
# $\mathcal{W}_\tau$, and takes the same step: $\phi \leftarrow \phi + \epsilon\,(U^k_\tau(\phi) - \phi)$.
#
# This chapter checks that reading on two families in the plane where $\mathcal{W}_\tau$, its
# projection and the optimum are known exactly.
# %% [markdown]
# ## Two task families with exact solution sets
#
# **Lines.** A task is one data point $(x_\tau, y_\tau)$ for the model $f(x) = w_1 x + w_2$, with
# loss $\tfrac12(w_1 x_\tau + w_2 - y_\tau)^2$. Its solutions form the line
# $\mathcal{W}_\tau = \{w : a_\tau\cdot w = y_\tau\}$, $a_\tau = (x_\tau, 1)$, and
#
# $$P_{\mathcal{W}_\tau}(w) = w - \frac{a_\tau\cdot w - y_\tau}{|a_\tau|^2}\,a_\tau, \qquad
#   \tfrac12 D(w, \mathcal{W}_\tau)^2 = \frac{(a_\tau\cdot w - y_\tau)^2}{2|a_\tau|^2}.$$ (eq-lines)
#
# The optimum is therefore a weighted least-squares fit with weights $1/|a_\tau|^2$. Everything
# about Reptile is exact here too: the loss's gradient points along $a_\tau$, so SGD on it moves
# straight towards the projection, and after $k$ steps of size $\alpha$ the residual has shrunk by
# $(1 - \alpha|a_\tau|^2)^k$:
#
# $$U^k_\tau(\phi) - \phi = c_\tau\,\big(P_{\mathcal{W}_\tau}(\phi) - \phi\big), \qquad
#   c_\tau = 1 - (1 - \alpha |a_\tau|^2)^k .$$ (eq-lines-reptile)
#
# Reptile's step is the projection step {eq}`eq-projection-step` scaled by $c_\tau$, the fraction
# of the way to the line that $k$ steps cover.
#
# Reptile's fixed point is then weighted least squares with weights $c_\tau/|a_\tau|^2$. For
# $k = 1$, $c_\tau = \alpha|a_\tau|^2$ and the weights are equal: ordinary least squares, the
# minimiser of the mean loss (joint training, as Section 5 says). As $k$ grows, $c_\tau \to 1$ and
# the fixed point tends to the optimum of the distance objective.
#
# **Circles.** A task is a range measurement: "be at distance $r_\tau$ from the beacon at
# $b_\tau$" ($b$ for beacon; $c_\tau$ stays the lines' shrink factor), with loss
# $(|w - b_\tau|^2 - r_\tau^2)^2 / (8 r_\tau^2)$ (which is $\approx \tfrac12(|w - b_\tau| - r_\tau)^2$
# near the circle). $\mathcal{W}_\tau$ is the circle,
# $P_{\mathcal{W}_\tau}(w) = b_\tau + r_\tau (w - b_\tau)/|w - b_\tau|$, and the optimum of the
# (non-convex) distance objective is found by an independent solver: a grid search over
# $[-4, 4]^2$, then Newton's method on its exact gradient and Hessian. SGD on the loss moves
# radially, but by a fraction of the way that depends on the distance, so again Reptile's fixed
# point depends on $k$.
#
# **Runs**, all with inner SGD of step $\alpha = 0.1$, from the same start:
#
# - *deterministic*: the meta-batch is every task, $\epsilon = 1$, run until a step moves $\phi$
#   by less than $10^{-12}$: the fixed point of each method, for $k = 1, 2, 4, \dots, 64$;
# - *stochastic*: one random task per iteration (serial Reptile, Algorithm 1) and $\epsilon$
#   annealed linearly from 0.5 to 0, 20 runs in parallel, for a few $k$;
# - *exact projections*: the SGD step on the distance objective, in both modes.

# %% tags=["remove-input", "nbval-check-output"]
c = doc["config"]
jt = doc["extra"]["lines"]["joint_training_optimum"]
display(Markdown(f"{c['n_lines']} lines and {c['n_circles']} circles; α = {c['learning_rate']}; deterministic runs for "
                 f"k = {', '.join(map(str, c['ks']))}; stochastic runs for k = {', '.join(map(str, c['trajectory_ks']))}, "
                 f"{c['n_runs']} runs × {c['meta_iters']:,} iterations, ε {c['meta_step']} → {c['meta_step_final']}. "
                 f"For the lines, the joint-training optimum (least squares) is ({jt[0]:.4f}, {jt[1]:.4f})."))
report.html_table([{"Family": kind, "Optimum": f"({o[0]:.4f}, {o[1]:.4f})",
                    "Mean D²/2 there": f"{doc['extra'][kind]['objective_at_optimum']:.4f}",
                    "|E[φ − P(φ)]| there": f"{doc['extra'][kind]['grad_norm_at_optimum']:.0e}"}
                   for kind in geometry.FAMILIES for o in [doc["extra"][kind]["optimum"]]])

# %% tags=["remove-input"]
display(Markdown(f"*Computed by the {provenance_line(doc)}.*"))

# %% [markdown]
# The optimum of the distance objective {eq}`eq-distance` for each family, the objective's value
# there, and the norm of its gradient $\mathbb{E}[\phi - P(\phi)]$ there (zero up to rounding).

# %% [markdown]
# ## Lines
#
# In {numref}`fig-geometry-lines`, the deterministic runs all head for the cluster of
# intersections; one stochastic run per method zig-zags between the lines as each step pulls
# towards one task's line; the zoom shows where they end, with the optimum's projections onto each
# line (dotted). Reptile with $k = 1$ ends on the joint-training optimum; larger $k$ ends closer to
# the optimum of the distance objective {eq}`eq-distance`.

# %% tags=["remove-input"]
book.show_figure(plots.trajectories(doc, "lines"), "geometry-lines",
                 "Lines: solution sets $W_\\tau$ (grey), the runs of SGD with exact projections and of Reptile, "
                 "deterministic and stochastic, and a zoom on their end points; dotted: the optimum's projections "
                 "onto the lines.")

# %% [markdown]
# ## Circles
#
# {numref}`fig-geometry-circles` shows the same for the circles.

# %% tags=["remove-input"]
book.show_figure(plots.trajectories(doc, "circles"), "geometry-circles",
                 "Circles: as the figure for the lines, with range measurements as tasks.")

# %% [markdown]
# ## Distance to the optimum against k
#
# {numref}`fig-geometry-distance` and the table below: how far each method's final point is from
# the optimum.

# %% tags=["remove-input"]
book.show_figure(plots.distance_vs_k(doc), "geometry-distance",
                 "Distance of Reptile's fixed point to the optimum of {eq}`eq-distance` against the number of "
                 "inner steps k (deterministic runs); dotted: SGD with exact projections.")

# %% tags=["remove-input", "nbval-check-output"]
m = doc["metrics"]
rows = []
for kind in geometry.FAMILIES:
    fam = doc["extra"][kind]
    rows.append({"Family": kind, "Method": "exact projections (deterministic)",
                 "Distance to the optimum": f"{m[f'{kind}_distance_projection_full']['mean']:.1e}",
                 "Iterations": f"{fam['projection_full']['iterations']:,}", "From the analytic fixed point": "—"})
    for k in c["ks"]:
        r = fam["reptile_full"][str(k)]
        gap = "—"
        if "reptile_fixed_point_analytic" in fam:
            a = torch.tensor(fam["reptile_fixed_point_analytic"][str(k)], dtype=torch.float64)
            gap = f"{float((torch.tensor(r['final'], dtype=torch.float64) - a).norm()):.0e}"
        rows.append({"Family": kind, "Method": f"Reptile, k = {k} (deterministic)",
                     "Distance to the optimum": f"{r['distance']:.1e}", "Iterations": f"{r['iterations']:,}",
                     "From the analytic fixed point": gap})
    for name, v in fam["stochastic"].items():
        method = "exact projections" if name == "projection" else name.replace("reptile_k", "Reptile, k = ")
        rows.append({"Family": kind, "Method": f"{method} (stochastic)",
                     "Distance to the optimum": f"{v['distance_mean']:.3f} ± {v['distance_ci95']:.3f} "
                                                f"(runs' mean end point: {v['distance_of_mean_final']:.3f})",
                     "Iterations": f"{c['meta_iters']:,}", "From the analytic fixed point": "—"})
report.html_table(rows)

# %% [markdown]
# Where each method ends. *Distance to the optimum*: from the end point to the optimum of
# {eq}`eq-distance`; for the stochastic rows, the mean over the runs with its 95% interval, and in
# brackets the distance of the runs' mean end point. *Iterations*: until a step moved $\phi$ by
# less than the tolerance (deterministic), or the fixed number of annealed steps (stochastic).
# *From the analytic fixed point*: the distance between a deterministic Reptile run's end point and
# its closed-form fixed point, the weighted least-squares solution with weights
# $c_\tau/|a_\tau|^2$, which exists for the lines only. A dash marks the rows without such a closed
# form: every circle row (the circles' fixed points are found only by running the method), the
# exact projections (their fixed point is the optimum, which the third column already measures
# against) and the stochastic runs (they end within SGD noise of a point, not on it).
#
# ## What to take away
#
# - SGD with exact projections reaches the optimum of $\mathbb{E}[\tfrac12 D^2]$ (to about
#   $10^{-12}$ here), as the gradient formula says.
# - Reptile reaches a fixed point that is *near* it, and nearer as $k$ grows: $k$ SGD steps are an
#   approximate projection, and its error, here $(1-\alpha|a_\tau|^2)^k$ of the way for the
#   lines, shrinks geometrically with $k$. For the lines the fixed point matches the closed form
#   to better than $10^{-10}$ (the runs stop when a step is below $10^{-12}$).
# - $k = 1$ is a different objective: the mean loss (joint training), whose minimiser is not the
#   point closest to all the solution sets.
# - The stochastic runs, with their annealed steps, end within SGD noise of the same points; the
#   mean of the runs' end points shows the same bias as the deterministic runs once that noise is
#   averaged away.
