#!/usr/bin/env python3
"""The GPU jobs of issues 6-10: train in time (checkpointed, resumable), evaluate, leave what comes back in --out.

    python3 jobs/job.py table  --config omniglot_5way --seeds 0 1 2 --minutes 9 --device cuda --out $OUT
    python3 jobs/job.py figure --figure figure3 --minutes 9 --device cuda --out $OUT
    python3 jobs/job.py collect FOLDER      # here, after a run: results -> results/, checkpoints -> checkpoints/
    python3 jobs/job.py budget              # estimated H100 minutes of every job (reptile_lib.sweeps.estimate)

The shell scripts beside this file (``issue6_omniglot_5way.sh`` ...) call it with each issue's
arguments; ``--profile smoke --device cpu`` (what their ``--cpu-smoke`` passes) runs the same code
on the CPU at smoke size. What a job leaves in ``--out`` (at most 8 files, each under 15 MiB):

    <name>.json            the results file (reptile_lib.results schema, with provenance)
    weights.tar            trained phi + inner Adam state of each finished seed (table jobs)
    checkpoints[-N].tar    every run's checkpoint and ``<name>_segments.json`` (what each job run did)
    log.txt                the job's output (written by the shell script)

Training stops ``--minutes`` after the start minus the time evaluation needs, checkpoints, and
evaluates only fully trained runs; a later run with the returned checkpoints unpacked into
``--checkpoint-dir`` (``collect`` does it) resumes exactly where this one stopped.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from any folder: import this checkout's reptile_lib
    sys.path.insert(0, str(ROOT))

TAR_LIMIT = 15 * 2 ** 20  # a returned file may be 16 MiB


# ---------------------------------------------------------------- the GPU engine, where this checkout has it
ENGINE = os.environ.get("REPTILE_ENGINE", "graph")  # what the engine is asked for when it is installed


def engine_or_none(device: str) -> str | None:
    """``ENGINE`` when ``reptile_lib.engine`` is importable (it falls back to eager off CUDA), else None."""
    from reptile_lib.sweeps import engine_available

    if ENGINE in ("", "none", "reference") or not engine_available():
        return None
    return ENGINE if device.startswith("cuda") else "eager"


def log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- checkpoints, segments, bundles
def checkpoint_iteration(path: Path) -> int:
    import torch

    if not path.exists():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=True)["iteration"])


def segments_path(checkpoint_dir: Path, name: str) -> Path:
    return checkpoint_dir / f"{name}_segments.json"


def read_segments(checkpoint_dir: Path, name: str) -> list[dict]:
    p = segments_path(checkpoint_dir, name)
    return json.loads(p.read_text()) if p.exists() else []


def write_segments(checkpoint_dir: Path, name: str, segments: list[dict]) -> None:
    from reptile_lib.results import atomic_write_text

    atomic_write_text(segments_path(checkpoint_dir, name), json.dumps(segments, indent=1) + "\n")


def segment(progress: dict[str, tuple[int, int]], wall_s: float, device: str, trainer: str) -> dict:
    """What one job run did: each run's meta-iterations [from, to] (``resumed`` when one did not start at 0)."""
    from reptile_lib.results import device_name, git_commit

    return {"runs": {k: [a, b] for k, (a, b) in progress.items()}, "resumed": any(a > 0 for a, _ in progress.values()),
            "wall_s": round(wall_s, 1), "device": device_name(device), "trainer": trainer, "commit": git_commit(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def bundle(files: Sequence[Path], out: Path, stem: str, root: Path) -> list[Path]:
    """Tar ``files`` (names relative to ``root``) into ``out/<stem>.tar``, ``<stem>-2.tar`` ... each under 15 MiB."""
    files = [f for f in files if f.exists()]
    if not files:
        return []
    parts: list[list[Path]] = [[]]
    size = 0
    for f in sorted(files):
        s = f.stat().st_size
        if s > TAR_LIMIT:
            raise ValueError(f"{f} is {s / 2 ** 20:.1f} MiB: too large to come back from the GPU machine")
        if parts[-1] and size + s > TAR_LIMIT:
            parts.append([])
            size = 0
        parts[-1].append(f)
        size += s
    written = []
    for i, group in enumerate(parts):
        path = out / (f"{stem}.tar" if i == 0 else f"{stem}-{i + 1}.tar")
        with tarfile.open(path, "w") as tar:
            for f in group:
                tar.add(f, arcname=str(f.relative_to(root)))
        written.append(path)
    return written


# ---------------------------------------------------------------- table jobs (issues 6, 7, 8)
def evaluate_split(config, learner, params, opt_state, data, split: str, seed: int, device: str, n_tasks: int,
                   chunk: int, engine: str | None) -> dict:
    """Per-task accuracies of every protocol of ``config`` on ``n_tasks`` tasks of ``split``."""
    from reptile_lib.experiment import eval_generator, evaluate_model
    from reptile_lib.results import metric_name
    from reptile_lib.tasks import TaskSampler

    if engine is None:
        return evaluate_model(config, learner, params, opt_state, data, split, seed, device, n_tasks=n_tasks,
                              chunk=chunk)
    from reptile_lib.engine import fast_evaluate

    out = {}
    data = data.to(device)
    for spec in config.evals:
        sampler = TaskSampler(data, config.classes, eval_generator(seed, split, spec.shots, device))
        acc = fast_evaluate(learner.model, learner.loss_fn, params, learner.opt, opt_state, sampler, spec.shots,
                            spec.eval_batch, spec.eval_iters, n_tasks, replacement=config.replacement, engine=engine)
        for proto, v in acc.items():
            out[metric_name(split, spec.shots, config.classes, proto == "transductive")] = v
    return out


def eval_reserve_s(config, seeds: int, train_tasks: int, device: str, engine: str | None) -> float:
    """Seconds kept for evaluation after training: 1.5x the cost model's estimate, plus 30 s."""
    if not device.startswith("cuda"):
        return 0.0
    from reptile_lib.sweeps import CostModel, eval_seconds

    cost = CostModel.of("graph" if engine == "graph" else "eager", config.dataset)
    est = seeds * (eval_seconds(config, config.eval_samples, cost) + eval_seconds(config, train_tasks, cost))
    return 1.5 * est + 30


def table_job(args) -> int:
    """Issues 6-8: meta-train each seed of a Table 1/2 config, evaluate the finished ones, write results."""
    import torch

    from reptile_lib.cli import apply_overrides
    from reptile_lib.configs import get_config
    from reptile_lib.data import load_dataset
    from reptile_lib.experiment import check_splits, monitor_splits, save_weights, slug
    from reptile_lib.results import provenance, summarize, write_results
    from reptile_lib.train import make_learner, meta_train

    t0 = time.time()
    config = apply_overrides(get_config(args.config, args.profile), args.set)
    name = slug(config.name)
    out, ckdir = Path(args.out), Path(args.checkpoint_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckdir.mkdir(parents=True, exist_ok=True)
    splits = load_dataset(config.dataset, args.data_root)
    check_splits(config, splits, ("test", "train"))
    log(f"{config.name} ({args.profile}) on {args.device}: data " + ", ".join(f"{k}={v.name}" for k, v in splits.items()))
    engine = engine_or_none(args.device)
    trainer = f"reptile_lib.engine ({engine}), seeds batched" if engine else "reptile_lib.train.meta_train, seeds in turn"
    train_tasks = args.train_tasks or config.eval_samples
    reserve = eval_reserve_s(config, len(args.seeds), train_tasks, args.device, engine)
    deadline = None if args.minutes is None else t0 + 60 * args.minutes - reserve
    log(f"trainer: {trainer}; training until {'the end' if deadline is None else f'{(deadline - t0) / 60:.1f} min'} "
        f"(evaluation reserve {reserve / 60:.1f} min)")
    ckpts = {s: ckdir / f"{name}_seed{s}.pt" for s in args.seeds}
    starts = {s: checkpoint_iteration(p) for s, p in ckpts.items()}
    for s, it in starts.items():
        if it:
            log(f"seed {s}: resuming from {ckpts[s]} at meta-iteration {it:,}")
    learner = make_learner(config, splits["train"].image_shape, args.device)
    monitor = monitor_splits(splits)
    common = dict(device=args.device, monitor_splits=monitor, checkpoint_every=args.checkpoint_every, resume=True,
                  deadline=deadline, progress=not args.quiet, stop_at=args.stop_at)
    t_train = time.time()
    states = {}
    if engine:
        from reptile_lib.engine import RunSpec, meta_train_runs
        for s, st in zip(args.seeds, meta_train_runs([RunSpec(config, s, ckpts[s]) for s in args.seeds],
                                                       splits["train"], engine=engine, **common)):
            states[s] = st
    else:
        for s in args.seeds:
            if deadline is not None and time.time() > deadline and starts[s] < config.meta_iters:
                log(f"seed {s}: no time left, not started")
                continue
            states[s] = meta_train(config, splits["train"], seed=s, learner=learner, checkpoint=ckpts[s], **common)
    train_wall = time.time() - t_train
    segments = read_segments(ckdir, name)
    moved = {f"seed {s}": (starts[s], st.iteration) for s, st in states.items() if st.iteration > starts[s]}
    if moved:
        segments.append(segment(moved, train_wall, args.device, trainer))
    write_segments(ckdir, name, segments)
    done = [s for s in args.seeds if s in states and states[s].finished(config)]
    iterations = {str(s): (states[s].iteration if s in states else starts[s]) for s in args.seeds}
    pending = {str(s): iterations[str(s)] for s in args.seeds if s not in done}
    log("trained: " + ", ".join(f"seed {s} {int(i):,}/{config.meta_iters:,}" for s, i in iterations.items()))
    per_task: dict[str, dict[int, list[float]]] = {}
    weights = []
    t_eval = time.time()
    for s in done:
        st = states[s]
        weights.append(save_weights(out / "weights" / f"{name}_seed{s}.pt", config, st, s))
        for split, n in (("test", config.eval_samples), ("train", train_tasks)):
            accs = evaluate_split(config, learner, st.params, st.opt_state, splits[split], split, s, args.device,
                                  n, args.eval_chunk, engine)
            for metric, v in accs.items():
                per_task.setdefault(metric, {})[s] = v.tolist()
            log(f"seed {s}: evaluated {split} on {n:,} tasks")
    metrics = {k: summarize(v) for k, v in per_task.items()}
    histories = {str(s): st.history for s, st in states.items()}
    for s in args.seeds:  # seeds not trained in this run: their curves from the checkpoint
        if s not in states and ckpts[s].exists():
            histories[str(s)] = torch.load(ckpts[s], map_location="cpu", weights_only=True)["history"]
    wall = sum(seg["wall_s"] for seg in segments) + (time.time() - t_eval)
    extra = {"history": histories, "iterations": iterations, "algorithm": config.algorithm,
             "planned_seeds": list(args.seeds), "pending_seeds": pending, "segments": segments,
             "resumed": any(seg["resumed"] for seg in segments),
             "evaluation": {"test_tasks": config.eval_samples, "train_tasks": train_tasks,
                            "chunk": args.eval_chunk if engine is None else "engine (blocks of 100)",
                            "evaluator": "reptile_lib.engine.fast_evaluate" if engine else "reptile_lib.evaluate"},
             "trainer": trainer,
             "data": {k: {"name": v.name, "classes": v.num_classes, "per_class": v.per_class} for k, v in splits.items()}}
    prov = provenance(args.device, done or list(args.seeds), wall, bool(done))
    results = write_results(out / f"{name}.json", config.name, args.profile, config, metrics, prov, extra)
    for m, v in sorted(metrics.items()):
        log(f"{m:40s} {100 * v['mean']:6.2f} ± {100 * v['ci95']:.2f} %  ({v['n_tasks']:,} tasks)")
    files = bundle(weights, out, "weights", out / "weights")
    for w in weights:
        w.unlink()
    if weights:
        shutil.rmtree(out / "weights", ignore_errors=True)
    files += bundle([*ckpts.values(), segments_path(ckdir, name)], out, "checkpoints", ckdir)
    log(f"wrote {results.name} ({'finished: seeds ' + ', '.join(map(str, done)) if done else 'UNFINISHED'}"
        f"{'; still training: ' + ', '.join(pending) if pending else ''}), " + ", ".join(f.name for f in files))
    return 0


# ---------------------------------------------------------------- figure jobs (issues 9, 10)
def figure_job(args) -> int:
    """Issues 9-10: train every run of Figure 3 or 4 (shape groups batched by the engine), evaluate, write results."""
    import dataclasses

    from reptile_lib.cli import apply_overrides
    from reptile_lib.data import load_dataset
    from reptile_lib.sweeps import CostModel, checkpoint_path, eval_seconds, figure_points, run_figure, unique_configs

    t0 = time.time()
    out, ckdir = Path(args.out), Path(args.checkpoint_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckdir.mkdir(parents=True, exist_ok=True)
    points = figure_points(args.figure, args.profile)
    if args.set:
        points = [dataclasses.replace(p, config=apply_overrides(p.config, args.set)) for p in points]
    configs = unique_configs(points)
    splits = load_dataset("omniglot", args.data_root)
    engine = engine_or_none(args.device)
    reserve = 0.0
    if args.device.startswith("cuda"):
        cost = CostModel.of("graph" if engine == "graph" else "eager")
        reserve = 1.5 * sum(eval_seconds(c, c.eval_samples, cost) for c in configs) + 30
    minutes = None if args.minutes is None else args.minutes - (time.time() - t0 + reserve) / 60
    log(f"{args.figure} ({args.profile}) on {args.device}: {len(configs)} runs; trainer "
        f"{'engine ' + engine if engine else 'reptile_lib.train.meta_train'}; training budget "
        f"{'unlimited' if minutes is None else f'{minutes:.1f} min'}")
    starts = {c.name: checkpoint_iteration(checkpoint_path(ckdir, c, args.seed)) for c in configs}
    segments = read_segments(ckdir, args.figure)
    doc = run_figure(args.figure, args.profile, splits=splits, seed=args.seed, device=args.device, out=None,
                     checkpoint_dir=ckdir, checkpoint_every=args.checkpoint_every, max_minutes=minutes,
                     eval_chunk=args.eval_chunk, points=points, engine=engine, progress=not args.quiet)
    its = doc["extra"]["iterations"]
    trainer = doc["extra"]["trainer"]
    moved = {c.name: (starts[c.name], its[c.name]) for c in configs if its[c.name] > starts[c.name]}
    if moved:
        segments.append(segment(moved, time.time() - t0, args.device, trainer))
    write_segments(ckdir, args.figure, segments)
    from reptile_lib.results import write_results
    doc["extra"].update(segments=segments, resumed=any(s["resumed"] for s in segments))
    results = write_results(out / f"{args.figure}.json", args.figure, args.profile, doc["config"], doc["metrics"],
                            doc["provenance"], doc["extra"])
    left = [c.name for c in configs if its[c.name] < c.meta_iters and c.name not in doc["extra"]["diverged"]]
    files = bundle([checkpoint_path(ckdir, c, args.seed) for c in configs] + [segments_path(ckdir, args.figure)],
                   out, "checkpoints", ckdir)
    log(f"wrote {results.name}: {len(doc['metrics'])} metrics, {len(left)} of {len(configs)} runs unfinished, "
        f"{len(doc['extra']['diverged'])} diverged; " + ", ".join(f.name for f in files))
    return 0


# ---------------------------------------------------------------- here, after a run
def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for m in members:
        if not m.isfile() or m.name.startswith("/") or ".." in Path(m.name).parts:
            raise ValueError(f"{tar.name}: unexpected member {m.name!r}; not unpacking it")
    return members


def collect(args) -> int:
    """Results -> results/ (or results/smoke/), weights -> results/weights/, checkpoints -> checkpoints/."""
    from reptile_lib.results import load_results

    src = Path(args.folder)
    if not src.is_dir():
        print(f"job collect: {src} is not a folder (pass the run's files_at)", file=sys.stderr)
        return 2
    root = Path(args.root)
    copied = []
    for f in sorted(src.rglob("*.json")):
        doc = load_results(f)
        dest = root / "results" / ("" if doc["profile"] == "paper" else "smoke") / f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
        copied.append(dest)
        state = "finished" if doc["provenance"]["finished"] else "UNFINISHED"
        print(f"{dest.relative_to(root)}: {doc['profile']}, {state}, seeds {doc['provenance']['seeds']}")
    for stem, dest in (("weights", root / "results" / "weights"), ("checkpoints", Path(args.checkpoint_dir))):
        for t in sorted(src.rglob(f"{stem}*.tar")):
            with tarfile.open(t) as tar:
                members = _safe_members(tar)
                dest.mkdir(parents=True, exist_ok=True)
                for m in members:
                    target = dest / m.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(m) as r, open(target, "wb") as w:
                        shutil.copyfileobj(r, w)
                    if stem == "weights":
                        copied.append(target)
            print(f"{t.name}: {len(members)} files -> {dest}")
    for f in sorted(src.rglob("*.ipynb")):
        print(f"{f.name}: executed notebook (the book build re-executes notebooks from results; keep for reference)")
    if copied:
        print("commit with: git add " + " ".join(str(p.relative_to(root)) for p in copied))
    return 0


def budget(args) -> int:
    """Estimated H100 seconds per job (``sweeps.estimate``), with and without the engine."""
    from reptile_lib.configs import get_config
    from reptile_lib.sweeps import estimate, figure_points, unique_configs

    table = (10_000, 2_000)  # test and train-class tasks of the table jobs (--train-tasks 2000)
    rows = [("issue 6: omniglot_5way, 3 seeds", [get_config("omniglot_5way")], 3, table),
            ("issue 6: omniglot_5way, 1 seed", [get_config("omniglot_5way")], 1, table),
            ("issue 7: omniglot_20way, 1 seed", [get_config("omniglot_20way")], 1, table),
            ("issue 8: cifar_fs_5way, 3 seeds", [get_config("cifar_fs_5way")], 3, table),
            ("issue 8: cifar_fs_5way, 1 seed", [get_config("cifar_fs_5way")], 1, table),
            ("issue 9: figure3, 10 curves", unique_configs(figure_points("figure3")), 1, None),
            ("issue 10: figure4, 39 runs", unique_configs(figure_points("figure4")), 1, None)]
    print(f"{'job':36s} {'engine (graph, runs batched)':>30s} {'library (eager, runs in turn)':>31s}")
    for label, configs, seeds, tasks in rows:
        cells = []
        for path, batched in (("graph", True), ("eager", False)):
            e = estimate(configs, path, seeds=seeds, batched=batched, eval_tasks=tasks,
                         monitor_splits=2 if tasks else 1)
            cells.append(f"{e['total_s'] / 60:6.1f} min (train {e['train_s'] / 60:.1f})")
        print(f"{label:36s} {cells[0]:>30s} {cells[1]:>31s}")
    return 0


# ---------------------------------------------------------------- command line
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jobs/job.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--profile", choices=("paper", "smoke"), default="paper")
        sp.add_argument("--device", default="cuda")
        sp.add_argument("--out", required=True, help="folder for what comes back ($OUT on the GPU machine)")
        sp.add_argument("--minutes", type=float, default=None,
                        help="the job's whole time: training stops early enough to evaluate within it")
        sp.add_argument("--checkpoint-dir", default=str(ROOT / "checkpoints"))
        sp.add_argument("--checkpoint-every", type=int, default=1000)
        sp.add_argument("--eval-chunk", type=int, default=None, help="tasks evaluated at once (default: 1000 on a GPU, 100 on a CPU)")
        sp.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides (every run)")
        sp.add_argument("--data-root", default=None)
        sp.add_argument("--quiet", action="store_true")

    t = sub.add_parser("table", help="a Table 1/2 config: seeds, 10,000-task evaluations")
    common(t)
    t.add_argument("--config", required=True)
    t.add_argument("--seeds", type=int, nargs="+", default=[0])
    t.add_argument("--train-tasks", type=int, default=None, help="tasks of the train-class evaluation (default: eval_samples)")
    t.add_argument("--stop-at", type=int, default=None, help="train no further than this meta-iteration in this run")
    f = sub.add_parser("figure", help="Figure 3 or 4: every run, curves and final accuracies")
    common(f)
    f.add_argument("--figure", required=True, choices=("figure3", "figure4"))
    f.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("collect", help="unpack a returned run into results/ and checkpoints/ (here)")
    c.add_argument("folder")
    c.add_argument("--root", default=str(ROOT))
    c.add_argument("--checkpoint-dir", default=str(ROOT / "checkpoints"))
    sub.add_parser("budget", help="estimated GPU minutes of each job")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "eval_chunk", "unset") is None:
        args.eval_chunk = 1000 if args.device.startswith("cuda") else 100
    if args.command in ("table", "figure") and args.device == "cpu":
        import torch
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return {"table": table_job, "figure": figure_job, "collect": collect, "budget": budget}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
