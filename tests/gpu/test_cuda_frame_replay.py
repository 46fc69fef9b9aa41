"""A frame loop's ``normalize_batch`` replayed on a GPU (``_frame_replay``, ``FramesReplay``): after the
first call of a kind, each frame's call only writes its pointers and launches. Every replayed result
is compared with the NumPy reference of the same frame (the host path of the same call), including a
frame still being written on the decoder's stream, P010 (2-byte planes), and 40 regions (two
launches)."""

from __future__ import annotations

from typing import Any, Literal

import pytest

pytest.importorskip("cupy")
pytest.importorskip("torch")

import numpy as np
import numpy.typing as npt
import torch

import gpuimage as gi
from gpuimage import ColorSpec, GpuFrame
from gpuimage._formats import PixelFormatLike

from ._support import count_replayed_launches

pytestmark = pytest.mark.cuda

BT709 = ColorSpec(matrix="BT709", range="LIMITED")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALIZE_BATCH: Any = gi.normalize_batch  # like= chosen by a parameter


def _rois(count: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """``count`` regions at varied offsets and sizes, all inside the frame."""
    boxes = []
    for index in range(count):
        x, y = 3 * index % (width // 2), 5 * index % (height // 2)
        boxes.append((x, y, min(width // 3 + index, width - x), min(height // 3 + 2 * index % 7, height - y)))
    return boxes


def _host_result(
    frame_data: torch.Tensor,
    fmt: PixelFormatLike,
    rois: list[tuple[int, int, int, int]],
    size: tuple[int, int],
) -> npt.NDArray[np.float32]:
    host = GpuFrame.from_dlpack(frame_data.cpu().numpy(), format=fmt, colour=BT709)
    out = np.empty((len(rois), 3, *size), np.float32)
    gi.normalize_batch([host] * len(rois), MEAN, STD, rois=rois, size=size, resize="bilinear", out=out)
    return out


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return count_replayed_launches(monkeypatch)


def _frame_tensor(height: int, width: int, seed: int, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    generator = torch.Generator(device="cuda").manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(
            16, 236, (height * 3 // 2, width), dtype=dtype, device="cuda", generator=generator
        )
    codes = torch.randint(
        64, 941, (height * 3 // 2, width), dtype=torch.int32, device="cuda", generator=generator
    )
    return (codes << 6).to(torch.uint16)


@pytest.mark.parametrize(("fmt", "count"), [("NV12", 8), ("P010", 8), ("NV12", 40)])
def test_replayed_frames_match_the_reference(fmt: PixelFormatLike, count: int, launches: list[int]) -> None:
    height, width, size = 96, 128, (24, 32)
    dtype = torch.uint8 if fmt == "NV12" else torch.uint16
    rois = _rois(count, width, height)
    out = torch.empty(count, 3, *size, device="cuda")
    for seed in range(4):  # the first call is checked in full, the next three are replayed
        data = _frame_tensor(height, width, seed, dtype)
        frame = GpuFrame.from_dlpack(data, format=fmt, colour=BT709)
        assert (
            gi.normalize_batch([frame] * count, MEAN, STD, rois=rois, size=size, resize="bilinear", out=out)
            is out
        )
        np.testing.assert_allclose(
            out.cpu().numpy(), _host_result(data, fmt, rois, size), rtol=1e-5, atol=2e-5
        )
    assert launches == [count] * 3


def test_a_replay_waits_for_the_decoders_stream(launches: list[int]) -> None:
    height, width, size = 1080, 1920, (224, 224)
    rois = _rois(8, width, height)
    out = torch.empty(8, 3, *size, device="cuda")
    decoder = torch.cuda.Stream()
    first = GpuFrame.from_dlpack(_frame_tensor(height, width, 0), format="NV12", colour=BT709)
    gi.normalize_batch([first] * 8, MEAN, STD, rois=rois, size=size, resize="bilinear", out=out)
    expected_data = _frame_tensor(height, width, 1)
    data = torch.zeros_like(expected_data)
    decoder.wait_stream(torch.cuda.current_stream())  # data is allocated and zeroed before the write
    with torch.cuda.stream(decoder):
        torch.cuda._sleep(50_000_000)  # the write lands long after the call is queued
        data.copy_(expected_data)
    frame = GpuFrame.from_dlpack(data, format="NV12", colour=BT709, stream=decoder)
    gi.normalize_batch([frame] * 8, MEAN, STD, rois=rois, size=size, resize="bilinear", out=out)
    assert launches == [8]
    np.testing.assert_allclose(
        out.cpu().numpy(), _host_result(expected_data, "NV12", rois, size), rtol=1e-5, atol=2e-5
    )
    data.record_stream(decoder)


def test_a_cupy_out_is_replayed_too(launches: list[int]) -> None:
    import cupy

    height, width, size = 96, 128, (24, 32)
    rois = _rois(8, width, height)
    out = cupy.empty((8, 3, *size), dtype=cupy.float32)
    for seed in range(3):
        data = _frame_tensor(height, width, seed)
        frame = GpuFrame.from_dlpack(data, format="NV12", colour=BT709)
        gi.normalize_batch([frame] * 8, MEAN, STD, rois=rois, size=size, resize="bilinear", out=out)
        np.testing.assert_allclose(
            cupy.asnumpy(out), _host_result(data, "NV12", rois, size), rtol=1e-5, atol=2e-5
        )
    assert launches == [8, 8]


@pytest.mark.parametrize("like", ["torch", "cupy"])
def test_calls_without_out_are_replayed_into_new_arrays(
    like: Literal["torch", "cupy"], launches: list[int]
) -> None:
    height, width, size = 96, 128, (24, 32)
    rois = _rois(6, width, height)
    results: list[Any] = []
    for seed in range(3):  # the first call is checked in full, the next two are replayed
        data = _frame_tensor(height, width, seed)
        frame = GpuFrame.from_dlpack(data, format="NV12", colour=BT709)
        batch: Any = NORMALIZE_BATCH(
            [frame] * 6, MEAN, STD, rois=rois, size=size, resize="bilinear", like=like
        )
        host = batch.cpu().numpy() if like == "torch" else batch.get()
        np.testing.assert_allclose(host, _host_result(data, "NV12", rois, size), rtol=1e-5, atol=2e-5)
        results.append(batch)
    assert launches == [6, 6]
    assert len({id(batch) for batch in results}) == 3, "each call returns its own array"
