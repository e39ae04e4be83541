"""Build the site from the current tree and open every page in headless Chromium (offline, file://).

The site is built once per test session into a temporary folder (from the committed executed
notebooks: nothing is re-executed here) and each page of ``_toc.yml`` is visited. How requests are
watched, and why that is robust, is explained in ``tools/browser_check.py``. Screenshots of the
introduction and of an experiment page are saved under ``_build/screenshots/``.

Chromium is the Debian package ``chromium``; ``make test`` installs it when missing and sets
``REPTILE_REQUIRE_BROWSER=1``, so there a missing browser fails the test instead of skipping it.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


build_book = _tool("build_book")
browser_check = _tool("browser_check")
PAGES = build_book.toc_files(ROOT)
EXPERIMENT_PAGE = "book/executed/04_omniglot"


@pytest.fixture(scope="session")
def chromium() -> str:
    binary = browser_check.find_chromium()
    if binary is None:
        message = "Chromium not found: install the Debian package (apt-get install -y chromium); `make test` does"
        if os.environ.get("REPTILE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"the book does not build (warnings are errors):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def reports(site, chromium) -> dict:
    shots = {page: SCREENSHOTS / f"{page.rsplit('/', 1)[-1]}.png" for page in PAGES}
    return {r.page: r for r in browser_check.check_site(site, PAGES, chromium, shots)}


def test_the_site_loads_nothing_from_a_network(site):
    """Static check of every built page and stylesheet (complements the browser's request log)."""
    assert browser_check.external_references(site) == []
    assert (site / "_static" / "mathjax" / "tex-mml-chtml.js").exists()


def test_index_points_at_the_introduction(site):
    assert PAGES[0] in (site / "index.html").read_text()


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_offline_with_math_and_images(reports, page):
    report = reports[page]
    assert report.requests, f"{page}: the browser recorded no request at all (the check itself is broken)"
    assert report.problems() == [], f"{page}: " + "; ".join(report.problems())


def test_math_is_typeset_where_there_is_math(reports):
    with_math = [p for p, r in reports.items() if r.state.get("math")]
    assert PAGES[0] in with_math, "the introduction has formulas"
    assert len(with_math) >= 4
    for page in with_math:
        state = reports[page].state
        assert state["mathjax_version"] == "3.2.2" and state["mjx"] >= state["math"] > 0


def test_figures_are_on_the_experiment_pages(reports):
    assert reports[EXPERIMENT_PAGE].state["images"], "the Omniglot chapter shows figures"
    assert all(i["width"] > 0 for r in reports.values() for i in r.state.get("images", []))


def test_screenshots_are_saved(reports):
    for name in [f"{page.rsplit('/', 1)[-1]}.png" for page in PAGES]:
        png = SCREENSHOTS / name
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_check_catches_external_requests_and_broken_resources(tmp_path, chromium):
    """The checker itself: a page that loads from a CDN, misses an image and has untypeset math fails."""
    (tmp_path / "bad.html").write_text(
        '<html><head><title>bad</title><script src="https://cdn.example.com/x.js"></script></head><body>'
        '<h1>bad</h1><img src="https://example.com/x.png"><img src="missing.png">'
        '<span class="math">\\(x\\)</span></body></html>')
    report = browser_check.check_site(tmp_path, ["bad"], chromium)[0]
    problems = "\n".join(report.problems())
    assert "external request https://cdn.example.com/x.js" in problems
    assert "ERR_NAME_NOT_RESOLVED" in problems  # and it could not have left: no host name resolves
    assert "failed load file://" in problems and "missing.png" in problems
    assert "not typeset by MathJax" in problems
    assert browser_check.external_references(tmp_path) == ["bad.html: https://cdn.example.com/x.js",
                                                           "bad.html: https://example.com/x.png"]


def test_the_check_catches_clipping_low_resolution_placeholders_and_markers(tmp_path, chromium):
    """The checker itself: a clipped code line, a wide 72-dpi image, a placeholder link and "(verify)" fail;
    a wide 150-dpi image and a code block that fits pass."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, dpi in (("low.png", 72), ("sharp.png", 150)):
        fig = plt.figure(figsize=(1200 / dpi, 100 / dpi))
        fig.savefig(tmp_path / name, dpi=dpi)
        plt.close(fig)
    (tmp_path / "bad.html").write_text(
        '<html><head><title>bad</title></head><body><main><h1>bad</h1>'
        '<pre style="width:300px;overflow:auto">' + "x = 1  # " + "a very long line " * 20 + '</pre>'
        '<pre style="width:300px;overflow:auto">short = 1</pre>'
        '<div style="width:400px"><img src="low.png" style="max-width:100%"></div>'
        '<div style="width:400px"><img src="sharp.png" style="max-width:100%"></div>'
        '<a href="https://github.com/reptile-book/reptile-book">repository</a>'
        '<p>95.0 ± 0.1 (verify), see issue 12</p></main></body></html>')
    report = browser_check.check_site(tmp_path, ["bad"], chromium)[0]
    problems = "\n".join(report.problems())
    assert len(report.clipped) == 1 and "a very long line" in report.clipped[0]
    assert len(report.low_resolution) == 1 and "low.png: 1200 px" in problems and "72 dpi" in problems
    assert "placeholder link https://github.com/reptile-book/reptile-book" in problems
    assert "(verify)" in problems and "issue 12" in problems
