"""``PreparedBatch`` on CPU: the arguments are copied once and checked on the first call; a call
whose items and ``out`` are described as the last checked call's launches at once (no key is built),
anything else is a full ``normalize_batch`` call. Frames and ``out`` are headers over fake device
pointers; a recording executor and the fake runtime stand in for the GPU (``fake_replay``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fake_replay import BT709, MEAN, ROIS, STD, STREAM, FakeOut, Recorder, frame, recorder
from fake_runtime import Runtime, runtime
from gpuimage import ColorSpec, GpuFrame, PreparedBatch, SpecError, _frame_replay
from gpuimage._conversions import override_executor

__all__ = ["recorder", "runtime"]

PREPARED: Any = PreparedBatch  # made with fake out arrays and wrongly typed values


def _prepared(out: FakeOut, rois: object = ROIS, **options: object) -> Any:
    return PREPARED(MEAN, STD, rois=rois, size=(8, 8), resize="bilinear", out=out, **options)


@pytest.fixture
def key_builds(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ``_frame_replay.prepare`` call (building a call's whole key), through ``replay_call``:
    ``normalize_batch``'s own and a prepared batch's."""
    built: list[object] = []
    original = _frame_replay.prepare

    def counted(*args: Any) -> Any:
        built.append(args)
        return original(*args)

    monkeypatch.setattr("gpuimage._batch.prepare", counted)
    return built


def test_the_first_call_is_checked_in_full_and_later_frames_launch_at_once(
    recorder: Recorder, key_builds: list[object]
) -> None:
    out = FakeOut(0x900000)
    prepared = _prepared(out)
    assert prepared.out is out
    first = frame(0x100000)
    assert prepared([first] * 3) is out
    assert len(recorder.full) == 1
    assert len(key_builds) == 2, "the full call builds its key, and the prepared batch once more to adopt it"
    for ptr in (0x200000, 0x300000):  # the next decoded frames: same geometry, new memory
        decoded = frame(ptr)
        assert prepared([decoded] * 3) is out
        luma, chroma = decoded.planes[0].ptr, decoded.planes[1].ptr
        assert recorder.replay.calls[-1] == ([(luma, chroma, 0)] * 3, 0x900000, STREAM)
    assert len(recorder.full) == 1
    assert len(recorder.replay.calls) == 2
    assert len(key_builds) == 2, "a matching call builds no key"
    sources = recorder.full[0][0]
    assert [source.region for source in sources] == ROIS


def test_the_arguments_are_copied_when_it_is_made(recorder: Recorder) -> None:
    rois = list(ROIS)
    prepared = _prepared(FakeOut(0x900000), rois=rois)
    rois[0] = (1, 1, 2, 2)  # the caller's list, changed afterwards
    prepared([frame(0x100000)] * 3)
    prepared([frame(0x200000)] * 3)
    assert [source.region for source in recorder.full[0][0]] == ROIS
    assert len(recorder.replay.calls) == 1


def test_bad_arguments_are_refused_on_the_first_call_as_normalize_batch_refuses_them(
    recorder: Recorder,
) -> None:
    floats = [(0.0, 0, 32, 16), (3, 5, 20, 10), (10, 2, 16, 16)]
    prepared = _prepared(FakeOut(0x900000), rois=floats)
    for _ in range(2):  # no replay is adopted from a refused call
        with pytest.raises(SpecError, match="tuple of ints"):
            prepared([frame(0x100000)] * 3)
    assert not recorder.full
    assert not recorder.replay.calls
    with pytest.raises(SpecError, match="size as a"):
        PREPARED(MEAN, STD, rois=ROIS, size=(8.0, 8), resize="bilinear", out=FakeOut(0x900000))(
            [frame(0x100000)] * 3
        )


def test_items_described_otherwise_are_checked_in_full_then_launch_at_once(recorder: Recorder) -> None:
    prepared = _prepared(FakeOut(0x900000))
    prepared([frame(0x100000)] * 3)
    narrow = GpuFrame.from_pointer(
        0x200000,
        format="NV12",
        width=48,
        height=32,
        device="cuda:0",
        owner=None,
        colour=ColorSpec(matrix="BT709", range="LIMITED"),
    )
    bt601 = frame(0x300000).with_colour(ColorSpec(matrix="BT601", range="LIMITED"))
    mixed = [frame(0x400000), frame(0x500000), frame(0x400000)]  # another pattern of items
    for items in ([narrow] * 3, [bt601] * 3, mixed):
        prepared(items)
        assert len(recorder.replay.calls) == 0, f"{items[0]} launched without its checks"
    assert len(recorder.full) == 4
    prepared(mixed)  # the last checked kind: at once
    assert len(recorder.full) == 4
    assert len(recorder.replay.calls) == 1


def test_out_described_otherwise_goes_the_full_way_and_is_refused_there(recorder: Recorder) -> None:
    out = FakeOut(0x900000)
    prepared = _prepared(out)
    prepared([frame(0x100000)] * 3)
    out.shape = (2, 3, 8, 8)  # resized in place: two slots for three regions
    with pytest.raises(SpecError):
        prepared([frame(0x200000)] * 3)
    assert not recorder.replay.calls


def test_pointers_are_checked_every_call(recorder: Recorder) -> None:
    prepared = _prepared(FakeOut(0x900000))
    prepared([frame(0x100000)] * 3)
    with pytest.raises(SpecError, match="overlaps"):  # a frame whose memory holds out
        prepared([frame(0x900000 - 64)] * 3)
    assert not recorder.replay.calls


def test_streams_are_ordered_as_normalize_batch_orders_them(recorder: Recorder, runtime: Runtime) -> None:
    prepared = _prepared(FakeOut(0x900000))
    prepared([frame(0x100000)] * 3)
    runtime.waits.clear()
    runtime.recorded.clear()
    late = frame(0x200000, stream=5)  # still being written on the decoder's stream 5
    prepared([late] * 3)
    assert recorder.replay.calls, "not launched at once"
    assert (5, STREAM, 0) in runtime.waits
    assert runtime.recorded == [(STREAM, 0)]
    assert STREAM in late.planes[0]._ready.reads


def test_another_executor_is_not_bypassed(recorder: Recorder) -> None:
    prepared = _prepared(FakeOut(0x900000))
    prepared([frame(0x100000)] * 3)
    other = Recorder()
    with override_executor(other):
        prepared([frame(0x200000)] * 3)
    assert len(other.full) == 1
    assert not recorder.replay.calls


def test_arguments_no_replay_can_key_are_full_calls_every_time(recorder: Recorder) -> None:
    means = np.array(MEAN)  # valid, but neither hashable nor plain numbers
    prepared = PREPARED(means, STD, rois=ROIS, size=(8, 8), resize="bilinear", out=FakeOut(0x900000))
    for ptr in (0x100000, 0x200000, 0x300000):
        prepared([frame(ptr)] * 3)
    assert len(recorder.full) == 3
    assert not recorder.replay.calls


def test_it_needs_an_out_and_arguments_it_can_copy() -> None:
    with pytest.raises(SpecError, match="expected out="):
        PREPARED(MEAN, STD, out=None)
    with pytest.raises(SpecError, match="cannot be copied: TypeError"):
        PREPARED(MEAN, STD, rois=(box for box in ROIS), out=FakeOut(0x900000))


def test_its_repr_shows_what_was_given() -> None:
    prepared = _prepared(FakeOut(0x900000), keep_aspect=True)
    assert repr(prepared) == (
        "PreparedBatch(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), rois=<3 regions>, "
        "size=(8, 8), resize='bilinear', keep_aspect=True, out=FakeOut)"
    )
    assert (
        repr(PREPARED(0.5, 0.25, out=FakeOut(0x900000))) == "PreparedBatch(mean=0.5, std=0.25, out=FakeOut)"
    )


_GEOMETRIES = ((64, 32), (48, 32))  # (width, height): ROIS fit both


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.lists(
                st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(1, 64)), min_size=3, max_size=3
            ),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_every_call_launches_with_its_own_items_pointers(
    recorder: Recorder, calls: list[tuple[list[tuple[int, int, int]], bool]]
) -> None:
    """Whatever sequence of frames, geometries, colours and item patterns a loop passes, each call's
    work (a full conversion or a launch at once) reads exactly its own items' planes, into ``out``."""
    prepared = _prepared(FakeOut(0x9000000))
    bt601 = ColorSpec(matrix="BT601", range="LIMITED")
    for items, one_frame in calls:
        frames: dict[int, GpuFrame] = {}
        chosen: list[GpuFrame] = []
        for index, (frame_id, geometry, page) in enumerate(items):
            key = 0 if one_frame else frame_id
            if key not in frames:
                width, height = _GEOMETRIES[geometry]
                made = GpuFrame.from_pointer(
                    page << 16,
                    format="NV12",
                    width=width,
                    height=height,
                    device="cuda:0",
                    owner=None,
                    colour=BT709 if index % 2 == 0 else bt601,
                )
                frames[key] = made
            chosen.append(frames[key])
        full, replayed = len(recorder.full), len(recorder.replay.calls)
        if len({frame.colour for frame in chosen}) > 1:  # one launch converts one colour description
            with pytest.raises(SpecError, match="colour"):
                prepared(chosen)
            event("refused: mixed colours")
            continue
        assert prepared(chosen) is prepared.out
        expected = [(frame.planes[0].ptr, frame.planes[1].ptr, 0) for frame in chosen]
        if len(recorder.full) > full:
            sources, target, _, _ = recorder.full[-1]
            launched = [(*(plane.ptr for plane in source.planes), 0) for source in sources]
            assert (launched, target) == (expected, 0x9000000)
            event("checked in full")
        else:
            assert len(recorder.replay.calls) == replayed + 1
            assert recorder.replay.calls[-1][:2] == (expected, 0x9000000)
            event("launched at once")
