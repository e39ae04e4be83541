"""The GPU job scripts of issues 6-10, run end to end on the CPU (--cpu-smoke) at a tiny size.

Each test runs the exact script the GPU machine runs (``bash jobs/issueN_*.sh``), with the smoke
profile and ``--set`` overrides that make it take seconds, and checks what would come back.
"""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from data_fixtures import cifar_arrays, real_folder, write_cifar_tiles

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
TINY = ["eval_samples=3", "eval_interval=2", "eval_interval_tasks=2"]


@pytest.fixture(scope="module")
def omniglot_root() -> Path:
    return real_folder("omniglot", ("images_background.npz|images_background",)).parent


def run_job(script: str, out: Path, *args: str, data: Path | None = None) -> str:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    if data is not None:
        env["REPTILE_DATA"] = str(data)
    r = subprocess.run(["bash", str(ROOT / "jobs" / script), "--cpu-smoke", "--quiet", *args], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def tar_names(path: Path) -> list[str]:
    with tarfile.open(path) as t:
        return sorted(t.getnames())


def test_issue6_stops_resumes_and_is_collected(omniglot_root, tmp_path):
    ck, out1, out2 = tmp_path / "ck", tmp_path / "run1", tmp_path / "run2"
    common = ["--seeds", "0", "--train-tasks", "2", "--checkpoint-dir", str(ck), "--set", "meta_iters=4", *TINY]
    log = run_job("issue6_omniglot_5way.sh", out1, *common, "--stop-at", "2", data=omniglot_root)
    assert "UNFINISHED" in log and "seed 0 2/4" in log
    doc = json.loads((out1 / "omniglot_5way.json").read_text())
    assert doc["profile"] == "smoke" and not doc["provenance"]["finished"] and doc["metrics"] == {}
    assert doc["extra"]["pending_seeds"] == {"0": 2} and [h["iteration"] for h in doc["extra"]["history"]["0"]] == [1, 2]
    assert sorted(p.name for p in out1.iterdir()) == ["checkpoints.tar", "log.txt", "omniglot_5way.json"]
    assert tar_names(out1 / "checkpoints.tar") == ["omniglot_5way_seed0.pt", "omniglot_5way_segments.json"]

    # here: unpack the returned checkpoint where the next run looks for it (the carried checkpoints/)
    repo, ck2 = tmp_path / "repo", tmp_path / "ck2"
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "job.py"), "collect", str(out1), "--root", str(repo),
                        "--checkpoint-dir", str(ck2)], capture_output=True, text=True, check=True)
    assert (repo / "results" / "smoke" / "omniglot_5way.json").exists() and (ck2 / "omniglot_5way_seed0.pt").exists()
    assert "git add results/smoke/omniglot_5way.json" in r.stdout

    log = run_job("issue6_omniglot_5way.sh", out2, "--seeds", "0", "--train-tasks", "2", "--checkpoint-dir", str(ck2),
                  "--set", "meta_iters=4", *TINY, data=omniglot_root)
    assert "seed 0: resuming from" in log and "at meta-iteration 2" in log
    doc = json.loads((out2 / "omniglot_5way.json").read_text())
    assert doc["provenance"]["finished"] and doc["provenance"]["seeds"] == [0] and doc["extra"]["pending_seeds"] == {}
    assert doc["extra"]["resumed"] and [s["runs"] for s in doc["extra"]["segments"]] == [{"seed 0": [0, 2]},
                                                                                         {"seed 0": [2, 4]}]
    assert [h["iteration"] for h in doc["extra"]["history"]["0"]] == [1, 2, 4]
    names = {f"{s}_{k}shot_5way_{p}" for s in ("test", "train") for k in (1, 5) for p in ("transductive", "nontransductive")}
    assert set(doc["metrics"]) == names
    assert doc["metrics"]["test_1shot_5way_nontransductive"]["n_tasks"] == 3
    assert doc["metrics"]["train_1shot_5way_nontransductive"]["n_tasks"] == 2
    assert tar_names(out2 / "weights.tar") == ["omniglot_5way_seed0.pt"]
    subprocess.run([sys.executable, str(ROOT / "jobs" / "job.py"), "collect", str(out2), "--root", str(repo),
                    "--checkpoint-dir", str(ck2)], check=True, capture_output=True)
    assert (repo / "results" / "weights" / "omniglot_5way_seed0.pt").exists()


def test_issue7_twenty_way(omniglot_root, tmp_path):
    run_job("issue7_omniglot_20way.sh", tmp_path / "out", "--checkpoint-dir", str(tmp_path / "ck"), "--train-tasks", "1",
            "--set", "meta_iters=1", "eval_samples=1", "eval_interval=1", "eval_interval_tasks=1", data=omniglot_root)
    doc = json.loads((tmp_path / "out" / "omniglot_20way.json").read_text())
    assert doc["provenance"]["finished"] and "test_5shot_20way_transductive" in doc["metrics"]


def test_issue8_records_the_jpeg_copy_it_trained_on(tmp_path):
    from reptile_lib.data.cifar_splits import classes_csv

    root = tmp_path / "data"
    write_cifar_tiles(root, cifar_arrays(per_class=30), classes_csv(), suffix=".jpg")
    (root / "cifar_fs" / "pack.json").write_text(json.dumps({"format": "jpeg", "encoding": "jpeg-q95"}))
    run_job("issue8_cifar_fs.sh", tmp_path / "out", "--seeds", "0", "--checkpoint-dir", str(tmp_path / "ck"),
            "--train-tasks", "1", "--set", "meta_iters=2", "eval_samples=2", "eval_interval=2", "eval_interval_tasks=1",
            data=root)
    doc = json.loads((tmp_path / "out" / "cifar_fs_5way.json").read_text())
    assert doc["extra"]["data"]["train"]["name"] == "cifar_fs/train@jpeg-q95"
    assert set(doc["extra"]["history"]["0"][0]) >= {"train_nontransductive", "val_nontransductive"}  # no test curve


def test_issue9_figure3(omniglot_root, tmp_path):
    run_job("issue9_figure3.sh", tmp_path / "out", "--checkpoint-dir", str(tmp_path / "ck"),
            "--set", "meta_iters=2", "eval_samples=2", "eval_interval=1", "eval_interval_tasks=2", data=omniglot_root)
    doc = json.loads((tmp_path / "out" / "figure3.json").read_text())
    assert doc["provenance"]["finished"] and len(doc["extra"]["curves"]) == 10
    assert len(doc["metrics"]) == 20 and doc["extra"]["monitor"] == {"split": "test", "tasks_per_point": 2, "interval": 1}
    assert len(tar_names(tmp_path / "out" / "checkpoints.tar")) == 11


def test_issue10_figure4(omniglot_root, tmp_path):
    run_job("issue10_figure4.sh", tmp_path / "out", "--checkpoint-dir", str(tmp_path / "ck"),
            "--set", "meta_iters=1", "eval_samples=2", "eval_interval_tasks=1", data=omniglot_root)
    doc = json.loads((tmp_path / "out" / "figure4.json").read_text())
    assert doc["provenance"]["finished"] and len(doc["config"]["runs"]) == 18 and len(doc["metrics"]) == 36
    assert doc["extra"]["monitor"]["split"] == "train"


def test_bundles_stay_under_the_return_limit(tmp_path):
    sys.path.insert(0, str(ROOT / "jobs"))
    import job

    files = []
    for i in range(5):
        f = tmp_path / "src" / f"c{i}.pt"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x" * (6 * 2 ** 20))
        files.append(f)
    out = tmp_path / "out"
    out.mkdir()
    tars = job.bundle(files, out, "checkpoints", tmp_path / "src")
    assert [t.name for t in tars] == ["checkpoints.tar", "checkpoints-2.tar", "checkpoints-3.tar"]
    assert all(t.stat().st_size < 16 * 2 ** 20 for t in tars)
    assert sum(len(tar_names(t)) for t in tars) == 5


def test_budget_lists_every_job():
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "job.py"), "budget"], capture_output=True, text=True,
                       check=True)
    for issue in ("issue 6", "issue 7", "issue 8", "issue 9", "issue 10"):
        assert issue in r.stdout
