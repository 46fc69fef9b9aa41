"""``_frame_replay`` on CPU: a frame loop's ``normalize_batch`` is checked in full once per kind of
call, then replayed with each call's pointers; anything that differs goes the full way again (and is
refused there when wrong). Frames and ``out`` are headers over fake device pointers; a recording
executor and the fake runtime stand in for the GPU (``fake_replay``)."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pytest

from fake_replay import MEAN, NORMALIZE_BATCH, ROIS, SPOKE, STD, STREAM, FakeOut, Recorder, frame, recorder
from fake_runtime import Runtime, runtime
from gpuimage import ColorSpec, GpuFrame, PitchError, SpecError, _frame_batch, _frame_replay
from gpuimage._conversions import override_executor
from gpuimage._formats import ChannelOrderLike

__all__ = ["recorder", "runtime"]

BT709 = ColorSpec(matrix="BT709", range="LIMITED")
_frame = frame


def _call(
    frames: list[GpuFrame],
    out: FakeOut,
    rois: object = ROIS,
    *,
    keep_aspect: bool = False,
    order: ChannelOrderLike | None = None,
) -> object:
    return NORMALIZE_BATCH(
        frames,
        MEAN,
        STD,
        rois=rois,
        size=(8, 8),
        resize="bilinear",
        keep_aspect=keep_aspect,
        order=order,
        out=out,
    )


def test_the_second_call_of_a_kind_is_replayed_with_its_own_pointers(
    recorder: Recorder, runtime: Runtime
) -> None:
    out = FakeOut(0x900000)
    first = _frame(0x100000)
    assert _call([first] * 3, out) is out
    assert len(recorder.full) == 1
    assert recorder.replays_made == 1
    assert not recorder.replay.calls
    second = _frame(0x200000)  # the next decoded frame: same geometry, new memory
    assert _call([second] * 3, out) is out
    assert len(recorder.full) == 1, "the second frame went the full way"
    ((pointers, target, stream),) = recorder.replay.calls
    luma, chroma = second.planes[0].ptr, second.planes[1].ptr
    assert chroma == 0x200000 + 64 * 32
    assert pointers == [(luma, chroma, 0)] * 3
    assert (target, stream) == (0x900000, STREAM)
    moved = FakeOut(0xA00000)  # another out array of the same geometry, and items of two frames
    _call([first, second, first], moved)
    assert len(recorder.full) == 2, "a new pattern of items is a new kind of call: checked once"
    _call([first, second, first], moved)
    pointers, target, _ = recorder.replay.calls[-1]
    first_planes = (first.planes[0].ptr, first.planes[1].ptr, 0)
    assert pointers == [first_planes, (luma, chroma, 0), first_planes]
    assert target == 0xA00000
    assert len(recorder.full) == 2


def test_what_the_checks_read_is_in_the_key(recorder: Recorder) -> None:
    out, frame = FakeOut(0x900000), _frame(0x100000)
    _call([frame] * 3, out)
    _call([frame] * 3, out, rois=[(0, 0, 32, 16), (3, 5, 20, 10), (10, 2, 16, 14)])
    _call([frame] * 3, out, keep_aspect=True)
    _call([frame] * 3, out, order="BGR")
    _call([frame.with_colour(ColorSpec(matrix="BT601", range="LIMITED"))] * 3, out)
    assert len(recorder.full) == 5
    assert not recorder.replay.calls
    _call([frame] * 3, out, order="BGR")
    assert len(recorder.full) == 5
    assert len(recorder.replay.calls) == 1


def test_values_of_the_wrong_type_are_refused_as_the_full_path_refuses_them(recorder: Recorder) -> None:
    out, frame = FakeOut(0x900000), _frame(0x100000)
    _call([frame] * 3, out)
    floats = [(0.0, 0, 32, 16), (3, 5, 20, 10), (10, 2, 16, 16)]  # equal to ROIS, and hashed alike
    with pytest.raises(SpecError, match="tuple of ints"):
        _call([frame] * 3, out, rois=floats)
    with pytest.raises(SpecError, match="size as a"):
        NORMALIZE_BATCH([frame] * 3, MEAN, STD, rois=ROIS, size=(8.0, 8), resize="bilinear", out=out)
    assert not recorder.replay.calls


def test_pointers_are_checked_every_call(recorder: Recorder) -> None:
    frame = _frame(0x100000)
    _call([frame] * 3, FakeOut(0x900000))
    with pytest.raises(PitchError):  # float32 out at an odd address: the full path names it
        _call([frame] * 3, FakeOut(0x900002))
    with pytest.raises(SpecError, match="overlaps"):  # out inside the frame's memory
        _call([frame] * 3, FakeOut(0x100000 + 64))
    assert not recorder.replay.calls


def test_arguments_it_cannot_key_go_the_full_way_every_call(recorder: Recorder) -> None:
    out, frame = FakeOut(0x900000), _frame(0x100000)
    for _ in range(3):  # an array of means: valid, but neither hashable nor plain numbers
        NORMALIZE_BATCH([frame] * 3, np.array(MEAN), STD, rois=ROIS, size=(8, 8), resize="bilinear", out=out)
    assert len(recorder.full) == 3
    assert not recorder.replay.calls


@pytest.mark.parametrize(
    ("valid", "refused"),
    [
        ({"pad_value": 1}, {"pad_value": True}),
        ({"scale": 1}, {"scale": True}),
        ({"mean": (0, 0, 0)}, {"mean": (False, False, False)}),
        ({"std": 1}, {"std": True}),
    ],
)
def test_a_bool_is_no_number_even_after_the_equal_int_was_replayed(
    recorder: Recorder, valid: dict[str, object], refused: dict[str, object]
) -> None:
    """True == 1 and hashes alike: the full path refuses the bool, so a replay must not take it."""
    out, frame = FakeOut(0x900000), _frame(0x100000)
    options: dict[str, object] = {"mean": MEAN, "std": STD, "rois": ROIS, "size": (8, 8)}
    for _ in range(2):
        NORMALIZE_BATCH([frame] * 3, **{**options, **valid}, resize="bilinear", out=out)
    assert len(recorder.replay.calls) == 1
    with pytest.raises(SpecError):
        NORMALIZE_BATCH([frame] * 3, **{**options, **refused}, resize="bilinear", out=out)
    assert len(recorder.replay.calls) == 1


def test_a_replay_orders_streams_as_the_full_path_does(recorder: Recorder, runtime: Runtime) -> None:
    out = FakeOut(0x900000)
    _call([_frame(0x100000)] * 3, out)
    runtime.waits.clear()
    runtime.recorded.clear()
    late = _frame(0x200000, stream=5)  # still being written on the decoder's stream 5
    _call([late] * 3, out)
    assert recorder.replay.calls, "not replayed"
    assert (5, STREAM, 0) in runtime.waits  # the out library's stream waited for the decoder's write
    assert runtime.recorded == [(STREAM, 0)]  # one event records the reads of both planes
    assert STREAM in late.planes[0]._ready.reads  # the next writer of the frame waits for it
    assert STREAM in late.planes[1]._ready.reads


def test_a_replay_on_the_frames_ready_stream_records_no_event(recorder: Recorder, runtime: Runtime) -> None:
    """A decoder that queued on the consumer's own stream: a later writer waits for that stream as a
    whole, so the per-frame replay records nothing (the bar: no events when the streams are one)."""
    out = FakeOut(0x900000)
    _call([_frame(0x100000)] * 3, out)
    same = _frame(0x200000, stream=STREAM)
    runtime.waits.clear()
    runtime.recorded.clear()
    _call([same] * 3, out)
    assert recorder.replay.calls, "not replayed"
    assert runtime.recorded == []
    assert runtime.waits == []
    with same.planes[0].writing(9):  # a writer elsewhere still waits for the reads, through STREAM
        assert (STREAM, 9, 0) in runtime.waits


def test_a_frames_token_is_made_once_and_never_taken_for_another_frame(recorder: Recorder) -> None:
    """A GpuFrame never changes, so its part of the key is kept by id; a weak reference tells a live
    frame from a new one that took a dead frame's id."""
    out, frame, other = FakeOut(0x900000), _frame(0x100000), _frame(0x200000)
    _call([frame] * 3, out)
    token, specs = _frame_replay._frames[id(frame)][1:]
    assert _frame_replay._item(frame) == (token, frame.planes, specs)
    _frame_replay._frames[id(other)] = (weakref.ref(frame), ("stale",), ())  # as if other took its id
    found = _frame_replay._item(other)
    assert found is not None
    assert found[0] != ("stale",)
    assert found[1] == other.planes
    assert _frame_replay._frames[id(other)][0]() is other


def test_another_executor_is_not_bypassed(recorder: Recorder) -> None:
    out, frame = FakeOut(0x900000), _frame(0x100000)
    _call([frame] * 3, out)
    other = Recorder()
    with override_executor(other):
        _call([frame] * 3, out)
    assert len(other.full) == 1
    assert not recorder.replay.calls


def test_a_key_first_seen_under_another_executor_is_replayed_by_the_current_one(recorder: Recorder) -> None:
    """A call made under an override leaves its entry; once the override ends, the next full call
    replaces it, and the calls after that are replayed again (not the full way for ever)."""
    out, frame = FakeOut(0x900000), _frame(0x100000)
    other = Recorder()
    with override_executor(other):
        _call([frame] * 3, out)
    for _ in range(3):
        _call([frame] * 3, out)
    assert len(recorder.full) == 1, "checked in full once, then replayed"
    assert len(recorder.replay.calls) == 2


def test_which_item_is_where_is_in_the_key(recorder: Recorder) -> None:
    out = FakeOut(0x900000)
    wide = _frame(0x100000)
    narrow = GpuFrame.from_pointer(
        0x200000, format="NV12", width=32, height=32, device="cuda:0", owner=None, colour=BT709
    )
    rois = [(0, 0, 16, 16)] * 3
    _call([wide, wide, narrow], out, rois=rois)
    _call([wide, narrow, narrow], out, rois=rois)  # the same two geometries, at other positions
    assert len(recorder.full) == 2
    assert not recorder.replay.calls
    _call([wide, narrow, narrow], out, rois=rois)
    assert len(recorder.full) == 2
    assert len(recorder.replay.calls) == 1


def test_a_call_without_out_is_replayed_into_a_new_array_of_its_kind(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[tuple[str, FakeOut]] = []

    def allocate(like: str, items: int, channels: int, size: tuple[int, int], *rest: object) -> FakeOut:
        array = FakeOut(0x900000 + 0x100000 * len(made), items, size)
        made.append((like, array))
        return array

    monkeypatch.setattr(_frame_batch, "allocate_batch", allocate)
    monkeypatch.setattr(_frame_replay, "allocate_batch", allocate)
    monkeypatch.setattr(_frame_replay, "spoke_named", lambda name: SPOKE)
    options: dict[str, Any] = {"rois": ROIS, "size": (8, 8), "resize": "bilinear"}
    first = NORMALIZE_BATCH([_frame(0x100000)] * 3, MEAN, STD, **options)
    assert len(recorder.full) == 1
    decoded = _frame(0x200000)
    second = NORMALIZE_BATCH([decoded] * 3, MEAN, STD, **options)
    assert second is made[1][1]
    assert second is not first
    assert len(recorder.full) == 1, "the second frame went the full way"
    luma, chroma = decoded.planes[0].ptr, decoded.planes[1].ptr
    assert recorder.replay.calls == [([(luma, chroma, 0)] * 3, second.ptr, STREAM)]
    NORMALIZE_BATCH([decoded] * 3, MEAN, STD, **options, like="cupy")  # another library: checked once
    assert len(recorder.full) == 2
    assert [like for like, _ in made] == ["torch", "torch", "cupy"]


def test_regions_changed_in_place_are_checked_again(recorder: Recorder) -> None:
    """The region tuples last found exactly typed are remembered by identity (a loop passes the same
    ones every frame); a list changed in place holds other tuples, which are checked again."""
    out, frame = FakeOut(0x900000), _frame(0x100000)
    rois: list[tuple[object, ...]] = list(ROIS)
    for _ in range(2):
        _call([frame] * 3, out, rois=rois)
    assert len(recorder.replay.calls) == 1
    rois[0] = (0.0, 0, 32, 16)  # equal to the old region, and hashed alike
    with pytest.raises(SpecError, match="tuple of ints"):
        _call([frame] * 3, out, rois=rois)
    rois[0] = (0, 0, 32, 8)
    _call([frame] * 3, out, rois=rois)  # a new kind of call: checked in full
    assert len(recorder.full) == 2
    assert len(recorder.replay.calls) == 1
