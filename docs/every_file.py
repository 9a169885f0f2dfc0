"""
Rewrite the "Every file" list of docs/explanation/layout.rst from the package itself:
each module and the first sentence of its docstring. Run from the repository root:

    python docs/every_file.py

tests/unit/test_docs.py fails when the list misses a module (or names one gone).
"""

from __future__ import annotations

import ast
import os
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "explanation", "layout.rst")
HEADING = "Every file\n==========\n"
INTRO = (
    "Each module and the first sentence of its docstring (``tests/unit/test_docs.py`` checks\n"
    "that every module of the package is listed here; ``python docs/every_file.py`` rewrites\n"
    "this list)::\n\n"
)
PLUGIN = "twisted/plugins/ocppproxy_plugin.py"


def first_sentence(doc: str) -> str:
    """The docstring's first sentence, epytext markup dropped."""
    text = " ".join(doc.split())
    end = text.find(". ")
    sentence = text if end < 0 else text[:end]
    return sentence.replace("L{", "").replace("C{", "").replace("}", "").rstrip(".")


def rows() -> list[str]:
    """The list's lines: each module's path, then its sentence wrapped at 100 columns."""
    lines = []
    modules = []
    for folder, folders, files in os.walk(os.path.join(ROOT, "ocppproxy")):
        folders.sort()
        modules += [os.path.join(folder, name) for name in files if name.endswith(".py")]
    for path in sorted(modules):
        with open(path, encoding="utf-8") as source:
            doc = ast.get_docstring(ast.parse(source.read())) or ""
        wrapped = textwrap.wrap(first_sentence(doc), 60) or [""]
        lines.append(f"    {os.path.relpath(path, ROOT):<40}{wrapped[0]}")
        lines += [" " * 44 + more for more in wrapped[1:]]
    lines.append(f"    {PLUGIN:<40}the twistd plugin: only a pointer to ocppproxy.daemon.tap")
    return lines


def main() -> None:
    with open(PAGE, encoding="utf-8") as stream:
        page = stream.read()
    page = page[: page.index(HEADING)] + HEADING + "\n" + INTRO + "\n".join(rows()) + "\n"
    with open(PAGE, "w", encoding="utf-8") as stream:
        stream.write(page)


if __name__ == "__main__":
    main()
