"""The paper-scale queue: the units of ``runs/plan.toml`` trained and evaluated in order, resumably.

A unit is one seed of one experiment (a config of ``configs`` with some fields changed). For each
unit in turn, ``reproduce`` trains (checkpointing every few minutes and on SIGTERM / SIGINT; a kill
loses at most that much and never a checkpoint, every file being written then renamed), evaluates in
chunks that are saved as they finish (one adaptation scores both protocols), then writes
``results/<experiment>.json`` from the finished seeds, the weights, and re-executes the chapter that
shows them. Everything a later run (on any machine) needs to continue lives under ``runs/`` and is committed:

- ``runs/checkpoints/<unit>.pt``       the training state (:func:`train.save_checkpoint`)
- ``runs/checkpoints/<unit>.eval.pt``  the evaluation so far: per-task scores, the task generators
- ``runs/logs/<unit>.jsonl``           one line per segment: device, commit, iterations, wall time
- ``runs/logs/<unit>.open.json``       the segment in progress: a killed one is logged by the next run

Under ``torchrun`` the ranks share the units out, or split each meta-batch (:mod:`reptile_lib.distributed`).

Resuming is bit for bit: the same commands on the same kind of machine give the same numbers
whether a run was stopped ten times or never (``tests/test_reproduce.py`` kills it to check).
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from .configs import Config, get_config

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_SECONDS = 300.0   # a kill loses at most five minutes of training
EVAL_CHUNK = 100             # evaluation tasks adapted at once (and the grain of the saved progress)


# ---------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Experiment:
    """An ``[experiment.NAME]`` table of the plan."""

    name: str
    config: Config
    evaluate: tuple[tuple[str, int], ...]      # (split, tasks) for every eval setting of the config
    curve: tuple[str, int, int] | None         # (split, every, tasks) of the learning curve
    chapter: str | None
    results: str = ""                          # results/<results>.json ("": the experiment's name)


@dataclass(frozen=True)
class Unit:
    experiment: Experiment
    seed: int

    @property
    def id(self) -> str:
        return f"{self.experiment.name}-seed{self.seed}"

    @property
    def config(self) -> Config:
        return self.experiment.config


@dataclass(frozen=True)
class Plan:
    units: tuple[Unit, ...]
    experiments: dict[str, Experiment]
    root: Path                                  # the folder holding checkpoints/ and logs/
    results: Path                               # the folder of results/<experiment>.json

    def of(self, experiment: str) -> list[Unit]:
        return [u for u in self.units if u.experiment.name == experiment]


class PlanError(ValueError):
    """The plan file is malformed; the message says where and what to write instead."""


def _experiment(name: str, table: dict, where: str) -> Experiment:
    from .cli import apply_overrides

    from .configs import EvalSpec, config_by_name

    unknown = set(table) - {"config", "set", "evals", "evaluate", "curve", "chapter", "results"}
    if unknown or "config" not in table:
        raise PlanError(f"{where}: [experiment.{name}] needs config = \"NAME\" and may have set, evals, evaluate, "
                        f"curve, chapter, results (unknown: {sorted(unknown)})")
    if "/" in name:
        raise PlanError(f"{where}: [experiment.{name}]: an experiment name cannot contain '/'")
    try:
        config = config_by_name(table["config"])
        config = apply_overrides(config, [f"{k}={_text(v)}" for k, v in table.get("set", {}).items()])
        if "evals" in table:  # e.g. evals = [{ shots = 1, eval_batch = 5, eval_iters = 50 }]
            config = dataclasses.replace(config, evals=tuple(EvalSpec(**e) for e in table["evals"]))
    except (KeyError, ValueError, TypeError) as e:
        raise PlanError(f"{where}: [experiment.{name}]: {e}") from None
    evaluate = tuple((str(k), int(v)) for k, v in table.get("evaluate", {"test": config.eval_samples}).items())
    curve = table.get("curve")
    if curve is not None:
        if set(curve) != {"split", "every", "tasks"}:
            raise PlanError(f"{where}: [experiment.{name}] curve = {{ split = \"test\", every = 2000, tasks = 200 }}")
        config = dataclasses.replace(config, eval_interval=int(curve["every"]), eval_interval_tasks=int(curve["tasks"]))
        curve = (str(curve["split"]), int(curve["every"]), int(curve["tasks"]))
    config = dataclasses.replace(config, eval_samples=max(n for _, n in evaluate) if evaluate else config.eval_samples)
    return Experiment(name, config, evaluate, curve, table.get("chapter"), str(table.get("results", name)))


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


# Figures whose runs the plan can generate with a [sweep.NAME] table (Figure 3's ten curves are listed one
# experiment each, with names of their own).
SWEEPS = ("figure4",)


def sweep_experiment_name(config_name: str) -> str:
    """The experiment a sweep generates for one run: ``figure4[fomaml-shared;inner_iters=6]`` ->
    ``figure4_fomaml-shared_inner_iters=6`` (``figure4[reptile;]`` -> ``figure4_reptile``)."""
    figure, _, rest = config_name.partition("[")
    return "_".join([figure, *(part for part in rest.rstrip("]").split(";") if part)]).replace(",", "_")


def _sweep(name: str, table: dict, where: str) -> dict[str, Experiment]:
    """A ``[sweep.NAME]`` table: one experiment per run of the figure's sweep (``sweeps.figure_points``),
    with the run's own evaluation and learning curve, each writing ``results/NAME/<run>.json``."""
    from .sweeps import MONITOR_SPLIT, figure_points, unique_configs

    if name not in SWEEPS:
        raise PlanError(f"{where}: [sweep.{name}]: a sweep is one of {list(SWEEPS)}")
    unknown = set(table) - {"chapter"}
    if unknown:
        raise PlanError(f"{where}: [sweep.{name}] may only have chapter = \"NAME\" (unknown: {sorted(unknown)}): the "
                        "runs, their evaluation and curves are the sweep's own (reptile_lib.sweeps)")
    out = {}
    for c in unique_configs(figure_points(name, "paper")):
        exp = sweep_experiment_name(c.name)
        out[exp] = Experiment(exp, c, (("test", c.eval_samples),),
                              (MONITOR_SPLIT[name], c.eval_interval, c.eval_interval_tasks), table.get("chapter"),
                              f"{name}/{exp.removeprefix(name + '_')}")
    return out


def load_plan(path: str | os.PathLike | None = None, results: str | os.PathLike | None = None) -> Plan:
    """Read a plan file (default ``runs/plan.toml``); its folder also holds the checkpoints and logs, and
    ``results/`` beside that folder the results (unless ``results`` says otherwise).

    A unit ``"EXPERIMENT/SEED"`` is one run; ``"SWEEP/SEED"`` (a ``[sweep.SWEEP]`` table) stands for every
    run of that sweep at that seed, in the sweep's order."""
    path = Path(path) if path is not None else ROOT / "runs" / "plan.toml"
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"no plan file at {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise PlanError(f"{path}: {e}") from None
    experiments = {name: _experiment(name, t, str(path)) for name, t in doc.get("experiment", {}).items()}
    swept = {name: _sweep(name, t, str(path)) for name, t in doc.get("sweep", {}).items()}
    for generated in swept.values():
        clash = set(generated) & set(experiments)
        if clash:
            raise PlanError(f"{path}: experiments {sorted(clash)} are both listed and generated by a sweep")
        experiments.update(generated)
    units = []
    for entry in doc.get("units", []):
        name, sep, seed = str(entry).partition("/")
        if not sep or not seed.isdigit() or (name not in experiments and name not in swept):
            raise PlanError(f"{path}: unit {entry!r} must be \"EXPERIMENT/SEED\" or \"SWEEP/SEED\" with EXPERIMENT one "
                            f"of {sorted(set(experiments) - {e for g in swept.values() for e in g})} and SWEEP "
                            f"one of {sorted(swept)}")
        runs = list(swept[name].values()) if name in swept else [experiments[name]]
        units.extend(Unit(e, int(seed)) for e in runs)
    if len({u.id for u in units}) != len(units):
        raise PlanError(f"{path}: a unit is listed twice")
    return Plan(tuple(units), experiments, path.parent,
                Path(results) if results is not None else path.resolve().parent.parent / "results")


def experiment_config(name: str, plan: Plan | None = None) -> Config:
    """The config an experiment of the plan trains (what a chapter loads its results with)."""
    plan = plan or load_plan()
    if name not in plan.experiments:
        raise KeyError(f"no experiment {name!r} in the plan: {sorted(plan.experiments)}")
    return plan.experiments[name].config


# ---------------------------------------------------------------- files of a unit
def checkpoint_path(plan: Plan, unit: Unit) -> Path:
    return plan.root / "checkpoints" / f"{unit.id}.pt"


def eval_path(plan: Plan, unit: Unit) -> Path:
    return plan.root / "checkpoints" / f"{unit.id}.eval.pt"


def log_path(plan: Plan, unit: Unit) -> Path:
    return plan.root / "logs" / f"{unit.id}.jsonl"


def results_path(plan: Plan, experiment: str) -> Path:
    return plan.results / f"{plan.experiments[experiment].results or experiment}.json"


def weights_path(plan: Plan, unit: Unit) -> Path:
    return plan.results / "weights" / f"{unit.id}.pt"


def journal_path(plan: Plan, unit: Unit) -> Path:
    """``runs/logs/<unit>.open.json``: the segment in progress (see :func:`segments`)."""
    return plan.root / "logs" / f"{unit.id}.open.json"


def _logged(plan: Plan, unit: Unit) -> list[dict]:
    path = log_path(plan, unit)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def segments(plan: Plan, unit: Unit) -> list[dict]:
    """The unit's segments: the lines of its log, then the segment in progress or cut short by a kill
    (``"open": true``), counted up to its last checkpoint and evaluation chunk (:func:`_open_segment`)."""
    logged = _logged(plan, unit)
    live = _open_segment(plan, unit)
    if live is not None and live["id"] not in {s.get("id") for s in logged}:
        logged.append(live)
    return logged


def _progress(plan: Plan, unit: Unit) -> dict:
    """What the saved files hold: meta-iteration and training wall time (checkpoint), evaluation tasks
    and their wall time (evaluation state)."""
    out = {"iteration": 0, "wall_time_s": 0.0, "tasks_done": 0, "eval_s": 0.0}
    ckpt = checkpoint_path(plan, unit)
    if ckpt.exists():
        blob = torch.load(ckpt, map_location="cpu", weights_only=True)
        out.update(iteration=int(blob["iteration"]), wall_time_s=float(blob.get("wall_time_s", 0.0)))
    ev = eval_path(plan, unit)
    if ev.exists():
        blob = torch.load(ev, map_location="cpu", weights_only=True)
        out.update(tasks_done=_tasks_done(blob), eval_s=float(blob.get("wall_s", 0.0)))
    return out


def _open_journal(plan: Plan, unit: Unit, record: dict) -> None:
    """Note a segment's start (its record so far and where the saved files stood), written then renamed:
    a segment killed before it logs its line is still counted (:func:`_open_segment`)."""
    from .results import atomic_write_text

    atomic_write_text(journal_path(plan, unit), json.dumps({"record": record, "from": _progress(plan, unit)}))


def _open_segment(plan: Plan, unit: Unit) -> dict | None:
    """The journalled segment's record as the saved files have it now (None if no segment is open):
    iterations and training seconds from the checkpoint, evaluation tasks and seconds from the
    evaluation state. What a kill lost after the last save is not counted: it is trained again."""
    path = journal_path(plan, unit)
    try:
        journal = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    start, now = dict(journal["from"]), _progress(plan, unit)
    if now["iteration"] < start["iteration"]:   # the checkpoint was deleted since: the segment began afresh
        start.update(iteration=0, wall_time_s=0.0)
    if now["tasks_done"] < start["tasks_done"]:   # so was the evaluation
        start.update(tasks_done=0, eval_s=0.0)
    record = {**journal["record"], "open": True}
    record.update(iterations=now["iteration"] - start["iteration"], iteration=now["iteration"],
                  train_s=round(now["wall_time_s"] - start["wall_time_s"], 1))
    if now["tasks_done"] > start["tasks_done"]:
        record.update(eval_tasks=now["tasks_done"] - start["tasks_done"], eval_s=round(now["eval_s"] - start["eval_s"], 1))
    saved = [p.stat().st_mtime for p in (checkpoint_path(plan, unit), eval_path(plan, unit)) if p.exists()]
    if saved:
        record["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(max(saved)))
    return record


def _close_journal(plan: Plan, unit: Unit) -> None:
    """A journal left by a killed segment becomes a log line marked ``"interrupted": true``; called by
    the process that now holds the unit, before it starts its own segment."""
    record = _open_segment(plan, unit)
    if record is None:
        return
    if record["id"] not in {s.get("id") for s in _logged(plan, unit)}:   # not already logged before the kill
        record.pop("open")
        _log_segment(plan, unit, {**record, "interrupted": True})
    journal_path(plan, unit).unlink(missing_ok=True)


def _log_segment(plan: Plan, unit: Unit, record: dict) -> None:
    """Append one segment line, flushed to disk."""
    path = log_path(plan, unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------- state
def _eval_tasks(unit: Unit) -> list[tuple[str, Any, int]]:
    """(split, eval spec, tasks) in the order they are evaluated."""
    return [(split, spec, n) for split, n in unit.experiment.evaluate for spec in unit.config.evals]


def load_eval_state(plan: Plan, unit: Unit) -> dict | None:
    path = eval_path(plan, unit)
    if not path.exists():
        return None
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("config_hash") != unit.config.hash():
        raise ValueError(f"{path} was written for another config of {unit.id}; delete it to evaluate again")
    return blob


def _tasks_done(ev: dict) -> int:
    """Evaluation tasks an evaluation state has scored (each task scores two protocols)."""
    return sum(len(v) for v in ev["scores"].values()) // 2


def unit_state(plan: Plan, unit: Unit) -> dict:
    """Where a unit stands: ``{'phase': 'pending'|'training'|'evaluating'|'done', ...}``."""
    ev = load_eval_state(plan, unit)
    total = sum(n for _, _, n in _eval_tasks(unit))
    if ev is not None:
        done = _tasks_done(ev)
        return {"phase": "done" if ev.get("finished") else "evaluating", "iteration": unit.config.meta_iters,
                "tasks_done": done, "tasks_total": total}
    ckpt = checkpoint_path(plan, unit)
    if not ckpt.exists():
        return {"phase": "pending", "iteration": 0, "tasks_done": 0, "tasks_total": total}
    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    if blob.get("config_hash") != unit.config.hash():
        return {"phase": "stale", "iteration": blob.get("iteration", 0), "tasks_done": 0, "tasks_total": total}
    it = int(blob["iteration"])
    phase = "evaluating" if it >= unit.config.meta_iters else "training"
    return {"phase": phase, "iteration": it, "tasks_done": 0, "tasks_total": total,
            "ms_per_iter": 1000 * blob["wall_time_s"] / it if it else None}


def enough_iterations(config: Config) -> int:
    """Meta-iterations a speed must be measured over to count: the first learning-curve point is paid at
    iteration 1, so a unit one iteration in would otherwise read as hundreds of hours from done."""
    return min(1000, max(1, config.meta_iters // 20))


# Fields that change what a run learns but not what a meta-iteration or an evaluation task costs: Figure 3's
# curves differ only in how the same k inner steps are weighted, the Adam carry only in which state a task
# starts from.
_COST_FREE = {"name": "", "meta_step": 0.0, "meta_step_final": 0.0, "foml": False, "foml_tail": None,
              "combine": None, "combine_average": False, "adam_carry": "sequential", "batched": False, "notes": ""}


def _twins(plan: Plan, unit: Unit, key: Callable[[Unit], Any]) -> list[Unit]:
    """``unit``, then its experiment's other units, then the other experiments' units with the same ``key``."""
    mine = [u for u in plan.of(unit.experiment.name) if u != unit]
    same = [u for u in plan.units if u.experiment.name != unit.experiment.name and key(u) == key(unit)]
    return [unit, *mine, *same]


def _training_twins(plan: Plan, unit: Unit) -> list[Unit]:
    """Units whose meta-iterations cost what ``unit``'s do (:func:`_twins`): same config up to the inner
    steps' weights, the outer step and the Adam carry; same learning curve."""
    return _twins(plan, unit, lambda u: (dataclasses.replace(u.config, **_COST_FREE), u.experiment.curve))


def _eval_twins(plan: Plan, unit: Unit) -> list[Unit]:
    """Units whose evaluation tasks cost what ``unit``'s do (:func:`_twins`): same network, data, ways and
    eval settings."""
    def key(u: Unit) -> tuple:
        c = u.config
        return (c.dataset, c.model, c.classes, c.image_size, c.evals, c.loss_reduction, c.sgd, c.learning_rate,
                u.experiment.evaluate)
    return _twins(plan, unit, key)


def speed_window(config: Config) -> int:
    """Meta-iterations the speed is measured over: the newest segments back to this many (a tenth of the
    run). Recent, because kernels get faster and the load on the machine changes from one start to the next;
    not only the newest, because a short segment may have shared the CPU with a benchmark."""
    return max(enough_iterations(config), config.meta_iters // 10)


def _measured_speed(plan: Plan, unit: Unit) -> tuple[str, float] | None:
    """(when its latest segment started, ms per iteration over its newest segments on that segment's path
    and kernels, back to :func:`speed_window` iterations), once they add up to :func:`enough_iterations`;
    else None."""
    segs = [s for s in segments(plan, unit) if s.get("iterations", 0) > 0 and s.get("train_s")]
    if not segs:
        return None
    path, window = _path_and_kernels(segs[-1]), speed_window(unit.config)
    recent, its = [], 0
    for s in reversed([s for s in segs if _path_and_kernels(s) == path]):
        if its >= window:
            break
        recent.append(s)
        its += s["iterations"]
    if its < enough_iterations(unit.config):
        return None
    return segs[-1].get("started", ""), 1000 * sum(s["train_s"] for s in recent) / its


def ms_per_iteration(plan: Plan, unit: Unit) -> float | None:
    """Measured training speed, curve points included: the unit's own segments on the path it trains with
    now; before it has run long enough, the most recently measured unit that costs the same (its
    experiment's other seeds, :func:`_training_twins`): the machine and kernels it will most likely run on."""
    own, *others = _training_twins(plan, unit)
    mine = _measured_speed(plan, own)
    if mine is not None:
        return mine[1]
    measured = [m for m in (_measured_speed(plan, u) for u in others) if m is not None]
    return max(measured)[1] if measured else None


def _path_and_kernels(segment: dict) -> tuple[str, str]:
    """A segment's training path and kernels (segments recorded before the kernels were: PyTorch's)."""
    return segment.get("train_path", ""), segment.get("kernels", "torch")


def queue_time(plan: Plan) -> str | None:
    """When the queue's saved state was last written ('2026-12-03 11:55 UTC'): the newest end of any unit's
    segment, a running segment's last save included (None before any unit has run). A page that quotes
    where the queue stands says "as of" this: progress read from committed checkpoints is a snapshot."""
    ends = [s["ended"] for unit in plan.units for s in segments(plan, unit) if s.get("ended")]
    if not ends:
        return None
    newest = max(datetime.strptime(e, "%Y-%m-%dT%H:%M:%S%z") for e in ends)
    return newest.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def segment_rows(plan: Plan) -> list[dict]:
    """One row per recorded segment of every unit: when, where, on which path, how fast (the runs' own log)."""
    rows = []
    for unit in plan.units:
        for s in segments(plan, unit):
            its, ev = s.get("iterations", 0), s.get("eval_tasks", 0)
            threads = s.get("threads")
            path = s.get("train_path", "").rsplit(".", 1)[-1] or "not recorded"
            if s.get("kernels") == "native":
                path += ", native kernels"
            rows.append({"unit": unit.id, "device": s.get("device", ""),
                         "started": f"{s.get('started', '')[:16].replace('T', ' ')}, {s.get('commit', '')[:7]}",
                         "path": f"{path} ({threads} thread{'s' if threads != 1 else ''})" if threads else path,
                         "iterations": (f"{s['iteration'] - its:,} → {s['iteration']:,}" + _cut_short(s)
                                        if "iteration" in s else ""),
                         "ms / iteration": round(1000 * s["train_s"] / its, 1) if its and s.get("train_s") else None,
                         "evaluation": f"{ev:,} tasks, {s['eval_s'] / ev:.2f} s each" if ev and s.get("eval_s") else None})
    return rows


def _cut_short(segment: dict) -> str:
    """How a segment's row says it did not end with a stop (nothing if it did)."""
    if segment.get("recovered"):
        return " (killed; logged afterwards from the committed checkpoints)"
    if segment.get("interrupted"):
        return " (killed; counted to its last save)"
    return " (running, or killed: to its last save)" if segment.get("open") else ""


def unit_rows(plan: Plan) -> list[dict]:
    """One row per unit with recorded segments: over how many segments, commits and days it ran, the
    meta-iterations and hours of training, its speed on the path it trains with now, its evaluation."""
    rows = []
    for unit in plan.units:
        segs = segments(plan, unit)
        if not segs:
            continue
        days = sorted({s.get("started", "")[:10] for s in segs if s.get("started")})
        train_s = sum(s.get("train_s", 0.0) for s in segs)
        reached = max((s["iteration"] for s in segs if "iteration" in s), default=0)
        ev = [s for s in segs if s.get("eval_tasks", 0) > 0 and s.get("eval_s")]
        tasks = sum(s["eval_tasks"] for s in ev)
        speed = _measured_speed(plan, unit)
        rows.append({"unit": unit.id,
                     "segments": f"{len(segs)} ({len({s.get('commit') for s in segs})} commits)",
                     "days": days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}" if days else "",
                     "iterations": f"{reached:,} of {unit.config.meta_iters:,}",
                     "training hours": round(train_s / 3600, 1),
                     "ms / iteration": round(speed[1], 1) if speed else None,
                     "evaluation": (f"{tasks:,} tasks, {sum(s['eval_s'] for s in ev) / tasks:.2f} s each"
                                    if tasks else None)})
    return rows


def eval_seconds_per_task(plan: Plan, unit: Unit) -> float | None:
    """Measured seconds per evaluation task: the unit's own; before it has any, the most recently measured
    unit evaluated the same way (:func:`_eval_twins`)."""
    measured = []
    for u in _eval_twins(plan, unit):
        segs = [s for s in segments(plan, u) if s.get("eval_tasks", 0) > 0 and s.get("eval_s")]
        if segs:
            spt = sum(s["eval_s"] for s in segs) / sum(s["eval_tasks"] for s in segs)
            if u == unit:
                return spt
            measured.append((segs[-1].get("started", ""), spt))
    return max(measured)[1] if measured else None


def status_rows(plan: Plan) -> list[dict]:
    """One row per unit: state, measured ms per iteration, hours left (training + evaluation)."""
    rows = []
    for unit in plan.units:
        st = unit_state(plan, unit)
        # the segments' measured speed; else the running segment's, from its checkpoint (curve points included)
        ms = ms_per_iteration(plan, unit)
        if ms is None and st["iteration"] >= enough_iterations(unit.config):
            ms = st.get("ms_per_iter")
        spt = eval_seconds_per_task(plan, unit)
        n = unit.config.meta_iters
        left_train = (n - st["iteration"]) * ms / 1000 if ms is not None else None
        left_eval = (st["tasks_total"] - st["tasks_done"]) * spt if spt is not None else None
        if st["phase"] == "done":
            state, hours = "done", 0.0
        else:
            state = {"pending": "pending", "stale": "stale checkpoint (another config): delete it",
                     "training": f"training: {st['iteration']:,} of {n:,}",
                     "evaluating": f"evaluating: {st['tasks_done']:,} of {st['tasks_total']:,} tasks"}[st["phase"]]
            if st["phase"] == "pending" and journal_path(plan, unit).exists():
                state = "started: no checkpoint yet"   # a segment has begun (or was killed) before its first save
            hours = None if left_train is None else (left_train + (left_eval or 0.0)) / 3600
        rows.append({"unit": unit.id, "state": state, "ms_per_iter": ms,
                     "hours_left": hours, "eval_estimated": left_eval is None and st["phase"] != "done"})
    return rows


def _sweep_of(unit: Unit) -> str | None:
    """The sweep a unit's experiment was generated by (``figure4``), else None."""
    head = unit.experiment.results.partition("/")[0]
    return head if head in SWEEPS and unit.experiment.name.startswith(f"{head}_") else None


def status_text(plan: Plan, every_unit: bool = False) -> str:
    """``reptile status``: one line per unit; the units of a sweep that are all done, or all pending, at
    one seed share one line (``every_unit``: one line each)."""
    rows = status_rows(plan)
    units = list(plan.units)

    def group(i: int) -> Any:   # consecutive units sharing a key share a line (a unique key: a line each)
        sweep, state = _sweep_of(units[i]), rows[i]["state"]
        if every_unit or sweep is None or state not in ("done", "pending"):
            return i
        return sweep, units[i].seed, state

    entries = []   # (unit column, state, ms/iter, hours left, evaluation estimated)
    for key, members in itertools.groupby(range(len(units)), key=group):
        idx = list(members)
        r = rows[idx[0]]
        if len(idx) > 1:
            hours = [rows[i]["hours_left"] for i in idx]
            known = None if any(h is None for h in hours) else sum(hours)
            entries.append((f"{key[0]}/{key[1]} ({len(idx)} runs)", r["state"], None, known, False))
        else:
            entries.append((r["unit"], r["state"], r["ms_per_iter"], r["hours_left"], r["eval_estimated"]))
    total = sum(r["hours_left"] or 0.0 for r in rows)
    lines = []
    w = max([34, *(len(e[0]) for e in entries)])
    lines.append(f"{'unit':{w}} {'state':40} {'ms/iter':>8} {'hours left':>10}")
    for unit, state, ms, hours, estimated in entries:
        ms_text = f"{ms:.1f}" if ms is not None else "—"
        h = "—" if hours is None else f"{hours:.1f}" + ("+eval" if estimated else "")
        lines.append(f"{unit:{w}} {state:40} {ms_text:>8} {h:>10}")
    never = [u for u, r in zip(units, rows) if r["hours_left"] is None and r["state"] == "pending"]
    guess = [estimated_hours(u) for u in never]
    text = f"known hours left: {total:.1f} (measured speeds)"
    if never:
        known = [g for g in guess if g is not None]
        text += (f"; {len(never)} unit(s) never run" + (f", about {sum(known):.1f} h for {len(known)} of them on one "
                                                         "quiet CPU core (the cost model, sweeps.CostModel)" if known else ""))
    lines.append(text)
    return "\n".join(lines)


def estimated_hours(unit: Unit) -> float | None:
    """Hours a unit never run should take on one quiet core of this project's CPU (training, curve,
    evaluation; ``sweeps.CostModel``), None where no CPU cost is fitted (only Omniglot's is)."""
    from .sweeps import estimate

    if unit.config.dataset != "omniglot":
        return None
    e = estimate([unit.config], "cpu", batched=False, eval_tasks=[n for _, n in unit.experiment.evaluate])
    return (e["total_s"] - e["startup_s"]) / 3600


# ---------------------------------------------------------------- workers
def lock_path(plan: Plan, name: str) -> Path:
    """``runs/.locks/<name>.lock`` (not committed: a lock lives as long as the process holding it)."""
    return plan.root / ".locks" / f"{name}.lock"


@contextlib.contextmanager
def claim(plan: Plan, name: str, wait: bool = False) -> Iterator[bool]:
    """Hold the lock ``name`` while the block runs; yields False if another process holds it (``wait``:
    block until it is free). An OS file lock (``flock``): released when its holder exits, however it
    exits, so a killed worker never leaves a unit claimed."""
    import fcntl

    path = lock_path(plan, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------- running
class StopFlag:
    """Set by SIGTERM / SIGINT: the queue finishes the current iteration or chunk, saves and exits."""

    def __init__(self):
        self.set = False

    def __call__(self) -> bool:
        return self.set

    def install(self, also: Callable[[int], None] | None = None) -> None:
        """Catch SIGTERM and SIGINT; ``also(signum)`` is called too (e.g. to pass the signal on to workers)."""
        def handler(signum, frame):
            self.set = True
            print(f"\nreproduce: signal {signum}: saving and stopping", file=sys.stderr, flush=True)
            if also is not None:
                also(signum)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _splits(unit: Unit, data_root: str | None):
    from .data import load_dataset

    return load_dataset(unit.config.dataset, data_root) if data_root else load_dataset(unit.config.dataset)


def train_step(config: Config, device: str) -> Callable | None:
    """The fastest step that computes ``algorithms.meta_step`` for this config (None: that one).

    On a CPU, the paper's two networks run on ``engine.sequential.SequentialMetaStep`` (same results to
    float rounding, same checkpoints) in either Adam carry: the released order
    (``batched=False, adam_carry='sequential'``) and the batched path's mean carry, which on a CPU is
    cheaper one task at a time than under ``vmap``; plain SGD (Figure 3) too. Elsewhere (a GPU, the
    sine regressor) the reference ``meta_step`` runs.
    """
    from .engine.sequential import SequentialMetaStep

    if torch.device(device).type == "cpu" and config.model in ("omniglot", "miniimagenet"):
        return SequentialMetaStep()
    return None


def sequential_kernels(config: Config, device: str) -> str:
    """The kernels the fast sequential path runs this config with here: ``native`` (one C++ call per
    inner step, ``engine.native``) where it builds, else ``torch``."""
    from .engine.sequential import FlatNet, resolve_kernels
    from .models import build_model

    model = build_model(config.model, config.classes, config.image_size)
    return resolve_kernels("auto", FlatNet(model), torch.get_default_dtype(), device)


def eval_scorer(config: Config, device: str) -> Callable | None:
    """The fastest scorer of evaluation tasks for this config (None: ``evaluate.evaluate_tasks``).

    On a CPU, the paper's two networks are scored one task at a time on flat buffers
    (``engine.sequential.task_scorer``): the same tasks, the same per-task results up to float
    rounding, 1.2x (Omniglot 1-shot) to 2.9x (Figure 3) faster than the ``vmap`` reference.
    """
    from .engine.sequential import task_scorer

    if torch.device(device).type == "cpu" and config.model in ("omniglot", "miniimagenet"):
        return task_scorer
    return None


def train_unit(plan: Plan, unit: Unit, splits: dict, device: str, stop: Callable[[], bool],
               deadline: float | None, progress: bool, checkpoint_seconds: float | None = None) -> Any:
    """Train (or resume) a unit; returns its :class:`train.TrainState`."""
    from .train import meta_train

    monitor = None
    if unit.experiment.curve is not None:
        monitor = {unit.experiment.curve[0]: splits[unit.experiment.curve[0]]}
    return meta_train(unit.config, splits["train"], seed=unit.seed, device=device, monitor_splits=monitor,
                      checkpoint=checkpoint_path(plan, unit), checkpoint_every=10 ** 9, resume=True,
                      deadline=deadline, progress=progress, step_fn=train_step(unit.config, device),
                      checkpoint_seconds=CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds,
                      stop=stop, scorer=eval_scorer(unit.config, device))


def evaluate_unit(plan: Plan, unit: Unit, state: Any, splits: dict, device: str, stop: Callable[[], bool],
                  deadline: float | None, progress: bool) -> tuple[dict, int]:
    """Evaluate the trained weights in saved chunks; returns (evaluation state, tasks done now)."""
    from .experiment import eval_generator
    from .evaluate import evaluate
    from .results import metric_name
    from .tasks import TaskSampler
    from .train import atomic_save, make_learner

    ev = load_eval_state(plan, unit) or {"config_hash": unit.config.hash(), "scores": {}, "generators": {},
                                         "finished": False}
    # which data the scores come from (a lossy copy of CIFAR-FS is named cifar_fs/test@jpeg-q95)
    ev.setdefault("data", {k: {"name": v.name, "classes": v.num_classes, "per_class": v.per_class}
                           for k, v in splits.items()})
    learner = make_learner(unit.config, splits["train"].image_shape, device)
    scorer = eval_scorer(unit.config, device)
    score = scorer(learner, state.params, state.opt_state) if scorer is not None else None
    done_now = 0
    for split, spec, n in _eval_tasks(unit):
        key = f"{split}/{spec.shots}"
        names = {p: metric_name(split, spec.shots, unit.config.classes, p == "transductive")
                 for p in ("transductive", "nontransductive")}
        g = eval_generator(unit.seed, split, spec.shots, device)
        if key in ev["generators"]:
            g.set_state(ev["generators"][key])
        sampler = TaskSampler(splits[split].to(device), unit.config.classes, g)
        have = len(ev["scores"].get(names["transductive"], []))
        chunks = range(have, n, EVAL_CHUNK)
        if progress and have < n:
            from tqdm.auto import tqdm
            chunks = tqdm(chunks, desc=f"{unit.id} {split} {spec.shots}-shot", unit="chunk", mininterval=5.0)
        for start in chunks:
            if stop() or (deadline is not None and time.time() > deadline):
                return ev, done_now
            size = min(EVAL_CHUNK, n - start)
            t = time.time()
            acc = evaluate(learner.model, learner.loss_fn, state.params, learner.opt, state.opt_state, sampler,
                           spec.shots, spec.eval_batch, spec.eval_iters, size, chunk=size,
                           replacement=unit.config.replacement, score=score)
            for proto, name in names.items():
                # per-task accuracy as the number of correct queries (one per class): small and exact
                correct = (acc[proto] * unit.config.classes).round().to(torch.uint8)
                ev["scores"][name] = torch.cat([ev["scores"].get(name, torch.zeros(0, dtype=torch.uint8)), correct])
            ev["generators"][key] = g.get_state()
            ev["wall_s"] = ev.get("wall_s", 0.0) + time.time() - t   # saved with the scores it paid for
            done_now += size
            atomic_save(ev, eval_path(plan, unit))
    ev["finished"] = True
    atomic_save(ev, eval_path(plan, unit))
    return ev, done_now


def write_experiment_results(plan: Plan, experiment: str) -> Path | None:
    """``results/<experiment>.json`` from the finished seeds of an experiment (None if none finished)."""
    from .results import provenance, summarize, write_results
    from .train import load_checkpoint

    exp = plan.experiments[experiment]
    per_task: dict[str, dict[int, list[float]]] = {}
    seeds, histories, iterations, segs, wall, data = [], {}, {}, {}, 0.0, {}
    for unit in plan.of(experiment):
        ev = load_eval_state(plan, unit)
        if ev is None or not ev.get("finished"):
            continue
        seeds.append(unit.seed)
        data = data or ev.get("data", {})
        for name, correct in ev["scores"].items():
            per_task.setdefault(name, {})[unit.seed] = (correct.double() / unit.config.classes).tolist()
        st = load_checkpoint(checkpoint_path(plan, unit), unit.config)
        histories[str(unit.seed)], iterations[str(unit.seed)] = st.history, st.iteration
        segs[str(unit.seed)] = segments(plan, unit)
        wall += sum(s.get("train_s", 0) + s.get("eval_s", 0) for s in segs[str(unit.seed)])
    if not seeds:
        return None
    planned = sorted(u.seed for u in plan.of(experiment))
    devices = sorted({s["device"] for ss in segs.values() for s in ss if "device" in s})
    commits = sorted({s["commit"] for ss in segs.values() for s in ss if "commit" in s})
    prov = provenance("cpu", seeds, wall, True, seeds_planned=planned, commits=commits, segments=segs)
    prov["device"] = "; ".join(devices)   # the machines that trained and evaluated (every segment's is in segments)
    extra = {"history": histories, "iterations": iterations, "algorithm": exp.config.algorithm,
             "evaluate": dict(exp.evaluate), "curve": list(exp.curve) if exp.curve else None, "data": data}
    metrics = {name: summarize(v) for name, v in sorted(per_task.items())}
    return write_results(results_path(plan, experiment), experiment, "paper", exp.config, metrics, prov, extra)


def paired_by_task(plan: Plan, a: Unit, b: Unit) -> list[dict] | None:
    """Two finished units compared task by task, for every evaluation both scored (None until both finish).

    Units of the same seed evaluate the same tasks (:func:`eval_generator` depends on the seed, the split
    and the shots only), so the difference b - a can be taken per task: its mean and the 95% interval of
    that mean (1.96 x the standard deviation of the per-task differences / sqrt(tasks)) are far tighter
    than the two accuracies' own intervals. Used for the size of a deviation at paper scale (the batched
    path's mean Adam carry against the released order, same seed). Accuracies in [0, 1].
    """
    if a.seed != b.seed:
        raise ValueError(f"{a.id} and {b.id}: tasks are paired only between units of the same seed")
    ea, eb = load_eval_state(plan, a), load_eval_state(plan, b)
    if not (ea and ea.get("finished") and eb and eb.get("finished")):
        return None
    rows = []
    for name in sorted(set(ea["scores"]) & set(eb["scores"])):
        x = ea["scores"][name].double() / a.config.classes
        y = eb["scores"][name].double() / b.config.classes
        if x.shape != y.shape:
            raise ValueError(f"{name}: {a.id} scored {x.numel()} tasks, {b.id} {y.numel()}; not paired")
        d = y - x
        n = d.numel()
        ci = 1.96 * float(d.std()) / math.sqrt(n) if n > 1 else float("nan")
        rows.append({"evaluation": name, "tasks": n, "a": float(x.mean()), "b": float(y.mean()),
                     "difference": float(d.mean()), "ci95": ci, "same_task_share": float((d == 0).double().mean())})
    return rows


def unfinished_curves(plan: Plan, experiment: str) -> dict | None:
    """The learning curves logged so far by an experiment's units still in training or evaluation, in the
    layout ``plots.experiments.learning_curves`` reads (``extra.history`` per seed), with each unit's
    meta-iteration (``extra.iterations``) and ``finished: False``; None when no such unit has a curve point.

    A chapter shows these, labelled as unfinished, while its paper-scale run is not done: they are what
    the run has measured so far, not its result.
    """
    histories, iterations = {}, {}
    for unit in plan.of(experiment):
        ckpt, ev = checkpoint_path(plan, unit), load_eval_state(plan, unit)
        if not ckpt.exists() or (ev is not None and ev.get("finished")):   # not started, or done
            continue
        blob = torch.load(ckpt, map_location="cpu", weights_only=True)   # read once (unit_state reads it too)
        if blob.get("config_hash") == unit.config.hash() and blob.get("history"):
            histories[str(unit.seed)], iterations[str(unit.seed)] = blob["history"], int(blob["iteration"])
    if not histories:
        return None
    config = plan.experiments[experiment].config
    return {"experiment": experiment, "profile": "paper", "config": dataclasses.asdict(config),
            "provenance": {"finished": False, "seeds": sorted(map(int, histories))},
            "extra": {"history": histories, "iterations": iterations}}


def _write_figures(plan: Plan, unit: Unit, missing_only: bool = False) -> bool | None:
    """A run of Figure 3 or 4 finished: rewrite ``results/<figure>.json`` from the runs finished so far
    (``missing_only``: only if that file lacks this unit, e.g. after a stop between the two files).
    Returns None for a unit of no figure, else whether every run of its figure at its seed is in the file
    (``missing_only``: not asked, None)."""
    from . import figures

    figure = figures.figure_of(plan, unit.config.name)
    if figure is None:
        return None
    if missing_only:
        if not figures.has_unit(plan, figure, unit.config.name, unit.seed):
            figures.write(plan, figure)
        return None
    path = figures.write(plan, figure)
    seed_curves = json.loads(path.read_text())["extra"].get("seed_curves", {}) if path is not None else {}
    runs = figures.curve_experiments(plan, figure)
    return all(str(unit.seed) in seed_curves.get(u.config.name, {})
               for u in plan.units if u.seed == unit.seed and u.config.name in runs)


# A figure's runs finish one after another (Figure 4's sweep: 39 runs in a few hours), and re-executing
# its chapter costs about half a minute of a core: it is re-executed when the last run of the figure's
# seed finishes, and in between at most once in this many seconds.
FIGURE_CHAPTER_EVERY_S = 3600.0


def _chapter_due(chapter: str, seed_complete: bool | None, now: float | None = None) -> bool:
    """Whether a finished unit re-executes its chapter (``seed_complete``: from :func:`_write_figures`)."""
    if seed_complete is None or seed_complete:   # not a figure's run, or the figure's seed is whole
        return True
    executed = ROOT / "book" / "executed" / f"{chapter}.ipynb"
    now = time.time() if now is None else now
    return not executed.exists() or now - executed.stat().st_mtime >= FIGURE_CHAPTER_EVERY_S


def _path_name(step: Callable | None) -> str:
    """The training step's name for the segment record (a function or a callable object)."""
    if step is None:
        return "algorithms.meta_step"
    named = step if hasattr(step, "__qualname__") else type(step)
    return f"{named.__module__.removeprefix('reptile_lib.')}.{named.__qualname__}"


def _in_results(plan: Plan, unit: Unit) -> bool:
    path = results_path(plan, unit.experiment.name)
    if not path.exists():
        return False
    doc = json.loads(path.read_text())
    return doc.get("config_hash") == unit.config.hash() and unit.seed in doc["provenance"].get("seeds", [])


def _save_weights(plan: Plan, unit: Unit, state: Any) -> None:
    from .experiment import save_weights

    save_weights(weights_path(plan, unit), unit.config, state, unit.seed)


def _rebuild_chapter(chapter: str) -> None:
    """Re-execute the chapter that shows the results (its failure is reported, not fatal)."""
    cmd = [sys.executable, str(ROOT / "tools" / "build_book.py"), "--execute", "--only", chapter, "--no-build"]
    r = subprocess.run(cmd, cwd=ROOT)
    if r.returncode:
        print(f"reproduce: re-executing {chapter} failed ({' '.join(cmd)}); the results are written",
              file=sys.stderr)


def run_unit(plan: Plan, unit: Unit, *, device: str = "cpu", data_root: str | None = None,
             stop: Callable[[], bool] = lambda: False, deadline: float | None = None,
             progress: bool = False, rebuild: bool = True, checkpoint_seconds: float | None = None,
             summarize: bool = True, provenance: dict | None = None, train: Callable | None = None) -> bool:
    """Advance one unit as far as ``stop``/``deadline`` allow. Returns True when it is done.

    Run as one rank of many (``reptile_lib.distributed``): ``summarize=False`` leaves the results file
    and the chapter to rank 0, ``provenance`` (rank, world size) joins the segment record, and
    ``train`` replaces :func:`train_unit` (same signature), e.g. by one that splits the meta-batch.
    """
    from .results import device_name, git_commit

    _close_journal(plan, unit)   # a previous segment of this unit was killed: log what it saved
    if unit_state(plan, unit)["phase"] == "done":
        if summarize:
            with claim(plan, "results", wait=True):   # other workers write results files too
                if not _in_results(plan, unit):   # stopped between the last evaluation chunk and the results
                    write_experiment_results(plan, unit.experiment.name)
                _write_figures(plan, unit, missing_only=True)
        return True
    splits = _splits(unit, data_root)
    step, scorer = train_step(unit.config, device), eval_scorer(unit.config, device)
    record = {"id": f"{socket.gethostname()}:{os.getpid()}:{time.time():.3f}",
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": device_name(device),
              "commit": git_commit(), "threads": torch.get_num_threads(), "host": socket.gethostname(),
              "train_path": _path_name(step), "eval_path": _path_name(scorer) if scorer else "evaluate.evaluate_tasks",
              **({"kernels": sequential_kernels(unit.config, device)} if step or scorer else {}),
              **(provenance or {})}
    _open_journal(plan, unit, record)
    t0 = time.time()
    first = unit_state(plan, unit)["iteration"]
    if train is not None:
        state = train(plan, unit, splits, device, stop, deadline, progress)
    else:
        state = train_unit(plan, unit, splits, device, stop, deadline, progress, checkpoint_seconds)
    record.update(iterations=state.iteration - first, iteration=state.iteration, train_s=round(time.time() - t0, 1))
    finished = False
    if state.finished(unit.config):
        _save_weights(plan, unit, state)
        t1 = time.time()
        ev, n = evaluate_unit(plan, unit, state, splits, device, stop, deadline, progress)
        record.update(eval_tasks=n, eval_s=round(time.time() - t1, 1))
        finished = bool(ev.get("finished"))
    record["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _log_segment(plan, unit, record)
    journal_path(plan, unit).unlink(missing_ok=True)   # a kill before this: the line is logged once (its id)
    if finished and summarize:
        with claim(plan, "results", wait=True):   # one writer of results/ and book/executed/ at a time
            write_experiment_results(plan, unit.experiment.name)
            seed_complete = _write_figures(plan, unit)
            if rebuild and unit.experiment.chapter and _chapter_due(unit.experiment.chapter, seed_complete):
                _rebuild_chapter(unit.experiment.chapter)
    return finished


def select_units(plan: Plan, only: Sequence[str] | None = None) -> list[Unit]:
    """The plan's units in order, or those named in ``only`` (unit ids or experiment names)."""
    units = [u for u in plan.units if only is None or u.id in only or u.experiment.name in only]
    if only is not None and not units:
        raise PlanError(f"no unit matches {list(only)}: units are {[u.id for u in plan.units]}")
    return units


def reproduce(plan: Plan | None = None, *, device: str = "cpu", data_root: str | None = None,
              max_minutes: float | None = None, only: Sequence[str] | None = None, progress: bool = True,
              rebuild: bool = True, install_signals: bool = True,
              checkpoint_seconds: float | None = None, worker: int | None = None,
              stop: Callable[[], bool] | None = None) -> int:
    """Work through the plan in order. Returns the number of units still not done.

    Several of these may run at once on one machine (``reptile reproduce --workers N``; ``worker`` is the
    index recorded in the segments): each takes the next unit no other worker holds (:func:`claim`).
    ``stop``: replaces the SIGTERM/SIGINT flag this call would install.
    """
    plan = plan or load_plan()
    if stop is None:
        stop = StopFlag()
        if install_signals:
            stop.install()
    deadline = None if max_minutes is None else time.time() + 60 * max_minutes
    units = select_units(plan, only)
    for unit in units:
        if stop() or (deadline is not None and time.time() > deadline):
            break
        with claim(plan, unit.id) as mine:   # several workers share the plan: each unit runs in one of them
            if not mine:
                print(f"reproduce: {unit.id} is running in another worker; next unit", file=sys.stderr, flush=True)
                continue
            print(f"reproduce: {unit.id}", file=sys.stderr, flush=True)
            run_unit(plan, unit, device=device, data_root=data_root, stop=stop, deadline=deadline,
                     progress=progress, rebuild=rebuild, checkpoint_seconds=checkpoint_seconds,
                     provenance={"worker": worker} if worker is not None else None)
    left = sum(unit_state(plan, u)["phase"] != "done" for u in units)
    print(status_text(plan), file=sys.stderr, flush=True)
    return left
