"""tools/loss_reduction_check.py: its paired statistics, its configs, and the fidelity page's table."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from reptile_lib.configs import OMNIGLOT_5WAY

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "fidelity" / "loss_reduction.json"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("loss_reduction_check", ROOT / "tools" / "loss_reduction_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_difference_is_the_mean_per_task_difference(tool):
    a, b = torch.tensor([1.0, 0.8, 0.6, 1.0]), torch.tensor([0.8, 0.8, 0.4, 1.0])
    r = tool.paired_difference(a, b)
    d = torch.tensor([0.2, 0.0, 0.2, 0.0], dtype=torch.float64)
    assert r["diff"] == pytest.approx(0.1) and r["tasks_differing"] == 2 and r["n_tasks"] == 4
    assert r["ci95"] == pytest.approx(1.96 * float(d.std()) / 2)
    with pytest.raises(ValueError, match="same tasks"):
        tool.paired_difference(a, b[:3])


def test_summary_pairs_the_right_runs(tool):
    key = "test_1shot_5way_transductive"
    ones, zeros = torch.ones(10), torch.zeros(10)
    per_task = {f"sum_seed0/sum/{key}": ones, f"sum_seed0/mean/{key}": zeros,
                f"mean_seed0/mean/{key}": ones * 0.5, f"sum_seed1/sum/{key}": zeros, f"sum_seed1/mean/{key}": zeros}
    s = tool.summary(per_task, (1,), (0, 1))
    assert s["same_weights"][key]["seed0"]["diff"] == 1.0 and s["same_weights"][key]["seed1"]["diff"] == 0.0
    assert s["same_weights"][key]["pooled"]["diff"] == 0.5 and s["same_weights"][key]["pooled"]["n_tasks"] == 20
    assert s["trained_each_way"][key]["seed0"]["diff"] == 0.5
    one_seed = tool.summary({k: v for k, v in per_task.items() if "seed1" not in k}, (1,), (0, 1))
    assert "pooled" not in one_seed["same_weights"][key]


def test_configs_are_table2_in_the_released_order_with_either_loss(tool):
    s, m = tool.check_config("sum", 1000, (1, 5)), tool.check_config("mean", 1000, (1, 5))
    assert (s.loss_reduction, m.loss_reduction) == ("sum", "mean") and s.hash() != m.hash()
    assert not s.batched and s.adam_carry == "sequential" and s.meta_iters == 1000
    for field in ("classes", "train_shots", "inner_batch", "inner_iters", "learning_rate", "meta_step",
                  "meta_step_final", "meta_batch"):
        assert getattr(s, field) == getattr(OMNIGLOT_5WAY, field), field


def test_the_fidelity_page_shows_the_committed_measurement(tool):
    doc = json.loads(RESULTS.read_text())
    assert doc["provenance"]["commit"] != "unknown" and doc["tasks"] >= 500
    page = (ROOT / "book" / "fidelity.md").read_text()
    assert tool.page_section(doc) in page, ("book/fidelity.md's loss table differs from results/fidelity/"
                                            "loss_reduction.json: run tools/loss_reduction_check.py --update-page")
