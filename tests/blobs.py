"""Generated 'characters' for tests: a random 28 x 28 blob per class, each image with some pixels flipped."""
import torch

from reptile_lib.tasks import ClassDataset


def blobs(classes: int, per_class: int, flip: float, seed: int, name: str, prefix: str = "") -> ClassDataset:
    """``classes`` x ``per_class`` binary images; ``flip``: the share of pixels flipped (0.4: hard tasks,
    few-shot accuracy well between 0 and 1; 0.05: easy ones)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(classes, 1, 1, 28, 28, generator=g) < 0.3
    flips = torch.rand(classes, per_class, 1, 28, 28, generator=g) < flip
    return ClassDataset((protos ^ flips).to(torch.uint8), name, tuple(f"{prefix}{i}" for i in range(classes)))
