"""The released TensorFlow code's semantics, pinned against hand-written references.

- The loss is the batch's *summed* cross-entropy (``optimizer.minimize`` on the per-example vector),
  so one SGD step and one Adam step from a carried state equal steps written out by hand from
  TensorFlow's formulas, including an evaluation batch of another size than the training batches.
- The Mini-ImageNet network normalises before pooling: conv -> BatchNorm -> max-pool -> ReLU.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from reptile_lib.configs import CIFAR_FS_5WAY, OMNIGLOT_5WAY
from reptile_lib.inner import classification_loss, inner_loop
from reptile_lib.models import MiniImageNetNet, init_params, tf_same_padding
from reptile_lib.optim import SGD, Adam
from reptile_lib.train import make_learner


class Softmax(nn.Module):
    """A linear softmax classifier: small enough to differentiate by hand."""

    def __init__(self, d: int = 6, ways: int = 3):
        super().__init__()
        self.lin = nn.Linear(d, ways)

    def forward(self, x):
        return self.lin(x)


def hand_gradient(p, x, y):
    """d/dtheta of sum_i CE(W x_i + b, y_i): sum_i (softmax_i - onehot_i) x_i^T, written out."""
    logits = x @ p["lin.weight"].T + p["lin.bias"]
    r = torch.softmax(logits, -1) - F.one_hot(y, logits.shape[-1]).to(x.dtype)
    return {"lin.weight": r.T @ x, "lin.bias": r.sum(0)}


def tf_adam_step(p, g, v, t, lr, beta2=0.999, eps=1e-8):
    """TensorFlow 1's AdamOptimizer with beta1 = 0 (m_t = g): lr_t = lr sqrt(1 - beta2^t) / (1 - 0^t),
    theta -= lr_t m_t / (sqrt(v_t) + eps), eps added to sqrt(v) before the bias correction."""
    v = {k: beta2 * v[k] + (1 - beta2) * g[k] ** 2 for k in p}
    lr_t = lr * math.sqrt(1 - beta2 ** t)
    return {k: p[k] - lr_t * g[k] / (v[k].sqrt() + eps) for k in p}, v


def _problem(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _params():
    g = torch.Generator().manual_seed(0)
    return {"lin.weight": torch.randn(3, 6, generator=g, dtype=torch.float64) * 0.5,
            "lin.bias": torch.randn(3, generator=g, dtype=torch.float64) * 0.1}


def test_the_loss_is_the_batch_sum():
    learner = make_learner(OMNIGLOT_5WAY, (1, 28, 28))
    p = init_params(learner.model, torch.Generator().manual_seed(1))
    x, y = torch.rand(10, 1, 28, 28), torch.arange(10) % 5
    per_example = F.cross_entropy(torch.func.functional_call(learner.model, p, (x,)), y, reduction="none")
    assert torch.allclose(learner.loss_fn(p, x, y), per_example.sum())
    assert not torch.allclose(per_example.sum(), per_example.mean())


def test_sgd_step_is_lr_times_the_summed_gradient():
    """Figure 3's inner step: theta - 0.003 * d(sum of 25 losses)/dtheta."""
    model, p = Softmax().double(), _params()
    x, y = _problem(25, 1)
    ours = inner_loop(classification_loss(model), p, SGD(0.003), {}, [(x, y)]).params
    g = hand_gradient(p, x, y)
    for k in p:
        assert torch.allclose(ours[k], p[k] - 0.003 * g[k], atol=1e-14, rtol=0)
    mean_step = {k: p[k] - 0.003 * g[k] / 25 for k in p}   # the old mean-loss step: 25x smaller
    assert not torch.allclose(ours["lin.weight"], mean_step["lin.weight"], atol=1e-6)


def test_adam_steps_with_carried_state_and_an_evaluation_batch_of_another_size():
    """Five training steps on batches of 10 build Adam's state; evaluation then steps on batches of 5 from
    that carried state (released ``Reptile.evaluate``). Every step equals TensorFlow's, written by hand."""
    model, p0 = Softmax().double(), _params()
    loss, opt = classification_loss(model), Adam(1e-3)
    train = [_problem(10, s) for s in range(5)]
    evaluation = [_problem(5, 100 + s) for s in range(3)]
    r = inner_loop(loss, p0, opt, opt.init(p0), train)
    ours = inner_loop(loss, r.params, opt, r.state, evaluation).params

    p, v = dict(p0), {k: torch.zeros_like(t) for k, t in p0.items()}
    for t, (x, y) in enumerate(train + evaluation, start=1):
        p, v = tf_adam_step(p, hand_gradient(p, x, y), v, t, 1e-3)
    for k in p:
        assert torch.allclose(ours[k], p[k], atol=1e-13, rtol=0), k
    assert float(r.state["step"]) == 5

    # The mean loss would give other evaluation steps: the carried v was built on 10-image sums.
    mean_loss = classification_loss(model, "mean")
    r_mean = inner_loop(mean_loss, p0, opt, opt.init(p0), train)
    mean_eval = inner_loop(mean_loss, r_mean.params, opt, r_mean.state, evaluation).params
    assert not torch.allclose(mean_eval["lin.weight"], ours["lin.weight"], atol=1e-6)


def released_miniimagenet_forward(p, x):
    """The released ``MiniImageNetModel`` written out: 4 x [conv 3x3 same, BatchNorm (batch statistics,
    eps 1e-3), max-pool 2x2 same, ReLU], flatten, dense; ``pool_first`` is deliberately not an option."""
    h = x
    for i in range(4):
        conv, bn = f"features.{4 * i}.", f"features.{4 * i + 1}."
        top, bottom = tf_same_padding(h.shape[-2], 3, 1)
        h = F.conv2d(F.pad(h, (top, bottom, top, bottom)), p[conv + "weight"], p[conv + "bias"])
        mean, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
        h = (h - mean) / torch.sqrt(var + 1e-3) * p[bn + "weight"][:, None, None] + p[bn + "bias"][:, None, None]
        if h.shape[-1] % 2:  # TensorFlow 'same' pooling: pad at the bottom/right (with -inf: a max ignores it)
            h = F.pad(h, (0, 1, 0, 1), value=-math.inf)
        h = F.max_pool2d(h, 2, 2)
        h = F.relu(h)
    return h.flatten(1) @ p["classifier.weight"].T + p["classifier.bias"]


def _random_miniimagenet(size):
    model = MiniImageNetNet(5, image_size=size).double()
    g = torch.Generator().manual_seed(2)
    p = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) * 0.3 for k, v in model.named_parameters()}
    x = torch.rand(6, 3, size, size, generator=g, dtype=torch.float64)
    return model, p, x


def test_miniimagenet_net_normalises_before_pooling():
    for size in (84, 32, 21):
        model, p, x = _random_miniimagenet(size)
        ours = torch.func.functional_call(model, p, (x,))
        assert torch.allclose(ours, released_miniimagenet_forward(p, x), atol=1e-10), size
    # The other order is another function: the test above can fail.
    h = F.conv2d(x, p["features.0.weight"], p["features.0.bias"], padding=1)
    bn_then_pool = F.max_pool2d(F.batch_norm(h, None, None, training=True, eps=1e-3), 2, 2, ceil_mode=True)
    pool_then_bn = F.batch_norm(F.max_pool2d(h, 2, 2, ceil_mode=True), None, None, training=True, eps=1e-3)
    assert not torch.allclose(bn_then_pool, pool_then_bn, atol=1e-3)


def test_engine_batched_network_keeps_the_released_order():
    from reptile_lib.engine.nets import batched_logits

    model, p, x = _random_miniimagenet(32)
    stacked = {k: v[None].expand(2, *v.shape) for k, v in p.items()}
    out = batched_logits(model, stacked, torch.stack([x, x.flip(0)]))
    ref = released_miniimagenet_forward(p, x)
    assert torch.allclose(out[0], ref, atol=1e-10) and torch.allclose(out[1], ref.flip(0), atol=1e-10)


def test_config_hash_names_the_loss():
    import dataclasses
    assert OMNIGLOT_5WAY.loss_reduction == "sum" and CIFAR_FS_5WAY.loss_reduction == "sum"
    assert OMNIGLOT_5WAY.hash() != dataclasses.replace(OMNIGLOT_5WAY, loss_reduction="mean").hash()
