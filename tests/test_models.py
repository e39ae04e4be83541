"""The networks match the released TensorFlow models' shapes, padding, normalisation and init."""
import math

import torch
import torch.nn.functional as F

from reptile_lib.models import (BatchStatNorm, MiniImageNetNet, OmniglotNet, SameConv2d, SineMLP, init_params,
                                tf_same_padding)


def test_tf_same_padding_puts_the_extra_zero_after():
    assert tf_same_padding(28, 3, 2) == (0, 1)   # 28 -> 14
    assert tf_same_padding(7, 3, 2) == (1, 1)    # 7 -> 4
    assert tf_same_padding(4, 3, 2) == (0, 1)    # 4 -> 2
    assert tf_same_padding(84, 3, 1) == (1, 1)


def test_stride2_conv_windows_start_at_even_pixels_like_tensorflow():
    torch.manual_seed(0)
    conv = SameConv2d(1, 1, 3, stride=2)
    x = torch.randn(1, 1, 28, 28)
    y = conv(x)
    assert y.shape == (1, 1, 14, 14)
    # TensorFlow: window (i, j) covers rows 2i..2i+2, cols 2j..2j+2 of the input padded at the bottom/right.
    xp = F.pad(x, (0, 1, 0, 1))[0, 0]
    w = conv.weight[0, 0]
    for i, j in [(0, 0), (3, 5), (13, 13)]:
        ref = (xp[2 * i:2 * i + 3, 2 * j:2 * j + 3] * w).sum() + conv.bias[0]
        assert torch.allclose(y[0, 0, i, j], ref, atol=1e-5)


def test_batch_norm_uses_batch_statistics_with_eps_1e3():
    bn = BatchStatNorm(3)
    x = torch.randn(5, 3, 4, 4) * 3 + 1
    mean = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    assert torch.allclose(bn(x), (x - mean) / torch.sqrt(var + 1e-3), atol=1e-5)
    assert not any(b.numel() for b in bn.buffers())  # no running statistics


def test_feature_sizes_of_the_paper_networks():
    assert OmniglotNet(5).classifier.in_features == 256           # 28 -> 14 -> 7 -> 4 -> 2, 64 filters
    assert MiniImageNetNet(5).classifier.in_features == 1152      # 84 -> 42 -> 21 -> 11 -> 6, 32 filters
    assert MiniImageNetNet(5, image_size=32).classifier.in_features == 128  # CIFAR-FS: 32 -> 16 -> 8 -> 4 -> 2
    assert OmniglotNet(20)(torch.rand(7, 28, 28)).shape == (7, 20)
    assert MiniImageNetNet(5, 32)(torch.rand(4, 3, 32, 32)).shape == (4, 5)
    assert SineMLP()(torch.rand(10)).shape == (10,)


def test_glorot_uniform_kernels_zero_biases_and_seeded():
    model = OmniglotNet(5)
    p = init_params(model, torch.Generator().manual_seed(3))
    q = init_params(model, torch.Generator().manual_seed(3))
    assert all(torch.equal(p[k], q[k]) for k in p)
    w = p["features.0.weight"]  # (64, 1, 3, 3)
    limit = math.sqrt(6 / (1 * 9 + 64 * 9))
    assert w.abs().max() <= limit and w.abs().max() > 0.9 * limit
    assert torch.all(p["features.0.bias"] == 0) and torch.all(p["classifier.bias"] == 0)
    assert torch.all(p["features.1.weight"] == 1) and torch.all(p["features.1.bias"] == 0)
    dense = p["classifier.weight"]
    assert dense.abs().max() <= math.sqrt(6 / (256 + 5))
