"""Byte maps of gpuimage images: which byte of memory holds which pixel, channel or padding, as SVG.

Pure Python over real gpuimage values, no Sphinx: the layout comes from ``ImageSpec.packed()``,
the region of interest from ``GpuImage.crop()`` on a host image of that spec, and every element's
byte offset from the spec's strides (``row_pitch``, ``pixel_stride``, ``channel_stride``, all in
bytes). ``tests/test_docs_figures.py`` checks those offsets against NumPy's own stride arithmetic.
The Sphinx directive that puts these pictures in the documentation is ``gpuimage_bytemap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast
from xml.sax.saxutils import escape

from gpuimage import DTypeName, GpuImage, ImageSpec, Layout

__all__ = ["ByteMap", "Element", "build_byte_map", "render_svg"]

CHANNEL_NAMES = {1: "Y", 3: "RGB", 4: "RGBA"}
CHANNEL_COLORS = ("#f28b82", "#81c995", "#8ab4f8", "#fdd663", "#d7aefb", "#fcad70")
PADDING_COLOR = "#dadce0"
INK = "#202124"
MUTED = "#5f6368"


@dataclass(frozen=True, slots=True)
class Element:
    """One element of the image: its pixel, its channel, and the byte offset of its first byte."""

    y: int
    x: int
    channel: int
    offset: int


@dataclass(frozen=True, slots=True)
class ByteMap:
    """Every byte of an image's memory, from the first element to one past the last (``nbytes``).

    ``roi`` is ``(x, y, width, height)`` of a crop, ``roi_offset`` the crop's pointer minus the
    image's (bytes), and ``roi_elements`` the offsets of the elements the crop can see.
    """

    spec: ImageSpec
    elements: tuple[Element, ...]
    roi: tuple[int, int, int, int] | None
    roi_offset: int | None
    roi_elements: frozenset[int]

    @property
    def nbytes(self) -> int:
        """Bytes from the first element to one past the last (``ImageSpec.nbytes``)."""
        return self.spec.nbytes

    @property
    def padding(self) -> frozenset[int]:
        """Offsets of bytes inside ``nbytes`` that belong to no element (row and plane padding)."""
        used = {element.offset + index for element in self.elements for index in range(self.spec.itemsize)}
        return frozenset(set(range(self.nbytes)) - used)

    def channel_name(self, channel: int) -> str:
        """``R``/``G``/``B``/``A`` (or ``Y``) where the channel count says so, else ``c0``, ``c1``..."""
        names = CHANNEL_NAMES.get(self.spec.channels)
        return names[channel] if names is not None else f"c{channel}"


def _elements_of(spec: ImageSpec, base: int) -> tuple[Element, ...]:
    """Each element with its byte offset: ``y * row_pitch + x * pixel_stride + c * channel_stride``."""
    return tuple(
        sorted(
            (
                Element(y, x, c, base + y * spec.row_pitch + x * spec.pixel_stride + c * spec.channel_stride)
                for y in range(spec.height)
                for x in range(spec.width)
                for c in range(spec.channels)
            ),
            key=lambda element: element.offset,
        )
    )


def build_byte_map(
    *,
    height: int,
    width: int,
    channels: int,
    dtype: str = "uint8",
    layout: str = "HWC",
    row_alignment: int = 1,
    crop: tuple[int, int, int, int] | None = None,
) -> ByteMap:
    """The byte map of ``ImageSpec.packed(...)``, with the ROI of ``crop`` (x, y, width, height)."""
    spec = ImageSpec.packed(
        height=height,
        width=width,
        channels=channels,
        dtype=cast("DTypeName", dtype),  # a directive option: ImageSpec validates it
        layout=Layout(layout),
        device="cpu",
        row_alignment=row_alignment,
    )
    roi_offset: int | None = None
    roi_elements: frozenset[int] = frozenset()
    if crop is not None:
        # A real host image of this spec, so the ROI's pointer comes from GpuImage.crop() itself.
        image = GpuImage.empty(
            height,
            width,
            channels,
            spec.dtype,
            layout=spec.layout,
            device="cpu",
            row_alignment=row_alignment,
        )
        if image.spec != spec:
            raise ValueError(f"GpuImage.empty() made {image.spec}, expected {spec}")
        region = image.crop(*crop)
        roi_offset = region.ptr - image.ptr
        roi_elements = frozenset(element.offset for element in _elements_of(region.spec, roi_offset))
    return ByteMap(spec, _elements_of(spec, 0), crop, roi_offset, roi_elements)


@dataclass(frozen=True, slots=True)
class _Geometry:
    cell: int
    left: int = 118
    top: int = 74
    right: int = 18
    row_height: int = 30
    bracket: int = 18
    line_gap: int = 6
    plane_gap: int = 16

    @property
    def line_step(self) -> int:
        return self.row_height + self.bracket + self.line_gap


def render_svg(byte_map: ByteMap, *, title: str) -> str:
    """An SVG picture of ``byte_map``: one line per ``row_pitch`` bytes, padding hatched, ROI outlined."""
    spec = byte_map.spec
    pitch, itemsize, nbytes = spec.row_pitch, spec.itemsize, byte_map.nbytes
    # A crop's pointer is marked above its line: leave room for that label between lines.
    line_gap = 16 if byte_map.roi_offset is not None else 6
    geometry = _Geometry(cell=max(20, min(40, 600 // pitch)), line_gap=line_gap)
    cell = geometry.cell
    lines = -(-nbytes // pitch)
    planar = spec.layout is Layout.CHW and spec.channels > 1
    element_at = {element.offset: element for element in byte_map.elements}
    first_in_line = [
        next((e for e in byte_map.elements if e.offset >= line * pitch), None) for line in range(lines)
    ]

    parts: list[str] = []
    line_tops: list[int] = []
    y_cursor = geometry.top
    previous_plane: int | None = None
    for line in range(lines):
        first = first_in_line[line]
        plane = first.channel if (planar and first is not None) else None
        if planar and previous_plane is not None and plane != previous_plane:
            y_cursor += geometry.plane_gap
        previous_plane = plane
        line_tops.append(y_cursor)
        y_cursor += geometry.line_step
    # Wide enough for the grid and for the title (about 7.6 px per character at 13 px, bold).
    width = max(geometry.left + pitch * cell + geometry.right, 24 + int(7.6 * len(title)))
    # The crop's pointer label sits just above its line: lift the ruler clear of it.
    ruler_y = geometry.top - (24 if byte_map.roi_offset is not None else 10)

    def x_of(column: int) -> int:
        return geometry.left + column * cell

    # Ruler: byte offsets within a row.
    step = 1 if pitch <= 24 else 4 if pitch <= 96 else 16
    parts.append(f'<text x="{geometry.left - 8}" y="{ruler_y}" text-anchor="end" class="muted">byte</text>')
    for byte in range(0, pitch, step):
        parts.append(
            f'<text x="{x_of(byte) + cell / 2}" y="{ruler_y}" text-anchor="middle" '
            f'class="muted">{byte}</text>'
        )

    for line in range(lines):
        top = line_tops[line]
        start = line * pitch
        first = first_in_line[line]
        label = "" if first is None else f"y={first.y}"
        if planar and first is not None:
            label = f"{byte_map.channel_name(first.channel)} plane, {label}"
        parts.append(f'<text x="{geometry.left - 8}" y="{top + 13}" text-anchor="end">{escape(label)}</text>')
        parts.append(
            f'<text x="{geometry.left - 8}" y="{top + 26}" text-anchor="end" class="muted">+{start}</text>'
        )
        byte = start
        end = start + pitch
        while byte < end:
            element = element_at.get(byte)
            if element is not None:
                parts.append(_element_svg(byte_map, element, x_of(byte - start), top, geometry))
                byte += itemsize
            elif byte < nbytes:
                parts.append(
                    f'<rect x="{x_of(byte - start)}" y="{top}" width="{cell}" height="{geometry.row_height}" '
                    f'fill="url(#hatch)" stroke="#9aa0a6" stroke-width="0.6"/>'
                )
                byte += 1
            else:
                parts.append(
                    f'<rect x="{x_of(byte - start)}" y="{top}" width="{cell}" height="{geometry.row_height}" '
                    f'fill="none" stroke="#bdc1c6" stroke-width="0.6" stroke-dasharray="3 2"/>'
                )
                byte += 1
        parts.extend(_pixel_brackets(byte_map, start, end, top, geometry))

    if byte_map.roi_offset is not None:
        parts.extend(_roi_marker(byte_map, line_tops, geometry))

    legend_top = y_cursor + 8
    legend, legend_height = _legend(byte_map, geometry, width, legend_top)
    parts.extend(legend)
    summary_top = legend_top + legend_height + 6
    for index, text in enumerate(_summary(byte_map)):
        parts.append(
            f'<text x="{geometry.left}" y="{summary_top + 14 * index}" class="muted">{escape(text)}</text>'
        )
    height = summary_top + 28
    header = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        "<style>text{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:11px;"
        f"fill:{INK}}}.muted{{fill:{MUTED};font-size:10px}}.title{{font-size:13px;font-weight:600}}</style>"
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{PADDING_COLOR}"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#9aa0a6" stroke-width="1.5"/></pattern></defs>'
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>'
        f'<text x="12" y="22" class="title">{escape(title)}</text>'
    )
    return header + "".join(parts) + "</svg>\n"


def _element_svg(byte_map: ByteMap, element: Element, left: int, top: int, geometry: _Geometry) -> str:
    """One element: a box as wide as its bytes, its channel's colour, dotted lines between its bytes."""
    itemsize, cell = byte_map.spec.itemsize, geometry.cell
    in_roi = element.offset in byte_map.roi_elements
    faded = byte_map.roi_offset is not None and not in_roi
    color = CHANNEL_COLORS[element.channel % len(CHANNEL_COLORS)]
    stroke = f'stroke="{INK}" stroke-width="2.4"' if in_roi else 'stroke="#ffffff" stroke-width="1"'
    opacity = ' fill-opacity="0.45"' if faded else ""
    width = itemsize * cell
    svg = [
        f'<rect x="{left}" y="{top}" width="{width}" height="{geometry.row_height}" '
        f'fill="{color}"{opacity} {stroke}/>'
    ]
    for index in range(1, itemsize):  # ticks at the byte boundaries inside the element
        x = left + index * cell
        bottom = top + geometry.row_height
        svg.append(
            f'<path d="M{x} {top} v5 M{x} {bottom} v-5" stroke="{INK}" stroke-opacity="0.5" '
            'stroke-width="1"/>'
        )
    name = byte_map.channel_name(element.channel)
    svg.append(f'<text x="{left + width / 2}" y="{top + 19}" text-anchor="middle">{escape(name)}</text>')
    return "".join(svg)


def _pixel_brackets(byte_map: ByteMap, start: int, end: int, top: int, geometry: _Geometry) -> list[str]:
    """Under each run of bytes that belong to one pixel, a bracket labelled with the pixel's x."""
    runs: list[tuple[int, int, int]] = []  # (first byte, last byte + 1, x)
    for element in byte_map.elements:
        if not start <= element.offset < end:
            continue
        stop = element.offset + byte_map.spec.itemsize
        if runs and runs[-1][2] == element.x and runs[-1][1] == element.offset:
            runs[-1] = (runs[-1][0], stop, element.x)
        else:
            runs.append((element.offset, stop, element.x))
    svg: list[str] = []
    baseline = top + geometry.row_height + 4
    for first, stop, x in runs:
        left = geometry.left + (first - start) * geometry.cell + 2
        right = geometry.left + (stop - start) * geometry.cell - 2
        svg.append(
            f'<path d="M{left} {baseline - 2} V{baseline + 2} H{right} V{baseline - 2}" fill="none" '
            f'stroke="{MUTED}" stroke-width="1"/>'
        )
        svg.append(
            f'<text x="{(left + right) / 2}" y="{baseline + 13}" text-anchor="middle" '
            f'class="muted">x={x}</text>'
        )
    return svg


def _roi_marker(byte_map: ByteMap, line_tops: list[int], geometry: _Geometry) -> list[str]:
    """An arrow at the crop's first byte: the pointer ``crop()`` returns."""
    offset = byte_map.roi_offset
    if offset is None:
        return []
    pitch = byte_map.spec.row_pitch
    line, column = divmod(offset, pitch)
    x = geometry.left + column * geometry.cell + 4
    y = line_tops[line]
    return [
        f'<path d="M{x} {y - 1} l-4 -7 h8 z" fill="{INK}"/>',
        f'<text x="{x + 7}" y="{y - 3}" class="muted">crop ptr = ptr + {offset}</text>',
    ]


def _legend(byte_map: ByteMap, geometry: _Geometry, width: int, top: int) -> tuple[list[str], int]:
    """Swatches: each channel, padding, bytes past ``nbytes``, the ROI; wrapped to the picture's width."""
    spec = byte_map.spec
    items: list[tuple[str, str]] = [
        (
            f'fill="{CHANNEL_COLORS[channel % len(CHANNEL_COLORS)]}"',
            f"channel {byte_map.channel_name(channel)}"
            + (f" ({spec.itemsize} bytes)" if spec.itemsize > 1 else ""),
        )
        for channel in range(spec.channels)
    ]
    if byte_map.padding:
        items.append(('fill="url(#hatch)"', "padding"))
    if byte_map.nbytes % spec.row_pitch:
        items.append(('fill="none" stroke="#bdc1c6" stroke-dasharray="3 2"', "past nbytes (not allocated)"))
    if byte_map.roi is not None:
        x, y, roi_width, roi_height = byte_map.roi
        items.append(
            (
                f'fill="#ffffff" stroke="{INK}" stroke-width="2.4"',
                f"crop({x}, {y}, {roi_width}, {roi_height}): same row_pitch",
            )
        )
    svg: list[str] = []
    x_cursor, y_cursor = geometry.left, top
    for style, label in items:
        item_width = 30 + int(6.4 * len(label))  # swatch, gap, and about 6.4 px per character
        if x_cursor + item_width > width - geometry.right and x_cursor > geometry.left:
            x_cursor, y_cursor = geometry.left, y_cursor + 18
        svg.append(f'<rect x="{x_cursor}" y="{y_cursor}" width="14" height="12" {style}/>')
        svg.append(f'<text x="{x_cursor + 19}" y="{y_cursor + 10}">{escape(label)}</text>')
        x_cursor += item_width
    return svg, y_cursor - top + 18


def _summary(byte_map: ByteMap) -> tuple[str, str]:
    spec = byte_map.spec
    return (
        f"row_pitch={spec.row_pitch} B, pixel_stride={spec.pixel_stride} B, "
        f"channel_stride={spec.channel_stride} B",
        f"itemsize={spec.itemsize} B, nbytes={spec.nbytes} B, padding={len(byte_map.padding)} B",
    )
