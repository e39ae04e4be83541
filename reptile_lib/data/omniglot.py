"""Omniglot as the released code reads it (``supervised_reptile/omniglot.py``).

- all 1,623 characters of both sets, sorted by (alphabet, character), then ``random.seed(0)``
  + ``random.shuffle``: the first 1,200 are meta-train, the other 423 meta-test;
- 105x105 -> 28x28 with Pillow's nearest-neighbour resampling (what ``resize`` does to 1-bit
  images), background 1.0, ink 0.0, no normalisation;
- meta-train characters only are augmented with rotations of 0/90/180/270 degrees, each a new
  class (4,800); rotations are counter-clockwise, as Pillow's ``rotate``.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..paths import find_dataset
from ..tasks import ClassDataset

SETS = ("images_background", "images_evaluation")
NUM_TRAIN = 1200


def read_characters(folder: Path, size: int | None = None) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """All characters, sorted: (images bool (1623, 20, size, size), [(alphabet, character), ...]).

    ``size=None`` keeps the original 105x105; otherwise images are resized on reading.
    Reads the ``.npz`` files of ``../shared/datasets/omniglot`` or, for users who downloaded the
    official zips, the folder layout ``images_background/<alphabet>/<character>/*.png``.
    """
    parts, names = [], []
    for s in SETS:
        if (folder / f"{s}.npz").exists():
            imgs, chars = _read_npz(folder / f"{s}.npz")
        elif (folder / s).is_dir():
            imgs, chars = _read_folder(folder / s)
        else:
            raise FileNotFoundError(f"{folder}: neither {s}.npz nor the folder {s}/ is there")
        parts.append(imgs if size is None else resize_nearest(imgs, size))
        names += chars
    images = np.concatenate(parts)
    order = sorted(range(len(names)), key=lambda i: names[i])
    return images[order], [names[i] for i in order]


def _read_npz(path: Path) -> tuple[np.ndarray, list[tuple[str, str]]]:
    try:
        with np.load(path) as d:
            images, alphabets, characters = d["images"], d["alphabet"], d["character"]
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise ValueError(f"{path} is not a valid Omniglot .npz ({e}); re-fetch it with "
                         "`reptile data fetch omniglot`") from e
    if images.dtype != np.bool_ or images.ndim != 4 or images.shape[1:] != (20, 105, 105):
        raise ValueError(f"{path}: expected images bool (C, 20, 105, 105), got {images.dtype} {images.shape}")
    return images, list(zip(map(str, alphabets), map(str, characters)))


def _read_folder(path: Path) -> tuple[np.ndarray, list[tuple[str, str]]]:
    from PIL import Image

    imgs, names = [], []
    for alphabet in sorted(p for p in path.iterdir() if p.is_dir()):
        for char in sorted(p for p in alphabet.iterdir() if p.is_dir() and p.name.startswith("character")):
            files = sorted(char.glob("*.png"))
            if len(files) != 20:
                raise ValueError(f"{char}: expected 20 drawings, found {len(files)}")
            imgs.append(np.stack([np.asarray(Image.open(f).convert("1"), dtype=bool) for f in files]))
            names.append((alphabet.name, char.name))
    if not imgs:
        raise ValueError(f"{path}: no <alphabet>/character*/ folders found")
    return np.stack(imgs), names


def reptile_split(names: list[tuple[str, str]], seed: int = 0,
                  num_train: int = NUM_TRAIN) -> tuple[list[int], list[int]]:
    """Indices of the meta-train and meta-test characters (released ``split_dataset``).

    ``names`` must be sorted; the shuffle is Python's ``random`` seeded with ``seed``.
    """
    order = list(range(len(names)))
    random.Random(seed).shuffle(order)
    return order[:num_train], order[num_train:]


def resize_nearest(images: np.ndarray, size: int = 28) -> np.ndarray:
    """Pillow's nearest-neighbour resize of square images: pixel i samples floor((i + 0.5) * in / out)."""
    n = images.shape[-1]
    idx = np.floor((np.arange(size) + 0.5) * n / size).astype(int)
    return images[..., idx[:, None], idx[None, :]]


def load_omniglot(root: str | Path | None = None, seed: int = 0) -> dict[str, ClassDataset]:
    """``{'train': 4,800 rotated classes, 'test': 423 classes}``, 20 images of 1x28x28 each."""
    folder = find_dataset("omniglot", ("images_background.npz|images_background",
                                       "images_evaluation.npz|images_evaluation"), root, "omniglot")
    images, names = read_characters(folder, size=28)
    small = torch.from_numpy(images.astype(np.uint8))  # (1623, 20, 28, 28), 1 = background
    train_idx, test_idx = reptile_split(names, seed)
    train = small[train_idx]
    rotated = torch.stack([torch.rot90(train, k, dims=(-2, -1)) for k in range(4)], dim=1)  # (1200, 4, 20, 28, 28)
    train_names = tuple(f"{'/'.join(names[i])}@{90 * k}" for i in train_idx for k in range(4))
    return {
        "train": ClassDataset(rotated.flatten(0, 1).unsqueeze(2), "omniglot/train", train_names),
        "test": ClassDataset(small[test_idx].unsqueeze(2), "omniglot/test",
                             tuple("/".join(names[i]) for i in test_idx)),
    }
