"""The torch frame executor (``_torch_frames``, the GPU fallback where the kernels are unavailable) on
CUDA tensors, against the NumPy reference on the same frames: every format, pitched planes, regions
at odd offsets, both resize modes, letterbox, every output dtype and layout, a pitched batch, and a
side stream. Within float32's tolerance (one unit for uint8), as on the CPU."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")

import torch

from frame_cases import assert_close, host_batch, random_planes, recipe, source_of
from gpuimage import GpuImage, ImageSpec
from gpuimage._executor import Buffer
from gpuimage._formats import FORMATS, ColorMatrix, ColorRange, ColorSpec, PixelFormat
from gpuimage._host_convert import EXECUTOR as HOST
from gpuimage._sampling import FrameSource, ResizeMode, SampleRecipe
from gpuimage._torch_convert import EXECUTOR as TORCH_EXECUTOR

pytestmark = pytest.mark.cuda

Array = npt.NDArray[Any]
DEVICE = "cuda:0"
_TORCH = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "uint8": torch.uint8,
}


def device_source(host: FrameSource, planes: list[Array], pitch_pad: int) -> FrameSource:
    """``host`` with its planes copied to the GPU, each row ``pitch_pad`` elements longer than it
    (a pitched plane, as decoders give)."""
    images = []
    for plane in planes:
        height, width, channels = plane.shape
        bits = plane.view(np.int16) if plane.dtype == np.uint16 else plane  # uint16 travels as its bits
        wide = torch.zeros(
            (height, width + pitch_pad, channels), dtype=torch.from_numpy(bits[:0]).dtype, device=DEVICE
        )
        wide[:, :width] = torch.from_numpy(np.ascontiguousarray(bits)).to(DEVICE)
        tensor = wide[:, :width]
        if plane.dtype == np.uint16:
            tensor = tensor.view(torch.uint16)
        images.append(GpuImage.from_torch(tensor, layout="HWC"))
    return host._replace(planes=tuple(images))


def device_run(
    sources: list[FrameSource], sample: SampleRecipe, dtype: str, layout: Any, stream: Any = None
) -> Array:
    """Every item through the torch executor into a pitched GPU batch (64 spare bytes per slot);
    the batch on the host as NumPy (bfloat16 as its bits), (N, C, H, W) or (N, H, W, C)."""
    channels = len(sample.order.value)
    shape = (
        (channels, sample.height, sample.width)
        if layout == "CHW"
        else (sample.height, sample.width, channels)
    )
    itemsize = torch.empty(0, dtype=_TORCH[dtype]).element_size()
    slot_bytes = int(np.prod(shape)) * itemsize + 64
    memory = torch.full((len(sources) * slot_bytes,), 77, dtype=torch.uint8, device=DEVICE)
    size = {"height": sample.height, "width": sample.width, "channels": channels}
    spec = ImageSpec(**size, dtype=cast(Any, dtype), layout=layout, device=DEVICE)
    target = Buffer(memory.data_ptr(), spec, memory)
    current = torch.cuda.current_stream()
    stream = stream or current
    stream.wait_stream(current)  # the fill above is queued on the current stream: a side stream follows it
    TORCH_EXECUTOR.convert_frames(sources, target, slot_bytes, sample, stream.cuda_stream)
    stream.synchronize()
    slots = memory.view(len(sources), slot_bytes)[:, : slot_bytes - 64].cpu().numpy()
    held = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)
    return np.ascontiguousarray(slots).view(held).reshape(len(sources), *shape)


def host_run(sources: list[FrameSource], sample: SampleRecipe, dtype: str, layout: Any) -> Array:
    channels = len(sample.order.value)
    batch, target, pitch = host_batch(len(sources), sample.height, sample.width, channels, dtype, layout)
    HOST.convert_frames(sources, target, pitch, sample, 0)
    return np.array(batch)


@st.composite
def frame_calls(draw: st.DrawFn) -> tuple[list[FrameSource], list[FrameSource], SampleRecipe, str, str]:
    format = draw(st.sampled_from(list(PixelFormat)))
    info = FORMATS[format]
    width = draw(st.integers(1, 40)) * info.subsample_x
    height = draw(st.integers(1, 30)) * info.subsample_y
    dtype = None if info.is_yuv else draw(st.sampled_from(["uint8", "uint16", "float32"]))
    planes = random_planes(
        np.random.default_rng(draw(st.integers(0, 2**32 - 1))), format, width, height, dtype
    )
    matrix, colour_range = draw(st.sampled_from(list(ColorMatrix))), draw(st.sampled_from(list(ColorRange)))
    colour = ColorSpec(matrix=matrix, range=colour_range) if info.is_yuv else None
    hosts, devices = [], []
    for _ in range(draw(st.integers(1, 4))):
        x, y = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        region = (x, y, draw(st.integers(1, width - x)), draw(st.integers(1, height - y)))
        host = source_of(planes, format, colour, region)
        hosts.append(host)
        devices.append(device_source(host, planes, draw(st.sampled_from([0, 3, 64]))))
    order = draw(st.sampled_from(["RGB", "BGR", "RGBA", "BGRA"]))
    target = draw(st.sampled_from(["float32", "float16", "bfloat16", "uint8"]))
    unit = 255.0 if target == "uint8" else 1.0
    channels = len(order)
    sample = recipe(
        draw(st.integers(1, 48)),
        draw(st.integers(1, 48)),
        resize=draw(st.sampled_from(["bilinear", "nearest"])),
        keep_aspect=draw(st.booleans()),
        order=order,
        factors=tuple(draw(st.floats(-3, 3)) * unit for _ in range(channels)),
        shifts=tuple(draw(st.floats(-1, 1)) * unit for _ in range(channels)),
        pad=draw(st.floats(-2, 2)) * unit,
    )
    return hosts, devices, sample, target, draw(st.sampled_from(["CHW", "HWC"]))


@given(call=frame_calls())
@settings(max_examples=80, deadline=None)
def test_torch_on_the_gpu_computes_what_numpy_computes(
    call: tuple[list[FrameSource], list[FrameSource], SampleRecipe, str, str],
) -> None:
    hosts, devices, sample, dtype, layout = call
    assert_close(
        host_run(hosts, sample, dtype, layout), device_run(devices, sample, dtype, layout), dtype, sample
    )


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_nv12_crops_to_a_letterboxed_model_batch(mode: ResizeMode) -> None:
    planes = random_planes(np.random.default_rng(11), PixelFormat.NV12, 320, 180)
    regions = [(0, 0, 320, 180), (17, 9, 101, 57), (301, 3, 19, 170), (5, 5, 1, 1)]
    hosts = [source_of(planes, PixelFormat.NV12, region=region) for region in regions]
    devices = [device_source(host, planes, 32) for host in hosts]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    sample = recipe(
        64, 64, resize=mode, keep_aspect=True, factors=tuple(1 / std), shifts=tuple(-mean / std), pad=0.0
    )
    for dtype in ("float32", "float16", "bfloat16"):
        want, got = host_run(hosts, sample, dtype, "CHW"), device_run(devices, sample, dtype, "CHW")
        assert_close(want, got, dtype, sample)


def test_a_side_stream_is_used_and_ordered() -> None:
    planes = random_planes(np.random.default_rng(12), PixelFormat.P010, 64, 32)
    host = source_of(planes, PixelFormat.P010, ColorSpec(matrix="BT2020", range="LIMITED"), (3, 1, 50, 29))
    device = device_source(host, planes, 0)
    torch.cuda.synchronize()  # the planes are ready: the side stream needs no wait
    side = torch.cuda.Stream()
    sample = recipe(20, 30, keep_aspect=True, pad=-1.0)
    got = device_run([device], sample, "float32", "HWC", stream=side)
    assert_close(host_run([host], sample, "float32", "HWC"), got, "float32", sample)
