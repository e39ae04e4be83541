"""How much does the summed loss matter? A reduced-scale measurement on real Omniglot 5-way.

The released code differentiates the batch's summed cross-entropy; an earlier version of this
library used the batch mean. With Adam and one batch size the two nearly coincide, but the Adam
state carried from training (batches of ``inner_batch`` images) into evaluation (batches of
``eval_batch`` images) makes the released evaluation step ``eval_batch / inner_batch`` times the
mean's. This script measures it, with the paper's Omniglot 5-way hyper-parameters (Table 2, the
released README command) in the released serial Adam order, for ``--meta-iters`` meta-iterations:

- seeds 0 and 1 trained with ``loss_reduction="sum"``; the SAME weights evaluated with the summed
  (released) and the mean (old) evaluation step on the same test tasks (paired by task);
- the first seed also trained with ``loss_reduction="mean"`` and evaluated with the mean: training
  and evaluating once with each semantics, paired by task with the sum-trained model of that seed.

The first seed's stages run first (both comparisons), then the other seeds', then 5-shot.

Every stage (a trained model, an evaluation) is saved under ``--work-dir`` and skipped when the
script is run again; training checkpoints every 50 meta-iterations, so a killed run resumes
where it stopped. The results file is rewritten after every stage (``provenance.finished`` says
whether all stages are done)::

    python tools/loss_reduction_check.py --meta-iters 3000 --tasks 1000 --shots 1 5
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's reptile_lib, not an installed one

import torch  # noqa: E402

from reptile_lib.configs import OMNIGLOT_5WAY, Config, EvalSpec  # noqa: E402
from reptile_lib.data import load_dataset  # noqa: E402
from reptile_lib.engine.sequential import SequentialMetaStep, TaskEvaluator  # noqa: E402
from reptile_lib.experiment import eval_generator  # noqa: E402
from reptile_lib.evaluate import evaluate  # noqa: E402
from reptile_lib.inner import classification_loss  # noqa: E402
from reptile_lib.results import atomic_write_text, config_hash, provenance  # noqa: E402
from reptile_lib.tasks import TaskSampler  # noqa: E402
from reptile_lib.train import TrainState, load_checkpoint, make_learner, meta_train  # noqa: E402

PROTOCOLS = ("transductive", "nontransductive")


def check_config(reduction: str, meta_iters: int, shots: tuple[int, ...]) -> Config:
    """Omniglot 5-way (Table 2) at ``meta_iters``, released serial Adam order, loss ``reduction``."""
    return dataclasses.replace(OMNIGLOT_5WAY, name=f"loss_reduction_{reduction}", meta_iters=meta_iters,
                               loss_reduction=reduction, batched=False, adam_carry="sequential",
                               evals=tuple(EvalSpec(s, 5, 50) for s in shots))


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Mean of the per-task differences ``a - b`` with a 95% normal interval (tasks are paired)."""
    if a.shape != b.shape:
        raise ValueError(f"paired by task: both need the same tasks, got {tuple(a.shape)} and {tuple(b.shape)}")
    d = (a.double() - b.double())
    n = d.numel()
    return {"a": float(a.double().mean()), "b": float(b.double().mean()), "diff": float(d.mean()),
            "ci95": 1.96 * float(d.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan"),
            "n_tasks": n, "tasks_differing": int((d != 0).sum())}


def summary(per_task: dict[str, torch.Tensor], shots: tuple[int, ...], seeds: tuple[int, ...]) -> dict:
    """The comparisons from the per-task accuracies of the stages done so far."""
    out: dict = {"same_weights": {}, "trained_each_way": {}}
    for s in shots:
        for proto in PROTOCOLS:
            key = f"test_{s}shot_5way_{proto}"
            pairs = [(per_task.get(f"sum_seed{seed}/sum/{key}"), per_task.get(f"sum_seed{seed}/mean/{key}"))
                     for seed in seeds]
            done = [(a, b) for a, b in pairs if a is not None and b is not None]
            if done:
                row = {f"seed{seed}": paired_difference(a, b) for seed, (a, b) in zip(seeds, pairs)
                       if a is not None and b is not None}
                if len(done) > 1:
                    row["pooled"] = paired_difference(torch.cat([a for a, _ in done]), torch.cat([b for _, b in done]))
                out["same_weights"][key] = row
            a, b = per_task.get(f"sum_seed{seeds[0]}/sum/{key}"), per_task.get(f"mean_seed{seeds[0]}/mean/{key}")
            if a is not None and b is not None:
                out["trained_each_way"][key] = {f"seed{seeds[0]}": paired_difference(a, b)}
    return out


def trained_state_comparison(work_dir: Path, configs: dict[str, Config], seed: int) -> dict | None:
    """How the sum- and the mean-trained models of ``seed`` differ once both finished: the scale of
    Adam's carried second moments (per tensor, sum(sqrt v_sum) / sum(sqrt v_mean); about
    ``inner_batch`` when the images' gradients agree) and the parameters' relative distance."""
    paths = {r: work_dir / f"train_{r}_seed{seed}.pt" for r in ("sum", "mean")}
    if not all(p.exists() for p in paths.values()):
        return None
    states = {r: load_checkpoint(paths[r], configs[r]) for r in paths}
    if not all(st.finished(configs[r]) for r, st in states.items()):
        return None
    vs, vm = states["sum"].opt_state["v"], states["mean"].opt_state["v"]
    ratios = [float(vs[k].sqrt().sum() / vm[k].sqrt().sum()) for k in vs]
    ps, pm = states["sum"].params, states["mean"].params
    dist = sum(float((ps[k] - pm[k]).norm() ** 2) for k in ps) ** 0.5 / sum(float(ps[k].norm() ** 2) for k in ps) ** 0.5
    return {"seed": seed, "sqrt_v_ratio_min": min(ratios), "sqrt_v_ratio_max": max(ratios),
            "relative_parameter_distance": dist}


def evaluate_resumable(path: Path, learner, loss_fn, state: TrainState, data, seed: int, shots: int,
                       n_tasks: int, block: int = 100) -> dict[str, torch.Tensor]:
    """``evaluate`` on the test tasks of ``experiment.eval_generator(seed, 'test', shots)``, saving
    progress every ``block`` tasks (accuracies so far and the generator's state) next to ``path``.

    Drawing the tasks block by block from one generator gives the same tasks as one call.
    """
    part = path.with_name(path.stem + ".part.pt")
    gen = eval_generator(seed, "test", shots)
    done: dict[str, list[torch.Tensor]] = {"transductive": [], "nontransductive": []}
    if part.exists():
        blob = torch.load(part)
        gen.set_state(blob["generator"])
        done = {k: [v] for k, v in blob["acc"].items()}
    sampler = TaskSampler(data, 5, gen)
    n = sum(v.numel() for v in done["transductive"])
    while n < n_tasks:
        k = min(block, n_tasks - n)
        # the one-task-at-a-time scorer: the same tasks and per-task results as the reference, faster here
        score = TaskEvaluator(learner.model, learner.opt, state.params, state.opt_state, loss_fn.reduction)
        acc = evaluate(learner.model, loss_fn, state.params, learner.opt, state.opt_state, sampler, shots, 5, 50, k,
                       chunk=50, score=score)
        for proto, v in acc.items():
            done[proto].append(v)
        n += k
        torch.save({"generator": gen.get_state(), "acc": {p: torch.cat(v) for p, v in done.items()}}, part)
    part.unlink(missing_ok=True)
    return {p: torch.cat(v) for p, v in done.items()}


def markdown_table(doc: dict) -> str:
    """The comparisons of a results file as the Markdown table the fidelity page shows (points)."""
    lines = ["| comparison | evaluation | seed | summed loss | mean loss | difference (95% interval) | tasks changed |",
             "|---|---|---|---|---|---|---|"]
    titles = {"same_weights": "same sum-trained weights, summed vs mean evaluation step",
              "trained_each_way": "trained and evaluated with the summed vs with the mean loss"}
    for kind in ("same_weights", "trained_each_way"):
        for metric, rows in doc["comparisons"][kind].items():
            _, shots, _, proto = metric.split("_")
            for seed, r in rows.items():
                if seed == "pooled" and len(rows) < 3:  # one seed: pooled is that seed
                    continue
                lines.append(f"| {titles[kind]} | {shots.replace('shot', '-shot')}, {proto} | {seed.replace('seed', '')} | "
                             f"{100 * r['a']:.2f} | {100 * r['b']:.2f} | {100 * r['diff']:+.2f} ± {100 * r['ci95']:.2f} | "
                             f"{r['tasks_differing']} of {r['n_tasks']} |")
    return "\n".join(lines)


BEGIN, END = "<!-- begin: tools/loss_reduction_check.py --update-page -->", "<!-- end: tools/loss_reduction_check.py -->"


def page_section(doc: dict) -> str:
    """What book/fidelity.md shows of a results file: its scale, its provenance and the table."""
    prov = doc["provenance"]
    total = 2 * len(prov["seeds"]) + 1  # sum-trained seeds x 2 evaluation steps + one mean-trained model
    done = [f"{s}-shot {len({k.rsplit('/', 1)[0] for k in doc['means'] if f'test_{s}shot' in k})} of {total}"
            for s in doc["shots"]]
    status = "all stages finished" if prov["finished"] else f"unfinished; evaluations done: {', '.join(done)}"
    return (f"{BEGIN}\n*Reduced scale: {doc['meta_iters']:,} meta-iterations per model (the outer step annealed over "
            f"them) instead of 100,000, and {doc['tasks']:,} test tasks per number instead of 10,000. "
            f"Commit {prov['commit'][:12]}, {prov['device']}, {prov['date'][:10]}; {status}.*\n\n"
            f"{markdown_table(doc)}\n{END}")


def update_page(doc: dict, page: Path) -> None:
    """Replace the generated section of ``page`` with :func:`page_section` of ``doc``."""
    text = page.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{page} has no '{BEGIN}' ... '{END}' section to replace")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    atomic_write_text(page, head + page_section(doc) + tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meta-iters", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=1000, help="test tasks per evaluation")
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--work-dir", type=Path, default=ROOT / "checkpoints" / "loss_reduction")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "fidelity" / "loss_reduction.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", default=None, help="a remark recorded in the provenance")
    ap.add_argument("--no-run", action="store_true",
                    help="train and evaluate nothing: rewrite the results file from the stages already done")
    ap.add_argument("--update-page", type=Path, nargs="?", const=ROOT / "book" / "fidelity.md", default=None,
                    help="only write the results file's table into this page (default book/fidelity.md) and stop")
    args = ap.parse_args()
    if args.update_page is not None:
        update_page(json.loads(args.out.read_text()), args.update_page)
        return
    if args.meta_iters < 1 or args.tasks < 2:
        ap.error("--meta-iters must be >= 1 and --tasks >= 2 (an interval needs two tasks)")
    torch.set_num_threads(args.threads)
    shots, seeds = tuple(args.shots), tuple(args.seeds)
    t0 = time.time()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    splits = load_dataset("omniglot")
    configs = {r: check_config(r, args.meta_iters, shots) for r in ("sum", "mean")}
    learner = make_learner(configs["sum"], splits["train"].image_shape)
    losses = {r: classification_loss(learner.model, r) for r in ("sum", "mean")}
    # (trained with, seed, evaluated with): seed 0's comparisons first (both kinds), then the other seeds
    stages = [("sum", seeds[0], "sum"), ("sum", seeds[0], "mean"), ("mean", seeds[0], "mean")]
    stages += [("sum", seed, ev) for seed in seeds[1:] for ev in ("sum", "mean")]
    per_task: dict[str, torch.Tensor] = {}
    trained: dict[tuple[str, int], TrainState] = {}

    def write(finished: bool) -> None:
        doc = {"experiment": "loss_reduction_check", "profile": "reduced",
               "configs": {r: c.to_dict() for r, c in configs.items()},
               "config_hashes": {r: config_hash(c) for r, c in configs.items()},
               "meta_iters": args.meta_iters, "tasks": args.tasks, "shots": list(shots),
               "stages_done": sorted({k.rsplit("/", 1)[0] for k in per_task}),
               "comparisons": summary(per_task, shots, seeds),
               "means": {k: float(v.double().mean()) for k, v in sorted(per_task.items())},
               "trained_states": trained_state_comparison(args.work_dir, configs, seeds[0]),
               "provenance": provenance("cpu", seeds, time.time() - t0, finished,
                                        command="python tools/loss_reduction_check.py " + " ".join(
                                            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                                            for k, v in vars(args).items() if k not in ("work_dir", "out", "no_run", "update_page", "note")),
                                        **({"note": args.note} if args.note else {}))}
        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")

    # shots outermost: every 1-shot comparison is complete before any 5-shot evaluation starts
    for s in shots:
        for train_red, seed, eval_red in stages:
            config = configs[train_red]
            path = args.work_dir / f"{train_red}_seed{seed}_{eval_red}_{s}shot.pt"
            if not path.exists() and args.no_run:
                continue
            if not path.exists():
                if (train_red, seed) not in trained:
                    t = time.time()
                    trained[(train_red, seed)] = meta_train(
                        config, splits["train"], seed=seed, checkpoint=args.work_dir / f"train_{train_red}_seed{seed}.pt",
                        checkpoint_every=50, learner=dataclasses.replace(learner, loss_fn=losses[train_red]),
                        step_fn=SequentialMetaStep())   # the released order on flat buffers (same results)
                    print(f"trained {train_red} seed {seed}: {time.time() - t:.0f}s", flush=True)
                state = trained[(train_red, seed)]
                t = time.time()
                acc = evaluate_resumable(path, learner, losses[eval_red], state, splits["test"], seed, s, args.tasks)
                torch.save(acc, path)
                print(f"evaluated {train_red}-trained seed {seed} with {eval_red}, {s}-shot: "
                      f"{ {k: round(float(v.mean()), 4) for k, v in acc.items()} } {time.time() - t:.0f}s", flush=True)
            for proto, v in torch.load(path).items():
                per_task[f"{train_red}_seed{seed}/{eval_red}/test_{s}shot_5way_{proto}"] = v
            write(finished=False)
    write(finished=len({k.rsplit("/", 1)[0] for k in per_task}) == len(stages) and len(per_task) == 2 * len(stages) * len(shots))
    print(json.dumps(summary(per_task, shots, seeds), indent=1))


if __name__ == "__main__":
    main()
