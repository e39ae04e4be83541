"""Section 6: Reptile and exact-projection SGD on the mean squared distance to solution sets."""
import dataclasses

import pytest
import torch

from reptile_lib import geometry as G
from reptile_lib.results import load_results

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

CONFIG = dataclasses.replace(G.GEOMETRY_PAPER, n_lines=4, n_circles=3, learning_rate=0.2, ks=(1, 4, 16),
                             full_iters=2000, full_tol=1e-11, trajectory_ks=(8,), meta_iters=100, n_runs=4)


@pytest.fixture(scope="module")
def fams():
    return G.families(CONFIG)


def test_projections_land_on_the_sets_orthogonally(fams):
    w = torch.tensor([0.7, -1.3], dtype=torch.float64)
    lines, circles = fams["lines"], fams["circles"]
    p = lines.project(w)
    a, b = lines.normals(), lines.y[:, 0]
    torch.testing.assert_close((a * p).sum(-1), b)                       # on the line
    d = w - p                                                             # along its normal
    torch.testing.assert_close(d[:, 0] * a[:, 1] - d[:, 1] * a[:, 0], torch.zeros(len(lines), dtype=torch.float64))
    q = circles.project(w)
    c, r = circles.x[:, 0], circles.y[:, 0]
    torch.testing.assert_close((q - c).norm(dim=-1), r)                   # on the circle
    e, f = w - c, q - c                                                   # radial
    torch.testing.assert_close(e[:, 0] * f[:, 1] - e[:, 1] * f[:, 0], torch.zeros(len(circles), dtype=torch.float64))


def test_task_losses_vanish_exactly_on_the_sets(fams):
    w = torch.tensor([0.2, 0.4], dtype=torch.float64)
    for fam in fams.values():
        for t, p in enumerate(fam.project(w)):
            assert float(fam.loss({"w": p}, fam.x[t], fam.y[t])) < 1e-20


def test_optima_are_stationary_and_global(fams):
    for fam in fams.values():
        opt = G.optimum(fam)
        assert float((fam.project(opt) - opt).mean(0).norm()) < 1e-12       # E[phi - P(phi)] = 0
        # no point of a coarse grid does better (independent check of the global minimum)
        axis = torch.linspace(-4, 4, 161, dtype=torch.float64)
        grid = torch.cartesian_prod(axis, axis)
        best = min(float(fam.mean_sq_distance(g)) for g in grid[::7])
        assert float(fam.mean_sq_distance(opt)) <= best + 1e-12


def test_exact_projection_sgd_reaches_the_optimum(fams):
    """Tolerance: 1e-8 for the deterministic runs (they run until a step moves phi less than 1e-11)."""
    for kind, fam in fams.items():
        traj = G.projection_full(fam, CONFIG.full_iters, G.start_of(CONFIG, kind), tol=CONFIG.full_tol)
        assert float((traj[-1] - G.optimum(fam)).norm()) < 1e-8, kind


def test_reptile_fixed_points_match_the_analytic_ones_and_approach_the_optimum(fams):
    lines = fams["lines"]
    opt, start = G.optimum(lines), G.start_of(CONFIG, "lines")
    distances = []
    for k in CONFIG.ks:
        analytic = G.reptile_fixed_point_lines(lines, k, CONFIG.learning_rate)
        # the library's Reptile step leaves the analytic fixed point where it is ...
        step = G.reptile_full(lines, k, CONFIG.learning_rate, 1, analytic)
        assert float((step[-1] - analytic).norm()) < 1e-12, k
        distances.append(float((analytic - opt).norm()))
    # ... and runs from the start reach it (eps does not move the fixed point; 1.5 is faster, still stable)
    for k in CONFIG.ks[1:]:
        traj = G.reptile_full(lines, k, CONFIG.learning_rate, CONFIG.full_iters, start, eps=1.5,
                              tol=CONFIG.full_tol)
        assert float((traj[-1] - G.reptile_fixed_point_lines(lines, k, CONFIG.learning_rate)).norm()) < 1e-8, k
    # k = 1 is joint training: the least-squares fit of the tasks' data, not the optimum of E[D^2]
    torch.testing.assert_close(G.reptile_fixed_point_lines(lines, 1, CONFIG.learning_rate),
                               G.joint_training_optimum(lines))
    assert distances[0] > 1e-2
    assert distances == sorted(distances, reverse=True)   # closer as k grows
    assert distances[-1] < 2e-2 and distances[-1] < distances[0] / 5  # k = 16, alpha = 0.2: 7e-3 measured


def test_reptile_on_circles_approaches_the_optimum_as_k_grows(fams):
    circles = fams["circles"]
    opt, start = G.optimum(circles), G.start_of(CONFIG, "circles")
    d = [float((G.reptile_full(circles, k, CONFIG.learning_rate, CONFIG.full_iters, start, tol=1e-9)[-1]
                - opt).norm()) for k in (1, 16)]
    assert d[1] < d[0] and d[1] < 1e-3


def test_stochastic_runs_end_near_the_optimum(fams):
    lines = fams["lines"]
    opt, start = G.optimum(lines), G.start_of(CONFIG, "lines")
    for method, k in (("projection", 1), ("reptile", 8)):
        runs = G.stochastic_runs(lines, method, CONFIG, start, k, seed=0)
        assert runs.shape == (CONFIG.n_runs, CONFIG.meta_iters + 1, 2)
        assert float((runs[:, -1] - opt).norm(dim=-1).mean()) < 0.2, method
    with pytest.raises(ValueError, match="method"):
        G.stochastic_runs(lines, "newton", CONFIG, start)


def test_run_experiment_writes_a_results_file(tmp_path):
    config = dataclasses.replace(CONFIG, ks=(1, 4), full_iters=50, full_tol=1e-9, trajectory_ks=(2,), meta_iters=20,
                                 n_runs=2)
    doc = G.run_experiment(config, "smoke", out=tmp_path / "geometry.json")
    saved = load_results(tmp_path / "geometry.json", config, "smoke")
    assert saved["metrics"].keys() == doc["metrics"].keys()
    assert {"lines_distance_projection_full", "circles_distance_reptile_full_k4",
            "lines_distance_stochastic_reptile_k2"} <= saved["metrics"].keys()
    assert len(saved["extra"]["lines"]["reptile_full"]["4"]["trajectory"]) <= 120
