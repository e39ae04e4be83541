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
# # Section 5: what the three updates do, to second order

# %% tags=["parameters"]
profile = "paper"
device = "cpu"
seed = 0
retrain = False

# %% tags=["remove-input"]
import dataclasses

import torch
from IPython.display import Markdown, display

from reptile_lib import book, report, taylor
from reptile_lib.book import load_if_matching, provenance_line, results_path
from reptile_lib.plots import taylor as plots
from reptile_lib.plots.style import use_book_style

use_book_style()

config = taylor.get_config(profile)
if profile == "paper":
    doc = None if retrain else load_if_matching("taylor", config)
    if doc is None:  # about a minute on one CPU core
        doc = taylor.run_experiment(config, "paper", out=results_path("taylor"))
else:
    doc = taylor.run_experiment(dataclasses.replace(config, seed=seed), "smoke")
display(Markdown(report.claim_box("02_taylor")))

# %% [markdown]
# Section 5 of the paper expands the MAML, first-order MAML (FOMAML) and Reptile updates in a
# Taylor series in the inner step size $\alpha$. Two terms come out: **AvgGrad**, which lowers the
# expected loss (joint training), and **AvgGradInner**, which raises the inner product between
# the gradients of *different* mini-batches of the *same* task, that is, it makes one task's
# mini-batches agree. All three algorithms hold both terms and differ only in their weights. This
# chapter derives the expansion, then checks it numerically: the expectations are computed
# exactly (no sampling), on a model whose third derivatives are non-zero, in float64.
# %% [markdown]
# ## The expansion
#
# Take $k$ inner SGD steps of size $\alpha$ on mini-batches $1, \dots, k$ of one task, starting at
# $\phi_1 = \phi$:
#
# $$\phi_{i+1} = \phi_i - \alpha g_i, \qquad g_i = L_i'(\phi_i).$$ (eq-inner)
#
# Write $\bar g_i = L_i'(\phi_1)$ and $\bar H_i = L_i''(\phi_1)$ for the gradient and Hessian of
# mini-batch $i$ at the *initial* point. Since $\phi_i - \phi_1 = -\alpha\sum_{j<i} g_j = O(\alpha)$,
# a first-order expansion of $L_i'$ around $\phi_1$ gives
#
# $$
# \begin{aligned}
# g_i &= \bar g_i + \bar H_i(\phi_i - \phi_1) + O(\alpha^2) \\
#     &= \bar g_i - \alpha \bar H_i \textstyle\sum_{j<i} \bar g_j + O(\alpha^2).
# \end{aligned}
# $$ (eq-gi)
#
# **The three updates.** With the parameter change written as $-\alpha g$ (one inner step's
# scale):
#
# - FOMAML uses the last step's gradient, $g_{\text{FOMAML}} = g_k$.
# - Reptile uses the whole displacement, $g_{\text{Reptile}} = (\phi_1 - \phi_{k+1})/\alpha = \sum_{i=1}^k g_i$.
# - MAML differentiates the last mini-batch's loss through the $k-1$ first steps:
#   $g_{\text{MAML}} = \frac{\partial}{\partial \phi_1} L_k(\phi_k)$. Because
#   $\partial\phi_{i+1}/\partial\phi_i = I - \alpha L_i''(\phi_i)$,
#
# $$
# \begin{aligned}
# g_{\text{MAML}} &= (I - \alpha L_1''(\phi_1)) \cdots (I - \alpha L_{k-1}''(\phi_{k-1}))\, g_k \\
#   &= g_k - \alpha \textstyle\sum_{j<k} \bar H_j \bar g_k + O(\alpha^2) \\
#   &= \bar g_k - \alpha \bar H_k \textstyle\sum_{j<k} \bar g_j - \alpha \sum_{j<k} \bar H_j \bar g_k + O(\alpha^2),
# \end{aligned}
# $$ (eq-maml)
#
# using {eq}`eq-gi` for $g_k$.
#
# For $k = 2$: $g_{\text{MAML}} = \bar g_2 - \alpha\bar H_2\bar g_1 - \alpha\bar H_1\bar g_2$,
# $g_{\text{FOMAML}} = \bar g_2 - \alpha\bar H_2\bar g_1$ and
# $g_{\text{Reptile}} = \bar g_1 + \bar g_2 - \alpha\bar H_2\bar g_1$, all up to $O(\alpha^2)$.
#
# **Expectations.** Draw the task, then its mini-batches independently. Every $\bar g_i$ has the
# same mean, and for $i \neq j$ every $\bar H_i \bar g_j$ has the same mean, so define
#
# $$
# \text{AvgGrad} = \mathbb{E}[\bar g_1], \qquad
#   \text{AvgGradInner} = \mathbb{E}[\bar H_2 \bar g_1]
#   = \tfrac{1}{2}\,\mathbb{E}\!\left[\frac{\partial}{\partial\phi_1}(\bar g_1 \cdot \bar g_2)\right],
# $$ (eq-avg)
#
# the last form because $\partial(\bar g_1\cdot\bar g_2)/\partial\phi_1 = \bar H_1 \bar g_2 + \bar H_2 \bar g_1$
# and the two terms have the same expectation. Counting the pairs $j < i$:
#
# $$
# \begin{aligned}
# \mathbb{E}[g_{\text{MAML}}] &= \text{AvgGrad} - 2(k-1)\,\alpha\,\text{AvgGradInner} + O(\alpha^2) \\
# \mathbb{E}[g_{\text{FOMAML}}] &= \text{AvgGrad} - (k-1)\,\alpha\,\text{AvgGradInner} + O(\alpha^2) \\
# \mathbb{E}[g_{\text{Reptile}}] &= k\,\text{AvgGrad} - \tfrac{1}{2}k(k-1)\,\alpha\,\text{AvgGradInner} + O(\alpha^2)
# \end{aligned}
# $$ (eq-expansion)
#
# (Reptile: $\sum_{i=1}^k (i-1) = k(k-1)/2$ pairs; MAML: $k-1$ pairs in each of its two sums.)
#
# **What AvgGradInner does.** {eq}`eq-expansion` is the paper's result. The meta-step moves $\phi$ along $-g$, so the term
# $-c\,\alpha\,\text{AvgGradInner}$ of $g$ moves $\phi$ along $+\text{AvgGradInner}$, half the
# gradient of $\mathbb{E}[\bar g_1\cdot\bar g_2]$: gradient *ascent* on the inner product of two
# different mini-batches' gradients of the same task. The step that lowers one mini-batch's loss
# then also lowers the others': the task generalises from few examples.
#
# **k = 1.** There is no inner pair: $g_{\text{Reptile}} = g_1 = \bar g_1$, and
# $\mathbb{E}[g_{\text{Reptile}}] = \text{AvgGrad} = \nabla_\phi\,\mathbb{E}_\tau[L_\tau(\phi)]$
# exactly. Reptile with one inner step is SGD on the mean loss: joint training.

# %% [markdown]
# ## The check: exact expectations on a finite task family
#
# `reptile_lib.taylor` builds a family of sine tasks, each with a fixed set of mini-batches, and a
# small tanh network (every derivative of tanh is non-zero, so the $O(\alpha^2)$ remainder is
# genuinely there). The expectation over tasks and over $k$ independently drawn mini-batches is
# then a finite average: **every ordered $k$-tuple** of mini-batches of every task is one row of a
# meta-batch, and the core library computes the updates on all rows at once:
#
# - Reptile and FOMAML: `meta_step(..., eps=1, weights=step_weights(k))` and
#   `step_weights(k, [k])` move $\phi$ by the mean over rows of $-\alpha g$;
# - MAML: `maml_batch_gradient` with the first $k-1$ mini-batches as the support and the $k$-th as
#   the query (second order).
#
# AvgGrad is the gradient of the mean loss. AvgGradInner is computed per task as (mean Hessian) x
# (mean gradient) with one Hessian-vector product (`torch.func.jvp` of `torch.func.grad`), exact
# because the draws are independent, and cross-checked against
# $\tfrac12\nabla\,\mathbb{E}[\bar g_1\cdot\bar g_2]$ by central finite differences.

# %% tags=["remove-input", "nbval-check-output"]
c = doc["config"]
e = doc["extra"]
rel = doc["metrics"]["avg_grad_inner_fd_relative_error"]["mean"]
report.html_table([
    {"": "task family", "value": f"{c['n_tasks']} sine tasks × {c['n_batches']} mini-batches of {c['batch_size']} points"},
    {"": "network", "value": f"1-{'-'.join(map(str, c['hidden']))}-1 {c['activation']}, {e['n_params']} parameters, float64"},
    {"": "k", "value": ", ".join(map(str, c["ks"]))},
    {"": "α", "value": f"{c['alphas'][0]:g} … {c['alphas'][-1]:g} ({len(c['alphas'])} values, log-spaced)"},
    {"": "|AvgGrad|, |AvgGradInner|", "value": f"{e['expansion']['norm_avg_grad']:.4f}, {e['expansion']['norm_avg_grad_inner']:.4f}"},
    {"": "AvgGradInner: HVP vs finite differences", "value": f"relative difference {rel:.1e} (h = {c['fd_step']:g}): "
                                                          f"{'agree' if rel < 1e-6 else 'DISAGREE'}"}],
    {"": "Setting", "value": "Value"})

# %% tags=["remove-input"]
display(Markdown(f"*Computed by the {provenance_line(doc)}.*"))

# %% [markdown]
# The same computation, live, for one $k$ and one $\alpha$ (a second on a CPU):

# %%
family = taylor.family_of(config)
k, alpha = 3, 1e-3
exp_g = taylor.expected_updates(family, k, alpha)
avg_grad = taylor.avg_grad(family)
avg_grad_inner = taylor.avg_grad_inner(family)
pred = taylor.predicted_updates(avg_grad, avg_grad_inner, k, alpha)
for name in taylor.ALGORITHMS:
    rel = float((exp_g[name] - pred[name]).norm() / exp_g[name].norm())
    print(f"{name:8s} |E[g] - formula| / |E[g]| = {rel:.1e}")

# %% [markdown]
# ## The error shrinks like $\alpha^3$
#
# The formulas hold to $O(\alpha^2)$ in $g$, so the parameter step $\alpha g$ is right to
# $O(\alpha^3)$. On a log-log plot of $\|\alpha(\mathbb{E}[g] - \text{formula})\|$ against $\alpha$
# the slope is 3 (solid). Dropping the AvgGradInner term leaves an error of order $\alpha^2$
# (dashed, slope 2): the second term is exactly what the expansion claims.

# %% tags=["remove-input"]
book.show_figure(plots.step_errors(doc), "taylor-errors",
                 "Error of the expansion's parameter step against the inner step size α, log-log, per algorithm "
                 "and k: with both terms of {eq}`eq-expansion` (solid) and without AvgGradInner (dashed); the "
                 "dotted guide has slope 3.")

# %% tags=["remove-input", "nbval-check-output"]
mt = doc["metrics"]
report.html_table([{"Algorithm": plots.NAMES[alg], "Formula": label,
                    **{f"k = {k}": f"{mt[f'step_error_slope_{z}{alg}_k{k}']['mean']:.3f} ± "
                                   f"{mt[f'step_error_slope_{z}{alg}_k{k}']['ci95']:.3f}" for k in c["ks"]}}
                   for z, label in (("", "both terms (expected slope 3)"), ("zeroth_", "without AvgGradInner (expected 2)"))
                   for alg in taylor.ALGORITHMS])

# %% [markdown]
# Fitted slopes of $\log\|\alpha(\mathbb{E}[g] - \text{formula})\|$ against $\log\alpha$, with the fit's 95%
# interval. The slopes are close to 3 for all three algorithms and every $k$, though the fits are tight
# enough that most intervals exclude exactly 3; they fall furthest below 3 for MAML at $k = 3$ and
# $k = 4$, whose remainder is the largest, because at the largest $\alpha$ the next order begins to
# show.
#
# ## k = 1: Reptile is joint training
#
# With one inner step, Reptile's meta-step over a meta-batch holding every (task, mini-batch) pair
# is one SGD step of size $\epsilon\alpha$ on the mean loss, exactly, for any $\alpha$ (not only
# to leading order):

# %% tags=["remove-input", "nbval-check-output"]
k1 = doc["extra"]["k1_identity"]
display(Markdown(f"For α in {k1['alphas']} and ε = {k1['eps']}: the largest difference between Reptile's step and the "
                 f"SGD step on the mean loss is {k1['max_abs_diff_step']:.0e}; the largest |E[g] − AvgGrad| over the "
                 f"three algorithms is {k1['max_abs_diff_update']:.0e} (|AvgGrad| = {k1['norm_avg_grad']:.3f})."))

# %% [markdown]
# ## Following AvgGradInner aligns the mini-batches of a task
#
# On sine tasks with the chapter 1 network (1-64-64-1, ReLU, float64), take normalised steps
# along three directions: $+\text{AvgGradInner}$ (here over pairs of *different* mini-batches,
# $\mathbb{E}_{i\neq j}[\bar H_j \bar g_i]$, half the gradient of the pairwise inner product),
# $-\text{AvgGrad}$ (plain descent on the mean loss), and a random direction. We track the mean
# inner product $\bar g_i\cdot\bar g_j$ and the mean cosine between different mini-batches'
# gradients, on the tasks used and on as many held-out tasks.

# %% tags=["remove-input"]
book.show_figure(plots.alignment(doc), "taylor-alignment",
                 f"Mean inner product and cosine between different mini-batches' gradients, and the mean loss, while "
                 f"taking {c['ip_steps']} normalised steps of length {c['ip_step_size']} along each direction "
                 f"({c['ip_tasks']} tasks × {c['ip_batches']} mini-batches of {c['ip_batch_size']}).")

# %% tags=["remove-input", "nbval-check-output"]
al = doc["extra"]["alignment"]
report.html_table([{"Direction": name,
                    **{label: f"{rows[q][0]:.{d}f} → {rows[q][-1]:.{d}f}" for label, q, d in (
                        ("Inner product", "inner_product", 2), ("Held-out inner product", "inner_product_held_out", 2),
                        ("Cosine", "cosine", 3), ("Held-out cosine", "cosine_held_out", 3), ("Loss", "loss", 3))}}
                   for name, rows in al.items()])

# %% [markdown]
# Moving along AvgGradInner raises the inner product of different mini-batches' gradients many
# times over, on held-out tasks as much as on the tasks used, and the cosine rises too, so the
# gradients do not merely grow longer: they point more the same way. On its own the direction
# raises the loss; in the meta-updates it always comes with AvgGrad, which lowers it. A descent
# step on the loss (AvgGrad) lowers the loss but not the agreement, and a random step changes
# neither.
#
# ## What to take away
#
# - The expansion {eq}`eq-expansion` holds: its error shrinks like $\alpha^3$ for MAML, FOMAML and
#   Reptile at every $k$ checked, and like $\alpha^2$ once AvgGradInner is dropped, so that term is
#   exactly what the expansion says it is.
# - With $k = 1$ Reptile is joint training, exactly.
# - This is the paper's reading of Section 5: all three algorithms combine joint training
# (AvgGrad) with a push towards within-task generalisation (AvgGradInner), with weights
# $2(k-1)\alpha$ (MAML), $(k-1)\alpha$ (FOMAML) and $\tfrac12 k(k-1)\alpha$ against $k$ (Reptile).
