"""Pure planning of conversions (``_plan``), on CPU: threads' pixel runs, access widths, run kinds,
element paths, byte-range overlap and batch sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import BoundsError, DTypeError, DTypeName, ImageSpec, Layout, SpecError
from gpuimage._affine import Affine, identity_affine, scaled_affine
from gpuimage._geometry import Geometry
from gpuimage._plan import (
    MAX_VECTOR,
    THREAD_BYTES,
    Mode,
    RunKind,
    _pixels_per_thread,
    _vector_bytes,
    batch_size,
    check_same,
    mode,
    plan_variant,
    ranges_overlap,
    run_kind,
)


@given(st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4, 8]), st.integers(1, 64))
def test_threads_move_a_bounded_power_of_two_of_pixels(source: int, target: int, channels: int) -> None:
    pixels = _pixels_per_thread(source, target, channels)
    assert pixels & (pixels - 1) == 0
    assert 1 <= pixels <= 32
    per_pixel = channels * (source + target)
    assert pixels == 1 or pixels * per_pixel <= THREAD_BYTES
    assert pixels == 32 or 2 * pixels * per_pixel > THREAD_BYTES  # the most that fits


@given(
    st.sampled_from(list(RunKind)),
    st.integers(1, 512),
    st.lists(st.integers(0, 2**40), min_size=1, max_size=6),
)
def test_vector_width_divides_every_start(kind: RunKind, run_bytes: int, addresses: list[int]) -> None:
    width = _vector_bytes(kind, run_bytes, addresses)
    assert width in (1, 2, 4, 8, 16)
    if kind is RunKind.GENERIC:
        assert width == 1
    else:
        assert all(value % width == 0 for value in (run_bytes, *addresses))
        # and it is the widest such power of two
        assert width == 16 or any(value % (2 * width) for value in (run_bytes, *addresses))


@given(
    st.sampled_from(list(Layout)),
    st.integers(1, 50),
    st.integers(1, 50),
    st.integers(1, 4),
    st.sampled_from(["uint8", "float16", "float32", "float64"]),
    st.sampled_from([1, 64, 256]),
)
def test_packed_images_are_vectorised_by_layout(
    layout: Layout, height: int, width: int, channels: int, dtype: DTypeName, alignment: int
) -> None:
    spec = ImageSpec.packed(
        height=height, width=width, channels=channels, dtype=dtype, layout=layout, row_alignment=alignment
    )
    kind = run_kind(spec.geometry, spec.itemsize)
    if channels == 1 or layout is Layout.HWC:
        assert kind is RunKind.INTERLEAVED
    else:
        assert kind is RunKind.PLANAR
    variant = plan_variant(
        dtype, "float32", [(1 << 20, spec.geometry)], (1 << 20, spec.geometry), identity_affine(channels)
    )
    assert variant.source_kind is kind
    assert variant.pixels >= 1


def test_a_batch_of_mixed_run_kinds_is_read_one_element_at_a_time() -> None:
    hwc = ImageSpec.packed(height=4, width=4, channels=3, layout="HWC").geometry
    chw = ImageSpec.packed(height=4, width=4, channels=3, layout="CHW").geometry
    variant = plan_variant("uint8", "float32", [(4096, hwc), (8192, chw)], (4096, chw), identity_affine(3))
    assert variant.source_kind is RunKind.GENERIC
    assert variant.source_vector == 1


@pytest.mark.parametrize(
    ("source", "target", "affine", "expected"),
    [
        ("uint8", "uint8", identity_affine(3, reverse=True), Mode.COPY),
        ("uint8", "int64", identity_affine(3), Mode.INTEGER),
        ("bool", "uint8", identity_affine(3), Mode.INTEGER),
        ("uint8", "float32", identity_affine(3), Mode.FLOAT),
        ("uint8", "uint8", Affine((2.0,) * 3, (0.0,) * 3, False), Mode.FLOAT),
    ],
)
def test_each_conversion_takes_the_exact_path(
    source: DTypeName, target: DTypeName, affine: Affine, expected: Mode
) -> None:
    assert mode(source, target, affine) is expected


@given(
    st.sampled_from(list(Layout)),
    st.integers(1, 9),
    st.integers(1, 40),
    st.integers(1, 4),
    st.sampled_from(["uint8", "uint16", "float32"]),
    st.sampled_from([1, 2, 4, 16, 64, 256]),
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.booleans(),
)
def test_a_plan_depends_on_pointers_only_modulo_the_widest_access(
    layout: Layout,
    height: int,
    width: int,
    channels: int,
    dtype: DTypeName,
    alignment: int,
    source_ptr: int,
    target_ptr: int,
    scaled: bool,
) -> None:
    # the kernels' launch-plan cache keys on ptr % MAX_VECTOR: full pointers must plan the same kernel
    source = ImageSpec.packed(
        height=height, width=width, channels=channels, dtype=dtype, layout=layout, row_alignment=alignment
    ).geometry
    target = ImageSpec.packed(
        height=height, width=width, channels=channels, dtype="float32", layout=Layout.CHW
    ).geometry
    affine = scaled_affine(channels, 0.5, 1.0, where="test") if scaled else identity_affine(channels)
    full = plan_variant(dtype, "float32", [(source_ptr, source)], (target_ptr, target), affine)
    reduced = plan_variant(
        dtype, "float32", [(source_ptr % MAX_VECTOR, source)], (target_ptr % MAX_VECTOR, target), affine
    )
    assert full == reduced


@given(st.integers(0, 64), st.integers(1, 16), st.integers(0, 64), st.integers(1, 16))
def test_ranges_overlap_exactly_when_they_share_a_byte(
    first_start: int, first_length: int, second_start: int, second_length: int
) -> None:
    # images are never empty: every range has a byte
    first = set(range(first_start, first_start + first_length))
    second = set(range(second_start, second_start + second_length))
    expected = bool(first & second)
    assert ranges_overlap((first_start, first_length), (second_start, second_length)) is expected


def test_a_batch_is_as_large_as_its_largest_region_or_the_size_given() -> None:
    assert batch_size([(3, 9), (7, 2)], None, where="t") == (7, 9)
    assert batch_size([(3, 9), (7, 2)], (8, 10), where="t") == (8, 10)


@pytest.mark.parametrize(
    ("regions", "size", "error", "message"),
    [
        ([], None, SpecError, "at least one image"),
        ([(3, 9)], (2, 10), BoundsError, "does not fit"),
        ([(3, 9)], (3, 0), SpecError, "positive ints"),
        ([(3, 9)], [3, 9], SpecError, "size="),
    ],
    ids=["empty", "too-small", "zero", "not-a-tuple"],
)
def test_bad_batch_sizes_are_refused(
    regions: list[tuple[int, int]], size: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        batch_size(regions, size, where="t")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def test_a_batch_of_mixed_dtypes_or_channels_is_refused() -> None:
    check_same(["uint8", "uint8"], "dtype", where="t")
    with pytest.raises(DTypeError, match=r"same dtype, got \['float32', 'uint8'\]"):
        check_same(["uint8", "float32"], "dtype", where="t")
    with pytest.raises(SpecError, match="same channels"):
        check_same([3, 4], "channels", where="t")


def test_interleaved_planar_and_generic_runs_are_told_apart() -> None:
    assert run_kind(Geometry(2, 3, 3, 9, 3, 1), 1) is RunKind.INTERLEAVED
    assert run_kind(Geometry(2, 3, 3, 3, 1, 6), 1) is RunKind.PLANAR
    assert run_kind(Geometry(2, 3, 3, 12, 4, 1), 1) is RunKind.GENERIC  # a padded pixel (RGBx)
