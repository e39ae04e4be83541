# %% [markdown]
# # Reproduction report: the paper's numbers and ours
#
# Every accuracy printed in Tables 1 and 2 of the paper {cite:p}`nichol2018reptile`, with ours
# beside it where we have a paper-scale run, and a verdict. This page reads only committed files:
# `reptile_lib.paper` (the paper's numbers) and `results/*.json` (our runs, each with the config
# that produced it); it trains nothing.

# %% tags=["parameters"]
profile = "paper"  # this page only reads committed results; the parameters are here for uniformity
device = "cpu"
seed = 0
retrain = False
n_seeds = 1

# %%
from IPython.display import Markdown, display
from myst_nb import glue
from reptile_lib import book, configs, paper, report

# %% [markdown]
# ## How to read the verdicts
#
# The verdicts are computed by `reptile_lib.report`, the same code the Table 1 and Table 2 chapters
# use. For one number, with $d$ = ours − paper in percentage points:
#
# - **within**: $|d| \le U$, with the combined uncertainty
#   $U = \sqrt{\text{pm}_\text{paper}^2 + \text{ci}_\text{tasks}^2 + \text{ci}_\text{seeds}^2}$ (the
#   paper's ±, our 95% interval over evaluation tasks, and the 95% interval of the mean over seeds);
# - **above / below by X (Y beyond ±U)**: outside that band;
# - **not produced yet**: the row is ours to reproduce, but no finished paper-scale results file of
#   the matching config exists (smoke and unfinished runs are never compared);
# - **not re-run**: MAML rows are Finn et al.'s numbers quoted by the paper, and Mini-ImageNet is not
#   available to us (CIFAR-FS stands in, below).
#
# The paper's Reptile ± is most likely a spread over runs (see `reptile_lib.paper.PM_NOTE`), so the
# test is a loose one.

# %%
ours = {name: book.load_if_matching(name, config) for name, config in configs.PAPER_CONFIGS.items()}

# %% tags=["nbval-check-output"]
numbers = paper.TABLE1 + paper.TABLE2
comparison = report.frame([{"table": n.table, **row} for n, row in zip(numbers, report.comparison_rows(numbers, ours))],
                          ("table", "algorithm", "setting"))
comparable = [n for n in paper.TABLE1 + paper.TABLE2 if n.config]
produced = [n for n in comparable if ours.get(n.config) is not None]
glue("report_comparable", len(comparable), display=False)
glue("report_produced", len(produced), display=False)
comparison

# %% [markdown]
# Of the {glue:text}`report_comparable` numbers of the paper that are ours to reproduce (the
# Reptile rows of Table 2), {glue:text}`report_produced` have a paper-scale run of ours.

# %% [markdown]
# ## Where our numbers come from

# %% tags=["nbval-check-output"]
book.table([{"config": name, "results file": f"results/{name}.json",
             "status": "present" if doc else "not produced yet"} for name, doc in ours.items()], index="config")

# %%
for name, doc in ours.items():
    if doc is not None:
        display(Markdown(f"*{name}: {book.provenance_line(doc)}*"))

# %% [markdown]
# ## Our numbers without a counterpart in the paper
#
# CIFAR-FS and FC100 stand in for Mini-ImageNet; the paper has no number on them. For context, the
# {doc}`CIFAR-FS chapter <05_cifar_fs>` lists other papers' reference numbers.

# %% tags=["nbval-check-output"]
stand_ins = {name: ours[name] for name in ("cifar_fs_5way", "fc100_5way")}
for name, doc in stand_ins.items():
    if doc is not None:
        display(Markdown(f"**{name}**"), book.metrics_frame(doc))
if not any(stand_ins.values()):
    display(Markdown("**Not produced yet**: no paper-scale CIFAR-FS or FC100 results file exists."))

# %% [markdown]
# ## What this report does not cover yet
#
# Figure 1 (sine waves), Figure 3 (gradient combinations) and Figure 4 (sensitivity) are curves,
# not table entries; their chapters say whether they have been reproduced at paper scale. The
# implementation details that decide a faithful port are on the {doc}`fidelity page <../fidelity>`.
