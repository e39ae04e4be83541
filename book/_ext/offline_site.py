"""Make the built site work offline, from ``file://``, with nothing fetched from a network.

- MathJax 3.2.2 comes from the pinned pip package ``django-static-mathjax`` (its
  ``mathjax/static/mathjax/es5/`` folder): this extension copies that folder into
  ``_static/mathjax/`` of the HTML output, and ``_config.yml`` sets ``mathjax_path`` to
  ``mathjax/tex-mml-chtml.js``, which Sphinx resolves relative to ``_static/``. MathJax loads
  its fonts and any extension relative to that script, so everything stays local.
- Jupyter Book always loads sphinx-thebe, whose page scripts name thebe's CDN URL (loaded only
  when live code is switched on) and, in this version, are added twice, which throws a
  JavaScript error on every page. Live code is off in ``_config.yml`` (launch buttons open
  Binder or Colab instead), so these scripts are dropped from every page.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

ENTRY = "tex-mml-chtml.js"


def mathjax_source() -> Path:
    """The ``es5`` folder of the installed ``django-static-mathjax`` package."""
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError("MathJax is served locally from the pip package django-static-mathjax, which is "
                             "not installed: run `pip install -r requirements.txt` (or `make book`).")
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    if not (es5 / ENTRY).is_file():
        raise ExtensionError(f"{es5 / ENTRY} is missing: reinstall django-static-mathjax==3.2.2.1")
    return es5


def _check(app: Sphinx) -> None:
    mathjax_source()
    path = app.config.mathjax_path
    if "://" in path or path.startswith("//") or path != f"mathjax/{ENTRY}":
        raise ExtensionError(f"mathjax_path must be 'mathjax/{ENTRY}' (served locally), got {path!r}")


def _copy(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    shutil.copytree(mathjax_source(), target, dirs_exist_ok=True)


def _is_thebe(script) -> bool:
    body = getattr(script, "attributes", {}).get("body", "") or ""
    return "THEBE_JS_URL" in body or str(getattr(script, "filename", script) or "").endswith("sphinx-thebe.js")


def _drop_thebe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if app.config.html_theme_options.get("launch_buttons", {}).get("thebe"):
        return
    if "script_files" in context:
        context["script_files"] = [s for s in context["script_files"] if not _is_thebe(s)]


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", _check)
    app.connect("html-page-context", _drop_thebe)
    app.connect("build-finished", _copy)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
