"""Results files: schema, atomic writes, refusal of another config's results."""
import json
import os

import pytest

from reptile_lib.configs import OMNIGLOT_5WAY, OMNIGLOT_20WAY
from reptile_lib.results import (ResultsMismatchError, atomic_write_text, load_results, metric_name, provenance,
                                 summarize, write_results)


def _write(path, config=OMNIGLOT_5WAY):
    metrics = {metric_name("test", 1, 5, False): summarize({0: [1.0, 0.0, 1.0, 1.0]})}
    return write_results(path, "omniglot_5way", "smoke", config, metrics, provenance("cpu", [0], 1.5, True))


def test_metric_names():
    assert metric_name("test", 1, 5, True) == "test_1shot_5way_transductive"
    assert metric_name("train", 5, 20, False) == "train_5shot_20way_nontransductive"


def test_round_trip_and_mismatch(tmp_path):
    p = _write(tmp_path / "r.json")
    doc = load_results(p, OMNIGLOT_5WAY, "smoke")
    m = doc["metrics"]["test_1shot_5way_nontransductive"]
    assert m["mean"] == 0.75 and m["n_tasks"] == 4 and m["per_seed"][0]["seed"] == 0
    assert doc["provenance"]["torch"] and doc["provenance"]["commit"]
    with pytest.raises(ResultsMismatchError, match="another config"):
        load_results(p, OMNIGLOT_20WAY)
    with pytest.raises(ResultsMismatchError, match="'smoke' run, expected 'paper'"):
        load_results(p, OMNIGLOT_5WAY, "paper")


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ResultsMismatchError, match="not valid JSON"):
        load_results(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ResultsMismatchError, match="not a results file"):
        load_results(tmp_path / "other.json")


def test_bad_metrics_or_profile_write_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_results(tmp_path / "x.json", "e", "huge", OMNIGLOT_5WAY, {}, provenance("cpu", [0], 0, True))
    with pytest.raises(ValueError, match="needs mean"):
        write_results(tmp_path / "x.json", "e", "paper", OMNIGLOT_5WAY, {"m": {"mean": 1}},
                      provenance("cpu", [0], 0, True))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    p = atomic_write_text(tmp_path / "f.json", "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["f.json"]


def test_summary_over_seeds():
    s = summarize({0: [1.0, 1.0], 1: [0.0, 0.0]})
    assert s["mean"] == 0.5 and s["n_tasks"] == 4 and abs(s["seed_sd"] - 2 ** 0.5 / 2 * 1.0) < 1e-12


def test_commit_is_dirty_only_when_code_changes(tmp_path):
    """Rewritten results do not mark the recorded commit dirty; changed code does."""
    import subprocess

    from reptile_lib.results import git_commit

    def git(*a):
        subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reptile_lib").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "reptile_lib" / "m.py").write_text("x = 1\n")
    (tmp_path / "results" / "r.json").write_text("{}\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = git_commit(tmp_path)
    assert len(clean) == 40 and not clean.endswith("+dirty")
    (tmp_path / "results" / "r.json").write_text('{"a": 1}\n')
    assert git_commit(tmp_path) == clean
    (tmp_path / "reptile_lib" / "m.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "+dirty"


def test_metric_parts_inverts_metric_name():
    from reptile_lib.results import metric_name, metric_parts

    for parts in [("test", 1, 5, False), ("train", 5, 20, True), ("val", 1, 5, True)]:
        assert metric_parts(metric_name(*parts)) == parts
