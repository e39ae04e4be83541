# %% [markdown]
# # Figure 3: which inner gradients to combine

# %% tags=["parameters"]
profile = "paper"  # "paper": committed paper-scale results (a pipeline check here when absent); "smoke": tiny runs only
device = "cpu"     # torch device for any training done on this page
seed = 0           # seed of the pipeline check trained on this page
retrain = False    # True with profile "paper": advance the queue's ten Figure 3 units now (resumable)
max_minutes = None  # retraining: stop after this long, checkpointed; run again to resume

# %% tags=["remove-input"]
import math

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from reptile_lib import book, figures, report, sweeps
from reptile_lib.plots import experiments as plots
from reptile_lib.plots.style import use_book_style

use_book_style()
POINTS = sweeps.figure3_points("paper")
# results/figure3.json: the finished curves, joined by the queue (reptile_lib.figures; retrain advances the
# queue's units of the figure first); else a smoke run
# (sweeps.smoke_figure3: 20 meta-iterations per curve, points on 5 test tasks)
doc, smoke_doc = figures.obtain("figure3", profile, retrain=retrain, max_minutes=max_minutes, seed=seed,
                                device=device)
display(Markdown(report.claim_box("06_figure3")))

# %% [markdown]
# Section 5 of the paper {cite:p}`nichol2018reptile` writes the inner loop's k mini-batch gradients
# g1, …, gk and shows, by a Taylor expansion, what each combination optimises: g1 alone is the
# gradient of the expected loss (joint training, which learns nothing specific to few-shot
# adaptation); a later gradient g_i (i ≥ 2) also carries the term that makes the updates of
# different mini-batches agree ("AvgGradInner"), which is what meta-learns. Figure 3 tests this on
# 5-shot 5-way Omniglot with ten ways of turning the inner gradients into the meta-update:
#
# - **g1**: one inner step (k = 1), joint training;
# - **g2, g3, g4**: only the last of k = 2, 3, 4 steps (first-order MAML);
# - **g1+g2, g1+g2+g3, g1+…+g4**: all of them summed (Reptile with k = 2, 3, 4);
# - **(g1+g2)/2, …, (g1+…+g4)/4**: their average (Reptile with the outer step divided by k).
#
# The paper expects g1 alone to barely learn, and learning to be faster the more gradients are
# combined. It states no expectation for FOMAML's g2 against Reptile's g1+g2, nor for a sum against
# the average of the same gradients; this chapter measures both as comparisons of its own.

# %% tags=["remove-input"]
display(Markdown(f"**Figure 3**: paper-scale runs {report.run_state('figure3', doc)}. Each curve is one unit of "
                 "the queue of paper-scale runs (`make reproduce`): 40,000 meta-iterations, then its "
                 "10,000-task evaluation."))

# %% [markdown]
# ## Results
#
# Each finding with our numbers. *Learning speed* is a curve's mean accuracy over its points (the
# area under it, normalised), with the points' intervals combined; *final* is the 10,000-task
# evaluation after 40,000 meta-iterations.

# %% tags=["remove-input"]
FINDINGS = {"finding": "Finding", "ours": "Ours", "holds": "Verdict"}
COMPARISONS = {"finding": "Comparison", "ours": "Ours", "holds": "What we see"}
FINISHED = doc is not None and doc["provenance"]["finished"]


def final_rows(d, profile_name):
    rows = []
    for p in sweeps.figure3_points(profile_name):
        m = sweeps.point_metric(d, p)
        rows.append({"Curve": p.algorithm, "Final test accuracy (%)": "—" if m is None else
                     f"{100 * m['mean']:.2f} ± {100 * m['ci95']:.2f}", "Tasks": "—" if m is None else f"{m['n_tasks']:,}"})
    return rows


if FINISHED:
    display(Markdown("{numref}`fig-figure3` draws the ten curves. The first table below judges the paper's findings "
                     "from the numbers; the second holds two comparisons of ours, which the paper does not make "
                     "(FOMAML's g2 against Reptile's g1+g2, and each sum of gradients against their average; a tie "
                     "is equal at the precision shown); the third gives each curve's final accuracy. "
                     f"*{book.provenance_line(doc)}.*"))
elif doc is not None:
    display(Markdown(f"{{numref}}`fig-figure3` draws every finished curve, and the table below gives their final "
                     f"accuracy. Only {report.progress_text(doc)} so far: the curves missing here are still in the "
                     f"queue, and no finding is judged until all ten are in. *{book.provenance_line(doc)}.*"))
if doc is not None:
    book.show_figure(plots.figure3(doc).figure, "figure3",
                     "The paper's Figure 3 from our runs: test accuracy against the meta-iteration for each "
                     "combination of inner gradients. Blue, dotted: the last gradient alone (FOMAML); orange, solid: "
                     "their sum (Reptile); green, dashed: their average; darker with more inner steps k; black: g1 "
                     "alone. Bands: 95% interval over the 500 sampled tasks of each point (with several seeds: the "
                     "range over seeds). The inset magnifies the last three quarters of training.")
if FINISHED:
    ROWS = report.figure3_findings(doc)
    display(report.html_table([r for r in ROWS if r["paper_claim"]], FINDINGS),
            report.html_table([r for r in ROWS if not r["paper_claim"]], COMPARISONS))
if doc is not None:
    display(report.html_table(final_rows(doc, "paper")))
else:
    display(Markdown("No Figure 3 curve has finished at paper scale yet: the figure and its findings appear here "
                     "as the queue finishes them. The pipeline check below runs the same code at a tiny size."))

# %% tags=["remove-input", "hide-output"] mystnb={"code_prompt_show": "Pipeline check: a smoke run trained on this page, not the paper's experiment (show)", "code_prompt_hide": "Pipeline check (hide)"}
# only without a paper-scale run; with one the cell shows nothing, so the page has no box here
if doc is None:
    display(Markdown(
        "**Pipeline check, not a result.** A smoke run trained on this page: 20 meta-iterations per curve instead "
        "of 40,000, 5 tasks per point, 10 final tasks. It exercises the pipeline; its curves say nothing about "
        "the paper's findings, so none is judged from them; the table gives its final accuracies, on 10 tasks "
        f"each. *{book.provenance_line(smoke_doc)}.*"))
    plots.figure3(smoke_doc)
    plt.show()
    display(report.html_table(final_rows(smoke_doc, "smoke")))

# %% [markdown]
# ## The runs
#
# The paper's settings (Section 5 and the released commands): plain SGD inner steps with learning
# rate 0.003 on mini-batches of 25; `train_shots` = 5k so the k mini-batches of a task are disjoint;
# meta-batch of one task; 40,000 meta-iterations; outer step 0.25 annealed linearly to 0. The
# combination is the library's `Config.combine` (the `weights` below multiply each inner step's
# update). Evaluation: mini-batches of 25, 5 adaptation steps, non-transductive.

# %% tags=["remove-input", "nbval-check-output"]
report.html_table([{"Curve": p.algorithm, "Family": p.panel, "k": p.config.inner_iters,
                    "Training images per class": p.config.train_shots, "Inner batch": p.config.inner_batch,
                    "Weights": ", ".join(f"{w:.3g}" for w in p.config.weights),
                    "Outer step": f"{p.config.meta_step:g} → {p.config.meta_step_final:g}"} for p in POINTS])

# %% [markdown]
# Each curve is its own unit of the queue of paper-scale runs (`runs/plan.toml`, `make reproduce`),
# trained on a CPU one after another, with plain SGD and one task per meta-batch (so no optimiser state
# passes between tasks, and the Adam order that matters in Tables 1 and 2 plays no part). The runs of one seed are measured on
# the same test tasks at every point of the curves (the plan queues seeds 0 and 1). A
# curve point is the accuracy on 500 freshly sampled test tasks every 1,000 meta-iterations (a 95%
# interval of about ±1.6 points at 80% accuracy, ±0.9 at 95%), drawn as a band; the final accuracy of
# each curve is measured on 10,000 test tasks.

# %% [markdown]
# ## What to take away
#
# - Curves with the same number of inner steps k differ only in how the inner gradients are weighted
#   (`Config.combine`, the weights above); across k the inner steps and the training images per
#   class change with it (5 per step, as in the table). The test tasks of every curve point are shared.

# %% tags=["remove-input"]
def of(d, algorithm):
    """The results-file point of a curve."""
    return next(p for p in d["extra"]["points"] if p["algorithm"] == algorithm)


def speed(d, algorithm):
    """Learning speed (%): the curve's mean over its points, with the points' 95% intervals combined."""
    return report.curve_mean(d, of(d, algorithm)["config"])


def final(d, algorithm):
    """The final 10,000-task accuracy (%) and its 95% interval."""
    m = sweeps.point_metric(d, of(d, algorithm))
    return 100 * m["mean"], 100 * m["ci95"]


def ahead(a, b, names):
    """Which of two (value, 95% interval) is ahead: a name, or None for a tie at the precision shown
    or a gap within the intervals."""
    (x, ux), (y, uy) = a, b
    if f"{x:.1f}" == f"{y:.1f}" or abs(x - y) <= math.hypot(ux, uy):
        return None
    return names[0] if x > y else names[1]


if FINISHED:
    SHORT = {"g1 alone": "g1 alone barely learns", "more inner": "more inner gradients learn faster (sums)",
             "... and for": "the same for the averages"}
    verdicts = "; ".join(f"{next((v for k, v in SHORT.items() if r['finding'].startswith(k)), r['finding'])}: "
                         f"{r['holds']}" for r in ROWS if r["paper_claim"])
    lines = [f"- The paper's findings, with their numbers in the first table under Results: {verdicts}."]
    key = f"{doc['extra']['monitor']['split']}_nontransductive"
    g1 = [q for q in doc["extra"]["curves"][of(doc, "g1")["config"]] if key in q]
    start, end = g1[0], g1[-1]
    if end[key] + end[f"{key}_ci95"] < start[key] - start[f"{key}_ci95"]:
        lines.append(f"- Joint training alone (g1) does worse than learn little: from {100 * start[key]:.1f}% at its "
                     f"first point to {100 * end[key]:.1f}% at meta-iteration {end['iteration']:,} (chance: "
                     f"{100 / POINTS[0].config.classes:.0f}%), it leaves the initialisation worse for adaptation.")
    G2 = ("g2", "g1+g2")
    fast, last = ahead(speed(doc, "g2"), speed(doc, "g1+g2"), G2), ahead(final(doc, "g2"), final(doc, "g1+g2"), G2)
    if fast and last and fast != last:
        g2_text = (f"which of FOMAML's g2 and Reptile's g1+g2 is better depends on the measure: {fast} learns faster, "
                   f"{last} ends higher")
    else:
        g2_text = ("FOMAML's g2 against Reptile's g1+g2: learning speed "
                   + (f"{fast} ahead" if fast else "level within noise") + ", final accuracy "
                   + (f"{last} ahead" if last else "level within noise"))
    sums = {2: "g1+g2", 3: "g1+g2+g3", 4: "g1+g2+g3+g4"}
    gap = max(abs(speed(doc, s)[0] - speed(doc, f"({s})/{k}")[0]) for k, s in sums.items())
    ends = {}
    for k, s in sums.items():
        ends.setdefault(ahead(final(doc, s), final(doc, f"({s})/{k}"), ("sum", "average")), []).append(str(k))
    ends_text = "; ".join((f"the {who} ends higher" if who else "neither ends clearly higher")
                          + f" for k = {', '.join(ks)}" for who, ks in ends.items())
    lines.append(f"- Comparisons of ours (the second table): {g2_text}. Summing rather than averaging the same k "
                 f"gradients (an outer step k times larger) changes the learning speed by at most {gap:.1f} points, "
                 f"and in final accuracy (the third table) {ends_text}.")
    display(Markdown("\n".join(lines)))
else:
    display(Markdown("- Figure 3's findings are judged here, and in the box at the top, once all ten curves have "
                     "finished at paper scale; until then nothing is compared."))
