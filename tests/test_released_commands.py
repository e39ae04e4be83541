"""The paper's configs against the released README's command lines, flag by flag.

The commands are copied from ``openai/supervised-reptile`` README.md (lines 35-56 and 69-83);
flags a command leaves out take the released ``args.py`` defaults.
"""
from __future__ import annotations

import random
import shlex

import pytest

from reptile_lib import configs
from reptile_lib.data.omniglot import NUM_CHARACTERS, reptile_split

# released args.py defaults (lines 19-42) of the flags that matter here
DEFAULTS = {"seed": 0, "classes": 5, "shots": 5, "train-shots": 0, "inner-batch": 5, "inner-iters": 20,
            "learning-rate": 1e-3, "meta-step": 0.1, "meta-step-final": 0.1, "meta-batch": 1,
            "meta-iters": 400000, "eval-batch": 5, "eval-iters": 50, "eval-samples": 10000,
            "weight-decay": 1, "sgd": False, "foml": False, "transductive": False}

README = {
    "omniglot_5way": [
        "--shots 1 --inner-batch 10 --inner-iters 5 --meta-step 1 --meta-batch 5 --meta-iters 100000 --eval-batch 5 "
        "--eval-iters 50 --learning-rate 0.001 --meta-step-final 0 --train-shots 10 --checkpoint ckpt_o15t --transductive",
        "--train-shots 10 --inner-batch 10 --inner-iters 5 --learning-rate 0.001 --meta-step 1 --meta-step-final 0 "
        "--meta-batch 5 --meta-iters 100000 --eval-batch 5 --eval-iters 50 --checkpoint ckpt_o55",
        "--shots 1 --inner-batch 10 --inner-iters 5 --meta-step 1 --meta-batch 5 --meta-iters 100000 --eval-batch 5 "
        "--eval-iters 50 --learning-rate 0.001 --meta-step-final 0 --train-shots 10 --checkpoint ckpt_o15"],
    "omniglot_20way": [
        "--shots 1 --classes 20 --inner-batch 20 --inner-iters 10 --meta-step 1 --meta-batch 5 --meta-iters 200000 "
        "--eval-batch 10 --eval-iters 50 --learning-rate 0.0005 --meta-step-final 0 --train-shots 10 --checkpoint ckpt_o120",
        "--classes 20 --inner-batch 20 --inner-iters 10 --meta-step 1 --meta-batch 5 --meta-iters 200000 --eval-batch 10 "
        "--eval-iters 50 --learning-rate 0.0005 --meta-step-final 0 --train-shots 10 --checkpoint ckpt_o520"],
    "miniimagenet_5way": [
        "--shots 1 --inner-batch 10 --inner-iters 8 --meta-step 1 --meta-batch 5 --meta-iters 100000 --eval-batch 5 "
        "--eval-iters 50 --learning-rate 0.001 --meta-step-final 0 --train-shots 15 --checkpoint ckpt_m15t --transductive",
        "--inner-batch 10 --inner-iters 8 --meta-step 1 --meta-batch 5 --meta-iters 100000 --eval-batch 15 "
        "--eval-iters 50 --learning-rate 0.001 --meta-step-final 0 --train-shots 15 --checkpoint ckpt_m55",
        "--shots 1 --inner-batch 10 --inner-iters 8 --meta-step 1 --meta-batch 5 --meta-iters 100000 --eval-batch 5 "
        "--eval-iters 50 --learning-rate 0.001 --meta-step-final 0 --train-shots 15 --checkpoint ckpt_m15"],
}
FIGURE3_SHARED = ("--sgd --seed 0 --inner-batch 25 --learning-rate 0.003 --meta-step-final 0 --meta-iters 40000 "
                  "--eval-batch 25 --eval-iters 5 --eval-interval 1")
FIGURE3 = {  # README lines 71-83: (steps combined, k, averaged) -> flags
    ((1,), 1, False): "--inner-iters 1 --train-shots 5 --meta-step 0.25",
    ((1, 2), 2, False): "--inner-iters 2 --train-shots 10 --meta-step 0.25",
    ((1, 2), 2, True): "--inner-iters 2 --train-shots 10 --meta-step 0.125",
    ((2,), 2, False): "--foml --inner-iters 2 --train-shots 10 --meta-step 0.25",
    ((1, 2, 3), 3, False): "--inner-iters 3 --train-shots 15 --meta-step 0.25",
    ((1, 2, 3), 3, True): "--inner-iters 3 --train-shots 15 --meta-step 0.08325",
    ((3,), 3, False): "--foml --inner-iters 3 --train-shots 15 --meta-step 0.25",
    ((4,), 4, False): "--foml --inner-iters 4 --train-shots 20 --meta-step 0.25",
    ((1, 2, 3, 4), 4, False): "--inner-iters 4 --train-shots 20 --meta-step 0.25",
    ((1, 2, 3, 4), 4, True): "--inner-iters 4 --train-shots 20 --meta-step 0.0625",
}


def parse(command: str) -> dict:
    flags, words = dict(DEFAULTS), shlex.split(command)
    i = 0
    while i < len(words):
        name = words[i][2:]
        if isinstance(DEFAULTS.get(name), bool):
            flags[name], i = True, i + 1
        else:
            flags[name], i = float(words[i + 1]) if name not in ("checkpoint",) else words[i + 1], i + 2
    return flags


def training_fields(f: dict) -> dict:
    """What a command trains with (``--shots`` and ``--transductive`` only change evaluation once
    ``--train-shots`` is given: released train.py line 57, reptile.py line 126)."""
    return {"classes": int(f["classes"]), "train_shots": int(f["train-shots"] or f["shots"]),
            "inner_batch": int(f["inner-batch"]), "inner_iters": int(f["inner-iters"]),
            "learning_rate": f["learning-rate"], "meta_step": f["meta-step"], "meta_step_final": f["meta-step-final"],
            "meta_batch": int(f["meta-batch"]), "meta_iters": int(f["meta-iters"]), "sgd": bool(f["sgd"])}


@pytest.mark.parametrize("name", sorted(README))
def test_paper_configs_are_the_readme_commands(name):
    config = configs.PAPER_CONFIGS[name]
    commands = [parse(c) for c in README[name]]
    for f in commands:
        assert training_fields(f) == {k: getattr(config, k) for k in training_fields(f)}, f["checkpoint"]
        assert f["weight-decay"] == 1 and f["eval-samples"] == config.eval_samples
    evals = {(int(f["shots"]), int(f["eval-batch"]), int(f["eval-iters"])) for f in commands}
    assert evals == {(e.shots, e.eval_batch, e.eval_iters) for e in config.evals}


def test_figure3_configs_are_the_readme_commands():
    for (steps, k, average), flags in FIGURE3.items():
        f = parse(f"{flags} {FIGURE3_SHARED}")
        config = configs.figure3_config(steps, k, average)
        fields = training_fields(f)
        released_step = fields.pop("meta_step")
        assert fields == {key: getattr(config, key) for key in fields}, config.name
        # ours: meta-step 0.25 and the k updates weighted 1/k (or the FOMAML / Reptile weights)
        effective = config.meta_step * sum(config.weights)
        expected = released_step * (1 if f["foml"] else k)
        if (steps, k, average) == ((1, 2, 3), 3, True):  # the README rounds 0.25 / 3 to 0.08325
            assert effective == pytest.approx(expected, rel=2e-3) and effective != pytest.approx(expected, rel=1e-6)
        else:
            assert effective == pytest.approx(expected, rel=1e-12), config.name
        assert config.foml == bool(f["foml"]) or (steps == (k,) and config.combine == (k,))
        assert {(e.shots, e.eval_batch, e.eval_iters) for e in config.evals} == {(5, 25, 5)}


def test_another_seed_splits_omniglot_differently():
    """Released run_omniglot.py seeds ``random`` with --seed (line 22) before split_dataset (line 24)."""
    names = [("alphabet", f"character{i:04d}") for i in range(NUM_CHARACTERS)]
    _, test0 = reptile_split(names, 0)
    _, test1 = reptile_split(names, 1)
    assert len(test0) == len(test1) == 423
    assert len(set(test0) & set(test1)) == 119  # of 423; chance alone keeps 423 * 423 / 1623 = 110
    order = list(range(NUM_CHARACTERS))
    random.seed(1)
    random.shuffle(order)  # the released call, on the global generator
    assert order[1200:] == test1
