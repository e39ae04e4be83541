"""The paper's networks (Section 7 / the released ``models.py``), ready for ``torch.func``.

What a faithful port keeps (the authors' released code, ``openai/supervised-reptile``,
``supervised_reptile/models.py``, with TensorFlow 1's ``tf.layers`` defaults):

- BatchNorm always normalises with the current batch's statistics (TensorFlow's
  ``training=True``), eps 1e-3, and keeps no running averages. That is also what lets
  ``vmap`` batch the networks over tasks.
- TensorFlow's ``padding='same'``: for a stride-2 convolution on an even input the extra
  zero goes to the bottom/right, not split evenly as PyTorch's ``padding=1`` would.
- Glorot-uniform kernels, zero biases, BatchNorm scale 1 and shift 0.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .params import Params


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) zero padding of TensorFlow's ``padding='same'`` along one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A 3x3 convolution with TensorFlow's 'same' padding (asymmetric for stride 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = tf_same_padding(x.shape[-2], k, s)
        left, right = tf_same_padding(x.shape[-1], k, s)
        if top == bottom and left == right:  # symmetric: let the convolution pad (one kernel)
            return F.conv2d(x, self.weight, self.bias, s, (top, left))
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, s)


class BatchStatNorm(nn.Module):
    """BatchNorm on the current batch's statistics only (no running averages), eps 1e-3."""

    def __init__(self, channels: int, eps: float = 1e-3):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class OmniglotNet(nn.Module):
    """4 x [conv 3x3 (64, stride 2, same), BatchNorm, ReLU] -> dense (28->14->7->4->2, 256 features)."""

    def __init__(self, ways: int, image_size: int = 28, channels: int = 1, filters: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        size, c = image_size, channels
        for _ in range(4):
            layers += [SameConv2d(c, filters, 3, stride=2), BatchStatNorm(filters), nn.ReLU()]
            size, c = math.ceil(size / 2), filters
        self.features = nn.Sequential(*layers)
        self.channels, self.image_size = channels, image_size
        self.classifier = nn.Linear(filters * size * size, ways)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, self.channels, self.image_size, self.image_size)  # (B, 1, 28, 28)
        return self.classifier(self.features(x).flatten(1))  # (B, ways)


class MiniImageNetNet(nn.Module):
    """4 x [conv 3x3 (32, same), BatchNorm, max-pool 2x2 (same), ReLU] -> dense.

    The released ``MiniImageNetModel`` order: normalise *before* pooling (the statistics are
    taken over the full-resolution map). 84 -> 42 -> 21 -> 11 -> 6 (1,152 features); on
    CIFAR-FS's 32x32 inputs 32 -> 16 -> 8 -> 4 -> 2 (128 features). ``ceil_mode`` pooling is
    TensorFlow's 'same' pooling.
    """

    def __init__(self, ways: int, image_size: int = 84, channels: int = 3, filters: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        size, c = image_size, channels
        for _ in range(4):
            layers += [SameConv2d(c, filters, 3), BatchStatNorm(filters),
                       nn.MaxPool2d(2, 2, ceil_mode=True), nn.ReLU()]
            size, c = math.ceil(size / 2), filters
        self.features = nn.Sequential(*layers)
        self.channels, self.image_size = channels, image_size
        self.classifier = nn.Linear(filters * size * size, ways)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, self.channels, self.image_size, self.image_size)  # (B, 3, H, W)
        return self.classifier(self.features(x).flatten(1))


class SineMLP(nn.Module):
    """The Figure 1 regressor: 1 -> 64 -> 64 -> 1 with a chosen activation."""

    def __init__(self, hidden: tuple[int, ...] = (64, 64), activation: str = "relu"):
        super().__init__()
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        layers: list[nn.Module] = []
        width = 1
        for h in hidden:
            layers += [nn.Linear(width, h), acts[activation]()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(-1, 1)).reshape(-1)  # (B,)


def init_params(model: nn.Module, generator: torch.Generator) -> Params:
    """Fresh parameters drawn with an explicit generator: Glorot-uniform weights, zero biases.

    BatchNorm scales start at 1, shifts at 0 (TensorFlow's defaults). The result does not
    depend on the global RNG, so two runs with the same seed start identically.
    """
    params: Params = {}
    for name, p in model.named_parameters():
        if isinstance(_owner(model, name), BatchStatNorm):
            params[name] = torch.ones_like(p) if name.endswith("weight") else torch.zeros_like(p)
        elif p.dim() >= 2:
            receptive = p[0, 0].numel() if p.dim() > 2 else 1
            fan_in, fan_out = p.shape[1] * receptive, p.shape[0] * receptive
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=generator.device)
            params[name] = (2 * u - 1).mul_(limit).to(p.device)
        else:
            params[name] = torch.zeros_like(p)
    return params


def _owner(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model


def build_model(kind: str, ways: int = 1, image_size: int | None = None, channels: int | None = None,
                activation: str = "relu") -> nn.Module:
    """The network of a config: ``omniglot``, ``miniimagenet`` or ``sine``."""
    if kind == "omniglot":
        return OmniglotNet(ways, image_size or 28, channels or 1)
    if kind == "miniimagenet":
        return MiniImageNetNet(ways, image_size or 84, channels or 3)
    if kind == "sine":
        return SineMLP(activation=activation)
    raise ValueError(f"unknown model {kind!r}: expected 'omniglot', 'miniimagenet' or 'sine'")
