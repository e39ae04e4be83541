"""Few-shot evaluation (Section 7 protocol) with the engine: thousands of tasks per batch on a GPU.

Same tasks and same protocol as :func:`reptile_lib.evaluate.evaluate`: tasks are drawn by the
given sampler in blocks of ``block`` (the reference's default chunk, 100), so the task set is the
reference's whatever the compute chunk; each task adapts a copy of phi for ``eval_iters`` steps from
the trained Adam state (the engine's flat inner loop, all tasks of a chunk at once), then predicts
its queries transductively and non-transductively with the reference's ``predict``. On CUDA a
chunk's whole computation is one CUDA graph, replayed for every chunk (the last one padded).
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.func import vmap

from ..evaluate import predict
from ..inner import LossFn
from ..optim import InnerOptimizer, OptState
from ..params import Params
from ..tasks import EvalTasks, TaskSampler, _take
from .flat import BatchLayout, FlatLayout
from .nets import make_grads
from .runner import GraphOrEager, resolve_engine
from .step import FlatOptimizer

FIELDS = ("support_x", "support_y", "query_x", "query_y", "batch_index")


def activation_numel(model: nn.Module, image_shape: tuple[int, int, int]) -> int:
    """Elements of all layer outputs for one image (a dry run on the CPU), for memory estimates."""
    import copy
    net = copy.deepcopy(model).cpu()
    total = 0

    def hook(_m, _i, out):
        nonlocal total
        total += out.numel()

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    with torch.no_grad():
        net(torch.zeros(1, *image_shape))
    for h in handles:
        h.remove()
    return total


def default_eval_chunk(model: nn.Module, image_shape: tuple[int, int, int], ways: int, shots: int, eval_batch: int,
                       device: Any, block: int = 100, budget_bytes: int | None = None) -> int:
    """Tasks evaluated at once: ``block`` on a CPU; on a GPU as many as fit a quarter of free memory (<= 2000).

    Per task: the adapted parameters, Adam's state, gradient and temporaries (~8 P floats), the
    inner step's activations (~6 per layer output and image) and the non-transductive predictions
    (``ways`` forward passes of ``ways * shots + 1`` images each).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return block
    if budget_bytes is None:
        free, _ = torch.cuda.mem_get_info(device)
        budget_bytes = free // 4
    params = sum(p.numel() for p in model.parameters())
    act = activation_numel(model, image_shape)
    per_task = 4 * (8 * params + 6 * act * eval_batch + 2 * act * ways * (ways * shots + 2))
    return int(max(1, min(2000, budget_bytes // per_task)))


def task_chunks(sampler: TaskSampler, n_tasks: int, chunk: int, block: int, shots: int, eval_batch: int,
                eval_iters: int, replacement: bool) -> Iterator[EvalTasks]:
    """Chunks of ``chunk`` tasks (the last may be shorter), drawn in blocks of ``block`` as the reference."""
    pending: list[EvalTasks] = []
    have, drawn = 0, 0
    while drawn < n_tasks or have:
        while have < chunk and drawn < n_tasks:
            t = sampler.eval_tasks(min(block, n_tasks - drawn), shots, eval_batch, eval_iters, replacement)
            pending.append(t)
            have += t.query_y.shape[0]
            drawn += t.query_y.shape[0]
        joined = EvalTasks(*(torch.cat([getattr(t, f) for t in pending]) for f in FIELDS))
        take = min(chunk, have)
        yield EvalTasks(*(getattr(joined, f)[:take] for f in FIELDS))
        rest = EvalTasks(*(getattr(joined, f)[take:] for f in FIELDS))
        pending = [rest] if rest.query_y.shape[0] else []
        have -= take


class EvalRunner(GraphOrEager):
    """Adapt-and-predict for a chunk of tasks of fixed shape, eager or as a CUDA graph."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, phi: Params, opt: InnerOptimizer, state: OptState,
                 example: EvalTasks, chunk: int, device: Any, engine: str = "graph", grads: str = "auto"):
        self.device = torch.device(device)
        self.engine = resolve_engine(engine, self.device)
        self.model, self.chunk = model, chunk
        self.layout = FlatLayout.of(phi)
        self.batch = BatchLayout(self.layout, 1, chunk, self.device, index_maps=False)
        self.grads = make_grads(grads, model, loss_fn, self.batch)
        self.opt = FlatOptimizer.of([opt])
        self.phi = self.layout.flatten({k: v.to(self.device) for k, v in phi.items()})
        self.v = self.layout.flatten({k: t.to(self.device) for k, t in state["v"].items()}) if self.opt.adam else None
        self.step_count = state["step"].to(self.device, torch.get_default_dtype()).reshape(1) if self.opt.adam else None
        self.lr = torch.tensor([float(opt.lr)], device=self.device)
        self.static = EvalTasks(*(torch.zeros((chunk, *getattr(example, f).shape[1:]), dtype=getattr(example, f).dtype,
                                              device=self.device) for f in FIELDS))
        self.trans = torch.zeros(chunk, device=self.device)
        self.nontrans = torch.zeros(chunk, device=self.device)
        self.graph = None

    def body(self) -> None:
        tasks, n = self.static, self.chunk
        iters = tasks.batch_index.shape[1]
        lr_ts = self.opt.step_sizes(self.lr, self.step_count, iters)
        p = self.batch.expand_one(self.phi)
        v = self.batch.expand_one(self.v) if self.opt.adam else None
        for i in range(iters):  # the inner loop of every task; Adam's state is not kept afterwards
            idx = tasks.batch_index[:, i]
            x, y = _take(tasks.support_x, idx), _take(tasks.support_y, idx)
            shared = self.layout.views(self.phi[None]) if i == 0 and self.grads.shares_first_step else None
            g, _ = self.grads(p, x[None], y[None], shared)
            p, v = self.opt.update(p, g, v, lr_ts[i, 0])
        adapted = self.batch.views(p)

        def task(params, support_x, query_x, query_y):
            return (predict(self.model, params, support_x, query_x, True) == query_y,
                    predict(self.model, params, support_x, query_x, False) == query_y)

        with torch.no_grad():
            trans, nontrans = vmap(task)(adapted, tasks.support_x, tasks.query_x, tasks.query_y)
        self.trans.copy_(trans.float().mean(-1))
        self.nontrans.copy_(nontrans.float().mean(-1))

    def capture(self) -> None:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self.body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.body()
        self.graph = graph

    def __call__(self, tasks: EvalTasks) -> tuple[Tensor, Tensor]:
        n = tasks.query_y.shape[0]
        for f in FIELDS:  # pad a short last chunk with copies of its first task; their results are dropped
            src = getattr(tasks, f)
            dst = getattr(self.static, f)
            dst[:n].copy_(src)
            if n < self.chunk:
                dst[n:].copy_(src[:1].expand(self.chunk - n, *src.shape[1:]))
        self.run_step()
        return self.trans[:n].to("cpu", copy=True), self.nontrans[:n].to("cpu", copy=True)  # the buffers are reused


def fast_evaluate(model: nn.Module, loss_fn: LossFn, phi: Params, opt: InnerOptimizer, state: OptState,
                  sampler: TaskSampler, shots: int, eval_batch: int, eval_iters: int, n_tasks: int,
                  chunk: int | None = None, replacement: bool = False, progress: bool = False,
                  engine: str = "graph", grads: str = "auto", block: int = 100) -> dict[str, Tensor]:
    """Per-task accuracies over ``n_tasks`` tasks, both protocols (as :func:`reptile_lib.evaluate.evaluate`).

    ``chunk``: tasks computed at once (default :func:`default_eval_chunk`); ``block``: tasks drawn
    per sampler call, which fixes the task set (100 = the reference's default ``chunk``).
    """
    device = next(iter(phi.values())).device
    data = sampler.data
    chunk = chunk or default_eval_chunk(model, data.image_shape, sampler.ways, shots, eval_batch, device, block)
    chunk = min(chunk, n_tasks)
    chunks = task_chunks(sampler, n_tasks, chunk, block, shots, eval_batch, eval_iters, replacement)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, total=math.ceil(n_tasks / chunk), desc=f"eval {shots}-shot", unit="chunk", leave=False)
    runner, out = None, {"transductive": [], "nontransductive": []}
    for tasks in chunks:
        if runner is None:
            runner = EvalRunner(model, loss_fn, phi, opt, state, tasks, chunk, device, engine, grads)
        trans, nontrans = runner(tasks)
        out["transductive"].append(trans)
        out["nontransductive"].append(nontrans)
    return {k: torch.cat(v) for k, v in out.items()}
