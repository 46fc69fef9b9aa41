"""Unpickling CUDA IPC descriptions (``_ipc_open``, the consumer's side), with a recording driver
(``fake_ipc``) whose "mappings" are the producer's own host memory: values, geometry, the stream wait
on the ready point, the per-process mapping cache, and when mappings close and leases go."""

from __future__ import annotations

import gc
import os
import pickle
import weakref
from typing import Any, cast

import numpy as np
import pytest

import gpuimage
from fake_ipc import FakeDriver, elsewhere, filled, ipc, values
from gpuimage import (
    BoundsError,
    ChannelOrder,
    ColorSpec,
    DeviceError,
    GpuBatch,
    GpuFrame,
    GpuImage,
    InteropError,
    LifetimeError,
    _ipc_lease,
    _ipc_open,
)
from gpuimage._ipc_open import SharedHold, mapped_from, open_frame, open_image

__all__ = ["elsewhere", "ipc"]  # the fixtures

BT709 = ColorSpec(matrix="BT709", range="LIMITED")


def _round_trip(obj: object) -> Any:
    return pickle.loads(pickle.dumps(obj))


@pytest.mark.parametrize(
    "make",
    [
        lambda: GpuImage.empty(5, 7, 3),
        lambda: GpuImage.empty(5, 7, 3, row_alignment=256),
        lambda: GpuImage.empty(9, 11, 4, row_alignment=64).crop(2, 3, 5, 4),
        lambda: GpuImage.empty(4, 6, 3, "float32", layout="CHW"),
        lambda: GpuImage.empty(4, 6, 2, "bfloat16"),
    ],
    ids=["packed", "pitched", "roi", "chw", "bfloat16"],
)
def test_an_image_opens_elsewhere_over_the_same_bytes_and_geometry(
    ipc: FakeDriver, elsewhere: None, make: Any
) -> None:
    image = filled(make())
    opened = _round_trip(image)
    assert opened is not image
    assert isinstance(opened.owner, SharedHold)
    assert (opened.ptr, opened.spec) == (image.ptr, image.spec)  # the fake maps the producer's base
    np.testing.assert_array_equal(values(opened), values(image))
    assert ipc.opened == [ipc.address_range(image.ptr, 0)[0]]


def test_the_consumer_s_current_stream_waits_for_the_ready_point(ipc: FakeDriver, elsewhere: None) -> None:
    image = GpuImage.empty(4, 4, stream=7)
    ipc.runtime.current = 5
    opened = _round_trip(image)
    recorded = [name for kind, name, stream in ipc.log if kind == "record" and stream == 7]
    assert ("wait", recorded[-1], 5) in ipc.log, "the consumer's stream waits for the producer's event"
    assert ("destroy", recorded[-1], -1) in ipc.log, "the opened event is destroyed once waited on"
    assert opened.stream == 5


def test_nothing_pending_means_no_wait(ipc: FakeDriver, elsewhere: None) -> None:
    image = GpuImage.empty(4, 4)
    image.synchronize()
    _round_trip(image)
    assert not ipc.opened_events()


def test_readonly_and_channel_order_travel(ipc: FakeDriver, elsewhere: None) -> None:
    image = GpuImage.empty(3, 3, 3).with_channel_order("BGR")
    assert _round_trip(image).channel_order is ChannelOrder.BGR
    batch = GpuBatch.empty(2, 3, 3, 3, "uint8", layout="NHWC").with_channel_order("RGB")
    assert _round_trip(batch).channel_order is ChannelOrder.RGB
    fresh = GpuImage.empty(3, 3, 3)
    readonly = GpuImage.from_pointer(fresh.ptr, fresh.spec, owner=fresh, readonly=True)
    assert _round_trip(readonly).readonly


def test_a_frame_opens_with_its_layout_planes_and_colour(ipc: FakeDriver, elsewhere: None) -> None:
    frame = GpuFrame.empty(16, 8, format="NV12", colour=BT709, row_alignment=64)
    for plane in frame.planes:
        filled(plane, seed=3)
    opened = _round_trip(frame)
    assert isinstance(opened, GpuFrame)
    assert (opened.layout, opened.colour, opened.format) == (frame.layout, BT709, frame.format)
    for mine, theirs in zip(opened.planes, frame.planes, strict=True):
        assert (mine.ptr, mine.spec) == (theirs.ptr, theirs.spec)
        np.testing.assert_array_equal(values(mine), values(theirs))
    assert len(ipc.opened) == 1, "one allocation, mapped once"


def test_a_frame_of_planes_apart_opens_each_allocation(ipc: FakeDriver, elsewhere: None) -> None:
    frame = GpuFrame.from_planes(
        [filled(GpuImage.empty(8, 16)), filled(GpuImage.empty(4, 8, 2))], format="NV12"
    )
    opened = _round_trip(frame)
    assert opened.layout is None
    assert [plane.ptr for plane in opened.planes] == [plane.ptr for plane in frame.planes]
    assert len(ipc.opened) == 2


def test_a_batch_opens_with_its_items(ipc: FakeDriver, elsewhere: None) -> None:
    batch = GpuBatch.empty(3, 4, 5, 2, "float32")
    for item in batch:
        filled(item, seed=1)
    opened = _round_trip(batch)
    assert (opened.ptr, opened.size, opened.item_pitch, opened.item_spec) == (
        batch.ptr, batch.size, batch.item_pitch, batch.item_spec)  # fmt: skip
    np.testing.assert_array_equal(values(opened[2]), values(batch[2]))


def test_the_process_that_pickled_gets_the_original_object(ipc: FakeDriver) -> None:
    image = GpuImage.empty(4, 4)
    assert _round_trip(image) is image
    assert not ipc.opened


# -- mappings and leases -----------------------------------------------------------------------------


def test_one_allocation_is_mapped_once_and_closed_after_its_last_image(
    ipc: FakeDriver, elsewhere: None
) -> None:
    image = GpuImage.empty(8, 8)
    shared = [pickle.dumps(image.crop(0, 0, 4, 4)), pickle.dumps(image.crop(4, 4, 4, 4))]
    left, right = (pickle.loads(data) for data in shared)
    base = ipc.address_range(image.ptr, 0)[0]
    assert ipc.opened == [base], "cuIpcOpenMemHandle fails on an allocation opened twice: it is cached"
    assert mapped_from(left.ptr) == os.getpid()
    assert gpuimage.collect_shared() == 2
    del left
    ipc.settle()
    assert not ipc.closed, "the other description still uses the mapping"
    assert gpuimage.collect_shared() == 1
    del right
    gc.collect()
    assert not ipc.closed, "closed only once the work queued on the consumer's stream has finished"
    ipc.settle()
    assert ipc.closed == [base]
    assert mapped_from(image.ptr) is None
    assert gpuimage.collect_shared() == 0


def test_a_consumer_that_fails_to_open_lets_go_of_its_lease(ipc: FakeDriver, elsewhere: None) -> None:
    image = GpuImage.empty(4, 4)
    owner = weakref.ref(image.owner)
    data = pickle.dumps(image)
    del image
    ipc.visible = {1}
    with pytest.raises(DeviceError, match="expected the producer's GPU") as raised:
        pickle.loads(data)
    assert "CUDA_VISIBLE_DEVICES" in str(raised.value)
    assert gpuimage.collect_shared() == 0, "it was opened, then let go: the producer frees the memory"
    gc.collect()
    assert owner() is None


def test_a_mapping_smaller_than_the_description_says_is_refused(ipc: FakeDriver, elsewhere: None) -> None:
    image = GpuImage.empty(4, 4)
    _, arguments = cast(Any, image.__reduce_ex__(2))
    payload: Any = arguments[1]
    payload["allocations"][0]["size"] += 4096  # forged: claims more than the real allocation
    payload["items"][0]["offset"] += 4096
    with pytest.raises(BoundsError, match="nothing may point outside"):
        open_image(GpuImage, payload)
    assert ipc.closed == ipc.opened, "the mapping is closed again"


def test_a_description_of_another_kind_is_refused(ipc: FakeDriver, elsewhere: None) -> None:
    _, arguments = cast(Any, GpuImage.empty(4, 4).__reduce_ex__(2))
    with pytest.raises(InteropError, match="expected a description of a frame, got one of a image"):
        open_frame(GpuFrame, GpuImage, arguments[1])


def test_a_description_whose_lease_ended_is_refused_here_and_elsewhere(
    ipc: FakeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = GpuImage.empty(4, 4)
    data = pickle.dumps(image)
    gpuimage.set_unopened_timeout(1e-6)
    assert gpuimage.collect_shared() == 0
    with pytest.raises(LifetimeError, match=r"lease .* ended"):
        pickle.loads(data)
    monkeypatch.setattr(_ipc_open, "is_this_process", lambda pid, token: False)
    with pytest.raises(LifetimeError, match="is gone") as raised:
        pickle.loads(data)
    assert "set_unopened_timeout" in str(raised.value)


def test_a_shared_hold_releases_once(ipc: FakeDriver, elsewhere: None) -> None:
    opened = _round_trip(GpuImage.empty(4, 4))
    hold = opened.owner
    assert "producer pid" in repr(hold)
    hold.release()
    hold.release()
    assert len(ipc.closed) == 1
    assert gpuimage.collect_shared() == 0
    assert _ipc_lease.collect_shared() == 0
