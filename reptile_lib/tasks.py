"""N-way K-shot tasks sampled from a class-grouped image tensor, exactly as the released code does.

Released ``reptile.py`` semantics kept here:
- a task takes ``ways`` distinct classes in random order; class i gets label i;
- meta-training draws ``train_shots`` images per class (not ``shots``) and cuts them into
  ``inner_iters`` mini-batches of ``inner_batch``: the samples are shuffled, dealt out in
  batches, reshuffled when exhausted, and a batch can straddle two reshuffles
  (``_mini_batches``); ``replacement=True`` draws each batch afresh instead;
- separate-tail FOMAML (``--foml-tail N``) reserves N shots per class as the last mini-batch;
- evaluation draws ``shots + 1`` images per class; the first of each class is its query.

All randomness comes from an explicit ``torch.Generator``; indices are drawn for a whole
meta-batch (or a chunk of evaluation tasks) at once, so the same code samples on a GPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .inner import Batch


@dataclass(frozen=True)
class ClassDataset:
    """Images grouped by class.

    ``images`` is (classes, images_per_class, channels, height, width), stored compactly
    (uint8 or bool); ``scale`` maps stored values to the network's inputs (x / scale).
    """

    images: Tensor
    name: str
    class_names: tuple[str, ...]
    scale: float = 1.0

    def __post_init__(self):
        if self.images.dim() != 5:
            raise ValueError(f"{self.name}: images must be (classes, per_class, C, H, W), got {tuple(self.images.shape)}")
        if len(self.class_names) != self.images.shape[0]:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.images.shape[0]} classes")

    @property
    def num_classes(self) -> int:
        return self.images.shape[0]

    @property
    def per_class(self) -> int:
        return self.images.shape[1]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[2:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> "ClassDataset":
        return ClassDataset(self.images.to(device), self.name, self.class_names, self.scale)

    def gather(self, classes: Tensor, index: Tensor) -> Tensor:
        """Float images ``images[classes, index] / scale``; ``classes`` broadcasts against ``index``."""
        return self.images[classes, index].to(torch.get_default_dtype()).div_(self.scale)


def random_permutations(shape: tuple[int, ...], n: int, generator: torch.Generator) -> Tensor:
    """Independent uniform permutations of ``range(n)``, one per leading index: (*shape, n)."""
    return torch.rand((*shape, n), generator=generator, device=generator.device).argsort(-1)


def minibatch_indices(n: int, batch: int, num_batches: int, n_tasks: int,
                      generator: torch.Generator, replacement: bool = False) -> Tensor:
    """Indices into a task's n samples for each inner step: (n_tasks, num_batches, batch).

    Without replacement this is the released ``_mini_batches``: reshuffle, deal, and let a
    batch run over into the next reshuffle. With replacement each batch is a fresh draw of
    ``batch`` distinct samples.
    """
    if replacement:
        if batch > n:
            raise ValueError(f"--replacement draws {batch} distinct samples per batch, the task has {n}")
        return random_permutations((n_tasks, num_batches), n, generator)[..., :batch]
    epochs = math.ceil(batch * num_batches / n)
    stream = random_permutations((n_tasks, epochs), n, generator).reshape(n_tasks, epochs * n)
    return stream[:, : batch * num_batches].reshape(n_tasks, num_batches, batch)


def _take(x: Tensor, idx: Tensor) -> Tensor:
    """Per-task gather along axis 1: x (T, n, ...), idx (T, ...) -> (T, ..., ...)."""
    t = torch.arange(x.shape[0], device=x.device).reshape(-1, *([1] * (idx.dim() - 1)))
    return x[t, idx]


@dataclass
class EvalTasks:
    """A chunk of evaluation tasks; every tensor has a leading task axis."""

    support_x: Tensor   # (T, ways * shots, C, H, W)
    support_y: Tensor   # (T, ways * shots)
    query_x: Tensor     # (T, ways, C, H, W)  one query per class
    query_y: Tensor     # (T, ways)
    batch_index: Tensor  # (T, eval_iters, eval_batch) indices into the support set

    def batches(self) -> list[Batch]:
        """The inner mini-batches, (x, y) per step with a leading task axis."""
        return [(_take(self.support_x, i), _take(self.support_y, i)) for i in self.batch_index.unbind(1)]


class TaskSampler:
    """Draws few-shot tasks from a :class:`ClassDataset` with an explicit generator."""

    def __init__(self, data: ClassDataset, ways: int, generator: torch.Generator):
        if ways < 1 or ways > data.num_classes:
            raise ValueError(f"{data.name}: {ways}-way tasks need {ways} classes, "
                             f"this split has {data.num_classes}; lower --classes")
        self.data, self.ways, self.generator = data, ways, generator

    def _check_shots(self, shots: int, what: str) -> None:
        if shots < 1 or shots > self.data.per_class:
            raise ValueError(f"{self.data.name}: {what} = {shots} images per class, but each class has "
                             f"{self.data.per_class}; lower it")

    def _draw(self, n_tasks: int, shots: int) -> tuple[Tensor, Tensor]:
        """(images (T, ways*shots, C, H, W), labels (T, ways*shots)) class by class."""
        g, dev = self.generator, self.data.images.device
        classes = random_permutations((n_tasks,), self.data.num_classes, g)[:, : self.ways]
        index = random_permutations((n_tasks, self.ways), self.data.per_class, g)[..., :shots]
        classes, index = classes.to(dev), index.to(dev)
        x = self.data.gather(classes[..., None], index)  # (T, ways, shots, C, H, W)
        y = torch.arange(self.ways, device=dev).repeat_interleave(shots).expand(n_tasks, -1)
        return x.flatten(1, 2), y

    def train_batches(self, n_tasks: int, train_shots: int, inner_batch: int, inner_iters: int,
                      replacement: bool = False, tail_shots: int | None = None) -> list[Batch]:
        """The inner mini-batches of a meta-batch of training tasks (released ``train_step``)."""
        self._check_shots(train_shots, "train_shots")
        x, y = self._draw(n_tasks, train_shots)
        if tail_shots is None:
            idx = minibatch_indices(x.shape[1], inner_batch, inner_iters, n_tasks, self.generator,
                                    replacement).to(x.device)
            return [(_take(x, i), _take(y, i)) for i in idx.unbind(1)]
        # Separate tail (released FOML with tail_shots): the first tail_shots of each class form
        # the last mini-batch; the other inner_iters - 1 batches come from the rest.
        if not 0 < tail_shots < train_shots:
            raise ValueError(f"foml_tail = {tail_shots} must be between 1 and train_shots - 1 = {train_shots - 1}")
        x = x.unflatten(1, (self.ways, train_shots))
        y = y.unflatten(1, (self.ways, train_shots))
        tail = (x[:, :, :tail_shots].flatten(1, 2), y[:, :, :tail_shots].flatten(1, 2))
        rest_x, rest_y = x[:, :, tail_shots:].flatten(1, 2), y[:, :, tail_shots:].flatten(1, 2)
        idx = minibatch_indices(rest_x.shape[1], inner_batch, inner_iters - 1, n_tasks, self.generator,
                                replacement).to(x.device)
        return [(_take(rest_x, i), _take(rest_y, i)) for i in idx.unbind(1)] + [tail]

    def eval_tasks(self, n_tasks: int, shots: int, eval_batch: int, eval_iters: int,
                   replacement: bool = False) -> EvalTasks:
        """Evaluation tasks: ``shots + 1`` images per class, the first of each class is the query."""
        self._check_shots(shots + 1, "shots + 1")
        x, y = self._draw(n_tasks, shots + 1)
        x = x.unflatten(1, (self.ways, shots + 1))
        y = y.unflatten(1, (self.ways, shots + 1))
        support_x, support_y = x[:, :, 1:].flatten(1, 2), y[:, :, 1:].flatten(1, 2)
        idx = minibatch_indices(support_x.shape[1], eval_batch, eval_iters, n_tasks, self.generator,
                                replacement).to(x.device)
        return EvalTasks(support_x, support_y, x[:, :, 0], y[:, :, 0], idx)
