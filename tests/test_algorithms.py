"""Reptile / FOMAML / MAML against independent references: a plain serial loop, the k = 1 identity,
hand-unrolled autograd for MAML."""
import copy

import pytest
import torch
import torch.nn.functional as F

from reptile_lib import params as P
from reptile_lib.algorithms import maml_batch_gradient, maml_meta_gradient, meta_step, step_weights, task_slice
from reptile_lib.inner import classification_loss, inner_loop, regression_loss
from reptile_lib.models import OmniglotNet, SineMLP, init_params
from reptile_lib.optim import SGD, Adam
from reptile_lib.tasks import TaskSampler


def _setup(tiny_data, k=3, tasks=3, ways=3):
    g = torch.Generator().manual_seed(0)
    model = OmniglotNet(ways)
    phi = init_params(model, g)
    batches = TaskSampler(tiny_data, ways, g).train_batches(tasks, 4, 6, k)
    return model, phi, batches


def _warm_adam(phi, step=50.0):
    # A warm state, as after some training: Adam's first steps from v = 0 are sign-like and amplify
    # float rounding of near-zero gradients, which would hide real differences behind noise.
    return {"step": torch.tensor(step), "v": {k: torch.full_like(v, 1e-5) for k, v in phi.items()}}


@pytest.mark.parametrize("opt", [SGD(0.05), Adam(1e-3)], ids=["sgd", "adam"])
@pytest.mark.parametrize("weights", ["reptile", "fomaml", "g1+g3"])
def test_batched_vmap_path_equals_serial_loop(tiny_data, opt, weights):
    model, phi, batches = _setup(tiny_data)
    w = {"reptile": step_weights(3), "fomaml": step_weights(3, [3]), "g1+g3": step_weights(3, [1, 3])}[weights]
    state = _warm_adam(phi) if isinstance(opt, Adam) else {}
    loss = classification_loss(model)
    a = meta_step(loss, phi, opt, state, batches, 0.7, w, batched=True)
    b = meta_step(loss, phi, opt, state, batches, 0.7, w, batched=False, adam_carry="mean")
    for k in phi:
        assert torch.allclose(a.params[k], b.params[k], atol=1e-5), k
    if isinstance(opt, Adam):
        assert torch.allclose(a.state["step"], b.state["step"])
        for k in phi:
            assert torch.allclose(a.state["v"][k], b.state["v"][k], atol=1e-7, rtol=1e-4)
    assert torch.allclose(a.losses, b.losses, atol=1e-5)


def test_sequential_adam_carry_equals_the_released_loop_with_torch_adam(tiny_data):
    """The released code: one task after another, weights reset, Adam's state carried on."""
    model, phi, batches = _setup(tiny_data)
    loss = classification_loss(model)
    ours = meta_step(loss, phi, Adam(1e-3), _warm_adam(phi), batches, 0.5, step_weights(3),
                     batched=False, adam_carry="sequential")
    # Reference: an nn.Module trained with torch.optim.Adam from the same warm state (where
    # sqrt(v) >> eps, TensorFlow's and PyTorch's eps conventions agree to ~1e-6).
    net = copy.deepcopy(model)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.999), eps=1e-8)
    for p in net.parameters():
        opt.state[p] = {"step": torch.tensor(50.0), "exp_avg": torch.zeros_like(p),
                        "exp_avg_sq": torch.full_like(p, 1e-5)}
    finals = []
    for t in range(batches[0][0].shape[0]):
        for n, p in net.named_parameters():
            p.data.copy_(phi[n])
        for x, y in batches:
            opt.zero_grad()
            F.cross_entropy(net(x[t]), y[t], reduction="sum").backward()  # the released summed loss
            opt.step()
        finals.append({n: p.detach().clone() for n, p in net.named_parameters()})
    ref = P.interpolate(phi, P.average(finals), 0.5)
    for k in phi:
        assert torch.allclose(ours.params[k], ref[k], atol=2e-5), k
    assert float(ours.state["step"]) == 59  # 3 tasks x 3 steps carried on from 50


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one-by-one"])
def test_mean_carry_averages_the_task_states(tiny_data, float64, batched):
    """``adam_carry='mean'``: every task starts from the shared state; the new state is the tasks' mean."""
    model, phi, batches = _setup(tiny_data)
    loss, opt, state = classification_loss(model), Adam(1e-3), _warm_adam(phi)
    r = meta_step(loss, phi, opt, state, batches, 1.0, step_weights(3), batched=batched, adam_carry="mean")
    assert float(r.state["step"]) == 53  # every task started from the shared state (50), did 3 steps
    alone = [inner_loop(loss, phi, opt, state, task_slice(batches, t)).state["v"] for t in range(3)]
    for k in phi:
        assert torch.allclose(r.state["v"][k], sum(v[k] for v in alone) / 3, rtol=1e-10, atol=0), k
    assert any(not torch.allclose(alone[0][k], alone[2][k], rtol=1e-6, atol=0) for k in phi)   # tasks differ


def test_reptile_with_one_sgd_step_is_sgd_on_the_mean_task_loss(tiny_data):
    """Section 5: with k = 1, Reptile's update is the gradient of the expected loss (joint training)."""
    model, phi, batches = _setup(tiny_data, k=1, tasks=4)
    loss = classification_loss(model)
    lr, eps = 0.1, 0.5
    r = meta_step(loss, phi, SGD(lr), {}, batches, eps, step_weights(1))
    leaves = {k: v.clone().requires_grad_() for k, v in phi.items()}
    x, y = batches[0]
    mean_loss = sum(loss(leaves, x[t], y[t]) for t in range(x.shape[0])) / x.shape[0]
    grads = torch.autograd.grad(mean_loss, list(leaves.values()))
    for (k, v), gk in zip(phi.items(), grads):
        assert torch.allclose(r.params[k], v - eps * lr * gk, atol=1e-6), k


@pytest.mark.parametrize("weights", [step_weights(3, [3]), step_weights(3, [1, 3]), step_weights(3, average=True)],
                         ids=["fomaml g3", "g1+g3", "(g1+g2+g3)/3"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one-by-one"])
def test_fomaml_and_combinations_move_along_the_weighted_inner_updates(tiny_data, float64, weights, batched):
    """Section 5's combinations: phi + eps * mean over tasks of sum_i w_i (phi_i - phi_{i-1}), where phi_i
    is a task's weights after i plain SGD steps; FOMAML is the last step alone (w = 0, 0, 1)."""
    model, phi, batches = _setup(tiny_data, tasks=3)
    loss, eps = classification_loss(model), 0.7
    direction = {k: torch.zeros_like(v) for k, v in phi.items()}
    for t in range(3):
        task = task_slice(batches, t)
        after = [phi] + [inner_loop(loss, phi, SGD(0.1), {}, task[:i]).params for i in (1, 2, 3)]
        for i, w in enumerate(weights):
            for k in phi:
                direction[k] += w * (after[i + 1][k] - after[i][k]) / 3
    m = meta_step(loss, phi, SGD(0.1), {}, batches, eps, weights, batched=batched, adam_carry="mean")
    for k in phi:
        assert torch.allclose(m.params[k], phi[k] + eps * direction[k], rtol=0, atol=1e-12), k
    assert max(float(direction[k].abs().max()) for k in phi) > 1e-4


def test_step_weights():
    assert step_weights(4) == (1, 1, 1, 1)
    assert step_weights(4, [4]) == (0, 0, 0, 1)
    assert step_weights(3, average=True) == pytest.approx((1 / 3,) * 3)
    with pytest.raises(ValueError):
        step_weights(2, [3])


def _mlp(params, x):
    h = torch.relu(x[:, None] @ params["w1"] + params["b1"])
    return (h @ params["w2"]).squeeze(-1) + params["b2"]


def test_maml_gradient_equals_hand_unrolled_autograd():
    """Second-order MAML through two SGD steps, against torch.autograd with create_graph=True."""
    g = torch.Generator().manual_seed(0)
    model = SineMLP(hidden=(8,), activation="tanh")
    phi = init_params(model, g)
    phi = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in phi.items()}
    loss = regression_loss(model)
    xs = [torch.rand(5, generator=g) * 10 - 5 for _ in range(3)]
    ys = [torch.sin(x) for x in xs]
    support, query = [(xs[0], ys[0]), (xs[1], ys[1])], (xs[2], ys[2])
    ours, _ = maml_meta_gradient(loss, phi, SGD(0.05), support, query)
    fo, _ = maml_meta_gradient(loss, phi, SGD(0.05), support, query, first_order=True)

    # Hand-unrolled reference with plain autograd and the network written out.
    def forward(p, x):
        h = torch.tanh(x[:, None] @ p["net.0.weight"].T + p["net.0.bias"])
        return (h @ p["net.2.weight"].T).squeeze(-1) + p["net.2.bias"]

    def reference(first_order):
        leaves = {k: v.clone().requires_grad_() for k, v in phi.items()}
        p = dict(leaves)
        for x, y in support:
            l = ((forward(p, x) - y) ** 2).mean()
            grads = torch.autograd.grad(l, list(p.values()), create_graph=not first_order)
            p = {k: v - 0.05 * (gk.detach() if first_order else gk) for (k, v), gk in zip(p.items(), grads)}
        lq = ((forward(p, query[0]) - query[1]) ** 2).mean()
        return dict(zip(leaves, torch.autograd.grad(lq, list(leaves.values()))))

    second, first = reference(False), reference(True)
    for k in phi:
        assert torch.allclose(ours[k], second[k], atol=1e-6), k
        assert torch.allclose(fo[k], first[k], atol=1e-6), k
    assert any(not torch.allclose(ours[k], fo[k], atol=1e-4) for k in phi)  # the second-order terms matter


def test_maml_batch_gradient_is_the_mean_of_task_gradients():
    g = torch.Generator().manual_seed(1)
    model = SineMLP(hidden=(8,))
    phi = init_params(model, g)
    loss = regression_loss(model)
    x = torch.rand(4, 3, 6, generator=g)  # (tasks, steps, points)
    support = [(x[:, 0], x[:, 0] ** 2), (x[:, 1], x[:, 1] ** 2)]
    query = (x[:, 2], x[:, 2] ** 2)
    batched, _ = maml_batch_gradient(loss, phi, SGD(0.1), support, query)
    each = [maml_meta_gradient(loss, phi, SGD(0.1), [(a[t], b[t]) for a, b in support], (query[0][t], query[1][t]))[0]
            for t in range(4)]
    mean = P.average(each)
    for k in phi:
        assert torch.allclose(batched[k], mean[k], atol=1e-6)
