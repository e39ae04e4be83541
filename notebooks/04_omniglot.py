# %% [markdown]
# # Table 2: few-shot Omniglot
#
# Omniglot {cite:p}`lake2015omniglot` holds 1,623 handwritten characters from 50 alphabets, each
# drawn by 20 people. Table 2 of the paper {cite:p}`nichol2018reptile` reports 1- and 5-shot
# accuracy on 5- and 20-way tasks, with and without transduction (whether the test images of a task
# are classified together, so that BatchNorm sees their statistics, or one at a time). This chapter
# shows the paper's numbers, the data as the released code prepares it, and our runs.

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
from myst_nb import glue
from reptile_lib import book, configs, paper

seeds = list(range(seed, seed + n_seeds))

# %% [markdown]
# ## What the paper reports
#
# Accuracy in percent on the 423 test characters. The MAML rows are Finn et al.'s
# {cite:p}`finn2017maml`, quoted by the paper; they use batch statistics at test time, hence
# "transduction".

# %% tags=["nbval-check-output"]
book.paper_frame(paper.numbers("Table 2"))

# %% [markdown]
# ## The data
#
# All 1,623 characters are sorted and shuffled with Python's `random.seed(0)`, as the released code
# does: the first 1,200 are for meta-training and are augmented with rotations by 90°, 180° and 270°
# (each a new class), the other 423 are the test classes. Images are 28×28, ink 0 and background 1.

# %% tags=["nbval-check-output"]
splits = book.load_splits("omniglot")
book.split_summary(splits)

# %%
book.plot_examples(splits["test"], title="Omniglot test characters (first 8 classes, 3 drawers each)")
plt.show()

# %% [markdown]
# ## Our runs
#
# The hyper-parameters are the paper's (Appendix A, the released README's commands). The 1- and
# 5-shot numbers of a way-count come from one trained model, as in the released code, which trains
# with 10 images per class whatever the evaluation's shots.

# %% tags=["nbval-check-output"]
runs = {name: configs.get_config(name) for name in ("omniglot_5way", "omniglot_20way")}
book.table([{"config": name, **{k: getattr(c, k) for k in ("classes", "train_shots", "inner_batch", "inner_iters",
               "learning_rate", "meta_step", "meta_batch", "meta_iters", "eval_samples")}} for name, c in runs.items()])

# %%
docs = {name: book.obtain(c, profile=profile, device=device, seeds=seeds, retrain=retrain,
                          fallback=(name == "omniglot_5way"), max_minutes=max_minutes)
        for name, c in runs.items()}

# %% [markdown]
# ### Compared with the paper
#
# Only paper-scale runs are compared with the paper. A verdict is "consistent" when the difference
# is within the paper's ± and our 95% interval combined.

# %% tags=["nbval-check-output"]
paper_scale = {name: book.paper_scale(doc) for name, doc in docs.items()}
reptile_rows = [n for n in paper.numbers("Table 2") if n.config]
book.comparison_frame(reptile_rows, paper_scale)

# %%
for name, doc in paper_scale.items():
    if doc is not None:
        display(Markdown(f"*{name}: {book.provenance_line(doc)}*"))
if not any(paper_scale.values()):
    display(Markdown("**No paper-scale Omniglot run has been made yet**: `results/omniglot_5way.json` and "
                     "`results/omniglot_20way.json` do not exist (or were made by another config). "
                     "The section below shows a smoke run instead."))

# %% [markdown]
# ### The smoke run
#
# Where no paper-scale run exists, the book trains the 5-way model for a few dozen meta-iterations
# on the CPU while this page is executed, and evaluates it on a few dozen test tasks. It exercises
# exactly the code of the paper-scale run, at a size where its numbers mean only "the pipeline
# learns": they are far below the paper's and are not compared with them.

# %%
smoke = {name: doc for name, doc in docs.items() if doc is not None and doc["profile"] == "smoke"}
for name, doc in smoke.items():
    c = doc["config"]
    display(Markdown(f"**{name}, smoke run**: {c['meta_iters']} meta-iterations, {book.n_tasks(doc)} test tasks "
                     f"per number. *{book.provenance_line(doc)}*"))
    display(book.metrics_frame(doc))
    for metric in doc["metrics"].values():
        assert 0.0 <= metric["mean"] <= 1.0
    five = doc["metrics"]["test_5shot_5way_transductive"]
    assert five["mean"] - five["ci95"] > 0.2, "the smoke run should beat chance (20%) on 5-shot 5-way"
    glue("omniglot_smoke_5shot", f"{100 * five['mean']:.1f}%", display=False)
if not smoke:
    glue("omniglot_smoke_5shot", "not run (paper-scale results shown above)", display=False)

# %% [markdown]
# Smoke run, 5-shot 5-way transductive accuracy: {glue:text}`omniglot_smoke_5shot` (chance is 20%).

# %%
for name, doc in docs.items():
    if doc is not None and doc["extra"].get("history"):
        ax = book.plot_history(doc)
        ax.set_title(f"{name}: learning curve ({'smoke run' if doc['profile'] == 'smoke' else 'paper-scale run'})",
                     fontsize=9)
        plt.show()
        display(Markdown(f"*Source: {book.provenance_line(doc)}.*"))
