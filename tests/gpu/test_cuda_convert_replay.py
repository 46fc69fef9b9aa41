"""``_convert_replay`` on a GPU: a loop of each single-image conversion is checked in full once,
then launched with the same kernel plan; every call's result is compared with torch's, including
a replayed call whose source is written late on another stream and one into an ``out`` that a
reader on a third stream still reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytest

pytest.importorskip("cupy")
pytest.importorskip("torch")

import torch

import gpuimage as gi
from gpuimage import GpuImage, _convert_replay, _kernel_convert, _kernels

pytestmark = pytest.mark.cuda

MEAN, STD = 0.5, 0.25


def _count_launches(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """(full conversions, all launches) from an empty replay table on: a replay is a launch that
    no full conversion made."""
    full: list[int] = []
    launches: list[int] = []
    convert, launch = _kernel_convert.KernelExecutor.convert, _kernels.LaunchPlan.launch

    def counting_convert(self: Any, *args: Any) -> None:
        full.append(1)
        convert(self, *args)

    def counting_launch(self: Any, *args: Any) -> None:
        launches.append(1)
        launch(self, *args)

    monkeypatch.setattr(_kernel_convert.KernelExecutor, "convert", counting_convert)
    monkeypatch.setattr(_kernels.LaunchPlan, "launch", counting_launch)
    _convert_replay.forget()
    return full, launches


def _normalized(hwc: torch.Tensor) -> torch.Tensor:
    return ((hwc.permute(2, 0, 1).float() / 255 - MEAN) / STD).contiguous()


Case = tuple[
    Callable[[GpuImage, Any], GpuImage], Callable[[torch.Tensor], torch.Tensor], Literal["HWC", "CHW"]
]
CASES: dict[str, Case] = {  # (the call, torch's result, the result's layout)
    "to_layout": (lambda image, out: image.to_layout("CHW", out=out), lambda t: t.permute(2, 0, 1), "CHW"),
    "contiguous": (lambda image, out: image.copy(out=out), lambda t: t, "HWC"),
    "astype": (
        lambda image, out: image.astype(gi.Float16, scale=0.5, out=out),
        lambda t: t.half() * 0.5,
        "HWC",
    ),
    "normalize": (lambda image, out: gi.normalize(image, MEAN, STD, out=out), _normalized, "CHW"),
}


@pytest.mark.parametrize("into", [True, False], ids=["out", "new"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_loop_is_checked_once_then_replayed_with_right_values(
    name: str, into: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    full, launches = _count_launches(monkeypatch)
    call, reference, layout = CASES[name]
    frame = torch.zeros((70, 128, 3), dtype=torch.uint8, device="cuda")
    roi = frame[3:67, 5:101]  # pitched: rows 128 pixels apart, a crop off the allocation's start
    image = GpuImage.from_torch(roi, layout="HWC")
    expected = reference(roi)
    out = GpuImage.from_torch(torch.empty(expected.shape, dtype=expected.dtype, device="cuda"), layout=layout)
    results = []
    for _ in range(4):
        frame.copy_(torch.randint(0, 256, frame.shape, dtype=torch.uint8, device="cuda"))  # the next frame
        result = call(image, out if into else None)
        assert (result is out) is into
        torch.testing.assert_close(result.as_torch(), reference(roi).contiguous(), rtol=0, atol=1e-3)
        results.append(result)
    assert (len(full), len(launches)) == (1, 4), "one full call, then three replays"
    if not into:
        assert len({result.ptr for result in results}) == 4, "each call writes a new image"


def test_a_replay_waits_for_a_source_written_late_on_another_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    full, launches = _count_launches(monkeypatch)
    side = torch.cuda.Stream()
    frame = torch.zeros((256, 256, 3), dtype=torch.uint8, device="cuda")
    chw = torch.empty((3, 256, 256), dtype=torch.uint8, device="cuda")
    image, out = GpuImage.from_torch(frame, layout="HWC"), GpuImage.from_torch(chw, layout="CHW")
    for value in (1, 2, 3):
        torch.cuda.synchronize()
        with torch.cuda.stream(side):
            torch.cuda._sleep(20_000_000)  # hold the side stream so a missing wait would read old data
            frame.fill_(value)
        image.record_write(side)
        image.to_layout("CHW", out=out)  # queued on the side stream, behind the write
        assert bool((out.as_torch() == value).all()), f"frame {value}"
    assert (len(full), len(launches)) == (1, 3)


def test_a_replay_into_out_waits_for_its_reader_on_another_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    full, launches = _count_launches(monkeypatch)
    reader = torch.cuda.Stream()
    source = torch.zeros((128, 128, 3), dtype=torch.uint8, device="cuda")
    image = GpuImage.from_torch(source, layout="HWC")
    out = GpuImage.from_torch(torch.zeros((3, 128, 128), dtype=torch.uint8, device="cuda"), layout="CHW")
    copies = []
    for value in (1, 2, 3):
        source.fill_(value)  # on torch's current stream, where the image is ready
        image.to_layout("CHW", out=out)  # must wait for the last read of out on the reader stream
        with out.reading(reader), torch.cuda.stream(reader):
            torch.cuda._sleep(20_000_000)  # a slow reader: the next write must not overtake it
            copies.append(out.as_torch(stream=reader).clone())
    torch.cuda.synchronize()
    assert [int(copy.min()) for copy in copies] == [1, 2, 3]
    assert [int(copy.max()) for copy in copies] == [1, 2, 3]
    assert (len(full), len(launches)) == (1, 3)
