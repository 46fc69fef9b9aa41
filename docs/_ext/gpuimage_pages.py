"""Sphinx extension: how the pages render what they show from the source tree.

- ``module-docstring``: a Python file's module docstring rendered as the reStructuredText it is
  written in (the examples page shows ``examples/pipeline.py``'s; a ``literalinclude`` showed its
  raw text as code). The path is relative to the page, as ``literalinclude``'s is.
- Inline code in table cells may break after a ``.`` before a name, a ``,``, ``/``, ``(`` or ``::``:
  a ``<wbr>`` goes there, so a cell of ``GpuImage.from_gpumat(mat).as_cupy()`` wraps at a dot
  instead of pushing the table past the page's edge. What still does not fit scrolls, with a
  scrollbar drawn (``_static/gpuimage.css``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

# After a "." before a name (not in 1.0 or ...), a "::" (a pytest node id), or one of , / ( before
# anything but a space or a closing bracket.
_BREAK_AFTER = re.compile(r"(?<=\.)(?=[A-Za-z_])|(?<=::)(?=\w)|(?<=[,/(])(?=[^\s)\]])")


def docstring_nodes(path: Path) -> tuple[list[nodes.Node], list[nodes.system_message]]:
    """The module docstring of the Python file at ``path``, parsed as reStructuredText, and the
    parser's complaints about it (each a warning for the build).

    Raises:
        ValueError: the file has no module docstring.
    """
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if docstring is None:
        raise ValueError(f"{path} has no module docstring")
    # A document of its own: the docstring is reStructuredText whatever the page's parser (MyST).
    # Its nodes join the page before Sphinx's transforms run, so none are applied here.
    parser = Parser()
    settings = get_default_settings(parser)
    settings.report_level = settings.halt_level = 5  # nothing printed, nothing raised: collected
    document = new_document(str(path), settings)
    complaints: list[nodes.system_message] = []
    document.reporter.attach_observer(complaints.append)
    parser.parse(docstring, document)
    children = [child for child in document.children if not isinstance(child, nodes.system_message)]
    return children, [message for message in complaints if message["level"] >= 2]


class ModuleDocstring(SphinxDirective):
    """``module-docstring PATH``: the docstring of the module at PATH (relative to the page)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        relative, path = self.env.relfn2path(self.arguments[0])
        self.env.note_dependency(relative)  # the page is rebuilt when the file changes
        try:
            children, complaints = docstring_nodes(Path(path))
        except (OSError, SyntaxError, ValueError) as exc:
            return [self.state.document.reporter.warning(f"module-docstring: {exc}", line=self.lineno)]
        for message in complaints:
            logger.warning(
                "module-docstring: %s, docstring line %s: %s",
                relative,
                message.get("line"),
                message.astext(),
                location=(self.env.docname, self.lineno),
            )
        container = nodes.container(classes=["module-docstring"])
        container.extend(children)
        return [container]


def break_opportunities(text: str) -> list[str]:
    """``text`` cut where a line may break inside inline code (``_BREAK_AFTER``)."""
    return _BREAK_AFTER.split(text)


def _wrap_table_code(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Put a ``<wbr>`` at each break opportunity of the inline code in table cells (HTML only)."""
    if app.builder.format != "html":
        return
    for table in doctree.findall(nodes.table):
        for literal in list(table.findall(nodes.literal)):
            for text in list(literal.findall(nodes.Text)):
                pieces, parent = break_opportunities(str(text)), text.parent
                if len(pieces) < 2 or parent is None:
                    continue
                replacement: list[nodes.Node] = [nodes.Text(pieces[0])]
                for piece in pieces[1:]:
                    replacement += [nodes.raw("", "<wbr>", format="html"), nodes.Text(piece)]
                parent.replace(text, replacement)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("module-docstring", ModuleDocstring)
    app.connect("doctree-resolved", _wrap_table_code)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
