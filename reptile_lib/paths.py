"""Where data lives: ``--data-root`` flag > ``$REPTILE_DATA`` > ``../shared/datasets`` beside the repository
> the user data folder that ``reptile data fetch`` writes to (``~/.cache/reptile-book/datasets``).

Nothing is downloaded unless a user runs ``reptile data fetch``.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "REPTILE_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]


def user_data_root() -> Path:
    """Where ``reptile data fetch`` puts data by default: ``$XDG_CACHE_HOME/reptile-book/datasets``."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "reptile-book" / "datasets"


def fetch_root(flag: str | os.PathLike | None = None) -> Path:
    """The root ``reptile data fetch`` writes to: ``--data-root`` > ``$REPTILE_DATA`` > :func:`user_data_root`."""
    if flag:
        return Path(flag).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return user_data_root()


class DataNotFoundError(FileNotFoundError):
    """A data set is not where we looked; the message lists the paths and the fetch command."""


def candidate_roots(flag: str | os.PathLike | None = None) -> list[Path]:
    """The data roots searched, in order."""
    if flag:
        return [Path(flag).expanduser()]
    if os.environ.get(ENV_VAR):
        return [Path(os.environ[ENV_VAR]).expanduser()]
    roots = [REPO_ROOT.parent / "shared" / "datasets", Path.cwd().parent / "shared" / "datasets", user_data_root()]
    return list(dict.fromkeys(p.resolve() for p in roots))


def find_dataset(name: str, required: tuple[str, ...], flag: str | os.PathLike | None = None,
                 fetch_name: str | None = None) -> Path:
    """The folder ``<root>/<name>`` of the first root holding every ``required`` entry (any of ``a|b``).

    Raises :class:`DataNotFoundError` naming every path searched and what to run.
    """
    searched = []
    for root in candidate_roots(flag):
        folder = root / name
        searched.append(folder)
        if all(any((folder / alt).exists() for alt in req.split("|")) for req in required):
            return folder
    fetch = (f"run `reptile data fetch {fetch_name}` (needs internet), or " if fetch_name else "")
    raise DataNotFoundError(
        f"{name} data not found; looked for {', '.join(required)} in: "
        + "; ".join(str(p) for p in searched)
        + f". To fix: {fetch}point ${ENV_VAR} or --data-root at a folder that holds {name}/.")
