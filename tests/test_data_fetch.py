"""`reptile data fetch|check|pack`: downloads from a local HTTP server only, never the network.

The server (127.0.0.1, a thread) serves tiny archives with the official layouts, built from
generated fixtures; the expected checksums are overridden with the fixtures' own.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import data_fixtures as fx
from reptile_lib import paths
from reptile_lib.data import commands, fetch, load_dataset, omniglot
from reptile_lib.data.cifar_splits import CLASSES, classes_csv


@pytest.fixture(autouse=True)
def local_network_only(monkeypatch):
    """Fail any test that tries to open a URL other than the local server; bypass proxies for it."""
    real = urllib.request.urlopen

    def guarded(request, *a, **kw):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        assert url.startswith("http://127.0.0.1:"), f"test tried to reach {url}"
        return real(request, *a, **kw)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        if self.path == "/cut-short":  # promises 1,000 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, folder it serves)."""
    folder = tmp_path_factory.mktemp("www")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    httpd.shutdown()
    httpd.server_close()


def source_for(path: Path, url: str, **override) -> fetch.Source:
    blob = path.read_bytes()
    kw = dict(url=url, filename=path.name, sha256=hashlib.sha256(blob).hexdigest(), size=len(blob),
              md5=hashlib.md5(blob).hexdigest())
    kw.update(override)
    return fetch.Source(**kw)


@pytest.fixture(scope="module")
def omni_arrays():
    return fx.omniglot_arrays(seed=5)


@pytest.fixture(scope="module")
def omni_sources(server, omni_arrays):
    base, www = server
    return tuple(source_for(fx.omniglot_zip(www / f"{s}.zip", s, omni_arrays), f"{base}/{s}.zip")
                 for s in omniglot.SETS)


@pytest.fixture(scope="module")
def cifar_source(server):
    base, www = server
    images = fx.cifar_arrays(per_class=30, seed=2)
    path = fx.cifar_python_targz(www / "cifar-100-python.tar.gz", images, [c[1] for c in CLASSES])
    return source_for(path, f"{base}/cifar-100-python.tar.gz"), images


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ---------------------------------------------------------------- fetch
def test_fetch_omniglot_converts_to_the_shared_format(tmp_path, omni_sources, omni_arrays):
    logs = []
    target = fetch.fetch("omniglot", tmp_path, sources=omni_sources, log=logs.append)
    assert target == tmp_path / "omniglot" and leftovers(tmp_path) == ["omniglot"]  # no temp folder left
    assert leftovers(target) == ["fetched.json", "images_background.npz", "images_evaluation.npz"]
    for s in omniglot.SETS:
        images, names, ids = omni_arrays[s]
        with np.load(target / f"{s}.npz") as d:
            assert set(d.files) == {"images", "alphabet", "character", "char_id"}
            assert d["images"].dtype == bool and d["char_id"].dtype == np.int16
            np.testing.assert_array_equal(d["images"], images)
            assert list(zip(d["alphabet"], d["character"])) == names and list(d["char_id"]) == ids
    assert any("downloading" in line for line in logs)
    # the loaders read it
    a = load_dataset("omniglot", tmp_path, num_train=5)
    assert a["train"].num_classes == 20
    # a second fetch leaves it alone, --force replaces it
    before = (target / "fetched.json").read_text()
    fetch.fetch("omniglot", tmp_path, sources=omni_sources, log=logs.append)
    assert (target / "fetched.json").read_text() == before and "already exists" in logs[-1]
    fetch.fetch("omniglot", tmp_path, sources=omni_sources, force=True, log=logs.append)
    assert leftovers(tmp_path) == ["omniglot"]


def test_fetch_cifar100_makes_tiles_train_then_test(tmp_path, cifar_source):
    source, images = cifar_source
    target = fetch.fetch("cifar100", tmp_path, sources=(source,), log=lambda m: None)
    assert target == tmp_path / "cifar_fs" and leftovers(tmp_path) == ["cifar_fs"]
    assert (target / "classes.csv").read_text() == classes_csv()
    assert len(list((target / "images").glob("*.png"))) == 100
    d = load_dataset("cifar_fs", tmp_path)
    names = [c[1] for c in CLASSES]
    for split in ("train", "val", "test"):
        idx = [names.index(n) for n in d[split].class_names]
        # the fixture's images 0..24 were CIFAR "train", 25..29 "test": per class, train first, then test
        assert torch.equal(d[split].images, torch.from_numpy(images[idx]))
        assert d[split].name == f"cifar_fs/{split}"


@pytest.mark.parametrize("field", ["sha256", "md5", "size"])
def test_wrong_checksum_is_an_error_and_leaves_nothing(tmp_path, omni_sources, field):
    bad = {"sha256": "0" * 64, "md5": "0" * 32, "size": 123}[field]
    sources = (omni_sources[0], fetch.Source(**{**omni_sources[1].__dict__, field: bad}))
    with pytest.raises(fetch.FetchError) as e:
        fetch.fetch("omniglot", tmp_path / "root", sources=sources, log=lambda m: None)
    msg = str(e.value)
    assert "images_evaluation.zip" in msg and "run again" in msg
    assert ("does not match the published" in msg) if field != "size" else ("expected 123" in msg)
    assert leftovers(tmp_path / "root") == []


def test_interrupted_or_missing_download_leaves_nothing(tmp_path, server, omni_sources):
    base, _ = server
    for size in (1000, None):  # published size known or not: the server's Content-Length is checked too
        cut = fetch.Source(f"{base}/cut-short", "images_evaluation.zip", "0" * 64, size)
        with pytest.raises(fetch.FetchError, match="(got 10 bytes, expected 1,000; the download was cut short"
                                                   "|download of .*/cut-short failed).*run again"):
            fetch.fetch("omniglot", tmp_path, sources=(omni_sources[0], cut), log=lambda m: None)
        assert leftovers(tmp_path) == []
    missing = fetch.Source(f"{base}/nope.zip", "images_evaluation.zip", "0" * 64)
    with pytest.raises(fetch.FetchError, match="HTTP 404"):
        fetch.fetch("omniglot", tmp_path, sources=(omni_sources[0], missing), log=lambda m: None)
    assert leftovers(tmp_path) == []


def test_ctrl_c_during_conversion_leaves_nothing(tmp_path, omni_sources, monkeypatch):
    def interrupt(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "convert_omniglot", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch("omniglot", tmp_path, sources=omni_sources, log=lambda m: None)
    assert leftovers(tmp_path) == []


def test_cifar_archive_with_other_class_names_is_refused(tmp_path, server):
    base, www = server
    names = [c[1] for c in CLASSES]
    names[3] = "teddy_bear"
    path = fx.cifar_python_targz(www / "other.tar.gz", fx.cifar_arrays(per_class=30, seed=3), names)
    with pytest.raises(fetch.FetchError, match="differ from the embedded CIFAR-FS/FC100"):
        fetch.fetch("cifar100", tmp_path, sources=(source_for(path, f"{base}/other.tar.gz"),), log=lambda m: None)
    assert leftovers(tmp_path) == []


def test_fetch_default_root_is_the_user_folder_the_loaders_search(tmp_path, omni_sources, monkeypatch):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "repo")  # hide ../shared/datasets
    monkeypatch.chdir(tmp_path)
    target = fetch.fetch("omniglot", sources=omni_sources, log=lambda m: None)
    assert target == tmp_path / "cache" / "reptile-book" / "datasets" / "omniglot"
    assert paths.find_dataset("omniglot", ("images_background.npz",)) == target.resolve()
    assert load_dataset("omniglot", num_train=5)["test"].num_classes == 4


def test_published_checksums_are_wellformed():
    for name, sources in fetch.SOURCES.items():
        for s in sources:
            assert s.url.startswith("https://") and len(s.sha256) == 64 and len(s.md5) == 32 and s.size > 10**6
            int(s.sha256, 16), int(s.md5, 16)
    assert set(fetch.SOURCES) == {"omniglot", "cifar100"}


# ---------------------------------------------------------------- the commands
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reptile")
    commands.add_data_commands(p.add_subparsers(dest="command", required=True))
    return p


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


def test_help_explains_every_flag(capsys):
    for sub, flags in (("fetch", ["--data-root", "--force", "omniglot", "cifar100"]),
                       ("check", ["--data-root", "--full"]),
                       ("pack", ["--out", "--format", "--quality", "--data-root", "--force"])):
        with pytest.raises(SystemExit) as e:
            parser().parse_args(["data", sub, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "exit codes" in text and all(f in text for f in flags), sub
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["data", "fetch", "imagenet"])
    assert e.value.code == 2
    capsys.readouterr()


def test_fetch_command_errors_are_one_line(tmp_path, omni_sources, monkeypatch, capsys):
    bad = (omni_sources[0], fetch.Source(**{**omni_sources[1].__dict__, "sha256": "f" * 64}))
    monkeypatch.setitem(fetch.SOURCES, "omniglot", bad)
    assert run(["data", "fetch", "omniglot", "--data-root", str(tmp_path)]) == commands.EXIT_FAIL
    err = capsys.readouterr().err
    assert err.startswith("error: images_evaluation.zip: sha256") and err.count("\n") == 1 and "Traceback" not in err
    assert leftovers(tmp_path) == []
    monkeypatch.setitem(fetch.SOURCES, "omniglot", omni_sources)
    assert run(["data", "fetch", "omniglot", "--data-root", str(tmp_path)]) == commands.EXIT_OK
    assert leftovers(tmp_path) == ["omniglot"]


def test_check_command(tmp_path, capsys, omni_sources, cifar_source):
    assert run(["data", "check", "--data-root", str(tmp_path)]) == commands.EXIT_FAIL
    out = capsys.readouterr().out
    assert "omniglot" in out and "missing" in out and "reptile data fetch omniglot" in out
    assert "reptile data fetch cifar100" in out and "miniimagenet (optional)  absent" in out
    # fixture copies: present, but not the full data sets -> invalid, still exit 1
    fetch.fetch("omniglot", tmp_path, sources=omni_sources, log=lambda m: None)
    fetch.fetch("cifar100", tmp_path, sources=(cifar_source[0],), log=lambda m: None)
    assert run(["data", "check", "--data-root", str(tmp_path)]) == commands.EXIT_FAIL
    out = capsys.readouterr().out
    assert "9 characters x 20, expected 1,623 x 20" in out and "holds 30 images, expected 600" in out


def test_check_command_on_the_real_data(capsys):
    root = fx.real_folder("omniglot", ("images_background.npz",)).parent
    fx.real_folder("cifar_fs", ("classes.csv",))
    assert commands.main(["data", "check", "--data-root", str(root)]) == commands.EXIT_OK
    out = capsys.readouterr().out
    assert "1,623 characters x 20" in out and "100 classes x 600" in out and "FC100 60/20/20" in out


def test_pack_command(tmp_path, capsys, cifar_source):
    fetch.fetch("cifar100", tmp_path / "src", sources=(cifar_source[0],), log=lambda m: None)
    argv = ["data", "pack", "cifar_fs", "--data-root", str(tmp_path / "src"), "--out", str(tmp_path / "out")]
    assert run(argv) == commands.EXIT_OK
    assert "jpeg-q95" in capsys.readouterr().out
    assert run(argv) == commands.EXIT_FAIL  # exists
    assert "--force" in capsys.readouterr().err
    assert run(argv + ["--force", "--quality", "0"]) == commands.EXIT_FAIL
    assert "between 1 and 100" in capsys.readouterr().err
    assert run(["data", "pack", "cifar_fs", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cifar_fs data not found") and "reptile data fetch cifar100" in err
