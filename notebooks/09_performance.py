# %% [markdown]
# # Performance

# %% tags=["parameters"]
profile = "paper"  # this page times the library; the parameters are here for uniformity
device = "cpu"     # device to time on
seed = 0
retrain = False
n_seeds = 1

# %% tags=["remove-input"]
import json

import torch
from IPython.display import HTML, Markdown, display

from reptile_lib import book, configs, report, reproduce, results

bench_files = sorted(book.benchmarks_dir().glob("*.json"))
PLAN = reproduce.load_plan()
COST_COLUMNS = {"config": "Config", "ms / meta-iteration": "ms / meta-iteration", "training hours": "Training hours",
                "evaluation tasks per setting": "Eval tasks per setting", "evaluation hours": "Eval hours",
                "total hours": "Total hours", "evaluation timed on": "Eval timed on"}
display(Markdown(
    ":::{admonition} The paper's claim, what we measured, the verdict\n:class: tip\n\n"
    "- **The paper makes no claim about speed.** It only notes that Reptile, being first-order, is cheaper "
    "than MAML. This page measures what a reproduction costs with this library: milliseconds per "
    f"meta-iteration, from {len(bench_files)} recorded benchmark file{'s' if len(bench_files) != 1 else ''} and from a short timing made while the "
    "page was executed. **No verdict** applies.\n:::"))

# %% [markdown]
# How long the library takes per meta-iteration decides what a reproduction costs: a paper-scale
# Omniglot run is 100,000 meta-iterations, a 20-way run 200,000. First, the paper-scale runs' own
# record: every time the queue (`make reproduce`) trained or evaluated a unit, it logged where, on
# which path and how fast. Then the benchmarks recorded by `make bench` (under
# `benchmarks/results/`); last, a few meta-iterations timed on the machine that executes this page,
# which is only a rough guide.
#
# ## The paper-scale runs, as they ran
#
# One row per unit of the queue that has run (`runs/logs/<unit>.jsonl`). A unit runs in segments: a
# segment is one stretch of work between a start and a stop, and a run of many hours spans many
# starts and stops, commits and sometimes machines. Milliseconds per meta-iteration are those of the
# unit's newest segments on the path it trains with now, back to a tenth of the run (the kernels got
# faster while the runs went on), learning-curve points included, with whatever else the machine was
# doing at the time; the segments themselves follow the table. A segment cut short by a kill is
# counted up to its last save and marked as such.

# %% tags=["remove-input"]
UNIT_COLUMNS = {"unit": "Unit", "segments": "Segments", "days": "Ran (UTC)", "iterations": "Meta-iterations",
                "training hours": "Training (h)", "ms / iteration": "ms / iteration, recent",
                "evaluation": "Evaluation"}
SEGMENT_COLUMNS = {"unit": "Unit", "started": "Started (UTC), commit", "path": "Training step (threads)",
                   "iterations": "Meta-iterations", "ms / iteration": "ms / iteration", "evaluation": "Evaluation"}
seg_rows = reproduce.segment_rows(PLAN)
if seg_rows:
    display(Markdown(f"Machines: {'; '.join(sorted({r['device'] for r in seg_rows}))}."))
    display(report.html_table([dict(r, unit=book.breakable(r["unit"])) for r in reproduce.unit_rows(PLAN)],
                              UNIT_COLUMNS))
else:
    display(Markdown("No unit of the queue has run yet."))
left = [r for r in reproduce.status_rows(PLAN) if r["state"] != "done" and r["state"] != "pending"]
if left:
    display(Markdown(f"Units under way, as of {reproduce.queue_time(PLAN)} (the newest save of the queue):"))
for r in left:
    if r["ms_per_iter"] is None:   # too few iterations yet to measure its speed
        display(Markdown(f"**{r['unit']}**: {r['state']}; its speed is not measured yet."))
        continue
    if r["state"].startswith("evaluating"):
        to_go = ("its evaluation speed is not measured yet" if r["eval_estimated"] else
                 f"about {r['hours_left']:.1f} hours left")
        display(Markdown(f"**{r['unit']}**: {r['state']}; {to_go}."))
        continue
    to_go = (f"about {r['hours_left']:.1f} hours of training left, then its evaluation (not timed yet)"
             if r["eval_estimated"] else f"about {r['hours_left']:.1f} hours left, training and evaluation")
    display(Markdown(f"**{r['unit']}**: {r['state']}; at {r['ms_per_iter']:.0f} ms per meta-iteration (its newest "
                     f"segments), {to_go}."))

# %% tags=["remove-input"]
if seg_rows:   # folded: a few rows per unit, hundreds over the whole reproduction
    segment_table = report.html_table([dict(r, unit=book.breakable(r["unit"])) for r in seg_rows], SEGMENT_COLUMNS)
    display(HTML(f"<details><summary>Every segment ({len(seg_rows)}): when it started, at which commit, on which "
                 f"path, how fast</summary>{segment_table.data}</details>"))

# %% [markdown]
# ## Recorded benchmarks

# %% tags=["remove-input", "nbval-check-output"]
for path in bench_files:
    doc = json.loads(path.read_text())
    settings = doc["settings"]
    busy = (f"other processes busy on {settings['other_processes_cores']:.2f} cores on average while it ran"
            if "other_processes_cores" in settings else
            f"load average {settings.get('load_average', ['?'])[0]:.1f} when it started")
    ceiling = (f"; float32 matrix products reach {settings['matmul_gflops']:.0f} GFLOP/s at its thread count"
               if "matmul_gflops" in settings else "")
    display(Markdown(f"**{path.name}**: {doc['device']}, torch {doc['torch']}, commit `{doc['commit'][:12]}`, "
                     f"{doc['date'][:10]}, {busy}{ceiling}; median of {settings['repeats']} repeats. Command: "
                     f"`{doc['command']}`"))
    display(report.html_table(book.benchmark_rows(doc)))
    fast = {name: book.gflops(e, "engine_sequential") for name, e in doc["configs"].items()}
    fast = {name: g for name, g in fast.items() if g}
    if fast and "matmul_gflops" in settings:
        display(Markdown("On `engine_sequential` the convolutions and matrix products of a meta-iteration run at " + ", ".join(
            f"{g:.0f} GFLOP/s for {name} ({g / settings['matmul_gflops']:.0%} of the matrix-product figure)"
            for name, g in fast.items()) + "."))
    if settings.get("machine_loaded") and "other_processes_cores" in settings:
        display(Markdown(f"*Loaded machine: {settings['machine_loaded']}.*"))
    elif settings.get("machine_loaded"):
        display(Markdown(f"*Loaded machine (load average {settings['load_average'][0]:.1f} at the start, "
                         f"{settings['load_average_end'][0]:.1f} at the end): {settings['machine_loaded']}.*"))
    for key in sorted(k for k in doc if k.startswith("eval")):
        e = doc.get(key)
        if isinstance(e, dict) and "ways" in e:
            display(Markdown(
                f"Evaluation of 10,000 tasks (`{e['config']}`: {e['ways']}-way {e['shots']}-shot, {e['eval_iters']} "
                f"steps of {e['eval_batch']} images, both protocols "
                f"from one adaptation), seconds: library {e.get('reference_s_per_10000', '—')}, engine "
                f"{e.get('engine_s_per_10000', '—')}, sequential (one task at a time"
                + (", one C++ call per step" if e.get("sequential_kernels") == "native" else "") + ") "
                f"{e.get('sequential_s_per_10000', '—')}"
                + (f", sequential on PyTorch's kernels {e['sequential_torch_s_per_10000']}"
                   if "sequential_torch_s_per_10000" in e else "")
                + (f" (extrapolated from {e['tasks_timed']} tasks)" if e.get("extrapolated") else "") + "."))
    if "engine_sequential" in json.dumps(doc):
        display(Markdown("What each paper-scale run costs at the speed of this file (so at its recorded load): "
                         "training on `engine_sequential` (what the CPU queue trains with), evaluation at the "
                         "`sequential` scorer's seconds per task (what the queue scores with), for the tasks the "
                         "queue evaluates per eval setting:"))
        display(report.html_table(book.run_cost_rows(doc), COST_COLUMNS))
if not bench_files:
    display(Markdown("No benchmark file in `benchmarks/results/`: run `make bench`."))

# %% [markdown]
# `engine_sequential` is the released Adam order (each task starts from the Adam state the previous
# task left) on flat buffers, one task at a time. Where a C++ compiler is at hand (the file records
# `kernels`), each inner step is one call into `reptile_lib/engine/native.cpp`: the forward pass, the
# summed cross-entropy, the whole gradient and the Adam step, its convolutions as im2col plus one
# matrix product of the BLAS PyTorch itself links; elsewhere it runs PyTorch's kernels, some 60 calls
# per inner step (`engine_sequential_torch`, timed beside it). `reference_sequential` is the library's
# own computation of the same order (`meta_step(batched=False, adam_carry="sequential")`); both
# fast variants equal it to float rounding (checked in float64 by `tests/test_sequential.py` and
# `tests/test_native.py`). On a CPU, `reptile train` and the paper-scale queue train with
# `engine_sequential`, Figure 3's plain-SGD runs included (with SGD no state passes between tasks, so
# every order is the same computation). The queue also scores every evaluation task with the same flat network, one task at a
# time (`sequential` above; `engine.sequential.task_scorer`): the reference `evaluate` runs 100 tasks
# per operation under `vmap`, which turns every convolution into a grouped one and every
# non-transductive prediction into a batch of batches; on a CPU that costs more than it saves.
#
# ## Where the time goes on a CPU
#
# A meta-iteration of the Omniglot 5-way config is 25 forward and backward passes of 10 images
# through four small convolutions and a dense layer: 3.93 GFLOP of convolutions and matrix products
# (counted by `torch.utils.flop_counter`; the tables' GFLOP/s divide that count by the time). On
# PyTorch's kernels every call to a convolution, a normalisation, an activation or the optimiser pays
# a fixed cost comparable to its arithmetic; one call per inner step removes that cost, and what is
# left is mostly the matrix products themselves and the passes over memory around them (im2col,
# BatchNorm).
#
# :::{admonition} How the C++ kernels were made faster (details)
# :class: dropdown
#
# How a product is asked for matters: the first convolution's weight gradient (9
# kernel entries by 64 filters, summed over 1,960 positions for 10 Omniglot images) ran at 7 GFLOP/s
# when the BLAS wrote it filter by filter and at 47 GFLOP/s when it writes the transpose, which the
# kernels now ask for and transpose back (measured on the AMD EPYC; `native.cpp`, `conv_backward`).
# So does where the data is between passes: a convolution's input gradient is formed and scattered a
# few images at a time, and BatchNorm -> max-pool's backward pass finishes one image before the next,
# so that what one pass writes the next reads from the core's cache, not from memory (6-14% off one
# gradient call, the same results bit for bit). And so does the order of a loop: that same backward
# pass visits each 2x2 pooling window and writes each of its four values once (the BatchNorm part,
# plus the upstream gradient where the value was the window's maximum), instead of a pass over the
# whole map followed by scattered additions at the maxima (the CIFAR-FS gradient call took 0.83-0.85
# of its former time). Whether a value is its window's maximum was still decided by a branch, which
# goes one way or the other at random, and which kept the loop one channel at a time: sampled with
# `perf` on the queue's CIFAR-FS worker, that backward pass, almost all of it this loop, was 31% of
# the run's time. Both values are now computed and one is picked by a bit mask, the loop runs 8
# channels per vector instruction, and a CIFAR-FS meta-iteration went from 222-234 ms to 164-167 ms
# on one quiet core (AMD EPYC, paired runs of `benchmarks/bench.py --configs cifar_fs_5way --paths
# engine_sequential`; gradients bit for bit the same; Omniglot's network, whose BatchNorm is
# followed by ReLU, not pooling, is unchanged).
# :::
#
# The table below puts each config's arithmetic next to the machine's float32 matrix-product rate
# (a large product, the figure
# beside each file): even at that rate, which these small products do not reach, a meta-iteration
# could not be much faster than the floor shown. Tried and not adopted, because on this CPU they were
# no faster for these shapes or would change what is computed: compiling the inner step with
# `torch.compile`, PyTorch's own (non-oneDNN) convolution kernels, and bfloat16 autocast. Two threads
# for one run gain less than a second run on the other core (compare the 1- and 2-thread files), so
# the queue runs two single-thread workers, one unit on each core. Machines of the same size differ:
# the files name the CPU where they recorded it, and the time per meta-iteration follows each
# machine's matrix-product rate (in the table below, half the rate takes about twice the time).

# %% tags=["remove-input"]
floor_rows = []
for path in bench_files:
    doc = json.loads(path.read_text())
    rate = doc["settings"].get("matmul_gflops")
    for name, e in doc["configs"].items():
        ms = e.get("paths", {}).get("engine_sequential", {}).get("ms_per_iter")
        if rate and ms and e.get("gflop_per_iter"):
            floor_rows.append({"File": path.name, "Machine": doc["device"], "Matrix products, GFLOP/s": f"{rate:.0f}",
                               "Config": name, "GFLOP / meta-iteration": f"{e['gflop_per_iter']:.2f}",
                               "Floor at the matrix-product rate, ms": f"{1e3 * e['gflop_per_iter'] / rate:.0f}",
                               "engine_sequential, ms": f"{ms:.0f}"})
if floor_rows:
    display(report.html_table(floor_rows))

# %% [markdown]
# On a CPU the fastest path is `engine_sequential` with one C++ call per inner step (the tables above);
# the batched engine (`vmap` over a meta-batch's tasks, one launch per operation) is for the GPU, where a
# meta-iteration of these small networks is hundreds of tiny kernels and launch overhead dominates; its CUDA-graph path has no recorded timing in this book yet
# (`benchmarks/gpu_check.sh` runs the benchmark on a GPU).
#
# ## Measured while this page was executed
#
# One meta-iteration of the Omniglot 5-way config (5 tasks, 5 inner Adam steps of 10 images) on each
# path: the batched path (all tasks at once with `torch.func.vmap`, Adam's state averaged over them),
# the library's reference loop in the released code's order (Adam's state carried from task to task;
# `--engine reference`), and, on a CPU, the fast path of that same order that `reptile train` takes by
# default (`engine_sequential`). Other jobs on the machine slow these numbers down, and three
# iterations are a rough guide only; the tests do not check them.

# %% tags=["remove-input"]
config = configs.OMNIGLOT_5WAY
timings = book.time_meta_iterations(config, iters=3, device=device, seed=seed)
display(report.html_table([{"Path": t["path"], "ms per meta-iteration": f"{t['ms per meta-iteration']:.1f}"}
                           for t in timings]))
display(Markdown(f"*Measured on {results.device_name(device)}, torch {torch.__version__}, "
                 f"{timings[0]['timed iterations']} timed meta-iterations per path after one warm-up.*"))

# %% [markdown]
# ## What to take away

# %% tags=["remove-input"]
fast_segs = [s for u in PLAN.of("omniglot_5way") for s in reproduce.segments(PLAN, u)
             if s.get("iterations") and s.get("train_s") and s.get("train_path", "").endswith("SequentialMetaStep")]
native_segs = [s for s in fast_segs if s.get("kernels") == "native"]
segs = native_segs or fast_segs
kernels = "one C++ call per inner step" if native_segs else "PyTorch's kernels"
if segs:
    per = [1000 * s["train_s"] / s["iterations"] for s in segs]
    typical = 1000 * sum(s["train_s"] for s in segs) / sum(s["iterations"] for s in segs)
    machines = sorted({s.get("device", "") for s in segs})
    speed = (f"took {typical:.0f} milliseconds per meta-iteration with {kernels} on one core of the queue's "
             f"machine{'s' if len(machines) > 1 else ''} ({'; '.join(machines)}: all such segments above, "
             f"{sum(s['iterations'] for s in segs):,} meta-iterations; a segment took {min(per):.0f} to "
             f"{max(per):.0f} depending on what else ran), so a 100,000-iteration run takes about "
             f"{typical / 36:.1f} hours of training")
else:
    speed = "has no recorded queue segment yet; the benchmark files above give its expected speed"
display(Markdown(
    f"- A paper-scale Omniglot 5-way meta-iteration on the released order's fast path {speed}.\n"
    "- On these small convolutions, PyTorch's per-call cost was the limit; with one call per inner step the "
    "matrix products and the passes over memory around them are, and two single-thread runs side by side still "
    "use a 2-core machine better than one run on two threads.\n"
    "- The faster paths change how the computation is laid out, never what it computes: the tests check them "
    "against the library's reference path."))
