"""The committed paper-scale models re-derive the committed evaluations.

The book's Table 2 numbers are means over per-task results saved by the queue
(``runs/checkpoints/<unit>.eval.pt``) for the models it saved (``results/weights/<unit>.pt``).
Evaluation tasks depend only on the seed, split and shots, so evaluating a saved model again on
the first tasks must give the saved results: a check that the weights, the evaluation code and the
saved scores belong together, without training anything.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from reptile_lib.cli import weights_config
from reptile_lib.data import load_dataset
from reptile_lib.experiment import evaluate_model, load_weights
from reptile_lib.results import metric_name
from reptile_lib.train import make_learner

ROOT = Path(__file__).resolve().parents[1]
TASKS = 100   # one evaluation chunk of the queue's (reproduce.EVAL_CHUNK)


@pytest.mark.parametrize("unit", ["omniglot_5way-seed0"])
def test_a_committed_model_rederives_its_saved_per_task_results(unit):
    weights = ROOT / "results" / "weights" / f"{unit}.pt"
    saved = ROOT / "runs" / "checkpoints" / f"{unit}.eval.pt"
    config = weights_config(weights)
    data = load_dataset(config.dataset)
    learner = make_learner(config, data["train"].image_shape)
    params, opt_state, blob = load_weights(weights, config)
    one_shot = dataclasses.replace(config, evals=config.evals[:1])   # the 1-shot setting only: quick
    accs = evaluate_model(one_shot, learner, params, opt_state, data["test"], "test", blob["seed"], n_tasks=TASKS)
    scores = torch.load(saved, weights_only=True)["scores"]
    for transductive in (True, False):
        name = metric_name("test", config.evals[0].shots, config.classes, transductive)
        ours = (accs[name] * config.classes).round().to(torch.uint8)
        theirs = scores[name][:TASKS]
        # the same tasks and the same computation: equal, up to a prediction flipped by float rounding
        # on another CPU (at most one task in a hundred)
        assert int((ours != theirs).sum()) <= 1, (name, ours.tolist(), theirs.tolist())
        assert int((theirs < config.classes).sum()) >= 2   # there are errors to match, not only perfect tasks


def test_every_committed_result_was_made_by_the_config_its_plan_names_now():
    """A change to a config's fields or defaults that would orphan a committed result fails here (the
    chapters would silently fall back to smoke runs): each results file's config hash is its unit's."""
    from reptile_lib import sweeps
    from reptile_lib.reproduce import load_plan
    from reptile_lib.results import load_results

    plan = load_plan()
    found = [e for e in plan.experiments.values() if (plan.results / f"{e.results}.json").exists()]
    for e in found:
        load_results(plan.results / f"{e.results}.json", e.config, "paper")   # raises on another config
    assert {"omniglot_5way", "cifar_fs_5way", "figure3_g1"} <= {e.name for e in found}
    load_results(ROOT / "results" / "figure3.json", sweeps.figure_config("figure3", "paper"), "paper")
