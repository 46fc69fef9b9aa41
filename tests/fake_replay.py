"""A recording executor, fake ``out`` arrays and their spoke, for the replay tests on CPU
(``test_frame_replay``, ``test_prepared_batch``): frames and ``out`` are headers over fake device
pointers, and the fake runtime stands in for the GPU."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

import gpuimage as gi
from fake_runtime import Runtime
from gpuimage import ColorSpec, GpuFrame, _batch_out, _frame_replay
from gpuimage._conversions import override_executor
from gpuimage._device import Device
from gpuimage._executor import Operand
from gpuimage._sampling import FrameSource, SampleRecipe
from gpuimage._spokes import OutArray, Spoke

BT709 = ColorSpec(matrix="BT709", range="LIMITED")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ROIS = [(0, 0, 32, 16), (3, 5, 20, 10), (10, 2, 16, 16)]
STREAM = 7  # the out library's current stream
NORMALIZE_BATCH: Any = gi.normalize_batch  # called with fake out arrays and wrongly typed values


@dataclass
class Replayed:
    calls: list[tuple[list[tuple[int, int, int]], int, int]] = field(default_factory=list)
    target_alignment: int = 4
    plane_alignment: int = 1

    def __call__(self, pointers: Sequence[tuple[int, int, int]], target_ptr: int, stream: int, /) -> None:
        self.calls.append((list(pointers), target_ptr, stream))


@dataclass
class Recorder:
    """An executor that records full conversions and hands out one recording replay."""

    full: list[tuple[list[FrameSource], int, SampleRecipe, int]] = field(default_factory=list)
    replay: Replayed = field(default_factory=Replayed)
    replays_made: int = 0

    @property
    def name(self) -> str:
        return "recorder"

    def stream_for(self, device: int, /) -> tuple[int, object]:
        return STREAM, None

    def convert(self, *args: object) -> None:
        raise AssertionError("not a frame call")

    def convert_replay(self, *args: object) -> None:
        return None

    def convert_batch(self, *args: object) -> None:
        raise AssertionError("not a frame call")

    def convert_frames(
        self,
        sources: Sequence[FrameSource],
        target: Operand,
        item_pitch: int,
        recipe: SampleRecipe,
        stream: int,
        /,
    ) -> None:
        self.full.append((list(sources), target.ptr, recipe, stream))

    def frames_replay(
        self, sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe, /
    ) -> Replayed:
        self.replays_made += 1
        return self.replay


class FakeOut:
    """An NCHW float32 "device" array that the fake spoke describes."""

    def __init__(self, ptr: int, count: int = 3, size: tuple[int, int] = (8, 8)) -> None:
        self.ptr, self.shape = ptr, (count, 3, *size)

    def describe(self) -> OutArray:
        _, channels, height, width = self.shape
        strides = (channels * height * width * 4, height * width * 4, width * 4, 4)
        return OutArray(self.ptr, self.shape, strides, "float32", Device("cuda", 0))


def _describe(out: object, /, *, where: str) -> OutArray:
    assert isinstance(out, FakeOut)
    return out.describe()


def _signature(out: object, /) -> tuple[int, object]:
    assert isinstance(out, FakeOut)
    return out.ptr, out.shape


SPOKE = Spoke(
    name="fake", describe_out=_describe, current_stream=lambda device: STREAM, out_signature=_signature
)


@pytest.fixture
def recorder(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    def spoke_of(obj: object) -> Spoke | None:
        return SPOKE if isinstance(obj, FakeOut) else None

    monkeypatch.setattr(_frame_replay, "spoke_of", spoke_of)
    monkeypatch.setattr(_batch_out, "spoke_of", spoke_of)
    monkeypatch.setattr(_frame_replay, "_entries", {})
    executor = Recorder()
    with override_executor(executor):
        yield executor


def frame(ptr: int, stream: object = None) -> GpuFrame:
    """A 64x32 NV12 frame at a fake device address."""
    return GpuFrame.from_pointer(
        ptr,
        format="NV12",
        width=64,
        height=32,
        device="cuda:0",
        owner=None,
        pitch=64,
        colour=BT709,
        stream=stream,
    )
