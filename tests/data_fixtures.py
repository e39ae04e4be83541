"""Small generated stand-ins for the data sets' on-disk layouts (written into pytest tmp dirs).

Every writer here is independent of ``reptile_lib.data`` (it uses numpy / Pillow / zipfile /
tarfile directly), so a test that loads what it wrote checks the library against the layout.
"""
from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reptile_lib import paths

SETS = ("images_background", "images_evaluation")


def real_folder(name: str, required: tuple[str, ...]) -> Path:
    """The real data set's folder; skipped where it is absent, unless $REPTILE_REQUIRE_DATA is set (CI)."""
    try:
        return paths.find_dataset(name, required)
    except paths.DataNotFoundError as e:
        if os.environ.get("REPTILE_REQUIRE_DATA"):
            pytest.fail(f"$REPTILE_REQUIRE_DATA is set but {e}")
        pytest.skip(f"real data not available: {e}")


# ---------------------------------------------------------------- Omniglot
def omniglot_arrays(seed: int = 0, alphabets=(("Alpha", "Beta_(b)"), ("Gamma",)), chars: int = 3) -> dict:
    """{set: (images bool (C, 20, 105, 105), [(alphabet, character)], [char_id])}, sorted by name.

    Drawings are random ink strokes (False) on background (True), so resizing and rotation bugs show.
    """
    rng = np.random.default_rng(seed)
    out, next_id = {}, 1
    for s, alphas in zip(SETS, alphabets):
        names = [(a, f"character{c + 1:02d}") for a in alphas for c in range(chars)]
        images = np.ones((len(names), 20, 105, 105), dtype=bool)
        for idx in np.ndindex(len(names), 20):
            for _ in range(3):  # three thick random strokes
                r, c = rng.integers(5, 100, size=2)
                dr, dc = rng.integers(-40, 40, size=2)
                for t in np.linspace(0, 1, 60):
                    rr, cc = int(np.clip(r + t * dr, 0, 104)), int(np.clip(c + t * dc, 0, 104))
                    images[idx][max(rr - 2, 0):rr + 3, max(cc - 2, 0):cc + 3] = False
        ids = list(range(next_id, next_id + len(names)))
        next_id += len(names)
        out[s] = (images, names, ids)
    return out


def _png_bytes(drawing: np.ndarray) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(drawing)  # bool -> mode '1', like the official files
    assert im.mode == "1"
    im.save(buf, format="PNG")
    return buf.getvalue()


def write_omniglot_folders(root: Path, arrays: dict) -> Path:
    """``root/omniglot/<set>/<alphabet>/<character>/<id>_<k>.png`` (the official zips, unzipped)."""
    for s, (images, names, ids) in arrays.items():
        for (alphabet, char), drawings, cid in zip(names, images, ids):
            d = root / "omniglot" / s / alphabet / char
            d.mkdir(parents=True)
            for k, x in enumerate(drawings):
                (d / f"{cid:04d}_{k + 1:02d}.png").write_bytes(_png_bytes(x))
    return root / "omniglot"


def write_omniglot_npz(root: Path, arrays: dict) -> Path:
    """``root/omniglot/<set>.npz`` in the format of ../shared/datasets/omniglot."""
    (root / "omniglot").mkdir(parents=True, exist_ok=True)
    for s, (images, names, ids) in arrays.items():
        np.savez_compressed(root / "omniglot" / f"{s}.npz", images=images,
                            alphabet=np.array([a for a, _ in names]), character=np.array([c for _, c in names]),
                            char_id=np.array(ids, dtype=np.int16))
    return root / "omniglot"


def omniglot_zip(path: Path, s: str, arrays: dict) -> Path:
    """The official ``<set>.zip``: ``<set>/<alphabet>/<character>/<id>_<k>.png`` plus folder entries."""
    images, names, ids = arrays[s]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{s}/", b"")
        for (alphabet, char), drawings, cid in zip(names, images, ids):
            z.writestr(f"{s}/{alphabet}/{char}/", b"")
            for k, x in enumerate(drawings):
                z.writestr(f"{s}/{alphabet}/{char}/{cid:04d}_{k + 1:02d}.png", _png_bytes(x))
    return path


# ---------------------------------------------------------------- CIFAR-100
def cifar_arrays(per_class: int = 30, seed: int = 0) -> np.ndarray:
    """uint8 (100, per_class, 3, 32, 32): random images (each a little different per class)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(100, per_class, 3, 32, 32), dtype=np.uint8)


def write_cifar_tiles(root: Path, images: np.ndarray, classes_csv: str, suffix: str = ".png") -> Path:
    """``root/cifar_fs/{classes.csv, images/<name>.png}``; image i at row i // 30, column i % 30."""
    folder = root / "cifar_fs"
    (folder / "images").mkdir(parents=True)
    (folder / "classes.csv").write_text(classes_csv)
    names = [line.split(",")[1] for line in classes_csv.splitlines()[1:]]
    for name, x in zip(names, images):
        tile = np.zeros((x.shape[0] // 30 * 32, 960, 3), dtype=np.uint8)
        for i, img in enumerate(x):
            r, c = divmod(i, 30)
            tile[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] = img.transpose(1, 2, 0)
        Image.fromarray(tile).save(folder / "images" / f"{name}{suffix}")
    return folder


def py2_pickle(obj) -> bytes:
    """A pickle as Python 2's cPickle writes it (protocol 2, str as BINSTRING, numpy.core globals).

    Handles what CIFAR-100's python batches hold: dicts with byte-string keys, lists of ints or
    byte strings, and uint8 numpy arrays. Read back with ``encoding='bytes'``.
    """
    out = bytearray(b"\x80\x02")

    def s(b: bytes) -> None:
        out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)

    def g(module: str, name: str) -> None:
        out.extend(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def save(x) -> None:
        if isinstance(x, dict):
            out.extend(b"}(")
            for k, v in x.items():
                save(k)
                save(v)
            out.extend(b"u")
        elif isinstance(x, list):
            out.extend(b"](")
            for v in x:
                save(v)
            out.extend(b"e")
        elif isinstance(x, (bytes, str)):
            s(x.encode() if isinstance(x, str) else x)
        elif isinstance(x, (int, np.integer)):
            out.extend(b"J" + struct.pack("<i", int(x)))
        elif isinstance(x, np.ndarray):
            assert x.dtype == np.uint8
            g("numpy.core.multiarray", "_reconstruct")
            g("numpy", "ndarray")
            out.extend(b"K\x00\x85")            # (0,)
            s(b"b")
            out.extend(b"\x87R(K\x01(")          # TUPLE3 REDUCE, then the state (1, shape, dtype, False, raw)
            for d in x.shape:
                out.extend(b"J" + struct.pack("<i", d))
            out.extend(b"t")
            g("numpy", "dtype")
            s(b"u1")
            out.extend(b"K\x00K\x01\x87R(K\x03")  # dtype('u1', 0, 1), state (3, '|', None, None, None, -1, -1, 0)
            s(b"|")
            out.extend(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
            out.extend(b"\x89")
            s(np.ascontiguousarray(x).tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(x))

    save(obj)
    out.extend(b".")
    return bytes(out)


def cifar_python_targz(path: Path, images: np.ndarray, fine_names: list[str], test_per_class: int = 5,
                       seed: int = 0) -> Path:
    """``cifar-100-python.tar.gz`` with ``train``, ``test``, ``meta`` as Python 2 pickles.

    The last ``test_per_class`` images of each class go to ``test``; within a split the classes are
    interleaved at random, as in the real release, so the converter must group by ``fine_labels``.
    """
    rng = np.random.default_rng(seed)
    n = images.shape[1]
    parts = {}
    for split, sl in (("train", slice(0, n - test_per_class)), ("test", slice(n - test_per_class, n))):
        x = images[:, sl]
        labels = rng.permutation(np.repeat(np.arange(100), x.shape[1]))  # classes interleaved ...
        data = np.empty((len(labels), 3072), np.uint8)
        for c in range(100):  # ... each class's images in their order
            data[labels == c] = x[c].reshape(-1, 3072)
        parts[split] = py2_pickle({b"batch_label": b"training batch 1 of 1", b"fine_labels": labels.tolist(),
                                   b"coarse_labels": [0] * len(labels), b"data": data,
                                   b"filenames": [b"x.png"] * len(labels)})
    parts["meta"] = py2_pickle({b"fine_label_names": [n.encode() for n in fine_names],
                                b"coarse_label_names": [b"c"] * 20})
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in parts.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


# ---------------------------------------------------------------- Mini-ImageNet
def mini_arrays(classes: int = 3, per_class: int = 6, seed: int = 0) -> dict:
    """{split: (uint8 (classes, per_class, 84, 84, 3), wnids)}; wnids deliberately not in sorted order."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, split in enumerate(("train", "val", "test")):
        wnids = [f"n{(k * 10 + (classes - c)) * 1111:08d}" for c in range(classes)]  # descending
        out[split] = (rng.integers(0, 256, size=(classes, per_class, 84, 84, 3), dtype=np.uint8), wnids)
    return out


def write_mini_folders(root: Path, arrays: dict, suffix: str = ".png") -> Path:
    """Layout (a): ``miniimagenet/<split>/<wnid>/<wnid>_<i>.png``."""
    for split, (x, wnids) in arrays.items():
        for w, imgs in zip(wnids, x):
            d = root / "miniimagenet" / split / w
            d.mkdir(parents=True)
            for i, img in enumerate(imgs):
                Image.fromarray(img).save(d / f"{w}{i:08d}{suffix}")
    return root / "miniimagenet"


def write_mini_csv(root: Path, arrays: dict) -> Path:
    """Layout (b): ``miniimagenet/images/*.png`` + ``{split}.csv`` with header ``filename,label``."""
    d = root / "miniimagenet"
    (d / "images").mkdir(parents=True)
    for split, (x, wnids) in arrays.items():
        lines = ["filename,label"]
        for w, imgs in zip(wnids, x):
            for i, img in enumerate(imgs):
                Image.fromarray(img).save(d / "images" / f"{w}{i:08d}.png")
                lines.append(f"{w}{i:08d}.png,{w}")
        (d / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return d


def write_mini_pickles(root: Path, arrays: dict, protocol: int = 4) -> Path:
    """Layout (c): ``mini-imagenet-cache-<split>.pkl`` = {'image_data': (N,84,84,3), 'class_dict': {wnid: [i]}}."""
    import pickle

    d = root / "miniimagenet"
    d.mkdir(parents=True, exist_ok=True)
    for split, (x, wnids) in arrays.items():
        n = x.shape[1]
        class_dict = {w: list(range(c * n, (c + 1) * n)) for c, w in enumerate(wnids)}
        with open(d / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": x.reshape(-1, 84, 84, 3), "class_dict": class_dict}, f, protocol=protocol)
    return d
