"""Figure 1: Reptile and MAML meta-trained on sine waves, then adapted to new ones.

The experiment, top to bottom:

1. ``meta_train``: Reptile (the authors' demo: one task per iteration, 5 SGD steps of lr 0.02 on
   mini-batches of 10 of the task's 50 points, outer step 0.1 annealed to 0, 30,000 iterations)
   or second-order MAML (Finn et al.'s sine setup: meta-batch 25, 10 support + 10 query points,
   Adam 1e-3, 70,000 iterations; 5 inner SGD steps of lr 0.02), both from the same random
   initialisation.
2. ``adaptation_curves``: on new tasks, 32 SGD steps (lr 0.02) on 10 sampled points from each
   initialisation; the MSE on a 50-point grid over [-5, 5] after every step.
3. ``run_experiment``: both activations, all seeds, a results file and the trained weights.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.func import vmap

from . import params as P
from .algorithms import maml_batch_gradient, meta_step, meta_step_size, step_weights
from .data.sine import SineTasks, grid, inner_batches, sample_inputs, sample_tasks
from .inner import LossFn, inner_loop, regression_loss
from .models import SineMLP, init_params
from .optim import SGD, Adam
from .params import Params
from .results import (atomic_write_text, config_hash, device_name, git_commit, provenance, results_document, summarize,
                      write_document)

ALGORITHMS = ("reptile", "maml")
INITS = ("random", "reptile", "maml")


@dataclass(frozen=True)
class SineConfig:
    """One meta-training run on sine tasks, in the released code's flag names."""

    algorithm: str = "reptile"      # reptile | maml (second order)
    hidden: tuple[int, ...] = (64, 64)
    train_shots: int = 50           # points drawn per training task (MAML: its support set)
    query_shots: int = 0            # MAML: further points for the outer (query) loss
    inner_batch: int = 10           # --inner-batch
    inner_iters: int = 5            # k, inner SGD steps per task (--inner-iters)
    learning_rate: float = 0.02     # inner SGD step size (--learning-rate)
    meta_step: float = 0.1          # Reptile: outer step eps; MAML: outer Adam's learning rate
    meta_step_final: float = 0.0    # ... annealed linearly to this (--meta-step-final)
    meta_batch: int = 1             # tasks per meta-iteration (--meta-batch)
    meta_iters: int = 30_000        # --meta-iters
    log_every: int = 1_000          # meta-iterations between learning-curve points (ours)
    log_tasks: int = 100            # held-out tasks per learning-curve point (ours)

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.algorithm == "maml" and self.query_shots < 1:
            raise ValueError("MAML needs query_shots >= 1 points for its outer loss")
        for name in ("train_shots", "inner_batch", "inner_iters", "meta_batch", "meta_iters", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# The authors' public sine demo (``reptile-sinewaves-demo.py``): serial Reptile, 30,000 iterations.
REPTILE_SINE = SineConfig()
# Finn et al.'s sine setup (10 shots + 10 query points, meta-batch 25, Adam 1e-3, 70,000
# iterations) on this chapter's task family and network, with the inner loop of our adaptation
# (SGD 0.02; Finn et al. use 0.01) run for 5 full-batch steps, as many as Reptile's. With Finn
# et al.'s single inner step, 32-step adaptation from the MAML initialisation diverged on some
# tasks in a 1,500-iteration probe (the chapter says more).
MAML_SINE = SineConfig(algorithm="maml", train_shots=10, query_shots=10, inner_batch=10, inner_iters=5,
                       learning_rate=0.02, meta_step=1e-3, meta_step_final=1e-3, meta_batch=25,
                       meta_iters=70_000)


@dataclass(frozen=True)
class SineExperiment:
    """Figure 1 as a whole: the two meta-training runs and how new tasks are adapted."""

    name: str = "sine"
    reptile: SineConfig = REPTILE_SINE
    maml: SineConfig = MAML_SINE
    activations: tuple[str, ...] = ("relu", "tanh")  # the first is the main one
    seeds: tuple[int, ...] = (0,)    # one training seed: MAML's 70,000 iterations take hours here
    eval_shots: int = 10              # points a new task is adapted on
    eval_iters: int = 32              # SGD steps of that adaptation
    eval_learning_rate: float = 0.02  # its step size (the demo's inner SGD)
    eval_tasks: int = 10_000          # new tasks per seed for the loss curves
    grid_points: int = 50             # where the loss is measured: linspace(-5, 5, 50)
    example_steps: tuple[int, ...] = (0, 1, 32)  # predictions drawn in the paper's figure
    example_seed: int = 2018          # the example task of the figure

    def config(self, algorithm: str) -> SineConfig:
        return self.reptile if algorithm == "reptile" else self.maml


SINE_PAPER = SineExperiment()


def smoke(exp: SineExperiment = SINE_PAPER) -> SineExperiment:
    """A CPU-minute version of the experiment (same code paths, tiny runs)."""
    r = dataclasses.replace(exp.reptile, meta_iters=200, log_every=50, log_tasks=20)
    m = dataclasses.replace(exp.maml, meta_iters=40, meta_batch=5, meta_step=3e-3, meta_step_final=3e-3,
                            log_every=10, log_tasks=20)
    return dataclasses.replace(exp, reptile=r, maml=m, eval_tasks=200)


def get_experiment(profile: str = "paper") -> SineExperiment:
    if profile not in ("paper", "smoke"):
        raise ValueError(f"profile must be 'paper' or 'smoke', got {profile!r}")
    return SINE_PAPER if profile == "paper" else smoke(SINE_PAPER)


# ----------------------------------------------------------------------------- evaluation

def adaptation_curves(loss_fn: LossFn, phi: Params, tasks: SineTasks, x_support: Tensor, lr: float,
                      steps: int, x_eval: Tensor, chunk: int = 2_000) -> Tensor:
    """MSE on ``x_eval`` after 0..steps full-batch SGD steps on each task's support points.

    x_support: (tasks, shots). Returns (tasks, steps + 1). Tasks run in parallel under ``vmap``.
    """
    opt = SGD(lr)

    def one(x_s: Tensor, y_s: Tensor, y_eval: Tensor) -> Tensor:
        p, losses = phi, [loss_fn(phi, x_eval, y_eval)]
        for _ in range(steps):
            p = inner_loop(loss_fn, p, opt, {}, [(x_s, y_s)]).params
            losses.append(loss_fn(p, x_eval, y_eval))
        return torch.stack(losses)

    out = []
    for s in range(0, len(tasks), chunk):
        t = tasks[s:s + chunk]
        x_s = x_support[s:s + chunk]
        y_eval = t(x_eval.expand(len(t), -1))
        out.append(vmap(one)(x_s, t(x_s), y_eval).detach())
    return torch.cat(out)


def adapted_predictions(model: torch.nn.Module, phi: Params, x_support: Tensor, y_support: Tensor,
                        lr: float, steps: Sequence[int], x_plot: Tensor) -> dict[int, Tensor]:
    """Predictions on ``x_plot`` after each number of SGD steps in ``steps`` (one task)."""
    loss_fn = regression_loss(model)
    opt, p, out = SGD(lr), phi, {}
    for s in range(max(steps) + 1):
        if s in steps:
            out[s] = torch.func.functional_call(model, p, (x_plot,)).detach()
        if s < max(steps):
            p = inner_loop(loss_fn, p, opt, {}, [(x_support, y_support)]).params
    return out


def new_tasks(exp: SineExperiment, seed: int, n: int | None = None) -> tuple[SineTasks, Tensor]:
    """The new tasks of a seed and their support points (the same for every initialisation)."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    tasks = sample_tasks(n or exp.eval_tasks, gen)
    return tasks, sample_inputs(len(tasks), exp.eval_shots, gen)


def example_task(exp: SineExperiment) -> tuple[SineTasks, Tensor]:
    """The single task drawn in the paper-style figure, and its 10 support points."""
    gen = torch.Generator().manual_seed(exp.example_seed)
    task = sample_tasks(1, gen)
    return task, sample_inputs(1, exp.eval_shots, gen)


# ----------------------------------------------------------------------------- meta-training

@dataclass
class TrainResult:
    phi: Params
    init: Params
    history: dict
    wall_time_s: float
    loaded: bool = False      # read back from a saved run rather than trained now


def meta_train(config: SineConfig, activation: str, seed: int, exp: SineExperiment = SINE_PAPER,
               device: str | torch.device = "cpu",
               progress: Callable[[str], None] | None = None) -> TrainResult:
    """Meta-train ``config.algorithm`` on sine tasks from the seed's random initialisation.

    Reptile (Algorithm 1): phi <- phi + eps (U^k(phi) - phi), eps annealed linearly.
    MAML (Section 4): phi <- Adam step along d/dphi L_query(U^k(phi)) (second order).
    """
    model = SineMLP(config.hidden, activation).to(device)
    loss_fn = regression_loss(model)
    init = init_params(model, torch.Generator().manual_seed(seed))
    init = {k: v.to(device) for k, v in init.items()}
    gen = torch.Generator().manual_seed(1_000 + seed)         # training tasks
    val_tasks, val_x = new_tasks(exp, seed=20_000 + seed, n=config.log_tasks)  # learning curve
    x_eval = grid(exp.grid_points).to(device)
    inner_opt = SGD(config.learning_rate)
    weights = step_weights(config.inner_iters)
    phi, outer_state = init, None
    history: dict[str, list] = {"iteration": [], "val_mse_after_adaptation": [], "train_loss": []}
    running, t0 = [], time.time()

    for it in range(config.meta_iters + 1):
        if it % config.log_every == 0 or it == config.meta_iters:
            curve = adaptation_curves(loss_fn, phi, _to(val_tasks, device), val_x.to(device),
                                      exp.eval_learning_rate, exp.eval_iters, x_eval)
            history["iteration"].append(it)
            history["val_mse_after_adaptation"].append(float(curve[:, -1].mean()))
            history["train_loss"].append(float(sum(running) / len(running)) if running else None)
            running = []
            if progress:
                progress(f"{config.algorithm}/{activation}/seed {seed}: iter {it}, "
                         f"val MSE after {exp.eval_iters} steps {history['val_mse_after_adaptation'][-1]:.4f}, "
                         f"{time.time() - t0:.0f} s")
        if it == config.meta_iters:
            break
        step = meta_step_size(config.meta_step, config.meta_step_final, it, config.meta_iters)
        tasks = sample_tasks(config.meta_batch, gen)
        x = sample_inputs(config.meta_batch, config.train_shots + config.query_shots, gen)
        y = tasks(x)
        x, y = x.to(device), y.to(device)
        xs, ys = x[:, :config.train_shots], y[:, :config.train_shots]
        batches = inner_batches(xs, ys, config.inner_batch, config.inner_iters, gen)
        if config.algorithm == "reptile":
            r = meta_step(loss_fn, phi, inner_opt, {}, batches, step, weights,
                          batched=config.meta_batch > 1)
            phi = r.params
            running.append(float(r.losses[:, 0].mean()))  # loss before adapting
        else:
            query = (x[:, config.train_shots:], y[:, config.train_shots:])
            grads, loss = maml_batch_gradient(loss_fn, phi, inner_opt, batches, query)
            outer = Adam(step, beta1=0.9, beta2=0.999, eps=1e-8)  # Finn et al.'s outer optimiser
            if outer_state is None:
                outer_state = outer.init(phi)
            phi, outer_state = outer.step(phi, P.detach(grads), outer_state)
            phi = P.detach(phi)
            running.append(float(loss))  # query loss after adapting
        if not P.all_finite(phi):
            raise FloatingPointError(f"{config.algorithm}/{activation}/seed {seed}: parameters became "
                                     f"non-finite at iteration {it}; lower meta_step or learning_rate")
    return TrainResult(P.detach(phi), init, history, time.time() - t0)


def _to(tasks: SineTasks, device) -> SineTasks:
    return SineTasks(tasks.amplitude.to(device), tasks.phase.to(device))


# ----------------------------------------------------------------------------- the whole figure

def weights_path(folder: str | Path, init: str, activation: str, seed: int) -> Path:
    return Path(folder) / f"sine_{init}_{activation}_seed{seed}.pt"


def save_weights(path: str | Path, phi: Params) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({k: v.detach().cpu().float() for k, v in phi.items()}, tmp)
    tmp.replace(path)


def load_weights(path: str | Path) -> Params:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: re-run the sine experiment with retrain=True "
                                f"(reptile_lib.sine.run_experiment) to recreate it")
    return torch.load(path, map_location="cpu", weights_only=True)


def metric_key(steps: int, init: str, activation: str, main: str) -> str:
    """``mse_after_32_steps_reptile`` for the main activation, ``..._tanh`` for the variant."""
    return f"mse_after_{steps}_steps_{init}" + ("" if activation == main else f"_{activation}")


def evaluate_inits(exp: SineExperiment, inits: dict[str, Params], activation: str, seed: int,
                   device="cpu") -> dict[str, Tensor]:
    """Per-task MSE curves (tasks, eval_iters + 1) of each initialisation on the seed's new tasks."""
    model = SineMLP(exp.reptile.hidden, activation).to(device)
    loss_fn = regression_loss(model)
    tasks, x_s = new_tasks(exp, seed)
    x_eval = grid(exp.grid_points).to(device)
    return {name: adaptation_curves(loss_fn, {k: v.to(device) for k, v in phi.items()}, _to(tasks, device),
                                    x_s.to(device), exp.eval_learning_rate, exp.eval_iters, x_eval).cpu()
            for name, phi in inits.items()}


def example_figure_data(exp: SineExperiment, inits: dict[str, Params], activation: str,
                        n_plot: int = 200) -> dict:
    """What the paper-style panel needs: the true curve, the 10 points, predictions after 0/1/32 steps."""
    model = SineMLP(exp.reptile.hidden, activation)
    task, x_s = example_task(exp)
    x_plot = torch.linspace(-5, 5, n_plot)
    y_s = task(x_s)[0]
    out = {"amplitude": float(task.amplitude[0]), "phase": float(task.phase[0]),
           "x_plot": x_plot.tolist(), "y_true": task(x_plot[None])[0].tolist(),
           "x_support": x_s[0].tolist(), "y_support": y_s.tolist(), "predictions": {}}
    for name, phi in inits.items():
        preds = adapted_predictions(model, phi, x_s[0], y_s, exp.eval_learning_rate, exp.example_steps, x_plot)
        out["predictions"][name] = {str(s): v.tolist() for s, v in preds.items()}
    return out


def train_or_load(exp: SineExperiment, algorithm: str, activation: str, seed: int,
                  weights_dir: str | Path | None = None, device: str = "cpu",
                  progress: Callable[[str], None] | None = print) -> TrainResult:
    """``meta_train``, or its saved result when ``weights_dir`` holds one made by the same config.

    A finished run is saved at once (weights ``.pt`` + a small ``.json`` with its history and
    config hash), so a long experiment can be split over processes and resumed run by run.
    """
    config = exp.config(algorithm)
    key = {"config": dataclasses.asdict(config), "activation": activation, "seed": seed,
           "exp": {k: getattr(exp, k) for k in ("eval_iters", "eval_learning_rate", "eval_shots", "grid_points")}}
    if weights_dir is not None:
        meta = weights_path(weights_dir, algorithm, activation, seed).with_suffix(".json")
        if meta.exists():
            saved = json.loads(meta.read_text())
            if saved.get("config_hash") == config_hash(key):
                if progress:
                    progress(f"{algorithm}/{activation}/seed {seed}: loaded from {meta.parent}")
                init = init_params(SineMLP(config.hidden, activation), torch.Generator().manual_seed(seed))
                return TrainResult(load_weights(meta.with_suffix(".pt")), init, saved["history"],
                                   saved["wall_time_s"], loaded=True)
    commit = git_commit()  # the code that trains, recorded before training
    r = meta_train(config, activation, seed, exp, device, progress)
    if weights_dir is not None:
        save_weights(meta.with_suffix(".pt"), r.phi)
        atomic_write_text(meta, json.dumps({"config_hash": config_hash(key), **key, "history": r.history,
                                            "wall_time_s": r.wall_time_s, "device": device_name(device),
                                            "commit": commit, "torch": torch.__version__},
                                           indent=1) + "\n")
    return r


def run_experiment(exp: SineExperiment = SINE_PAPER, profile: str = "paper", device: str = "cpu",
                   out: str | Path | None = None, weights_dir: str | Path | None = None,
                   progress: Callable[[str], None] | None = print,
                   only: tuple[str, str, int] | None = None) -> dict | None:
    """Train, evaluate and (optionally) write ``out`` and the weights; returns the results document.

    ``only=(algorithm, activation, seed)`` trains (and saves) that one run and returns None: the way
    to spread the runs over processes before a final call assembles the figure.
    """
    t0 = time.time()
    main = exp.activations[0]
    per_task: dict[str, dict[int, list[float]]] = {}
    curves: dict[str, dict] = {}
    histories: dict[str, dict] = {}
    examples: dict[str, dict] = {}
    train_times: dict[str, float] = {}
    trained_here = 0.0
    if only is not None:
        train_or_load(exp, *only, weights_dir=weights_dir, device=device, progress=progress)
        return None
    for activation in exp.activations:
        for seed in exp.seeds:
            inits: dict[str, Params] = {}
            for algorithm in ALGORITHMS:
                r = train_or_load(exp, algorithm, activation, seed, weights_dir, device, progress)
                inits.setdefault("random", r.init)
                inits[algorithm] = r.phi
                histories[f"{algorithm}_{activation}_seed{seed}"] = r.history
                train_times[f"{algorithm}_{activation}_seed{seed}"] = round(r.wall_time_s, 1)
                trained_here += 0.0 if r.loaded else r.wall_time_s
            inits = {k: {n: v.cpu() for n, v in p.items()} for k, p in inits.items()}
            if weights_dir is not None:
                save_weights(weights_path(weights_dir, "random", activation, seed), inits["random"])
            mse = evaluate_inits(exp, inits, activation, seed, device)
            for name, c in mse.items():
                for steps in range(exp.eval_iters + 1):
                    key = metric_key(steps, name, activation, main)
                    per_task.setdefault(key, {})[seed] = c[:, steps].tolist()
            if seed == exp.seeds[0]:
                examples[activation] = example_figure_data(exp, inits, activation)
    metrics, all_steps = {}, {}
    for key, by_seed in per_task.items():
        all_steps[key] = summarize(by_seed)
    for activation in exp.activations:
        curves[activation] = {}
        for name in INITS:
            rows = [all_steps[metric_key(s, name, activation, main)] for s in range(exp.eval_iters + 1)]
            curves[activation][name] = {"mean": [r["mean"] for r in rows], "ci95": [r["ci95"] for r in rows]}
            for s in sorted({0, 1, exp.eval_iters}):
                key = metric_key(s, name, activation, main)
                metrics[key] = all_steps[key]
    extra = {"main_activation": main, "loss_curves": curves, "example": examples,
             "learning_curves": histories, "train_wall_time_s": train_times,
             "eval_grid": grid(exp.grid_points).tolist()}
    # wall time = every run's training (also those trained earlier and loaded) + this evaluation
    wall = time.time() - t0 - trained_here + sum(train_times.values())
    prov = provenance(device, exp.seeds, wall, True, eval_seeds=[10_000 + s for s in exp.seeds],
                      train_wall_time_s=train_times)
    doc = results_document(exp.name, profile, exp, metrics, prov, extra)
    if out is not None:
        write_document(out, doc)
    return doc


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m reptile_lib.sine [--profile paper] [--only reptile relu 0]``: (re)make Figure 1's results.

    ``--only`` trains and saves one run (spread the four runs over processes); without it every
    run is trained or loaded from ``results/weights`` and ``results/sine.json`` is written.
    """
    import argparse

    from .book import results_dir, results_path

    parser = argparse.ArgumentParser(prog="python -m reptile_lib.sine", description=main.__doc__)
    parser.add_argument("--profile", choices=("paper", "smoke"), default="paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest here)")
    parser.add_argument("--only", nargs=3, metavar=("ALGORITHM", "ACTIVATION", "SEED"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    exp = get_experiment(args.profile)
    say = lambda m: print(m, flush=True)
    weights = results_dir() / "weights" if args.profile == "paper" else results_dir() / "smoke" / "weights"
    if args.only:
        run_experiment(exp, args.profile, args.device, weights_dir=weights, progress=say,
                       only=(args.only[0], args.only[1], int(args.only[2])))
    else:
        run_experiment(exp, args.profile, args.device, out=results_path("sine", args.profile),
                       weights_dir=weights, progress=say)


if __name__ == "__main__":
    main()
