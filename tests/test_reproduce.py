"""The paper-scale queue survives stops and kills, and resumes bit for bit.

A tiny plan on real Omniglot (12 meta-iterations, 300 evaluation tasks of 3 steps) is run once
without interruption; the same plan stopped during training, killed during evaluation, and killed
while writing its results must end with exactly the same numbers.
"""
from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reptile_lib import report
from reptile_lib import reproduce as R
from reptile_lib.data import load_dataset
from data_fixtures import real_folder

PLAN = """
units = ["tiny/0"]
[experiment.tiny]
config = "omniglot_5way"
set = { adam_carry = "sequential", batched = false, meta_iters = 12 }
evals = [{ shots = 1, eval_batch = 5, eval_iters = 3 }]
evaluate = { test = 300 }
curve = { split = "test", every = 4, tasks = 10 }
"""


@pytest.fixture(scope="module")
def omniglot_root():
    return str(real_folder("omniglot", ("images_background.npz",)).parent)


def _plan(root: Path, text: str = PLAN) -> R.Plan:
    (root / "runs").mkdir(parents=True, exist_ok=True)
    (root / "runs" / "plan.toml").write_text(text)
    return R.load_plan(root / "runs" / "plan.toml")


def _run(plan, data_root, **kw):
    return R.reproduce(plan, data_root=data_root, progress=False, rebuild=False, install_signals=False, **kw)


def _numbers(plan: R.Plan) -> tuple[dict, dict, dict]:
    unit = plan.units[0]
    doc = json.loads(R.results_path(plan, "tiny").read_text())
    ckpt = torch.load(R.checkpoint_path(plan, unit), weights_only=True)
    ev = R.load_eval_state(plan, unit)
    return doc["metrics"], ckpt["params"], ev["scores"]


def _same(a, b) -> bool:
    return a[0] == b[0] and all(torch.equal(a[1][k], b[1][k]) for k in a[1]) and \
        all(torch.equal(a[2][k], b[2][k]) for k in a[2])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, omniglot_root):
    plan = _plan(tmp_path_factory.mktemp("reference"))
    assert _run(plan, omniglot_root) == 0
    return _numbers(plan)


def test_plan_is_read_and_refuses_bad_input(tmp_path):
    plan = _plan(tmp_path)
    unit = plan.units[0]
    assert unit.id == "tiny-seed0" and unit.config.meta_iters == 12 and unit.config.adam_carry == "sequential"
    assert unit.config.eval_interval == 4 and unit.config.eval_interval_tasks == 10
    real = R.load_plan()   # the project's own plan parses, Omniglot 5-way seed 0 first
    assert real.units[0].id == "omniglot_5way-seed0" and real.units[0].config.adam_carry == "sequential"
    with pytest.raises(R.PlanError, match="EXPERIMENT/SEED"):
        _plan(tmp_path, PLAN.replace('"tiny/0"', '"tiny"'))
    with pytest.raises(R.PlanError, match="unknown config"):
        _plan(tmp_path, PLAN.replace('config = "omniglot_5way"', 'config = "omniglot_7way"'))
    with pytest.raises(R.PlanError, match="inner_iterz"):
        _plan(tmp_path, PLAN.replace("meta_iters = 12", "inner_iterz = 3"))


def _shown_unfinished(plan, monkeypatch) -> list[str] | None:
    """What the chapters' "Unfinished run" cell shows for the tiny plan: its texts (None: nothing shown)."""
    import IPython.display
    import matplotlib
    import matplotlib.pyplot as plt

    from reptile_lib import book

    matplotlib.use("Agg")
    texts = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: texts.append(obj.data))
    monkeypatch.setattr(plt, "show", lambda: plt.close("all"))
    return texts if book.show_unfinished_run(plan, "tiny", "tiny", "the test characters", "tiny so far") else None


def test_stops_in_training_and_evaluation_resume_bit_for_bit(tmp_path, omniglot_root, reference, monkeypatch):
    plan = _plan(tmp_path)
    unit = plan.units[0]
    calls = {"n": 0}

    def stop_after(n):
        def stop():
            calls["n"] += 1
            return calls["n"] > n
        return stop

    assert not R.run_unit(plan, unit, data_root=omniglot_root, stop=stop_after(5), rebuild=False)
    st = R.unit_state(plan, unit)
    assert st["phase"] == "training" and st["iteration"] == 6
    so_far = R.unfinished_curves(plan, "tiny")   # what a chapter shows, labelled unfinished, meanwhile
    assert so_far["extra"]["iterations"] == {"0": 6} and not so_far["provenance"]["finished"]
    assert [p["iteration"] for p in so_far["extra"]["history"]["0"] if "test_nontransductive" in p] == [1, 4]
    shown = _shown_unfinished(plan, monkeypatch)
    assert shown[0].startswith("**Unfinished, not a result.** tiny is still in the queue (seed 0 at 6 of 12 ")
    calls["n"] = 0
    assert not R.run_unit(plan, unit, data_root=omniglot_root, stop=stop_after(7), rebuild=False)  # 6 more + 1 chunk
    st = R.unit_state(plan, unit)
    assert st["phase"] == "evaluating" and st["tasks_done"] == 100
    assert "evaluating: 100 of 300 tasks" in R.status_text(plan)
    assert R.run_unit(plan, unit, data_root=omniglot_root, rebuild=False)
    assert _same(_numbers(plan), reference)
    assert R.unfinished_curves(plan, "tiny") is None     # done: its results file has the curves
    assert _shown_unfinished(plan, monkeypatch) is None
    assert [s["iterations"] for s in R.segments(plan, unit)] == [6, 6, 0]
    # the record names the step that trained (the fast released-order step on a CPU)
    assert {s["train_path"] for s in R.segments(plan, unit)} == {"engine.sequential.SequentialMetaStep"}
    assert {s["eval_path"] for s in R.segments(plan, unit)} == {"engine.sequential.task_scorer"}
    assert "done" in R.status_text(plan)
    # the results name the data they were evaluated on
    data = json.loads(R.results_path(plan, "tiny").read_text())["extra"]["data"]
    assert data["test"]["name"].startswith("omniglot") and data["test"]["classes"] == 423


def test_killed_while_writing_results_leaves_nothing_half_written(tmp_path, omniglot_root, reference, monkeypatch):
    plan = _plan(tmp_path)
    from reptile_lib import results

    real_replace = os.replace

    def crash(src, dst):
        if str(dst).endswith("tiny.json"):
            raise KeyboardInterrupt("killed during the results write")
        return real_replace(src, dst)

    monkeypatch.setattr(results.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        _run(plan, omniglot_root)
    assert not R.results_path(plan, "tiny").exists()
    assert not [p for p in R.results_path(plan, "tiny").parent.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(results.os, "replace", real_replace)
    assert _run(plan, omniglot_root) == 0          # the unit is done: only the results are written
    assert _same(_numbers(plan), reference)


def _wait(path: Path, ok, proc, timeout=240.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"the queue ended early (exit {proc.returncode})")
        try:
            if path.exists() and ok():
                return
        except Exception:   # a file being replaced right now: look again
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {path}")


def test_sigterm_and_sigkill_of_the_command_resume_bit_for_bit(tmp_path, omniglot_root, reference):
    """The real command: SIGTERM during training saves and exits 0; SIGKILL during evaluation loses
    at most the chunk in progress; the third run finishes with the uninterrupted run's numbers."""
    plan = _plan(tmp_path)
    unit = plan.units[0]
    cmd = [sys.executable, "-m", "reptile_lib.cli", "reproduce", "--plan", str(tmp_path / "runs" / "plan.toml"),
           "--device", "cpu", "--data-root", omniglot_root, "--no-rebuild", "--quiet", "--checkpoint-minutes", "0",
           "--threads", str(torch.get_num_threads())]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    ckpt, ev = R.checkpoint_path(plan, unit), R.eval_path(plan, unit)

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait(ckpt, lambda: torch.load(ckpt, weights_only=True)["iteration"] >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0 and "saving and stopping" in out, out
    assert 3 <= R.unit_state(plan, unit)["iteration"] < 12

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait(ev, lambda: True, proc)
    proc.kill()
    proc.wait(timeout=60)
    assert not R.results_path(plan, "tiny").exists()

    # the killed run logged no line; its journal says what it saved, and the status counts it
    assert len(R._logged(plan, unit)) == 1 and R.journal_path(plan, unit).exists()
    assert R.segments(plan, unit)[-1]["open"] and R.segments(plan, unit)[-1]["iteration"] == 12

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _same(_numbers(plan), reference)
    # three segments, the killed one logged by the next run: together they account for every
    # meta-iteration and evaluation task kept, each once
    segs = R.segments(plan, unit)
    assert [bool(s.get("interrupted")) for s in segs] == [False, True, False], segs
    assert sum(s["iterations"] for s in segs) == 12 and segs[1]["iteration"] == 12
    assert sum(s.get("eval_tasks", 0) for s in segs) == 300 and segs[1]["eval_tasks"] > 0
    assert all(s["train_s"] >= 0 and s.get("eval_s", 0) >= 0 for s in segs)
    assert len({s["id"] for s in segs}) == 3 and not R.journal_path(plan, unit).exists()
    doc = json.loads(R.results_path(plan, "tiny").read_text())
    assert [s["id"] for s in doc["provenance"]["segments"]["0"]] == [s["id"] for s in segs]


def test_a_segment_killed_after_its_line_was_logged_is_logged_once(tmp_path, omniglot_root):
    """Killed between appending its line and removing its journal: the next run removes the journal
    without logging the segment twice."""
    plan = _plan(tmp_path)
    unit = plan.units[0]
    calls = iter(range(10 ** 6))
    assert not R.run_unit(plan, unit, data_root=omniglot_root, stop=lambda: next(calls) >= 2, rebuild=False)
    (line,) = R._logged(plan, unit)
    R._open_journal(plan, unit, {k: v for k, v in line.items() if k not in ("iterations", "iteration", "train_s")})
    assert R.segments(plan, unit) == [line]   # the journal of a logged segment is not counted again
    R._close_journal(plan, unit)
    assert R._logged(plan, unit) == [line] and not R.journal_path(plan, unit).exists()


def test_a_claimed_unit_is_skipped_and_a_dead_holder_frees_it(tmp_path):
    plan = _plan(tmp_path)
    with R.claim(plan, "tiny-seed0") as first:
        with R.claim(plan, "tiny-seed0") as second:
            assert first and not second
    with R.claim(plan, "tiny-seed0") as again:
        assert again
    # a process holding the lock dies without letting go: the OS frees it
    code = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
            f"from reptile_lib import reproduce as R; plan = R.load_plan({str(tmp_path / 'runs' / 'plan.toml')!r}); "
            f"cm = R.claim(plan, 'tiny-seed0'); print(cm.__enter__(), flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "True"
    with R.claim(plan, "tiny-seed0") as mine:
        assert not mine
    holder.kill()
    holder.wait(timeout=30)
    with R.claim(plan, "tiny-seed0") as mine:
        assert mine


def test_two_workers_share_the_plan_and_compute_what_one_would(tmp_path, omniglot_root, reference):
    """``--workers 2``: a unit never runs in two workers at once; a SIGTERM to the command reaches both
    workers, which save and stop; the next run finishes with the single-process numbers."""
    plan = _plan(tmp_path, PLAN.replace('units = ["tiny/0"]', 'units = ["tiny/0", "tiny/1"]'))
    cmd = [sys.executable, "-m", "reptile_lib.cli", "reproduce", "--plan", str(tmp_path / "runs" / "plan.toml"),
           "--device", "cpu", "--data-root", omniglot_root, "--no-rebuild", "--quiet", "--checkpoint-minutes", "0",
           "--threads", str(torch.get_num_threads()), "--workers", "2"]   # the reference's threads: the same kernels
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    ev1 = R.eval_path(plan, plan.units[1])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait(ev1, lambda: True, proc)          # the second worker is evaluating tiny/1
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, out
    assert R.unit_state(plan, plan.units[1])["phase"] == "evaluating"
    # the worker evaluating tiny/1 saved and stopped; which worker that is, and whether the other had
    # already finished tiny/0 (one-call kernels make tiny units take seconds), is a race
    assert "saving and stopping" in out + (tmp_path / "runs" / "reproduce.worker1.log").read_text()

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 unit(s) not done" in r.stdout
    metrics, params, scores = _numbers(plan)              # tiny/0, as computed alone
    assert all(torch.equal(params[k], reference[1][k]) for k in params)
    assert all(torch.equal(scores[k], reference[2][k]) for k in scores)
    assert all(m["per_seed"][0] == reference[0][name]["per_seed"][0] for name, m in metrics.items())
    segs = {u.id: R.segments(plan, u) for u in plan.units}
    for unit_segments in segs.values():   # which worker resumes a unit is a race; two at once never
        spans = sorted((s["started"], s["ended"]) for s in unit_segments)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    assert {s["worker"] for ss in segs.values() for s in ss} == {0, 1}, segs   # both workers used
    doc = json.loads(R.results_path(plan, "tiny").read_text())
    assert doc["provenance"]["seeds"] == [0, 1]          # both seeds pooled, whichever worker finished last


def test_a_unit_started_but_not_yet_checkpointed_is_not_shown_as_pending(tmp_path):
    """Between a segment's start and its first checkpoint only the journal says the unit has begun."""
    plan = _plan(tmp_path)
    unit = plan.units[0]
    assert [r["state"] for r in R.status_rows(plan)] == ["pending"]
    R._open_journal(plan, unit, {"id": "x", "started": "2026-01-01T00:00:00+0000"})
    assert [r["state"] for r in R.status_rows(plan)] == ["started: no checkpoint yet"]
    assert R.unit_state(plan, unit)["phase"] == "pending"   # what a worker resumes from is unchanged


def test_a_signal_while_the_workers_start_stops_them_all_without_a_failure(tmp_path, omniglot_root):
    """SIGTERM right after the second worker is started, before it can have installed its own handler: the
    signal passed on ends it, which is a stop, not a failure; nothing is left half-written."""
    plan = _plan(tmp_path, PLAN.replace('units = ["tiny/0"]', 'units = ["tiny/0", "tiny/1"]'))
    cmd = [sys.executable, "-m", "reptile_lib.cli", "reproduce", "--plan", str(tmp_path / "runs" / "plan.toml"),
           "--device", "cpu", "--data-root", omniglot_root, "--no-rebuild", "--quiet", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait(tmp_path / "runs" / "reproduce.worker1.log", lambda: True, proc)   # worker 1 is being started
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, out
    assert "failed" not in out and "2 unit(s) not done" in out
    leftovers = [p.name for p in (tmp_path / "runs").rglob("*") if p.suffix == ".tmp" or p.name.startswith("tmp")]
    assert leftovers == []


PAIRED = """
units = ["released/0", "mean/0"]
[experiment.released]
config = "omniglot_5way"
set = { adam_carry = "sequential", batched = false, meta_iters = 6 }
evals = [{ shots = 1, eval_batch = 5, eval_iters = 3 }]
evaluate = { test = 200 }
[experiment.mean]
config = "omniglot_5way"
set = { adam_carry = "mean", batched = true, meta_iters = 6 }
evals = [{ shots = 1, eval_batch = 5, eval_iters = 3 }]
evaluate = { test = 200 }
"""


def test_two_carries_of_one_seed_are_compared_task_by_task(tmp_path, omniglot_root):
    """The released order against the mean carry, same seed: the same 200 tasks, so per-task differences."""
    plan = _plan(tmp_path, PAIRED)
    released, mean = plan.units
    assert R.paired_by_task(plan, released, mean) is None          # nothing finished yet
    names = {"released": "released", "mean": "mean"}
    assert report.carry_markdown(plan, **names) == ("Not measured yet: it needs both runs finished. In the queue of "
                                                    "paper-scale runs, the released-order run of seed 0 is pending "
                                                    "and the mean-carry run of seed 0 is pending.\n")
    _run(plan, omniglot_root)
    rows = R.paired_by_task(plan, released, mean)
    # what the fidelity page and the Omniglot chapter show: a row per evaluation, in points
    table = report.carry_markdown(plan, **names).splitlines()
    assert table[0] == "| " + " | ".join(report.CARRY_COLUMNS.values()) + " |" and len(table) == 2 + len(rows) + 2
    assert table[2].startswith(f"| seed 0, {report.metric_words(rows[0]['evaluation'])} | 200 | {100 * rows[0]['a']:.2f} |")
    # under the table, what it says (one released seed: no seed range); the paper's ± of the two 1-shot 5-way cells
    assert table[-1].startswith("On the 2 test evaluations the mean carry scores ") and "seeds" not in table[-1].split(".")[1]
    assert "The paper's ± for these cells is 0.04 to 0.09" in table[-1] and table[-1].endswith("(one mean-carry run, seed 0).")
    assert table[2].endswith(f"| {100 * rows[0]['difference']:+.2f} ± {100 * rows[0]['ci95']:.2f} |")
    ea, eb = R.load_eval_state(plan, released), R.load_eval_state(plan, mean)
    assert {r["evaluation"] for r in rows} == set(ea["scores"]) and len(rows) == 2   # both protocols
    for r in rows:
        x, y = ea["scores"][r["evaluation"]].double() / 5, eb["scores"][r["evaluation"]].double() / 5
        assert r["tasks"] == 200 and abs(r["difference"] - float((y - x).mean())) < 1e-12
        assert abs(r["a"] - float(x.mean())) < 1e-12 and abs(r["b"] - float(y.mean())) < 1e-12
        assert 0 < r["ci95"] < 0.2 and r["same_task_share"] < 1     # two different trainings
    self_rows = R.paired_by_task(plan, released, released)
    assert all(r["difference"] == 0 and r["same_task_share"] == 1 for r in self_rows)
    other_seed = R.Unit(released.experiment, 1)
    with pytest.raises(ValueError, match="same seed"):
        R.paired_by_task(plan, released, other_seed)


def test_the_performance_page_summarises_each_units_segments(tmp_path):
    """One row per unit that ran: segments and commits, days, iterations reached, hours, speed on the path now."""
    plan = _plan(tmp_path)
    unit = plan.units[0]
    assert R.unit_rows(plan) == []
    slow = {"train_path": "algorithms.meta_step", "kernels": "torch", "commit": "aaa"}
    fast = {"train_path": "engine.sequential.SequentialMetaStep", "kernels": "native", "commit": "bbb"}
    for started, path, its, reached, train_s, extra in [
            ("2026-01-01T10:00:00+0000", slow, 4, 4, 40.0, {}),
            ("2026-01-02T10:00:00+0000", fast, 6, 10, 6.0, {}),
            ("2026-01-02T12:00:00+0000", fast, 2, 12, 2.0, {"eval_tasks": 300, "eval_s": 150.0})]:
        R._log_segment(plan, unit, {"started": started, **path, "iterations": its, "iteration": reached,
                                    "train_s": train_s, **extra})
    [row] = R.unit_rows(plan)
    assert row["unit"] == unit.id and row["segments"] == "3 (2 commits)"
    assert row["days"] == "2026-01-01 to 2026-01-02" and row["iterations"] == f"12 of {unit.config.meta_iters:,}"
    assert row["training hours"] == round(48.0 / 3600, 1) and row["evaluation"] == "300 tasks, 0.50 s each"
    # the path it trains with now only: 8 s over 8 iterations, not the slow first segment's 10 s per iteration
    assert row["ms / iteration"] == 1000.0
    assert len(R.segment_rows(plan)) == 3
    R._log_segment(plan, unit, {"started": "2026-01-03T10:00:00+0000", **fast, "iterations": 0, "iteration": 12,
                                "train_s": 0.0, "interrupted": True})
    assert R.segment_rows(plan)[-1]["iterations"] == "12 → 12 (killed; counted to its last save)"


def test_pages_date_the_queue_state_they_quote_by_its_newest_save(tmp_path):
    """queue_time: the newest segment end in UTC, a running segment's last checkpoint save included."""
    plan = _plan(tmp_path)
    unit = plan.units[0]
    assert R.queue_time(plan) is None
    R._log_segment(plan, unit, {"id": "a", "started": "2026-01-01T10:00:00+0000", "ended": "2026-01-01T12:30:00+0000"})
    R._log_segment(plan, unit, {"id": "b", "started": "2026-01-02T09:00:00+0200", "ended": "2026-01-02T11:05:59+0200"})
    assert R.queue_time(plan) == "2026-01-02 09:05 UTC"
    # a segment in progress: its record is counted to the checkpoint's last save
    ckpt = R.checkpoint_path(plan, unit)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"iteration": 4, "wall_time_s": 1.0}, ckpt)
    R._open_journal(plan, unit, {"id": "c", "started": "2026-01-03T08:00:00+0000"})
    saved = datetime.datetime(2026, 1, 3, 8, 20, tzinfo=datetime.timezone.utc).timestamp()
    os.utime(ckpt, (saved, saved))
    assert R.queue_time(plan) == "2026-01-03 08:20 UTC"
    queue = [{"unit": unit.id, "state": "training: 4 of 12"}]
    assert report.run_state("tiny", None, queue, as_of="2026-01-03 08:20 UTC") == \
        "not finished yet (queue: seed 0 training: 4 of 12, as of 2026-01-03 08:20 UTC)"
    assert "as of" not in report.run_state("tiny", None, queue)


CIFAR_PLAN = """
units = ["cf/0"]
[experiment.cf]
config = "cifar_fs_5way"
set = { adam_carry = "sequential", batched = false, meta_iters = 4 }
evals = [{ shots = 1, eval_batch = 5, eval_iters = 2 }, { shots = 5, eval_batch = 15, eval_iters = 2 }]
evaluate = { test = 6 }
curve = { split = "val", every = 2, tasks = 3 }
"""


def test_a_cifar_fs_unit_writes_what_its_chapter_shows(tmp_path):
    """A CIFAR-FS unit of the queue, end to end on the real data at a tiny size: the results file it writes
    fills the chapter's four cells of ours, its validation-class curve and its provenance line."""
    import matplotlib

    matplotlib.use("Agg")
    from reptile_lib import book, report
    from reptile_lib.plots import experiments as plots
    from reptile_lib.results import load_results

    root = str(real_folder("cifar_fs", ("classes.csv", "images")).parent)
    plan = _plan(tmp_path, CIFAR_PLAN)
    assert R.run_unit(plan, plan.units[0], data_root=root, rebuild=False)
    doc = load_results(R.results_path(plan, "cf"), plan.experiments["cf"].config, "paper")
    assert doc["provenance"]["finished"] and doc["extra"]["data"]["test"]["name"] == "cifar_fs/test"
    ours = [r for r in report.cifar_fs_rows(doc) if r["algorithm"].endswith("(ours)")]
    cells = [r[s] for r in ours for s in ("1-shot 5-way", "5-shot 5-way")]
    assert len(cells) == 4 and all(c.endswith("(1 seed)") and "±" in c for c in cells), cells
    assert [q["iteration"] for q in doc["extra"]["history"]["0"] if "val_nontransductive" in q] == [1, 2, 4]
    ax = plots.learning_curves(doc, title="CIFAR-FS")
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == ["validation classes"]
    assert book.provenance_line(doc).startswith("paper-scale run on cpu")


def test_reptile_evaluate_rederives_the_queues_numbers_from_its_weights(tmp_path, omniglot_root, capsys):
    """`reptile evaluate --weights` on a unit's weights, with no --config (the file holds it): the same
    tasks as the queue's evaluation of that seed (same seed, split, shots and chunks of 100), the same
    per-task results, so the first 100 tasks' accuracies equal the queue's to the digit."""
    from reptile_lib import cli

    plan = _plan(tmp_path)
    unit = plan.units[0]
    assert _run(plan, omniglot_root) == 0
    rc = cli.main(["evaluate", "--weights", str(R.weights_path(plan, unit)), "--tasks", "100",
                   "--data-root", omniglot_root, "--seed", str(unit.seed)])
    assert rc == 0
    printed = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    scores = R.load_eval_state(plan, unit)["scores"]
    expected = {name: f"{100 * float((v[:100].double() / 5).mean()):.2f}" for name, v in scores.items()}
    assert printed == expected
    # bad input: one line, no traceback, exit 2
    assert cli.main(["evaluate", "--weights", str(tmp_path / "none.pt")]) == 2
    assert cli.main(["evaluate", "--weights", str(R.weights_path(plan, unit)), "--set", "meta_iters=3"]) == 2
    err = capsys.readouterr().err
    assert "no weights file" in err and "--set changes the config" in err


def test_a_journal_outlives_a_deleted_checkpoint_without_negative_counts(tmp_path, omniglot_root):
    """A stale checkpoint deleted by hand and the unit started afresh: the journal counts from zero."""
    plan = _plan(tmp_path)
    unit = plan.units[0]
    calls = iter(range(10 ** 6))
    R.run_unit(plan, unit, data_root=omniglot_root, stop=lambda: next(calls) >= 6, rebuild=False)
    R._open_journal(plan, unit, {"id": "x", "started": "2026-01-01T00:00:00+0000"})   # from iteration 7
    R.checkpoint_path(plan, unit).unlink()
    calls = iter(range(10 ** 6))
    R.train_unit(plan, unit, R._splits(unit, omniglot_root), "cpu", lambda: next(calls) >= 2, None, False)
    live = R.segments(plan, unit)[-1]
    assert live["open"] and live["iteration"] == live["iterations"] == 3 and live["train_s"] >= 0
