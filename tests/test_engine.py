"""The engine against the reference: same tasks, same meta-step, same training runs, same evaluation.

The vmap backend on one run is the reference's own computation with flat buffers, so it must match
``meta_step`` / ``meta_train`` / ``evaluate`` bit for bit; the batched networks compute the same
function with other kernels (checked to float rounding); R runs batched must equal R runs alone.
"""
import dataclasses
import warnings

import pytest
import torch
from torch.func import functional_call, vmap

from reptile_lib.algorithms import meta_step, step_weights
from reptile_lib.configs import Config, EvalSpec
from reptile_lib.engine import RunSpec, check_batchable, fast_evaluate, fast_meta_train, fused_meta_step, meta_train_runs
from reptile_lib.engine.counting import count_ops
from reptile_lib.engine.flat import BatchLayout, FlatLayout
from reptile_lib.engine.nets import BatchedGrads, VmapGrads, batched_logits
from reptile_lib.engine.runner import MetaStepRunner, eps_schedule, resolve_engine
from reptile_lib.engine.sampling import TaskDraws, TaskShape, batches_from_draws
from reptile_lib.engine.serial import SerialReptile
from reptile_lib.engine.step import FlatOptimizer, meta_step_flat
from reptile_lib.evaluate import evaluate
from reptile_lib.inner import classification_loss
from reptile_lib.models import MiniImageNetNet, OmniglotNet, init_params
from reptile_lib.optim import SGD, Adam
from reptile_lib.tasks import TaskSampler
from reptile_lib.train import TrainingDiverged, load_checkpoint, make_learner, meta_train

TINY = Config(name="tiny", dataset="tiny", model="omniglot", classes=3, train_shots=4, inner_batch=6, inner_iters=2,
              meta_batch=2, meta_iters=4, evals=(EvalSpec(1, 3, 4),), eval_samples=6, eval_interval=2,
              eval_interval_tasks=2, batched=True, adam_carry="mean")  # the engine's path


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def _warm_adam(phi, step=50.0):
    return {"step": torch.tensor(step), "v": {k: torch.full_like(v, 1e-5) for k, v in phi.items()}}


def _setup(tiny_data, ways=3, tasks=3, k=3):
    g = torch.Generator().manual_seed(0)
    model = OmniglotNet(ways)
    return model, init_params(model, g), TaskSampler(tiny_data, ways, g).train_batches(tasks, 4, 6, k)


# ---------------------------------------------------------------- building blocks
def test_batch_layout_moves_between_orders():
    params = {"a": torch.randn(2, 3), "b": torch.randn(4), "c": torch.randn(1, 2, 2)}
    layout = FlatLayout.of(params)
    assert _same(layout.views(layout.flatten(params)), params)
    batch = BatchLayout(layout, runs=2, tasks=3, device="cpu")
    runs = torch.randn(2, layout.numel)
    buf = batch.expand_runs(runs)
    views = batch.views(buf)
    for r in range(2):
        for t in range(3):
            assert _same({k: v[r * 3 + t] for k, v in views.items()}, layout.views(runs[r]))
    assert torch.equal(batch.to_instances(buf), runs[:, None].expand(2, 3, -1))
    assert torch.equal(batch.expand_one(runs[0]), BatchLayout(layout, 1, 6, "cpu").expand_runs(runs[:1]))
    assert views["a"].is_contiguous() and views["c"].shape == (6, 1, 2, 2)


@pytest.mark.parametrize("replacement,tail", [(False, None), (True, None), (False, 2)])
def test_sampling_from_draws_is_the_task_samplers_stream(tiny_data, replacement, tail):
    shape = TaskShape(ways=3, train_shots=4, inner_batch=5, inner_iters=3, meta_batch=2, replacement=replacement,
                      tail_shots=tail)
    g_ref, g_ours = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    draws = TaskDraws(shape, tiny_data.num_classes, tiny_data.per_class, runs=2, device="cpu")
    other = torch.Generator().manual_seed(99)
    for _ in range(2):  # two iterations: the generator is left where the reference leaves it
        ref = TaskSampler(tiny_data, 3, g_ref).train_batches(2, 4, 5, 3, replacement, tail)
        draws.draw([g_ours, other])
        ours = batches_from_draws(tiny_data, draws)
        assert len(ours) == len(ref) == 3
        for (x, y), (xo, yo) in zip(ref, ours):
            assert torch.equal(x, xo[0]) and torch.equal(y, yo[0]) and yo.dtype == y.dtype
    assert torch.equal(g_ref.get_state(), g_ours.get_state())


@pytest.mark.parametrize("opt", [SGD(0.05), Adam(1e-3)], ids=["sgd", "adam"])
@pytest.mark.parametrize("weights", ["reptile", "fomaml", "g1+g3"])
def test_fused_meta_step_is_meta_step_bit_for_bit(tiny_data, opt, weights):
    model, phi, batches = _setup(tiny_data)
    w = {"reptile": step_weights(3), "fomaml": step_weights(3, [3]), "g1+g3": step_weights(3, [1, 3])}[weights]
    loss = classification_loss(model)
    for state in ([_warm_adam(phi), opt.init(phi)] if isinstance(opt, Adam) else [{}]):
        a = meta_step(loss, phi, opt, state, batches, 0.7, w)
        b = fused_meta_step(loss, phi, opt, state, batches, 0.7, w)
        assert _same(a.params, b.params) and torch.equal(a.losses, b.losses)
        if isinstance(opt, Adam):
            assert torch.equal(a.state["step"], b.state["step"]) and _same(a.state["v"], b.state["v"])


@pytest.mark.parametrize("net", ["omniglot", "miniimagenet"])
def test_batched_networks_compute_the_models_function(net):
    model = OmniglotNet(4) if net == "omniglot" else MiniImageNetNet(4, image_size=21)
    shape = (1, 28, 28) if net == "omniglot" else (3, 21, 21)
    g = torch.Generator().manual_seed(0)
    n, b = 3, 5
    params = {k: torch.stack([init_params(model, g)[k] for _ in range(n)]) for k, _ in model.named_parameters()}
    x, y = torch.rand(n, b, *shape, generator=g), torch.randint(0, 4, (n, b), generator=g)
    ref = vmap(lambda p, x: functional_call(model, p, (x,)))(params, x)
    assert torch.allclose(batched_logits(model, params, x), ref, atol=1e-5)
    layout = FlatLayout.of({k: v[0] for k, v in params.items()})
    batch = BatchLayout(layout, 1, n, "cpu")
    buf = batch.pack([params[k] for k in layout.names])
    g_b, l_b = BatchedGrads(model, batch)(buf, x[None], y[None])
    g_v, l_v = VmapGrads(classification_loss(model), batch)(buf, x[None], y[None])
    assert torch.allclose(l_b, l_v, atol=1e-6)
    assert torch.allclose(g_b, g_v, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("weights", [None, step_weights(3, [3])], ids=["reptile", "fomaml"])
def test_batched_backend_meta_step_matches_the_reference(tiny_data, float64, weights):
    """The GPU engine's default gradients (``BatchedGrads``: other kernels than the reference's) give the
    reference's meta-step: weights, Adam's carried second moments and step count, losses (float64)."""
    model, phi, batches = _setup(tiny_data)
    layout = FlatLayout.of(phi)
    batch = BatchLayout(layout, 1, 3, "cpu")
    state = _warm_adam(phi)
    ref = meta_step(classification_loss(model), phi, Adam(1e-3), state, batches, 0.7, weights or step_weights(3))
    out = meta_step_flat(BatchedGrads(model, batch), batch, FlatOptimizer("adam"), layout.flatten(phi)[None],
                         layout.flatten(state["v"])[None], state["step"].reshape(1), torch.tensor([1e-3]),
                         [(x[None], y[None]) for x, y in batches], torch.tensor([0.7]), weights)
    new, new_v = layout.views(out.phi[0]), layout.views(out.v[0])
    assert max(float((ref.params[k] - phi[k]).abs().max()) for k in phi) > 1e-4
    for k in phi:
        assert torch.allclose(new[k], ref.params[k], rtol=0, atol=1e-10), k
        assert torch.allclose(new_v[k], ref.state["v"][k], rtol=1e-9, atol=0), k
    assert float(out.step[0]) == float(ref.state["step"]) == 53
    assert torch.allclose(out.losses[0], ref.losses, rtol=0, atol=1e-10)


def test_the_batched_step_launches_far_fewer_operations(tiny_data):
    """What the GPU pays for: ATen operations per meta-iteration (views excluded)."""
    model, phi, batches = _setup(tiny_data)
    layout = FlatLayout.of(phi)
    batch = BatchLayout(layout, 1, 3, "cpu")
    state = _warm_adam(phi)
    ref = count_ops(lambda: meta_step(classification_loss(model), phi, Adam(1e-3), state, batches, 0.7,
                                      step_weights(3)))
    ours = count_ops(lambda: meta_step_flat(
        BatchedGrads(model, batch), batch, FlatOptimizer("adam"), layout.flatten(phi)[None],
        layout.flatten(state["v"])[None], state["step"].reshape(1), torch.tensor([1e-3]),
        [(x[None], y[None]) for x, y in batches], torch.tensor([0.7]), None))
    assert sum(ours.values()) < 0.4 * sum(ref.values()), (sum(ours.values()), sum(ref.values()))
    assert ours["sqrt"] == 1 + 3  # the k step sizes at once, then one per Adam step, however many tensors


def test_serial_loop_is_sequential_reptile(tiny_data):
    """The benchmark's baseline (nn.Module + torch.optim.Adam) is the released algorithm."""
    model, phi, batches = _setup(tiny_data)
    ours = meta_step(classification_loss(model), phi, Adam(1e-3), _warm_adam(phi), batches, 0.5, step_weights(3),
                     batched=False, adam_carry="sequential")
    serial = SerialReptile(model, phi, 1e-3)
    for p in serial.net.parameters():  # the same warm state (PyTorch adds eps after the bias correction)
        serial.opt.state[p] = {"step": torch.tensor(50.0), "exp_avg": torch.zeros_like(p),
                               "exp_avg_sq": torch.full_like(p, 1e-5)}
    serial.step(batches, 0.5)
    for k in phi:
        assert torch.allclose(serial.phi[k], ours.params[k], atol=2e-5), k


# ---------------------------------------------------------------- training
def test_engine_training_is_meta_train_bit_for_bit(tiny_data):
    ref = meta_train(TINY, tiny_data, seed=1, monitor_splits={"train": tiny_data})
    ours = fast_meta_train(TINY, tiny_data, seed=1, monitor_splits={"train": tiny_data}, engine="eager", grads="vmap")
    assert _same(ref.params, ours.params) and _same(ref.opt_state["v"], ours.opt_state["v"])
    assert torch.equal(ref.opt_state["step"], ours.opt_state["step"])
    assert ref.history == ours.history and [h["iteration"] for h in ours.history] == [1, 2, 4]
    assert torch.equal(ref.generators["tasks"].get_state(), ours.generators["tasks"].get_state())


def test_batched_runs_equal_runs_alone(tiny_data, float64):
    """Seeds and configs of equal shapes (other meta-step, FOMAML, other inner learning rate) in one batch.

    Runs batched with others take other convolution kernels; the claim is equality up to rounding,
    so the test runs in float64 (see the ``float64`` fixture) where rounding stays near 1e-13.
    """
    base = dataclasses.replace(TINY, sgd=True, learning_rate=0.05)
    runs = [RunSpec(base, 1), RunSpec(dataclasses.replace(base, name="fomaml", foml=True, meta_step=0.5), 2),
            RunSpec(dataclasses.replace(base, name="g1", combine=(1,), learning_rate=0.1), 3), RunSpec(base, 4)]
    together = meta_train_runs(runs, tiny_data, engine="eager", grads="batched")
    for spec, state in zip(runs, together):
        alone = fast_meta_train(spec.config, tiny_data, seed=spec.seed, engine="eager", grads="batched")
        for k in alone.params:
            assert torch.allclose(alone.params[k], state.params[k], atol=1e-10, rtol=0), (spec.config.name, k)
    assert not torch.allclose(together[0].params["classifier.weight"], together[3].params["classifier.weight"])


def test_batched_adam_runs_equal_runs_alone(tiny_data, float64):
    """Adam's per-run state (second moments, step count, learning rate, outer step, weights) from a warm start."""
    learner = make_learner(TINY, tiny_data.image_shape)
    configs = [TINY, dataclasses.replace(TINY, foml=True, meta_step=0.3),
               dataclasses.replace(TINY, combine=(1,), learning_rate=2e-3)]
    phis = [init_params(learner.model, torch.Generator().manual_seed(s)) for s in range(3)]

    def runner(idx):
        r = MetaStepRunner(learner.model, learner.loss_fn, [Adam(configs[i].learning_rate) for i in idx],
                           TaskShape.of(TINY), tiny_data, [eps_schedule(configs[i].meta_step, 0.0, 4) for i in idx],
                           [configs[i].weights for i in idx], grads="batched")
        r.load([phis[i] for i in idx], [_warm_adam(phis[i], 40.0 + i) for i in idx], iteration=1)
        gens = [torch.Generator().manual_seed(10 + i) for i in idx]
        for _ in range(2):
            r.step(gens)
        return r

    together = runner([0, 1, 2])
    for i in range(3):
        alone = runner([i])
        assert torch.allclose(alone.phi[0], together.phi[i], atol=1e-11, rtol=0)
        assert torch.allclose(alone.v[0], together.v[i], atol=1e-14, rtol=1e-9)
        assert float(together.step_count[i]) == 40 + i + 2 * TINY.inner_iters


def test_checkpoints_are_interchangeable_with_meta_train(tiny_data, tmp_path):
    full = meta_train(TINY, tiny_data, seed=2)
    ckpt = tmp_path / "a.pt"
    fast_meta_train(TINY, tiny_data, seed=2, checkpoint=ckpt, checkpoint_every=2, stop_at=2, engine="eager",
                    grads="vmap")
    assert load_checkpoint(ckpt, TINY).iteration == 2
    assert _same(meta_train(TINY, tiny_data, checkpoint=ckpt).params, full.params)  # the reference resumes it
    ckpt2 = tmp_path / "b.pt"
    meta_train(TINY, tiny_data, seed=2, checkpoint=ckpt2, stop_at=3)
    resumed = fast_meta_train(TINY, tiny_data, checkpoint=ckpt2, engine="eager", grads="vmap")
    assert resumed.iteration == 4 and _same(resumed.params, full.params)  # and the engine resumes the reference's


def test_runs_resume_from_checkpoints_at_different_iterations(tiny_data, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    fast_meta_train(TINY, tiny_data, seed=1, checkpoint=a, stop_at=3, engine="eager")
    states = meta_train_runs([RunSpec(TINY, 1, a), RunSpec(TINY, 2, b)], tiny_data, engine="eager")
    assert [s.iteration for s in states] == [4, 4]
    assert _same(states[0].params, fast_meta_train(TINY, tiny_data, seed=1, engine="eager").params)


def test_divergence_is_caught_by_the_delayed_check(tiny_data, tmp_path):
    bad = dataclasses.replace(TINY, sgd=True, learning_rate=1e30, meta_iters=8)
    ckpt = tmp_path / "c.pt"
    with pytest.raises(TrainingDiverged, match=r"at meta-iteration \d+.*Lower --learning-rate"):
        fast_meta_train(bad, tiny_data, checkpoint=ckpt, checkpoint_every=1, check_every=5, engine="eager")
    if ckpt.exists():  # whatever was saved is finite
        blob = torch.load(ckpt, weights_only=True)
        assert all(torch.isfinite(v).all() for v in blob["params"].values())


def test_what_cannot_be_batched_is_refused_with_the_reason(tiny_data):
    with pytest.raises(ValueError, match="share inner_iters"):
        check_batchable([TINY, dataclasses.replace(TINY, name="k3", inner_iters=3)])
    with pytest.raises(ValueError, match="the released order.*--engine auto or reference"):
        check_batchable([dataclasses.replace(TINY, batched=False, adam_carry="sequential")])
    with pytest.raises(ValueError, match="unknown engine"):
        resolve_engine("fast", "cpu")


def test_graph_engine_without_cuda_runs_eagerly_and_says_so():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the graph engine runs")
    with pytest.warns(UserWarning, match="needs a CUDA device"):
        assert resolve_engine("graph", "cpu") == "eager"


# ---------------------------------------------------------------- evaluation
@pytest.mark.parametrize("grads", ["vmap", "batched"])
def test_fast_evaluation_scores_the_reference_tasks_alike(tiny_data, grads):
    learner = make_learner(TINY, tiny_data.image_shape)
    state = meta_train(dataclasses.replace(TINY, meta_iters=2), tiny_data, seed=1)

    def sampler():
        return TaskSampler(tiny_data, 3, torch.Generator().manual_seed(5))

    ref = evaluate(learner.model, learner.loss_fn, state.params, learner.opt, state.opt_state, sampler(), 1, 3, 4,
                   n_tasks=50, chunk=20)
    # compute chunks of 30 (the last one padded) over tasks drawn in the reference's blocks of 20
    ours = fast_evaluate(learner.model, learner.loss_fn, state.params, learner.opt, state.opt_state, sampler(), 1, 3,
                         4, n_tasks=50, chunk=30, engine="eager", grads=grads, block=20)
    for proto in ("transductive", "nontransductive"):
        assert ours[proto].shape == (50,)
        assert torch.equal(ours[proto], ref[proto]), proto
    # neither protocol is trivially perfect, so a protocol scored as the other would be seen
    assert 0 < float(ref["nontransductive"].mean()) < 1 and not torch.equal(ref["transductive"], ref["nontransductive"])


# ---------------------------------------------------------------- CUDA only
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (graph capture); run benchmarks/gpu_check.sh")


@cuda
@pytest.mark.parametrize("grads", ["batched", "vmap"])
def test_cuda_graph_replays_equal_eager_steps(tiny_data, grads):
    """Two runs, three meta-iterations each, from a warm state: one CUDA graph replay per iteration vs eager."""
    learner = make_learner(TINY, tiny_data.image_shape, "cuda")
    phis = [{k: v.cuda() for k, v in init_params(learner.model, torch.Generator().manual_seed(s)).items()}
            for s in range(2)]

    def run(engine):
        r = MetaStepRunner(learner.model, learner.loss_fn, [Adam(1e-3), Adam(2e-3)], TaskShape.of(TINY), tiny_data,
                           [eps_schedule(1.0, 0.0, 4)] * 2, [TINY.weights] * 2, "cuda", engine, grads)
        r.load(phis, [_warm_adam(p) for p in phis], iteration=0)
        gens = [torch.Generator("cuda").manual_seed(10 + s) for s in range(2)]
        seen = []
        for _ in range(3):
            r.step(gens)
            seen.append(r.phi.clone())
        assert r.finite() == [True, True]
        return r, seen

    (eager, e), (graph, g) = run("eager"), run("graph")
    assert graph.graph is not None
    # one meta-iteration: the same kernels (cuDNN may pick non-deterministic ones: float rounding only)
    assert torch.allclose(e[0], g[0], atol=1e-6, rtol=1e-5)
    # three: state, counter and losses carried through replays (rounding may grow, not more)
    assert float((e[2] - g[2]).norm() / e[2].norm()) < 1e-4
    assert torch.allclose(eager.v, graph.v, atol=1e-9, rtol=1e-2)
    assert torch.equal(eager.step_count, graph.step_count) and int(graph.counter) == 3
    assert torch.allclose(eager.ring[:, :3], graph.ring[:, :3], atol=1e-3)


@cuda
def test_cuda_training_with_graphs_checkpoints_and_resumes(tiny_data, tmp_path):
    ckpt = tmp_path / "g.pt"
    cut = fast_meta_train(TINY, tiny_data, seed=1, device="cuda", checkpoint=ckpt, stop_at=2, engine="graph",
                          monitor_splits={"train": tiny_data})
    assert cut.iteration == 2 and [h["iteration"] for h in cut.history] == [1, 2]
    done = fast_meta_train(TINY, tiny_data, device="cuda", checkpoint=ckpt, engine="graph",
                           monitor_splits={"train": tiny_data})
    assert done.iteration == 4 and [h["iteration"] for h in done.history] == [1, 2, 4]
    assert all(torch.isfinite(v).all() for v in done.params.values())


@cuda
def test_cuda_graph_evaluation_equals_eager(tiny_data):
    learner = make_learner(TINY, tiny_data.image_shape, "cuda")
    state = meta_train(dataclasses.replace(TINY, meta_iters=2), tiny_data, seed=1, device="cuda")
    out = {}
    for engine in ("eager", "graph"):
        sampler = TaskSampler(tiny_data.to("cuda"), 3, torch.Generator("cuda").manual_seed(5))
        out[engine] = fast_evaluate(learner.model, learner.loss_fn, state.params, learner.opt, state.opt_state,
                                    sampler, 1, 3, 4, n_tasks=250, chunk=120, engine=engine)
    agree = (out["eager"]["nontransductive"] == out["graph"]["nontransductive"]).float().mean()
    assert agree > 0.98


def test_run_experiment_on_the_engine_batches_seeds_and_records_it(tiny_data, tmp_path):
    from reptile_lib.experiment import run_experiment
    out = tmp_path / "r.json"
    doc = run_experiment(TINY, "smoke", [0, 1], splits={"train": tiny_data, "test": tiny_data}, out=out,
                         weights_dir=tmp_path / "w", checkpoint_dir=tmp_path / "c", engine="eager")
    assert doc["provenance"]["engine"] == "eager" and doc["provenance"]["finished"]
    assert set(doc["extra"]["history"]) == {"0", "1"} and doc["extra"]["iterations"] == {"0": 4, "1": 4}
    m = doc["metrics"]["test_1shot_3way_nontransductive"]
    assert m["n_tasks"] == 12 and len(m["per_seed"]) == 2
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["tiny_seed0.pt", "tiny_seed1.pt"]
    # the checkpoints are meta_train's: the reference path picks them up as finished runs
    again = run_experiment(TINY, "smoke", [0, 1], splits={"train": tiny_data, "test": tiny_data},
                           checkpoint_dir=tmp_path / "c")
    assert again["extra"]["iterations"] == {"0": 4, "1": 4}
