"""Results files: one small JSON per run or run-group under ``results/``, with provenance.

Schema (every figure and table of the book is a function of these files)::

    {"experiment": str, "profile": "smoke" | "paper",
     "config": {...}, "config_hash": str,
     "provenance": {"commit", "device", "torch", "seeds",
                    "wall_time_s", "finished", "date", ...},
     "metrics": {name: {"mean", "ci95", "n_tasks",
                        "per_seed": [{"seed", "mean", "ci95", "n_tasks"}]}},
     "extra": {...}}      # curves, histories: anything a figure needs

Few-shot metric names are ``{split}_{shots}shot_{ways}way_{transductive|nontransductive}``.
Files are written atomically (temporary file + rename), so a crash never leaves half a file,
and a file whose ``config_hash`` differs from the config asked for is refused.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

SCHEMA_KEYS = ("experiment", "profile", "config", "config_hash", "provenance", "metrics")
PROVENANCE_KEYS = ("commit", "device", "torch", "seeds", "wall_time_s", "finished")


class ResultsMismatchError(ValueError):
    """A results file was produced by another config (or is not a results file)."""


def metric_name(split: str, shots: int, ways: int, transductive: bool) -> str:
    """``test_1shot_5way_transductive`` and friends."""
    return f"{split}_{shots}shot_{ways}way_{'transductive' if transductive else 'nontransductive'}"


def metric_parts(name: str) -> tuple[str, int, int, bool]:
    """The inverse of :func:`metric_name`: ``(split, shots, ways, transductive)``."""
    split, shots, ways, protocol = name.split("_")
    return split, int(shots.removesuffix("shot")), int(ways.removesuffix("way")), protocol == "transductive"


def config_dict(config: Any) -> dict:
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return config
    raise TypeError(f"a config must be a dataclass or a dict, got {type(config).__name__}")


def config_hash(config: Any) -> str:
    """A short sha256 of the config's canonical JSON."""
    blob = json.dumps(config_dict(config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


CODE_PATHS = ("reptile_lib", "tools", "benchmarks/bench.py", "notebooks", "pyproject.toml", "requirements.txt")


def git_commit(repo: str | os.PathLike | None = None) -> str:
    """The checkout's commit (``+dirty`` when its code has uncommitted changes), or 'unknown'.

    Only code counts (``CODE_PATHS``): results and executed notebooks being rewritten by the very
    run that records this commit must not mark it dirty.
    """
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("REPTILE_COMMIT", "unknown")


def device_name(device: Any = "cpu") -> str:
    """A readable device description, e.g. 'NVIDIA H100 80GB HBM3' or
    'cpu (2 threads, x86_64, Intel(R) Xeon(R) Platinum 8480C)'."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    n = torch.get_num_threads()
    model = cpu_model()
    return f"cpu ({n} thread{'s' if n != 1 else ''}, {platform.machine()}{', ' + model if model else ''})"


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), or '' where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def provenance(device: Any, seeds: Sequence[int], wall_time_s: float, finished: bool, **extra) -> dict:
    import torch

    return {"commit": git_commit(), "device": device_name(device), "torch": torch.__version__,
            "seeds": list(seeds), "wall_time_s": round(float(wall_time_s), 2), "finished": bool(finished),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), **extra}


def summarize(per_seed: dict[int, Sequence[float]]) -> dict:
    """A metric from per-task values of each seed: pooled mean, 95% interval over all tasks, per seed."""
    def stats(values: Sequence[float]) -> tuple[float, float, int]:
        n = len(values)
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else float("nan")
        return mean, 1.96 * math.sqrt(var / n), n

    rows = []
    for seed, values in per_seed.items():
        m, c, n = stats([float(v) for v in values])
        rows.append({"seed": int(seed), "mean": m, "ci95": c, "n_tasks": n})
    m, c, n = stats([float(v) for vals in per_seed.values() for v in vals])
    out = {"mean": m, "ci95": c, "n_tasks": n, "per_seed": rows}
    if len(rows) > 1:
        means = [r["mean"] for r in rows]
        mu = sum(means) / len(means)
        out["seed_sd"] = math.sqrt(sum((x - mu) ** 2 for x in means) / (len(means) - 1))
    return out


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def results_document(experiment: str, profile: str, config: Any, metrics: dict, provenance: dict,
                     extra: dict | None = None) -> dict:
    """One results document (the schema of the results files), validated."""
    if profile not in ("smoke", "paper"):
        raise ValueError(f"profile must be 'smoke' or 'paper', got {profile!r}")
    missing = [k for k in PROVENANCE_KEYS if k not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {missing}")
    for name, m in metrics.items():
        if not {"mean", "ci95", "n_tasks"} <= set(m):
            raise ValueError(f"metric {name!r} needs mean, ci95 and n_tasks, has {sorted(m)}")
    return {"experiment": experiment, "profile": profile, "config": config_dict(config),
            "config_hash": config_hash(config), "provenance": provenance, "metrics": metrics,
            "extra": extra or {}}


def write_results(path: str | os.PathLike, experiment: str, profile: str, config: Any, metrics: dict,
                  provenance: dict, extra: dict | None = None) -> Path:
    """Validate and atomically write one results file."""
    return write_document(path, results_document(experiment, profile, config, metrics, provenance, extra))


def write_document(path: str | os.PathLike, doc: dict) -> Path:
    """Atomically write a document made by :func:`results_document`."""
    return atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=False, default=_json_default) + "\n")


def experiment_main(name: str, get_config, run_experiment, doc: str, argv=None) -> None:
    """``python -m reptile_lib.<name> [--profile paper|smoke] [--threads N]`` for a one-config CPU experiment:
    recompute it and write ``results/<name>.json`` (or ``results/smoke/<name>.json``)."""
    import argparse

    import torch

    from .book import results_path

    parser = argparse.ArgumentParser(prog=f"python -m reptile_lib.{name}", description=doc)
    parser.add_argument("--profile", choices=("paper", "smoke"), default="paper")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest here)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_experiment(get_config(args.profile), args.profile, out=results_path(name, args.profile))


def _json_default(o: Any):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"cannot store {type(o).__name__} in a results file")


def load_results(path: str | os.PathLike, config: Any | None = None, profile: str | None = None) -> dict:
    """Read a results file; refuse it if its config hash (or profile) differs from what is asked."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultsMismatchError(f"{path} is not valid JSON ({e}); delete it and re-run") from e
    missing = [k for k in SCHEMA_KEYS if k not in doc]
    if missing:
        raise ResultsMismatchError(f"{path} is not a results file (missing {missing})")
    if config is not None and doc["config_hash"] != config_hash(config):
        raise ResultsMismatchError(
            f"{path} was produced by another config (hash {doc['config_hash']}, expected "
            f"{config_hash(config)}); re-run the experiment or pass the config it was made with")
    if profile is not None and doc["profile"] != profile:
        raise ResultsMismatchError(f"{path} holds a {doc['profile']!r} run, expected {profile!r}")
    return doc


def find_results(folder: str | os.PathLike, config: Any, profile: str | None = None) -> dict | None:
    """The results file in ``folder`` matching ``config`` (by hash), or None."""
    for p in sorted(Path(folder).glob("*.json")):
        try:
            return load_results(p, config, profile)
        except ResultsMismatchError:
            continue
    return None


def iter_results(folder: str | os.PathLike) -> Iterable[tuple[Path, dict]]:
    for p in sorted(Path(folder).glob("*.json")):
        try:
            yield p, load_results(p)
        except ResultsMismatchError:
            continue
