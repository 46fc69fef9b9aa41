"""``PreparedBatch`` on a GPU: a decoder loop's frames, each converted by one launch after the first
call; every result is compared with the NumPy reference of the same call (the host path), including
a frame still being written on the decoder's stream and a frame of another geometry midway."""

from __future__ import annotations

import pytest

pytest.importorskip("cupy")
pytest.importorskip("torch")

import numpy as np
import numpy.typing as npt
import torch

import gpuimage as gi
from gpuimage import ColorSpec, GpuFrame

from ._support import count_replayed_launches

pytestmark = pytest.mark.cuda

BT709 = ColorSpec(matrix="BT709", range="LIMITED")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = (24, 32)


def _frame_data(height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator(device="cuda").manual_seed(seed)
    shape = (height * 3 // 2, width)
    return torch.randint(16, 236, shape, dtype=torch.uint8, device="cuda", generator=generator)


def _reference(data: torch.Tensor, rois: list[tuple[int, int, int, int]]) -> npt.NDArray[np.float32]:
    host = GpuFrame.from_dlpack(data.cpu().numpy(), format="NV12", colour=BT709)
    out = np.empty((len(rois), 3, *SIZE), np.float32)
    gi.normalize_batch([host] * len(rois), MEAN, STD, rois=rois, size=SIZE, resize="bilinear", out=out)
    return out


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return count_replayed_launches(monkeypatch)


def test_a_decoder_loop_matches_the_reference_frame_by_frame(launches: list[int]) -> None:
    rois = [(0, 0, 64, 48), (5, 7, 40, 30), (60, 40, 68, 56), (1, 3, 127, 93)]
    out = torch.empty(len(rois), 3, *SIZE, device="cuda")
    prepared = gi.PreparedBatch(MEAN, STD, rois=rois, size=SIZE, resize="bilinear", out=out)
    shapes = [(96, 128)] * 3 + [(112, 160)] * 3  # a new geometry midway: checked in full once
    for seed, (height, width) in enumerate(shapes):
        data = _frame_data(height, width, seed)
        frame = GpuFrame.from_dlpack(data, format="NV12", colour=BT709)
        assert prepared([frame] * len(rois)) is out
        np.testing.assert_allclose(out.cpu().numpy(), _reference(data, rois), rtol=1e-5, atol=2e-5)
    assert launches == [len(rois)] * 4, "every call but each geometry's first launches at once"


def test_a_prepared_call_waits_for_the_decoders_stream(launches: list[int]) -> None:
    height, width = 1080, 1920
    rois = [(0, 0, 640, 360), (100, 200, 300, 500), (1000, 500, 900, 580)]
    out = torch.empty(len(rois), 3, *SIZE, device="cuda")
    prepared = gi.PreparedBatch(MEAN, STD, rois=rois, size=SIZE, resize="bilinear", out=out)
    prepared([GpuFrame.from_dlpack(_frame_data(height, width, 0), format="NV12", colour=BT709)] * len(rois))
    decoder = torch.cuda.Stream()
    expected = _frame_data(height, width, 1)
    data = torch.zeros_like(expected)
    decoder.wait_stream(torch.cuda.current_stream())  # allocated and zeroed before the write
    with torch.cuda.stream(decoder):
        torch.cuda._sleep(50_000_000)  # the write lands long after the call is queued
        data.copy_(expected)
    frame = GpuFrame.from_dlpack(data, format="NV12", colour=BT709, stream=decoder)
    prepared([frame] * len(rois))
    assert launches == [len(rois)]
    np.testing.assert_allclose(out.cpu().numpy(), _reference(expected, rois), rtol=1e-5, atol=2e-5)
    data.record_stream(decoder)
