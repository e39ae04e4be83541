# %% [markdown]
# # Figure 3: which inner gradients to combine
#
# Section 5 of the paper {cite:p}`nichol2018reptile` writes the updates of first-order MAML and
# Reptile as sums of the inner steps' gradients $g_1, \dots, g_k$: FOMAML uses $g_k$ alone,
# Reptile $g_1 + \dots + g_k$, and $g_1$ alone (with $k = 1$) is joint training. Figure 3 compares
# these combinations on 5-shot 5-way Omniglot, with plain SGD in the inner loop, and finds that
# $g_1$ alone barely learns while adding gradients learns faster.

# %% tags=["parameters"]
profile = "paper"  # "paper": committed results, else a smoke run; "smoke": tiny runs now
device = "cpu"     # torch device for any training
seed = 0           # first seed
retrain = False    # True: retrain at paper scale now (GPU) and rewrite results/
n_seeds = 1        # seeds per experiment when retraining
max_minutes = None  # retraining: stop each experiment after this long (resumable)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from reptile_lib import book, configs

seeds = list(range(seed, seed + n_seeds))

# %% [markdown]
# ## The curves
#
# Each curve is a config: inner SGD with step 0.003, inner batch 25, one task per meta-iteration,
# 40,000 meta-iterations; with $k$ inner steps each task has $5k$ shots per class, so the $k$
# mini-batches are disjoint. `weights` says how the $k$ inner updates combine into the meta-update
# (`reptile_lib.algorithms.step_weights`).

# %% tags=["nbval-check-output"]
book.table([{"curve": c.name, "k": c.inner_iters, "train_shots": c.train_shots, "weights": str(c.weights),
             "meta_step": c.meta_step, "meta_iters": c.meta_iters} for c in configs.FIGURE3_CURVES], index="curve")

# %%
docs = {c.name: book.obtain(c, profile=profile, device=device, seeds=seeds, retrain=retrain, fallback=False,
                        max_minutes=max_minutes)
        for c in configs.FIGURE3_CURVES}

# %% tags=["nbval-check-output"]
produced = [name for name, doc in docs.items() if book.paper_scale(doc) is not None]
print(f"paper-scale curves produced: {len(produced)} of {len(docs)}")
if not produced:
    display(Markdown("**Figure 3 has not been reproduced at paper scale yet**: no results file of its curves "
                     "exists. The figure below is a smoke run of three of the curves."))

# %%
if produced:
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=90)
    for name in produced:
        hist = docs[name]["extra"]["history"][str(seeds[0])]
        ax.plot([h["iteration"] for h in hist], [100 * h["test_nontransductive"] for h in hist], label=name)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("5-shot 5-way test accuracy (%)")
    ax.legend(fontsize=7)
    plt.show()
    for name in produced:
        display(Markdown(f"*{name}: {book.provenance_line(docs[name])}*"))

# %% [markdown]
# ## A smoke run of three curves
#
# $g_1$ ($k = 1$, joint training), $g_2$ (FOMAML, $k = 2$) and $g_1 + g_2$ (Reptile, $k = 2$),
# each trained for a few dozen meta-iterations on the CPU while this page was executed. At this
# size the curves show that the code runs and learns, not the paper's comparison.

# %%
smoke_curves = [configs.figure3_config((1,), 1), configs.figure3_config((2,), 2), configs.figure3_config((1, 2), 2)]
smoke_docs = {} if produced else {
    c.name: book.obtain(c, profile="smoke", device=device, seeds=seeds,
                        smoke=book.book_smoke(c, meta_iters=30, eval_samples=10, eval_interval=15, eval_interval_tasks=5))
    for c in smoke_curves}

# %%
if smoke_docs:
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=90)
    for name, doc in smoke_docs.items():
        hist = doc["extra"]["history"][str(seeds[0])]
        ax.plot([h["iteration"] for h in hist], [100 * h["test_nontransductive"] for h in hist], marker="o", ms=3,
                label=name)
        assert all(0 <= h["test_nontransductive"] <= 1 for h in hist)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("5-shot 5-way test accuracy (%)")
    ax.set_title("Figure 3 curves, smoke run (5 test tasks per point)", fontsize=9)
    ax.legend(fontsize=8)
    plt.show()
    for name, doc in smoke_docs.items():
        display(Markdown(f"*{name}: {book.provenance_line(doc)}.*"))
