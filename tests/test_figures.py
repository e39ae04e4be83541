"""Figures 3 and 4 are assembled from the queue's runs, one experiment each (reptile_lib.figures)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from reptile_lib import figures, report, sweeps
from reptile_lib import reproduce as R
from reptile_lib.paths import REPO_ROOT
from reptile_lib.results import load_results, provenance, summarize, write_results

METRIC = "test_5shot_5way_nontransductive"


@pytest.fixture
def plan(tmp_path: Path) -> R.Plan:
    (tmp_path / "runs").mkdir()
    shutil.copy(REPO_ROOT / "runs" / "plan.toml", tmp_path / "runs" / "plan.toml")
    return R.load_plan(tmp_path / "runs" / "plan.toml")


def _curve(levels, ci=0.02):
    return [{"iteration": 1000 * i, "test_nontransductive": v, "test_nontransductive_ci95": ci}
            for i, v in enumerate(levels)]


def _write_curve(plan: R.Plan, label: str, per_seed: dict[int, float], config=None) -> Path:
    """A curve's results file as the queue writes it: per-task scores of each seed, curves per seed."""
    exp = figures.curve_experiments(plan, "figure3")[f"figure3[{label}]"]
    per_task = {s: [1.0] * int(100 * acc) + [0.0] * (100 - int(100 * acc)) for s, acc in per_seed.items()}
    metrics = {METRIC: summarize(per_task)}
    extra = {"history": {str(s): _curve([0.2, acc - 0.05, acc]) for s, acc in per_seed.items()},
             "iterations": {str(s): 40_000 for s in per_seed}, "curve": ["test", 1000, 500]}
    prov = provenance("cpu", sorted(per_seed), 10.0, True, commits=["abc"])
    return write_results(R.results_path(plan, exp.name), exp.name, "paper", config or exp.config, metrics, prov, extra)


LEVELS = {"g1": 0.30, "g2": 0.80, "g3": 0.82, "g4": 0.84, "g1+g2": 0.85, "g1+g2+g3": 0.88,
          "g1+g2+g3+g4": 0.91, "(g1+g2)/2": 0.83, "(g1+g2+g3)/3": 0.86, "(g1+g2+g3+g4)/4": 0.89}


def test_the_plan_trains_exactly_the_ten_curves_into_separate_files(plan):
    exps = figures.curve_experiments(plan, "figure3")
    assert sorted(exps) == sorted(p.config.name for p in sweeps.figure3_points("paper"))
    assert len({R.results_path(plan, e.name) for e in exps.values()}) == 10
    assert all(e.curve == ("test", 1000, 500) and dict(e.evaluate) == {"test": 10_000} for e in exps.values())


def test_assembled_from_finished_curves_only_and_finished_when_all_ten_are(plan):
    assert figures.assemble(plan, "figure3") is None
    _write_curve(plan, "g1", {0: 0.30, 1: 0.40})
    _write_curve(plan, "g1+g2", {0: 0.85})
    _write_curve(plan, "g2", {0: 0.80}, config=sweeps.smoke_figure3(sweeps.figure3_points()[1].config))  # another config
    doc = figures.assemble(plan, "figure3")
    assert not doc["provenance"]["finished"] and doc["extra"]["curves_finished"] == 2
    assert doc["provenance"]["seeds"] == [0, 1]
    assert set(doc["metrics"]) == {f"figure3[g1]|{METRIC}", f"figure3[g1+g2]|{METRIC}"}
    assert doc["metrics"][f"figure3[g1]|{METRIC}"]["n_tasks"] == 200
    mean = doc["extra"]["curves"]["figure3[g1]"]
    assert [q["test_nontransductive"] for q in mean] == pytest.approx([0.2, 0.30, 0.35])
    assert mean[0]["seeds"] == 2 and mean[0]["test_nontransductive_ci95"] == pytest.approx(0.02 / 2 ** 0.5)
    assert set(doc["extra"]["seed_curves"]["figure3[g1]"]) == {"0", "1"}
    # unfinished: the findings are not compared
    assert {r["holds"] for r in report.figure3_findings(doc)} == {"unfinished run — not evaluated"}


def test_all_ten_give_the_findings_the_figure_and_the_file_the_chapter_loads(plan):
    for label, acc in LEVELS.items():
        _write_curve(plan, label, {0: acc, 1: acc - 0.01})
    path = figures.write(plan, "figure3")
    doc = load_results(path, sweeps.figure_config("figure3", "paper"), "paper")   # what the chapter loads
    assert doc["provenance"]["finished"] and doc["extra"]["curves_finished"] == 10
    rows = report.figure3_findings(doc)
    assert rows[0]["holds"] == "holds" and rows[1]["holds"].startswith("holds")
    ax = __import__("reptile_lib.plots.experiments", fromlist=["figure3"]).figure3(doc)
    assert "range over seeds" in ax.get_title() and len(ax.get_lines()) == 10
    assert len(ax.child_axes) == 1 and len(ax.child_axes[0].get_lines()) == 9   # the zoom: all but g1
    labels = [t.get_text() for t in ax.figure.legends[0].get_texts()]
    assert labels[:6] == ["g1", " ", " ", "g2", "g3", "g4"]    # a legend column per family, k downwards
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    assert len({colours["g2"], colours["g1+g2"], colours["(g1+g2)/2"]}) == 3      # families differ in hue


def test_the_queue_writes_the_figure_once_when_a_curve_is_done(plan):
    _write_curve(plan, "g3", {0: 0.82})
    unit = next(u for u in plan.units if u.experiment.name == "figure3_g3" and u.seed == 0)
    other = next(u for u in plan.units if u.experiment.name == "omniglot_5way")
    R._write_figures(plan, other)
    assert not (plan.results / "figure3.json").exists()        # not a Figure 3 unit
    R._write_figures(plan, unit, missing_only=True)
    first = (plan.results / "figure3.json").read_text()
    assert "figure3[g3]" in json.loads(first)["extra"]["seed_curves"]
    R._write_figures(plan, unit, missing_only=True)               # already there: not rewritten
    assert (plan.results / "figure3.json").read_text() == first


def test_a_figures_chapter_is_re_executed_when_its_seed_is_whole_and_at_most_hourly_before(plan):
    units = {(u.experiment.name, u.seed): u for u in plan.units}
    other = units[("omniglot_5way", 0)]
    assert R._write_figures(plan, other) is None and R._chapter_due("04_omniglot", None)
    labels = list(LEVELS)
    for label in labels[:-1]:
        _write_curve(plan, label, {0: LEVELS[label]})
        exp = figures.curve_experiments(plan, "figure3")[f"figure3[{label}]"]
        assert R._write_figures(plan, units[(exp.name, 0)]) is False     # seed 0 not whole yet
    executed = REPO_ROOT / "book" / "executed" / "06_figure3.ipynb"
    mtime = executed.stat().st_mtime
    assert not R._chapter_due("06_figure3", False, now=mtime + 60)       # re-executed a minute ago
    assert R._chapter_due("06_figure3", False, now=mtime + R.FIGURE_CHAPTER_EVERY_S)
    _write_curve(plan, labels[-1], {0: LEVELS[labels[-1]]})
    last = figures.curve_experiments(plan, "figure3")[f"figure3[{labels[-1]}]"]
    assert R._write_figures(plan, units[(last.name, 0)]) is True         # the last curve of seed 0
    assert R._chapter_due("06_figure3", True, now=mtime + 60)
    _write_curve(plan, "g1", {0: LEVELS["g1"], 1: 0.31})                 # seed 1 has begun: not whole
    assert R._write_figures(plan, units[("figure3_g1", 1)]) is False

def test_the_scoreboard_counts_figure3_curves_per_seed(plan):
    queue = [{"unit": f"figure3_{c}-seed{s}", "state": "pending"} for s in (0, 1) for c in ("g1", "g2", "g3")]
    queue[0]["state"] = "done"
    queue[1]["state"] = "training: 2,000 of 40,000"
    queue.append({"unit": "omniglot_5way-seed0", "state": "training: 5 of 100,000"})
    assert report._scale("figure3", None, queue) == (
        "unfinished (queue: seed 0: 1 of 3 curves done, figure3_g2 training: 2,000 of 40,000, 1 pending; "
        "seed 1 pending)")
    _write_curve(plan, "g1", {0: 0.3})
    doc = figures.assemble(plan, "figure3")
    assert report._scale("figure3", doc, queue) == "unfinished (1 of 10 curves finished)"


def test_a_unit_one_curve_point_in_has_no_speed_yet(plan):
    """The first curve point is paid at iteration 1: one iteration in, the unit's speed is not known yet
    (it would read as hundreds of hours left), after enough iterations it is."""
    from reptile_lib import reproduce

    unit = plan.units[0]
    log = reproduce.log_path(plan, unit)
    log.parent.mkdir(parents=True, exist_ok=True)
    record = {"train_path": "engine.sequential.SequentialMetaStep", "iteration": 1, "iterations": 1, "train_s": 48.0}
    log.write_text(json.dumps(record) + "\n")
    assert reproduce.enough_iterations(unit.config) == 1000
    assert reproduce.ms_per_iteration(plan, unit) is None
    log.write_text(log.read_text() + json.dumps(dict(record, iteration=2000, iterations=1999, train_s=152.0)) + "\n")
    assert reproduce.ms_per_iteration(plan, unit) == 100.0


def test_the_speed_is_the_newest_tenth_of_the_run(plan):
    """Kernels get faster between working periods: the estimate reads the newest segments back to a tenth
    of the run (10,000 of 100,000 meta-iterations), not the whole history."""
    from reptile_lib import reproduce

    unit = plan.units[0]
    log = reproduce.log_path(plan, unit)
    log.parent.mkdir(parents=True, exist_ok=True)
    rec = {"train_path": "engine.sequential.SequentialMetaStep", "kernels": "native"}
    rows = [dict(rec, iterations=40_000, train_s=40_000 * 0.3),    # the old kernels: 300 ms
            dict(rec, iterations=8_000, train_s=8_000 * 0.2),      # the new: 200 ms ...
            dict(rec, iterations=3_000, train_s=3_000 * 0.1)]      # ... and 100 ms
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert reproduce.speed_window(unit.config) == 10_000
    # 3,000 + 8,000 iterations reach the window; the 40,000 at 300 ms are not read
    assert reproduce.ms_per_iteration(plan, unit) == pytest.approx((300 + 1600) / 11)


def test_a_curve_never_run_borrows_the_speed_of_one_with_the_same_shapes(plan):
    """g1+g2 and (g1+g2)/2 run the same two inner steps as g2 (only the weights differ): before either has
    run, the status estimates them from g2's segments, the most recent measurement of a twin winning; g1
    (one step) and g3 (three) are not twins of g2."""
    units = {u.id: u for u in plan.units}

    def log(unit_id, started, ms, eval_s=None):
        unit = units[unit_id]
        path = R.log_path(plan, unit)
        path.parent.mkdir(parents=True, exist_ok=True)
        rec = {"train_path": "engine.sequential.SequentialMetaStep", "kernels": "native", "started": started,
               "iteration": 2000, "iterations": 2000, "train_s": 2 * ms}
        if eval_s is not None:
            rec.update(eval_tasks=100, eval_s=100 * eval_s)
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    log("figure3_g2-seed0", "2026-01-01T00:00", 30.0, eval_s=0.05)
    assert R.ms_per_iteration(plan, units["figure3_g1+g2-seed0"]) == 30.0
    assert R.ms_per_iteration(plan, units["figure3_avg_g1+g2-seed1"]) == 30.0
    assert R.ms_per_iteration(plan, units["figure3_g1-seed0"]) is None
    assert R.ms_per_iteration(plan, units["figure3_g3-seed0"]) is None
    log("figure3_g1+g2-seed1", "2026-02-01T00:00", 20.0)            # a later measurement (another machine)
    assert R.ms_per_iteration(plan, units["figure3_avg_g1+g2-seed0"]) == 20.0
    assert R.ms_per_iteration(plan, units["figure3_g2-seed0"]) == 30.0   # its own segments first
    # every Figure 3 curve is evaluated the same way (5 steps of 25 images): g2's evaluation times them all
    assert R.eval_seconds_per_task(plan, units["figure3_g1-seed0"]) == pytest.approx(0.05)
    assert R.eval_seconds_per_task(plan, units["omniglot_5way-seed0"]) is None


# ---------------------------------------------------------------- Figure 4: a sweep generated by the plan
def test_the_plan_generates_one_experiment_per_figure4_run_and_one_line_queues_them_all(plan):
    runs = sweeps.unique_configs(sweeps.figure4_points("paper"))
    exps = figures.curve_experiments(plan, "figure4")
    assert sorted(exps) == sorted(c.name for c in runs) and len(runs) == 39
    units = [u for u in plan.units if u.config.name in exps]
    assert [u.config.name for u in units] == [c.name for c in runs] and {u.seed for u in units} == {0}
    e = exps["figure4[fomaml-shared;inner_iters=6]"]
    assert e.name == "figure4_fomaml-shared_inner_iters=6" and e.config == runs[[c.name for c in runs].index(e.config.name)]
    assert R.results_path(plan, e.name) == plan.results / "figure4" / "fomaml-shared_inner_iters=6.json"
    assert e.curve == ("train", 500, 50) and dict(e.evaluate) == {"test": 2_000} and e.chapter == "07_figure4"
    assert exps["figure4[reptile;]"].name == "figure4_reptile"
    assert len({R.results_path(plan, x.name) for x in exps.values()}) == 39
    # every unit of the sweep has a status row (cost twins: FOMAML's tail changes no cost)
    rows = {r["unit"]: r for r in R.status_rows(plan)}
    assert rows["figure4_fomaml-separate_inner_batch=12-seed0"]["state"] == "pending"
    assert "figure4_fomaml-separate_inner_batch=12-seed0" in R.status_text(plan, every_unit=True)
    text = R.status_text(plan)   # all 39 pending: one line
    assert "figure4/0 (39 runs)" in text and "figure4_reptile-seed0" not in text
    # never run: the cost model prices them, as the chapter's budget table does (less its start-up)
    assert f"{len(plan.units)} unit(s) never run, about" in text.splitlines()[-1]
    whole = sweeps.estimate(sweeps.unique_configs(sweeps.figure4_points()), "cpu", batched=False)
    assert sum(R.estimated_hours(u) for u in units) == pytest.approx((whole["total_s"] - whole["startup_s"]) / 3600)
    assert R.estimated_hours(next(u for u in plan.units if u.config.dataset == "cifar_fs")) is None
    # one run started: it gets its line, the pending runs before and after it share theirs
    unit = next(u for u in plan.units if u.experiment.name == "figure4_reptile_inner_iters=6")
    R.checkpoint_path(plan, unit).parent.mkdir(parents=True, exist_ok=True)
    import torch
    torch.save({"config_hash": unit.config.hash(), "iteration": 100, "wall_time_s": 10.0},
               R.checkpoint_path(plan, unit))
    lines = [line.split()[0] for line in R.status_text(plan).splitlines() if line.startswith("figure4")]
    assert lines == ["figure4/0", "figure4_reptile_inner_iters=6-seed0", "figure4/0"]


def test_a_bad_sweep_table_is_refused_with_what_to_write(tmp_path):
    path = tmp_path / "runs" / "plan.toml"
    path.parent.mkdir()
    path.write_text('units = ["figure4/0"]\n[sweep.figure4]\nchapter = "07_figure4"\nevaluate = { test = 5 }\n')
    with pytest.raises(R.PlanError, match="may only have chapter"):
        R.load_plan(path)
    path.write_text('units = ["figure3/0"]\n[sweep.figure3]\n')
    with pytest.raises(R.PlanError, match="a sweep is one of"):
        R.load_plan(path)
    path.write_text('units = ["figure5/0"]\n[sweep.figure4]\n')
    with pytest.raises(R.PlanError, match="SWEEP one of"):
        R.load_plan(path)
    path.write_text('units = ["figure4/0"]\n[sweep.figure4]\n')
    assert len(R.load_plan(path).units) == 39


def _write_run(plan: R.Plan, exp, acc: float) -> Path:
    per_task = {0: [1.0] * int(100 * acc) + [0.0] * (100 - int(100 * acc))}
    metrics = {METRIC: summarize(per_task)}
    hist = [{"iteration": 500 * i, "train_nontransductive": v, "train_nontransductive_ci95": 0.03}
            for i, v in enumerate([0.2, acc - 0.05, acc])]
    extra = {"history": {"0": hist}, "iterations": {"0": 4_000}, "curve": ["train", 500, 50]}
    prov = provenance("cpu", [0], 10.0, True, commits=["abc"])
    return write_results(R.results_path(plan, exp.name), exp.name, "paper", exp.config, metrics, prov, extra)


def test_figure4_is_assembled_from_its_runs_judged_and_drawn(plan):
    exps = figures.curve_experiments(plan, "figure4")
    for name, exp in list(exps.items())[:5]:
        _write_run(plan, exp, 0.9)
    doc = figures.assemble(plan, "figure4")
    assert not doc["provenance"]["finished"] and report.progress_text(doc).endswith("of 45 points finished")
    assert {r["verdict"] for r in report.figure4_findings(doc)} == {"unfinished run — not evaluated"}
    # the queue writes the figure when one of its runs finishes
    unit = next(u for u in plan.units if u.config.name == list(exps)[0])
    R._write_figures(plan, unit)
    assert json.loads((plan.results / "figure4.json").read_text())["extra"]["curves_finished"] >= 5
    # all runs: shared-tail FOMAML drops where its last batch overlaps, the others stay level
    for p in sweeps.figure4_points("paper"):
        c = p.config
        overlap = sweeps.last_batch_overlap(c.inner_iters, c.inner_batch, c.classes * c.train_shots) > 0
        _write_run(plan, exps[c.name], 0.70 if (p.algorithm == "fomaml-shared" and overlap) else 0.95)
    path = figures.write(plan, "figure4")
    doc = load_results(path, sweeps.figure_config("figure4", "paper"), "paper")   # what the chapter loads
    assert doc["provenance"]["finished"] and doc["extra"]["curves_finished"] == 45
    verdicts = {(r["panel"], r["algorithm"]): r["verdict"] for r in report.figure4_findings(doc)}
    assert verdicts[("inner_iters", "fomaml-shared")] == "degrades"
    assert verdicts[("inner_batch", "reptile")] == "stable"
    from reptile_lib.plots import experiments as plots
    fig = plots.figure4(doc)[0].figure
    assert len(fig.axes) >= 3
    ax = plots.figure4_curves(doc)
    assert len(ax.get_lines()) >= 39


def test_a_chapter_retraining_a_figure_advances_exactly_its_units_of_the_queue(plan, monkeypatch):
    calls = []
    monkeypatch.setattr(R, "reproduce", lambda p, **kw: calls.append(kw))
    monkeypatch.setattr(sweeps, "obtain_figure", lambda figure, profile, **kw: ("paper doc", None))
    exp = next(iter(figures.curve_experiments(plan, "figure4").values()))
    _write_run(plan, exp, 0.9)
    assert figures.obtain("figure4", "paper", retrain=True, max_minutes=3, plan=plan) == ("paper doc", None)
    assert sorted(calls[0]["only"]) == sorted(e.name for e in figures.curve_experiments(plan, "figure4").values())
    assert calls[0]["max_minutes"] == 3 and calls[0]["rebuild"] is False
    assert (plan.results / "figure4.json").exists()     # rewritten from the runs finished so far
    figures.obtain("figure3", "smoke", retrain=True, plan=plan)   # a smoke page trains nothing of the queue
    assert len(calls) == 1
