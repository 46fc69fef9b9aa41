"""The frame kernel on a GPU: ``KernelExecutor.convert_frames`` against the NumPy reference
(``HostExecutor.convert_frames``, ``_sampling``'s definition in float64) and against OpenCV.

Every source format (NV12, NV21, I420, P010, P016, NV16, YUV444; GRAY and the packed RGB orders in
uint8, uint16, float16, bfloat16, float32), every output dtype and layout, both resize modes and the
unresized variant, letterboxes, pitched planes, regions at odd offsets, 1x1 regions, items from
different frames, more than 32 items (several launches), a side stream. The kernel computes in
float32 and the reference in float64: values are compared within one float32/float16/bfloat16
rounding (relative, at least 1.0 wide) and uint8 within 1. Run with ``-s`` to see the timings of the
last test (1080p NV12 -> 8 ROIs -> 8x3x224x224, and a whole 4K frame against a device copy).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("cupy")
pytest.importorskip("torch")
pytest.importorskip("cv2")

import cv2
import numpy as np
import numpy.typing as npt
import torch

from gpuimage import ChannelOrder, ColorSpec, DTypeName, GpuImage, PixelFormat
from gpuimage._executor import Buffer
from gpuimage._formats import FORMATS
from gpuimage._host_convert import EXECUTOR as HOST
from gpuimage._kernel_convert import EXECUTOR as KERNELS
from gpuimage._layout import LayoutLike
from gpuimage._sampling import FrameSource, SampleRecipe
from gpuimage._spec import trusted_spec

from ._support import TORCH_DTYPES

pytestmark = pytest.mark.cuda

Array = npt.NDArray[Any]
BT601 = ColorSpec(matrix="BT601", range="LIMITED")
BT709 = ColorSpec(matrix="BT709", range="LIMITED")
BT2020_FULL = ColorSpec(matrix="BT2020", range="FULL")
TOLERANCE = {"float32": 2e-5, "float16": 2e-3, "bfloat16": 1e-2, "uint8": 1.0}
_BITS = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}
_CARRIER = {"bfloat16": np.uint16}  # NumPy has no bfloat16: its bits


def _carrier(dtype: str) -> Any:
    return _CARRIER[dtype] if dtype in _CARRIER else np.dtype(dtype)


def _device(array: Array, dtype: DTypeName) -> torch.Tensor:
    """A CUDA tensor of ``array``'s elements (bfloat16 given as its bits)."""
    bits = np.ascontiguousarray(array).view(_BITS[array.itemsize])
    return torch.from_numpy(bits).cuda().view(TORCH_DTYPES[dtype])


def _host_operand(array: Array, dtype: DTypeName, layout: LayoutLike) -> Buffer:
    image = GpuImage.from_numpy(array, layout=layout)
    return Buffer(
        image.ptr, trusted_spec(image.spec.geometry, dtype, image.spec.layout, image.spec.device), array
    )


def _samples(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> Array:
    if dtype in ("uint8", "uint16"):
        return rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    values = rng.uniform(-0.1, 1.1, shape).astype(np.float32)
    if dtype == "bfloat16":
        return (values.view(np.uint32) >> 16).astype(np.uint16)
    return values.astype(dtype)


class Frame:
    """One frame's planes: random samples in pitched host arrays, and the same on the GPU."""

    def __init__(
        self,
        format: PixelFormat,
        width: int,
        height: int,
        dtype: DTypeName,
        rng: np.random.Generator,
        colour: ColorSpec = BT601,
    ) -> None:
        info = FORMATS[format]
        self.format = format
        self.dtype: DTypeName = dtype
        self.colour = colour if info.is_yuv else None
        self.host: list[Array] = []
        self.device: list[GpuImage[Any, Any]] = []
        for plane in info.planes:
            shape = (height // plane.subsample_y, width // plane.subsample_x, plane.channels)
            wide = np.zeros((shape[0], shape[1] + 40, shape[2]), _carrier(dtype))  # a pitch beyond the row
            wide[:, : shape[1]] = _samples(rng, shape, dtype)
            self.host.append(wide[:, : shape[1]])
            on_device = _device(wide, dtype)[:, : shape[1]]
            self.device.append(GpuImage.from_torch(on_device, layout="HWC"))

    def sources(self, region: tuple[int, int, int, int]) -> tuple[FrameSource, FrameSource]:
        """(device, host) sources of ``region``."""
        host = tuple(_host_operand(plane, self.dtype, "HWC") for plane in self.host)
        return (
            FrameSource(self.format, tuple(self.device), self.colour, region),
            FrameSource(self.format, host, self.colour, region),
        )


def _recipe(
    height: int, width: int, order: ChannelOrder, dtype: str, resize: Any, keep_aspect: bool
) -> SampleRecipe:
    channels = len(order.value)
    if dtype == "uint8":
        return SampleRecipe(
            height,
            width,
            resize,
            keep_aspect,
            order,
            (255.0,) * channels,
            (0.0,) * channels,
            (114.0,) * channels,
        )
    factors = (1 / 0.229, 1 / 0.224, 1 / 0.225, 2.0)[:channels]
    shifts = (-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225, -1.0)[:channels]
    return SampleRecipe(
        height, width, resize, keep_aspect, order, factors, shifts, (0.5, -0.25, 0.0, 7.0)[:channels]
    )


def _values(stored: Array, dtype: str) -> Array:
    if dtype == "bfloat16":
        return (stored.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return stored.astype(np.float64)


def _convert_both(
    pairs: list[tuple[FrameSource, FrameSource]],
    recipe: SampleRecipe,
    dtype: DTypeName,
    layout: Any,
    stream: Any = None,
) -> tuple[Array, Array]:
    """The batch the kernels write and the one the NumPy reference writes, as float64 NHWC values."""
    channels = len(recipe.order.value)
    count = len(pairs)
    shape = (
        (count, channels, recipe.height, recipe.width + 8)
        if layout == "CHW"
        else (count, recipe.height, recipe.width + 8, channels)
    )
    host = np.full(shape, 77, _carrier(dtype))  # 8 elements of row padding: never written
    device = _device(host, dtype)
    host_slots = host[..., : recipe.width] if layout == "CHW" else host[:, :, : recipe.width]
    device_slots = device[..., : recipe.width] if layout == "CHW" else device[:, :, : recipe.width]
    target = GpuImage.from_torch(device_slots[0], layout=layout)
    item_pitch = device.stride(0) * device.element_size()
    stream = stream or torch.cuda.current_stream()
    stream.wait_stream(torch.cuda.current_stream())  # the uploads: executors are handed ordered streams
    KERNELS.convert_frames([pair[0] for pair in pairs], target, item_pitch, recipe, stream.cuda_stream)
    stream.synchronize()
    HOST.convert_frames(
        [pair[1] for pair in pairs], _host_operand(host_slots[0], dtype, layout), host.strides[0], recipe, 0
    )
    got = device.cpu()
    got_bits = got.view(torch.int16).numpy().view(np.uint16) if dtype == "bfloat16" else got.numpy()
    padding = got_bits[..., recipe.width :] if layout == "CHW" else got_bits[:, :, recipe.width :]
    assert np.all(padding == 77), "the kernel wrote into the row padding of the batch"
    got_slots = got_bits[..., : recipe.width] if layout == "CHW" else got_bits[:, :, : recipe.width]
    if layout == "CHW":
        got_slots, host_slots = got_slots.transpose(0, 2, 3, 1), host_slots.transpose(0, 2, 3, 1)
    return _values(got_slots, dtype), _values(host_slots, dtype)


def assert_close(got: Array, want: Array, dtype: str) -> None:
    limit = TOLERANCE[dtype] * (1.0 if dtype == "uint8" else np.maximum(1.0, np.abs(want)))
    bad = np.abs(got - want) > limit
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} values beyond {TOLERANCE[dtype]} ({dtype}); first at "
            f"(item, y, x, channel)={first}: kernel {got[first]}, reference {want[first]}"
        )


CASES: list[tuple[Any, ...]] = [  # format, samples, order, output, layout, resize, letterbox
    ("NV12", "uint8", "RGB", "float32", "CHW", "bilinear", True),
    ("NV12", "uint8", "BGR", "uint8", "HWC", "nearest", False),
    ("NV21", "uint8", "RGBA", "float16", "CHW", "bilinear", False),
    ("I420", "uint8", "BGRA", "bfloat16", "HWC", "nearest", True),
    ("P010", "uint16", "RGB", "float32", "CHW", "bilinear", False),
    ("P016", "uint16", "BGR", "float16", "HWC", "bilinear", True),
    ("NV16", "uint8", "RGB", "uint8", "CHW", "nearest", False),
    ("YUV444", "uint8", "RGB", "bfloat16", "CHW", "bilinear", False),
    ("GRAY", "uint8", "RGB", "float32", "CHW", "bilinear", False),
    ("RGB", "uint8", "BGR", "float32", "HWC", "bilinear", True),
    ("BGR", "uint16", "RGB", "float16", "CHW", "nearest", False),
    ("RGBA", "float32", "BGRA", "float32", "CHW", "bilinear", False),
    ("BGRA", "uint8", "RGBA", "uint8", "HWC", "bilinear", False),
    ("RGB", "float16", "RGB", "bfloat16", "CHW", "bilinear", True),
    ("BGR", "bfloat16", "RGB", "float32", "HWC", "nearest", False),
]


@pytest.mark.parametrize(
    "case", CASES, ids=["-".join(case[:6]) + ("-letterbox" if case[6] else "") for case in CASES]
)
def test_frames_match_the_numpy_reference(case: tuple[Any, ...]) -> None:
    format_name, samples, order, dtype, layout, resize, keep_aspect = case
    rng = np.random.default_rng(13)
    colour = (BT601, BT709, BT2020_FULL)[CASES.index(case) % 3]
    recipe = _recipe(40, 56, ChannelOrder(order), dtype, resize, keep_aspect)
    regions = [
        (0, 0, 160, 96),
        (3, 5, 31, 17),
        (1, 1, 1, 1),
        (77, 33, 56, 40),
        (159, 95, 1, 1),
        (10, 60, 150, 36),
    ]
    frames = [Frame(PixelFormat(format_name), 160, 96, samples, rng, colour) for _ in regions]
    got, want = _convert_both(
        [frame.sources(region) for frame, region in zip(frames, regions, strict=True)], recipe, dtype, layout
    )
    assert_close(got, want, dtype)


@pytest.mark.parametrize("format_name", ["NV12", "P010", "I420", "YUV444"])
def test_unresized_regions_take_the_plain_read_and_match(format_name: str) -> None:
    rng = np.random.default_rng(1)
    samples: DTypeName = "uint16" if format_name == "P010" else "uint8"
    recipe = _recipe(64, 96, ChannelOrder.RGB, "float32", "bilinear", False)
    frames = [Frame(PixelFormat(format_name), 160, 96, samples, rng) for _ in range(3)]
    regions = [(0, 0, 96, 64), (17, 9, 96, 64), (64, 32, 96, 64)]
    got, want = _convert_both(
        [frame.sources(region) for frame, region in zip(frames, regions, strict=True)],
        recipe,
        "float32",
        "CHW",
    )
    assert_close(got, want, "float32")


def test_70_items_of_many_frames_take_three_launches_on_a_side_stream() -> None:
    rng = np.random.default_rng(2)
    frames = [Frame(PixelFormat.NV12, 96, 64, "uint8", rng) for _ in range(7)]
    regions = [(i % 50, i % 30, 10 + i % 40, 6 + i % 30) for i in range(70)]
    pairs = [frames[i % 7].sources(region) for i, region in enumerate(regions)]
    recipe = _recipe(24, 32, ChannelOrder.RGB, "float32", "bilinear", True)
    side = torch.cuda.Stream()
    got, want = _convert_both(pairs, recipe, "float32", "CHW", stream=side)
    assert_close(got, want, "float32")


def _nv12_1080p(
    rng: np.random.Generator, pitch: int = 2048
) -> tuple[Array, torch.Tensor, list[GpuImage[Any, Any]]]:
    """A 1080p NV12 frame in one pitched allocation as a decoder gives it: (packed host copy for OpenCV,
    the device allocation, its two plane views)."""
    height, width = 1080, 1920
    # smooth content with noise, so that limited-range luma mostly lies above 16
    y = (
        (np.linspace(16, 235, width)[None, :] + rng.normal(0, 12, (height, width)))
        .clip(0, 255)
        .astype(np.uint8)
    )
    uv = rng.integers(16, 241, (height // 2, width)).astype(np.uint8)
    packed = np.concatenate([y, uv])
    memory = torch.zeros((height * 3 // 2, pitch), dtype=torch.uint8, device="cuda")
    memory[:, :width] = torch.from_numpy(packed).cuda()
    luma = GpuImage.from_torch(memory[:height, :width].unsqueeze(-1), layout="HWC")
    chroma = GpuImage.from_torch(memory[height:, :width].unflatten(1, (width // 2, 2)), layout="HWC")
    return packed, memory, [luma, chroma]


def test_nv12_bt601_limited_matches_opencv_within_1() -> None:
    packed, _memory, planes = _nv12_1080p(np.random.default_rng(3))
    recipe = SampleRecipe(
        1080, 1920, "bilinear", False, ChannelOrder.RGB, (255.0,) * 3, (0.0,) * 3, (0.0,) * 3
    )
    out = torch.empty((1080, 1920, 3), dtype=torch.uint8, device="cuda")
    source = FrameSource(PixelFormat.NV12, tuple(planes), BT601, (0, 0, 1920, 1080))
    stream = torch.cuda.current_stream()
    KERNELS.convert_frames([source], GpuImage.from_torch(out, layout="HWC"), 0, recipe, stream.cuda_stream)
    stream.synchronize()
    want = cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_NV12).astype(np.int64)
    got = out.cpu().numpy().astype(np.int64)
    above_footroom = packed[:1080] >= 16  # OpenCV clamps Y - 16 at 0 first; the definition keeps it
    difference = np.abs(got - want)[above_footroom]
    assert difference.max() <= 1, f"{int((difference > 1).sum())} values differ from OpenCV by more than 1"
    assert above_footroom.mean() > 0.9


def _gpu_us(run: Any, repeats: int = 50) -> float:
    """GPU time per call: the calls are queued behind a sleep kernel (about 50 ms), so the host's own
    time per call does not pace them."""
    run()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(10**8)
    start.record()
    for _ in range(repeats):
        run()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end)) * 1000 / repeats


def test_timings_1080p_rois_and_4k_against_a_device_copy() -> None:
    """The benchmark's case (a pitched 1080p NV12 frame, 8 ROIs, letterboxed into 224x224, ImageNet
    normalization) against the reference, and its GPU times printed (loose bounds: the benchmark
    judges the targets)."""
    rng = np.random.default_rng(4)
    packed, _memory, planes = _nv12_1080p(rng)
    recipe = _recipe(224, 224, ChannelOrder.RGB, "float32", "bilinear", True)
    boxes = [
        (0, 0, 1920, 1080),
        (100, 50, 300, 600),
        (960, 540, 224, 224),
        (1, 3, 37, 411),
        (1500, 20, 400, 300),
        (700, 700, 640, 380),
        (5, 900, 900, 180),
        (1800, 1000, 120, 80),
    ]
    sources = [FrameSource(PixelFormat.NV12, tuple(planes), BT601, box) for box in boxes]
    batch = torch.empty((8, 3, 224, 224), dtype=torch.float32, device="cuda")
    target = GpuImage.from_torch(batch[0], layout="CHW")
    handle = torch.cuda.current_stream().cuda_stream
    rois_us = _gpu_us(lambda: KERNELS.convert_frames(sources, target, 3 * 224 * 224 * 4, recipe, handle))
    memory = torch.empty((2160 * 3 // 2, 3840), dtype=torch.uint8, device="cuda").random_(0, 256)
    luma = GpuImage.from_torch(memory[:2160].unsqueeze(-1), layout="HWC")
    chroma = GpuImage.from_torch(memory[2160:].unflatten(1, (1920, 2)), layout="HWC")
    whole = FrameSource(PixelFormat.NV12, (luma, chroma), BT709, (0, 0, 3840, 2160))
    planar = torch.empty((3, 2160, 3840), dtype=torch.float32, device="cuda")
    identity = SampleRecipe(
        2160, 3840, "bilinear", False, ChannelOrder.RGB, (1.0,) * 3, (0.0,) * 3, (0.0,) * 3
    )
    out = GpuImage.from_torch(planar, layout="CHW")
    frame_us = _gpu_us(lambda: KERNELS.convert_frames([whole], out, 0, identity, handle))
    moved = memory.numel() + planar.numel() * 4  # bytes read + written
    copy_source = torch.empty(moved // 2, dtype=torch.uint8, device="cuda")
    copy_target = torch.empty_like(copy_source)
    copy_us = _gpu_us(
        lambda: copy_target.copy_(copy_source)
    )  # moves the same bytes (half read, half written)
    ratio = copy_us / frame_us
    print(
        f"\nframe kernel on {torch.cuda.get_device_name()}: 1080p NV12 -> 8 ROIs -> 8x3x224x224 float32 "
        f"{rois_us:.1f} us; 4K NV12 -> RGB CHW float32 {frame_us:.1f} us "
        f"({moved / frame_us / 1e3:.0f} GB/s), "
        f"device copy of the same bytes {copy_us:.1f} us: {ratio:.2f} of copy bandwidth"
    )
    torch.cuda.synchronize()
    host_planes = (packed[:1080, :, None], packed[1080:].reshape(540, 960, 2))
    host_sources = [
        source._replace(planes=tuple(_host_operand(p, "uint8", "HWC") for p in host_planes))
        for source in sources
    ]
    want = np.zeros((8, 3, 224, 224), np.float32)
    HOST.convert_frames(host_sources, _host_operand(want[0], "float32", "CHW"), want.strides[0], recipe, 0)
    assert_close(batch.cpu().numpy().astype(np.float64), want.astype(np.float64), "float32")
    assert rois_us < 100
    assert ratio > 0.5
