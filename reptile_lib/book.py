"""Small helpers the book's notebooks share: where results live and how their origin is shown.

Every figure and table in the book says where it comes from; ``provenance_line`` is that
sentence, built from a results file's ``provenance``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .paths import REPO_ROOT
from .results import ResultsMismatchError, load_results


def results_dir() -> Path:
    """``results/`` of the repository (independent of the notebook's working directory)."""
    return REPO_ROOT / "results"


def results_path(name: str, profile: str = "paper") -> Path:
    """``results/<name>.json`` for paper-scale runs, ``results/smoke/<name>.json`` for smoke runs."""
    return results_dir() / (f"{name}.json" if profile == "paper" else f"smoke/{name}.json")


def load_if_matching(name: str, config: Any, profile: str = "paper") -> dict | None:
    """The committed results of ``config``, or None if absent or made by another config."""
    path = results_path(name, profile)
    if not path.exists():
        return None
    try:
        return load_results(path, config, profile)
    except ResultsMismatchError:
        return None


def provenance_line(doc: dict) -> str:
    """'paper-scale run on NVIDIA H100 ..., commit 1a2b3c4, 2026-11-26, 12.3 min, seeds 0, 1, 2'."""
    p = doc["provenance"]
    kind = "paper-scale run" if doc["profile"] == "paper" else "smoke run (small, CPU-sized)"
    when = str(p.get("date", ""))[:10]
    minutes = p["wall_time_s"] / 60
    status = "" if p["finished"] else " — NOT FINISHED (partial run)"
    seeds = ", ".join(str(s) for s in p["seeds"])
    return (f"{kind} on {p['device']}, commit {str(p['commit'])[:7]}, {when}, "
            f"{minutes:.1f} min, seeds {seeds}{status}")
