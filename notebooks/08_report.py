# %% [markdown]
# # Reproduction report

# %% tags=["parameters"]
profile = "paper"  # this page only reads committed results; the parameters are here for uniformity
device = "cpu"
seed = 0
retrain = False
n_seeds = 1

# %% tags=["remove-input"]
from IPython.display import Markdown, display

from reptile_lib import book, paper, report

rows = report.scoreboard_rows()
display(Markdown(
    ":::{admonition} The paper's claims, what we measured, the verdicts\n:class: tip\n\n"
    "One row per claim of the paper {cite:p}`nichol2018reptile`: every Reptile cell of its Tables 1 and 2 "
    "and the statements of its Figures 1, 3 and 4 and Sections 5 and 6. "
    f"**{report.scoreboard_summary(rows)}** Only finished paper-scale runs are compared; the rule is below.\n:::"))
display(Markdown(report.scoreboard_markdown(rows)), Markdown(report.queue_markdown()))

# %% [markdown]
# The table is built by `reptile_lib.report.scoreboard_rows` from the results files under
# `results/` and, for runs not finished yet, from the state of the queue of paper-scale runs
# (`reptile status`), one group of rows per chapter. *Scale* is **paper** for a finished
# paper-scale run (with how many of the planned seeds are in), **unfinished** while the queue is
# training or evaluating it, **not run yet** while it waits in the queue and **not run** when it
# is not queued; the device that ran it follows. Where each queued run stands is listed once,
# under the table.
#
# ## How to read the verdicts
#
# For one number of the paper's tables, with $d$ = ours − paper in percentage points, the
# combined uncertainty is
#
# $$
# U = \sqrt{\text{pm}_\text{paper}^2 + \text{ci}_\text{tasks}^2 + \text{ci}_\text{seeds}^2},
# $$ (eq-combined)
#
# the paper's ±, our 95% interval over evaluation tasks, and the 95% interval of the mean over
# seeds, $1.96\,\text{sd}_\text{seeds}/\sqrt{S}$ for $S$ seeds. That last term is a normal
# approximation: with three seeds a Student-t interval would use 4.30 instead of 1.96, about twice
# as wide. We keep 1.96 and say so; the seed term also counts each seed's task noise a second time,
# which widens $U$ the other way. A cell is
#
# - **within** when $|d| \le U$ in {eq}`eq-combined`;
# - **above / below by X (Y beyond ±U)** otherwise;
# - **not run yet / not finished yet** when no finished paper-scale results file of the chapter's
#   configuration exists (smoke and unfinished runs are never compared).
#
# The paper's Reptile ± is most likely a spread over runs (`reptile_lib.paper.PM_NOTE`), so the
# test is a loose one. The statements of the figures and sections are checked by the rule given
# in their chapter (for example, Figure 1 holds when both meta-learned initialisations end at least
# ten times below the random one, with the 95% intervals apart). Table 1 is on Mini-ImageNet, which
# we do not have: CIFAR-FS stands in, and a number on another data set gets no verdict.
#
# ## Every number of the paper's tables
#
# Including the MAML rows, which the paper quotes from Finn et al. {cite:p}`finn2017maml` and
# which are not re-run here.

# %% tags=["remove-input", "nbval-check-output"]
# the results each chapter reads (the queue's configurations), as the scoreboard above reads them
TABLES = ("omniglot_5way", "omniglot_20way", "miniimagenet_5way", "cifar_fs_5way")
ours = {name: book.load_if_matching(name, report.expected_config(name)) for name in TABLES}
numbers = paper.TABLE1 + paper.TABLE2
report.html_table([{"table": n.table, **row} for n, row in zip(numbers, report.comparison_rows(numbers, ours))],
                  {"table": "Table", "algorithm": "Algorithm", "setting": "Setting", "paper": "Paper (%)",
                   "ours": "Ours (%)", "seeds": "Seeds", "verdict": "Verdict"})

# %% [markdown]
# ## Where our numbers come from

# %% tags=["remove-input", "nbval-check-output"]
WHY_ABSENT = {"miniimagenet_5way": "not produced: no Mini-ImageNet images here (CIFAR-FS stands in)"}
report.html_table([{"config": name, "results file": f"results/{name}.json",
                    "status": ("present, finished" if doc["provenance"].get("finished") else "present, unfinished")
                    if doc else WHY_ABSENT.get(name, "not produced yet (in the queue)")} for name, doc in ours.items()],
                  {"config": "Configuration", "results file": "Results file", "status": "Status"})

# %% tags=["remove-input"]
for name, doc in ours.items():
    if doc is not None:
        display(Markdown(f"*{name}: {book.provenance_line(doc)}*"))

# %% [markdown]
# ## Our numbers without a counterpart in the paper
#
# CIFAR-FS stands in for Mini-ImageNet; the paper has no number on it. For context, the
# {doc}`CIFAR-FS chapter <05_cifar_fs>` lists other papers' reference numbers.

# %% tags=["remove-input", "nbval-check-output"]
stand_in = ours["cifar_fs_5way"]
if stand_in is not None and stand_in["provenance"].get("finished"):
    display(Markdown("**cifar_fs_5way**"), report.html_table(book.metrics_frame(stand_in)))
else:
    display(Markdown("**Not produced yet**: the paper-scale CIFAR-FS run is in the queue."))

# %% [markdown]
# ## What to take away

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- {t}" for t in report.report_takeaways(rows)) + "\n- The implementation details "
                 "that decide a faithful port are on the {doc}`fidelity page <../fidelity>`."))
