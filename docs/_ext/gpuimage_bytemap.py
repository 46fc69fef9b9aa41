"""Sphinx extension: the ``bytemap`` directive draws an image's memory from real gpuimage values.

In a MyST page::

    ```{bytemap} HWC uint8, rows padded to 16 bytes
    :height: 3
    :width: 4
    :channels: 3
    :row-alignment: 16
    :crop: 1, 1, 2, 2

    The caption (MyST markdown).
    ```

The SVG is computed at build time by ``bytemap_svg`` (``ImageSpec.packed()`` and
``GpuImage.crop()``) and written to ``docs/_generated/`` (git-ignored), so the pictures cannot
drift from what the library does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

from bytemap_svg import build_byte_map, render_svg
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

GENERATED = "_generated"


def _crop(text: str) -> tuple[int, int, int, int]:
    values = tuple(int(part) for part in text.replace(",", " ").split())
    if len(values) != 4:
        raise ValueError(f"expected 'x, y, width, height', got {text!r}")
    return (values[0], values[1], values[2], values[3])


def _layout(text: str) -> str:
    layout = text.strip().upper()
    if layout not in ("HWC", "CHW"):
        raise ValueError(f"expected HWC or CHW, got {text!r}")
    return layout


class ByteMapDirective(SphinxDirective):
    """``bytemap``: a figure of ``ImageSpec.packed(...)`` in memory, byte by byte."""

    required_arguments = 1  # the title drawn in the picture (and its alt text)
    final_argument_whitespace = True
    has_content = True  # the caption
    option_spec: ClassVar[dict[str, Any]] = {
        "height": directives.positive_int,
        "width": directives.positive_int,
        "channels": directives.positive_int,
        "dtype": directives.unchanged_required,
        "layout": _layout,
        "row-alignment": directives.positive_int,
        "crop": _crop,
    }

    def run(self) -> list[nodes.Node]:
        title = self.arguments[0]
        try:
            byte_map = build_byte_map(
                height=self.options["height"],
                width=self.options["width"],
                channels=self.options.get("channels", 1),
                dtype=self.options.get("dtype", "uint8"),
                layout=self.options.get("layout", "HWC"),
                row_alignment=self.options.get("row-alignment", 1),
                crop=self.options.get("crop"),
            )
        except (KeyError, ValueError) as exc:  # gpuimage's errors are ValueErrors (or subclasses)
            raise self.error(f"bytemap: {exc}") from exc
        svg = render_svg(byte_map, title=title)
        name = f"bytemap-{hashlib.sha1(svg.encode()).hexdigest()[:12]}.svg"
        target = Path(self.env.srcdir) / GENERATED / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != svg:
            target.write_text(svg)

        figure = nodes.figure(classes=["bytemap"])
        figure += nodes.image(uri=f"/{GENERATED}/{name}", alt=title)
        if self.content:
            body = nodes.Element()
            self.state.nested_parse(self.content, self.content_offset, body)
            paragraph = body.next_node(nodes.paragraph)
            if paragraph is None:
                raise self.error("bytemap: the caption must be a paragraph")
            caption = nodes.caption(paragraph.rawsource, "", *paragraph.children)
            figure += caption
        return [figure]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("bytemap", ByteMapDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
