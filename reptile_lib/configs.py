"""The paper's runs as frozen configs, in the released code's flag names.

``omniglot_5way`` is the README command ``run_omniglot.py --train-shots 10 --inner-batch 10
--inner-iters 5 --learning-rate 0.001 --meta-step 1 --meta-step-final 0 --meta-batch 5
--meta-iters 100000 --eval-batch 5 --eval-iters 50``: diff a config against the paper's
commands field by field. Variants are made with ``dataclasses.replace``; every config has a
``smoke`` variant small enough for a CPU test.

Tasks adapt in the released code's order unless a config says otherwise: one after another, each
starting from the Adam state the previous one left (``batched=False, adam_carry="sequential"``).
``batched=True, adam_carry="mean"`` adapts a meta-batch at once under ``vmap`` (the GPU engine's
path); its averaged Adam state is a deviation, measured on the book's fidelity page.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from .algorithms import step_weights

Profile = Literal["smoke", "paper"]
PROFILES: tuple[str, ...] = ("smoke", "paper")


@dataclass(frozen=True)
class EvalSpec:
    """One evaluation protocol: ``shots`` per class, adapted ``eval_iters`` steps of ``eval_batch``."""

    shots: int
    eval_batch: int
    eval_iters: int = 50


@dataclass(frozen=True)
class Config:
    """A meta-training run and how its model is evaluated (Section 7 / Appendix A)."""

    name: str
    dataset: str                      # omniglot | cifar_fs | fc100 | miniimagenet
    model: str                        # omniglot | miniimagenet (the two networks of the paper)
    classes: int = 5                  # N-way (--classes)
    train_shots: int = 10             # images per class drawn for a training task (--train-shots)
    inner_batch: int = 10             # --inner-batch
    inner_iters: int = 5              # k, inner steps per task (--inner-iters)
    learning_rate: float = 1e-3       # inner Adam (or SGD) step size (--learning-rate)
    sgd: bool = False                 # plain SGD instead of Adam(beta1=0) (--sgd)
    meta_step: float = 1.0            # outer step size at the start (--meta-step)
    meta_step_final: float = 0.0      # ... annealed linearly to this (--meta-step-final)
    meta_batch: int = 5               # tasks per meta-iteration (--meta-batch)
    meta_iters: int = 100_000         # --meta-iters
    replacement: bool = False         # fresh draw per inner batch (--replacement)
    foml: bool = False                # FOMAML: only the last inner step's update (--foml)
    foml_tail: int | None = None      # separate tail: shots reserved for that last step (--foml-tail)
    combine: tuple[int, ...] | None = None  # Figure 3: inner steps whose updates are summed (1-based)
    combine_average: bool = False     # ... and averaged instead of summed
    evals: tuple[EvalSpec, ...] = (EvalSpec(1, 5), EvalSpec(5, 5))  # --shots/--eval-batch/--eval-iters
    eval_samples: int = 10_000        # evaluation tasks per split and protocol (--eval-samples)
    eval_interval: int = 1_000        # meta-iterations between learning-curve points (ours)
    eval_interval_tasks: int = 50     # tasks per learning-curve point and split (ours)
    adam_carry: Literal["sequential", "mean"] = "sequential"  # Adam's state: task to task (released) or averaged
    loss_reduction: Literal["sum", "mean"] = "sum"  # the released code differentiates the batch's summed loss
    batched: bool = False             # True: adapt the meta-batch at once with vmap (needs adam_carry="mean")
    image_size: int | None = None     # network input size; None = the dataset's
    notes: str = ""

    def __post_init__(self):
        if self.foml and self.combine is not None:
            raise ValueError(f"{self.name}: foml and combine are exclusive")
        if self.foml_tail is not None and not self.foml:
            raise ValueError(f"{self.name}: foml_tail needs foml=True")
        if self.adam_carry == "sequential" and self.batched:
            raise ValueError(f"{self.name}: adam_carry='sequential' needs batched=False")
        if self.adam_carry not in ("sequential", "mean"):
            raise ValueError(f"{self.name}: adam_carry must be 'sequential' or 'mean'")
        if self.loss_reduction not in ("sum", "mean"):
            raise ValueError(f"{self.name}: loss_reduction must be 'sum' (the released code) or 'mean'")
        for name in ("classes", "train_shots", "inner_batch", "inner_iters", "meta_batch", "meta_iters",
                     "eval_samples", "eval_interval", "eval_interval_tasks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{self.name}: {name} must be >= 1, got {getattr(self, name)}")

    @property
    def weights(self) -> tuple[float, ...]:
        """How the k inner updates combine into the meta-update (see ``algorithms.step_weights``)."""
        if self.foml:
            return step_weights(self.inner_iters, [self.inner_iters])
        return step_weights(self.inner_iters, self.combine, self.combine_average)

    @property
    def algorithm(self) -> str:
        if self.foml:
            return "fomaml-separate-tail" if self.foml_tail else "fomaml-shared-tail"
        if self.combine is not None:
            return "combination"
        return "reptile"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Config":
        d = dict(d)
        d["evals"] = tuple(EvalSpec(**e) for e in d["evals"])
        if d.get("combine") is not None:
            d["combine"] = tuple(d["combine"])
        return Config(**d)

    def hash(self) -> str:
        """A short digest of every field: results and checkpoints of another config are refused."""
        from .results import config_hash
        return config_hash(self)


# ---------------------------------------------------------------- the paper's rows (Tables 1-2)
OMNIGLOT_5WAY = Config(
    name="omniglot_5way", dataset="omniglot", model="omniglot", classes=5, train_shots=10,
    inner_batch=10, inner_iters=5, learning_rate=1e-3, meta_step=1.0, meta_step_final=0.0,
    meta_batch=5, meta_iters=100_000, evals=(EvalSpec(1, 5), EvalSpec(5, 5)))

OMNIGLOT_20WAY = Config(
    name="omniglot_20way", dataset="omniglot", model="omniglot", classes=20, train_shots=10,
    inner_batch=20, inner_iters=10, learning_rate=5e-4, meta_step=1.0, meta_step_final=0.0,
    meta_batch=5, meta_iters=200_000, evals=(EvalSpec(1, 10), EvalSpec(5, 10)))

MINIIMAGENET_5WAY = Config(
    name="miniimagenet_5way", dataset="miniimagenet", model="miniimagenet", classes=5, train_shots=15,
    inner_batch=10, inner_iters=8, learning_rate=1e-3, meta_step=1.0, meta_step_final=0.0,
    meta_batch=5, meta_iters=100_000, evals=(EvalSpec(1, 5), EvalSpec(5, 15)))

# The stand-in: Mini-ImageNet's hyper-parameters and network on CIFAR-FS's 32x32 photographs.
CIFAR_FS_5WAY = dataclasses.replace(
    MINIIMAGENET_5WAY, name="cifar_fs_5way", dataset="cifar_fs", image_size=32,
    notes="Mini-ImageNet hyper-parameters and network applied to CIFAR-FS (32x32, 128 features)")

FC100_5WAY = dataclasses.replace(CIFAR_FS_5WAY, name="fc100_5way", dataset="fc100",
                                 notes="Mini-ImageNet hyper-parameters on FC100 (split by superclass)")


# ---------------------------------------------------------------- Figure 3: gradient combinations
# Learning curves (ours): a point every 1,000 meta-iterations on 500 test tasks, whose 95% interval
# is about +-1.8 points at 80% accuracy (+-1 at 95%): 41 points per curve, a smooth band.
# Plain SGD has no state to carry and a meta-batch of one task has no other task to batch with, so the
# carry and the batching change nothing here: the two fields keep the values the runs were trained (and
# their results hashed) with.
FIGURE3_BASE = Config(
    name="figure3", dataset="omniglot", model="omniglot", classes=5, sgd=True, learning_rate=0.003,
    inner_batch=25, meta_batch=1, meta_iters=40_000, meta_step=0.25, meta_step_final=0.0,
    evals=(EvalSpec(5, 25, 5),), eval_interval=1_000, eval_interval_tasks=500, batched=True, adam_carry="mean")


def figure3_config(steps: tuple[int, ...], k: int, average: bool = False) -> Config:
    """One Figure 3 curve: the updates of inner ``steps`` (out of k, train_shots = 5k) combined.

    ``(1,)`` with k=1 is g1 (joint training); ``(k,)`` is FOMAML's g_k; ``(1..k)`` is Reptile;
    ``average=True`` divides by the number of steps (the released commands' meta-step 0.25/k).
    """
    label = "+".join(f"g{i}" for i in steps)
    if average:
        label = f"({label})/{len(steps)}"
    return dataclasses.replace(FIGURE3_BASE, name=f"figure3[{label}]", inner_iters=k, train_shots=5 * k,
                               combine=tuple(steps), combine_average=average)


FIGURE3_CURVES: tuple[Config, ...] = (
    figure3_config((1,), 1),
    *(figure3_config((k,), k) for k in (2, 3, 4)),
    *(figure3_config(tuple(range(1, k + 1)), k) for k in (2, 3, 4)),
    *(figure3_config(tuple(range(1, k + 1)), k, average=True) for k in (2, 3, 4)),
)


# ---------------------------------------------------------------- Figure 4: sensitivity
FIGURE4_META_ITERS = 4_000
# Figure 4 points are trained for fewer meta-iterations than Table 2 (the sweep has 39 runs; see
# ``reptile_lib.sweeps`` for the values and the budget) and evaluated on 2,000 test tasks, whose
# 95% interval is about +-0.5 points near 95% accuracy; curves on training classes every 500. Like
# Table 2's runs they adapt in the released order, so the GPU engine, which batches a meta-batch's
# tasks with the mean carry, does not train them.
FIGURE4_BASE = dataclasses.replace(OMNIGLOT_5WAY, name="figure4", train_shots=10, evals=(EvalSpec(5, 5),),
                                   meta_iters=FIGURE4_META_ITERS, eval_samples=2_000, eval_interval=500,
                                   eval_interval_tasks=50)


def figure4_config(algorithm: str, **changes) -> Config:
    """A Figure 4 point: ``reptile``, ``fomaml-shared`` or ``fomaml-separate`` with changed fields."""
    extra = {"reptile": {}, "fomaml-shared": {"foml": True},
             "fomaml-separate": {"foml": True, "foml_tail": 5}}
    if algorithm not in extra:
        raise ValueError(f"unknown Figure 4 algorithm {algorithm!r}: {sorted(extra)}")
    label = ",".join(f"{k}={v}" for k, v in sorted(changes.items()))
    return dataclasses.replace(FIGURE4_BASE, name=f"figure4[{algorithm};{label}]",
                               **extra[algorithm], **changes)


def smoke(config: Config) -> Config:
    """A CPU-sized variant: few meta-iterations and evaluation tasks, same shapes otherwise."""
    return dataclasses.replace(
        config, name=config.name, meta_iters=min(config.meta_iters, 200),
        eval_samples=min(config.eval_samples, 200), eval_interval=min(config.eval_interval, 50),
        eval_interval_tasks=min(config.eval_interval_tasks, 20),
        evals=tuple(dataclasses.replace(e, eval_iters=min(e.eval_iters, 50)) for e in config.evals))


PAPER_CONFIGS: dict[str, Config] = {c.name: c for c in (
    OMNIGLOT_5WAY, OMNIGLOT_20WAY, MINIIMAGENET_5WAY, CIFAR_FS_5WAY, FC100_5WAY)}


def config_by_name(name: str) -> Config:
    """A paper config (``omniglot_5way`` ...) or a Figure 3 curve (``figure3[g1+g2]``) by its name."""
    named = {**PAPER_CONFIGS, **{c.name: c for c in FIGURE3_CURVES}}
    if name not in named:
        raise KeyError(f"unknown config {name!r}: choose one of {', '.join(sorted(named))}")
    return named[name]


def get_config(name: str, profile: str = "paper") -> Config:
    """A named config (``reptile train --config NAME``) in the ``paper`` or ``smoke`` profile."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    if name not in PAPER_CONFIGS:
        raise KeyError(f"unknown config {name!r}: choose one of {', '.join(sorted(PAPER_CONFIGS))}")
    config = PAPER_CONFIGS[name]
    return smoke(config) if profile == "smoke" else config
