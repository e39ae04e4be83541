"""Packaging: requirements.txt and environment.yml ask for the same versions; the console script exists."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    pins = {}
    for line in lines:
        m = re.match(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_requirements_and_environment_agree():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env_lines = (ROOT / "environment.yml").read_text().splitlines()
    pip_section = env_lines[next(i for i, l in enumerate(env_lines) if l.strip() == "- pip:") + 1:]
    env = _pins(pip_section)
    assert req and req == env
    assert req["torch"] == "2.13.0" and req["jupyter-book"].startswith("1.")
    assert any(re.match(r"\s*- python=3\.11", l) for l in env_lines)


def test_every_requirement_is_pinned_exactly():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert "==" in line, f"unpinned requirement: {line}"


def test_console_script_and_package():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "reptile_lib"
    assert meta["project"]["scripts"]["reptile"] == "reptile_lib.cli:main"


def test_the_native_kernels_source_ships_with_the_package():
    """``engine/native.py`` compiles ``native.cpp`` on first use: an installed package must carry it."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "native.cpp" in meta["tool"]["setuptools"]["package-data"]["reptile_lib.engine"]
    assert (ROOT / "reptile_lib" / "engine" / "native.cpp").exists()


def test_every_submodule_is_reachable_lazily():
    """``reptile_lib.<name>`` works for every module and package of the library (lazy imports)."""
    import pkgutil

    import reptile_lib

    names = {m.name for m in pkgutil.iter_modules(reptile_lib.__path__)}
    assert names == set(reptile_lib._SUBMODULES), "update _SUBMODULES in reptile_lib/__init__.py"
