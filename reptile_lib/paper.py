"""The paper's numbers as data, so the book compares against them instead of retyping them.

Source: Nichol, Achiam & Schulman, *On First-Order Meta-Learning Algorithms*, arXiv:1803.02999 v3
(Tables 1 and 2, Appendix A), and for CIFAR-FS the reference numbers of Bertinetto et al. (2019).
Accuracies are in percent, as printed; ``pm`` is the printed ``±``. Entries with
``verify=True`` were recalled rather than read from a source and are shown as "(unchecked)";
none is at present.

Each :class:`PaperNumber` says which of our results files (``config``) and metric (``metric``,
see :func:`reptile_lib.results.metric_name`) it is compared with; ``config=None`` means we do
not re-run that row (e.g. MAML, quoted from Finn et al.), so it is shown for context only.
"""
from __future__ import annotations

from dataclasses import dataclass

from .results import metric_name

ARXIV = "arXiv:1803.02999 v3"


@dataclass(frozen=True)
class PaperNumber:
    """One accuracy printed in a table, and what we compare it with."""

    table: str             # "Table 1", "Table 2", "CIFAR-FS reference"
    dataset: str           # omniglot | miniimagenet | cifar_fs
    algorithm: str         # as printed, e.g. "Reptile + transduction"
    ways: int
    shots: int
    transductive: bool
    mean: float            # percent
    pm: float              # the printed ± (percent)
    source: str            # who reported it
    config: str | None = None  # our config whose results file holds the comparable number
    verify: bool = False   # recalled, not read from the paper
    digits: int = 2        # decimals as printed
    not_compared: str = ""  # why no run of ours is compared with it (when ``config`` is None)

    @property
    def metric(self) -> str:
        """Our metric name for this number (test split)."""
        return metric_name("test", self.shots, self.ways, self.transductive)

    @property
    def setting(self) -> str:
        return f"{self.shots}-shot {self.ways}-way"

    def text(self) -> str:
        """``95.39 ± 0.09`` (with ``(unchecked)`` appended where the number was recalled)."""
        return f"{self.mean:.{self.digits}f} ± {self.pm:.{self.digits}f}" + (" (unchecked)" if self.verify else "")


_NICHOL = f"Nichol et al. 2018 ({ARXIV})"
_FINN = "Finn et al. 2017, quoted in Nichol et al. 2018"
_BERTINETTO = "Bertinetto et al. 2019, as tabulated by Lee et al. 2019 (arXiv:1904.03758, Table 2)"


def _rows(table: str, dataset: str, algorithm: str, transductive: bool, source: str,
          settings: list[tuple[int, int]], values: list[tuple[float, float]], config_of=None,
          verify: bool = False, digits: int = 2) -> list[PaperNumber]:
    if config_of is not None:
        why = ""
    elif "MAML" in algorithm:
        why = "not re-run: quoted from Finn et al."
    elif dataset == "miniimagenet":
        why = "not re-run: no Mini-ImageNet data"
    else:
        why = "reference only: another paper's method"
    return [PaperNumber(table, dataset, algorithm, ways, shots, transductive, mean, pm, source,
                        config_of(ways) if config_of else None, verify, digits, why)
            for (shots, ways), (mean, pm) in zip(settings, values)]


_T1 = [(1, 5), (5, 5)]
_T2 = [(1, 5), (5, 5), (1, 20), (5, 20)]


def _omniglot_config(ways: int) -> str:
    return f"omniglot_{ways}way"


# Table 1: Mini-ImageNet, 5-way. We have no Mini-ImageNet images (see the CIFAR-FS chapter),
# so no row here is compared with a run of ours.
TABLE1: tuple[PaperNumber, ...] = (
    *_rows("Table 1", "miniimagenet", "MAML + transduction", True, _FINN, _T1, [(48.70, 1.84), (63.11, 0.92)]),
    *_rows("Table 1", "miniimagenet", "first-order MAML + transduction", True, _FINN, _T1,
           [(48.07, 1.75), (63.15, 0.91)]),
    *_rows("Table 1", "miniimagenet", "Reptile", False, _NICHOL, _T1, [(47.07, 0.26), (62.74, 0.37)]),
    *_rows("Table 1", "miniimagenet", "Reptile + transduction", True, _NICHOL, _T1, [(49.97, 0.32), (65.99, 0.58)]),
)

# Table 2: Omniglot. The Reptile rows are compared with our omniglot_5way / omniglot_20way runs.
TABLE2: tuple[PaperNumber, ...] = (
    *_rows("Table 2", "omniglot", "MAML + transduction", True, _FINN, _T2,
           [(98.7, 0.4), (99.9, 0.1), (95.8, 0.3), (98.9, 0.2)], digits=1),
    *_rows("Table 2", "omniglot", "first-order MAML + transduction", True, _FINN, _T2,
           [(98.3, 0.5), (99.2, 0.2), (89.4, 0.5), (97.9, 0.1)], digits=1),
    *_rows("Table 2", "omniglot", "Reptile", False, _NICHOL, _T2,
           [(95.39, 0.09), (98.90, 0.10), (88.14, 0.15), (96.65, 0.33)], _omniglot_config),
    *_rows("Table 2", "omniglot", "Reptile + transduction", True, _NICHOL, _T2,
           [(97.68, 0.04), (99.48, 0.06), (89.43, 0.14), (97.12, 0.32)], _omniglot_config),
)

# CIFAR-FS (our stand-in for Mini-ImageNet): the paper has no CIFAR-FS number. These are
# Bertinetto et al.'s references for context, as Lee et al. 2019 tabulate them (Table 2 of
# arXiv:1904.03758); no published 5-way Reptile number is known.
CIFAR_FS_REFERENCE: tuple[PaperNumber, ...] = (
    *_rows("CIFAR-FS reference", "cifar_fs", "MAML", True, _BERTINETTO, _T1, [(58.9, 1.9), (71.5, 1.0)],
           digits=1),
    *_rows("CIFAR-FS reference", "cifar_fs", "prototypical networks", False, _BERTINETTO, _T1,
           [(55.5, 0.7), (72.0, 0.6)], digits=1),
)

ALL_NUMBERS: tuple[PaperNumber, ...] = TABLE1 + TABLE2 + CIFAR_FS_REFERENCE

# The ± of the 1-shot 5-way Reptile cells is smaller than one run's 95% interval over 10,000 tasks, so it is
# most likely a spread over several runs (the paper does not say); MAML's rows are 95% intervals (Finn et al.).
PM_NOTE = ("For the 1-shot 5-way Reptile cells (± 0.09 and ± 0.04) the ± is half or less of one run's 95% interval "
           "over 10,000 tasks (about ± 0.18 and ± 0.13 points by the binomial count of its 50,000 answers), so it is most likely a spread over "
           "several runs; the paper does not say. For the other cells the two are of similar size (a 1-shot 20-way run "
           "of 200,000 answers near 88% has about ± 0.14 by the binomial count, the paper ± 0.15), so they do not tell. "
           "MAML rows use batch statistics at test time, hence 'transduction'.")


# Appendix A / the released README commands: the hyper-parameters of the paper runs, in the
# released flag names (``meta_step`` is annealed linearly to ``meta_step_final``).
HYPERPARAMETERS: dict[str, dict] = {
    "omniglot_5way": dict(classes=5, train_shots=10, inner_batch=10, inner_iters=5, learning_rate=0.001,
                          meta_step=1.0, meta_step_final=0.0, meta_batch=5, meta_iters=100_000,
                          eval_batch={1: 5, 5: 5}, eval_iters=50),
    "omniglot_20way": dict(classes=20, train_shots=10, inner_batch=20, inner_iters=10, learning_rate=0.0005,
                           meta_step=1.0, meta_step_final=0.0, meta_batch=5, meta_iters=200_000,
                           eval_batch={1: 10, 5: 10}, eval_iters=50),
    "miniimagenet_5way": dict(classes=5, train_shots=15, inner_batch=10, inner_iters=8, learning_rate=0.001,
                              meta_step=1.0, meta_step_final=0.0, meta_batch=5, meta_iters=100_000,
                              eval_batch={1: 5, 5: 15}, eval_iters=50),
}

EVAL_TASKS = 10_000  # evaluation tasks per split and protocol (Section 7)


def numbers(table: str | None = None, dataset: str | None = None, algorithm: str | None = None) -> list[PaperNumber]:
    """The printed numbers, filtered by table, data set and/or algorithm."""
    return [n for n in ALL_NUMBERS
            if (table is None or n.table == table) and (dataset is None or n.dataset == dataset)
            and (algorithm is None or n.algorithm == algorithm)]


def hyperparameter_rows() -> list[dict]:
    """The hyper-parameter table, one dict per run (for display)."""
    rows = []
    for run, h in HYPERPARAMETERS.items():
        eb = h["eval_batch"]
        rows.append({"run": run, **{k: v for k, v in h.items() if k != "eval_batch"},
                     "eval_batch": ", ".join(f"{b} ({s}-shot)" for s, b in eb.items())})
    return rows
