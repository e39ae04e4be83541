"""``reptile data fetch omniglot|cifar100``: download the official archives, verify, convert.

The result has the on-disk format of ``../shared/datasets`` (so every loader reads it):
- ``omniglot/images_{background,evaluation}.npz``: arrays ``images`` bool (C, 20, 105, 105),
  ``alphabet``, ``character``, ``char_id``, rows sorted by (alphabet, character);
- ``cifar_fs/classes.csv`` + ``images/<fine_name>.png``: one tile per class, CIFAR-100's 500
  train images then its 100 test images (image i at row i // 30, column i % 30).

Checksums. Omniglot: sha256 and sizes as published by TensorFlow Datasets
(``tensorflow_datasets/url_checksums/omniglot.txt``), MD5s as published by torchvision
(``torchvision.datasets.Omniglot.zips_md5``). CIFAR-100: sha256 and size as published by Keras
(``keras.datasets.cifar100``, ``file_hash``) and torchvision's dataset prototypes, MD5 from the
CIFAR page itself (https://www.cs.toronto.edu/~kriz/cifar.html). Both digests (and the size) must match.

Atomic: archives download into a hidden temporary folder inside the data root, are verified,
converted there, and the result is renamed into place; on any failure (bad checksum, broken
download, Ctrl-C) the temporary folder is removed and nothing else is touched.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable

import numpy as np

from ..paths import fetch_root
from . import safe_pickle
from .cifar_splits import CLASSES, classes_csv

OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CHUNK = 1 << 20
TIMEOUT_S = 60


@dataclass(frozen=True)
class Source:
    """One archive: where it is and what it must hash to."""

    url: str
    filename: str
    sha256: str
    size: int | None = None
    md5: str | None = None


SOURCES: dict[str, tuple[Source, ...]] = {
    "omniglot": (
        Source(f"{OMNIGLOT_URL}/images_background.zip", "images_background.zip",
               "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640", 9_464_212,
               "68d2efa1b9178cc56df9314c21c6e718"),
        Source(f"{OMNIGLOT_URL}/images_evaluation.zip", "images_evaluation.zip",
               "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee", 6_462_886,
               "6b91aef0f799c5bb55b94e3f2daec811"),
    ),
    "cifar100": (
        Source(CIFAR100_URL, "cifar-100-python.tar.gz",
               "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", 169_001_437,
               "eb9058c3a382ffc7106e4002c42a8d85"),
    ),
}
TARGETS = {"omniglot": "omniglot", "cifar100": "cifar_fs"}
NAMES = tuple(SOURCES)
PROVENANCE = "fetched.json"


class FetchError(RuntimeError):
    """A download or conversion failed; the message says what to do. Nothing was written."""


def download(source: Source, dest: Path, log: Callable[[str], None] = print) -> None:
    """Stream ``source.url`` into ``dest`` and check size, sha256 and MD5; raise :class:`FetchError`."""
    sha, md5, n = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    size = f" ({source.size / 1e6:.1f} MB)" if source.size else ""
    log(f"downloading {source.url}{size}")
    request = urllib.request.Request(source.url, headers={"User-Agent": "reptile-book data fetch"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
            announced = _length(response)
            progress = _progress(source.size or announced, source.filename)
            while chunk := response.read(CHUNK):
                out.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
                n += len(chunk)
                progress.update(len(chunk))
            progress.close()
    except urllib.error.HTTPError as e:
        raise FetchError(f"download of {source.url} failed: HTTP {e.code} {e.reason}; check that the URL opens "
                         "in a browser and run again") from None
    except (urllib.error.URLError, HTTPException, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"download of {source.url} failed ({type(e).__name__}: {reason}); check your internet "
                         "connection and run again") from None
    for expected in (announced, source.size):  # what the server promised, what was published
        if expected is not None and n != expected:
            raise FetchError(f"{source.filename}: got {n:,} bytes, expected {expected:,}; the download was cut "
                             "short or the file changed upstream: run again")
    for algo, got, want in (("sha256", sha.hexdigest(), source.sha256), ("md5", md5.hexdigest(), source.md5)):
        if want is not None and got != want.lower():
            raise FetchError(f"{source.filename}: {algo} {got} does not match the published {want}; the "
                             "download is corrupt or the file changed upstream. Nothing was written: run again, "
                             "and report it if it persists")


def _length(response) -> int | None:
    try:
        return int(response.headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False,
                disable=not sys.stderr.isatty(), file=sys.stderr)


def convert_omniglot(archives: dict[str, Path], out: Path) -> dict[str, int]:
    """The official zips -> ``out/images_{background,evaluation}.npz``; returns characters per set."""
    from .omniglot import DRAWINGS, SETS, read_png, write_npz

    counts = {}
    for s in SETS:
        with zipfile.ZipFile(archives[s]) as z:
            chars: dict[tuple[str, str], list[str]] = {}
            for name in z.namelist():
                parts = name.split("/")
                if not name.endswith(".png") or parts[0].startswith("__MACOSX"):
                    continue
                if len(parts) != 4 or parts[0] != s:
                    raise FetchError(f"{archives[s].name}: unexpected entry {name}; expected {s}/<alphabet>/"
                                     "<character>/<id>_<drawer>.png")
                chars.setdefault((parts[1], parts[2]), []).append(name)
            if not chars:
                raise FetchError(f"{archives[s].name}: no {s}/<alphabet>/<character>/*.png entries")
            names = sorted(chars)
            images = np.empty((len(names), DRAWINGS, 105, 105), dtype=bool)
            char_ids = []
            for i, key in enumerate(names):
                files = sorted(chars[key])
                if len(files) != DRAWINGS:
                    raise FetchError(f"{archives[s].name}: {'/'.join(key)} has {len(files)} drawings, expected {DRAWINGS}")
                ids = {f.rsplit("/", 1)[1].split("_")[0] for f in files}
                if len(ids) != 1 or not next(iter(ids)).isdigit():
                    raise FetchError(f"{archives[s].name}: {'/'.join(key)}: file names are not <id>_<drawer>.png")
                char_ids.append(int(ids.pop()))
                for j, f in enumerate(files):
                    images[i, j] = read_png(io.BytesIO(z.read(f)))  # all 32,460: ~25 s on one core
        write_npz(out / f"{s}.npz", images, names, char_ids)
        counts[s] = len(names)
    return counts


def convert_cifar(archive: Path, out: Path) -> dict[str, int]:
    """``cifar-100-python.tar.gz`` -> ``out/classes.csv`` + ``out/images/<fine_name>.png`` tiles."""
    from PIL import Image

    from .cifar import make_tile

    wanted = {"cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"}
    parts = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    parts[member.name.rsplit("/", 1)[1]] = safe_pickle.load(tar.extractfile(member), encoding="bytes")
    except (tarfile.TarError, OSError, EOFError, ValueError, TypeError, AttributeError,
            safe_pickle.pickle.UnpicklingError) as e:
        raise FetchError(f"{archive.name} could not be read ({type(e).__name__}: {e}); run the fetch again") from None
    missing = sorted(w for w in wanted if w.rsplit("/", 1)[1] not in parts)
    if missing:
        raise FetchError(f"{archive.name}: missing {', '.join(missing)}; is this the CIFAR-100 python version?")
    fine = [n.decode() if isinstance(n, bytes) else n for n in parts["meta"][b"fine_label_names"]]
    expected = [c[1] for c in CLASSES]
    if fine != expected:
        raise FetchError(f"{archive.name}: its 100 fine class names differ from the embedded CIFAR-FS/FC100 "
                         "split lists; this is not the CIFAR-100 release the splits were made for")
    data, labels = [], []
    for split in ("train", "test"):  # CIFAR-100's train images of a class come first, then its test images
        d = parts[split]
        data.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(d[b"fine_labels"], dtype=np.int64))
    data, labels = np.concatenate(data), np.concatenate(labels)
    if len(data) != len(labels):
        raise FetchError(f"{archive.name}: {len(data)} images but {len(labels)} labels")
    counts = np.bincount(labels, minlength=len(expected))
    if len(counts) != len(expected) or len(set(counts.tolist())) != 1:
        raise FetchError(f"{archive.name}: classes have {counts.min()} to {counts.max()} images, expected the same number")
    (out / "images").mkdir(parents=True)

    def save(label: int) -> None:  # PNG's zlib releases the GIL: tiles are written in parallel
        Image.fromarray(make_tile(data[labels == label])).save(out / "images" / f"{expected[label]}.png")

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(save, range(len(expected))))
    (out / "classes.csv").write_text(classes_csv())
    return {"classes": len(expected), "per_class": int(counts[0])}


def fetch(name: str, root: str | Path | None = None, sources: tuple[Source, ...] | None = None,
          force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Download, verify and convert data set ``name`` (``omniglot`` or ``cifar100``) into the data root.

    ``root``: ``--data-root`` > ``$REPTILE_DATA`` > ``~/.cache/reptile-book/datasets``. An existing
    copy is left alone unless ``force``. ``sources`` overrides the URLs and checksums (tests).
    Returns the data set's folder.
    """
    if name not in SOURCES:
        raise FetchError(f"unknown data set {name!r}: choose one of {', '.join(NAMES)}")
    sources = SOURCES[name] if sources is None else sources
    data_root = fetch_root(root)
    target = data_root / TARGETS[name]
    if target.exists() and not force:
        log(f"{target} already exists; nothing to do (`reptile data check` verifies it; --force fetches it again)")
        return target
    try:
        data_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.fetch-", dir=data_root))
    except OSError as e:
        raise FetchError(f"cannot write to {data_root} ({e}); choose another --data-root") from None
    try:
        archives = []
        for i, src in enumerate(sources):
            (tmp / f"archive{i}").mkdir()
            archives.append(tmp / f"archive{i}" / Path(src.filename).name)
            download(src, archives[-1], log)
        out = tmp / target.name
        out.mkdir()
        log(f"converting into {target}")
        if name == "omniglot":  # sources in the order of omniglot.SETS
            counts = convert_omniglot(dict(zip(("images_background", "images_evaluation"), archives)), out)
        else:
            counts = convert_cifar(archives[0], out)
        provenance = {"name": name, "fetched_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"), "sources": [asdict(s) for s in sources], "counts": counts}
        (out / PROVENANCE).write_text(json.dumps(provenance, indent=1) + "\n")
        if target.exists():  # --force: the old copy goes only once the new one is complete
            os.replace(target, tmp / "old")
        os.replace(out, target)
    except OSError as e:
        raise FetchError(f"writing under {data_root} failed ({e}); nothing was left behind") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{name}: done, {counts} in {target}")
    return target
