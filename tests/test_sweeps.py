"""Figures 3 and 4 as run groups: the points, the overlap regime, grouping, the runner, the GPU estimates."""
import dataclasses
import json

import pytest
import torch

from reptile_lib import sweeps
from reptile_lib.configs import Config, EvalSpec, FIGURE3_CURVES
from reptile_lib.results import load_results
from reptile_lib.tasks import ClassDataset, TaskSampler
from reptile_lib.train import meta_train


# ---------------------------------------------------------------- the points
def test_figure3_has_the_papers_ten_curves():
    pts = sweeps.figure3_points()
    assert [p.algorithm for p in pts] == ["g1", "g2", "g3", "g4", "g1+g2", "g1+g2+g3", "g1+g2+g3+g4",
                                         "(g1+g2)/2", "(g1+g2+g3)/3", "(g1+g2+g3+g4)/4"]
    by = {p.algorithm: p.config for p in pts}
    assert by["g1"].weights == (1.0,) and by["g3"].weights == (0.0, 0.0, 1.0)
    assert by["g1+g2+g3"].weights == (1.0, 1.0, 1.0) and by["(g1+g2+g3)/3"].weights == pytest.approx((1 / 3,) * 3)
    for c in by.values():  # the paper's Figure 3: train_shots = 5k, disjoint batches of 25, SGD 0.003, meta-batch 1
        assert c.train_shots == 5 * c.inner_iters and c.inner_batch * c.inner_iters == c.classes * c.train_shots
        assert (c.sgd, c.learning_rate, c.meta_batch, c.meta_iters, c.meta_step, c.meta_step_final) == \
            (True, 0.003, 1, 40_000, 0.25, 0.0)
        assert c.evals == (EvalSpec(5, 25, 5),)
    assert [p.config for p in pts] == list(FIGURE3_CURVES)


def test_figure4_grid_shares_the_base_point_and_crosses_the_overlap_regime():
    pts = sweeps.figure4_points()
    configs = sweeps.unique_configs(pts)
    assert len(pts) == 3 * sum(len(v) for v in sweeps.FIGURE4_AXES.values())
    assert len(configs) == 3 * (sum(len(v) for v in sweeps.FIGURE4_AXES.values()) - 2)  # base counted once
    base = {p.config.name for p in pts if (p.panel, p.value) in (("inner_iters", 5), ("inner_batch", 10), ("meta_step", 1.0))}
    assert len(base) == 3  # one run per algorithm serves all three panels
    for panel in ("inner_iters", "inner_batch"):
        fractions = []
        for p in pts:
            if p.panel == panel and p.algorithm == "fomaml-shared":
                c = p.config
                fractions.append(sweeps.last_batch_overlap(c.inner_iters, c.inner_batch, c.classes * c.train_shots))
        assert min(fractions) == 0.0 and max(fractions) == 1.0, (panel, fractions)
    sep = [p.config for p in pts if p.algorithm == "fomaml-separate"]
    assert all(c.foml and c.foml_tail == 5 for c in sep)
    smoke = sweeps.unique_configs(sweeps.figure4_points("smoke"))
    assert all(c.meta_iters == 4 for c in smoke) and len(smoke) == 18


def test_overlap_formula_matches_the_released_sampler():
    """The expected overlap of the last batch with earlier ones, against the library's own sampler."""
    ways, shots, n_tasks = 5, 10, 4000
    ids = torch.arange(ways * shots, dtype=torch.float32).reshape(ways, shots, 1, 1, 1)
    data = ClassDataset(ids, "indices", tuple(str(c) for c in range(ways)))
    for k, b in ((2, 10), (5, 10), (6, 10), (5, 12), (4, 15), (5, 15), (3, 20), (5, 5)):
        sampler = TaskSampler(data, ways, torch.Generator().manual_seed(k * 100 + b))
        batches = sampler.train_batches(n_tasks, shots, b, k)
        seen = torch.cat([x.reshape(n_tasks, -1) for x, _ in batches[:-1]], 1)
        last = batches[-1][0].reshape(n_tasks, -1)
        measured = float((last[:, :, None] == seen[:, None, :]).any(-1).float().mean())
        assert measured == pytest.approx(sweeps.last_batch_overlap(k, b, ways * shots), abs=0.01), (k, b)
    assert sweeps.last_batch_overlap(5, 12, 50) == pytest.approx(0.8)
    assert sweeps.overlap_onset("inner_iters") == 6 and sweeps.overlap_onset("inner_batch") == 11


def test_groups_put_reptile_and_shared_tail_together_and_the_separate_tail_apart():
    groups = sweeps.group_configs(sweeps.unique_configs(sweeps.figure3_points()))
    assert [len(g) for g in groups] == [1, 3, 3, 3]  # k = 1, 2, 3, 4
    assert all(len({c.inner_iters for c in g}) == 1 for g in groups)
    g4 = sweeps.group_configs(sweeps.unique_configs(sweeps.figure4_points()))
    for g in g4:
        algs = {c.algorithm for c in g}
        assert algs <= {"reptile", "fomaml-shared-tail"} or algs == {"fomaml-separate-tail"}
    base = next(g for g in g4 if any(c.name == "figure4[reptile;]" for c in g))
    assert len(base) == 2 * len(sweeps.FIGURE4_AXES["meta_step"])  # the outer-step sweep trains as one group


# ---------------------------------------------------------------- the runner
def _tiny_points(tiny: Config) -> list[sweeps.Point]:
    reptile = dataclasses.replace(tiny, name="t[reptile]")
    shared = dataclasses.replace(tiny, name="t[shared]", foml=True)
    separate = dataclasses.replace(tiny, name="t[separate]", foml=True, foml_tail=2)
    return [sweeps.Point("figure4", "inner_iters", 2, "reptile", reptile),
            sweeps.Point("figure4", "inner_iters", 2, "fomaml-shared", shared),
            sweeps.Point("figure4", "inner_iters", 2, "fomaml-separate", separate)]


TINY = Config(name="t", dataset="tiny", model="omniglot", classes=3, train_shots=4, inner_batch=4, inner_iters=2,
              meta_batch=2, meta_iters=4, evals=(EvalSpec(1, 3, 4),), eval_samples=6, eval_interval=2,
              eval_interval_tasks=3)


def test_run_figure_trains_each_run_as_meta_train_would_and_writes_one_file(tiny_data, tmp_path):
    splits = {"train": tiny_data, "test": tiny_data}
    pts = _tiny_points(TINY)
    doc = sweeps.run_figure("figure4", "smoke", splits=splits, seed=2, points=pts, out=tmp_path / "f.json",
                            checkpoint_dir=tmp_path / "ck", checkpoint_every=2)
    on_disk = load_results(tmp_path / "f.json", sweeps.figure_config("figure4", "smoke", pts), "smoke")
    assert on_disk["metrics"] == json.loads(json.dumps(doc["metrics"]))
    assert doc["provenance"]["finished"] and doc["extra"]["groups"] == [["t[reptile]", "t[shared]"], ["t[separate]"]]
    assert set(doc["metrics"]) == {f"t[{a}]|test_1shot_3way_{p}" for a in ("reptile", "shared", "separate")
                                   for p in ("transductive", "nontransductive")}
    ref = meta_train(pts[1].config, tiny_data, seed=2, monitor_splits={"train": tiny_data})
    assert doc["extra"]["curves"]["t[shared]"] == ref.history  # the curve meta_train logs, with 95% intervals
    assert [h["iteration"] for h in ref.history] == [1, 2, 4] and "train_nontransductive_ci95" in ref.history[0]
    assert sweeps.point_metric(doc, pts[0]) == doc["metrics"]["t[reptile]|test_1shot_3way_nontransductive"]


def test_the_engine_trains_only_the_batched_path_and_the_released_order_falls_back(tiny_data):
    pts = _tiny_points(TINY)[:2]
    assert all(p.config.adam_carry == "sequential" for p in pts)   # the configs' default
    assert not sweeps.engine_trains("eager", [p.config for p in pts])
    doc = sweeps.run_figure("figure4", "smoke", splits={"train": tiny_data, "test": tiny_data}, seed=2, points=pts,
                            engine="eager")
    assert doc["extra"]["trainer"].startswith("library")
    ref = meta_train(pts[1].config, tiny_data, seed=2, monitor_splits={"train": tiny_data})
    assert doc["extra"]["curves"]["t[shared]"] == ref.history
    mean = [dataclasses.replace(p.config, batched=True, adam_carry="mean") for p in pts]
    assert sweeps.engine_trains("eager", mean) and not sweeps.engine_trains(None, mean)


def test_an_interrupted_figure_is_labelled_and_resumes_to_the_same_numbers(tiny_data, tmp_path):
    splits = {"train": tiny_data, "test": tiny_data}
    pts = _tiny_points(TINY)
    full = sweeps.run_figure("figure4", "smoke", splits=splits, points=pts)
    none = sweeps.run_figure("figure4", "smoke", splits=splits, points=pts, checkpoint_dir=tmp_path, max_minutes=0)
    assert not none["provenance"]["finished"] and none["metrics"] == {}  # out of time: nothing starts
    # a job that was cut after one meta-iteration of the first run left its checkpoint behind
    meta_train(pts[0].config, tiny_data, seed=0, monitor_splits={"train": tiny_data}, stop_at=1,
               checkpoint=sweeps.checkpoint_path(tmp_path, pts[0].config, 0))
    cut = sweeps.run_figure("figure4", "smoke", splits=splits, points=pts, checkpoint_dir=tmp_path, max_minutes=0)
    assert cut["extra"]["iterations"] == {"t[reptile]": 1, "t[shared]": 0, "t[separate]": 0}
    assert not cut["provenance"]["finished"] and cut["metrics"] == {}  # nothing half-trained is evaluated
    resumed = sweeps.run_figure("figure4", "smoke", splits=splits, points=pts, checkpoint_dir=tmp_path)
    assert resumed["provenance"]["finished"] and resumed["metrics"] == full["metrics"]
    assert resumed["extra"]["curves"] == full["extra"]["curves"]


def test_a_diverged_run_is_reported_and_the_others_still_count(tiny_data):
    pts = _tiny_points(TINY)
    bad = dataclasses.replace(pts[2].config, sgd=True, learning_rate=1e30)
    pts[2] = dataclasses.replace(pts[2], config=bad)
    doc = sweeps.run_figure("figure4", "smoke", splits={"train": tiny_data, "test": tiny_data}, points=pts)
    assert list(doc["extra"]["diverged"]) == ["t[separate]"] and "Lower --learning-rate" in doc["extra"]["diverged"]["t[separate]"]
    assert doc["provenance"]["finished"]  # diverging is an outcome
    assert any(k.startswith("t[reptile]|") for k in doc["metrics"]) and not any(k.startswith("t[separate]") for k in doc["metrics"])


# ---------------------------------------------------------------- the GPU budget
def test_cost_model_reproduces_the_prototype_timings():
    """The GPU timings the cost model is fitted to: 5-way graph 3.1 ms (one run), 10.2 ms (8 runs); eager vmap 36 ms."""
    from reptile_lib.configs import OMNIGLOT_5WAY, OMNIGLOT_20WAY

    one = dataclasses.replace(OMNIGLOT_5WAY, meta_iters=1000)
    graph, eager = sweeps.CostModel.of("graph"), sweeps.CostModel.of("eager")
    assert sweeps.train_seconds([one], graph) == pytest.approx(3.1, rel=0.05)
    assert sweeps.train_seconds([one] * 8, graph) == pytest.approx(10.2, rel=0.05)
    assert sweeps.train_seconds([one], eager) == pytest.approx(36, rel=0.05)
    assert sweeps.train_seconds([one] * 8, eager, batched=False) == pytest.approx(8 * 36, rel=0.05)
    twenty = dataclasses.replace(OMNIGLOT_20WAY, meta_iters=1000)
    assert sweeps.train_seconds([twenty], graph) == pytest.approx(7.4, rel=0.15)
    assert sweeps.train_seconds([twenty], eager) == pytest.approx(83, rel=0.15)


def test_cpu_cost_model_reproduces_the_measured_cpu_timings():
    """One CPU core, one task at a time, native kernels: 59.4 ms per Omniglot 5-way meta-iteration, 58 ms per
    1-shot evaluation task (the quiet benchmark, benchmarks/results/cpu-1thread-amd-epyc.json)."""
    from reptile_lib.configs import OMNIGLOT_5WAY

    cpu = sweeps.CostModel.of("cpu")
    one = dataclasses.replace(OMNIGLOT_5WAY, meta_iters=1000)
    assert sweeps.train_seconds([one], cpu, batched=False) == pytest.approx(59.4, rel=0.02)
    one_shot = dataclasses.replace(one, evals=one.evals[:1])
    assert sweeps.eval_seconds(one_shot, 1000, cpu) == pytest.approx(58, rel=0.1)
    assert sweeps.eval_seconds(one_shot, 1000, cpu) == pytest.approx(1000 * sweeps.eval_seconds(one_shot, 1, cpu))
    with pytest.raises(ValueError, match="only omniglot"):
        sweeps.CostModel.of("cpu", "cifar_fs")


def test_each_figure_fits_ten_minutes_with_the_engine_on_the_batched_path():
    for fig in ("figure3", "figure4"):
        runs = sweeps.unique_configs(sweeps.figure_points(fig))
        # Figure 3 is configured on the batched path; Figure 4, in the released order, only as a copy
        assert sweeps.engine_trains("graph", runs) == (fig == "figure3")
        batched = [dataclasses.replace(c, batched=True, adam_carry="mean") for c in runs]
        assert sweeps.engine_trains("graph", batched)
        e = sweeps.estimate(batched, "graph")
        assert e["total_s"] < 12.5 * 60, (fig, e)
        assert sweeps.estimate(batched, "eager", batched=False)["total_s"] > 30 * 60
