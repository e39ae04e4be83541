"""Figure 1: sine tasks, adaptation curves against a plain loop, and a tiny meta-training run."""
import dataclasses
import json
import math

import pytest
import torch

from reptile_lib import sine
from reptile_lib.data import sine as data
from reptile_lib.inner import regression_loss
from reptile_lib.models import SineMLP, init_params
from reptile_lib.results import load_results

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_task_sampling_ranges_and_moments():
    state = torch.random.get_rng_state()
    gen = torch.Generator().manual_seed(0)
    tasks = data.sample_tasks(100_000, gen)
    x = data.sample_inputs(10, 10_000, gen)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is never used
    a, b = tasks.amplitude, tasks.phase
    assert 0.1 <= float(a.min()) and float(a.max()) <= 5.0
    assert 0.0 <= float(b.min()) and float(b.max()) <= 2 * math.pi
    assert -5.0 <= float(x.min()) and float(x.max()) <= 5.0
    # uniform moments: mean (lo + hi) / 2, sd (hi - lo) / sqrt(12); 5 standard errors of slack
    for v, lo, hi in ((a, 0.1, 5.0), (b, 0.0, 2 * math.pi), (x.reshape(-1), -5.0, 5.0)):
        sd = (hi - lo) / math.sqrt(12)
        assert abs(float(v.mean()) - (lo + hi) / 2) < 5 * sd / math.sqrt(v.numel())
        assert abs(float(v.std()) - sd) < 0.01 * sd
    y = tasks[:10](x)
    torch.testing.assert_close(y, tasks.amplitude[:10, None] * torch.sin(x + tasks.phase[:10, None]))


def test_sampling_is_reproducible_and_validated():
    t1 = data.sample_tasks(5, torch.Generator().manual_seed(3))
    t2 = data.sample_tasks(5, torch.Generator().manual_seed(3))
    assert torch.equal(t1.amplitude, t2.amplitude) and torch.equal(t1.phase, t2.phase)
    with pytest.raises(ValueError, match="at least one task"):
        data.sample_tasks(0, torch.Generator())
    with pytest.raises(ValueError, match="tasks=5"):
        t1(torch.zeros(4, 3))


def test_grid_is_the_demo_grid():
    g = data.grid()
    assert g.shape == (50,) and float(g[0]) == -5.0 and float(g[-1]) == 5.0
    torch.testing.assert_close(g[1] - g[0], torch.tensor(10 / 49))


def test_inner_batches_are_one_epoch_of_the_task_points():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 50, dtype=torch.float32).reshape(2, 50)
    batches = data.inner_batches(x, -x, inner_batch=10, inner_iters=5, generator=gen)
    assert len(batches) == 5 and batches[0][0].shape == (2, 10)
    for t in range(2):
        seen = torch.cat([bx[t] for bx, _ in batches])
        assert sorted(seen.tolist()) == x[t].tolist()  # every point once
        assert all(torch.equal(by[t], -bx[t]) for bx, by in batches)
    more = data.inner_batches(x, x, inner_batch=10, inner_iters=7, generator=gen)  # wraps to a reshuffle
    assert len(more) == 7
    with pytest.raises(ValueError, match="inner_batch"):
        data.inner_batches(x, x, inner_batch=60, inner_iters=1, generator=gen)


def test_adaptation_curves_match_a_plain_sgd_loop():
    model = SineMLP((8, 8), "tanh")
    phi = init_params(model, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    tasks, xs = data.sample_tasks(3, gen), data.sample_inputs(3, 10, gen)
    grid = data.grid(50)
    got = sine.adaptation_curves(regression_loss(model), phi, tasks, xs, lr=0.02, steps=4, x_eval=grid, chunk=2)
    assert got.shape == (3, 5)
    for t in range(3):  # independent reference: torch.autograd and in-place SGD
        net = SineMLP((8, 8), "tanh")
        net.load_state_dict(phi)
        want = []
        for s in range(5):
            with torch.no_grad():
                want.append(float(((net(grid) - tasks[t:t + 1](grid[None])[0]) ** 2).mean()))
            if s < 4:
                net.zero_grad()
                ((net(xs[t]) - tasks[t:t + 1](xs[t:t + 1])[0]) ** 2).mean().backward()
                with torch.no_grad():
                    for p in net.parameters():
                        p -= 0.02 * p.grad
        torch.testing.assert_close(got[t], torch.tensor(want), rtol=1e-5, atol=1e-6)


# A run small enough for a test: measured post-adaptation MSE ratio reptile / random after 32
# steps was 0.79, 0.79, 0.81 for seeds 0, 1, 2 (200 test tasks); the test asks for < 0.9.
TINY = dataclasses.replace(
    sine.SINE_PAPER,
    reptile=dataclasses.replace(sine.REPTILE_SINE, hidden=(32, 32), meta_iters=60, meta_step=1.0, meta_batch=10,
                                learning_rate=0.04, log_every=10**6, log_tasks=5),
    maml=dataclasses.replace(sine.MAML_SINE, hidden=(32, 32), meta_iters=3, meta_batch=2, inner_iters=2,
                             log_every=10**6, log_tasks=5),
    activations=("relu",), seeds=(0,), eval_tasks=200)


def test_tiny_reptile_meta_training_beats_the_random_initialisation():
    r = sine.meta_train(TINY.reptile, "relu", 0, TINY)
    mse = sine.evaluate_inits(TINY, {"random": r.init, "reptile": r.phi}, "relu", 0)
    after = {k: float(v[:, -1].mean()) for k, v in mse.items()}
    assert after["reptile"] < 0.9 * after["random"], after
    assert r.history["iteration"] == [0, 60]


def test_maml_step_runs_and_stays_finite():
    r = sine.meta_train(TINY.maml, "tanh", 0, TINY)
    assert all(torch.isfinite(v).all() for v in r.phi.values())
    assert any(not torch.equal(r.phi[k], r.init[k]) for k in r.phi)


def test_run_experiment_writes_results_and_reloads_saved_runs(tmp_path):
    exp = dataclasses.replace(TINY, reptile=dataclasses.replace(TINY.reptile, meta_iters=2), eval_tasks=20)
    out, wdir = tmp_path / "sine.json", tmp_path / "weights"
    doc = sine.run_experiment(exp, "smoke", out=out, weights_dir=wdir, progress=None)
    saved = load_results(out, exp, "smoke")
    for init in sine.INITS:
        for steps in (0, 1, 32):
            m = saved["metrics"][f"mse_after_{steps}_steps_{init}"]
            assert m["n_tasks"] == 20 and m["per_seed"][0]["seed"] == 0 and m["ci95"] > 0
    assert len(saved["extra"]["loss_curves"]["relu"]["reptile"]["mean"]) == 33
    assert set(saved["extra"]["example"]["relu"]["predictions"]["maml"]) == {"0", "1", "32"}
    w = sine.load_weights(sine.weights_path(wdir, "reptile", "relu", 0))
    assert set(w) == set(SineMLP((32, 32)).state_dict())
    # a second call reuses the saved runs instead of retraining, and gives the same numbers
    messages = []
    again = sine.run_experiment(exp, "smoke", weights_dir=wdir, progress=messages.append)
    assert any("loaded" in m for m in messages)
    assert again["metrics"]["mse_after_32_steps_reptile"]["mean"] == pytest.approx(
        doc["metrics"]["mse_after_32_steps_reptile"]["mean"], rel=1e-6)
    assert json.loads(out.read_text())["provenance"]["finished"] is True


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="algorithm"):
        sine.SineConfig(algorithm="fomaml")
    with pytest.raises(ValueError, match="query_shots"):
        sine.SineConfig(algorithm="maml", query_shots=0)
    with pytest.raises(ValueError, match="profile"):
        sine.get_experiment("huge")
    with pytest.raises(FileNotFoundError, match="retrain"):
        sine.load_weights("/nonexistent/sine_reptile_relu_seed0.pt")
