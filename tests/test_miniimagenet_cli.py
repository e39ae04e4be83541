"""Mini-ImageNet for users who have it: `reptile train --config miniimagenet_5way` on their folder.

The images cannot be obtained here, so the command runs on generated stand-ins of the common
on-disk layout (tests/data_fixtures.py), at a tiny size, through the command line a user types.
"""
import json
import warnings

import pytest

from data_fixtures import mini_arrays, write_mini_folders
from reptile_lib.cli import main


@pytest.mark.slow  # 84-pixel images: the evaluation's 50 adaptation steps dominate (~15 s on 2 free cores)
def test_reptile_train_runs_the_miniimagenet_config_on_a_users_folder(tmp_path, capsys):
    write_mini_folders(tmp_path / "data", mini_arrays(classes=5, per_class=16))
    out = tmp_path / "results" / "miniimagenet_5way.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in has 5 classes per split, not 64/16/20
        code = main(["train", "--config", "miniimagenet_5way", "--profile", "smoke", "--data-root",
                     str(tmp_path / "data"), "--out", str(out), "--checkpoint-dir", str(tmp_path / "ck"), "--quiet",
                     "--eval-splits", "test", "--set", "meta_iters=1", "eval_samples=1", "eval_interval_tasks=1",
                     "inner_iters=2"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["config"]["name"] == "miniimagenet_5way" and doc["config"]["image_size"] is None
    # the released Adam order, trained on the queue's CPU path (the default engine on a CPU)
    assert doc["config"]["adam_carry"] == "sequential" and doc["provenance"]["engine"] == "sequential"
    assert doc["extra"]["data"]["train"] == {"name": "miniimagenet/train", "classes": 5, "per_class": 16}
    assert set(doc["metrics"]) == {f"test_{k}shot_5way_{p}" for k in (1, 5) for p in ("transductive", "nontransductive")}
    assert [h["iteration"] for h in doc["extra"]["history"]["0"]] == [1]
    assert "val_nontransductive" in doc["extra"]["history"]["0"][0]  # monitored on validation classes
    assert (tmp_path / "results" / "weights" / "miniimagenet_5way_seed0.pt").exists()
    assert "wrote" in capsys.readouterr().out
