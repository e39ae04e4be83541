"""Mini-ImageNet (Vinyals et al. 2016; Ravi & Larochelle 2017 split 64/16/20), Section 7 / Appendix A.

Not downloadable here (ImageNet's terms); users who have it point ``--data-root`` or
``$REPTILE_DATA`` at a folder holding ``miniimagenet/`` in one of the common layouts:

(a) ``{train,val,test}/<wnid>/*.jpg|*.JPEG|*.png`` - the released code's layout
    (``fetch_data.sh``: full-size ImageNet JPEGs, class folders start with ``n``);
(b) ``images/*.jpg`` + ``train.csv``, ``val.csv``, ``test.csv`` (Ravi's lists, header ``filename,label``);
(c) ``mini-imagenet-cache-{train,val,test}.pkl`` (dict with ``image_data`` (N, 84, 84, 3) uint8 and
    ``class_dict`` {wnid: [indices]}); read with a restricted unpickler (numpy arrays only).

Images become uint8 (3, 84, 84), read as /255 (``scale=255``); classes are sorted by wnid.
Images that are not 84x84 are resized the way the released code did it:
``Image.open(f).resize((84, 84)).convert('RGB')`` with Pillow's default resampling of 2018
(Pillow < 7), which is nearest-neighbour. (Pillow >= 7 defaults to bicubic, so rerunning the
released code today would differ; ``resample=`` picks another filter.)
"""
from __future__ import annotations

import csv
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..paths import DataNotFoundError, find_dataset
from . import safe_pickle

if TYPE_CHECKING:
    from ..tasks import ClassDataset

SPLITS = ("train", "val", "test")
SIZE = 84
PER_CLASS = 600
EXPECTED_CLASSES = {"train": 64, "val": 16, "test": 20}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
RESAMPLE = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
LAYOUTS = ("(a) {train,val,test}/<wnid>/*.jpg, (b) images/*.jpg + train.csv/val.csv/test.csv, "
           "(c) mini-imagenet-cache-{train,val,test}.pkl")


def find_layout(folder: Path) -> str:
    """Which layout ``folder`` holds: ``'pickle'``, ``'folders'`` or ``'csv'`` (first complete one)."""
    if all((folder / f"mini-imagenet-cache-{s}.pkl").is_file() for s in SPLITS):
        return "pickle"
    if all((folder / s).is_dir() for s in SPLITS):
        return "folders"
    if (folder / "images").is_dir() and all((folder / f"{s}.csv").is_file() for s in SPLITS):
        return "csv"
    raise DataNotFoundError(f"{folder} holds no complete Mini-ImageNet layout; expected one of {LAYOUTS}")


def miniimagenet_folder(root: str | Path | None = None) -> Path:
    try:
        return find_dataset("miniimagenet", tuple(f"{s}|{s}.csv|mini-imagenet-cache-{s}.pkl" for s in SPLITS), root)
    except DataNotFoundError as e:
        raise DataNotFoundError(f"{e} Mini-ImageNet is not downloaded by this package (ImageNet's terms); "
                                f"put your copy in one of the layouts {LAYOUTS}.") from None


def list_split(folder: Path, split: str, layout: str) -> dict[str, list[Path]]:
    """{wnid: [image files, sorted]} for the ``folders`` and ``csv`` layouts."""
    if layout == "folders":
        d = folder / split
        return {c.name: sorted(p for p in c.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                for c in sorted(d.iterdir()) if c.is_dir() and c.name.startswith("n")}
    out: dict[str, list[Path]] = {}
    path = folder / f"{split}.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected the header filename,label (Ravi & Larochelle's split lists)")
        for row in reader:
            out.setdefault(row["label"], []).append(folder / "images" / row["filename"])
    return {k: sorted(v) for k, v in sorted(out.items())}


def read_image(path: Path, resample: str = "nearest") -> np.ndarray:
    """One image as uint8 (84, 84, 3): resized if needed, then converted to RGB (released order)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.size != (SIZE, SIZE):
                im = im.resize((SIZE, SIZE), getattr(Image.Resampling, resample.upper()))
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path} is not a readable image ({e}); replace it from your Mini-ImageNet copy") from None


def _equal_counts(split: str, counts: dict[str, int], per_class: int | None) -> int:
    if not counts:
        raise ValueError(f"miniimagenet/{split}: no classes found (class folders start with 'n', e.g. n01532829)")
    n = min(counts.values()) if per_class is None else per_class
    short = {k: v for k, v in counts.items() if v < n}
    if short or (per_class is None and len(set(counts.values())) > 1):
        raise ValueError(f"miniimagenet/{split}: classes have different numbers of images "
                         f"({min(counts.values())} to {max(counts.values())}); fix the copy or pass per_class= "
                         f"at most {min(counts.values())}")
    return n


def load_split(folder: Path, split: str, layout: str, resample: str = "nearest",
               per_class: int | None = None) -> tuple[np.ndarray, list[str]]:
    """(uint8 (classes, n, 3, 84, 84), wnids sorted) of one split."""
    if layout == "pickle":
        path = folder / f"mini-imagenet-cache-{split}.pkl"
        data = safe_pickle.load_path(path)
        try:
            images, class_dict = data["image_data"], data["class_dict"]
            wnids = sorted(class_dict)
            index = {w: [int(i) for i in class_dict[w]] for w in wnids}
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f"{path}: expected a dict with image_data and class_dict ({e})") from None
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{path}: image_data must be uint8 (N, H, W, 3), got "
                             f"{getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}")
        n = _equal_counts(split, {w: len(v) for w, v in index.items()}, per_class)
        sel = images[np.array([index[w][:n] for w in wnids], dtype=np.intp)]  # (C, n, H, W, 3)
        if sel.shape[2:4] != (SIZE, SIZE):
            from PIL import Image
            flat = sel.reshape(-1, *sel.shape[2:])
            f = getattr(Image.Resampling, resample.upper())
            sel = np.stack([np.asarray(Image.fromarray(x).resize((SIZE, SIZE), f)) for x in flat]).reshape(
                *sel.shape[:2], SIZE, SIZE, 3)
        return np.ascontiguousarray(sel.transpose(0, 1, 4, 2, 3)), wnids
    files = list_split(folder, split, layout)
    n = _equal_counts(split, {w: len(v) for w, v in files.items()}, per_class)
    paths = [p for w in files for p in files[w][:n]]
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        images = np.stack(list(pool.map(lambda p: read_image(p, resample), paths, chunksize=64)))
    return images.reshape(len(files), n, SIZE, SIZE, 3).transpose(0, 1, 4, 2, 3).copy(), list(files)


def load_miniimagenet(root: str | Path | None = None, resample: str = "nearest",
                      per_class: int | None = None) -> dict[str, "ClassDataset"]:
    """``{'train','val','test'}`` ClassDatasets of uint8 (classes, n, 3, 84, 84), ``scale=255``.

    ``per_class=None`` takes every image (classes must have the same number); a count other than
    600 per class or 64/16/20 classes is allowed (test fixtures, subsets) with a warning.
    """
    import torch

    from ..tasks import ClassDataset

    if resample not in RESAMPLE:
        raise ValueError(f"resample={resample!r}: choose one of {', '.join(RESAMPLE)}")
    folder = miniimagenet_folder(root)
    layout = find_layout(folder)
    out = {}
    for s in SPLITS:
        images, wnids = load_split(folder, s, layout, resample, per_class)
        if images.shape[1] != PER_CLASS or len(wnids) != EXPECTED_CLASSES[s]:
            warnings.warn(f"miniimagenet/{s}: {len(wnids)} classes x {images.shape[1]} images; the paper's split has "
                          f"{EXPECTED_CLASSES[s]} x {PER_CLASS}", stacklevel=2)
        out[s] = ClassDataset(torch.from_numpy(images), f"miniimagenet/{s}", tuple(wnids), scale=255.0)
    return out
