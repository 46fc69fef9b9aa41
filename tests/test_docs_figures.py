"""The documentation tells the truth: its byte-map figures, its examples and its quoted mypy output.

- ``docs/_ext/bytemap_svg.py`` draws which byte of an image holds which element. Its offsets come
  from ``ImageSpec`` strides and ``GpuImage.crop()``; here NumPy, writing through a view of a real
  host image, says independently where each element and each padding byte is.
- The ``pycon`` examples of ``docs/concepts.md`` run as doctests.
- ``docs/typed-pipelines.md`` quotes mypy's messages on ``docs/snippets/typed_pipeline.py``
  verbatim.
"""

from __future__ import annotations

import ctypes
import doctest
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, NamedTuple

import numpy as np
import pytest

from file_modules import load_file
from gpuimage import DTypeName, GpuImage

mypy_api = pytest.importorskip("mypy.api")  # the typed-pipelines page quotes mypy's output

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SENTINEL = 0xEE  # written over the whole buffer first: bytes that keep it belong to no element


def _bytemap_module() -> ModuleType:
    """docs/_ext/bytemap_svg.py, imported from its file (docs/_ext is not a package)."""
    return load_file("gpuimage_docs_bytemap_svg", DOCS / "_ext" / "bytemap_svg.py")


bytemap_svg = _bytemap_module()


class Figure(NamedTuple):
    """The options of a ``bytemap`` directive."""

    height: int
    width: int
    channels: int
    dtype: DTypeName
    layout: Literal["HWC", "CHW"]
    row_alignment: int
    crop: tuple[int, int, int, int] | None

    def build(self) -> Any:  # a bytemap_svg.ByteMap (the module is loaded from its file)
        return bytemap_svg.build_byte_map(**self._asdict())


# The two figures of concepts.md, then other dtypes, paddings and crops.
FIGURES = [
    Figure(3, 4, 3, "uint8", "HWC", 16, (1, 1, 2, 2)),
    Figure(2, 3, 3, "uint16", "CHW", 8, (1, 0, 2, 2)),
    Figure(5, 3, 4, "float32", "HWC", 64, (2, 1, 1, 4)),
    Figure(4, 5, 2, "int16", "CHW", 32, (0, 3, 5, 1)),
    Figure(2, 2, 1, "uint8", "HWC", 1, None),
]


def _element_offsets_by_numpy(image: GpuImage, base: int) -> dict[int, tuple[int, int, int]]:
    """Write each element's index through a NumPy view of ``image``, then read the raw buffer back:
    the byte offset (from ``base``) at which each (y, x, channel) landed."""
    height, width, channels = image.height, image.width, image.channels
    view = image.as_numpy()
    hwc = view if image.layout == "HWC" else view.transpose(1, 2, 0)
    hwc[...] = np.arange(1, height * width * channels + 1).reshape(height, width, channels)
    itemsize = image.spec.itemsize
    found: dict[int, tuple[int, int, int]] = {}
    for y in range(height):
        for x in range(width):
            for c in range(channels):
                target = int(hwc[y, x, c])
                # NumPy's own stride arithmetic: where the element sits in the process's memory.
                address = hwc[y : y + 1, x : x + 1, c : c + 1].__array_interface__["data"][0]
                raw = ctypes.string_at(address, itemsize)
                assert int(np.frombuffer(raw, dtype=image.dtype)[0]) == target
                found[address - base] = (y, x, c)
    return found


@pytest.mark.parametrize(
    "figure",
    FIGURES,
    ids=lambda figure: f"{figure.height}x{figure.width}x{figure.channels}-{figure.dtype}-{figure.layout}",
)
def test_byte_map_matches_numpy(
    figure: Figure,
) -> None:
    height, width, channels, dtype, layout, row_alignment, crop = figure
    byte_map = figure.build()
    image = GpuImage.empty(
        height, width, channels, dtype, layout=layout, device="cpu", row_alignment=row_alignment
    )
    assert image.spec == byte_map.spec
    ctypes.memset(image.ptr, SENTINEL, image.nbytes)
    by_numpy = _element_offsets_by_numpy(image, image.ptr)
    drawn = {element.offset: (element.y, element.x, element.channel) for element in byte_map.elements}
    assert drawn == by_numpy

    raw = ctypes.string_at(image.ptr, image.nbytes)
    untouched = {offset for offset, value in enumerate(raw) if value == SENTINEL}
    assert set(byte_map.padding) == untouched  # element values 1..n never contain 0xEE bytes here
    assert len(byte_map.padding) == image.nbytes - height * width * channels * image.spec.itemsize

    if crop is None:
        assert byte_map.roi_offset is None
        assert not byte_map.roi_elements
        return
    x, y, roi_width, roi_height = crop
    roi = image.crop(x, y, roi_width, roi_height)
    assert byte_map.roi_offset == roi.ptr - image.ptr
    in_roi = {
        offset
        for offset, (row, column, _) in by_numpy.items()
        if x <= column < x + roi_width and y <= row < y + roi_height
    }
    assert set(byte_map.roi_elements) == in_roi
    assert set(_element_offsets_by_numpy(roi, image.ptr)) == in_roi  # what the crop's own view sees


@pytest.mark.parametrize("figure", FIGURES[:2], ids=["hwc", "chw"])
def test_svg_draws_every_element_once(
    figure: Figure,
) -> None:
    height, width, channels = figure.height, figure.width, figure.channels
    byte_map = figure.build()
    svg = ElementTree.fromstring(bytemap_svg.render_svg(byte_map, title="a title"))
    namespace = "{http://www.w3.org/2000/svg}"
    colors = set(bytemap_svg.CHANNEL_COLORS)
    element_boxes = [rect for rect in svg.iter(f"{namespace}rect") if rect.get("fill") in colors]
    legend_swatches = channels
    assert len(element_boxes) == height * width * channels + legend_swatches
    outlined = [rect for rect in element_boxes if rect.get("stroke-width") == "2.4"]
    assert len(outlined) == len(byte_map.roi_elements)
    texts = [text.text or "" for text in svg.iter(f"{namespace}text")]
    assert f"crop ptr = ptr + {byte_map.roi_offset}" in texts


class _PublicExceptionNames(doctest.OutputChecker):
    """Compare exception lines by the public name: ``BoundsError``, not ``gpuimage._errors.BoundsError``."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        return super().check_output(
            want, re.sub(r"^gpuimage\._\w+\.", "", got, flags=re.MULTILINE), optionflags
        )


def test_concepts_examples_run() -> None:
    text = (DOCS / "concepts.md").read_text()
    blocks = re.findall(r"^```pycon\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 4
    runner = doctest.DocTestRunner(checker=_PublicExceptionNames(), optionflags=doctest.ELLIPSIS)
    parser = doctest.DocTestParser()
    names: dict[str, object] = {}  # one session for the page: later blocks use earlier imports
    for number, block in enumerate(blocks):
        test = parser.get_doctest(block, names, f"concepts.md[{number}]", str(DOCS / "concepts.md"), 0)
        runner.run(test, clear_globs=False)
        names.update(test.globs)  # a DocTest runs in a copy of the names it was given
    results = runner.summarize(verbose=False)
    assert results.failed == 0
    assert results.attempted > 10


def test_typed_pipelines_page_quotes_mypy() -> None:
    snippet = DOCS / "snippets" / "typed_pipeline.py"
    stdout, stderr, _ = mypy_api.run(
        ["--strict", "--no-incremental", "--config-file", str(ROOT / "pyproject.toml"), str(snippet)]
    )
    lines = [re.sub(r"^.*/(typed_pipeline\.py:)", r"\1", line) for line in stdout.splitlines()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 2, stdout + stderr
    page = (DOCS / "typed-pipelines.md").read_text()
    for line in lines:
        assert line in page, f"docs/typed-pipelines.md does not quote mypy's line:\n{line}"
