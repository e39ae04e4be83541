"""Training tasks drawn in two halves: random numbers outside the CUDA graph, everything else inside.

``TaskSampler.train_batches`` turns three ``torch.rand`` calls into a meta-batch: argsorts (random
permutations), a gather of images and the released code's mini-batch dealing. Only the ``rand``
calls touch a generator, so :class:`TaskDraws` makes exactly those calls, in the same order and
shapes, into static buffers (``torch.rand(..., out=buffer)``); :func:`batches_from_draws` is the
deterministic rest, which a CUDA graph can capture. With the same generator the batches are
bit-identical to ``TaskSampler.train_batches`` (``tests/test_engine.py`` checks it), so the engine
trains on the very task stream of the reference loop and checkpoints stay interchangeable.

Buffers carry a leading *run* axis: R independent runs (seeds) each draw from their own generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..tasks import ClassDataset


@dataclass(frozen=True)
class TaskShape:
    """Everything that fixes the shapes of a meta-batch (the config fields ``train_batches`` reads)."""

    ways: int
    train_shots: int
    inner_batch: int
    inner_iters: int
    meta_batch: int
    replacement: bool = False
    tail_shots: int | None = None

    @staticmethod
    def of(config) -> "TaskShape":
        return TaskShape(config.classes, config.train_shots, config.inner_batch, config.inner_iters,
                         config.meta_batch, config.replacement, config.foml_tail)

    @property
    def dealt(self) -> tuple[int, int]:
        """(samples the mini-batches are dealt from, number of dealt mini-batches)."""
        if self.tail_shots is None:
            return self.ways * self.train_shots, self.inner_iters
        return self.ways * (self.train_shots - self.tail_shots), self.inner_iters - 1

    def check(self, data: ClassDataset) -> None:
        """The errors ``TaskSampler`` would raise, raised before any buffer is made."""
        if not 1 <= self.ways <= data.num_classes:
            raise ValueError(f"{data.name}: {self.ways}-way tasks need {self.ways} classes, this split has "
                             f"{data.num_classes}; lower --classes")
        if not 1 <= self.train_shots <= data.per_class:
            raise ValueError(f"{data.name}: train_shots = {self.train_shots} images per class, but each class "
                             f"has {data.per_class}; lower it")
        if self.tail_shots is not None and not 0 < self.tail_shots < self.train_shots:
            raise ValueError(f"foml_tail = {self.tail_shots} must be between 1 and train_shots - 1 = "
                             f"{self.train_shots - 1}")
        n, _ = self.dealt
        if self.replacement and self.inner_batch > n:
            raise ValueError(f"--replacement draws {self.inner_batch} distinct samples per batch, the task has {n}")


class TaskDraws:
    """Static buffers for the uniform numbers of one meta-iteration of R runs."""

    def __init__(self, shape: TaskShape, num_classes: int, per_class: int, runs: int, device):
        T, n = shape.meta_batch, shape.dealt[0]
        if shape.replacement:
            rows = shape.dealt[1]
        else:  # the released _mini_batches deals from as many reshuffles as it needs
            rows = math.ceil(shape.inner_batch * shape.dealt[1] / n)
        self.shape = shape
        self.classes = torch.empty(runs, T, num_classes, device=device)
        self.index = torch.empty(runs, T, shape.ways, per_class, device=device)
        self.batches = torch.empty(runs, T, rows, n, device=device)

    def draw(self, generators: Sequence[torch.Generator]) -> None:
        """Fill the buffers: per run, the three ``rand`` calls of ``TaskSampler.train_batches``."""
        if len(generators) != self.classes.shape[0]:
            raise ValueError(f"{len(generators)} generators for {self.classes.shape[0]} runs")
        for r, g in enumerate(generators):
            for buf in (self.classes, self.index, self.batches):
                torch.rand(buf.shape[1:], generator=g, out=buf[r])


def batches_from_draws(data: ClassDataset, draws: TaskDraws) -> list[tuple[Tensor, Tensor]]:
    """The k inner mini-batches from the drawn numbers: ``[(x (R, T, B, C, H, W), y (R, T, B)), ...]``.

    The same steps as ``TaskSampler.train_batches`` (classes = first ``ways`` of a random permutation,
    images = first ``train_shots`` of another, mini-batches dealt from reshuffles), but every batch is
    gathered straight from the data set by (class, image) index, all steps in one gather.
    """
    s = draws.shape
    R, T = draws.classes.shape[:2]
    dev = draws.classes.device
    classes = draws.classes.argsort(-1)[..., : s.ways]                      # (R, T, ways)
    index = draws.index.argsort(-1)[..., : s.train_shots].flatten(2)        # (R, T, ways * shots)
    n, k = s.dealt
    perm = draws.batches.argsort(-1)
    if s.replacement:
        dealt = perm[..., : s.inner_batch]                                  # (R, T, k, B)
    else:
        dealt = perm.flatten(2)[..., : s.inner_batch * k].unflatten(2, (k, s.inner_batch))
    if s.tail_shots is not None:  # dealt indices count the non-tail shots of each class
        rest = s.train_shots - s.tail_shots
        dealt = dealt // rest * s.train_shots + s.tail_shots + dealt % rest
    # Positions are laid out (step, image, run, task): the gathered images are then already in the
    # (B, R * T * C, H, W) order the batched networks convolve, and (R, T, B, ...) is a view of them.
    steps = [dealt.permute(2, 3, 0, 1)]                                      # (k, B, R, T) positions
    if s.tail_shots is not None:  # the last step: the first tail_shots images of every class, in order
        j = torch.arange(s.ways * s.tail_shots, device=dev)
        tail = j // s.tail_shots * s.train_shots + j % s.tail_shots
        steps.append(tail[None, :, None, None].expand(1, -1, R, T))
    r = torch.arange(R, device=dev)[:, None]
    t = torch.arange(T, device=dev)[None, :]
    out = []
    for pos in steps:
        label = pos // s.train_shots                                       # class slot = the label
        img_class = classes[r, t, label]
        img_index = index[r, t, pos]
        x = data.images[img_class, img_index].to(torch.get_default_dtype()).div_(data.scale)   # (k, B, R, T, C, H, W)
        y = label.permute(0, 2, 3, 1).contiguous()                         # (k, R, T, B)
        out += [(xi.permute(1, 2, 0, *range(3, xi.dim())), yi) for xi, yi in zip(x.unbind(0), y.unbind(0))]
    return out
