"""``reptile``: train, evaluate and manage data from the command line.

A CPU-sized run, then an evaluation of the weights it wrote. ``reptile train`` writes them to
``<config>_seed<N>.pt`` in ``results/smoke/weights/`` with ``--profile smoke``, in
``results/weights/`` with the default ``--profile paper`` (``--weights-dir`` chooses another folder)::

    reptile train --config omniglot_5way --profile smoke --seeds 0
    reptile evaluate --config omniglot_5way --profile smoke \\
        --weights results/smoke/weights/omniglot_5way_seed0.pt
    reptile configs
    reptile data check

``reptile reproduce`` writes the paper-scale models as ``results/weights/<unit>.pt``, e.g.
``omniglot_5way-seed0.pt``. A weights file holds the config it was trained with, so ``--config``
may be left out::

    reptile evaluate --weights results/weights/omniglot_5way-seed0.pt

Expected failures (missing data, bad input, a diverged run) print one line and exit non-zero:
2 bad usage, 3 data not found, 4 a results/checkpoint file of another config, 5 diverged
(``reptile data ...``: 1 failed, see ``reptile data --help``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

EXIT_USAGE, EXIT_DATA, EXIT_MISMATCH, EXIT_DIVERGED = 2, 3, 4, 5


def _value(field: dataclasses.Field, text: str) -> Any:
    """Parse ``text`` as the type of a config field (for ``--set key=value``)."""
    t = str(field.type)
    if text.lower() in ("none", "null") and "None" in t:
        return None
    if "tuple" in t:
        return tuple(int(x) for x in text.split(",") if x)
    if t.startswith("bool"):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{field.name} takes true or false, got {text!r}")
        return text.lower() in ("true", "1")
    if t.startswith("int"):
        return int(text)
    if t.startswith("float"):
        return float(text)
    return text


def apply_overrides(config, pairs: Sequence[str]):
    """``dataclasses.replace`` with ``key=value`` strings, e.g. ``inner_iters=3``."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in fields or key in ("evals", "name"):
            raise ValueError(f"--set {pair!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(k for k in fields if k not in ('evals', 'name'))}")
        changes[key] = _value(fields[key], text)
    return dataclasses.replace(config, **changes) if changes else config


def _parser() -> argparse.ArgumentParser:
    from .configs import PAPER_CONFIGS

    p = argparse.ArgumentParser(prog="reptile", description="Reptile / FOMAML meta-learning (Nichol et al. 2018).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp, with_profile=True, config_help=None, training=True):
        sp.add_argument("--config", required=config_help is None, choices=sorted(PAPER_CONFIGS), metavar="NAME",
                        help=config_help or f"the paper run to use: {', '.join(sorted(PAPER_CONFIGS))}")
        if with_profile:
            sp.add_argument("--profile", choices=("paper", "smoke"), default="paper",
                            help="'paper' = the paper's scale (hours per run on a CPU core), 'smoke' = a tiny "
                                 "variant, seconds (default: paper)")
        sp.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override config fields, e.g. --set meta_iters=500 inner_iters=3")
        sp.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
        sp.add_argument("--engine", choices=("auto", "reference", "sequential", "eager", "graph"), default="auto",
                        help="'reference': the library's plain loop; 'sequential': one task at a time on flat buffers "
                             "(the paper's networks on a CPU, as the queue trains; same results to float rounding, "
                             "2.3-3.4x faster); 'auto': sequential where it applies, else reference; 'graph': "
                             "reptile_lib.engine with CUDA graphs" + (", for batched-path configs (--set batched=true "
                             "adam_carry=mean)" if training else "") + " (eager without CUDA); 'eager': the engine "
                             "without graphs (default: auto)")
        sp.add_argument("--data-root", default=None,
                        help="folder holding omniglot/, cifar_fs/, miniimagenet/ (default: $REPTILE_DATA, "
                             "then ../shared/datasets beside the repository)")

    t = sub.add_parser("train", help="meta-train a config for one or more seeds, evaluate, write results JSON",
                       description="Meta-train, evaluate on the paper's protocol, write a results file.")
    common(t)
    t.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to train (default: 0)")
    t.add_argument("--out", default=None, help="results file (default: results/NAME.json, or results/smoke/NAME.json)")
    t.add_argument("--weights-dir", default=None, help="where trained weights go (default: beside --out, in weights/)")
    t.add_argument("--checkpoint-dir", default="checkpoints", help="checkpoints, resumed if present (default: checkpoints)")
    t.add_argument("--checkpoint-every", type=int, default=1000, help="meta-iterations between checkpoints (default: 1000)")
    t.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints and start afresh")
    t.add_argument("--max-minutes", type=float, default=None,
                   help="stop training after this long, checkpoint, and mark the results unfinished")
    t.add_argument("--eval-splits", nargs="+", default=["test", "train"], help="splits to evaluate (default: test train)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("--no-batch-seeds", action="store_true",
                   help="with --engine eager/graph, train the seeds one after another instead of as one batch")

    e = sub.add_parser("evaluate", help="evaluate trained weights on the paper's protocol",
                       description="Evaluate a weights file written by `reptile train`.")
    common(e, with_profile=True, training=False,
           config_help="the config the weights were trained with (default: the one stored in the weights file; "
                       "with --config, --profile and --set it is checked against the file)")
    e.add_argument("--weights", required=True, help="a weights file written by `reptile train` or `reptile reproduce`")
    e.add_argument("--split", default="test", help="split to evaluate (default: test)")
    e.add_argument("--tasks", type=int, default=None, help="number of tasks (default: the config's eval_samples)")
    e.add_argument("--seed", type=int, default=0, help="seed of the evaluation tasks (default: 0)")

    sub.add_parser("configs", help="list the named configs with their hyper-parameters")

    r = sub.add_parser("reproduce", help="work through the paper-scale queue (runs/plan.toml), resumably",
                       description="Train and evaluate the units of the plan in order; SIGTERM or Ctrl-C saves "
                                   "and stops; run again to resume where it stopped.")
    r.add_argument("--plan", default=None, help="plan file (default: runs/plan.toml)")
    r.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when present; default: auto)")
    r.add_argument("--max-minutes", type=float, default=None, help="save and stop after this long")
    r.add_argument("--only", nargs="+", default=None, metavar="UNIT",
                   help="only these units (EXPERIMENT-seedN) or experiments")
    r.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    r.add_argument("--no-rebuild", action="store_true", help="do not re-execute the chapters of finished units")
    r.add_argument("--checkpoint-minutes", type=float, default=5.0,
                   help="checkpoint training at least this often (default: 5; a kill loses at most that)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--workers", type=int, default=1,
                   help="run this many units at once, each in its own process (on a CPU: at most one per core; "
                        "workers after the first log to runs/reproduce.worker<k>.log)")
    r.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)   # a worker's index (set by --workers)
    r.add_argument("--data-root", default=None, help="folder holding the data sets (default as for train)")
    r.add_argument("--split-meta-batch", action="store_true",
                   help="under torchrun: all ranks train one unit, each adapting meta_batch / world_size tasks "
                        "(default under torchrun: the ranks share out whole units)")

    s = sub.add_parser("status", help="where the paper-scale queue stands: done / at iteration i of n / pending")
    s.add_argument("--plan", default=None, help="plan file (default: runs/plan.toml)")
    s.add_argument("--all", action="store_true", help="one line per unit (default: a sweep's runs that are all "
                                                      "done or all pending at one seed share a line)")

    from .data.commands import add_data_commands
    add_data_commands(sub)  # reptile data fetch | check | pack
    return p


def _train(args) -> int:
    from .configs import get_config
    from .data import load_dataset
    from .experiment import choose_path, run_experiment, slug

    config = apply_overrides(get_config(args.config, args.profile), args.set)
    out = Path(args.out) if args.out else Path("results") / ("" if args.profile == "paper" else "smoke") / f"{slug(config.name)}.json"
    weights = Path(args.weights_dir) if args.weights_dir else out.parent / "weights"
    _refuse_foreign_results(out, config)
    choose_path(args.engine, config, args.device, training=True)   # before loading any data
    splits = load_dataset(config.dataset, args.data_root)
    doc = run_experiment(config, args.profile, args.seeds, splits=splits, device=args.device, out=out,
                         weights_dir=weights, checkpoint_dir=args.checkpoint_dir,
                         checkpoint_every=args.checkpoint_every, resume=not args.no_resume,
                         max_minutes=args.max_minutes, eval_splits=args.eval_splits, progress=not args.quiet,
                         engine=args.engine, batch_seeds=not args.no_batch_seeds)
    for name, m in doc["metrics"].items():
        print(f"{name:40s} {100 * m['mean']:6.2f} ± {100 * m['ci95']:.2f} %  ({m['n_tasks']} tasks)")
    print(f"wrote {out}{'' if doc['provenance']['finished'] else ' (UNFINISHED: re-run to resume)'}")
    return 0


def _refuse_foreign_results(out: Path, config) -> None:
    """Never overwrite a results file made with another configuration (e.g. the book's committed runs)."""
    from .results import ResultsMismatchError, load_results

    if not out.exists():
        return
    try:
        load_results(out, config)
    except ResultsMismatchError as e:
        raise ResultsMismatchError(f"{e}. It holds results of another configuration, such as the book's own runs: "
                                   f"write yours elsewhere, e.g. --out results/mine/{out.name}") from e


def weights_config(path: str | Path):
    """The config a weights file was trained with (``experiment.save_weights`` stores it)."""
    import torch

    from .configs import Config

    if not Path(path).exists():
        raise FileNotFoundError(f"no weights file {path}: `reptile train` writes results/weights/<config>_seed<N>.pt, "
                                "`reptile reproduce` results/weights/<unit>.pt")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if "config" not in blob:
        raise ValueError(f"{path} holds no classifier config (the sine regressor's weights are plain state "
                         "dicts): `reptile evaluate` takes the weights of an Omniglot, CIFAR-FS or Mini-ImageNet run")
    return Config.from_dict(blob["config"])


def _evaluate(args) -> int:
    from .configs import get_config
    from .data import load_dataset
    from .evaluate import Accuracy
    from .experiment import evaluate_model, load_weights
    from .train import make_learner

    if args.config is not None:
        config = apply_overrides(get_config(args.config, args.profile), args.set)
    else:   # the config is in the weights file: nothing to repeat, nothing to get wrong
        if args.set:
            raise ValueError("--set changes the config, so the weights would not load into it: name the config "
                             "with --config, or leave out --set (--tasks, --split and --seed choose the evaluation)")
        config = weights_config(args.weights)
    splits = load_dataset(config.dataset, args.data_root)
    if args.split not in splits:
        raise ValueError(f"{config.dataset} has no split {args.split!r}; choose one of {', '.join(sorted(splits))}")
    learner = make_learner(config, splits["train"].image_shape, args.device)
    params, opt_state, _ = load_weights(args.weights, config, args.device)
    accs = evaluate_model(config, learner, params, opt_state, splits[args.split], args.split, args.seed,
                          args.device, n_tasks=args.tasks, engine=args.engine)
    for name, v in accs.items():
        a = Accuracy.of(v)
        print(f"{name:40s} {100 * a.mean:6.2f} ± {100 * a.ci95:.2f} %  ({a.n_tasks} tasks)")
    return 0


def _reproduce(args) -> int:
    import torch

    from .distributed import launched, reproduce_on_ranks
    from .reproduce import load_plan, reproduce

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.workers < 1:
        raise SystemExit("reproduce: --workers must be at least 1")
    if args.workers > 1 and (args.split_meta_batch or launched()):
        raise SystemExit("reproduce: --workers starts its own processes; under torchrun the ranks are the workers")
    if args.workers > 1:
        return _reproduce_workers(args, device)
    if args.split_meta_batch or launched():   # torchrun: units or one meta-batch over the ranks
        left, ranks = reproduce_on_ranks(load_plan(args.plan), device=args.device,
                                         split_meta_batch=args.split_meta_batch, data_root=args.data_root,
                                         max_minutes=args.max_minutes, only=args.only, progress=not args.quiet,
                                         rebuild=not args.no_rebuild)
        if ranks.rank:
            return 0
    else:
        left = reproduce(load_plan(args.plan), device=device, data_root=args.data_root,
                         max_minutes=args.max_minutes, only=args.only, progress=not args.quiet,
                         rebuild=not args.no_rebuild, checkpoint_seconds=60 * args.checkpoint_minutes,
                         worker=args.worker)
    print(f"reproduce: {left} unit(s) not done{'; run again to resume' if left else ''}")
    return 0


def _reproduce_workers(args, device: str) -> int:
    """``--workers N``: N-1 worker processes plus this one, each taking the next unclaimed unit of the plan.

    A signal to this process (SIGTERM, Ctrl-C) is passed on to the workers; each saves and stops.
    """
    import subprocess

    from .reproduce import StopFlag, load_plan, reproduce, select_units, unit_state

    plan = load_plan(args.plan)
    argv = [sys.executable, "-m", "reptile_lib.cli", "reproduce", "--device", device,
            "--checkpoint-minutes", str(args.checkpoint_minutes)]
    for flag, value in (("--plan", args.plan), ("--max-minutes", args.max_minutes), ("--threads", args.threads),
                        ("--data-root", args.data_root)):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--only", *args.only] if args.only else []
    argv += [flag for flag, on in (("--no-rebuild", args.no_rebuild), ("--quiet", args.quiet)) if on]
    children = []
    passed: set[int] = set()

    def pass_on(signum: int) -> None:
        passed.add(signum)
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    stop = StopFlag()   # installed before the workers start: a signal meanwhile reaches those already started
    stop.install(also=pass_on)
    for k in range(1, args.workers):
        if stop():
            break
        log = plan.root / f"reproduce.worker{k}.log"
        with open(log, "w") as out:
            children.append(subprocess.Popen([*argv, "--worker", str(k)], stdout=out, stderr=subprocess.STDOUT))
        for signum in sorted(passed):   # a signal that came while it was being started was not passed to it
            children[-1].send_signal(signum)
        print(f"reproduce: worker {k} started (pid {children[-1].pid}), log {log}", file=sys.stderr, flush=True)
        time.sleep(2.0)   # let it claim its first unit before the next worker looks

    try:
        reproduce(plan, device=device, data_root=args.data_root, max_minutes=args.max_minutes,
                  only=args.only, progress=not args.quiet, rebuild=not args.no_rebuild,
                  checkpoint_seconds=60 * args.checkpoint_minutes, worker=0, stop=stop)
    finally:
        codes = [c.wait() for c in children]
    left = sum(unit_state(plan, u)["phase"] != "done" for u in select_units(plan, args.only))   # all workers done
    # a worker ended by the signal passed on to it is not a failure: it had not yet installed its handler (just
    # started) or no longer had one (exiting after its last unit), and whatever it trained is checkpointed
    bad = [k + 1 for k, code in enumerate(codes) if code and -code not in passed]
    if bad:
        print(f"reproduce: worker(s) {bad} failed: see runs/reproduce.worker<k>.log", file=sys.stderr)
    print(f"reproduce: {left} unit(s) not done{'; run again to resume' if left else ''}")
    return 1 if bad else 0


def _status(args) -> int:
    from .reproduce import load_plan, status_text

    print(status_text(load_plan(args.plan), every_unit=args.all))
    return 0


def _configs(args) -> int:
    from .configs import PAPER_CONFIGS

    for name, c in sorted(PAPER_CONFIGS.items()):
        d = {k: v for k, v in c.to_dict().items() if k != "name"}
        print(f"{name}: {json.dumps(d)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .paths import DataNotFoundError
    from .results import ResultsMismatchError

    try:
        if args.command == "train":
            return _train(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "configs":
            return _configs(args)
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "status":
            return _status(args)
        return args.func(args)
    except DataNotFoundError as e:
        print(f"reptile: error: {e}", file=sys.stderr)
        return EXIT_DATA
    except ResultsMismatchError as e:
        print(f"reptile: error: {e}", file=sys.stderr)
        return EXIT_MISMATCH
    except KeyboardInterrupt:
        print("reptile: interrupted (the last checkpoint is kept; re-run to resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:   # the reader stopped early (`reptile status | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # so that the exit's flush is silent
        return 1
    except Exception as e:  # expected failures become one line; programming errors keep their traceback
        from .train import CheckpointMismatchError, TrainingDiverged
        if isinstance(e, TrainingDiverged):
            print(f"reptile: error: {e}", file=sys.stderr)
            return EXIT_DIVERGED
        if isinstance(e, CheckpointMismatchError):
            print(f"reptile: error: {e}", file=sys.stderr)
            return EXIT_MISMATCH
        if isinstance(e, (ValueError, KeyError, FileNotFoundError)):
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"reptile: error: {msg}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
