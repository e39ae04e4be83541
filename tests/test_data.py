"""The data sets: Omniglot, CIFAR-FS / FC100 and Mini-ImageNet loaders, against independent readers.

Real-data checks use ../shared/datasets (or $REPTILE_DATA) and are skipped, with the reason, where
it is absent; layout checks use small fixtures generated in tmp dirs (tests/data_fixtures.py).
"""
from __future__ import annotations

import csv
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data_fixtures as fx
from reptile_lib import paths
from reptile_lib.data import load_dataset
from reptile_lib.data import cifar, miniimagenet, omniglot
from reptile_lib.data.cifar_splits import CLASSES, classes_csv
from reptile_lib.tasks import TaskSampler


# ====================================================================== Omniglot, real data
@pytest.fixture(scope="module")
def omni_real():
    folder = fx.real_folder("omniglot", ("images_background.npz", "images_evaluation.npz", "reptile_split_seed0.csv"))
    return folder, load_dataset("omniglot")


@pytest.fixture(scope="module")
def omni_raw(omni_real):
    """The 105x105 drawings read with plain numpy: {(alphabet, character): bool (20, 105, 105)}, and set names."""
    folder, _ = omni_real
    raw, source = {}, {}
    for s in omniglot.SETS:
        with np.load(folder / f"{s}.npz") as d:
            for img, a, c in zip(d["images"], d["alphabet"], d["character"]):
                raw[(str(a), str(c))] = img
                source[(str(a), str(c))] = s
    return raw, source


def test_omniglot_counts_dtype_values(omni_real):
    _, d = omni_real
    train, test = d["train"], d["test"]
    assert set(d) == {"train", "test"}
    assert tuple(train.images.shape) == (4800, 20, 1, 28, 28) and tuple(test.images.shape) == (423, 20, 1, 28, 28)
    assert train.images.dtype == test.images.dtype == torch.uint8 and train.scale == test.scale == 1.0
    for x in (train.images, test.images):
        counts = torch.bincount(x.flatten(), minlength=256)
        assert counts[0] > 0 and counts[1] > 0 and counts[2:].sum() == 0  # exactly {0, 1}
        assert x.float().mean() > 0.7  # background (1) dominates: not inverted
    assert len(set(train.class_names)) == 4800 and len(set(test.class_names)) == 423


def test_omniglot_split_matches_published_csv_in_order(omni_real, omni_raw):
    folder, d = omni_real
    _, source = omni_raw
    with open(folder / "reptile_split_seed0.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    want_train = [f"{r['alphabet']}/{r['character']}" for r in rows if r["split"] == "train"]
    want_test = [f"{r['alphabet']}/{r['character']}" for r in rows if r["split"] == "test"]
    assert (len(want_train), len(want_test)) == (1200, 423)
    got_train = [n[: -len("@0")] for n in d["train"].class_names[::4]]
    assert got_train == want_train
    assert list(d["test"].class_names) == want_test
    assert d["train"].class_names[:4] == tuple(f"{want_train[0]}@{r}" for r in (0, 90, 180, 270))
    for r in rows:  # the source_set column agrees with the file each character is in
        assert source[(r["alphabet"], r["character"])] == r["source_set"]


def test_omniglot_rotations_are_pillows_counter_clockwise_rotate(omni_real, omni_raw):
    _, d = omni_real
    raw, _ = omni_raw
    train, test = d["train"], d["test"]
    checked = 0
    for ci in (0, 1, 2, 517, 1199):
        for k in range(4):
            cls = 4 * ci + k
            name, rot = train.class_names[cls].rsplit("@", 1)
            assert int(rot) == 90 * k
            drawings = raw[tuple(name.split("/"))]
            for j in (0, 7, 19):
                ref = np.asarray(Image.fromarray(drawings[j]).resize((28, 28)).rotate(90 * k))
                np.testing.assert_array_equal(train.images[cls, j, 0].numpy(), ref.astype(np.uint8))
                checked += 1
    for ci in (0, 422):  # test characters: not rotated
        drawings = raw[tuple(test.class_names[ci].split("/"))]
        ref = np.asarray(Image.fromarray(drawings[3]).resize((28, 28)))
        np.testing.assert_array_equal(test.images[ci, 3, 0].numpy(), ref.astype(np.uint8))
    assert checked == 60
    # A 90-degree rotation is not its own inverse: the check above can tell the directions apart.
    x = train.images[0, 0, 0]
    assert not torch.equal(torch.rot90(x, 1), torch.rot90(x, -1))


def test_resize_nearest_equals_pillow_on_many_images(omni_raw):
    raw, _ = omni_raw
    rng = np.random.default_rng(0)
    keys = list(raw)
    picks = [raw[keys[i]][j] for i, j in zip(rng.choice(len(keys), 300, replace=False), rng.integers(0, 20, 300))]
    batch = np.stack(picks)
    for size in (28, 14, 20, 33, 84):
        ours = omniglot.resize_nearest(batch, size)
        ref = np.stack([np.asarray(Image.fromarray(x).resize((size, size))) for x in picks])
        assert Image.fromarray(picks[0]).mode == "1"
        np.testing.assert_array_equal(ours, ref, err_msg=f"size {size}")


# ====================================================================== Omniglot, fixtures
@pytest.fixture(scope="module")
def omni_arrays():
    return fx.omniglot_arrays()


@pytest.fixture(scope="module")
def omni_roots(omni_arrays, tmp_path_factory):
    folders = tmp_path_factory.mktemp("omni_folders")
    npz = tmp_path_factory.mktemp("omni_npz")
    fx.write_omniglot_folders(folders, omni_arrays)
    fx.write_omniglot_npz(npz, omni_arrays)
    return folders, npz


def test_omniglot_folder_layout_reads_the_1bit_pngs_exactly(omni_arrays, omni_roots):
    folders, _ = omni_roots
    images, names = omniglot.read_characters(folders / "omniglot")
    want = sorted((n, x) for s in omniglot.SETS for n, x in zip(omni_arrays[s][1], omni_arrays[s][0]))
    assert names == [n for n, _ in want]
    np.testing.assert_array_equal(images, np.stack([x for _, x in want]))


def test_omniglot_npz_and_folder_layouts_give_identical_tensors(omni_roots):
    folders, npz = omni_roots
    a = load_dataset("omniglot", folders, num_train=5)
    b = load_dataset("omniglot", npz, num_train=5)
    for split in ("train", "test"):
        assert torch.equal(a[split].images, b[split].images)
        assert a[split].class_names == b[split].class_names
    assert a["train"].num_classes == 20 and a["test"].num_classes == 4  # 9 characters: 5 x 4 rotations, 4


def test_omniglot_fixture_split_is_released_shuffle(omni_roots):
    import random

    _, npz = omni_roots
    d = load_dataset("omniglot", npz, seed=3, num_train=5)
    _, names = omniglot.read_characters(npz / "omniglot", size=28)
    order = list(range(len(names)))
    random.seed(3)
    random.shuffle(order)  # the released code: random.seed(seed); random.shuffle(sorted characters)
    assert [n[:-2] for n in d["train"].class_names[::4]] == ["/".join(names[i]) for i in order[:5]]
    assert list(d["test"].class_names) == ["/".join(names[i]) for i in order[5:]]


def test_omniglot_write_npz_round_trip(omni_arrays, tmp_path):
    (tmp_path / "omniglot").mkdir()
    for s in omniglot.SETS:
        images, names, ids = omni_arrays[s]
        rev = list(range(len(names)))[::-1]  # unsorted input comes out sorted
        omniglot.write_npz(tmp_path / "omniglot" / f"{s}.npz", images[rev], [names[i] for i in rev], [ids[i] for i in rev])
        with np.load(tmp_path / "omniglot" / f"{s}.npz") as d:
            np.testing.assert_array_equal(d["images"], images)
            assert list(d["alphabet"]) == [a for a, _ in names] and list(d["char_id"]) == ids
            assert d["char_id"].dtype == np.int16 and d["images"].dtype == bool


def test_omniglot_bad_inputs(omni_roots, tmp_path):
    folders, npz = omni_roots
    with pytest.raises(ValueError, match="9 characters, but the split puts 1200"):
        load_dataset("omniglot", npz)
    # truncated npz
    bad = tmp_path / "trunc"
    (bad / "omniglot").mkdir(parents=True)
    for s in omniglot.SETS:
        blob = (npz / "omniglot" / f"{s}.npz").read_bytes()
        (bad / "omniglot" / f"{s}.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="not a valid Omniglot .npz.*reptile data fetch omniglot"):
        load_dataset("omniglot", bad, num_train=5)
    # right container, wrong shapes
    wrong = tmp_path / "wrong"
    (wrong / "omniglot").mkdir(parents=True)
    for s in omniglot.SETS:
        np.savez_compressed(wrong / "omniglot" / f"{s}.npz", images=np.ones((3, 20, 28, 28), bool),
                            alphabet=np.array(["a"] * 3), character=np.array(["c"] * 3))
    with pytest.raises(ValueError, match=r"expected images bool \(C, 20, 105, 105\)"):
        load_dataset("omniglot", wrong, num_train=1)
    # a character folder with a missing drawing
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(folders, partial)
    victim = next((partial / "omniglot" / "images_evaluation").glob("*/character02/*.png"))
    victim.unlink()
    with pytest.raises(ValueError, match="expected 20 drawings, found 19"):
        load_dataset("omniglot", partial, num_train=5)


def test_missing_data_folder_names_paths_and_fetch_command(tmp_path):
    for name, fetch in (("omniglot", "omniglot"), ("cifar_fs", "cifar100"), ("fc100", "cifar100")):
        with pytest.raises(paths.DataNotFoundError) as e:
            load_dataset(name, tmp_path / "nowhere")
        msg = str(e.value)
        assert str(tmp_path / "nowhere") in msg and f"reptile data fetch {fetch}" in msg and "REPTILE_DATA" in msg
    with pytest.raises(paths.DataNotFoundError, match="not downloaded by this package"):
        load_dataset("miniimagenet", tmp_path / "nowhere")
    with pytest.raises(KeyError, match="choose one of"):
        load_dataset("imagenet")


def test_default_roots_include_the_fetch_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    user = tmp_path / "cache" / "reptile-book" / "datasets"
    assert paths.user_data_root() == user
    assert paths.fetch_root() == user and paths.fetch_root(tmp_path / "x") == tmp_path / "x"
    assert paths.candidate_roots()[-1] == user.resolve()
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path / "env"))
    assert paths.fetch_root() == tmp_path / "env" and paths.candidate_roots() == [tmp_path / "env"]


# ====================================================================== CIFAR-FS / FC100, real data
@pytest.fixture(scope="module")
def cifar_real():
    folder = fx.real_folder("cifar_fs", ("classes.csv", "images"))
    rows = sorted(cifar.read_classes(folder), key=lambda r: int(r["fine_label"]))
    (images,), enc = cifar.read_tiles(folder, [[r["fine_name"] for r in rows]])
    return folder, images, enc


@pytest.fixture
def cached_tiles(cifar_real, monkeypatch):
    """Loaders reuse the module's decoded tiles (decoding all 100 tiles once is the slow part)."""
    _, images, enc = cifar_real
    names = [c[1] for c in CLASSES]
    monkeypatch.setattr(cifar, "read_tiles", lambda folder, groups: (
        [images[[names.index(n) for n in g]] for g in groups], enc))


def test_embedded_splits_equal_shared_classes_csv(cifar_real):
    folder, _, _ = cifar_real
    assert (folder / "classes.csv").read_text() == classes_csv()


@pytest.mark.parametrize("name, counts", [("cifar_fs", (64, 16, 20)), ("fc100", (60, 20, 20))])
def test_cifar_splits(cifar_real, cached_tiles, name, counts):
    folder, images, enc = cifar_real
    assert enc == "png" and images.shape == (100, 600, 3, 32, 32) and images.dtype == np.uint8
    d = load_dataset(name)
    assert list(d) == ["train", "val", "test"]
    column = {"cifar_fs": 4, "fc100": 5}[name]
    seen = set()
    for split, n in zip(("train", "val", "test"), counts):
        ds = d[split]
        assert ds.name == f"{name}/{split}" and ds.scale == 255.0 and ds.images.dtype == torch.uint8
        assert tuple(ds.images.shape) == (n, 600, 3, 32, 32)
        assert list(ds.class_names) == [c[1] for c in CLASSES if c[column] == split]
        for i, cname in enumerate(ds.class_names):
            assert torch.equal(ds.images[i], torch.from_numpy(images[[c[1] for c in CLASSES].index(cname)]))
        seen |= set(ds.class_names)
    assert len(seen) == 100
    if name == "fc100":  # split by superclass: no superclass in two splits
        coarse = {s: {c[3] for c in CLASSES if c[5] == s} for s in ("train", "val", "test")}
        assert [len(v) for v in coarse.values()] == [12, 4, 4] and not set.intersection(*coarse.values())


def test_cifar_tile_layout_matches_readme_reader(cifar_real):
    """Image i of a class is at row i // 30, column i % 30 (the README's reader, written out longhand)."""
    folder, images, _ = cifar_real
    for label, name in ((0, "apple"), (57, CLASSES[57][1]), (99, "worm")):
        tile = np.asarray(Image.open(folder / "images" / f"{name}.png").convert("RGB"))
        assert tile.shape == (640, 960, 3)
        for i in (0, 1, 29, 30, 331, 599):
            r, c = divmod(i, 30)
            np.testing.assert_array_equal(images[label, i], tile[32 * r:32 * r + 32, 32 * c:32 * c + 32].transpose(2, 0, 1))
    mean = images.reshape(-1, 3, 1024).mean(axis=(0, 2)) / 255  # the README's channel means
    np.testing.assert_allclose(mean, (0.5074, 0.4867, 0.4411), atol=2e-4)


# ====================================================================== CIFAR, fixtures
@pytest.fixture(scope="module")
def cifar_fixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    images = fx.cifar_arrays(per_class=30)
    fx.write_cifar_tiles(root, images, classes_csv())
    return root, images


def test_cifar_fixture_loads_exactly(cifar_fixture):
    root, images = cifar_fixture
    d = load_dataset("fc100", root)
    names = [c[1] for c in CLASSES]
    for split in ("train", "val", "test"):
        ds = d[split]
        idx = [names.index(n) for n in ds.class_names]
        assert torch.equal(ds.images, torch.from_numpy(images[idx])) and ds.per_class == 30


def test_pack_cifar_jpeg_is_read_and_named(cifar_fixture, tmp_path):
    root, images = cifar_fixture
    info = cifar.pack_cifar(root, tmp_path / "packed", fmt="jpeg", quality=95)
    out = tmp_path / "packed" / "cifar_fs"
    assert sorted(p.name for p in out.iterdir()) == ["classes.csv", "images", "pack.json"]
    assert len(list((out / "images").glob("*.jpg"))) == 100 and not list((out / "images").glob("*.png"))
    with Image.open(out / "images" / "apple.jpg") as im:
        assert im.format == "JPEG" and im.layer[0][1:3] == im.layer[1][1:3] == (1, 1)  # 4:4:4, no subsampling
    assert info["encoding"] == "jpeg-q95" and info["bytes"] == sum(
        p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name != "pack.json")
    d = load_dataset("cifar_fs", tmp_path / "packed")
    assert d["train"].name == "cifar_fs/train@jpeg-q95"
    names = [c[1] for c in CLASSES]
    got = torch.cat([d[s].images for s in ("train", "val", "test")])
    idx = [names.index(n) for s in ("train", "val", "test") for n in d[s].class_names]
    diff = (got.int() - torch.from_numpy(images[idx]).int()).abs().double().mean().item()
    assert 0 < diff < 20 and diff == pytest.approx(info["mean_abs_diff"], rel=1e-9)  # pack.json tells the truth
    # a PNG tile, when present, wins over the lossy one
    apple = np.zeros((32, 960, 3), np.uint8)
    apple[:, :, 1] = 7
    Image.fromarray(apple).save(out / "images" / "apple.png")
    d = load_dataset("cifar_fs", tmp_path / "packed")
    assert torch.equal(d["train"].images[0], torch.full((30, 3, 32, 32), 7, dtype=torch.uint8) * torch.tensor([0, 1, 0]).view(3, 1, 1).to(torch.uint8))
    with pytest.raises(FileExistsError, match="--force"):
        cifar.pack_cifar(root, tmp_path / "packed")


def test_pack_cifar_png_is_lossless_and_force_replaces(cifar_fixture, tmp_path):
    root, images = cifar_fixture
    (tmp_path / "p" / "cifar_fs").mkdir(parents=True)
    (tmp_path / "p" / "cifar_fs" / "old").write_text("x")
    info = cifar.pack_cifar(root, tmp_path / "p", fmt="png", force=True)
    assert info["mean_abs_diff"] == 0 and info["max_abs_diff"] == 0
    assert not (tmp_path / "p" / "cifar_fs" / "old").exists()
    assert load_dataset("cifar_fs", tmp_path / "p")["val"].name == "cifar_fs/val"
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["cifar_fs"]  # no temp folder left


def test_pack_cifar_failure_leaves_nothing(cifar_fixture, tmp_path):
    import shutil

    root, _ = cifar_fixture
    broken = tmp_path / "src"
    shutil.copytree(root / "cifar_fs", broken / "cifar_fs")
    (broken / "cifar_fs" / "images" / "worm.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="worm.png is not a readable image"):
        cifar.pack_cifar(broken, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(ValueError, match="unknown format"):
        cifar.pack_cifar(root, tmp_path / "out", fmt="gif")
    with pytest.raises(ValueError, match="source folder"):
        cifar.pack_cifar(root, root, force=True)


def test_cifar_bad_inputs(cifar_fixture, tmp_path):
    import shutil

    root, _ = cifar_fixture
    shutil.copytree(root / "cifar_fs", tmp_path / "a" / "cifar_fs")
    (tmp_path / "a" / "cifar_fs" / "images" / "bee.png").unlink()
    with pytest.raises(FileNotFoundError, match="no tile images/bee.png"):
        load_dataset("cifar_fs", tmp_path / "a")
    shutil.copytree(root / "cifar_fs", tmp_path / "b" / "cifar_fs")
    blob = (tmp_path / "b" / "cifar_fs" / "images" / "bee.png").read_bytes()
    (tmp_path / "b" / "cifar_fs" / "images" / "bee.png").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(ValueError, match="bee.png is not a readable image"):
        load_dataset("cifar_fs", tmp_path / "b")
    Image.new("RGB", (960, 50)).save(tmp_path / "b" / "cifar_fs" / "images" / "bee.png")
    with pytest.raises(ValueError, match="multiple of 32 high"):
        load_dataset("cifar_fs", tmp_path / "b")
    (tmp_path / "b" / "cifar_fs" / "classes.csv").write_text("fine_label,fine_name\n0,apple\n")
    with pytest.raises(ValueError, match="missing"):
        load_dataset("cifar_fs", tmp_path / "b")


# ====================================================================== Mini-ImageNet, fixtures
@pytest.fixture(scope="module")
def mini():
    return fx.mini_arrays(classes=3, per_class=6)


def _check_mini(d, arrays):
    for split, (x, wnids) in arrays.items():
        ds = d[split]
        order = sorted(range(len(wnids)), key=lambda i: wnids[i])
        assert ds.class_names == tuple(sorted(wnids)) and ds.scale == 255.0 and ds.name == f"miniimagenet/{split}"
        assert tuple(ds.images.shape) == (3, 6, 3, 84, 84) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images, torch.from_numpy(x[order].transpose(0, 1, 4, 2, 3).copy()))


@pytest.mark.parametrize("layout", ["folders", "csv", "pickle", "pickle2", "pickle5"])
def test_miniimagenet_layouts(mini, tmp_path, layout):
    if layout == "folders":
        fx.write_mini_folders(tmp_path, mini)
    elif layout == "csv":
        fx.write_mini_csv(tmp_path, mini)
    else:
        fx.write_mini_pickles(tmp_path, mini, protocol={"pickle": 4, "pickle2": 2, "pickle5": 5}[layout])
    with pytest.warns(UserWarning, match="3 classes x 6 images; the paper's split has (64|16|20) x 600"):
        d = load_dataset("miniimagenet", tmp_path)
    assert miniimagenet.find_layout(tmp_path / "miniimagenet") == layout.rstrip("25")
    _check_mini(d, mini)


def test_miniimagenet_resizes_like_the_released_code(tmp_path):
    """Released: Image.open(f).resize((84, 84)).convert('RGB') with 2018 Pillow's default, nearest."""
    rng = np.random.default_rng(1)
    big = {s: (rng.integers(0, 256, size=(3, 2, 100, 130, 3), dtype=np.uint8), [f"n{i}{s}" for i in range(3)])
           for s in ("train", "val", "test")}
    for split, (x, wnids) in big.items():
        for w, imgs in zip(wnids, x):
            (tmp_path / "miniimagenet" / split / w).mkdir(parents=True)
            for i, img in enumerate(imgs):
                Image.fromarray(img).save(tmp_path / "miniimagenet" / split / w / f"{i}.JPEG", quality=90)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = load_dataset("miniimagenet", tmp_path)
        lanczos = load_dataset("miniimagenet", tmp_path, resample="lanczos")
    f = tmp_path / "miniimagenet" / "val" / "n1val" / "1.JPEG"
    ref = np.asarray(Image.open(f).resize((84, 84), Image.Resampling.NEAREST).convert("RGB"))
    np.testing.assert_array_equal(d["val"].images[1, 1].permute(1, 2, 0).numpy(), ref)
    ref = np.asarray(Image.open(f).resize((84, 84), Image.Resampling.LANCZOS).convert("RGB"))
    np.testing.assert_array_equal(lanczos["val"].images[1, 1].permute(1, 2, 0).numpy(), ref)
    with pytest.raises(ValueError, match="resample="):
        load_dataset("miniimagenet", tmp_path, resample="cubic")


@pytest.mark.filterwarnings("ignore:.*the paper's split has")
def test_miniimagenet_refuses_unsafe_pickles(mini, tmp_path):
    fx.write_mini_pickles(tmp_path, mini)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "miniimagenet" / "mini-imagenet-cache-val.pkl", "wb") as f:
        pickle.dump({"image_data": Evil(), "class_dict": {}}, f)
    with pytest.raises(ValueError, match=r"refusing to unpickle (posix|os|nt)\.system.*only numpy arrays"):
        load_dataset("miniimagenet", tmp_path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:.*the paper's split has")
def test_miniimagenet_unequal_classes_and_per_class(mini, tmp_path):
    fx.write_mini_folders(tmp_path, mini)
    victim = sorted((tmp_path / "miniimagenet" / "test").glob("*/*.png"))[0]
    victim.unlink()
    with pytest.raises(ValueError, match="different numbers of images \\(5 to 6\\).*per_class="):
        load_dataset("miniimagenet", tmp_path)
    d = load_dataset("miniimagenet", tmp_path, per_class=5)
    assert d["train"].per_class == 5 and d["test"].per_class == 5
    with pytest.raises(ValueError, match="different numbers"):
        load_dataset("miniimagenet", tmp_path, per_class=6)


# ====================================================================== tasks and import cost
def test_task_sampler_rejects_impossible_tasks(omni_roots):
    _, npz = omni_roots
    test = load_dataset("omniglot", npz, num_train=5)["test"]  # 4 classes x 20
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="5-way tasks need 5 classes, this split has 4"):
        TaskSampler(test, 5, g)
    sampler = TaskSampler(test, 4, g)
    with pytest.raises(ValueError, match="shots \\+ 1 = 21 images per class, but each class has 20"):
        sampler.eval_tasks(1, shots=20, eval_batch=5, eval_iters=1)
    with pytest.raises(ValueError, match="train_shots = 21"):
        sampler.train_batches(1, train_shots=21, inner_batch=5, inner_iters=1)
    tasks = sampler.eval_tasks(2, shots=19, eval_batch=5, eval_iters=1)  # the largest that fits
    assert tuple(tasks.support_x.shape) == (2, 4 * 19, 1, 28, 28)


def test_import_is_cheap():
    code = ("import sys, reptile_lib, reptile_lib.data, reptile_lib.data.commands, reptile_lib.paths;"
            "print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.stdout.strip() == "[]"
