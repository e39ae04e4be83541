"""The functional inner optimisers against independent references."""
import pytest
import torch

from reptile_lib.optim import SGD, Adam


@pytest.mark.parametrize("beta1", [0.0, 0.9], ids=["the inner loop's beta1 = 0", "Figure 1's MAML outer Adam"])
def test_adam_matches_torch_adam_when_eps_is_zero(beta1):
    # With eps = 0 TensorFlow's and PyTorch's Adam coincide (bias corrections included); torch.optim.Adam
    # is the reference. beta1 = 0.9: the first moment and its 1 / (1 - beta1^t) correction as well.
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, generator=g)
    ours = {"w": w.clone()}
    ref = torch.nn.Parameter(w.clone())
    torch_opt = torch.optim.Adam([ref], lr=0.01, betas=(beta1, 0.999), eps=0.0)
    opt = Adam(0.01, beta1=beta1, eps=0.0)
    state = opt.init(ours)
    for _ in range(5):
        grad = torch.randn(4, 3, generator=g)
        ref.grad = grad.clone()
        torch_opt.step()
        ours, state = opt.step(ours, {"w": grad}, state)
    assert torch.allclose(ours["w"], ref.detach(), atol=1e-6)
    assert float(state["step"]) == 5


def test_adam_eps_is_added_before_bias_correction_as_in_tensorflow():
    opt = Adam(0.1, eps=1e-3)
    p, st = opt.step({"w": torch.zeros(1)}, {"w": torch.tensor([0.5])}, opt.init({"w": torch.zeros(1)}))
    v = 0.001 * 0.25
    expected = -0.1 * (1 - 0.999) ** 0.5 * 0.5 / (v ** 0.5 + 1e-3)  # TF: lr_t * g / (sqrt(v) + eps)
    assert torch.allclose(p["w"], torch.tensor([expected]), atol=1e-7)


def test_adam_with_beta1_keeps_a_first_moment():
    opt = Adam(0.1, beta1=0.9)
    st = opt.init({"w": torch.zeros(2)})
    assert "m" in st
    _, st = opt.step({"w": torch.zeros(2)}, {"w": torch.ones(2)}, st)
    assert torch.allclose(st["m"]["w"], torch.full((2,), 0.1))


def test_sgd_step():
    p, _ = SGD(0.5).step({"w": torch.ones(2)}, {"w": torch.tensor([2.0, -2.0])}, {})
    assert torch.equal(p["w"], torch.tensor([0.0, 2.0]))
