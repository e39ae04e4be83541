"""The queue on many devices: ``torchrun ... -m reptile_lib.cli reproduce [--split-meta-batch]``.

Two ways to use N processes (ranks) of ``torch.distributed``, Gloo on CPUs and NCCL for CUDA tensors,
each rank on its own device (``cuda:LOCAL_RANK``, or the CPU):

- **Units over ranks** (the default): every rank walks the plan in order and trains and evaluates
  the units it claims (:func:`claim`), so different seeds and experiments run at once. The results
  files are the single-process ones; rank 0 writes them after all ranks have finished (a barrier).
- **One meta-batch over ranks** (``--split-meta-batch``): the ranks train one unit together; each
  draws the same meta-batch from the same generator, adapts its slice of meta_batch / world_size
  tasks and the outer update (Algorithm 2) averages across ranks with ``all_reduce``
  (:func:`split_step`). Rank 0 checkpoints and evaluates.

Every segment of ``runs/logs/<unit>.jsonl`` records the rank, world size and host that ran it.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from .algorithms import MetaStepResult, meta_step
from .configs import Config

# The waits between units (a barrier while another rank trains for hours, rank 0 evaluating while the
# others wait) are long by design; a dead rank is noticed by torchrun, which stops the others.
UNIT_WAIT = timedelta(days=7)

SEQUENTIAL_ERROR = (
    "--split-meta-batch cannot run a unit with adam_carry='sequential' ({unit}): that carry starts each "
    "task's Adam from the state the previous task left, so task t+1 cannot begin before task t has "
    "finished and the tasks of a meta-batch cannot adapt on different ranks at once. Split only units "
    "with adam_carry = \"mean\" (e.g. --only omniglot_5way_mean_carry), or drop --split-meta-batch to "
    "spread whole units over the ranks.")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the launch."""

    rank: int
    world: int
    local_rank: int
    host: str
    device: str
    control: Any = None     # a Gloo group with a long timeout, for the waits between units

    @property
    def provenance(self) -> dict:
        return {"rank": self.rank, "local_rank": self.local_rank, "world_size": self.world}

    def tag(self) -> str:
        return f"rank {self.rank}/{self.world} on {self.host}" if self.world > 1 else self.host


def launched() -> bool:
    """True under ``torchrun`` (or any launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_ranks(device: str = "auto") -> Ranks:
    """Join the launch's process group; each rank takes ``cuda:LOCAL_RANK`` (or the CPU).

    Without a launcher this is a world of one (no process group), which runs as the plain queue.
    """
    host = socket.gethostname()
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device {device!r}: under torchrun use auto, cpu or cuda (rank r takes "
                         "cuda:LOCAL_RANK); to pick GPUs, set CUDA_VISIBLE_DEVICES")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no GPU; use --device cpu (Gloo) or auto")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if not launched():
        return Ranks(0, 1, 0, host, "cuda" if cuda else "cpu")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        n = torch.cuda.device_count()
        if local >= n:
            raise ValueError(f"rank {rank} has LOCAL_RANK {local} but {host} has {n} GPU(s): launch torchrun "
                             f"with --nproc_per_node={n} or fewer")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        # CUDA tensors (the split meta-batch's all_reduce) go over NCCL, CPU objects over Gloo.
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
    control = dist.new_group(backend="gloo", timeout=UNIT_WAIT) if world > 1 else None
    return Ranks(rank, world, local, host, f"cuda:{local}" if cuda else "cpu", control)


def _wait_all(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier(group=ranks.control)


def any_rank(flag: bool, ranks: Ranks, group: Any = None) -> bool:
    """True on every rank when ``flag`` is True on some rank (so all ranks stop at the same iteration)."""
    if ranks.world == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return bool(t.item())


# ---------------------------------------------------------------- units over ranks
def claim(unit_id: str, ranks: Ranks) -> bool:
    """Claim a unit for this rank: True for exactly one rank per unit and launch.

    The claim is an atomic ``add`` on the launch's key-value store (the TCPStore that torchrun's
    rendezvous set up): the store serialises the adds, so the first rank gets 1 and owns the unit.
    The store lives as long as the launch; torchrun ends a launch when one of its ranks dies, so a
    dead rank's claim can never block the unit: the next launch (a fresh store) finds the unit half
    trained, claims it anew and resumes it from its checkpoint. No lock files to go stale, and no
    reliance on O_EXCL over a network file system.
    """
    if ranks.world == 1:
        return True
    store = dist.distributed_c10d._get_default_store()
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")   # torchrun --max-restarts: fresh claims
    return store.add(f"reptile/claim/{attempt}/{unit_id}", 1) == 1


def _summarize(plan: Any, units: Sequence[Any], rebuild: bool) -> None:
    """Rank 0, after the barrier: the results of every experiment with newly finished units."""
    from .reproduce import _in_results, _rebuild_chapter, unit_state, write_experiment_results

    chapters = []
    for name in dict.fromkeys(u.experiment.name for u in units):
        if any(unit_state(plan, u)["phase"] == "done" and not _in_results(plan, u) for u in plan.of(name)):
            write_experiment_results(plan, name)
            chapter = plan.experiments[name].chapter
            if chapter and chapter not in chapters:
                chapters.append(chapter)
    for chapter in chapters if rebuild else []:
        _rebuild_chapter(chapter)


def units_over_ranks(plan: Any, ranks: Ranks, *, data_root: str | None = None, stop: Callable[[], bool],
                     deadline: float | None = None, only: Sequence[str] | None = None,
                     progress: bool = False, rebuild: bool = True) -> int:
    """Each rank trains and evaluates the units it claims; rank 0 writes the results after a barrier.

    Returns the number of selected units still not done.
    """
    from .reproduce import run_unit, select_units, unit_state

    units = select_units(plan, only)
    for unit in units:
        if stop() or (deadline is not None and time.time() > deadline):
            break
        if unit_state(plan, unit)["phase"] == "done" or not claim(unit.id, ranks):
            continue
        print(f"reproduce [{ranks.tag()}, {ranks.device}]: {unit.id}", file=sys.stderr, flush=True)
        run_unit(plan, unit, device=ranks.device, data_root=data_root, stop=stop, deadline=deadline,
                 progress=progress and ranks.rank == 0, rebuild=False, summarize=False,
                 provenance=ranks.provenance)
    if stop():
        # A signal: torchrun is ending the launch (Ctrl-C, or another rank died). Leave at once; the
        # next launch's rank 0 writes the results of any unit finished here.
        return sum(unit_state(plan, u)["phase"] != "done" for u in units)
    _wait_all(ranks)
    if ranks.rank == 0:
        _summarize(plan, units, rebuild)
    _wait_all(ranks)
    return sum(unit_state(plan, u)["phase"] != "done" for u in units)


# ---------------------------------------------------------------- one meta-batch over ranks
def check_split(config: Config, world: int, unit: str = "") -> None:
    """Refuse what ``--split-meta-batch`` cannot compute, with what to do instead."""
    if config.adam_carry == "sequential":
        raise ValueError(SEQUENTIAL_ERROR.format(unit=unit or config.name))
    if config.meta_batch % world:
        fits = [d for d in range(1, config.meta_batch + 1) if config.meta_batch % d == 0]
        raise ValueError(f"--split-meta-batch: the meta-batch of {unit or config.name} is {config.meta_batch} "
                         f"tasks, which {world} ranks cannot split evenly; launch a number of ranks that "
                         f"divides it ({', '.join(map(str, fits))}) or drop --split-meta-batch")


def _average(tensors: list[Tensor], world: int) -> list[Tensor]:
    """The mean over ranks of each tensor: one summed all_reduce per dtype and device (Gloo has no AVG)."""
    out = list(tensors)
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.dtype, t.device), []).append(i)
    for idx in groups.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in idx])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for i in idx:
            n = tensors[i].numel()
            out[i] = flat[offset:offset + n].view_as(tensors[i])
            offset += n
    return out


def _leaves(tree: Any, path: tuple = ()) -> list[tuple[tuple, Tensor]]:
    if isinstance(tree, dict):
        return [leaf for k in tree for leaf in _leaves(tree[k], path + (k,))]
    return [(path, tree)]


def _rebuild(tree: Any, values: dict[tuple, Tensor], path: tuple = ()) -> Any:
    if isinstance(tree, dict):
        return {k: _rebuild(tree[k], values, path + (k,)) for k in tree}
    return values[path]


def split_step(base: Callable = meta_step, rank: int = 0, world: int = 1) -> Callable:
    """``base`` (signature of :func:`algorithms.meta_step`) with the meta-batch split over ``world`` ranks.

    Algorithm 2's update phi + eps * (mean_tau phi_tilde_tau - phi) (and the Figure 3 combinations,
    phi + eps * mean_tau d_tau) is affine in the per-task results, as is the batched path's Adam carry
    (the tasks' mean state). So each rank steps on its equal slice of tasks and the ranks average the
    new phi and the new state: in exact arithmetic that is the step on the whole meta-batch, and on one
    rank it is ``base`` itself. The inner losses come back whole, (tasks, k) in task order.
    """
    def step(loss_fn, phi, opt, state, batches, eps, weights, batched=True, adam_carry="mean") -> MetaStepResult:
        if adam_carry == "sequential":
            raise ValueError(SEQUENTIAL_ERROR.format(unit="this step"))
        tasks = batches[0][0].shape[0]
        if tasks % world:
            raise ValueError(f"--split-meta-batch: a meta-batch of {tasks} tasks cannot be split evenly over "
                             f"{world} ranks; launch a number of ranks that divides {tasks}")
        n = tasks // world
        local = [(x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]) for x, y in batches]
        r = base(loss_fn, phi, opt, state, local, eps, weights, batched=batched, adam_carry=adam_carry)
        if world == 1:
            return r
        names = list(r.params)
        leaves = _leaves(r.state)
        mean = _average([r.params[k] for k in names] + [t for _, t in leaves], world)
        params = dict(zip(names, mean[:len(names)]))
        new_state = _rebuild(r.state, {p: t for (p, _), t in zip(leaves, mean[len(names):])})
        gathered = [torch.empty_like(r.losses) for _ in range(world)]
        dist.all_gather(gathered, r.losses.contiguous())
        return MetaStepResult(params, new_state, torch.cat(gathered))

    return step


def _split_trainer(ranks: Ranks, stop: Callable[[], bool], deadline: float | None) -> Callable:
    """A replacement for :func:`reproduce.train_unit` in which all ranks train the unit together.

    Rank 0 keeps the checkpoint and the learning curve; the other ranks resume from a private copy of
    the same checkpoint (so every rank starts from the same phi and generator state) and save nothing.
    All ranks stop after the same iteration: the stop signal and the deadline are agreed each step.
    """
    def train(plan, unit, splits, device, _stop, _deadline, progress):
        from .reproduce import CHECKPOINT_SECONDS, checkpoint_path, train_step
        from .train import meta_train

        step = split_step(train_step(unit.config, device) or meta_step, ranks.rank, ranks.world)
        ckpt, scratch = checkpoint_path(plan, unit), None
        if ranks.rank != 0:
            scratch = Path(tempfile.mkdtemp(prefix="reptile-split-"))
            if ckpt.exists():
                shutil.copyfile(ckpt, scratch / ckpt.name)
            ckpt = scratch / ckpt.name
        monitor = None
        if unit.experiment.curve is not None and ranks.rank == 0:
            monitor = {unit.experiment.curve[0]: splits[unit.experiment.curve[0]]}
        try:
            return meta_train(unit.config, splits["train"], seed=unit.seed, device=device, monitor_splits=monitor,
                              checkpoint=ckpt, checkpoint_every=10 ** 9, resume=True, deadline=None,
                              progress=progress and ranks.rank == 0, step_fn=step,
                              checkpoint_seconds=CHECKPOINT_SECONDS if ranks.rank == 0 else None,
                              stop=lambda: any_rank(stop() or (deadline is not None and time.time() > deadline),
                                                    ranks))
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    return train


def meta_batch_over_ranks(plan: Any, ranks: Ranks, *, data_root: str | None = None, stop: Callable[[], bool],
                          deadline: float | None = None, only: Sequence[str] | None = None,
                          progress: bool = False, rebuild: bool = True) -> int:
    """All ranks train each unit together, one meta-batch split over them; rank 0 evaluates and writes.

    Returns the number of selected units still not done.
    """
    from .reproduce import _splits, run_unit, select_units, unit_state

    units = select_units(plan, only)
    todo = [u for u in units if unit_state(plan, u)["phase"] != "done"]
    for unit in todo:   # before anything runs, not hours later at that unit
        check_split(unit.config, ranks.world, unit.id)
    trainer = _split_trainer(ranks, stop, deadline)
    for unit in todo:
        if any_rank(stop() or (deadline is not None and time.time() > deadline), ranks, ranks.control):
            break
        if ranks.rank == 0:
            print(f"reproduce [{ranks.world} ranks, meta-batch split]: {unit.id}", file=sys.stderr, flush=True)
            run_unit(plan, unit, device=ranks.device, data_root=data_root, stop=stop, deadline=deadline,
                     progress=progress, rebuild=rebuild, train=trainer,
                     provenance={**ranks.provenance, "split_meta_batch": True})
        else:
            trainer(plan, unit, _splits(unit, data_root), ranks.device, stop, deadline, False)
        _wait_all(ranks)   # the others wait while rank 0 evaluates
    return sum(unit_state(plan, u)["phase"] != "done" for u in units)


# ---------------------------------------------------------------- entry point
def reproduce_on_ranks(plan: Any, *, device: str = "auto", split_meta_batch: bool = False,
                       data_root: str | None = None, max_minutes: float | None = None,
                       only: Sequence[str] | None = None, progress: bool = True, rebuild: bool = True,
                       install_signals: bool = True) -> tuple[int, Ranks]:
    """``reptile reproduce`` as one rank of a torchrun launch; returns (units not done, this rank)."""
    from .reproduce import StopFlag, status_text

    ranks = init_ranks(device)
    stop = StopFlag()
    if install_signals:
        stop.install()
    deadline = None if max_minutes is None else time.time() + 60 * max_minutes
    run = meta_batch_over_ranks if split_meta_batch else units_over_ranks
    try:
        left = run(plan, ranks, data_root=data_root, stop=stop, deadline=deadline, only=only, progress=progress,
                   rebuild=rebuild)
        if ranks.rank == 0:
            print(status_text(plan), file=sys.stderr, flush=True)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return left, ranks
