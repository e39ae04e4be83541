"""Section 5: the Taylor expansion of the three updates, on a tiny family where expectations are exact."""
import dataclasses
import itertools

import pytest
import torch

from reptile_lib import params as P
from reptile_lib import taylor
from reptile_lib.results import load_results

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def family():
    return taylor.make_family(n_tasks=2, n_batches=2, batch_size=3, hidden=(4,), activation="tanh", seed=0)


def manual_expected(family, k, alpha):
    """Independent reference: loop over tasks and ordered k-tuples with plain torch.autograd."""
    T, B, _ = family.x.shape
    names = list(family.phi)
    sums = {a: 0.0 for a in taylor.ALGORITHMS}
    count = 0
    for t in range(T):
        for tup in itertools.product(range(B), repeat=k):
            phi0 = [family.phi[n].clone().requires_grad_(True) for n in names]
            p, grads = phi0, []
            for i, b in enumerate(tup):
                loss = family.loss_fn(dict(zip(names, p)), family.x[t, b], family.y[t, b])
                g = torch.autograd.grad(loss, p, create_graph=True)
                grads.append(torch.cat([gg.reshape(-1) for gg in g]))
                if i < k - 1:
                    p = [pp - alpha * gg for pp, gg in zip(p, g)]
            # MAML: d/dphi0 of the last batch's loss at the point reached after k - 1 steps
            last = family.loss_fn(dict(zip(names, p)), family.x[t, tup[-1]], family.y[t, tup[-1]])
            maml = torch.cat([g.reshape(-1) for g in torch.autograd.grad(last, phi0)])
            sums["maml"] = sums["maml"] + maml.detach()
            sums["fomaml"] = sums["fomaml"] + grads[-1].detach()
            sums["reptile"] = sums["reptile"] + sum(grads).detach()
            count += 1
    return {a: v / count for a, v in sums.items()}


@pytest.mark.parametrize("k", [2, 3])
def test_expected_updates_match_an_explicit_loop(family, k):
    alpha = 0.05
    got = taylor.expected_updates(family, k, alpha)
    want = manual_expected(family, k, alpha)
    for a in taylor.ALGORITHMS:
        torch.testing.assert_close(got[a], want[a], rtol=1e-9, atol=1e-11)


def test_avg_grad_inner_hvp_matches_finite_differences(family):
    agi = taylor.avg_grad_inner(family)
    fd = taylor.avg_grad_inner_fd(family, h=1e-5)
    assert float((agi - fd).norm() / agi.norm()) < 1e-7
    assert float(agi.norm()) > 1e-3  # the term is not trivially zero here


def test_step_error_shrinks_like_alpha_cubed(family):
    """The formulas hold to O(alpha^2) in g, so the step alpha * g errs by O(alpha^3)."""
    alphas = [1e-4, 10 ** -3.5, 1e-3]
    out = taylor.expansion_errors(family, (2, 3), alphas)
    for key, (slope, _) in out["slopes"].items():
        assert abs(slope - 3) < 0.1, (key, slope)
    for key, (slope, _) in out["slopes_zeroth"].items():  # dropping AvgGradInner leaves O(alpha^2)
        assert abs(slope - 2) < 0.1, (key, slope)


def test_k1_reptile_is_one_sgd_step_on_the_mean_loss(family):
    out = taylor.k1_identity(family, alphas=(0.01, 0.3), eps=0.7)
    assert out["max_abs_diff_step"] < 1e-13
    assert out["max_abs_diff_update"] < 1e-11
    assert out["norm_avg_grad"] > 1e-3


def test_enumeration_covers_every_ordered_tuple(family):
    T, B, n = family.x.shape
    rows = taylor.enumerate_tuples(family, 3)
    assert len(rows) == 3 and rows[0][0].shape == (T * B ** 3, n)
    # each (task, batch) appears equally often at every position: independent uniform draws
    for x, _ in rows:
        counts = torch.stack([(x == family.x[t, b]).all(1) for t in range(T) for b in range(B)]).sum(1)
        assert counts.tolist() == [B ** 2] * (T * B)


def test_fit_slope_recovers_a_power_law():
    alphas = [1e-3, 1e-2, 1e-1]
    slope, se = taylor.fit_slope(alphas, [5 * a ** 3 for a in alphas])
    assert slope == pytest.approx(3, abs=1e-9) and se < 1e-6


def test_following_avg_grad_inner_aligns_minibatch_gradients():
    config = taylor.TaylorConfig(ip_hidden=(8, 8), ip_tasks=10, ip_batches=3, ip_batch_size=5, ip_steps=3,
                                 ip_step_size=0.05)
    out = taylor.alignment_experiment(config)
    agi, rnd = out["+AvgGradInner"], out["random"]
    assert agi["inner_product"][-1] > agi["inner_product"][0] * 1.2
    assert agi["inner_product_held_out"][-1] > agi["inner_product_held_out"][0]
    assert abs(rnd["inner_product"][-1] - rnd["inner_product"][0]) < agi["inner_product"][-1] - agi["inner_product"][0]


def test_pairwise_alignment_matches_a_loop():
    fam = taylor.make_family(2, 3, 2, (4,), "tanh", seed=1)
    inner, cos = taylor.pairwise_alignment(fam.loss_fn, fam.phi, fam.x, fam.y)
    vals, coss = [], []
    for t in range(2):
        gs = [P.flatten(torch.func.grad(fam.loss_fn)(fam.phi, fam.x[t, b], fam.y[t, b])) for b in range(3)]
        for i in range(3):
            for j in range(3):
                if i != j:
                    vals.append(gs[i] @ gs[j])
                    coss.append(gs[i] @ gs[j] / (gs[i].norm() * gs[j].norm()))
    torch.testing.assert_close(inner, torch.stack(vals).mean())
    torch.testing.assert_close(cos, torch.stack(coss).mean())


def test_run_experiment_writes_a_results_file(tmp_path):
    config = dataclasses.replace(taylor.TaylorConfig(), n_tasks=2, n_batches=2, batch_size=2, hidden=(3,), ks=(2,),
                                 alphas=(1e-4, 1e-3), ip_hidden=(4,), ip_tasks=3, ip_batches=2, ip_batch_size=3,
                                 ip_steps=1)
    taylor.run_experiment(config, "smoke", out=tmp_path / "taylor.json")
    saved = load_results(tmp_path / "taylor.json", config, "smoke")
    for alg in taylor.ALGORITHMS:
        assert abs(saved["metrics"][f"step_error_slope_{alg}_k2"]["mean"] - 3) < 0.1
    assert saved["metrics"]["k1_identity_max_abs_diff"]["mean"] < 1e-13
    assert saved["extra"]["alignment"]["+AvgGradInner"]["inner_product"][1] > \
        saved["extra"]["alignment"]["+AvgGradInner"]["inner_product"][0]
