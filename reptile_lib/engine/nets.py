"""Per-task gradients of N parameter sets at once: the inner loop's forward and backward pass.

Two interchangeable backends, both ``(buffer, x (R, T, B, ...), y (R, T, B)) -> (gradient buffer, losses (R, T))``
on a :class:`~.flat.BatchLayout` buffer:

- :class:`VmapGrads`: ``vmap(grad(loss))`` over instances, any model (the reference path's own
  computation; the first step shares phi between a run's tasks exactly as the reference does).
- :class:`BatchedGrads`: the paper's two networks written directly for N parameter sets, with
  activations kept as ``(B, N * C, H, W)`` from layer to layer: each convolution is one grouped
  convolution, each batch normalisation one ``batch_norm`` over N * C channels (statistics per task
  and channel over the task's batch, as the reference), and one ``autograd.grad`` of the summed task
  losses gives every task's own gradient (tasks do not interact). ``vmap`` computes the same thing
  but moves the task axis around between layers; here an inner step is about 44 ATen operations
  instead of about 118 for OmniglotNet (``engine.counting``), which is what a GPU's launch-bound
  meta-iteration pays for. Tests check both against ``functional_call`` per task.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad_and_value, vmap

from ..inner import LossFn
from ..models import BatchStatNorm, MiniImageNetNet, OmniglotNet, SameConv2d, tf_same_padding
from .flat import BatchLayout


class VmapGrads:
    """Gradients of any ``loss_fn(params, x, y)`` for every instance with ``vmap(grad)``."""

    shares_first_step = True

    def __init__(self, loss_fn: LossFn, batch: BatchLayout):
        self.batch = batch
        g = grad_and_value(loss_fn)
        self.one_run = vmap(g, in_dims=(None, 0, 0))          # phi shared by the tasks: the reference's call
        self.shared = vmap(self.one_run)                       # (R, ...) params, each shared by a run's T tasks
        self.each = vmap(g)

    def __call__(self, buf: Tensor, x: Tensor, y: Tensor, phi_views: dict | None = None) -> tuple[Tensor, Tensor]:
        R, T = y.shape[:2]
        if phi_views is not None and R == 1:  # exactly the reference's computation
            grads, losses = self.one_run({k: v[0] for k, v in phi_views.items()}, x[0], y[0])
        elif phi_views is not None:
            grads, losses = self.shared(phi_views, x, y)
        else:
            grads, losses = self.each(self.batch.views(buf), x.flatten(0, 1), y.flatten(0, 1))
        return self.batch.pack([grads[n] for n in self.batch.layout.names]), losses.reshape(R, T)


def supports_batched(model: nn.Module) -> bool:
    """Whether :class:`BatchedGrads` implements ``model`` (the paper's two convolutional networks)."""
    return type(model) in (OmniglotNet, MiniImageNetNet)


def batched_logits(model: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``model``'s outputs for N parameter sets: params ``{name: (N, *shape)}``, x (N, B, ...) -> (N, B, ways).

    Mirrors ``OmniglotNet.forward`` / ``MiniImageNetNet.forward`` layer by layer.
    """
    if not supports_batched(model):
        raise TypeError(f"no batched forward for {type(model).__name__}; use the vmap backend")
    n, b = x.shape[:2]
    h = x.reshape(n, b, model.channels, model.image_size, model.image_size)
    h = h.transpose(0, 1).reshape(b, n * model.channels, model.image_size, model.image_size)
    for name, layer in model.features.named_children():
        prefix = f"features.{name}."
        if isinstance(layer, SameConv2d):
            w, bias = params[prefix + "weight"], params[prefix + "bias"]
            k, s = layer.kernel_size[0], layer.stride[0]
            top, bottom = tf_same_padding(h.shape[-2], k, s)
            left, right = tf_same_padding(h.shape[-1], k, s)
            w = w.reshape(-1, *w.shape[2:])
            if top == bottom and left == right:
                h = F.conv2d(h, w, bias.reshape(-1), s, (top, left), groups=n)
            else:
                h = F.conv2d(F.pad(h, (left, right, top, bottom)), w, bias.reshape(-1), s, groups=n)
        elif isinstance(layer, BatchStatNorm):
            h = F.batch_norm(h, None, None, params[prefix + "weight"].reshape(-1), params[prefix + "bias"].reshape(-1),
                             True, 0.0, layer.eps)
        elif isinstance(layer, nn.ReLU):
            h = F.relu(h)
        elif isinstance(layer, nn.MaxPool2d):
            h = F.max_pool2d(h, layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.ceil_mode)
        else:
            raise TypeError(f"no batched form of {type(layer).__name__}")
    features = h.reshape(b, n, -1).transpose(0, 1)                       # (N, B, C * h * w), as flatten(1)
    w, bias = params["classifier.weight"], params["classifier.bias"]
    return torch.baddbmm(bias[:, None, :], features, w.transpose(1, 2))


class BatchedGrads:
    """Gradients of every task's cross-entropy, summed over its batch, from :func:`batched_logits`."""

    shares_first_step = False

    def __init__(self, model: nn.Module, batch: BatchLayout, reduction: str = "sum"):
        if not supports_batched(model):
            raise TypeError(f"no batched forward for {type(model).__name__}; use the vmap backend")
        self.model, self.batch, self.reduction = model, batch, reduction

    def task_losses(self, params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy of each of the N tasks over its batch, reduced as ``inner.CrossEntropy``: (N,)."""
        logits = batched_logits(self.model, params, x)
        n, b, ways = logits.shape
        per_example = F.cross_entropy(logits.reshape(n * b, ways), y.reshape(n * b), reduction="none").view(n, b)
        return per_example.sum(1) if self.reduction == "sum" else per_example.mean(1)

    def __call__(self, buf: Tensor, x: Tensor, y: Tensor, phi_views: dict | None = None) -> tuple[Tensor, Tensor]:
        R, T = y.shape[:2]
        with torch.enable_grad():
            leaf = buf.detach().requires_grad_()
            views = self.batch.views(leaf)
            losses = self.task_losses(views, x.flatten(0, 1), y.flatten(0, 1))
            # The tasks are independent, so the gradient of the sum holds each task's own gradient.
            grads = torch.autograd.grad(losses.sum(), list(views.values()))
        return self.batch.pack(grads), losses.detach().reshape(R, T)


def make_grads(kind: str, model: nn.Module, loss_fn: LossFn, batch: BatchLayout):
    """``'batched'`` (the paper's networks), ``'vmap'`` (any model) or ``'auto'`` (batched where possible)."""
    if kind == "auto":
        kind = "batched" if supports_batched(model) else "vmap"
    if kind == "batched":
        return BatchedGrads(model, batch, getattr(loss_fn, "reduction", "sum"))
    if kind == "vmap":
        return VmapGrads(loss_fn, batch)
    raise ValueError(f"unknown gradient backend {kind!r}: expected 'batched', 'vmap' or 'auto'")
