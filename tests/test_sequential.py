"""The fast released-order path (``engine.sequential``) against the reference, in float64.

Training: ``SequentialMetaStep`` must be ``meta_step(..., batched=False, adam_carry='sequential')``
over several meta-iterations from a warm Adam state (each task starting from the Adam state the
previous task left), for both of the paper's networks, Adam and SGD, Reptile and other step weights.
Evaluation: ``sequential_evaluate`` must score the reference's tasks with the same per-task accuracies.
"""
import dataclasses

import pytest
import torch
from blobs import blobs

from reptile_lib.algorithms import meta_step, step_weights
from reptile_lib.configs import Config, EvalSpec
from reptile_lib.engine.sequential import FlatNet, SequentialMetaStep, sequential_evaluate
from reptile_lib.evaluate import evaluate
from reptile_lib.inner import classification_loss, regression_loss
from reptile_lib.models import MiniImageNetNet, OmniglotNet, init_params
from reptile_lib.optim import SGD, Adam
from reptile_lib.reproduce import train_step
from reptile_lib.tasks import ClassDataset, TaskSampler
from reptile_lib.train import make_learner, meta_train

# Tiny networks: one thread runs them faster than two, and far faster when other jobs load the machine
pytestmark = pytest.mark.usefixtures("one_thread")

TINY = Config(name="tiny", dataset="tiny", model="omniglot", classes=3, train_shots=4, inner_batch=6, inner_iters=2,
              meta_batch=2, meta_iters=3, evals=(EvalSpec(1, 3, 4),), eval_samples=6, eval_interval=2,
              eval_interval_tasks=4, adam_carry="sequential", batched=False)


def _rgb(size: int) -> ClassDataset:
    g = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (8, 6, 3, size, size), generator=g, dtype=torch.uint8)
    return ClassDataset(images, f"rgb{size}", tuple(map(str, range(8))), 255.0)


def _rgb_noisy(size: int) -> ClassDataset:
    """8 classes x 6 colour images: a class colour pattern under heavy noise (few-shot accuracy between 0 and 1)."""
    g = torch.Generator().manual_seed(13)
    protos = torch.randint(0, 256, (8, 1, 3, size, size), generator=g)
    noise = torch.randint(-120, 121, (8, 6, 3, size, size), generator=g)
    return ClassDataset((protos + noise).clamp(0, 255).to(torch.uint8), f"rgbnoisy{size}", tuple(map(str, range(8))), 255.0)


def _noisy() -> ClassDataset:
    """8 classes x 6 images of 28 x 28 blobs under heavy noise: few-shot accuracy well between 0 and 1."""
    return blobs(8, 6, 0.4, 11, "noisy")


def _warm(opt, phi):
    if isinstance(opt, SGD):
        return {}
    return {"step": torch.tensor(40.0), "v": {k: torch.full_like(v, 1e-5) for k, v in phi.items()}}


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


CASES = [("omniglot", Adam(1e-3), None), ("omniglot", SGD(0.05), [2]), ("mini21", Adam(1e-3), "average"),
         ("mini32", Adam(1e-3), None)]


@pytest.mark.parametrize("net,opt,steps", CASES, ids=["omniglot-adam-reptile", "omniglot-sgd-fomaml",
                                                     "mini21-adam-average", "mini32-adam-reptile"])
def test_sequential_step_is_the_reference_released_order(tiny_data, float64, net, opt, steps):
    if net == "omniglot":
        model, data = OmniglotNet(3), tiny_data
    else:  # 21 px: odd sizes, ceil-mode pooling; 32 px: CIFAR-FS's size
        size = int(net[4:])
        model, data = MiniImageNetNet(3, size), _rgb(size)
    weights = step_weights(2, average=True) if steps == "average" else step_weights(2, steps)
    loss = classification_loss(model)
    phi = init_params(model, torch.Generator().manual_seed(0))
    sampler = TaskSampler(data, 3, torch.Generator().manual_seed(1))
    fast = SequentialMetaStep()
    ref_phi, ref_state, phi_f, state_f = phi, _warm(opt, phi), phi, _warm(opt, phi)
    for i in range(3):
        batches = sampler.train_batches(2, 4, 6, 2)   # 2 tasks x 2 steps: the second task starts from the first's Adam
        r = meta_step(loss, ref_phi, opt, ref_state, batches, 0.6, weights, batched=False, adam_carry="sequential")
        f = fast(loss, phi_f, opt, state_f, batches, 0.6, weights, batched=False, adam_carry="sequential")
        ref_phi, ref_state, phi_f, state_f = r.params, r.state, f.params, f.state
        assert f.losses.shape == r.losses.shape == (2, 2)
        assert float((f.losses - r.losses).abs().max()) < 1e-10
    assert set(phi_f) == set(ref_phi) and all(phi_f[k].shape == ref_phi[k].shape for k in ref_phi)
    assert _max_diff(phi_f, ref_phi) < 1e-10
    moved = _max_diff(phi_f, phi)
    assert moved > 1e-4   # the comparison is not between two copies of phi
    if isinstance(opt, Adam):   # the state the queue checkpoints: {"step", "v"}, carried task to task
        assert set(state_f) == {"step", "v"} and float(state_f["step"]) == 40 + 3 * 2 * 2
        assert _max_diff(state_f["v"], ref_state["v"]) < 1e-12
    else:
        assert state_f == {}


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_a_separate_tail_of_another_size_trains_as_the_reference(tiny_data, float64, reduction):
    """Figure 4's separate-tail FOMAML (released ``--foml-tail``) on the fast path: two mini-batches of 6,
    then a last one of the tail's 3 x 2 = 6 other images; and 3 x 1 = 3 (a size the others do not have)."""
    model = OmniglotNet(3)
    loss, opt = classification_loss(model, reduction), Adam(1e-3)
    phi = init_params(model, torch.Generator().manual_seed(0))
    for tail in (2, 1):
        batches = TaskSampler(tiny_data, 3, torch.Generator().manual_seed(1)).train_batches(2, 5, 6, 3, tail_shots=tail)
        assert [b[0].shape[1] for b in batches] == [6, 6, 3 * tail]
        r = meta_step(loss, phi, opt, _warm(opt, phi), batches, 0.6, step_weights(3, [3]), batched=False,
                      adam_carry="sequential")
        f = SequentialMetaStep()(loss, phi, opt, _warm(opt, phi), batches, 0.6, step_weights(3, [3]), batched=False,
                                 adam_carry="sequential")
        assert _max_diff(f.params, phi) > 1e-5 and _max_diff(f.params, r.params) < 1e-10
        assert _max_diff(f.state["v"], r.state["v"]) < 1e-12 and float(f.state["step"]) == 40 + 2 * 3


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one-by-one"])
@pytest.mark.parametrize("steps", [None, [1, 2]], ids=["reptile", "g1+g2"])
def test_mean_carry_is_the_batched_paths_step(tiny_data, float64, batched, steps):
    """``adam_carry='mean'``: every task from the same warm Adam state, the tasks' states averaged
    (what the batched path does under ``vmap``); three meta-iterations, the state carried between them."""
    model = OmniglotNet(3)
    weights = step_weights(2, steps)
    loss, opt = classification_loss(model), Adam(1e-3)
    phi = init_params(model, torch.Generator().manual_seed(0))
    sampler = TaskSampler(tiny_data, 3, torch.Generator().manual_seed(1))
    fast = SequentialMetaStep()
    ref_phi, ref_state, phi_f, state_f = phi, _warm(opt, phi), phi, _warm(opt, phi)
    for _ in range(3):
        batches = sampler.train_batches(3, 4, 6, 2)
        r = meta_step(loss, ref_phi, opt, ref_state, batches, 0.6, weights, batched=True, adam_carry="mean")
        f = fast(loss, phi_f, opt, state_f, batches, 0.6, weights, batched=batched, adam_carry="mean")
        ref_phi, ref_state, phi_f, state_f = r.params, r.state, f.params, f.state
        assert float((f.losses - r.losses).abs().max()) < 1e-10
    assert _max_diff(phi_f, phi) > 1e-4 and _max_diff(phi_f, ref_phi) < 1e-10
    assert float(state_f["step"]) == float(ref_state["step"]) == 40 + 3 * 2    # k steps per meta-iteration
    assert _max_diff(state_f["v"], ref_state["v"]) < 1e-12
    # and it is not the released order's state (the two carries differ)
    seq = meta_step(loss, phi, opt, _warm(opt, phi), batches, 0.6, weights, batched=False, adam_carry="sequential")
    mean = fast(loss, phi, opt, _warm(opt, phi), batches, 0.6, weights, batched=batched, adam_carry="mean")
    assert _max_diff(seq.state["v"], mean.state["v"]) > 1e-9


@pytest.mark.parametrize("steps", [[2], [1, 2], "average"], ids=["g2", "g1+g2", "(g1+g2)/2"])
def test_with_sgd_the_fast_step_is_the_batched_path_too(tiny_data, float64, steps):
    """Figure 3's runs (plain SGD, the batched path's defaults): no state is carried, so one order fits all."""
    model = OmniglotNet(3)
    weights = step_weights(2, average=True) if steps == "average" else step_weights(2, steps)
    loss, opt = classification_loss(model), SGD(0.05)
    phi = init_params(model, torch.Generator().manual_seed(0))
    sampler = TaskSampler(tiny_data, 3, torch.Generator().manual_seed(1))
    ref_phi, fast_phi = phi, phi
    for _ in range(3):
        batches = sampler.train_batches(2, 4, 6, 2)
        ref_phi = meta_step(loss, ref_phi, opt, {}, batches, 0.6, weights, batched=True, adam_carry="mean").params
        fast_phi = SequentialMetaStep()(loss, fast_phi, opt, {}, batches, 0.6, weights, batched=True,
                                        adam_carry="mean").params
    assert _max_diff(fast_phi, phi) > 1e-4 and _max_diff(fast_phi, ref_phi) < 1e-10
    sgd = dataclasses.replace(TINY, sgd=True, learning_rate=0.05, batched=True, adam_carry="mean")
    assert isinstance(train_step(sgd, "cpu"), SequentialMetaStep)


def test_flat_layout_round_trips_the_parameter_dict():
    model = MiniImageNetNet(5, 32)
    phi = init_params(model, torch.Generator().manual_seed(0))
    net = FlatNet(model)
    back = net.to_params(net.to_flat(phi))
    assert list(back) == list(phi) and all(torch.equal(back[k], phi[k]) for k in phi)


def test_the_queue_trains_with_the_fast_step_and_the_same_checkpoints(tiny_data, float64, tmp_path):
    step = train_step(TINY, "cpu")
    assert isinstance(step, SequentialMetaStep)
    assert isinstance(train_step(dataclasses.replace(TINY, adam_carry="mean", batched=True), "cpu"), SequentialMetaStep)
    assert train_step(TINY, "cuda") is None
    ref = meta_train(TINY, tiny_data, seed=2)
    fast = meta_train(TINY, tiny_data, seed=2, step_fn=step, checkpoint=tmp_path / "c.pt")
    assert fast.iteration == ref.iteration == 3
    # from v = 0 Adam's first steps are sign-like where a gradient is rounding noise (conv biases before
    # BatchNorm have a zero gradient), so float64 rounding shows at 1e-10 here; a real difference is >> 1e-8
    assert _max_diff(fast.params, ref.params) < 1e-8
    assert set(fast.opt_state) == {"step", "v"} and float(fast.opt_state["step"]) == float(ref.opt_state["step"])
    blob = torch.load(tmp_path / "c.pt", weights_only=True)
    assert set(blob["opt_state"]) == {"step", "v"} and set(blob["opt_state"]["v"]) == set(ref.params)


def test_a_loss_the_fast_step_lacks_runs_the_reference(tiny_data):
    model = OmniglotNet(3)
    phi = init_params(model, torch.Generator().manual_seed(0))
    batches = TaskSampler(tiny_data, 3, torch.Generator().manual_seed(1)).train_batches(2, 4, 6, 2)
    loss = regression_loss(model)   # not inner.CrossEntropy: no fast form, so the reference computes it
    batches = [(x, y.to(torch.get_default_dtype())[..., None].expand(*y.shape, 3)) for x, y in batches]
    opt = Adam(1e-3)
    f = SequentialMetaStep()(loss, phi, opt, opt.init(phi), batches, 0.5, step_weights(2))
    r = meta_step(loss, phi, opt, opt.init(phi), batches, 0.5, step_weights(2), batched=False, adam_carry="sequential")
    assert all(torch.equal(f.params[k], r.params[k]) for k in phi)
    with pytest.raises(ValueError, match="use batched=False"):
        SequentialMetaStep()(loss, phi, opt, opt.init(phi), batches, 0.5, step_weights(2), batched=True)


@pytest.mark.parametrize("ways,shots,net", [(3, 1, "omniglot-adam"), (4, 2, "omniglot-adam"), (3, 1, "omniglot-sgd"),
                                            (4, 2, "mini32-adam"), (3, 1, "omniglot-adam-mean")])
def test_fast_evaluation_scores_the_reference_tasks_alike(float64, ways, shots, net):
    """Every evaluation the queue scores on the fast path: Omniglot with Adam (Table 2), with SGD (Figure 3),
    the Mini-ImageNet network on 32x32 inputs (CIFAR-FS), and the mean-reduced loss (the fidelity check)."""
    config = dataclasses.replace(TINY, classes=ways)
    data = _noisy()
    if net == "omniglot-sgd":
        config = dataclasses.replace(config, sgd=True, learning_rate=0.05)
    elif net == "mini32-adam":
        config, data = dataclasses.replace(config, model="miniimagenet", image_size=32), _rgb_noisy(32)
    elif net == "omniglot-adam-mean":
        config = dataclasses.replace(config, loss_reduction="mean")
    learner = make_learner(config, data.image_shape)
    assert learner.loss_fn.reduction == config.loss_reduction
    phi = init_params(learner.model, torch.Generator().manual_seed(3))
    state = _warm(learner.opt, phi)
    if state:   # a trained-like Adam state: not uniform
        state["v"] = {k: v * (1 + torch.rand(v.shape, generator=torch.Generator().manual_seed(4)))
                      for k, v in state["v"].items()}

    def run(fn):
        sampler = TaskSampler(data, ways, torch.Generator().manual_seed(5))
        return fn(learner.model, learner.loss_fn, phi, learner.opt, state, sampler, shots, 3, 3, n_tasks=6, chunk=4)

    ref, ours = run(evaluate), run(sequential_evaluate)
    for proto in ("transductive", "nontransductive"):
        assert ours[proto].shape == (6,) and ours[proto].dtype == ref[proto].dtype
        assert torch.equal(ours[proto], ref[proto]), proto
    # neither protocol is trivially perfect here, so a protocol scored as the other would be seen
    assert 0 < float(ref["nontransductive"].mean()) < 1 and not torch.equal(ref["transductive"], ref["nontransductive"])


def test_table2_20_way_shapes_train_and_score_as_the_reference(float64):
    """Table 2's 20-way runs on the fast path: 20 ways, mini-batches of 20, a 256 -> 20 classifier, the
    released order from a warm Adam state; then 20-way evaluation with batches of 10 (the other tests use 3-4 ways)."""
    data = blobs(24, 12, 0.2, 3, "ways24")
    model = OmniglotNet(20)
    loss, opt = classification_loss(model), Adam(5e-4)
    phi = init_params(model, torch.Generator().manual_seed(0))
    assert phi["classifier.weight"].shape == (20, 256)
    batches = TaskSampler(data, 20, torch.Generator().manual_seed(1)).train_batches(2, 10, 20, 2)
    assert len(batches) == 2 and batches[0][0].shape[:2] == (2, 20)   # 2 steps, each 2 tasks x 20 images
    r = meta_step(loss, phi, opt, _warm(opt, phi), batches, 0.7, step_weights(2), batched=False,
                  adam_carry="sequential")
    f = SequentialMetaStep()(loss, phi, opt, _warm(opt, phi), batches, 0.7, step_weights(2), batched=False,
                             adam_carry="sequential")
    assert _max_diff(f.params, phi) > 1e-5 and _max_diff(f.params, r.params) < 1e-10
    assert float(f.state["step"]) == float(r.state["step"]) == 40 + 2 * 2
    assert _max_diff(f.state["v"], r.state["v"]) < 1e-12
    for shots in (1, 2):   # 2 shots: a support set of 40 beside each query (5 shots cost 2.5x that, to no more effect)
        run = [fn(model, loss, r.params, opt, r.state, TaskSampler(data, 20, torch.Generator().manual_seed(9)),
                  shots, 10, 2, n_tasks=2, chunk=2) for fn in (evaluate, sequential_evaluate)]
        for proto in ("transductive", "nontransductive"):
            assert torch.equal(run[0][proto], run[1][proto]), (shots, proto)


def test_float32_forward_is_as_precise_as_the_reference():
    """In float32 the fast network is as close to float64 as the reference network is. (PyTorch's
    channels_last BatchNorm on the CPU gathers its statistics less precisely: on inputs whose mean is
    far from zero, as Omniglot's mostly-white images, that was several times the reference's error.)"""
    from torch.func import functional_call

    model = OmniglotNet(5)
    phi = init_params(model, torch.Generator().manual_seed(0))
    x = 20.0 + torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(1))   # a mean far from zero
    net = FlatNet(model)
    fast = net.logits(net.views(net.to_flat(phi)), net.images(x)).double()
    ref = functional_call(model, phi, (x,)).double()
    exact = functional_call(model.double(), {k: v.double() for k, v in phi.items()}, (x.double(),))
    model.float()
    err_fast, err_ref = float((fast - exact).abs().max()), float((ref - exact).abs().max())
    assert err_fast < 2 * err_ref, (err_fast, err_ref)   # measured: 6e-6 against 8e-6 (the channels_last kernel: 3.5e-5)


def test_learning_curves_scored_by_the_fast_scorer_are_the_references(float64):
    """``meta_train(scorer=task_scorer)`` (the queue on a CPU) draws and scores the curve tasks alike."""
    from reptile_lib.engine.sequential import task_scorer

    data = _noisy()
    config = dataclasses.replace(TINY, meta_iters=4, eval_interval=2, eval_interval_tasks=5)
    ref = meta_train(config, data, seed=1, monitor_splits={"test": data})
    made = []

    def scorer(learner, params, state):
        made.append(params)
        return task_scorer(learner, params, state)

    fast = meta_train(config, data, seed=1, monitor_splits={"test": data}, scorer=scorer)
    assert [q["iteration"] for q in fast.history] == [1, 2, 4] and len(made) == 3
    assert fast.history == ref.history
    assert 0 < fast.history[-1]["test_nontransductive"] < 1


def test_reptile_train_runs_the_fast_path_on_a_cpu_with_the_references_results(float64, tmp_path):
    """``run_experiment(engine='sequential')`` (``reptile train``'s default on a CPU) trains and evaluates the
    same tasks as the reference path: the same curves and per-task accuracies, weights to float rounding."""
    from reptile_lib.experiment import choose_path, run_experiment

    data = _noisy()
    splits = {"train": data, "test": data}
    config = dataclasses.replace(TINY, meta_iters=4, eval_interval=2, eval_interval_tasks=5, eval_samples=8)
    docs = {engine: run_experiment(config, "smoke", [1], splits=splits, eval_splits=["test"], engine=engine,
                                   weights_dir=tmp_path / engine)
            for engine in ("reference", "auto")}
    assert docs["auto"]["provenance"]["engine"] == "sequential" and docs["reference"]["provenance"]["engine"] == "reference"
    assert docs["auto"]["provenance"]["kernels"] in ("native", "torch") and "kernels" not in docs["reference"]["provenance"]
    assert docs["auto"]["metrics"] == docs["reference"]["metrics"]
    for fast, ref in zip(docs["auto"]["extra"]["history"]["1"], docs["reference"]["extra"]["history"]["1"], strict=True):
        assert fast.pop("train_loss") == pytest.approx(ref.pop("train_loss"), rel=1e-12) and fast == ref
    a, b = (torch.load(tmp_path / e / "tiny_seed1.pt", weights_only=True)["params"] for e in ("auto", "reference"))
    assert _max_diff(a, b) < 1e-8
    assert choose_path("auto", config, "cuda") == "reference"
    with pytest.raises(ValueError, match="use --engine reference"):
        choose_path("sequential", dataclasses.replace(config, model="sine"), "cpu")
    # the GPU engine trains only the batched path; it still evaluates any config
    with pytest.raises(ValueError, match="the released order.*--set batched=true adam_carry=mean"):
        choose_path("eager", config, "cpu", training=True)
    assert choose_path("eager", config, "cpu") == "eager"
    with pytest.warns(UserWarning, match="needs a CUDA device"):
        assert choose_path("graph", config, "cpu") == "eager"   # what runs there, and what provenance says
    with pytest.raises(ValueError, match="unknown engine"):
        choose_path("fast", config, "cpu")
