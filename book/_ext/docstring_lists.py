"""Let ``reptile_lib``'s docstrings be written as plain text and still build with warnings as errors.

The library's docstrings use Markdown habits that reStructuredText rejects: a bullet list right
after a line of text, a list ended without a blank line, and ``(*shape, n)``, which starts
emphasis. Before autodoc renders a docstring this hook adds the blank lines around such lists
and escapes a ``*`` that opens an argument list, so the API reference builds under ``-W``
without asking the library to write reStructuredText.
"""
from __future__ import annotations

import re

from sphinx.application import Sphinx

BULLET = re.compile(r"^(\s*)[-*] \S")
STAR_ARG = re.compile(r"(?<=[(\[,])\s?\*(?=\w)")


def fix_lines(lines: list[str]) -> list[str]:
    out: list[str] = []
    list_indent: int | None = None  # indentation of the bullets of the list we are in
    for line in lines:
        line = STAR_ARG.sub(lambda m: m.group(0).replace("*", r"\*"), line)
        bullet = BULLET.match(line)
        indent = len(line) - len(line.lstrip())
        if bullet:
            if list_indent is None and out and out[-1].strip():
                out.append("")
            list_indent = indent
        elif list_indent is not None:
            if not line.strip():
                list_indent = None
            elif indent <= list_indent:  # text back at the list's level: the list has ended
                out.append("")
                list_indent = None
        out.append(line)
    return out


def _process(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = fix_lines(lines)


def setup(app: Sphinx) -> dict:
    app.connect("autodoc-process-docstring", _process)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
