"""The queue over torch.distributed ranks (Gloo, 2 CPU processes), checked against one process.

- one meta-batch split over 2 ranks == the single-process batched path (float64, several iterations),
  and both ranks hold the same phi; at the queue level, the split unit == the unit run alone;
- units spread over 2 ranks == the same units run one after another (same scores, same weights);
- a rank killed in the middle of a unit: the next launch resumes that unit from its checkpoint and
  finishes with the same numbers;
- clear errors: a world size that does not divide the meta-batch, and adam_carry='sequential'.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from reptile_lib import distributed, reproduce
from reptile_lib.algorithms import meta_step
from reptile_lib.configs import EvalSpec, get_config
from reptile_lib.reproduce import Experiment, Plan, Unit
from reptile_lib.tasks import ClassDataset

ROOT = Path(__file__).resolve().parent.parent
WORLD = 2


# ---------------------------------------------------------------- tiny data, configs and plans
def tiny_splits() -> dict[str, ClassDataset]:
    """Class-dependent binary blobs: 12 training classes, 8 test classes, 8 images each."""
    g = torch.Generator().manual_seed(1234)

    def make(n: int, name: str) -> ClassDataset:
        protos = torch.rand(n, 1, 1, 28, 28, generator=g) < 0.3
        noise = torch.rand(n, 8, 1, 28, 28, generator=g) < 0.05
        return ClassDataset((protos ^ noise).to(torch.uint8), name, tuple(f"{name}{i}" for i in range(n)))

    return {"train": make(12, "train"), "test": make(8, "test")}


def tiny_config(**changes):
    base = dataclasses.replace(get_config("omniglot_5way"), meta_iters=4, meta_batch=2, inner_iters=2, batched=True,
                               adam_carry="mean",
                               train_shots=5, inner_batch=5, evals=(EvalSpec(1, 5, 2),), eval_samples=4)
    return dataclasses.replace(base, **changes)


def tiny_plan(root: Path, experiments: dict, units: list[tuple[str, int]]) -> Plan:
    exps = {name: Experiment(name, config, (("test", 4),), None, None) for name, config in experiments.items()}
    return Plan(tuple(Unit(exps[n], s) for n, s in units), exps, root / "runs", root / "results")


def queue_plan(root: Path) -> Plan:
    """Three units of two experiments: more units than ranks, so one rank takes two."""
    return tiny_plan(root, {"a": tiny_config(), "b": tiny_config(adam_carry="sequential", batched=False)},
                     [("a", 0), ("a", 1), ("b", 0)])


def split_plan(root: Path) -> Plan:
    return tiny_plan(root, {"m": tiny_config(meta_batch=4)}, [("m", 0)])


def outcome(plan: Plan) -> dict:
    """Per unit: evaluation scores and trained phi; per experiment: the metrics of its results file."""
    from reptile_lib.reproduce import checkpoint_path, load_eval_state, results_path

    units = {}
    for u in plan.units:
        ev = load_eval_state(plan, u)
        blob = torch.load(checkpoint_path(plan, u), weights_only=True)
        units[u.id] = {"finished": bool(ev and ev["finished"]), "scores": ev["scores"] if ev else None,
                       "params": blob["params"], "iteration": blob["iteration"]}
    metrics = {name: json.loads(results_path(plan, name).read_text())["metrics"] for name in plan.experiments}
    return {"units": units, "metrics": metrics}


def assert_same(got: dict, want: dict, atol: float = 0.0) -> None:
    assert got["metrics"] == want["metrics"]
    assert got["units"].keys() == want["units"].keys()
    for uid, w in want["units"].items():
        g = got["units"][uid]
        assert g["finished"] and w["finished"] and g["iteration"] == w["iteration"], uid
        assert g["scores"].keys() == w["scores"].keys()
        for name in w["scores"]:
            assert torch.equal(g["scores"][name], w["scores"][name]), (uid, name)
        for k in w["params"]:
            torch.testing.assert_close(g["params"][k], w["params"][k], rtol=0, atol=atol, msg=f"{uid} {k}")


# ---------------------------------------------------------------- running ranks
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join_env(rank: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)   # the claims below are equalities
    reproduce._splits = lambda unit, data_root: tiny_splits()


def spawn(fn, *args) -> None:
    """Two ranks forked from this process: torch is imported already, so they start in well under a
    second where fresh interpreters take over ten on a busy two-core machine (each rank sets one
    intra-op thread first, as DataLoader workers do after a fork)."""
    mp.start_processes(fn, args=(free_port(), *args), nprocs=WORLD, join=True, start_method="fork")


def run_serial(plan: Plan) -> None:
    """The same plan in this process, one unit after another (the single-process queue)."""
    old_dtype, old_threads, old_splits = torch.get_default_dtype(), torch.get_num_threads(), reproduce._splits
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    reproduce._splits = lambda unit, data_root: tiny_splits()
    try:
        assert reproduce.reproduce(plan, progress=False, rebuild=False, install_signals=False) == 0
    finally:
        torch.set_default_dtype(old_dtype)
        torch.set_num_threads(old_threads)
        reproduce._splits = old_splits


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict:
    """The queue and split plans run by one process: what the ranks must reproduce."""
    root = tmp_path_factory.mktemp("serial")
    out = {}
    for name, make in (("queue", queue_plan), ("split", split_plan)):
        plan = make(root / name)
        run_serial(plan)
        out[name] = outcome(plan)
    return out


# ---------------------------------------------------------------- one meta-batch over ranks
def _split_worker(rank: int, port: int, root: Path) -> None:
    _join_env(rank, port)
    from reptile_lib.train import meta_train

    ranks = distributed.init_ranks("cpu")
    # 1. the step itself: 5 Reptile iterations with Adam's mean carry, 4 tasks split 2 + 2
    config = tiny_config(meta_batch=4, inner_iters=3, meta_iters=5)
    state = meta_train(config, tiny_splits()["train"], seed=3,
                       step_fn=distributed.split_step(meta_step, ranks.rank, ranks.world))
    torch.save({"params": state.params, "opt_state": state.opt_state}, root / f"step-rank{rank}.pt")
    # 2. the queue with --split-meta-batch (rank 0 checkpoints and evaluates)
    left, _ = distributed.reproduce_on_ranks(split_plan(root / "split"), device="cpu", split_meta_batch=True,
                                             progress=False, rebuild=False, install_signals=False)
    assert left == 0
    # 3. the errors, raised on every rank before any training
    errors = {}
    for key, plan in (("divide", tiny_plan(root / "bad", {"c": tiny_config(meta_batch=3)}, [("c", 0)])),
                      ("sequential", queue_plan(root / "bad"))):
        try:
            distributed.meta_batch_over_ranks(plan, ranks, stop=lambda: False)
        except ValueError as e:
            errors[key] = str(e)
    step = distributed.split_step(meta_step, rank, WORLD)
    x = torch.zeros(3, 5, 1, 28, 28)
    try:
        step(None, {}, None, {}, [(x, torch.zeros(3, 5, dtype=torch.long))], 1.0, (1.0,))
    except ValueError as e:
        errors["step"] = str(e)
    (root / f"errors-rank{rank}.json").write_text(json.dumps(errors))


def test_split_meta_batch_equals_one_process(tmp_path, serial, float64, one_thread):
    from reptile_lib.algorithms import MetaStepResult
    from reptile_lib.train import meta_train

    spawn(_split_worker, tmp_path)
    config = tiny_config(meta_batch=4, inner_iters=3, meta_iters=5)
    data = tiny_splits()["train"]
    one = meta_train(config, data, seed=3)   # algorithms.meta_step(batched=True, adam_carry="mean")

    def halves(loss_fn, phi, opt, state, batches, eps, weights, batched=True, adam_carry="mean"):
        """The split's arithmetic in one process: each half's step, then their mean."""
        r = [meta_step(loss_fn, phi, opt, state, [(x[2 * h:2 * h + 2], y[2 * h:2 * h + 2]) for x, y in batches],
                       eps, weights, batched, adam_carry) for h in (0, 1)]
        return MetaStepResult({k: (r[0].params[k] + r[1].params[k]) / 2 for k in phi},
                              {"step": (r[0].state["step"] + r[1].state["step"]) / 2,
                               "v": {k: (r[0].state["v"][k] + r[1].state["v"][k]) / 2 for k in phi}},
                              torch.cat([r[0].losses, r[1].losses]))

    emulated = meta_train(config, data, seed=3, step_fn=halves)
    serial_path = meta_train(dataclasses.replace(config, batched=False), data, seed=3)
    r0, r1 = (torch.load(tmp_path / f"step-rank{r}.pt", weights_only=True) for r in range(WORLD))
    for k in one.params:
        assert torch.equal(r0["params"][k], r1["params"][k]), f"ranks disagree on phi[{k}]"
        assert torch.equal(r0["opt_state"]["v"][k], r1["opt_state"]["v"][k]), k
        # the all_reduce computes exactly the halves' mean ...
        torch.testing.assert_close(r0["params"][k], emulated.params[k], rtol=0, atol=1e-15)
        # ... which is the whole meta-batch's step up to rounding: five iterations of inner Adam amplify
        # rounding to about 1e-10 here, as between the library's own batched and serial paths
        torch.testing.assert_close(r0["params"][k], one.params[k], rtol=0, atol=1e-9)
        torch.testing.assert_close(serial_path.params[k], one.params[k], rtol=0, atol=1e-9)
        torch.testing.assert_close(r0["opt_state"]["v"][k], one.opt_state["v"][k], rtol=1e-6, atol=1e-15)
    assert float(r0["opt_state"]["step"]) == float(one.opt_state["step"]) == 15.0
    first = meta_train(dataclasses.replace(config, meta_iters=1), data, seed=3)
    assert max(float((one.params[k] - first.params[k]).abs().max()) for k in one.params) > 1e-4   # phi moved

    assert_same(outcome(split_plan(tmp_path / "split")), serial["split"], atol=1e-9)
    seg = reproduce.segments(split_plan(tmp_path / "split"), split_plan(tmp_path / "split").units[0])[-1]
    assert seg["rank"] == 0 and seg["world_size"] == WORLD and seg["split_meta_batch"] and seg["host"]

    for rank in range(WORLD):
        errors = json.loads((tmp_path / f"errors-rank{rank}.json").read_text())
        assert "meta-batch of c-seed0 is 3 tasks" in errors["divide"] and "(1, 3)" in errors["divide"]
        assert "adam_carry='sequential'" in errors["sequential"] and "task t+1" in errors["sequential"]
        assert "3 tasks cannot be split evenly over 2 ranks" in errors["step"]


# ---------------------------------------------------------------- units over ranks
def _queue_worker(rank: int, port: int, root: Path, kill_rank: int | None) -> None:
    _join_env(rank, port)
    reproduce.CHECKPOINT_SECONDS = 0.0   # checkpoint every iteration: a kill loses nothing
    if rank == kill_rank:
        calls = [0]
        real_train_step = reproduce.train_step

        def train_step(config, device):
            real = real_train_step(config, device) or meta_step   # the step the serial run used

            def step(*args, **kwargs):
                calls[0] += 1
                if calls[0] == 3:   # in the middle of this rank's first unit (4 iterations)
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)
            return step

        reproduce.train_step = train_step
    distributed.reproduce_on_ranks(queue_plan(root), device="cpu", progress=False, rebuild=False)


def test_units_over_two_ranks_equal_one_after_another(tmp_path, serial):
    spawn(_queue_worker, tmp_path, None)
    plan = queue_plan(tmp_path)
    assert_same(outcome(plan), serial["queue"])
    ranks = {reproduce.segments(plan, u)[0]["rank"] for u in plan.units}
    assert ranks == {0, 1}, "both ranks trained units"
    for u in plan.units:   # one segment each: no unit was trained twice
        assert [(s["world_size"], bool(s["host"])) for s in reproduce.segments(plan, u)] == [(WORLD, True)]


def test_killed_rank_leaves_its_unit_resumable(tmp_path, serial):
    plan = queue_plan(tmp_path)
    with pytest.raises(mp.ProcessExitedException):
        spawn(_queue_worker, tmp_path, 1)
    # the killed rank's unit: half trained, no line logged (the kill came before the end of its segment),
    # only the journal of the segment in progress, counted to its last checkpoint
    killed = [u for u in plan.units if 0 < reproduce.unit_state(plan, u)["iteration"] < u.config.meta_iters
              and [s.get("open") for s in reproduce.segments(plan, u)] == [True]]
    assert len(killed) == 1, [(u.id, reproduce.unit_state(plan, u)) for u in plan.units]
    victim = killed[0]
    assert reproduce.segments(plan, victim)[0]["rank"] == 1
    spawn(_queue_worker, tmp_path, None)            # the next launch: fresh claims
    assert_same(outcome(plan), serial["queue"])
    segs = reproduce.segments(plan, victim)
    assert [bool(s.get("interrupted")) for s in segs] == [True, False]   # the killed segment logged by the next launch
    assert segs[-1]["iterations"] < victim.config.meta_iters   # resumed, not restarted
    assert sum(s["iterations"] for s in segs) == victim.config.meta_iters


def test_torchrun_split_refuses_sequential_carry(tmp_path):
    """The command line under torchrun: a clear error, before any training, on every rank."""
    plan = tmp_path / "plan.toml"
    plan.write_text((ROOT / "runs" / "plan.toml").read_text())
    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port", str(free_port()), "-m",
                        "reptile_lib.cli", "reproduce", "--split-meta-batch", "--plan", str(plan), "--device",
                        "cpu", "--only", "omniglot_5way", "--no-rebuild", "--quiet"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0
    assert r.stderr.count("reptile: error: --split-meta-batch cannot run a unit with adam_carry='sequential' "
                          "(omniglot_5way-seed0)") == WORLD, r.stderr[-3000:]
