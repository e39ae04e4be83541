"""Measure the real-Omniglot smoke accuracy behind tests/test_train.py's threshold (5-way 1-shot, non-transductive)."""
import dataclasses, time, torch
from reptile_lib.configs import smoke, OMNIGLOT_5WAY, EvalSpec
from reptile_lib.experiment import run_experiment
from reptile_lib.data import load_dataset
omni = load_dataset("omniglot")
for iters, tasks in ((100, 100), (150, 100), (300, 200)):
    for seed in (0, 1):
        c = dataclasses.replace(smoke(OMNIGLOT_5WAY), meta_iters=iters, eval_samples=tasks, evals=(EvalSpec(1, 5, 50),))
        t = time.time()
        doc = run_experiment(c, "smoke", [seed], splits=omni, eval_splits=("test",))
        m = doc["metrics"]["test_1shot_5way_nontransductive"]
        print(iters, tasks, seed, round(m["mean"], 3), round(m["ci95"], 3), round(time.time() - t, 1), flush=True)
