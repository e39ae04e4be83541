"""Few-shot evaluation (Section 7 protocol), batched over many tasks with ``vmap``.

Per task (released ``Reptile.evaluate``): adapt a copy of phi for ``eval_iters`` steps of
``eval_batch`` on the support set, starting from the trained inner-optimiser state, which is
restored after the task (so nothing leaks from task to task); then predict one query per class:
- transductive: all queries in one batch (BatchNorm statistics of the queries alone);
- non-transductive: each query in a batch made of the whole support set plus that one query,
  keeping only its output, so no query sees another.
Both predictions come from the same adapted weights, so one adaptation serves both protocols.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .inner import LossFn, inner_loop
from .optim import InnerOptimizer, OptState
from .params import Params
from .tasks import EvalTasks, TaskSampler


@dataclass(frozen=True)
class Accuracy:
    """Mean accuracy over tasks with a 95% normal interval (1.96 standard errors)."""

    mean: float
    ci95: float
    n_tasks: int

    @staticmethod
    def of(per_task: Tensor) -> "Accuracy":
        per_task = per_task.double()
        n = per_task.numel()
        sd = float(per_task.std(unbiased=True)) if n > 1 else float("nan")
        return Accuracy(float(per_task.mean()), 1.96 * sd / math.sqrt(n), n)


def predict(model: nn.Module, params: Params, support_x: Tensor, query_x: Tensor,
            transductive: bool) -> Tensor:
    """Predicted labels of one task's queries (ways,), under either protocol."""
    if transductive:
        return functional_call(model, params, (query_x,)).argmax(-1)

    def one(q: Tensor) -> Tensor:  # batch = support + this query; keep the last output
        return functional_call(model, params, (torch.cat([support_x, q[None]]),))[-1]

    return vmap(one)(query_x).argmax(-1)


def evaluate_tasks(model: nn.Module, loss_fn: LossFn, phi: Params, opt: InnerOptimizer,
                   state: OptState, tasks: EvalTasks) -> dict[str, Tensor]:
    """Per-task accuracy of a chunk of tasks: ``{'transductive': (T,), 'nontransductive': (T,)}``."""

    def task(batches, support_x, query_x, query_y):
        adapted = inner_loop(loss_fn, phi, opt, state, batches).params  # state restored: not returned
        return (predict(model, adapted, support_x, query_x, True) == query_y,
                predict(model, adapted, support_x, query_x, False) == query_y)

    with torch.no_grad():  # inner gradients come from torch.func.grad, which ignores no_grad
        trans, nontrans = vmap(task)(tasks.batches(), tasks.support_x, tasks.query_x, tasks.query_y)
    return {"transductive": trans.float().mean(-1), "nontransductive": nontrans.float().mean(-1)}


def evaluate(model: nn.Module, loss_fn: LossFn, phi: Params, opt: InnerOptimizer, state: OptState,
             sampler: TaskSampler, shots: int, eval_batch: int, eval_iters: int, n_tasks: int,
             chunk: int = 100, replacement: bool = False, progress: bool = False,
             score: Callable[[EvalTasks], dict[str, Tensor]] | None = None) -> dict[str, Tensor]:
    """Per-task accuracies over ``n_tasks`` tasks (the paper uses 10,000), both protocols.

    ``score`` replaces :func:`evaluate_tasks` on each chunk (e.g. the engine's one-task-at-a-time
    evaluator); the tasks drawn are the same whichever scores them.
    """
    score = score or (lambda tasks: evaluate_tasks(model, loss_fn, phi, opt, state, tasks))
    out: dict[str, list[Tensor]] = {"transductive": [], "nontransductive": []}
    chunks = range(0, n_tasks, chunk)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc=f"eval {shots}-shot", unit="chunk", leave=False)
    for start in chunks:
        tasks = sampler.eval_tasks(min(chunk, n_tasks - start), shots, eval_batch, eval_iters, replacement)
        for k, v in score(tasks).items():
            out[k].append(v.cpu())
    return {k: torch.cat(v) for k, v in out.items()}
