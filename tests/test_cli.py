"""The command line: help, exit codes and one-line messages for bad input."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reptile_lib.cli import apply_overrides, main
from reptile_lib.configs import OMNIGLOT_5WAY


def test_help_explains_every_train_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--profile", "--seeds", "--set", "--device", "--data-root", "--out",
                 "--checkpoint-dir", "--checkpoint-every", "--no-resume", "--max-minutes"):
        assert flag in out


def test_unknown_config_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--config", "nope"])
    assert e.value.code == 2


def test_missing_data_names_the_paths_and_the_fetch_command(tmp_path, capsys):
    code = main(["train", "--config", "omniglot_5way", "--profile", "smoke", "--data-root", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 3
    assert str(tmp_path / "none" / "omniglot") in err and "reptile data fetch omniglot" in err
    assert err.count("\n") == 1  # one line, no traceback


def test_bad_override_and_impossible_task_are_one_line_errors(capsys, tmp_path):
    assert main(["train", "--config", "omniglot_5way", "--set", "inner_itters=3"]) == 2
    assert "inner_iters" in capsys.readouterr().err
    code = main(["train", "--config", "omniglot_5way", "--profile", "smoke", "--set", "classes=500",
                 "--out", str(tmp_path / "r.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "500-way tasks need 500 classes, this split has" in err  # test split: 423 classes
    assert not (tmp_path / "r.json").exists()
    # the GPU engine trains the batched path only: refused before any data is read
    code = main(["train", "--config", "omniglot_5way", "--engine", "eager", "--data-root", str(tmp_path / "none"),
                 "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and "the engine batches tasks" in err and "--set batched=true adam_carry=mean" in err


def test_overrides_are_typed():
    c = apply_overrides(OMNIGLOT_5WAY, ["inner_iters=3", "learning_rate=0.01", "sgd=true", "foml_tail=none"])
    assert (c.inner_iters, c.learning_rate, c.sgd, c.foml_tail) == (3, 0.01, True, None)


def test_import_is_cheap():
    t = time.time()
    subprocess.run([sys.executable, "-c", "import reptile_lib"], check=True)
    assert time.time() - t < 2.0


def test_status_prints_the_queue_and_all_prints_every_unit(capsys):
    """`reptile status` reads the repository's plan; a sweep's pending runs share a line unless --all."""
    from reptile_lib.reproduce import load_plan

    assert main(["status"]) == 0
    short = capsys.readouterr().out
    assert main(["status", "--all"]) == 0
    every = capsys.readouterr().out
    units = load_plan().units
    assert len(every.splitlines()) == len(units) + 2          # a header, a line per unit, the total
    assert len(short.splitlines()) < len(every.splitlines())
    assert short.splitlines()[-1].startswith("known hours left:")


def test_status_piped_into_a_reader_that_stops_early_prints_no_traceback():
    """`reptile status | head -1`: the reader may close the pipe before the status is written (`true`
    reads nothing and exits at once); no traceback follows."""
    r = subprocess.run(f"{sys.executable} -m reptile_lib.cli status --all | true", shell=True,
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr


def test_train_refuses_to_overwrite_results_of_another_config(tmp_path, capsys):
    """The book's committed results are never replaced by a run of another configuration."""
    from reptile_lib import cli

    out = tmp_path / "omniglot_5way.json"
    out.write_text(json.dumps({"config_hash": "0123456789abcdef", "experiment": "omniglot_5way"}))
    rc = cli.main(["train", "--config", "omniglot_5way", "--profile", "smoke", "--out", str(out)])
    assert rc == 4
    err = capsys.readouterr().err
    assert "another configuration" in err and "--out results/mine/omniglot_5way.json" in err
    assert json.loads(out.read_text())["config_hash"] == "0123456789abcdef"   # untouched
