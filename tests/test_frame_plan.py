"""``_frame_plan``: a call's launches checked and packed, and ``planned``'s memory of call signatures:
a repeated call packs what a fresh check packs, reads its new pointers, and is refused as a fresh
call would be wherever the signature differs or a pointer is misaligned."""

from __future__ import annotations

from typing import Any

import pytest

from gpuimage import BoundsError, ImageSpec, SpecError, _frame_plan
from gpuimage._executor import Buffer
from gpuimage._formats import ChannelOrder, ColorSpec, PixelFormat
from gpuimage._frame_plan import plan_launches, planned
from gpuimage._sampling import FrameSource, SampleRecipe

BT709 = ColorSpec(matrix="BT709", range="LIMITED")
LUMA = ImageSpec(height=48, width=64, channels=1, row_pitch=128)
CHROMA = ImageSpec(height=24, width=32, channels=2, row_pitch=128)
LUMA16 = ImageSpec(height=48, width=64, channels=1, dtype="uint16", row_pitch=256)
CHROMA16 = ImageSpec(height=24, width=32, channels=2, dtype="uint16", row_pitch=256)
RECIPE = SampleRecipe(16, 16, "bilinear", True, ChannelOrder.RGB, (4.0,) * 3, (-2.0,) * 3, (0.5,) * 3)
TARGET = Buffer(
    0x7E00_0000_0000, ImageSpec(height=16, width=16, channels=3, dtype="float32", layout="CHW"), None
)
ITEM_PITCH = 3 * 16 * 16 * 4
ROIS = [(0, 0, 64, 48), (3, 5, 11, 7), (30, 1, 33, 40)]


def _frame(ptr: int, region: tuple[int, int, int, int], *, ten_bit: bool = False) -> FrameSource:
    luma, chroma = (LUMA16, CHROMA16) if ten_bit else (LUMA, CHROMA)
    planes = (Buffer(ptr, luma, None), Buffer(ptr + 48 * luma.row_pitch, chroma, None))
    return FrameSource(PixelFormat.P010 if ten_bit else PixelFormat.NV12, planes, BT709, region)


def _bytes(launches: list[Any]) -> list[bytes]:
    return [bytes(launch.parameters) for launch in launches]


def test_a_repeated_call_packs_what_a_fresh_check_packs_with_its_new_pointers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = [_frame(0x1000_0000, region) for region in ROIS]
    assert _bytes(planned(first, TARGET, ITEM_PITCH, RECIPE)) == _bytes(
        plan_launches(first, TARGET, ITEM_PITCH, RECIPE)
    )
    checks: list[int] = []
    real = _frame_plan.checked_items

    def counted(*args: Any) -> Any:
        checks.append(1)
        return real(*args)

    monkeypatch.setattr(_frame_plan, "checked_items", counted)
    moved = [_frame(0x2000_0000, region) for region in ROIS]  # the next decoded frame: new memory
    repeated = planned(moved, TARGET, ITEM_PITCH, RECIPE)
    assert checks == []  # the signature was checked already
    assert _bytes(repeated) == _bytes(plan_launches(moved, TARGET, ITEM_PITCH, RECIPE))
    assert _bytes(repeated) != _bytes(plan_launches(first, TARGET, ITEM_PITCH, RECIPE))


def test_another_signature_is_checked_afresh() -> None:
    planned([_frame(0x1000_0000, ROIS[1])], TARGET, ITEM_PITCH, RECIPE)
    with pytest.raises(BoundsError, match="inside the 64x48 frame"):
        planned([_frame(0x1000_0000, (60, 0, 8, 8))], TARGET, ITEM_PITCH, RECIPE)
    other_colour = _frame(0x1000_0000, ROIS[1])._replace(colour=None)
    with pytest.raises(SpecError, match="colour"):
        planned([other_colour], TARGET, ITEM_PITCH, RECIPE)


def test_a_misaligned_pointer_is_refused_on_a_repeated_call() -> None:
    planned([_frame(0x1000_0000, ROIS[0], ten_bit=True)], TARGET, ITEM_PITCH, RECIPE)
    with pytest.raises(SpecError, match="aligned to its 2-byte element"):
        planned([_frame(0x1000_0001, ROIS[0], ten_bit=True)], TARGET, ITEM_PITCH, RECIPE)
    misaligned_target = Buffer(TARGET.ptr + 2, TARGET.spec, None)
    with pytest.raises(SpecError, match="target pointer aligned"):
        planned([_frame(0x1000_0000, ROIS[0], ten_bit=True)], misaligned_target, ITEM_PITCH, RECIPE)


def test_nothing_to_plan() -> None:
    assert planned([], TARGET, ITEM_PITCH, RECIPE) == []
