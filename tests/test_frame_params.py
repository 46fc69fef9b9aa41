"""The frame kernel's host side (``_frame_params``): the parameter structs against the kernel's C
structs, variants per format, grids, the packed values of a call, the split into launches of 32 items,
and what it refuses. Pure: the pointers are made up, nothing is read or launched."""

from __future__ import annotations

import re
import struct
from importlib import resources
from typing import Any

import pytest

from gpuimage import (
    BoundsError,
    ChannelOrder,
    ColorSpec,
    DeviceError,
    DTypeError,
    GpuImageError,
    ImageSpec,
    PitchError,
    PixelFormat,
    SpecError,
    StrideError,
)
from gpuimage._executor import Buffer
from gpuimage._formats import FORMATS
from gpuimage._frame_params import (
    CAPACITIES,
    ITEM,
    MAX_ITEMS,
    PARAMS_BYTES,
    SHARED,
    FrameVariant,
    defines,
    frame_variant,
    grid_for,
    params_bytes,
    with_capacity,
)
from gpuimage._frame_plan import Launch, plan_launches
from gpuimage._sampling import FrameSource, SampleRecipe, place

BT601 = ColorSpec(matrix="BT601", range="LIMITED")
BT709_FULL = ColorSpec(matrix="BT709", range="FULL")
FRAME = 0x7F0000000000
SLOT = 0x7E0000000000
_C_CODES = {"unsigned long long": "Q", "long long": "q", "double": "d", "float": "f", "int": "i"}


def _c_struct_codes(name: str) -> str:
    """The struct codes of ``name``'s fields as _frame_kernels.cu declares them, in order."""
    source = resources.files("gpuimage").joinpath("_frame_kernels.cu").read_text(encoding="utf-8")
    body = re.search(r"struct " + name + r" \{(.*?)\n\};", source, re.DOTALL)
    assert body is not None
    codes = ""
    for line in body.group(1).splitlines():
        declaration = line.split("//")[0].strip().rstrip(";")
        if not declaration:
            continue
        kind = next(c_type for c_type in _C_CODES if declaration.startswith(c_type + " "))
        for field in declaration[len(kind) :].split(","):
            count = re.search(r"\[(\d+)\]", field)
            codes += _C_CODES[kind] * (int(count.group(1)) if count else 1)
    return codes


def _expanded(layout: struct.Struct) -> str:
    return "".join(code * int(count or 1) for count, code in re.findall(r"(\d*)([a-zA-Z])", layout.format))


def test_the_packed_parameters_are_the_kernels_structs() -> None:
    assert _expanded(SHARED) == _c_struct_codes("Shared")
    assert _expanded(ITEM) == _c_struct_codes("Item")
    for layout in (SHARED, ITEM):  # natural alignment adds no padding: the C layout is the packed one
        assert struct.calcsize("@" + layout.format[1:]) == layout.size
        assert layout.size % 8 == 0
    assert (SHARED.size, ITEM.size, PARAMS_BYTES) == (168, 112, 168 + 32 * 112)
    assert PARAMS_BYTES <= 4096  # CUDA's kernel parameter limit before CUDA 12.1
    assert MAX_ITEMS == 32


@pytest.mark.parametrize(("items", "capacity"), [(1, 1), (2, 8), (8, 8), (9, 32), (32, 32)])
def test_a_launch_takes_the_smallest_parameter_block_that_holds_its_items(items: int, capacity: int) -> None:
    """The driver copies the whole block at each launch: 8 regions send 1064 bytes, not 3752."""
    variant = frame_variant(FORMATS[PixelFormat.NV12], "uint8", "bilinear", False, "float32", 3)
    assert CAPACITIES == (1, 8, 32)
    assert variant.capacity == MAX_ITEMS
    assert with_capacity(variant, items) == variant._replace(capacity=capacity)
    assert params_bytes(capacity) == SHARED.size + capacity * ITEM.size <= PARAMS_BYTES


@pytest.mark.parametrize(
    ("format", "dtype", "expected"),
    [
        ("NV12", "uint8", (1, "uint8", 0, 1, 1)),
        ("NV21", "uint8", (1, "uint8", 0, 1, 1)),  # the same kernel: the matrix swaps its columns
        ("P010", "uint16", (1, "uint16", 6, 1, 1)),
        ("P016", "uint16", (1, "uint16", 0, 1, 1)),
        ("NV16", "uint8", (1, "uint8", 0, 1, 0)),
        ("I420", "uint8", (2, "uint8", 0, 1, 1)),
        ("YUV444", "uint8", (2, "uint8", 0, 0, 0)),
        ("GRAY", "uint8", (0, "uint8", 0, 0, 0)),
        ("BGR", "uint16", (0, "uint16", 0, 0, 0)),
        ("RGBA", "float32", (0, "float32", 0, 0, 0)),
    ],
)
def test_a_variant_is_the_source_kind_dtype_shift_and_subsampling(
    format: str, dtype: Any, expected: tuple[Any, ...]
) -> None:
    info = FORMATS[PixelFormat(format)]
    variant = frame_variant(info, dtype, "bilinear", False, "float32", 3)
    kind, samples, shift, shift_x, shift_y = expected
    assert variant == FrameVariant(kind, samples, shift, shift_x, shift_y, 2, "float32", 3)
    assert frame_variant(info, dtype, "nearest", False, "uint8", 4).resize == 1
    assert frame_variant(info, dtype, "nearest", True, "uint8", 4).resize == 0  # unresized: a plain read


def test_defines_specialise_the_kernel() -> None:
    variant = frame_variant(FORMATS[PixelFormat.P010], "uint16", "bilinear", False, "bfloat16", 4)
    lines = defines(variant)
    for line in (
        "SRC_KIND 1",
        "SRC_T unsigned short",
        "LOAD(x) (float)(x)",
        "SRC_SHIFT 6",
        "CHROMA_SHIFT_X 1",
        "CHROMA_SHIFT_Y 1",
        "RESIZE 2",
        "DST 2",
        "CHANNELS 4",
        "MAX_ITEMS 32",
        f"ITEM_BYTES {ITEM.size}",
        f"PARAMS_BYTES {PARAMS_BYTES}",
    ):
        assert f"#define {line}\n" in lines
    one = defines(with_capacity(variant, 1))
    assert "#define MAX_ITEMS 1\n" in one
    assert f"#define PARAMS_BYTES {params_bytes(1)}\n" in one
    half = defines(frame_variant(FORMATS[PixelFormat.RGB], "float16", "nearest", False, "uint8", 3))
    assert "#define LOAD(x) half_to_float(x)\n" in half
    assert "#define DST 3\n" in half


def test_the_grid_covers_the_slot_with_one_z_per_item() -> None:
    assert grid_for(224, 224, 8) == (7, 28, 8)
    assert grid_for(3840, 2160, 1) == (120, 270, 1)
    assert grid_for(1, 1, 32) == (1, 1, 32)
    assert grid_for(33, 9, 1) == (2, 2, 1)
    assert grid_for(3840, 2160, 1, 4) == (30, 270, 1)
    assert grid_for(129, 1, 2, 4) == (2, 1, 2)


def _nv12(
    region: tuple[int, int, int, int] = (0, 0, 64, 48),
    *,
    ptr: int = FRAME,
    width: int = 64,
    height: int = 48,
    pitch: int = 128,
    format: PixelFormat = PixelFormat.NV12,
    colour: ColorSpec | None = BT601,
    device: int = 0,
) -> FrameSource:
    luma = Buffer(
        ptr, ImageSpec(height=height, width=width, channels=1, row_pitch=pitch, device=device), None
    )
    chroma_spec = ImageSpec(height=height // 2, width=width // 2, channels=2, row_pitch=pitch, device=device)
    return FrameSource(format, (luma, Buffer(ptr + pitch * height, chroma_spec, None)), colour, region)


def _packed(
    format: PixelFormat, dtype: Any, region: tuple[int, int, int, int] = (0, 0, 16, 8)
) -> FrameSource:
    channels = FORMATS[format].planes[0].channels
    spec = ImageSpec(height=8, width=16, channels=channels, dtype=dtype)
    return FrameSource(format, (Buffer(FRAME, spec, None),), None, region)


def _recipe(
    height: int = 224,
    width: int = 224,
    *,
    order: ChannelOrder = ChannelOrder.RGB,
    resize: Any = "bilinear",
    keep_aspect: bool = False,
) -> SampleRecipe:
    channels = len(order.value)
    factors = (4.0, 4.5, 5.0, 1.0)[:channels]
    shifts = (-2.0, -2.5, -1.5, 0.0)[:channels]
    pad = (0.25, 0.5, 0.75, 1.0)[:channels]
    return SampleRecipe(height, width, resize, keep_aspect, order, factors, shifts, pad)


def _target(recipe: SampleRecipe, dtype: Any = "float32", layout: Any = "CHW", ptr: int = SLOT) -> Buffer:
    spec = ImageSpec(
        height=recipe.height, width=recipe.width, channels=len(recipe.order.value), dtype=dtype, layout=layout
    )
    return Buffer(ptr, spec, None)


def _shared(launch: Launch) -> tuple[Any, ...]:
    return SHARED.unpack_from(launch.parameters, 0)


def _item(launch: Launch, index: int) -> tuple[Any, ...]:
    return ITEM.unpack_from(launch.parameters, SHARED.size + index * ITEM.size)


def test_eight_regions_of_a_frame_are_one_launch_with_every_parameter_packed() -> None:
    recipe = _recipe()
    target = _target(recipe)
    item_pitch = 3 * 224 * 224 * 4
    regions = [(2 * i, i, 20 + i, 10 + 2 * i) for i in range(8)]
    (launch,) = plan_launches([_nv12(region) for region in regions], target, item_pitch, recipe)
    assert launch.grid == (7, 28, 8)
    assert launch.variant == FrameVariant(1, "uint8", 0, 1, 1, 2, "float32", 3, capacity=8)
    assert len(launch.parameters) == params_bytes(8) == SHARED.size + 8 * ITEM.size
    shared = _shared(launch)
    assert shared[:5] == (SLOT, 224 * 4, 4, 224 * 224 * 4, item_pitch)
    kr, kb = 0.299, 0.114
    kg = 1 - kr - kb
    rows = [
        (1 / 219, 0.0, 2 * (1 - kr) / 224),
        (1 / 219, -2 * kb * (1 - kb) / kg / 224, -2 * kr * (1 - kr) / kg / 224),
        (1 / 219, 2 * (1 - kb) / 224, 0.0),
    ]
    assert shared[5:14] == pytest.approx([value for row in rows for value in row], rel=1e-6)
    assert shared[14:17] == (16.0, 128.0, 128.0)
    assert shared[18:30] == pytest.approx((4.0, 4.5, 5.0, 0.0, -2.0, -2.5, -1.5, 0.0, 0.25, 0.5, 0.75, 0.0))
    assert shared[34:] == (224, 224, 8)
    for index, region in enumerate(regions):
        item = _item(launch, index)
        assert item[:6] == (FRAME, FRAME + 128 * 48, 0, 128, 128, 0)
        assert item[8:10] == (region[2] / 224, region[3] / 224)  # float64, as the reference divides
        assert item[10:] == (*region, 0, 0, 224, 224)


def test_more_than_32_items_are_split_into_launches_of_32() -> None:
    recipe = _recipe(16, 16)
    item_pitch = 3 * 16 * 16 * 4 + 64
    sources = [_nv12((i % 40, i % 30, 8 + i % 17, 6 + i % 13)) for i in range(70)]
    launches = plan_launches(sources, _target(recipe), item_pitch, recipe)
    assert [launch.grid for launch in launches] == [(1, 2, 32), (1, 2, 32), (1, 2, 6)]
    assert [launch.variant.capacity for launch in launches] == [32, 32, 8]
    assert [len(launch.parameters) for launch in launches] == [PARAMS_BYTES, PARAMS_BYTES, params_bytes(8)]
    assert [_shared(launch)[0] for launch in launches] == [
        SLOT,
        SLOT + 32 * item_pitch,
        SLOT + 64 * item_pitch,
    ]
    assert [_shared(launch)[-1] for launch in launches] == [32, 32, 6]
    assert _item(launches[2], 5)[10:14] == sources[69].region
    assert len(plan_launches(sources[:32], _target(recipe), item_pitch, recipe)) == 1
    assert plan_launches([], _target(recipe), item_pitch, recipe) == []


def test_nv21_swaps_the_chroma_columns_and_bgr_the_rows() -> None:
    recipe = _recipe()
    nv12 = _shared(plan_launches([_nv12()], _target(recipe), 0, recipe)[0])[5:14]
    nv21 = _shared(plan_launches([_nv12(format=PixelFormat.NV21)], _target(recipe), 0, recipe)[0])[5:14]
    assert [nv21[3 * row + column] for row in range(3) for column in (0, 2, 1)] == list(nv12)
    bgr_recipe = _recipe(order=ChannelOrder.BGR)
    bgr = _shared(plan_launches([_nv12()], _target(bgr_recipe), 0, bgr_recipe)[0])[5:14]
    assert list(bgr) == [*nv12[6:9], *nv12[3:6], *nv12[0:3]]


def test_p010_codes_use_the_10_bit_scales_and_full_range_its_own() -> None:
    recipe = _recipe()
    luma = Buffer(FRAME, ImageSpec(height=48, width=64, channels=1, dtype="uint16", row_pitch=256), None)
    chroma = Buffer(
        FRAME + 256 * 48, ImageSpec(height=24, width=32, channels=2, dtype="uint16", row_pitch=256), None
    )
    source = FrameSource(PixelFormat.P010, (luma, chroma), BT601, (0, 0, 64, 48))
    (launch,) = plan_launches([source], _target(recipe), 0, recipe)
    shared = _shared(launch)
    assert shared[5] == pytest.approx(1 / 876)  # R from Y: 219 * 4
    assert shared[7] == pytest.approx(2 * (1 - 0.299) / 896)
    assert shared[14:17] == (64.0, 512.0, 512.0)
    assert launch.variant.source_shift == 6
    full = _shared(plan_launches([_nv12(colour=BT709_FULL)], _target(recipe), 0, recipe)[0])
    assert full[5] == pytest.approx(1 / 255)
    assert full[14:17] == (0.0, 128.0, 128.0)


@pytest.mark.parametrize(
    ("format", "dtype", "order", "picks", "unit"),
    [
        (PixelFormat.BGRA, "uint8", ChannelOrder.RGB, (2, 1, 0, 0), 1 / 255),
        (PixelFormat.GRAY, "uint16", ChannelOrder.RGBA, (0, 0, 0, -1), 1 / 65535),
        (PixelFormat.RGB, "float32", ChannelOrder.BGRA, (2, 1, 0, -1), 1.0),
        (PixelFormat.RGBA, "float16", ChannelOrder.BGRA, (2, 1, 0, 3), 1.0),
    ],
)
def test_packed_sources_pick_their_channels_in_the_output_order(
    format: PixelFormat, dtype: Any, order: ChannelOrder, picks: tuple[int, ...], unit: float
) -> None:
    recipe = _recipe(order=order)
    (launch,) = plan_launches([_packed(format, dtype)], _target(recipe), 0, recipe)
    shared = _shared(launch)
    assert shared[5:17] == (0.0,) * 12
    assert shared[17] == pytest.approx(unit)
    assert shared[30:34] == picks
    assert launch.variant.source_kind == 0
    assert launch.variant.source_dtype == dtype
    itemsize = {"uint8": 1, "uint16": 2, "float16": 2, "float32": 4}[dtype]
    channels = FORMATS[format].planes[0].channels
    assert _item(launch, 0)[6:8] == (channels * itemsize, itemsize)  # the HWC strides, in bytes


def test_the_unresized_variant_only_when_every_item_is_unresized() -> None:
    recipe = _recipe(12, 18)
    target = _target(recipe)
    same = [_nv12((3, 5, 18, 12)), _nv12((0, 0, 18, 12))]
    assert plan_launches(same, target, 0, recipe)[0].variant.resize == 0
    mixed = [*same, _nv12((0, 0, 20, 12))]
    assert plan_launches(mixed, target, 0, recipe)[0].variant.resize == 2
    nearest = _recipe(12, 18, resize="nearest")
    assert plan_launches(mixed, target, 0, nearest)[0].variant.resize == 1


def test_keep_aspect_packs_the_letterbox_placement() -> None:
    recipe = _recipe(224, 224, keep_aspect=True)
    (launch,) = plan_launches([_nv12((4, 2, 60, 30))], _target(recipe), 0, recipe)
    placement = place(60, 30, 224, 224, True)
    assert placement == (0, 56, 224, 112)
    assert _item(launch, 0)[8:] == (60 / 224, 30 / 112, 4, 2, 60, 30, *placement)


def test_a_call_reuses_its_shared_parameters() -> None:
    recipe = _recipe()
    target = _target(recipe)
    first = _shared(plan_launches([_nv12()], target, 0, recipe)[0])
    moved = Buffer(SLOT + 4096, target.spec, None)
    again = _shared(plan_launches([_nv12(ptr=FRAME + 4096)], moved, 0, recipe)[0])
    assert again == (SLOT + 4096, *first[1:])


def _p010_at(ptr: int) -> FrameSource:
    luma = Buffer(ptr, ImageSpec(height=48, width=64, channels=1, dtype="uint16"), None)
    chroma = Buffer(FRAME, ImageSpec(height=24, width=32, channels=2, dtype="uint16"), None)
    return FrameSource(PixelFormat.P010, (luma, chroma), BT601, (0, 0, 64, 48))


REFUSED: list[tuple[str, Any, type[GpuImageError], str]] = [
    ("mixed formats", lambda: [_nv12(), _nv12(format=PixelFormat.NV21)], SpecError, "one format and colour"),
    ("mixed colours", lambda: [_nv12(), _nv12(colour=BT709_FULL)], SpecError, "one format and colour"),
    ("no colour", lambda: [_nv12(colour=None)], SpecError, "colour description"),
    ("one plane", lambda: [_nv12()._replace(planes=_nv12().planes[:1])], SpecError, "expected 2 planes"),
    ("region outside", lambda: [_nv12((10, 0, 60, 48))], BoundsError, "inside the 64x48 frame"),
    ("empty region", lambda: [_nv12((0, 0, 0, 4))], BoundsError, "non-empty region"),
    ("other device", lambda: [_nv12(), _nv12(device=1)], DeviceError, "on the target's cuda:0"),
    ("unaligned uint16 plane", lambda: [_p010_at(FRAME + 1)], SpecError, "aligned to its 2-byte element"),
    ("float64 YUV", lambda: [_p010_at(FRAME)._replace(format=PixelFormat.NV12)], SpecError, "uint8"),
    ("int32 image", lambda: [_packed(PixelFormat.RGB, "int32")], DTypeError, "uint8, uint16 or a float"),
]


@pytest.mark.parametrize(("name", "sources", "error", "message"), REFUSED, ids=[case[0] for case in REFUSED])
def test_calls_the_kernel_cannot_compute_are_refused(
    name: str, sources: Any, error: type[GpuImageError], message: str
) -> None:
    recipe = _recipe()
    with pytest.raises(error, match=re.escape(message)):
        plan_launches(sources(), _target(recipe), 0, recipe)


def test_yuv_planes_must_have_packed_pixels() -> None:
    source = _nv12()
    luma, chroma = source.planes
    wide = ImageSpec(height=24, width=32, channels=2, row_pitch=128, pixel_stride=4, channel_stride=1)
    with pytest.raises(StrideError, match="packed pixels"):
        plan_launches(
            [source._replace(planes=(luma, Buffer(chroma.ptr, wide, None)))], _target(_recipe()), 0, _recipe()
        )


@pytest.mark.parametrize(
    ("target", "item_pitch", "error", "message"),
    [
        (_target(_recipe(), "float64"), 0, DTypeError, "float32, float16, bfloat16 or uint8"),
        (_target(_recipe(224, 200)), 0, SpecError, "224x224 slot"),
        (_target(_recipe(), ptr=SLOT + 2), 0, PitchError, "target pointer aligned"),
        (_target(_recipe()), 6, PitchError, "item pitch"),
    ],
)
def test_targets_the_kernel_cannot_write_are_refused(
    target: Buffer, item_pitch: int, error: type[GpuImageError], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        plan_launches([_nv12()], target, item_pitch, _recipe())


def test_slots_beyond_the_grid_are_refused() -> None:
    recipe = _recipe(65535 * 8 + 1, 1)
    with pytest.raises(SpecError, match="at most 524280 rows"):
        plan_launches([_nv12()], _target(recipe), 0, recipe)


def test_wrong_per_channel_values_are_refused() -> None:
    recipe = _recipe()._replace(factors=(1.0, 2.0))
    with pytest.raises(SpecError, match="one per output channel"):
        plan_launches([_nv12()], _target(_recipe()), 0, recipe)


def test_values_beyond_float32_pack_as_infinity() -> None:
    recipe = _recipe()._replace(factors=(1e40, -1e39, 2.0), shifts=(float("nan"), 0.0, 0.0))
    shared = _shared(plan_launches([_nv12()], _target(recipe), 0, recipe)[0])
    assert shared[18:21] == (float("inf"), float("-inf"), 2.0)
    assert shared[22] != shared[22]  # NaN
