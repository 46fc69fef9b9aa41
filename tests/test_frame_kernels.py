"""The frame kernel (``_frame_kernels`` and ``_frame_kernels.cu``) on CPU.

The launch path with the driver replaced: one launch per 32 items, on the stream and with the packed
parameters given, nothing queued when an item is refused, compile and launch failures as ``CudaError``
(with NVRTC's log). And the kernel source itself: where a host C++ compiler is found, the .cu is
compiled as host code (CUDA's keywords defined away, its two inline-PTX conversions as C++), run
over every thread of the grid with the parameters ``_frame_params`` packs, and compared with
``_sampling``'s definition computed here in float64. The GPU itself is tested in
``gpu/test_cuda_frame_kernels.py``.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gpuimage import (
    ChannelOrder,
    ColorSpec,
    CudaError,
    DTypeName,
    GpuImage,
    ImageSpec,
    PixelFormat,
    SpecError,
)
from gpuimage._colour import yuv_to_rgb
from gpuimage._executor import Buffer
from gpuimage._formats import FORMATS
from gpuimage._frame_params import BLOCK, ITEM, SHARED, FrameVariant, defines, frame_variant, params_bytes
from gpuimage._host_convert import from_accumulator
from gpuimage._layout import LayoutLike
from gpuimage._sampling import FrameSource, SampleRecipe, place, taps
from gpuimage._spec import trusted_spec

_frame_kernels = pytest.importorskip("gpuimage._frame_kernels", exc_type=ImportError)
import cupy  # noqa: E402  (after the skip: _frame_kernels needs it)

Array = npt.NDArray[Any]
BT601 = ColorSpec(matrix="BT601", range="LIMITED")


def _nv12(region: tuple[int, int, int, int], ptr: int = 0x7F0000000000) -> FrameSource:
    luma = Buffer(ptr, ImageSpec(height=48, width=64, channels=1, row_pitch=128), None)
    chroma = Buffer(ptr + 128 * 48, ImageSpec(height=24, width=32, channels=2, row_pitch=128), None)
    return FrameSource(PixelFormat.NV12, (luma, chroma), BT601, region)


def _recipe(height: int = 16, width: int = 16) -> SampleRecipe:
    return SampleRecipe(height, width, "bilinear", True, ChannelOrder.RGB, (1.0,) * 3, (0.0,) * 3, (0.0,) * 3)


def _target(recipe: SampleRecipe) -> Buffer:
    spec = ImageSpec(height=recipe.height, width=recipe.width, channels=3, dtype="float32", layout="CHW")
    return Buffer(0x7E0000000000, spec, None)


def test_a_call_queues_one_launch_per_32_items_on_its_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[tuple[Any, ...]] = []
    monkeypatch.setattr(_frame_kernels, "_launch", lambda *args: launched.append(args))
    recipe = _recipe()
    sources = [_nv12((i % 30, i % 20, 10, 10)) for i in range(40)]
    _frame_kernels.convert_frames(sources, _target(recipe), 4096, recipe, 0xBEEF)
    assert [(call[1], call[2], call[3]) for call in launched] == [
        (0, (1, 2, 32), 0xBEEF),
        (0, (1, 2, 8), 0xBEEF),
    ]
    launched.clear()
    _frame_kernels.convert_frames(sources[:32], _target(recipe), 4096, recipe, 0xBEEF)
    assert len(launched) == 1


def test_nothing_is_queued_when_a_later_item_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[tuple[Any, ...]] = []
    monkeypatch.setattr(_frame_kernels, "_launch", lambda *args: launched.append(args))
    recipe = _recipe()
    sources = [_nv12((0, 0, 10, 10))] * 40 + [
        _nv12((0, 0, 10, 10), ptr=0x7F0000000001)._replace(format=PixelFormat.NV21)
    ]
    with pytest.raises(SpecError):
        _frame_kernels.convert_frames(sources, _target(recipe), 4096, recipe, 0)
    assert launched == []


class _FakeFunction:
    ptr = 0x1234


def test_a_launch_passes_the_packed_struct_as_the_one_kernel_parameter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, ...]] = []
    statuses = [201, 0]  # CUDA_ERROR_INVALID_CONTEXT once: the device is made current and it is retried
    devices: list[int] = []

    def driver(*args: Any) -> int:
        parameters = ctypes.cast(args[9], ctypes.POINTER(ctypes.c_void_p))
        calls.append((*(value.value for value in args[:9]), parameters[0]))
        return statuses.pop(0)

    monkeypatch.setattr(_frame_kernels, "_function", lambda variant, device: _FakeFunction())
    monkeypatch.setattr(_frame_kernels, "_raw_launch", lambda: driver)
    monkeypatch.setattr(_frame_kernels, "_single_device", lambda: True)
    monkeypatch.setattr(cupy.cuda.runtime, "setDevice", devices.append)
    buffer = ctypes.create_string_buffer(64)
    variant = frame_variant(FORMATS[PixelFormat.NV12], "uint8", "bilinear", False, "float32", 3)
    _frame_kernels._launch(variant, 0, (7, 28, 8), 0xABC, buffer)
    expected = (0x1234, 7, 28, 8, *BLOCK, 0, 0xABC, ctypes.addressof(buffer))
    assert calls == [expected, expected]
    assert devices == [0]


def test_a_failed_launch_is_a_cuda_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_frame_kernels, "_function", lambda variant, device: _FakeFunction())
    monkeypatch.setattr(_frame_kernels, "_raw_launch", lambda: lambda *args: 1)
    monkeypatch.setattr(_frame_kernels, "_single_device", lambda: True)
    variant = frame_variant(FORMATS[PixelFormat.NV12], "uint8", "nearest", False, "uint8", 4)
    with pytest.raises(CudaError, match=r"launching the frame kernel .* failed: CUresult 1"):
        _frame_kernels._launch(variant, 0, (1, 1, 1), 0, ctypes.create_string_buffer(8))


def test_a_replay_writes_each_calls_pointers_and_packs_only_what_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``FramesReplay``: every launch carries its call's pointers; a loop over one frame and one
    ``out`` packs nothing again (the buffer holds them), a new frame or ``out`` repacks."""
    monkeypatch.setattr(_frame_kernels, "_function", lambda variant, device: _FakeFunction())
    sent: list[tuple[int, list[int]]] = []
    streams: list[int] = []

    def queue(variant: Any, device: int, grid: Any, args: tuple[Any, ...]) -> None:
        parameters = ctypes.cast(args[-2], ctypes.POINTER(ctypes.c_void_p))[0]
        block = ctypes.string_at(parameters, params_bytes(variant.capacity))
        plane_0 = [
            int.from_bytes(block[offset : offset + 8], "little")
            for offset in range(SHARED.size, len(block), ITEM.size)
        ]
        sent.append((int.from_bytes(block[:8], "little"), plane_0))
        streams.append(args[-3].value)

    monkeypatch.setattr(_frame_kernels, "_queue", queue)
    packed: list[int] = []
    real_repack = _frame_kernels.repack

    def repack(part: Any, *rest: Any) -> None:
        packed.append(part.start)
        real_repack(part, *rest)

    monkeypatch.setattr(_frame_kernels, "repack", repack)
    recipe = _recipe()
    sources = [_nv12((i, i, 10, 10)) for i in range(3)]
    replay = _frame_kernels.FramesReplay(sources, _target(recipe), 4096, recipe)
    first, second = (0x7F0000000000, 0x7F0000001800, 0), (0x7D0000000000, 0x7D0000001800, 0)
    replay([first] * 3, 0x7E0000000000, 5)
    replay([first] * 3, 0x7E0000000000, 5)
    assert len(packed) == 1
    replay([first, second, first], 0x7E0000000000, 5)
    replay([first, second, first], 0x7E0000010000, 7)  # another stream: its own launch arguments
    assert len(packed) == 3
    assert streams == [5, 5, 5, 7]
    frame_0, frame_1 = first[0], second[0]
    assert sent == [
        (0x7E0000000000, [frame_0] * 3 + [0] * 5),  # capacity 8: three items, five unused records
        (0x7E0000000000, [frame_0] * 3 + [0] * 5),
        (0x7E0000000000, [frame_0, frame_1, frame_0] + [0] * 5),
        (0x7E0000010000, [frame_0, frame_1, frame_0] + [0] * 5),
    ]


class _NoDevice:
    def __init__(self, device: int) -> None:
        pass

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_failed_compilation_is_a_cuda_error_with_the_nvrtc_log(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(source: str, options: Any) -> Any:
        assert source.startswith(defines(variant))
        assert "--fmad=false" in options
        raise cupy.cuda.compiler.CompileException("kern.cu(7): error: the NVRTC log", source, "kern", options)

    variant = frame_variant(FORMATS[PixelFormat.I420], "uint8", "bilinear", False, "float16", 3)
    monkeypatch.setattr(cupy.cuda, "Device", _NoDevice)
    monkeypatch.setattr(cupy.cuda.compiler, "compile_using_nvrtc", fail)
    with pytest.raises(CudaError, match=r"(?s)compiling the frame kernel.*the NVRTC log.*#define SRC_KIND 2"):
        _frame_kernels._function.__wrapped__(variant, 0)


# ---- the kernel source, run on the host ----------------------------------------------------------

_SHIM = """#include <cmath>
#include <cstring>
#include <algorithm>
struct Dim3 { unsigned x, y, z; };
static Dim3 blockIdx, threadIdx, blockDim = {32, 8, 1};
#define __device__
#define __forceinline__ inline
#define __global__
#define __launch_bounds__(n)
#define __grid_constant__
using std::min;
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
struct float4 { float x, y, z, w; };
struct uint2 { unsigned x, y; };
"""
_RUN = """
extern "C" void run(const Params* params, unsigned gx, unsigned gy, unsigned gz) {
  for (unsigned z = 0; z < gz; ++z) for (unsigned by = 0; by < gy; ++by) for (unsigned bx = 0; bx < gx; ++bx)
    for (unsigned ty = 0; ty < 8; ++ty) for (unsigned tx = 0; tx < 32; ++tx) {
      blockIdx = {bx, by, z}; threadIdx = {tx, ty, 0}; gpuimage_frames(*params);
    }
}
"""
_PTX = {  # the kernel's inline PTX conversions, as C++ (_Float16 rounds to nearest even, as cvt.rn)
    r'asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(value));': (
        "{ _Float16 h = (_Float16)value; memcpy(&bits, &h, 2); }"
    ),
    r'asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(bits));': (
        "{ _Float16 h; memcpy(&h, &bits, 2); value = (float)h; }"
    ),
}
_PTX.update(  # the vector stores (.cs: a cache hint, nothing to emulate)
    {
        r'asm volatile("st.global.cs.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(at), "f"(value[0]), "f"(value[1]),'
        '\n               "f"(value[2]), "f"(value[3]) : "memory");': (
            "{ const float quad[4] = {value[0], value[1], value[2], value[3]}; memcpy(at, quad, 16); }"
        ),
        r'asm volatile("st.global.cs.u32 [%0], %1;" ::"l"(at), "r"(word) : "memory");': (
            "memcpy(at, &word, 4);"
        ),
        r'asm volatile("st.global.cs.v2.u32 [%0], {%1, %2};" ::"l"(at), "r"(low), "r"(high) : "memory");': (
            "{ const unsigned pair[2] = {low, high}; memcpy(at, pair, 8); }"
        ),
    }
)
_compiler = shutil.which("g++")


def _host_kernel(variant: FrameVariant, folder: Path) -> ctypes.CDLL:
    source = resources.files("gpuimage").joinpath("_frame_kernels.cu").read_text(encoding="utf-8")
    for ptx, cpp in _PTX.items():
        assert ptx in source
        source = source.replace(ptx, cpp)
    name = "_".join(str(value) for value in variant)
    path = folder / f"{name}.cpp"
    path.write_text(_SHIM + defines(variant) + source + _RUN, encoding="utf-8")
    assert _compiler is not None
    command = [
        _compiler,
        "-O1",
        "-std=c++17",
        "-ffp-contract=off",
        "-shared",
        "-fPIC",
        "-o",
        f"{path}.so",
        str(path),
    ]
    subprocess.run(command, check=True, capture_output=True)
    return ctypes.CDLL(f"{path}.so")


def _values(planes: list[Array], format: PixelFormat, dtype: str, order: ChannelOrder) -> Array:
    """Step 1 of ``_sampling`` for every pixel of the frame, in float64."""
    info = FORMATS[format]
    if info.is_yuv:
        flat = [plane[..., 0] if plane.shape[2] == 1 else plane for plane in planes]
        return yuv_to_rgb(flat, format, BT601, order=order, dtype="float32").astype(np.float64)
    stored = planes[0]
    codes = (stored.astype(np.uint32) << 16).view(np.float32) if dtype == "bfloat16" else stored
    unit = {"uint8": 1 / 255, "uint16": 1 / 65535}.get(dtype, 1.0)
    values = codes.astype(np.float64) * unit
    names = info.planes[0].components
    channels = [
        (values[..., names.index("A")] if "A" in names else np.ones(values.shape[:2]))
        if name == "A"
        else values[..., 0 if names == ("Y",) else names.index(name)]
        for name in order.value
    ]
    return np.stack(channels, axis=-1)


def _expected(values: Array, region: tuple[int, int, int, int], recipe: SampleRecipe) -> Array:
    """Steps 2-5 of ``_sampling`` for one item, in float64, before the store."""
    x, y, width, height = region
    out = np.empty((recipe.height, recipe.width, len(recipe.order.value)))
    out[...] = recipe.pad
    placement = place(width, height, recipe.width, recipe.height, recipe.keep_aspect)
    crop = values[y : y + height, x : x + width]
    for dy in range(placement.height):
        y0, y1, fy = taps(dy, placement.height, height, recipe.resize)
        for dx in range(placement.width):
            x0, x1, fx = taps(dx, placement.width, width, recipe.resize)
            top = (1 - fx) * crop[y0, x0] + fx * crop[y0, x1]
            bottom = (1 - fx) * crop[y1, x0] + fx * crop[y1, x1]
            value = (1 - fy) * top + fy * bottom
            out[placement.y + dy, placement.x + dx] = value * np.array(recipe.factors) + np.array(
                recipe.shifts
            )
    return out


def _as_values(stored: Array, dtype: str) -> Array:
    if dtype == "bfloat16":
        return (stored.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return stored.astype(np.float64)


def _plane(
    rng: np.random.Generator, shape: tuple[int, int, int], dtype: str, *, aligned: bool = False
) -> Array:
    """Random samples in a pitched array: 5 elements of padding a row, or (``aligned``) the fewest
    that start every row at a 16-byte boundary, where the kernel may take its vector loads."""
    if dtype in ("uint8", "uint16"):
        samples = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    elif dtype == "bfloat16":
        samples = (rng.uniform(-0.1, 1.1, shape).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    else:
        samples = rng.uniform(-0.1, 1.1, shape).astype(dtype)
    pad = 5
    if aligned:
        pad = next(p for p in range(1, 17) if (shape[1] + p) * shape[2] * samples.itemsize % 16 == 0)
    wide = np.zeros((shape[0], shape[1] + pad, shape[2]), samples.dtype)
    assert not aligned or wide.ctypes.data % 16 == 0
    wide[:, : shape[1]] = samples
    return wide[:, : shape[1]]


def _operand(array: Array, dtype: DTypeName, layout: LayoutLike) -> Buffer:
    """A host operand of ``array`` (bfloat16: its uint16 bits) in ``layout``."""
    image = GpuImage.from_numpy(array, layout=layout)
    spec = trusted_spec(image.spec.geometry, dtype, image.spec.layout, image.spec.device)
    return Buffer(image.ptr, spec, array)


CASES: list[tuple[Any, ...]] = [  # format, samples, order, output, layout, resize, letterbox, slot (h, w)
    ("NV12", "uint8", "RGB", "float32", "CHW", "bilinear", True, (16, 20)),
    ("NV21", "uint8", "BGRA", "float16", "HWC", "nearest", False, (9, 33)),
    ("P010", "uint16", "RGB", "uint8", "CHW", "bilinear", False, (12, 7)),
    ("I420", "uint8", "BGR", "bfloat16", "CHW", "bilinear", False, (12, 18)),
    ("NV16", "uint8", "RGBA", "float32", "HWC", "nearest", True, (20, 12)),
    ("YUV444", "uint8", "RGB", "float32", "CHW", "bilinear", False, (12, 18)),
    ("BGRA", "uint8", "RGBA", "uint8", "HWC", "bilinear", True, (16, 20)),
    ("GRAY", "uint16", "BGR", "float32", "CHW", "nearest", False, (16, 20)),
    ("RGB", "bfloat16", "BGRA", "float32", "CHW", "bilinear", False, (12, 18)),
    ("NV12", "uint8", "BGR", "float32", "CHW", "unresized", False, (12, 18)),  # the identity variant
    ("P016", "uint16", "RGBA", "uint8", "HWC", "unresized", False, (12, 18)),
    # planar slots whose rows start at 4-element boundaries: the vector stores, and a scalar tail
    ("NV12", "uint8", "RGB", "float32", "CHW", "unresized", False, (6, 20)),
    ("I420", "uint8", "BGR", "float16", "CHW", "unresized", False, (6, 12)),
    ("NV12", "uint8", "RGB", "bfloat16", "CHW", "unresized", False, (4, 60)),
    ("YUV444", "uint8", "RGB", "uint8", "CHW", "unresized", False, (6, 36)),
    ("P010", "uint16", "BGR", "float32", "CHW", "unresized", False, (6, 24)),
    ("NV16", "uint8", "RGBA", "float16", "CHW", "unresized", False, (6, 16)),
]
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2, "uint8": 1.0}


@pytest.mark.skipif(_compiler is None, reason="no host C++ compiler (g++) to run the kernel source with")
@pytest.mark.parametrize(
    "case", CASES, ids=[f"{case[0]}-{case[1]}-{case[3]}-{case[4]}-{case[5]}" for case in CASES]
)
def test_the_kernel_source_computes_the_definition(
    case: tuple[Any, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    format_name, source_dtype, order_name, dtype, layout, resize, keep_aspect, (height, width) = case
    format, order = PixelFormat(format_name), ChannelOrder(order_name)
    info = FORMATS[format]
    channels = len(order.value)
    factors = (255.0,) * channels if dtype == "uint8" else (4.4, 4.5, 4.6, 2.0)[:channels]
    shifts = (0.0,) * channels if dtype == "uint8" else (-2.1, -2.0, -1.8, -1.0)[:channels]
    pad = (114.0,) * channels if dtype == "uint8" else (0.5, -0.25, 0.0, 7.0)[:channels]
    corner = (74 - width, 46 - height, width, height)
    if resize == "unresized":  # every region as large as the slot: the variant without interpolation
        resize, regions = "bilinear", [(0, 0, width, height), (3, 5, width, height), corner]
    else:
        regions = [
            (0, 0, 74, 46),
            (3, 5, 11, 13),
            (1, 1, 1, 1),
            (20, 2, width, height),
            (73, 45, 1, 1),
            corner,
        ]
    recipe = SampleRecipe(height, width, resize, keep_aspect, order, factors, shifts, pad)
    rng = np.random.default_rng(13)
    vector = layout == "CHW" and case[5] == "unresized" and width % 4 == 0  # the kernel's vector path
    frames = [
        [
            _plane(
                rng,
                (46 // plane.subsample_y, 74 // plane.subsample_x, plane.channels),
                source_dtype,
                aligned=vector,
            )
            for plane in info.planes
        ]
        for _ in regions
    ]
    carrier = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)
    # 3 elements of padding a row, never written; 4 where a planar slot's rows can then start at
    # 4-element boundaries, so the kernel takes its vector stores
    row = width + (4 if vector else 3)
    shape = (
        (len(regions), channels, height, row) if layout == "CHW" else (len(regions), height, row, channels)
    )
    batch = np.full(shape, 77, carrier)
    assert not vector or batch.ctypes.data % (4 * batch.itemsize) == 0
    slots = batch[..., :width] if layout == "CHW" else batch[:, :, :width]
    sources = [
        FrameSource(
            format,
            tuple(_operand(plane, source_dtype, "HWC") for plane in planes),
            BT601 if info.is_yuv else None,
            region,
        )
        for planes, region in zip(frames, regions, strict=True)
    ]
    kernels: dict[FrameVariant, ctypes.CDLL] = {}
    variants: set[int] = set()

    def run_on_host(
        variant: FrameVariant, device: int, grid: tuple[int, int, int], stream: int, parameters: Any
    ) -> None:
        if variant not in kernels:
            kernels[variant] = _host_kernel(variant, tmp_path)
        variants.add(variant.resize)
        kernels[variant].run(ctypes.cast(parameters, ctypes.c_void_p), *grid)

    monkeypatch.setattr(_frame_kernels, "_launch", run_on_host)
    _frame_kernels.convert_frames(sources, _operand(slots[0], dtype, layout), batch.strides[0], recipe, 0)
    for index, (planes, region) in enumerate(zip(frames, regions, strict=True)):
        want = _as_values(
            from_accumulator(_expected(_values(planes, format, source_dtype, order), region, recipe), dtype),
            dtype,
        )
        stored = slots[index] if layout == "HWC" else slots[index].transpose(1, 2, 0)
        got = _as_values(stored, dtype)
        limit = TOLERANCE[dtype] * (1 if dtype == "uint8" else np.maximum(1.0, np.abs(want)))
        worst = np.argmax(np.abs(got - want) - limit)
        assert np.all(np.abs(got - want) <= limit), (
            f"item {index} region {region}: got {got.flat[worst]}, want {want.flat[worst]} at {worst}"
        )
    assert np.all((batch[..., width:] if layout == "CHW" else batch[:, :, width:]) == 77)
    assert variants == {0 if case[5] == "unresized" else 2 if resize == "bilinear" else 1}
