"""Omniglot as the released code reads it (``supervised_reptile/omniglot.py``), Section 7 / Appendix A.

- all 1,623 characters of both sets, sorted by (alphabet, character), then ``random.seed(0)``
  + ``random.shuffle``: the first 1,200 are meta-train, the other 423 meta-test;
- 105x105 -> 28x28 with Pillow's nearest-neighbour resampling (what ``resize`` does to 1-bit
  images), background 1.0, ink 0.0, no normalisation;
- meta-train characters only are augmented with rotations of 0/90/180/270 degrees, each a new
  class (4,800); rotations are counter-clockwise, as Pillow's ``rotate``.

Two layouts are read: the ``.npz`` files of ``../shared/datasets/omniglot`` (and of
``reptile data fetch omniglot``), and the official zips unzipped,
``images_background/<alphabet>/<character>/*.png`` + ``images_evaluation/...``.
"""
from __future__ import annotations

import random
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..paths import find_dataset

if TYPE_CHECKING:
    from ..tasks import ClassDataset

SETS = ("images_background", "images_evaluation")
NUM_TRAIN = 1200
NUM_CHARACTERS = 1623
DRAWINGS = 20
SIZE = 105

Names = list[tuple[str, str]]


def read_characters(folder: Path, size: int | None = None) -> tuple[np.ndarray, Names]:
    """All characters, sorted: (images bool (C, 20, size, size), [(alphabet, character), ...]).

    ``size=None`` keeps the original 105x105; otherwise images are resized on reading (nearest).
    Each set is read from ``<set>.npz`` if present, else from the folder ``<set>/``; the two sets
    are read in parallel threads (zlib and PNG decoding release the GIL).
    """
    folder = Path(folder)
    for s in SETS:
        if not (folder / f"{s}.npz").exists() and not (folder / s).is_dir():
            raise FileNotFoundError(f"{folder}: neither {s}.npz nor the folder {s}/ is there")

    def one(s: str) -> tuple[np.ndarray, Names]:
        imgs, chars = _read_npz(folder / f"{s}.npz") if (folder / f"{s}.npz").exists() else _read_folder(folder / s)
        return (imgs if size is None else resize_nearest(imgs, size)), chars

    with ThreadPoolExecutor(len(SETS)) as pool:
        parts = list(pool.map(one, SETS))
    names = [n for _, chars in parts for n in chars]
    if len(set(names)) != len(names):
        raise ValueError(f"{folder}: the same (alphabet, character) appears twice across {' and '.join(SETS)}")
    order = sorted(range(len(names)), key=lambda i: names[i])
    return np.concatenate([imgs for imgs, _ in parts])[order], [names[i] for i in order]


def _read_npz(path: Path) -> tuple[np.ndarray, Names]:
    try:
        with np.load(path) as d:
            images, alphabets, characters = d["images"], d["alphabet"], d["character"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a valid Omniglot .npz ({type(e).__name__}: {e}); delete it and "
                         "re-fetch with `reptile data fetch omniglot`") from None
    if images.dtype != np.bool_ or images.ndim != 4 or images.shape[1:] != (DRAWINGS, SIZE, SIZE):
        raise ValueError(f"{path}: expected images bool (C, {DRAWINGS}, {SIZE}, {SIZE}), got "
                         f"{images.dtype} {images.shape}; delete it and re-fetch with `reptile data fetch omniglot`")
    if alphabets.shape != (len(images),) or characters.shape != (len(images),):
        raise ValueError(f"{path}: {len(images)} characters but {alphabets.shape} alphabet and "
                         f"{characters.shape} character names; re-fetch with `reptile data fetch omniglot`")
    return images, list(zip(map(str, alphabets), map(str, characters)))


def read_png(source) -> np.ndarray:
    """One drawing as bool (105, 105), True = background; ``source`` is a path or a file object."""
    from PIL import Image

    with Image.open(source) as im:
        if im.size != (SIZE, SIZE):
            raise ValueError(f"{getattr(source, 'name', source)}: Omniglot drawings are {SIZE}x{SIZE}, this one is "
                             f"{im.size[0]}x{im.size[1]}")
        if im.mode == "1":
            return np.asarray(im).view(np.uint8) != 0  # Pillow's True is byte 255; make it a plain bool
        # Not the official 1-bit files: threshold instead of convert('1'), which would dither.
        return np.asarray(im.convert("L")) >= 128


def _read_folder(path: Path) -> tuple[np.ndarray, Names]:
    chars = [(a.name, c) for a in sorted(p for p in path.iterdir() if p.is_dir())
             for c in sorted(p for p in a.iterdir() if p.is_dir() and p.name.startswith("character"))]
    if not chars:
        raise ValueError(f"{path}: no <alphabet>/character*/ folders found; unzip the official "
                         f"{path.name}.zip here or run `reptile data fetch omniglot`")
    files = []
    for _, char in chars:
        pngs = sorted(char.glob("*.png"))
        if len(pngs) != DRAWINGS:
            raise ValueError(f"{char}: expected {DRAWINGS} drawings, found {len(pngs)}; the unzipped data is "
                             "incomplete: unzip it again or run `reptile data fetch omniglot`")
        files += pngs
    with ThreadPoolExecutor(2) as pool:
        images = np.stack(list(pool.map(read_png, files, chunksize=64)))
    return images.reshape(len(chars), DRAWINGS, SIZE, SIZE), [(a, c.name) for a, c in chars]


def write_npz(path: Path, images: np.ndarray, names: Names, char_ids: list[int]) -> None:
    """One set in the ``.npz`` format of ``../shared/datasets/omniglot`` (rows sorted by name)."""
    order = sorted(range(len(names)), key=lambda i: names[i])
    np.savez_compressed(
        path, images=np.ascontiguousarray(images[order] != 0),
        alphabet=np.array([names[i][0] for i in order]), character=np.array([names[i][1] for i in order]),
        char_id=np.array([char_ids[i] for i in order], dtype=np.int16))


def reptile_split(names: Names, seed: int = 0, num_train: int = NUM_TRAIN) -> tuple[list[int], list[int]]:
    """Indices of the meta-train and meta-test characters (released ``split_dataset``).

    ``names`` must be sorted; the shuffle is Python's ``random`` seeded with ``seed``.
    """
    order = list(range(len(names)))
    random.Random(seed).shuffle(order)
    return order[:num_train], order[num_train:]


def resize_nearest(images: np.ndarray, size: int = 28) -> np.ndarray:
    """Pillow's nearest-neighbour resize of square images: pixel i samples floor((i + 0.5) * in / out)."""
    n = images.shape[-1]
    idx = np.floor((np.arange(size) + 0.5) * n / size).astype(np.intp)
    return images[..., idx[:, None], idx[None, :]]


def load_omniglot(root: str | Path | None = None, seed: int = 0,
                  num_train: int = NUM_TRAIN) -> dict[str, "ClassDataset"]:
    """``{'train': 4,800 rotated classes, 'test': 423 classes}``, 20 images of 1x28x28 each (uint8 0/1)."""
    import torch

    from ..tasks import ClassDataset

    folder = find_dataset("omniglot", tuple(f"{s}.npz|{s}" for s in SETS), root, "omniglot")
    images, names = read_characters(folder, size=28)
    if len(names) <= num_train:
        raise ValueError(f"{folder}: {len(names)} characters, but the split puts {num_train} in meta-train; "
                         f"the full data set has {NUM_CHARACTERS}: re-fetch with `reptile data fetch omniglot`")
    # astype, not view: Pillow (and the shared .npz) store True as byte 255; this gives exactly 0/1.
    small = torch.from_numpy(images.astype(np.uint8))  # (1623, 20, 28, 28), 1 = background
    train_idx, test_idx = reptile_split(names, seed, num_train)
    train = small[train_idx]
    rotated = torch.stack([torch.rot90(train, k, dims=(-2, -1)) for k in range(4)], dim=1)  # (1200, 4, 20, 28, 28)
    train_names = tuple(f"{'/'.join(names[i])}@{90 * k}" for i in train_idx for k in range(4))
    return {
        "train": ClassDataset(rotated.flatten(0, 1).unsqueeze(2), "omniglot/train", train_names),
        "test": ClassDataset(small[test_idx].unsqueeze(2), "omniglot/test",
                             tuple("/".join(names[i]) for i in test_idx)),
    }
