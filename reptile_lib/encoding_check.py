"""What the GPU runs' JPEG copy of CIFAR-FS changes: one check, run on the CPU.

The GPU machine cannot receive the lossless PNG tiles (123 MB; a job carries 64 MiB in all), so
the CIFAR-FS runs there train and evaluate on ``reptile data pack cifar_fs`` output: JPEG quality
95 without chroma subsampling (``cifar_fs/*@jpeg-q95``). This check bounds the effect with two
models meta-trained from the same seed, one on each encoding, each evaluated on both encodings
over the *same* tasks (same classes, images and inner mini-batches: the evaluation generator
depends only on seed, split and shots):

- evaluation effect: a model's accuracy on JPEG minus on PNG tiles, paired task by task;
- training effect: the JPEG-trained minus the PNG-trained model, both evaluated on PNG tiles
  (this includes the divergence of two training runs whose inputs differ slightly, so it bounds
  the training effect from above rather than isolating it).
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Mapping

import torch

from .configs import Config
from .experiment import evaluate_model
from .results import provenance, results_document, summarize, write_document
from .tasks import ClassDataset
from .train import make_learner, meta_train

EXPERIMENT = "cifar_fs_encoding_check"


def paired(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Mean of b - a over tasks with a 95% interval, and the share of tasks whose accuracy changed."""
    d = (b.double() - a.double())
    n = d.numel()
    sd = float(d.std(unbiased=True)) if n > 1 else float("nan")
    return {"mean": float(d.mean()), "ci95": 1.96 * sd / math.sqrt(n), "n_tasks": n,
            "changed": float((d != 0).double().mean())}


def pixel_difference(a: ClassDataset, b: ClassDataset) -> dict:
    """Mean and largest absolute difference of two encodings of the same images, in 0..255 levels."""
    if a.images.shape != b.images.shape:
        raise ValueError(f"{a.name} and {b.name} hold different shapes: {tuple(a.images.shape)} vs {tuple(b.images.shape)}")
    d = (a.images.to(torch.int16) - b.images.to(torch.int16)).abs()
    return {"mean_abs": float(d.double().mean()), "max_abs": int(d.max())}


def run_encoding_check(config: Config, png: Mapping[str, ClassDataset], jpeg: Mapping[str, ClassDataset], *,
                       seed: int = 0, device: Any = "cpu", split: str = "test", n_tasks: int | None = None,
                       chunk: int = 100, out: str | os.PathLike | None = None) -> dict:
    """Train ``config`` on each encoding's train split, evaluate both models on both encodings of ``split``.

    Metrics (``write_results`` schema): ``<metric>@<train encoding>-><eval encoding>`` for the four
    combinations, plus paired differences ``<metric>:eval_effect`` (PNG-trained model, JPEG minus PNG
    tiles) and ``<metric>:train_effect`` (JPEG- minus PNG-trained model, on PNG tiles).
    """
    t0 = time.time()
    enc = {"png": png, "jpeg": jpeg}
    names = {k: v[split].name for k, v in enc.items()}
    if "@" in names["png"] or "@" not in names["jpeg"]:
        raise ValueError(f"expected a PNG and a packed copy, got {names['png']} and {names['jpeg']}")
    learner = make_learner(config, png["train"].image_shape, device)
    per_task: dict[str, dict[str, torch.Tensor]] = {}
    iterations = {}
    for trained_on, splits in enc.items():
        state = meta_train(config, splits["train"], seed=seed, device=device)
        iterations[trained_on] = state.iteration
        for evaluated_on, eval_splits in enc.items():
            accs = evaluate_model(config, learner, state.params, state.opt_state, eval_splits[split], split, seed,
                                  device, n_tasks=n_tasks, chunk=chunk)
            for name, v in accs.items():
                per_task.setdefault(name, {})[f"{trained_on}->{evaluated_on}"] = v
    metrics: dict[str, dict] = {}
    for name, runs in per_task.items():
        for combo, v in runs.items():
            metrics[f"{name}@{combo}"] = summarize({seed: v.tolist()})
        metrics[f"{name}:eval_effect"] = paired(runs["png->png"], runs["png->jpeg"])
        metrics[f"{name}:train_effect"] = paired(runs["png->png"], runs["jpeg->png"])
    extra = {"encodings": names, "pixels": {s: pixel_difference(png[s], jpeg[s]) for s in png},
             "iterations": iterations, "split": split}
    prov = provenance(device, [seed], time.time() - t0, True)
    doc = results_document(EXPERIMENT, "smoke", config, metrics, prov, extra)
    if out is not None:
        write_document(out, doc)
    return doc


def encoding_rows(doc: Mapping[str, Any]) -> list[dict]:
    """The check as a table: per metric, the four accuracies and the two paired effects (points)."""
    rows = []
    bases = sorted({k.split("@")[0] for k in doc["metrics"] if "@" in k})
    for b in bases:
        m = doc["metrics"]
        row = {"metric": b}
        for combo in ("png->png", "png->jpeg", "jpeg->png", "jpeg->jpeg"):
            x = m[f"{b}@{combo}"]
            row[f"trained {combo.replace('->', ', eval ')}"] = f"{100 * x['mean']:.2f} ± {100 * x['ci95']:.2f}"
        for eff in ("eval_effect", "train_effect"):
            x = m[f"{b}:{eff}"]
            row[eff.replace("_", " ")] = f"{100 * x['mean']:+.2f} ± {100 * x['ci95']:.2f}"
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m reptile_lib.encoding_check --jpeg-root DIR --out FILE``: the check as committed."""
    import argparse
    import dataclasses

    from .configs import get_config
    from .data import load_dataset

    p = argparse.ArgumentParser(prog="python -m reptile_lib.encoding_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--jpeg-root", required=True, help="folder holding the packed cifar_fs/ (reptile data pack cifar_fs --out DIR)")
    p.add_argument("--data-root", default=None, help="folder holding the PNG cifar_fs/ (default: the usual search)")
    p.add_argument("--meta-iters", type=int, default=200)
    p.add_argument("--tasks", type=int, default=200, help="evaluation tasks per protocol and combination")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    config = dataclasses.replace(get_config("cifar_fs_5way", "smoke"), name=EXPERIMENT, meta_iters=args.meta_iters,
                                 eval_samples=args.tasks)
    png, jpeg = load_dataset("cifar_fs", args.data_root), load_dataset("cifar_fs", args.jpeg_root)
    doc = run_encoding_check(config, png, jpeg, seed=args.seed, device=args.device, n_tasks=args.tasks, out=args.out)
    for row in encoding_rows(doc):
        print(row)
    print("pixels:", doc["extra"]["pixels"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
