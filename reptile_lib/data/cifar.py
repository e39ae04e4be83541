"""CIFAR-FS (64/16/20) and FC100 (60/20/20): CIFAR-100 split by class, the stand-in for Mini-ImageNet.

On disk (``../shared/datasets/cifar_fs``, or what ``reptile data fetch cifar100`` writes):
``classes.csv`` (``fine_label,fine_name,coarse_label,coarse_name,cifar_fs_split,fc100_split``) and
one tile per class, ``images/<fine_name>.png``: a grid 30 images wide of 32x32 RGB images,
image i at row i // 30, column i % 30 (600 images: 960x640).

A tile may instead be stored in another Pillow-readable format (``images/<fine_name>.jpg``, ``.webp``)
so a smaller lossy copy can be sent to another machine (:func:`pack_cifar`). The loader prefers ``.png``;
when it reads anything else the split's name says so (``cifar_fs/train@jpeg-q95``), so results
can state which bytes were used.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..paths import find_dataset
from .cifar_splits import COLUMNS, SPLIT_COLUMNS

if TYPE_CHECKING:
    from ..tasks import ClassDataset

IMAGE = 32
COLS = 30
PER_CLASS = 600
SPLITS = ("train", "val", "test")
PACK_INFO = "pack.json"
FORMATS = {"jpeg": ".jpg", "webp": ".webp", "png": ".png"}


def read_classes(folder: Path) -> list[dict[str, str]]:
    """The rows of ``classes.csv``; checks the columns and the split values."""
    path = Path(folder) / "classes.csv"
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = tuple(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path} is not readable ({e}); re-fetch with `reptile data fetch cifar100`") from None
    missing = [c for c in COLUMNS if c not in columns]
    if missing or not rows:
        raise ValueError(f"{path}: expected the columns {','.join(COLUMNS)}, missing {missing or 'all rows'}; "
                         "re-fetch with `reptile data fetch cifar100`")
    for r in rows:
        for col in SPLIT_COLUMNS.values():
            if r[col] not in SPLITS:
                raise ValueError(f"{path}: {r['fine_name']} has {col}={r[col]!r}, expected train/val/test")
    return rows


def tile_path(folder: Path, name: str) -> Path:
    """``images/<name>.png`` if present, else the one other file ``images/<name>.*``."""
    png = folder / "images" / f"{name}.png"
    if png.exists():
        return png
    others = sorted(p for p in (folder / "images").glob(f"{glob_escape(name)}.*") if not p.name.startswith("."))
    if len(others) == 1:
        return others[0]
    if not others:
        raise FileNotFoundError(f"{folder}: no tile images/{name}.png (or another format) for class {name}; "
                                "re-fetch with `reptile data fetch cifar100`")
    raise ValueError(f"{folder}: several tiles for class {name}: {', '.join(p.name for p in others)}; keep one")


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def encoding_of(folder: Path, paths: list[Path]) -> str:
    """``png`` when every tile is PNG, else e.g. ``jpeg-q95`` (from ``pack.json``) or ``jpg``."""
    suffixes = sorted({p.suffix.lower().lstrip(".") for p in paths})
    if suffixes == ["png"]:
        return "png"
    info_path = Path(folder) / PACK_INFO
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text())
            if FORMATS.get(info.get("format", "")) in {p.suffix.lower() for p in paths}:
                return info["encoding"]
        except (OSError, ValueError, KeyError):
            pass
    return "+".join(suffixes)


def decode_tile(path: Path, out: np.ndarray | None = None) -> np.ndarray:
    """One class's images from its tile: uint8 (n, 3, 32, 32), n = rows * 30 (written into ``out`` if given)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w != COLS * IMAGE or h % IMAGE:
                raise ValueError(f"{path}: a tile is {COLS * IMAGE} pixels wide and a multiple of {IMAGE} high, "
                                 f"this one is {w}x{h}")
            tile = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except (OSError, SyntaxError) as e:  # Pillow: truncated or not an image
        raise ValueError(f"{path} is not a readable image ({e}); re-fetch with `reptile data fetch cifar100`") from None
    rows = h // IMAGE
    if out is None:
        out = np.empty((rows * COLS, 3, IMAGE, IMAGE), dtype=np.uint8)
    elif out.shape != (rows * COLS, 3, IMAGE, IMAGE):
        raise ValueError(f"{path} holds {rows * COLS} images, the other tiles {out.shape[0]}; re-fetch the data")
    # (rows*32, 30*32, 3) -> (rows, 32, 30, 32, 3) -> (rows, 30, 3, 32, 32): one copy, into out
    out.reshape(rows, COLS, 3, IMAGE, IMAGE)[...] = tile.reshape(rows, IMAGE, COLS, IMAGE, 3).transpose(0, 2, 4, 1, 3)
    return out


def make_tile(images: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_tile`: (n, 3, 32, 32), n a multiple of 30 -> (n/30*32, 960, 3)."""
    n = images.shape[0]
    if n % COLS:
        raise ValueError(f"{n} images per class: a tile needs a multiple of {COLS}")
    return np.ascontiguousarray(images.reshape(n // COLS, COLS, 3, IMAGE, IMAGE).transpose(0, 3, 1, 4, 2)
                                .reshape(n // COLS * IMAGE, COLS * IMAGE, 3))


def read_tiles(folder: Path, groups: list[list[str]]) -> tuple[list[np.ndarray], str]:
    """For each group of class names, uint8 (len(group), n, 3, 32, 32); and the encoding read.

    Tiles are decoded by a thread pool (Pillow releases the GIL) straight into the output arrays.
    """
    from PIL import Image

    paths = [[tile_path(folder, n) for n in g] for g in groups]
    flat = [(gi, j, p) for gi, g in enumerate(paths) for j, p in enumerate(g)]
    try:
        with Image.open(flat[0][2]) as im:
            per_class = (im.size[1] // IMAGE) * COLS
    except OSError as e:
        raise ValueError(f"{flat[0][2]} is not a readable image ({e}); re-fetch with `reptile data fetch cifar100`") from None
    out = [np.empty((len(g), per_class, 3, IMAGE, IMAGE), dtype=np.uint8) for g in groups]
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(lambda t: decode_tile(t[2], out[t[0]][t[1]]), flat))
    return out, encoding_of(folder, [p for _, _, p in flat])


def cifar_folder(root: str | Path | None = None) -> Path:
    return find_dataset("cifar_fs", ("classes.csv", "images"), root, "cifar100")


def load_cifar(root: str | Path | None = None, split: str = "cifar_fs") -> dict[str, "ClassDataset"]:
    """``{'train','val','test'}`` of CIFAR-FS (``split='cifar_fs'``) or FC100 (``split='fc100'``).

    Each is a ClassDataset of uint8 (classes, 600, 3, 32, 32) with ``scale=255``, classes in
    ``fine_label`` order. Only the classes of the three splits are decoded.
    """
    import torch

    from ..tasks import ClassDataset

    if split not in SPLIT_COLUMNS:
        raise ValueError(f"unknown CIFAR-100 split {split!r}: choose one of {', '.join(SPLIT_COLUMNS)}")
    folder = cifar_folder(root)
    rows = sorted(read_classes(folder), key=lambda r: int(r["fine_label"]))
    column = SPLIT_COLUMNS[split]
    names = {s: [r["fine_name"] for r in rows if r[column] == s] for s in SPLITS}
    for s in SPLITS:
        if not names[s]:
            raise ValueError(f"{folder}/classes.csv: no class has {column}={s}")
    images, encoding = read_tiles(folder, [names[s] for s in SPLITS])
    tag = "" if encoding == "png" else f"@{encoding}"
    return {s: ClassDataset(torch.from_numpy(x), f"{split}/{s}{tag}", tuple(names[s]), scale=255.0)
            for s, x in zip(SPLITS, images)}


def split_counts(rows: list[dict[str, str]]) -> dict[str, dict[str, int]]:
    """Classes per split for both split columns, e.g. ``{'cifar_fs': {'train': 64, ...}, 'fc100': ...}``."""
    return {k: {s: sum(r[c] == s for r in rows) for s in SPLITS} for k, c in SPLIT_COLUMNS.items()}


def pack_cifar(src_root: str | Path | None, dst_folder: str | Path, fmt: str = "jpeg", quality: int = 95,
               force: bool = False) -> dict:
    """A smaller copy of the CIFAR-100 tiles in ``dst_folder/cifar_fs/{classes.csv, images/*.<fmt>}``.

    JPEG uses ``quality`` and no chroma subsampling (``subsampling=0``, 4:4:4), so its 8x8 blocks
    tile each 32x32 image exactly and no block mixes two images; WebP uses ``quality`` (lossy, and
    always 4:2:0 chroma); ``fmt='png'`` is a lossless copy. The copy is
    written to a temporary folder and renamed into place, so a failure leaves nothing behind.
    Returns (and writes to ``pack.json``) the format, bytes and the mean / max absolute pixel
    difference from the source, measured by decoding what was written.
    """
    from PIL import Image

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"--quality {quality}: must be between 1 and 100")
    src = cifar_folder(src_root)
    rows = sorted(read_classes(src), key=lambda r: int(r["fine_label"]))
    dst_parent = Path(dst_folder).expanduser()
    target = dst_parent / "cifar_fs"
    if target.resolve() == src.resolve():
        raise ValueError(f"{target} is the source folder; choose another --out")
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; remove it or pass --force to replace it")
    dst_parent.mkdir(parents=True, exist_ok=True)
    ext = FORMATS[fmt]
    options = {"jpeg": {"quality": quality, "subsampling": 0}, "webp": {"quality": quality, "method": 6},
               "png": {"optimize": False}}[fmt]
    encoding = {"jpeg": f"jpeg-q{quality}", "webp": f"webp-q{quality}", "png": "png"}[fmt]
    tmp = Path(tempfile.mkdtemp(prefix=".cifar_fs.pack-", dir=dst_parent))
    try:
        out = tmp / "cifar_fs"
        (out / "images").mkdir(parents=True)
        shutil.copyfile(src / "classes.csv", out / "classes.csv")

        def one(row: dict[str, str]) -> tuple[int, float, int]:
            original = decode_tile(tile_path(src, row["fine_name"]))
            path = out / "images" / f"{row['fine_name']}{ext}"
            Image.fromarray(make_tile(original)).save(path, **options)
            diff = np.abs(decode_tile(path).astype(np.int16) - original)
            return path.stat().st_size, float(diff.mean()), int(diff.max())

        with ThreadPoolExecutor(2) as pool:
            stats = list(pool.map(one, rows))
        info = {"format": fmt, "encoding": encoding, "options": options, "source": str(src),
                "bytes": sum(s[0] for s in stats) + (out / "classes.csv").stat().st_size,
                "mean_abs_diff": float(np.mean([s[1] for s in stats])),  # every tile has the same pixel count
                "max_abs_diff": max(s[2] for s in stats)}
        (out / PACK_INFO).write_text(json.dumps(info, indent=1) + "\n")
        if target.exists():  # --force: swap the old copy out only once the new one is complete
            os.replace(target, tmp / "old")
        os.replace(out, target)
        return info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
