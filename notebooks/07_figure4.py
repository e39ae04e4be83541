# %% [markdown]
# # Figure 4: sensitivity to the inner loop

# %% tags=["parameters"]
profile = "paper"  # "paper": committed paper-scale results (a smoke run here when absent); "smoke": tiny runs only
device = "cpu"     # torch device for any training done on this page
seed = 0           # seed of the pipeline check trained on this page
retrain = False    # True with profile "paper": advance the queue's 39 Figure 4 units now (resumable; see the budget)
max_minutes = None  # retraining: stop after this long, checkpointed; run again to resume

# %% tags=["remove-input"]
import dataclasses

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from reptile_lib import book, configs, figures, report, sweeps
from reptile_lib.plots import experiments as plots
from reptile_lib.plots.style import use_book_style

use_book_style()
POINTS = sweeps.figure4_points("paper")
RUNS = sweeps.unique_configs(POINTS)
BASE = configs.FIGURE4_BASE
# results/figure4.json: the finished runs, joined by the queue (reptile_lib.figures; retrain advances the
# queue's units of the figure first); else a smoke run
# (sweeps.smoke_figure4: part of the grid, 4 meta-iterations per run, 10 test tasks)
doc, smoke_doc = figures.obtain("figure4", profile, retrain=retrain, max_minutes=max_minutes, seed=seed,
                                device=device)
display(Markdown(report.claim_box("07_figure4")))

# %% [markdown]
# Figure 4 of the paper {cite:p}`nichol2018reptile` compares Reptile with two versions of
# first-order MAML on 5-shot 5-way Omniglot while (a) the number of inner iterations, (b) the inner
# batch size and (c) the outer step size vary. FOMAML's meta-gradient is the last inner step's
# update alone. With a **shared tail**, that last mini-batch is dealt from the same training samples
# as the earlier ones; with a **separate tail**, 5 of the 10 images per class are held back for it
# (the released `--foml-tail 5`). The paper's finding: shared-tail FOMAML degrades once its last
# mini-batch overlaps the earlier ones, while Reptile and separate-tail FOMAML stay stable.
#
# The paper does not print the swept values; this chapter chooses them, says why, and follows the
# conventions of the Figure 3 chapter.

# %% tags=["remove-input"]
display(Markdown(f"**Figure 4**: the sweep's runs {report.run_state('figure4', doc)}. Each run is one unit of the "
                 "queue of paper-scale runs (`make reproduce`) at the sweep's own, smaller scale (the paper gives no "
                 "command for this figure): 4,000 meta-iterations, then its 2,000-task evaluation."))

# %% [markdown]
# ## Results
#
# For panels (a) and (b): each algorithm's mean final accuracy over the values where the shared
# tail overlaps against the values where it does not, and the change with its 95% interval (the
# points' intervals combined). The paper expects "degrades" for shared-tail FOMAML and "stable" for
# the other two.

# %% tags=["remove-input"]
FINDINGS = {"panel": "Panel", "algorithm": "Algorithm", "no overlap": "No overlap (%)", "overlap": "Overlap (%)",
            "change": "Change (points)", "verdict": "Verdict"}
if doc is not None:
    partial = "" if doc["provenance"]["finished"] else (
        f" Only {report.progress_text(doc)} so far: the points missing here are still in the queue, and no "
        "finding is judged until all are in.")
    display(Markdown("{numref}`fig-figure4` is the paper's figure from our runs; the table under it judges each "
                     "algorithm's finding, and {numref}`fig-figure4-curves` shows whether the runs had levelled off."
                     f"{partial} *{book.provenance_line(doc)}.*"))
    book.show_figure(plots.figure4(doc)[0].figure, "figure4",
                     "The paper's Figure 4 from our runs: final 5-shot 5-way test accuracy against each swept value, per algorithm, with 95% intervals "
                     "over the evaluation tasks; shaded: values where the shared tail's last mini-batch repeats "
                     "samples of earlier ones.")
    display(report.html_table(report.figure4_findings(doc), FINDINGS))
    book.show_figure(plots.figure4_curves(doc).figure, "figure4-curves",
                     "Accuracy on 50 sampled tasks of the training classes every 500 meta-iterations, one line per "
                     "run: whether 4,000 meta-iterations were enough (these curves decide nothing about the figure).")
else:
    display(Markdown("No paper-scale Figure 4 run exists: the figure, its findings and the runs' curves appear here "
                     "when it does. The pipeline check below runs the same code at a tiny size."))

# %% tags=["remove-input", "hide-output"] mystnb={"code_prompt_show": "Pipeline check: a smoke run trained on this page, not the paper's experiment (show)", "code_prompt_hide": "Pipeline check (hide)"}
# only without a paper-scale run; with one the cell shows nothing, so the page has no box here
if doc is None:
    display(Markdown(
        "**Pipeline check, not a result.** A smoke run trained on this page (values "
        + "; ".join(f"{k}: {', '.join(f'{v:g}' for v in vs)}" for k, vs in sweeps.FIGURE4_SMOKE_AXES.items())
        + "; 4 meta-iterations per run, 10 test tasks of 10 adaptation steps): its final accuracies, then its "
        "learning curves. It exercises the pipeline and says nothing about the paper's finding, so no finding is "
        f"judged from it. *{book.provenance_line(smoke_doc)}.*"))
    plots.figure4(smoke_doc)
    plt.show()
    plots.figure4_curves(smoke_doc)
    plt.show()

# %% [markdown]
# ## The sweep, and where the overlap begins
#
# Every point starts from the paper's 5-way Omniglot settings (10 training images per class,
# mini-batches of 10, 5 inner Adam steps, outer step 1 annealed to 0; the tasks of a meta-batch adapt
# one after another, Adam's state carried from task to task, as in the released code and the Table 2
# runs) and changes one value. A task
# has 5 × 10 = 50 training samples; the released sampler deals them from a stream of reshuffles, so
# the k-th (last) mini-batch of size b starts to repeat samples once k·b > 50, and repeats only
# samples already used once (k − 1)·b ≥ 50. The values are chosen so that (a) and (b) cross that
# boundary; the shaded share is the expected fraction of the shared tail's last batch already seen
# (`sweeps.last_batch_overlap`, checked against the sampler in the tests). A separate tail never
# overlaps.

# %% tags=["remove-input", "nbval-check-output"]
n = BASE.classes * BASE.train_shots
rows = []
for panel, values in sweeps.FIGURE4_AXES.items():
    for v in values:
        c = next(p.config for p in POINTS if p.panel == panel and p.value == v and p.algorithm == "fomaml-shared")
        title = sweeps.PANEL_TITLES[panel].split(" (initial")[0]   # the text below says (c) is the initial step
        rows.append({"panel": title, "value": f"{v:g}", "inner_iters": c.inner_iters, "inner_batch": c.inner_batch,
                     "outer step": f"{c.meta_step:g}",
                     "shared tail: last batch already seen": f"{sweeps.last_batch_overlap(c.inner_iters, c.inner_batch, n):.0%}"})
display(report.html_table(rows, {"panel": "Panel", "value": "Value", "inner_iters": "Inner iterations",
                                 "inner_batch": "Inner batch", "outer step": "Outer step",
                                 "shared tail: last batch already seen": "Shared tail: last batch already seen"}))
display(Markdown(f"The overlap begins at {sweeps.overlap_onset('inner_iters')} inner iterations (batch {BASE.inner_batch}) "
                 f"and at an inner batch of {sweeps.overlap_onset('inner_batch')} ({BASE.inner_iters} steps). "
                 f"{len(POINTS)} points, {len(RUNS)} runs (the base point serves all three panels), "
                 f"{len(sweeps.group_configs(RUNS))} groups of runs with equal shapes."))

# %% [markdown]
# Panel (c) sweeps the initial outer step at the base point (annealed linearly to 0 in every run):
# FOMAML's meta-update is a single inner step while Reptile's sums five, so their best outer steps
# differ; 0.25 to 2 brackets both.
#
# ## The budget
#
# Each point here is trained for 4,000 meta-iterations (the outer step annealed over those) and
# evaluated on 2,000 test tasks, whose 95% interval is about ±0.5 points near 95% accuracy. The
# table below prices the sweep with `sweeps.CostModel`. Its CPU row is fitted to this book's
# benchmark (`benchmarks/results/cpu-1thread-amd-epyc.json`): one core of a 2-core AMD EPYC CPU,
# one task at a time with the native kernels, the path the queue trains Omniglot on; when two runs
# share that CPU, as in the queue, each runs about a third slower. Its GPU row is a rough estimate
# for an H100-class GPU from timings taken elsewhere, and for the batched path (a meta-batch's tasks
# adapted at once, Adam's state averaged over them), not the released order the sweep is configured
# with: no run of this book measured it.

# %% tags=["remove-input", "nbval-check-output"]
est = [sweeps.estimate(RUNS, "graph"), sweeps.estimate(RUNS, "cpu", batched=False)]
# the same runs at Table 2's length (5-way Omniglot), on the CPU
full = sweeps.estimate([dataclasses.replace(c, meta_iters=configs.OMNIGLOT_5WAY.meta_iters) for c in RUNS], "cpu",
                       batched=False)
curves = "{numref}`fig-figure4-curves`" if doc is not None else "shown under Results once the sweep has run"
display(Markdown(
    f"At Table 2's {configs.OMNIGLOT_5WAY.meta_iters:,} meta-iterations the same {len(RUNS)} runs would take about "
    f"{full['total_s'] / 86400:.0f} days of one CPU core by this estimate. On the CPU the sweep is {len(RUNS)} units "
    "of the queue (`figure4/0` in `runs/plan.toml`), each checkpointed, so it survives stops and resumes like every "
    f"other run. Whether {BASE.meta_iters:,} meta-iterations are enough is read off the runs' own learning curves on "
    f"**training** classes ({curves}), never from test accuracy: a panel whose curves still climb at the end "
    "compares undertrained points, and we say so."))
labels = ["GPU (H100-class), CUDA graph, runs of a shape batched, mean Adam carry: estimate, not measured here",
          "CPU, one core, one run at a time"]
display(report.html_table([{"Machine and path": label, "Training (h)": f"{e['train_s'] / 3600:.1f}",
                            "Curves (h)": f"{e['monitor_s'] / 3600:.1f}", "Evaluation (h)": f"{e['eval_s'] / 3600:.1f}",
                            "Total (h)": f"{e['total_s'] / 3600:.1f}"} for label, e in zip(labels, est)]))

# %% [markdown]
# ## What to take away
#
# - The box at the top says whether Figure 4's finding holds, per algorithm, once the paper-scale
#   sweep exists; until then nothing is compared.
# - The overlap of the shared tail's last mini-batch with the earlier ones is computed exactly for
#   every swept value (the table above), so the figure can be read against it.
