"""``reptile data check``: what is under the data root, and is it complete?

Omniglot is read in full (1,623 characters x 20 drawings, ~2 s); CIFAR-100 is checked by
structure (``classes.csv`` with both split columns, 100 tiles of 600 images; ``full=True`` decodes
every tile); Mini-ImageNet is optional and reported if present.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..paths import DataNotFoundError, candidate_roots

REQUIRED = ("omniglot", "cifar_fs")
FETCH_HINT = {"omniglot": "reptile data fetch omniglot", "cifar_fs": "reptile data fetch cifar100"}


@dataclass
class Status:
    """One data set's line in the table."""

    name: str
    required: bool
    state: str          # ok | missing | invalid | absent (optional and not there)
    path: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.state == "ok" or (not self.required and self.state == "absent")


def check_omniglot(root: str | os.PathLike | None = None) -> Status:
    from .omniglot import DRAWINGS, NUM_CHARACTERS, SETS, read_characters
    from ..paths import find_dataset

    try:
        folder = find_dataset("omniglot", tuple(f"{s}.npz|{s}" for s in SETS), root, "omniglot")
    except DataNotFoundError:
        return Status("omniglot", True, "missing", "-", _searched(root, "omniglot"))
    layout = "npz" if all((folder / f"{s}.npz").exists() for s in SETS) else "png folders"
    try:
        images, names = read_characters(folder, size=28)
    except (ValueError, OSError) as e:
        return Status("omniglot", True, "invalid", str(folder), str(e))
    if images.shape[:2] != (NUM_CHARACTERS, DRAWINGS):
        return Status("omniglot", True, "invalid", str(folder),
                      f"{images.shape[0]:,} characters x {images.shape[1]}, expected {NUM_CHARACTERS:,} x {DRAWINGS}")
    return Status("omniglot", True, "ok", str(folder),
                  f"{layout}: {len(names):,} characters x {DRAWINGS} drawings, 105x105")


def check_cifar(root: str | os.PathLike | None = None, full: bool = False) -> Status:
    from PIL import Image

    from .cifar import COLS, IMAGE, PER_CLASS, cifar_folder, decode_tile, encoding_of, read_classes, split_counts, tile_path
    from .cifar_splits import EXPECTED_COUNTS

    try:
        folder = cifar_folder(root)
    except DataNotFoundError:
        return Status("cifar_fs", True, "missing", "-", _searched(root, "cifar_fs"))
    try:
        rows = read_classes(folder)
        if len(rows) != 100:
            raise ValueError(f"classes.csv has {len(rows)} classes, expected 100")
        counts = split_counts(rows)
        for k, want in EXPECTED_COUNTS.items():
            if counts[k] != want:
                raise ValueError(f"classes.csv: {k} split has {counts[k]}, expected {want}")
        paths = [tile_path(folder, r["fine_name"]) for r in rows]
        for p in paths:
            if full:
                n = len(decode_tile(p))
            else:
                try:
                    with Image.open(p) as im:
                        w, h = im.size
                except OSError as e:
                    raise ValueError(f"{p} is not a readable image ({e})") from None
                n = (h // IMAGE) * COLS if w == COLS * IMAGE and h % IMAGE == 0 else -1
            if n != PER_CLASS:
                raise ValueError(f"{p}: holds {n} images, expected {PER_CLASS} (a 960x640 tile)")
    except (ValueError, OSError) as e:
        return Status("cifar_fs", True, "invalid", str(folder), str(e))
    enc = encoding_of(folder, paths)
    return Status("cifar_fs", True, "ok", str(folder),
                  f"{enc} tiles{' (decoded)' if full else ''}: 100 classes x {PER_CLASS}; "
                  "CIFAR-FS 64/16/20, FC100 60/20/20")


def check_miniimagenet(root: str | os.PathLike | None = None) -> Status:
    from .miniimagenet import EXPECTED_CLASSES, PER_CLASS, SPLITS, find_layout, list_split, load_split, miniimagenet_folder

    try:
        folder = miniimagenet_folder(root)
    except DataNotFoundError:
        return Status("miniimagenet", False, "absent", "-", "not found; bring your own copy (layouts: reptile_lib/data/miniimagenet.py)")
    try:
        layout = find_layout(folder)
        parts, nonstandard = [], False
        for s in SPLITS:
            if layout == "pickle":
                images, wnids = load_split(folder, s, layout)
                classes, lo, hi = len(wnids), images.shape[1], images.shape[1]
            else:
                counts = [len(v) for v in list_split(folder, s, layout).values()]
                classes, lo, hi = len(counts), min(counts, default=0), max(counts, default=0)
            nonstandard |= (classes, lo, hi) != (EXPECTED_CLASSES[s], PER_CLASS, PER_CLASS)
            parts.append(f"{s} {classes} x {lo if lo == hi else f'{lo}-{hi}'}")
    except (ValueError, OSError) as e:
        return Status("miniimagenet", False, "invalid", str(folder), str(e))
    note = "; not the paper's 64/16/20 x 600" if nonstandard else ""
    return Status("miniimagenet", False, "ok", str(folder), f"{layout} layout: {', '.join(parts)}{note}")


def _searched(root, name: str) -> str:
    return "not found in " + "; ".join(str(r / name) for r in candidate_roots(root))


def check_all(root: str | os.PathLike | None = None, full: bool = False) -> list[Status]:
    """Omniglot and CIFAR-100 (required), Mini-ImageNet (optional)."""
    return [check_omniglot(root), check_cifar(root, full), check_miniimagenet(root)]


def format_table(rows: list[Status]) -> str:
    """A short plain-text table plus, if something required is missing, what to run."""
    head = ("data set", "status", "where", "details")
    cells = [head] + [(r.name + ("" if r.required else " (optional)"), r.state, r.path, r.detail) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3] for c in cells]
    bad = [r for r in rows if not r.ok]
    if bad:
        lines.append("")
        for r in bad:
            fix = FETCH_HINT.get(r.name)
            lines.append(f"{r.name} is {r.state}: run `{fix}` (needs internet), or point --data-root / "
                         f"$REPTILE_DATA at a folder holding {r.name}/" if fix else f"{r.name} is {r.state}")
    return "\n".join(lines)
