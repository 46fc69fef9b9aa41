"""Frames in one allocation: plane offsets and pitches, the refusals, and the byte maps of
docs/video-frames.md (NumPy, writing each plane through a view of a real buffer, says independently
which byte belongs to which plane)."""

from __future__ import annotations

import doctest
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import (
    BoundsError,
    FrameLayout,
    PitchError,
    PixelFormat,
    PlaneLayout,
    SpecError,
    format_info,
    frame_layout,
)

untyped_frame_layout: Any = frame_layout  # for calls that break its types on purpose
DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGE = DOCS / "video-frames.md"


def _plane_views(layout: FrameLayout, buffer: npt.NDArray[np.uint8]) -> list[npt.NDArray[Any]]:
    """Each plane as a NumPy view of ``buffer`` at its offset and pitch (NumPy checks the bounds)."""
    views = []
    for plane in layout.planes:
        itemsize = np.dtype(plane.dtype).itemsize
        views.append(
            np.ndarray(
                (plane.height, plane.width, plane.channels),
                dtype=plane.dtype,
                buffer=buffer,
                offset=plane.offset,
                strides=(plane.row_pitch, plane.channels * itemsize, itemsize),
            )
        )
    return views


def _owners(layout: FrameLayout) -> npt.NDArray[np.int64]:
    """For each byte of a ``layout.nbytes`` buffer, the plane that writes it (-1: none); fails on a
    byte written by two planes."""
    owners = np.full(layout.nbytes, -1, dtype=np.int64)
    for index in range(len(layout.planes)):
        buffer = np.zeros(layout.nbytes, dtype=np.uint8)
        view = _plane_views(layout, buffer)[index]
        view.view(np.uint8)[...] = 1  # every byte of every element
        mine = buffer == 1
        assert not (owners[mine] >= 0).any(), f"plane {index} overlaps another"
        owners[mine] = index
    return owners


def test_nv12_chroma_lies_at_pitch_times_aligned_height() -> None:
    layout = frame_layout("NV12", 1920, 1080, pitch=2048, aligned_height=1088)
    assert layout.planes == (
        PlaneLayout(0, 2048, 1080, 1920, 1, "uint8"),
        PlaneLayout(2048 * 1088, 2048, 540, 960, 2, "uint8"),
    )
    assert layout.nbytes == 2048 * 1088 + 539 * 2048 + 1920
    assert layout.format is PixelFormat.NV12


def test_odd_sizes_are_fine_where_the_format_does_not_subsample() -> None:
    assert frame_layout("NV16", 4, 3).planes[1].height == 3  # 4:2:2 halves the width only
    assert frame_layout("YUV444", 3, 3).nbytes == 27
    assert frame_layout("RGB", 3, 1).planes == (PlaneLayout(0, 9, 1, 3, 3, "uint8"),)


def test_packed_defaults_put_planes_back_to_back() -> None:
    assert [plane.offset for plane in frame_layout("NV12", 6, 4).planes] == [0, 24]
    assert frame_layout("NV12", 6, 4).nbytes == 36  # 1.5 * W * H
    i420 = frame_layout("I420", 6, 4)
    assert [(plane.offset, plane.row_pitch) for plane in i420.planes] == [(0, 6), (24, 3), (30, 3)]
    p010 = frame_layout("P010", 4, 2)
    assert [(plane.offset, plane.row_pitch, plane.dtype) for plane in p010.planes] == [
        (0, 8, "uint16"),
        (16, 8, "uint16"),
    ]
    assert frame_layout("BGRA", 5, 3).planes == (PlaneLayout(0, 20, 3, 5, 4, "uint8"),)


def test_one_pitch_gives_i420_half_pitches_and_nv16_full_height_chroma() -> None:
    i420 = frame_layout("I420", 6, 4, pitch=8, aligned_height=6)
    assert [(plane.offset, plane.row_pitch, plane.height) for plane in i420.planes] == [
        (0, 8, 4),
        (48, 4, 2),
        (48 + 4 * 3, 4, 2),
    ]
    nv16 = frame_layout("NV16", 6, 4, pitch=8, aligned_height=5)  # NV16 has full-height chroma
    assert [(plane.offset, plane.height, plane.width) for plane in nv16.planes] == [(0, 4, 6), (40, 4, 3)]
    yuv444 = frame_layout("YUV444", 3, 3, pitch=4)
    assert [plane.offset for plane in yuv444.planes] == [0, 12, 24]


def test_row_alignment_pads_rows_as_cudamallocpitch() -> None:
    layout = frame_layout("P010", 100, 2, row_alignment=256)
    assert [plane.row_pitch for plane in layout.planes] == [256, 256]
    assert frame_layout("I420", 100, 2, row_alignment=64).planes[1].row_pitch == 64  # half of 128
    assert frame_layout("P010", 4, 2, row_alignment=3).planes[0].row_pitch == 12  # 8 bytes up to lcm(3, 2)


def test_per_plane_pitches_and_explicit_offsets() -> None:
    layout = frame_layout("I420", 6, 4, pitch=(8, 16, 16), plane_offsets=(0, 100, 200))
    assert [(plane.offset, plane.row_pitch) for plane in layout.planes] == [(0, 8), (100, 16), (200, 16)]
    assert layout.nbytes == 200 + 16 + 3
    swapped = frame_layout("NV12", 4, 2, plane_offsets=(8, 0))  # chroma first is fine
    assert swapped.nbytes == 16
    assert _owners(swapped).tolist() == [1] * 4 + [-1] * 4 + [0] * 8


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: frame_layout("NV12", 5, 4), SpecError, "expected an even width for NV12, got width=5"),
        (lambda: frame_layout("NV12", 4, 3), SpecError, "expected an even height for NV12, got height=3"),
        (lambda: untyped_frame_layout("YUYV", 4, 4), SpecError, "expected format one of NV12"),
        (lambda: frame_layout("NV12", 0, 4), SpecError, "expected a positive int width, got width=0"),
        (lambda: frame_layout("NV12", True, 4), SpecError, "got width=True"),
        (lambda: frame_layout("NV12", 4, 2, pitch=3), PitchError, "at least the 4 bytes of a row"),
        (lambda: frame_layout("P010", 4, 2, pitch=9), PitchError, "multiple of the 2-byte element"),
        (lambda: frame_layout("NV12", 4, 2, pitch=-8), PitchError, "positive int of bytes"),
        (lambda: frame_layout("NV12", 4, 2, pitch=8.0), PitchError, "got pitch=8.0"),  # type: ignore[arg-type]
        (lambda: frame_layout("NV12", 4, 2, pitch=2**63), PitchError, "below 2**63"),
        (lambda: frame_layout("I420", 4, 2, pitch=5), PitchError, "halves into whole I420 chroma pitches"),
        (lambda: frame_layout("I420", 4, 2, pitch=(4, 2)), SpecError, "expected 3 pitches"),
        (lambda: frame_layout("I420", 4, 2, pitch=(4, 1, 2)), PitchError, "pitch[1] of at least the 2"),
        (lambda: frame_layout("NV12", 4, 2, pitch=8, row_alignment=4), PitchError, "got both"),
        (lambda: frame_layout("NV12", 4, 2, row_alignment=0), PitchError, "got row_alignment=0"),
        (lambda: frame_layout("NV12", 4, 4, aligned_height=2), SpecError, "at least height=4"),
        (lambda: frame_layout("NV12", 4, 4, aligned_height=5), SpecError, "even aligned_height for NV12"),
        (lambda: frame_layout("NV12", 4, 2, plane_offsets=(0,)), SpecError, "expected 2 plane_offsets"),
        (lambda: frame_layout("NV12", 4, 2, plane_offsets=(0, -8)), BoundsError, "plane_offsets[1]=-8"),
        (lambda: frame_layout("NV12", 4, 2, plane_offsets=(0, 1.5)), SpecError, "int byte offsets"),  # type: ignore[arg-type]
        (
            lambda: frame_layout("NV12", 4, 2, plane_offsets=(0, 8), aligned_height=2),
            SpecError,
            "plane_offsets or aligned_height, got both",
        ),
        (
            lambda: frame_layout("NV12", 4, 2, plane_offsets=(0, 7)),
            SpecError,
            "expected planes that do not overlap, got plane 0 at bytes [0, 8) and plane 1 at [7, 11)",
        ),
        (
            lambda: frame_layout("I420", 4, 2, plane_offsets=(0, 20, 21)),
            SpecError,
            "plane 1 at bytes [20, 22) and plane 2 at [21, 23)",
        ),
        (
            lambda: frame_layout("NV12", 4, 2, plane_offsets=(0, 2**63 - 2)),
            SpecError,
            "expected a frame below 2**63 bytes",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_refusals(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        call()
    assert message in str(caught.value)
    assert re.match(r"frame_layout\(\): expected ", str(caught.value))


@given(
    st.sampled_from(list(PixelFormat)),
    st.integers(1, 6).map(lambda half: 2 * half),
    st.integers(1, 6).map(lambda half: 2 * half),
    st.integers(0, 8),
    st.integers(0, 4),
    st.lists(st.integers(0, 200), min_size=3, max_size=3),
    st.booleans(),
)
def test_accepted_layouts_never_overlap_and_nbytes_is_the_extent(
    fmt: PixelFormat,
    width: int,
    height: int,
    extra_pitch: int,
    extra_rows: int,
    offsets: list[int],
    explicit: bool,
) -> None:
    info = format_info(fmt)
    row = width * info.planes[0].channels * info.itemsize
    pitch = row + 2 * extra_pitch * info.itemsize
    layout: FrameLayout | None
    if not explicit:  # the planes one after another: always accepted
        layout = frame_layout(fmt, width, height, pitch=pitch, aligned_height=height + 2 * extra_rows)
    else:
        given_offsets = offsets[: len(info.planes)]
        refusal = ""
        try:
            layout = frame_layout(fmt, width, height, pitch=pitch, plane_offsets=given_offsets)
        except SpecError as exc:
            layout, refusal = None, str(exc)
        packed = frame_layout(fmt, width, height, pitch=pitch)
        spans = [
            (offset, offset + plane.nbytes)
            for plane, offset in zip(packed.planes, given_offsets, strict=True)
        ]
        intersect = any(a < d and c < b for (a, b), (c, d) in itertools.combinations(spans, 2))
        assert (layout is None) == intersect  # refused exactly where two planes' extents meet
        if layout is None:
            assert "expected planes that do not overlap" in refusal
            return
    owners = _owners(layout)  # fails on a byte two planes share
    assert owners[-1] >= 0, "nbytes ends at the last byte of a plane"
    for index, plane in enumerate(layout.planes):
        assert (owners == index).sum() == plane.height * plane.width * plane.channels * info.itemsize
    if not explicit:
        offsets_of = [plane.offset for plane in layout.planes]
        assert offsets_of == sorted(offsets_of)
        assert len(layout.planes) == 1 or offsets_of[1] == pitch * (height + 2 * extra_rows)


# -- the byte maps of docs/video-frames.md ----------------------------------------------------------


def render_byte_map(layout: FrameLayout) -> list[str]:
    """The rows of a byte map: per row of the first plane's pitch, its offset and one cell per element.

    A cell names the sample an element holds (``Y10``: luma row 1, column 0; ``U01``: chroma row 0,
    column 1); ``..`` is row padding of a plane, ``--`` bytes between planes.
    """
    info = format_info(layout.format)
    buffer = np.zeros(layout.nbytes, dtype=np.uint8)
    views = _plane_views(layout, buffer)
    labels: dict[int, str] = {}
    for plane, view, plane_info in zip(layout.planes, views, info.planes, strict=True):
        for y, x, c in np.ndindex(view.shape):
            address = plane.offset + y * plane.row_pitch + (x * plane.channels + c) * info.itemsize
            labels[address] = f"{plane_info.components[c]}{y}{x}"
    pitch = layout.planes[0].row_pitch
    rows = []
    for start in range(0, layout.nbytes, pitch):
        cells = []
        for address in range(start, start + pitch, info.itemsize):
            if address in labels:
                cells.append(labels[address])
            else:
                cells.append(".." if _in_plane_row(layout, address) else "--")
        rows.append(" ".join([str(start), *cells]))
    return rows


def _in_plane_row(layout: FrameLayout, address: int) -> bool:
    """Is ``address`` inside one of the rows (pitch included) of a plane?"""
    return any(
        plane.offset <= address < plane.offset + plane.height * plane.row_pitch for plane in layout.planes
    )


def _page_figures() -> list[tuple[str, list[str]]]:
    """The byte-map figures of the page: the ``frame_layout(...)`` call on their first line, then rows."""
    text = PAGE.read_text(encoding="utf-8")
    figures = []
    for block in re.findall(r"^```text\n(frame_layout\(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        lines = block.splitlines()
        rows = [" ".join(line.split("#")[0].split()) for line in lines[1:] if re.match(r"\s*\d", line)]
        figures.append((lines[0], rows))
    return figures


def test_the_page_draws_nv12_and_p010() -> None:
    calls = [call for call, _ in _page_figures()]
    assert any('"NV12"' in call for call in calls)
    assert any('"P010"' in call for call in calls)


@pytest.mark.parametrize(("call", "rows"), _page_figures(), ids=lambda value: str(value)[:40])
def test_page_byte_maps_match_the_layout(call: str, rows: list[str]) -> None:
    layout = eval(call, {"frame_layout": frame_layout})  # the figure's own call, as printed on the page
    assert rows == render_byte_map(layout)


def test_the_renderer_sees_padding_and_gaps() -> None:
    rows = render_byte_map(frame_layout("NV12", 2, 2, pitch=3, aligned_height=4))
    assert rows == ["0 Y00 Y01 ..", "3 Y10 Y11 ..", "6 -- -- --", "9 -- -- --", "12 U00 V00 .."]


def test_page_examples_run() -> None:
    text = PAGE.read_text(encoding="utf-8")
    blocks = re.findall(r"^```pycon\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert blocks
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    parser = doctest.DocTestParser()
    names: dict[str, object] = {}
    for number, block in enumerate(blocks):
        test = parser.get_doctest(block, names, f"video-frames.md[{number}]", str(PAGE), 0)
        runner.run(test, clear_globs=False)
        names.update(test.globs)
    results = runner.summarize(verbose=False)
    assert results.failed == 0
    assert results.attempted >= 4


def test_a_layout_is_checked_once_per_exactly_typed_arguments() -> None:
    """A decoder loop wraps every frame with the same arguments: the checked layout is served again,
    but only for arguments of the same types (True and 1920.0 hash like ints, and are refused)."""
    first = frame_layout("NV12", 1920, 1080, pitch=2048, aligned_height=1088)
    assert frame_layout("NV12", 1920, 1080, pitch=2048, aligned_height=1088) is first
    with pytest.raises(SpecError, match="positive int width"):
        untyped_frame_layout("NV12", 1920.0, 1080, pitch=2048, aligned_height=1088)
    with pytest.raises(PitchError):
        untyped_frame_layout("NV12", 1920, 1080, pitch=2048.0, aligned_height=1088)
    pitches = [2048, 2048]
    listed = frame_layout("NV12", 1920, 1080, pitch=pitches, aligned_height=1088)
    assert listed == first
    pitches[1] = 1000  # the key copied the values: a changed list is checked again (a short row)
    with pytest.raises(PitchError):
        frame_layout("NV12", 1920, 1080, pitch=pitches, aligned_height=1088)
    with pytest.raises(SpecError):  # a refusal is never stored: it raises every time
        frame_layout("NV12", 1921, 1080)
    with pytest.raises(SpecError):
        frame_layout("NV12", 1921, 1080)
