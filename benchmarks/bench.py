"""Milliseconds per meta-iteration of every training path, 10,000-task evaluation time, kernel counts.

    python benchmarks/bench.py                     # CUDA if present, else the CPU in --quick form
    python benchmarks/bench.py --device cpu --quick --threads 1
    python benchmarks/bench.py --device cuda --out benchmarks/results/h100.json

In one process on one device, with the paper's hyper-parameters (Omniglot 5-way, Omniglot 20-way,
the 84-pixel Mini-ImageNet net; meta-batch 5) on synthetic data of the real shapes:

- ``serial``            one task at a time, ``nn.Module`` + ``torch.optim.Adam`` (the usual port; ``engine.serial``)
- ``reference_batched`` the library's batched path: ``algorithms.meta_step``, vmap over tasks, dict parameters,
        the mean Adam carry (as every ``engine_*`` and ``runsN`` path)
- ``reference_sequential``  ``meta_step(batched=False, adam_carry='sequential')``: the released Adam order
- ``engine_sequential`` the released order on flat buffers, one task at a time (``engine.sequential``; what the
  queue trains with on a CPU), with the one-call C++ kernels (``engine.native``) where they build, which the
  results record as ``kernels``
- ``engine_sequential_torch``  the same on PyTorch's kernels (channels_last), some 60 calls per inner step
- ``engine_eager``      ``engine.MetaStepRunner`` run eagerly (flat buffers, batched networks)
- ``engine_graph``      the same captured as one CUDA graph per meta-iteration (CUDA only)
- ``engine_graph_fused_adam``  plus the Adam update compiled into one kernel (CUDA only, ``--fuse-adam``)
- ``runsN``             N independent runs (seeds) in one batched computation (graph on CUDA, eager on CPU)

Every path includes its own task sampling, as a training loop would. Each figure is the median of
``--repeats`` repeats of ``iters`` consecutive meta-iterations; repeats go round-robin over the paths so
that a noisy machine slows them alike. Writes JSON (device, torch, commit, settings, every repeat) and
prints a table. Synthetic data: timing does not depend on pixel values; Mini-ImageNet is given 60 images
per class instead of 600 (only the length of a per-class permutation changes).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from reptile_lib.algorithms import meta_step, meta_step_size  # noqa: E402
from reptile_lib.configs import (CIFAR_FS_5WAY, MINIIMAGENET_5WAY, OMNIGLOT_5WAY, OMNIGLOT_20WAY, Config,  # noqa: E402
                                 config_by_name)
from reptile_lib.engine.counting import count_cuda_kernels, count_ops  # noqa: E402
from reptile_lib.engine.evaluate import default_eval_chunk, fast_evaluate  # noqa: E402
from reptile_lib.engine.runner import MetaStepRunner, eps_schedule  # noqa: E402
from reptile_lib.engine.sampling import TaskShape  # noqa: E402
from reptile_lib.engine.sequential import (FlatNet, SequentialMetaStep, resolve_kernels,  # noqa: E402
                                           sequential_evaluate)
from reptile_lib.engine.serial import SerialReptile  # noqa: E402
from reptile_lib.evaluate import evaluate  # noqa: E402
from reptile_lib.models import init_params  # noqa: E402
from reptile_lib.optim import make_optimizer  # noqa: E402
from reptile_lib.results import atomic_write_text, device_name, git_commit  # noqa: E402
from reptile_lib.tasks import ClassDataset, TaskSampler  # noqa: E402
from reptile_lib.train import make_learner  # noqa: E402

CONFIGS: dict[str, Config] = {"omniglot_5way": OMNIGLOT_5WAY, "omniglot_20way": OMNIGLOT_20WAY,
                              "miniimagenet_5way": MINIIMAGENET_5WAY, "cifar_fs_5way": CIFAR_FS_5WAY}
CPU_CONFIGS = ("omniglot_5way", "omniglot_20way", "cifar_fs_5way")   # the paper-scale runs of this project's CPU queue
# Synthetic stand-ins with the real shapes: (classes, images per class, channels, size, dtype, scale)
DATA = {"omniglot": (4800, 20, 1, 28, torch.bool, 1.0), "miniimagenet": (64, 60, 3, 84, torch.uint8, 255.0),
        "cifar_fs": (64, 600, 3, 32, torch.uint8, 255.0)}
# The CPU targets at 2 threads on a quiet machine (ms per meta-iteration of engine_sequential; eval s per 10,000 tasks)
CPU_TARGETS = {"omniglot_5way": 35.0, "omniglot_20way": 130.0, "cifar_fs_5way": 90.0}
CPU_EVAL_TARGETS = {"omniglot_5way": 300.0, "omniglot_20way": 1200.0}
# Evaluations that can be timed: (config, index of its eval setting, key in the results file)
EVAL_CONFIGS = {"omniglot_5way": (OMNIGLOT_5WAY, 0, "eval"),                    # 5-way 1-shot
                "omniglot_20way": (OMNIGLOT_20WAY, 1, "eval_20way_5shot"),      # 20-way 5-shot
                "cifar_fs_5way": (CIFAR_FS_5WAY, 1, "eval_cifar_fs_5shot"),     # 5-way 5-shot, 15-image steps
                "figure3": (config_by_name("figure3[g1+g2]"), 0, "eval_figure3")}  # 5 SGD steps of 25 images
LAUNCH_US = 2.5  # launch-to-launch latency per kernel inside a CUDA graph on an H100
# The engine's design targets on an H100 (ms per meta-iteration unless said otherwise)
TARGETS = {"omniglot_5way": 1.0, "omniglot_20way": 2.5, "miniimagenet_5way": 6.0}
TARGET_SPEEDUP_5WAY, TARGET_PER_SEED_MS, TARGET_EVAL_S = 50.0, 0.5, 20.0


def smoke_config(config: Config) -> Config:
    """Tiny shapes for testing this script (not for timing)."""
    evals = tuple(dataclasses.replace(e, eval_iters=3) for e in config.evals)
    return dataclasses.replace(config, meta_batch=2, inner_iters=2, inner_batch=5, train_shots=5, evals=evals)


def data_kind(config: Config) -> str:
    return "cifar_fs" if config.dataset == "cifar_fs" else config.model


def synthetic(config: Config, device) -> ClassDataset:
    classes, per_class, ch, size, dtype, scale = DATA[data_kind(config)]
    g = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        images = torch.rand(classes, per_class, ch, size, size, generator=g) < 0.8
    else:
        images = torch.randint(0, 256, (classes, per_class, ch, size, size), generator=g, dtype=torch.uint8)
    return ClassDataset(images.to(device), f"synthetic-{config.model}", tuple(map(str, range(classes))), scale)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the paths: setup() once, run(n) iterations
class Path_:
    def __init__(self, name: str, iters: int):
        self.name, self.iters, self.times, self.info = name, iters, [], {}
        self.cpu_times: list[float] = []   # process CPU time (all threads) per iteration

    def setup(self): ...

    def run(self, n: int): ...

    def one(self):
        """One meta-iteration's worth of work, for operation / kernel counts."""
        self.run(1)


class Serial(Path_):
    def __init__(self, config, data, device, iters):
        super().__init__("serial", iters)
        self.config, self.data, self.device = config, data, device

    def setup(self):
        c = self.config
        learner = make_learner(c, self.data.image_shape, self.device)
        self.loop = SerialReptile(learner.model, init_params(learner.model, torch.Generator().manual_seed(0)),
                                  c.learning_rate, c.sgd)
        self.loop.phi = {k: v.to(self.device) for k, v in self.loop.phi.items()}
        self.sampler = TaskSampler(self.data, c.classes, torch.Generator(self.device).manual_seed(1))
        self.i = 0

    def run(self, n):
        c = self.config
        for _ in range(n):
            batches = self.sampler.train_batches(c.meta_batch, c.train_shots, c.inner_batch, c.inner_iters)
            self.loop.step(batches, meta_step_size(c.meta_step, c.meta_step_final, self.i, c.meta_iters))
            self.i += 1


class Reference(Path_):
    def __init__(self, config, data, device, iters, sequential=False):
        super().__init__("reference_sequential" if sequential else "reference_batched", iters)
        self.config, self.data, self.device = config, data, device
        self.sequential = sequential
        self.step = meta_step

    def setup(self):
        c = self.config
        self.learner = make_learner(c, self.data.image_shape, self.device)
        phi = init_params(self.learner.model, torch.Generator().manual_seed(0))
        self.phi = {k: v.to(self.device) for k, v in phi.items()}
        self.state = self.learner.opt.init(self.phi)
        self.sampler = TaskSampler(self.data, c.classes, torch.Generator(self.device).manual_seed(1))
        self.i = 0

    def run(self, n):
        c, l = self.config, self.learner
        for _ in range(n):
            batches = self.sampler.train_batches(c.meta_batch, c.train_shots, c.inner_batch, c.inner_iters)
            r = self.step(l.loss_fn, self.phi, l.opt, self.state, batches,
                          meta_step_size(c.meta_step, c.meta_step_final, self.i, c.meta_iters), c.weights,
                          **({"batched": False, "adam_carry": "sequential"} if self.sequential else {}))
            self.phi, self.state = r.params, r.state
            self.i += 1


class Sequential(Reference):
    """The released Adam order on ``engine.sequential`` (what ``reproduce.train_step`` returns on a CPU)."""

    def __init__(self, config, data, device, iters, kernels="auto"):
        super().__init__(config, data, device, iters, sequential=True)
        self.name = "engine_sequential" if kernels == "auto" else f"engine_sequential_{kernels}"
        self.step = SequentialMetaStep(kernels)

    def setup(self):
        super().setup()
        net = FlatNet(self.learner.model)
        self.info["kernels"] = resolve_kernels(self.step.kernels, net, next(iter(self.phi.values())).dtype)


class Engine(Path_):
    def __init__(self, name, config, data, device, iters, engine, runs=1, fuse_adam=False):
        super().__init__(name, iters)
        self.config, self.data, self.device = config, data, device
        self.engine, self.runs, self.fuse_adam = engine, runs, fuse_adam

    def setup(self):
        c = self.config
        learner = make_learner(c, self.data.image_shape, self.device)
        opts = [make_optimizer(c.sgd, c.learning_rate)] * self.runs
        self.runner = MetaStepRunner(learner.model, learner.loss_fn, opts, TaskShape.of(c), self.data,
                                     [eps_schedule(c.meta_step, c.meta_step_final, c.meta_iters)] * self.runs,
                                     [c.weights] * self.runs, self.device, self.engine, "auto", self.fuse_adam)
        phis = [init_params(learner.model, torch.Generator().manual_seed(s)) for s in range(self.runs)]
        self.runner.load(phis, [opts[0].init(p) for p in phis], 0)
        self.gens = [torch.Generator(self.device).manual_seed(1 + s) for s in range(self.runs)]
        if self.engine == "graph":
            t = time.perf_counter()
            self.runner.capture()
            self.info["capture_s"] = round(time.perf_counter() - t, 2)

    def run(self, n):
        for _ in range(n):
            self.runner.step(self.gens)

    def one_eager(self):
        """The meta-iteration's operations run eagerly (a graph replay is not an ATen operation)."""
        self.runner.draws.draw(self.gens)
        self.runner.body()


def time_paths(paths, device, repeats, warmup, log, deadline):
    """Round-robin repeats; returns nothing, fills path.times (ms per iteration) and path.info."""
    live = []
    for p in paths:
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t = time.perf_counter()
            p.setup()
            p.run(warmup)
            sync(device)
            p.info["setup_and_warmup_s"] = round(time.perf_counter() - t, 2)
            if device.type == "cuda":
                p.info["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            live.append(p)
        except Exception as e:  # keep the other figures; record why this one is missing
            p.info["error"] = f"{type(e).__name__}: {e}"
            log(f"  {p.name}: FAILED in setup: {p.info['error']}")
            traceback.print_exc()
    for rep in range(repeats):
        for p in live:
            if time.time() > deadline and p.times:
                continue
            try:
                sync(device)
                t, c0 = time.perf_counter(), time.process_time()
                p.run(p.iters)
                sync(device)
                p.times.append(1000 * (time.perf_counter() - t) / p.iters)
                p.cpu_times.append(1000 * (time.process_time() - c0) / p.iters)
            except Exception as e:
                p.info["error"] = f"{type(e).__name__}: {e}"
                log(f"  {p.name}: FAILED: {p.info['error']}")
        log(f"  repeat {rep + 1}/{repeats}: " + ", ".join(f"{p.name} {p.times[-1]:.2f}" for p in live if p.times))


def count(path, device):
    """Work per meta-iteration: ATen operations (any device) and, on CUDA, kernels from the profiler."""
    out = {}
    try:
        out["aten_ops_per_iter"] = sum(count_ops(getattr(path, "one_eager", path.one)).values())
        if device.type == "cuda":
            out["kernels_per_iter"] = count_cuda_kernels(path.one)
            if isinstance(path, Engine) and path.engine == "graph":  # the replay alone (draws excluded)
                out["kernels_per_replay"] = count_cuda_kernels(path.runner.run_step)
    except Exception as e:
        out["count_error"] = f"{type(e).__name__}: {e}"
    return out


def agreement(config, data, device, iters=5):
    """Graph vs eager engine (CUDA), or engine vs reference ``meta_step`` (CPU), from the same warm state and tasks.

    Warm Adam state (step 1000, second moments 1e-6): from v = 0, Adam's first steps are sign-like for
    parameters whose gradient is near zero, and any two float implementations drift apart there.
    ``after_1`` (one meta-iteration) is the agreement figure; ``after_N`` shows how last-bit differences
    grow over N iterations on these random-noise tasks, whose training is chaotic (seen on the CPU:
    1.9e-9 after one Omniglot 5-way iteration, 1e-3 after three, with the reference itself in the loop).
    """
    c = config
    learner = make_learner(c, data.image_shape, device)
    phi = {k: v.to(device) for k, v in init_params(learner.model, torch.Generator().manual_seed(0)).items()}
    opt = make_optimizer(c.sgd, c.learning_rate)
    warm = ({} if c.sgd else {"step": torch.tensor(1000.0, device=device),
                              "v": {k: torch.full_like(v, 1e-6) for k, v in phi.items()}})
    out = {"iters": iters, "state": "warm Adam (step 1000, v = 1e-6)"}

    def engine_run(engine, grads="auto"):
        r = MetaStepRunner(learner.model, learner.loss_fn, [opt], TaskShape.of(c), data,
                           [eps_schedule(c.meta_step, c.meta_step_final, c.meta_iters)], [c.weights], device,
                           engine, grads)
        r.load([phi], [warm], 0)
        g = torch.Generator(device).manual_seed(3)
        seen = []
        for _ in range(iters):
            r.step([g])
            seen.append(r.phi[0].clone())
        return seen, r.finite()[0]

    def reference_run():
        p, state, seen = phi, warm, []
        sampler = TaskSampler(data, c.classes, torch.Generator(device).manual_seed(3))
        for i in range(iters):
            batches = sampler.train_batches(c.meta_batch, c.train_shots, c.inner_batch, c.inner_iters)
            r = meta_step(learner.loss_fn, p, opt, state, batches,
                          meta_step_size(c.meta_step, c.meta_step_final, i, c.meta_iters), c.weights)
            p, state = r.params, r.state
            seen.append(torch.cat([p[k].reshape(-1) for k in p]))
        return seen

    if device.type == "cuda":
        a, finite = engine_run("graph")
        b, _ = engine_run("eager")
        out["compared"] = "engine graph vs engine eager (batched networks)"
    else:
        a, finite = engine_run("eager", "vmap")
        b = reference_run()
        out["compared"] = "engine eager (vmap backend) vs reference meta_step"
    for label, i in (("after_1", 0), (f"after_{iters}", iters - 1)):
        d = (a[i] - b[i]).abs()
        out[label] = {"max_abs": float(d.max()), "rel_l2": float(d.norm() / b[i].norm())}
    out["max_abs"], out["rel_l2"] = out[f"after_{iters}"]["max_abs"], out[f"after_{iters}"]["rel_l2"]
    out["finite"] = bool(finite)
    return out


def agreement_sequential(config, data, device, iters=2):
    """``engine_sequential`` against ``meta_step(batched=False, adam_carry='sequential')`` from the same warm
    Adam state and tasks, in float64 (``max_abs``, ``rel_l2``: equal up to rounding).

    Also each path's float32 result against the float64 one (``float32_error_*``, max |diff|): from this
    state (v = 1e-6, far below g^2, so every first step is a sign step of 0.03) rounding grows to the
    size of the update itself, in either path alike; which is why a float32 comparison of two kernel
    sets says nothing here, and the float64 one is the check.
    """
    out = {"iters": iters, "state": "warm Adam (step 1000, v = 1e-6)",
           "compared": "engine_sequential vs meta_step(batched=False, adam_carry='sequential'), float64"}
    old = torch.get_default_dtype()
    phi0 = init_params(make_learner(config, data.image_shape, device).model, torch.Generator().manual_seed(0))
    runs = {}
    for dtype in (torch.float64, torch.float32):
        torch.set_default_dtype(dtype)
        try:
            runs[dtype] = _sequential_pair(config, data, device, iters, phi0)
        finally:
            torch.set_default_dtype(old)
    a, b = runs[torch.float64]
    d = torch.cat([(a[k] - b[k]).reshape(-1) for k in a])
    out.update(max_abs=float(d.abs().max()), rel_l2=float(d.norm() / torch.cat([b[k].reshape(-1) for k in b]).norm()))
    for name, params in zip(("engine", "reference"), runs[torch.float32]):
        out[f"float32_error_{name}"] = max(float((params[k].double() - b[k]).abs().max()) for k in b)
    return out


def _sequential_pair(config, data, device, iters, phi0=None):
    """Both paths' parameters after ``iters`` meta-iterations in the default dtype, from ``phi0`` (float32
    draws, so that a float64 run starts from the same numbers) and the same tasks."""
    c = config
    learner = make_learner(c, data.image_shape, device)
    dtype = torch.get_default_dtype()
    if phi0 is None:
        phi0 = init_params(learner.model, torch.Generator().manual_seed(0))
    phi = {k: v.to(device, dtype) for k, v in phi0.items()}
    warm = ({} if c.sgd else {"step": torch.tensor(1000.0, device=device),
                              "v": {k: torch.full_like(v, 1e-6) for k, v in phi.items()}})
    fast = SequentialMetaStep()
    sampler = TaskSampler(data, c.classes, torch.Generator(device).manual_seed(3))
    a, b, sa, sb = phi, phi, warm, warm
    for i in range(iters):
        batches = [(x.to(dtype), y) for x, y in sampler.train_batches(c.meta_batch, c.train_shots, c.inner_batch,
                                                                     c.inner_iters)]
        eps = meta_step_size(c.meta_step, c.meta_step_final, i, c.meta_iters)
        ra = fast(learner.loss_fn, a, learner.opt, sa, batches, eps, c.weights)
        rb = meta_step(learner.loss_fn, b, learner.opt, sb, batches, eps, c.weights, batched=False,
                       adam_carry="sequential")
        a, b, sa, sb = ra.params, rb.params, ra.state, rb.state
    return a, b


def time_eval(config, data, device, n_tasks, engine, log, repeats=2, names=("reference", "engine", "sequential"),
              spec_index=0):
    """10,000-task evaluation (the config's ``evals[spec_index]``): reference ``evaluate``, ``fast_evaluate``
    (``engine``) and, on a CPU, ``engine.sequential.sequential_evaluate`` (``sequential``: the one-call
    kernels where they build; ``sequential_torch``: PyTorch's kernels)."""
    spec = config.evals[spec_index]
    learner = make_learner(config, data.image_shape, device)
    phi = {k: v.to(device) for k, v in init_params(learner.model, torch.Generator().manual_seed(0)).items()}
    state = learner.opt.init(phi)
    out = {"config": config.name, "ways": config.classes, "shots": spec.shots, "eval_batch": spec.eval_batch,
           "eval_iters": spec.eval_iters, "tasks_timed": n_tasks, "protocols": "transductive and non-transductive "
           "from one adaptation per task (the non-transductive figure alone costs the same adaptation)"}
    chunk = default_eval_chunk(learner.model, data.image_shape, config.classes, spec.shots, spec.eval_batch, device)
    out["engine_chunk"] = chunk
    runs = {"reference": lambda s, n: evaluate(learner.model, learner.loss_fn, phi, learner.opt, state, s, spec.shots,
                                               spec.eval_batch, spec.eval_iters, n, chunk=100),
            "engine": lambda s, n: fast_evaluate(learner.model, learner.loss_fn, phi, learner.opt, state, s, spec.shots,
                                                 spec.eval_batch, spec.eval_iters, n, chunk=chunk, engine=engine),
            "sequential": lambda s, n: sequential_evaluate(learner.model, learner.loss_fn, phi, learner.opt, state, s,
                                                           spec.shots, spec.eval_batch, spec.eval_iters, n, chunk=100),
            "sequential_torch": lambda s, n: sequential_evaluate(
                learner.model, learner.loss_fn, phi, learner.opt, state, s, spec.shots, spec.eval_batch,
                spec.eval_iters, n, chunk=100, kernels="torch")}
    if device.type != "cpu":
        names = [n for n in names if not n.startswith("sequential")]
    else:
        out["sequential_kernels"] = resolve_kernels("auto", FlatNet(learner.model), next(iter(phi.values())).dtype)
    runs = {k: v for k, v in runs.items() if k in names}
    accs, times = {}, {name: [] for name in runs}
    for name, fn in runs.items():  # warm-up: one chunk (on CUDA the engine captures a graph in each call)
        try:
            fn(TaskSampler(data, config.classes, torch.Generator(device).manual_seed(9)),
               min(n_tasks, chunk if name == "engine" else 100, 100 if device.type != "cuda" else n_tasks))
        except Exception as e:
            out[f"{name}_error"] = f"{type(e).__name__}: {e}"
            log(f"  eval {name}: FAILED: {out[f'{name}_error']}")
            traceback.print_exc()
    for rep in range(repeats):  # alternate, so that a noisy machine slows both alike
        for name, fn in runs.items():
            if f"{name}_error" in out:
                continue
            sync(device)
            t = time.perf_counter()
            accs[name] = fn(TaskSampler(data, config.classes, torch.Generator(device).manual_seed(5)), n_tasks)
            sync(device)
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        if ts:
            s = statistics.median(ts)
            out[f"{name}_s"], out[f"{name}_repeats_s"] = round(s, 3), [round(t, 3) for t in ts]
            out[f"{name}_s_per_10000"] = round(s * 10000 / n_tasks, 2)
            log(f"  eval {name}: {n_tasks} tasks in {s:.2f} s ({s * 10000 / n_tasks:.1f} s per 10,000), "
                f"median of {len(ts)}")
    out["extrapolated"] = n_tasks != 10000
    for name in ("engine", "sequential", "sequential_torch"):
        if "reference" in accs and name in accs:
            a, b = accs["reference"]["nontransductive"], accs[name]["nontransductive"]
            key = "same_per_task_accuracy_fraction" + ("" if name == "engine" else f"_{name}")
            out[key] = float((a == b).float().mean())
    return out


def flops_per_iteration(config: Config, image_shape: tuple[int, ...]) -> int:
    """Floating-point operations of one meta-iteration's convolutions and matrix products (forward and
    backward of every inner step: meta_batch x inner_iters batches of inner_batch images), counted by
    ``torch.utils.flop_counter`` on the reference network; normalisation and the optimiser are left out."""
    from torch.utils.flop_counter import FlopCounterMode

    model = make_learner(config, image_shape, "cpu").model
    x = torch.rand(config.inner_batch, *image_shape)
    y = torch.arange(config.inner_batch) % config.classes
    with FlopCounterMode(display=False) as counter:
        loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum")
        torch.autograd.grad(loss, list(model.parameters()))
    return counter.get_total_flops() * config.meta_batch * config.inner_iters


def matmul_gflops(device, size: int = 1024, seconds: float = 1.0) -> float:
    """What this device's float32 matrix product reaches at the current thread count (GFLOP/s, best of
    several timings of a size x size product): the ceiling against which the paths' GFLOP/s read."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best, end = float("inf"), time.time() + seconds
    while time.time() < end or best == float("inf"):
        sync(device)
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t) / 5)
    return round(2 * size ** 3 / best / 1e9, 1)


def cpu_seconds() -> tuple[float, float] | None:
    """(busy, stolen) CPU seconds of the whole machine so far, from /proc/stat (None off Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def snapshot() -> tuple[tuple[float, float] | None, float, float]:
    """What :func:`other_load` compares: (machine busy and stolen seconds, this process's CPU seconds, time)."""
    return cpu_seconds(), own_cpu_seconds(), time.time()


def other_load(start, end) -> dict | None:
    """Mean cores kept busy by other processes between two :func:`snapshot` s (the machine's busy time minus
    ours: the load average would count this benchmark's own threads), and by the hypervisor (stolen)."""
    (m0, own0, t0), (m1, own1, t1) = start, end
    if not m0 or not m1 or t1 <= t0:
        return None
    other = max(0.0, (m1[0] - m0[0]) - (own1 - own0)) / (t1 - t0)
    return {"other_processes_cores": round(other, 2), "stolen_cores": round((m1[1] - m0[1]) / (t1 - t0), 2)}


def summarize(path):
    d = dict(path.info)
    if path.times:
        d.update(ms_per_iter=round(statistics.median(path.times), 4), repeats_ms=[round(t, 4) for t in path.times],
                 iters_per_repeat=path.iters)
        if path.cpu_times:
            d["cpu_ms_per_iter"] = round(statistics.median(path.cpu_times), 4)
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", nargs="+", default=None, choices=list(CONFIGS),
                    help="default: Omniglot 5/20-way and Mini-ImageNet on CUDA; Omniglot 5/20-way and CIFAR-FS on a CPU")
    ap.add_argument("--paths", nargs="+", default=None,
                    help="only these training paths (serial, reference_batched, reference_sequential, engine_eager, "
                         "engine_sequential, engine_sequential_torch, engine_graph, runsN)")
    ap.add_argument("--eval-paths", nargs="+", default=["reference", "engine", "sequential"],
                    choices=["reference", "engine", "sequential", "sequential_torch"], help="evaluations timed")
    ap.add_argument("--eval-configs", nargs="+", default=["omniglot_5way"], choices=list(EVAL_CONFIGS),
                    help="evaluations timed: omniglot_5way (1-shot), omniglot_20way (5-shot), cifar_fs_5way (5-shot), "
                         "figure3 (a Figure 3 curve's 5-shot evaluation)")
    ap.add_argument("--quick", action="store_true", help="few iterations (the default on a CPU)")
    ap.add_argument("--full", action="store_true", help="the GPU's iteration counts even on a CPU")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per path (default 5 on CUDA, 3 quick)")
    ap.add_argument("--runs", type=int, nargs="*", default=None, help="batched-run counts (default: 3 8 on CUDA, 3 on CPU)")
    ap.add_argument("--eval-tasks", type=int, default=None, help="tasks timed for evaluation (default 10000 on CUDA, 100 quick)")
    ap.add_argument("--no-serial", action="store_true", help="skip the serial loop")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--fuse-adam", action="store_true", help="also time the graph with the Adam update compiled (CUDA)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--budget-s", type=float, default=1e9, help="stop repeating once this many seconds have passed")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/<device>-<date>.json)")
    ap.add_argument("--iters", type=int, default=None, help="meta-iterations per repeat for every path")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny shapes (2 tasks x 2 steps, 3 eval steps) to test this script; not a benchmark")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick or (device.type != "cuda" and not args.full)
    cuda = device.type == "cuda"
    repeats = args.repeats or (3 if quick else 5)
    runs = args.runs if args.runs is not None else ([3, 8] if cuda else [3])
    eval_tasks = args.eval_tasks or (100 if quick else 10000)
    deadline = time.time() + args.budget_s
    t_start = time.time()

    def log(msg):
        print(msg, flush=True)

    def iters(kind, config):
        if args.iters:
            return args.iters
        big = config.classes > 5 or config.model == "miniimagenet"
        if quick:
            return 1 if big else 2
        return {"serial": 10 if big else 20, "eager": 10 if big else 20, "graph": 100 if big else 200}[kind]

    # on a CPU the model matters as much as the thread count (one matrix-product rate differs 2x between two
    # 2-core machines of the same kind)
    doc = {"benchmark": "reptile meta-iteration", "device": torch.cuda.get_device_name(device) if cuda else
           f"{device_name(device)[:-1]}, {os.cpu_count()} cores)",
           "device_type": device.type, "torch": torch.__version__, "commit": git_commit(),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
           "threads": torch.get_num_threads(), "command": " ".join(sys.argv),
           "settings": {"quick": quick, "repeats": repeats, "launch_us_per_kernel": LAUNCH_US,
                        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None},
           "configs": {}}
    start = snapshot()   # what the rest of the machine does meanwhile
    doc["settings"]["matmul_gflops"] = matmul_gflops(device)
    if cuda:
        doc["settings"].update(cudnn_tf32=torch.backends.cudnn.allow_tf32,
                               matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                               cudnn_benchmark=torch.backends.cudnn.benchmark)
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        f"{'h100' if cuda and 'H100' in doc['device'] else device.type}-{dt.date.today().isoformat()}.json")

    def save():
        doc["wall_s"] = round(time.time() - t_start, 1)
        atomic_write_text(out, json.dumps(doc, indent=1) + "\n")

    doc["settings"]["smoke"] = args.smoke
    configs = args.configs or (["omniglot_5way", "omniglot_20way", "miniimagenet_5way"] if cuda else list(CPU_CONFIGS))
    for name in configs:
        config = smoke_config(CONFIGS[name]) if args.smoke else CONFIGS[name]
        log(f"== {name}: {config.classes}-way, {config.meta_batch} tasks x {config.inner_iters} steps x "
            f"{config.inner_batch} images, lr {config.learning_rate} ({'SGD' if config.sgd else 'Adam'})")
        data = synthetic(config, device)
        paths = []
        if not args.no_serial:
            paths.append(Serial(config, data, device, iters("serial", config)))
        paths.append(Reference(config, data, device, iters("eager", config)))
        if not cuda:  # the released Adam order: the reference and the fast path the CPU queue trains with
            paths.append(Reference(config, data, device, iters("eager", config), sequential=True))
            paths.append(Sequential(config, data, device, iters("eager", config)))
            paths.append(Sequential(config, data, device, iters("eager", config), kernels="torch"))
        paths.append(Engine("engine_eager", config, data, device, iters("eager", config), "eager"))
        if cuda:
            paths.append(Engine("engine_graph", config, data, device, iters("graph", config), "graph"))
            if args.fuse_adam:
                paths.append(Engine("engine_graph_fused_adam", config, data, device, iters("graph", config), "graph",
                                    fuse_adam=True))
        if name == "omniglot_5way":
            for r in runs:
                paths.append(Engine(f"runs{r}", config, data, device, iters("graph" if cuda else "eager", config),
                                    "graph" if cuda else "eager", runs=r))
        if args.paths:
            paths = [p for p in paths if p.name in args.paths]
        time_paths(paths, device, repeats, warmup=1 if quick else 3, log=log, deadline=deadline)
        entry = {"hyper": {k: getattr(config, k) for k in ("classes", "train_shots", "inner_batch", "inner_iters",
                                                           "meta_batch", "learning_rate", "sgd", "meta_step")},
                 "data": f"synthetic {DATA[data_kind(config)][:4]} (classes, per class, channels, size)", "paths": {},
                 "gflop_per_iter": round(flops_per_iteration(config, tuple(data.image_shape)) / 1e9, 4)}
        for p in paths:
            entry["paths"][p.name] = summarize(p)
            if p.times:
                entry["paths"][p.name].update(count(p, device))
            if isinstance(p, Engine) and p.runs > 1 and p.times:
                entry["paths"][p.name]["runs"] = p.runs
                entry["paths"][p.name]["ms_per_run"] = round(statistics.median(p.times) / p.runs, 4)
        serial = entry["paths"].get("serial", {}).get("ms_per_iter")
        if serial:
            entry["speedup_vs_serial"] = {k: round(serial / v["ms_per_iter"], 2) for k, v in entry["paths"].items()
                                          if "ms_per_iter" in v}
        if any(p.name == "engine_sequential" and p.times for p in paths):
            try:
                entry["agreement_sequential"] = agreement_sequential(config, data, device)
            except Exception as e:
                entry["agreement_sequential"] = {"error": f"{type(e).__name__}: {e}"}
                traceback.print_exc()
        try:
            entry["agreement"] = agreement(config, data, device, iters=3 if quick else 5)
            a = entry["agreement"]
            log(f"  agreement ({a['compared']}): after 1 iteration max |diff| {a['after_1']['max_abs']:.2e} "
                f"(relative {a['after_1']['rel_l2']:.2e}); after {a['iters']} {a['max_abs']:.2e} ({a['rel_l2']:.2e})")
        except Exception as e:
            entry["agreement"] = {"error": f"{type(e).__name__}: {e}"}
            traceback.print_exc()
        doc["configs"][name] = entry
        save()
    if not args.no_eval:
        for which in args.eval_configs:   # 5-way 1-shot -> doc["eval"]; 20-way 5-shot -> doc["eval_20way_5shot"] ...
            base, index, key = EVAL_CONFIGS[which]
            ev = smoke_config(base) if args.smoke else base
            log(f"== evaluation: {eval_tasks} tasks, {ev.classes}-way {ev.evals[index].shots}-shot, "
                f"{ev.evals[index].eval_iters} steps")
            doc[key] = time_eval(ev, synthetic(ev, device), device, eval_tasks, "graph" if cuda else "eager", log,
                                 repeats=2 if quick else 3, names=args.eval_paths, spec_index=index)
            save()
    doc["settings"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    load = other_load(start, snapshot())
    if load:
        doc["settings"].update(load)
        if load["other_processes_cores"] > 0.25:
            doc["settings"]["machine_loaded"] = (
                f"other processes kept {load['other_processes_cores']:.1f} of {os.cpu_count()} cores busy on "
                "average: absolute times are slower than on a quiet machine; ratios between paths, measured "
                "round-robin in one run, are the comparable figures")
    if cuda:
        doc["targets"] = targets(doc)
    save()
    print_table(doc)
    log(f"wrote {out}")
    return 0


def targets(doc) -> dict:
    """The engine's design targets, each with the measured figure (only meaningful on an H100)."""
    t = {}
    for name, limit in TARGETS.items():
        p = doc["configs"].get(name, {}).get("paths", {}).get("engine_graph", {})
        if "ms_per_iter" in p:
            t[f"{name}_graph_ms"] = {"target": limit, "measured": p["ms_per_iter"], "met": p["ms_per_iter"] <= limit}
    sp = doc["configs"].get("omniglot_5way", {}).get("speedup_vs_serial", {}).get("engine_graph")
    if sp:
        t["omniglot_5way_speedup_vs_serial"] = {"target": TARGET_SPEEDUP_5WAY, "measured": sp, "met": sp >= TARGET_SPEEDUP_5WAY}
    r3 = doc["configs"].get("omniglot_5way", {}).get("paths", {}).get("runs3", {})
    if "ms_per_run" in r3:
        t["omniglot_5way_3_seeds_ms_per_seed"] = {"target": TARGET_PER_SEED_MS, "measured": r3["ms_per_run"],
                                                  "met": r3["ms_per_run"] <= TARGET_PER_SEED_MS}
    e = doc.get("eval", {})
    if "engine_s_per_10000" in e:
        t["eval_10000_tasks_s"] = {"target": TARGET_EVAL_S, "measured": e["engine_s_per_10000"],
                                   "met": e["engine_s_per_10000"] <= TARGET_EVAL_S, "extrapolated": e["extrapolated"]}
    return t


def print_table(doc) -> None:
    print(f"\n{doc['device']} | torch {doc['torch']} | commit {doc['commit'][:12]} | medians of {doc['settings']['repeats']} repeats")
    head = f"{'config':18s} {'path':24s} {'ms/iter':>9s} {'x serial':>8s} {'ops':>6s} {'kernels':>7s} {'floor ms':>8s} {'mem MB':>8s}"
    print(head)
    print("-" * len(head))
    for name, entry in doc["configs"].items():
        for path, p in entry["paths"].items():
            if "ms_per_iter" not in p:
                print(f"{name:18s} {path:24s} {'failed: ' + p.get('error', '?')[:60]}")
                continue
            k = p.get("kernels_per_replay") or p.get("kernels_per_iter")
            floor = f"{k * LAUNCH_US / 1000:8.2f}" if k else f"{'':8s}"
            ms = p["ms_per_iter"]
            extra = f"  ({p['ms_per_run']:.3f} ms/run)" if "ms_per_run" in p else ""
            print(f"{name:18s} {path:24s} {ms:9.2f} {entry.get('speedup_vs_serial', {}).get(path, math.nan):8.1f} "
                  f"{p.get('aten_ops_per_iter', ''):>6} {k or '':>7} {floor} {p.get('peak_mem_mb', ''):>8}{extra}")
    for _, _, key in EVAL_CONFIGS.values():
        e = doc.get(key)
        if e:
            ex = " (extrapolated from %d tasks)" % e["tasks_timed"] if e["extrapolated"] else ""
            print(f"evaluation, 10,000 tasks {e['ways']}-way {e['shots']}-shot {e['eval_iters']} steps: reference "
                  f"{e.get('reference_s_per_10000', '-')} s, engine {e.get('engine_s_per_10000', '-')} s, "
                  f"sequential {e.get('sequential_s_per_10000', '-')} s{ex}")
    for k, v in doc.get("targets", {}).items():
        print(f"target {k}: {v['measured']} vs {v['target']} -> {'met' if v['met'] else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
