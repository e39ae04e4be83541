"""Does the batched path's Adam carry (``adam_carry="mean"``) change accuracy? A smoke-sized check.

Trains Omniglot 5-way at smoke size on the real data twice per seed, once with the batched path and
its mean carry, once with the released code's serial order and sequential carry, from the same seed
(same initialisation and task stream), and evaluates both on the same test tasks. The queue's
``omniglot_5way_mean_carry`` unit (``runs/plan.toml``) measures the same at paper scale.

    python tools/adam_carry_check.py mean        -> results/adam_carry/mean.json
    python tools/adam_carry_check.py sequential  -> results/adam_carry/sequential.json
"""
import dataclasses
import sys

import torch

from reptile_lib.book import results_dir
from reptile_lib.configs import OMNIGLOT_5WAY, EvalSpec, smoke
from reptile_lib.data import load_dataset
from reptile_lib.experiment import run_experiment

MODES = {"mean": dict(batched=True, adam_carry="mean"), "sequential": dict(batched=False, adam_carry="sequential")}

if __name__ == "__main__":
    mode = sys.argv[1]
    torch.set_num_threads(1)
    config = dataclasses.replace(smoke(OMNIGLOT_5WAY), name=f"adam_carry_{mode}", meta_iters=300, eval_samples=500,
                                 eval_interval=300, eval_interval_tasks=5, evals=(EvalSpec(1, 5, 50),), **MODES[mode])
    doc = run_experiment(config, "smoke", [0, 1], splits=load_dataset("omniglot"), eval_splits=("test",),
                         out=results_dir() / "adam_carry" / f"{mode}.json")
    for k, m in doc["metrics"].items():
        print(mode, k, f"{m['mean']:.4f} +- {m['ci95']:.4f}", [round(s["mean"], 4) for s in m.get("per_seed", [])])
