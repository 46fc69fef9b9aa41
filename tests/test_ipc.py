"""Pickling device images, frames and batches (``_ipc``, the producer's side), with a recording CUDA
driver (``fake_ipc``): what a description carries, the ready point, the lease that keeps the memory,
and every refusal. The consumer's side is ``test_ipc_open.py``; on a GPU, ``gpu/test_cuda_ipc.py``."""

from __future__ import annotations

import gc
import os
import pickle
import weakref
from typing import Any, cast

import numpy as np
import pytest

import gpuimage
from fake_ipc import FakeDriver, elsewhere, filled, ipc
from gpuimage import (
    BoundsError,
    ColorSpec,
    ExportError,
    GpuBatch,
    GpuFrame,
    GpuImage,
    ImageSpec,
    _ipc,
    _ipc_lease,
)
from gpuimage._ipc_description import Description
from gpuimage._ipc_open import open_batch, open_frame, open_image

__all__ = ["elsewhere", "ipc"]  # the fixtures

BT709 = ColorSpec(matrix="BT709", range="LIMITED")


def _payload(obj: object) -> Description:
    reduced: Any = obj.__reduce_ex__(4)
    return Description.from_payload(reduced[1][-1])


def test_a_device_image_pickles_to_a_description_of_its_allocation(ipc: FakeDriver) -> None:
    image = GpuImage.empty(6, 10, 3, row_alignment=256)
    crop = image.crop(2, 1, 4, 3)
    function, arguments = cast(Any, crop.__reduce_ex__(2))
    assert function is open_image
    assert arguments[0] is GpuImage
    description = Description.from_payload(arguments[1])
    base, size = ipc.address_range(image.ptr, 0)
    assert description.kind == "image"
    assert description.allocations[0].size == size
    assert description.allocations[0].handle == ipc.mem_handle(base, 0)
    assert description.items[0].offset == crop.ptr - base == image.ptr - base + 256 + 2 * 3
    assert description.items[0].spec == crop.spec
    assert description.device.uuid == ipc.device_uuid(0)
    assert description.device.pci_bus_id == "0000:1b:00.0"
    assert (description.producer_pid, description.producer_token) == (os.getpid(), _ipc_lease.process_token())
    assert os.path.exists(description.lease)
    assert description.event is not None  # the fake pool's memory is ready on its stream, 0
    assert ("record", int.from_bytes(description.event[:4], "little"), 0) in ipc.log
    image.synchronize()
    assert _payload(image).event is None, "nothing pending: no ready point"


def test_the_ready_point_is_an_event_recorded_on_the_data_s_stream_at_pickling(ipc: FakeDriver) -> None:
    image = GpuImage.empty(4, 4, stream=7)
    description = _payload(image)
    assert description.event is not None
    name = int.from_bytes(description.event[:4], "little")
    assert ("record", name, 7) in ipc.log
    image.record_write(9)  # a later write: the next pickling records its own ready point
    again = _payload(image)
    assert again.event is not None
    assert ("record", int.from_bytes(again.event[:4], "little"), 9) in ipc.log


def test_a_frame_carries_its_planes_layout_and_colour(ipc: FakeDriver) -> None:
    frame = GpuFrame.empty(16, 8, format="NV12", colour=BT709, row_alignment=64)
    function, arguments = cast(Any, frame.__reduce_ex__(2))
    assert (function, arguments[:2]) == (open_frame, (GpuFrame, GpuImage))
    description = Description.from_payload(arguments[2])
    assert description.frame is not None
    assert description.frame.layout == frame.layout
    assert description.frame.colour == BT709
    assert [item.spec for item in description.items] == [plane.spec for plane in frame.planes]
    assert {item.allocation for item in description.items} == {0}


def test_a_frame_of_planes_apart_names_each_allocation(ipc: FakeDriver) -> None:
    y, uv = GpuImage.empty(8, 16), GpuImage.empty(4, 8, 2)
    frame = GpuFrame.from_planes([y, uv], format="NV12")
    description = _payload(frame)
    assert len(description.allocations) == 2
    assert [item.allocation for item in description.items] == [0, 1]
    assert description.frame is not None
    assert description.frame.layout is None


def test_a_batch_carries_item_zero_its_count_and_pitch(ipc: FakeDriver) -> None:
    batch = GpuBatch.empty(3, 4, 5, 3, "float32")
    function, arguments = cast(Any, batch.__reduce_ex__(2))
    assert (function, arguments[0]) == (open_batch, GpuBatch)
    description = Description.from_payload(arguments[1])
    assert description.batch is not None
    assert (description.batch.size, description.batch.item_pitch) == (3, batch.item_pitch)
    assert description.items[0].spec == batch.item_spec


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol_round_trips_in_the_same_process_to_the_same_object(
    ipc: FakeDriver, protocol: int
) -> None:
    image = filled(GpuImage.empty(3, 5, 2))
    frame = GpuFrame.empty(8, 4, format="NV12")
    batch = GpuBatch.empty(2, 3, 3, 1)
    loaded = pickle.loads(
        pickle.dumps({"image": image, "frames": [frame], "batch": batch}, protocol=protocol)
    )
    assert loaded["image"] is image
    assert loaded["frames"][0] is frame
    assert loaded["batch"] is batch


def test_the_lease_keeps_the_memory_until_it_ends(ipc: FakeDriver, elsewhere: None) -> None:
    image = GpuImage.empty(4, 4)
    owner = weakref.ref(image.owner)  # the fake allocator's NumPy buffer
    data = pickle.dumps(image)
    del image
    gc.collect()
    assert owner() is not None, "a pickled image's memory stays until its description is let go"
    assert gpuimage.collect_shared() == 1
    opened = pickle.loads(data)
    assert gpuimage.collect_shared() == 1
    del opened
    ipc.settle()
    assert gpuimage.collect_shared() == 0
    gc.collect()
    assert owner() is None


def test_a_description_nobody_opens_lets_go_after_the_timeout(ipc: FakeDriver) -> None:
    image = GpuImage.empty(4, 4)
    owner = weakref.ref(image.owner)
    description = _payload(image)
    del image
    assert gpuimage.collect_shared() == 1
    gpuimage.set_unopened_timeout(1e-6)
    assert gpuimage.collect_shared() == 0
    gc.collect()
    assert owner() is None
    assert not os.path.exists(description.lease)


# -- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: GpuImage.from_numpy(np.zeros((2, 3), np.uint8)), "an image"),
        (lambda: GpuFrame.empty(8, 4, format="NV12", device="cpu"), "a frame"),
        (lambda: GpuBatch.from_numpy(np.zeros((2, 3, 4, 4), np.float32)), "a batch"),
    ],
    ids=["image", "frame", "batch"],
)
def test_host_memory_goes_by_value_without_the_ipc_driver(make: Any, kind: str, ipc: FakeDriver) -> None:
    # issue 15: host memory has no IPC handle; it pickles by value (tests/test_host_pickle.py)
    source, shared = make(), gpuimage.collect_shared()
    function, arguments = cast(Any, source.__reduce_ex__(2))
    assert function.__module__ == "gpuimage._host_pickle"
    assert isinstance(arguments[-1], np.ndarray), f"{kind}: the pixels themselves travel"
    assert (ipc.log, ipc.events, ipc.opened) == ([], 0, []), "nothing of CUDA IPC is asked for host memory"
    assert gpuimage.collect_shared() == shared, "and no lease is made"
    loaded = pickle.loads(pickle.dumps(source))
    assert type(loaded) is type(source)
    np.testing.assert_array_equal(np.asarray(loaded.as_numpy()), np.asarray(source.as_numpy()))


def test_memory_mapped_from_another_process_is_refused(ipc: FakeDriver, elsewhere: None) -> None:
    opened = pickle.loads(pickle.dumps(GpuImage.empty(4, 4)))
    with pytest.raises(ExportError, match=f"memory mapped from process {os.getpid()}"):
        pickle.dumps(opened)
    with pytest.raises(ExportError, match="cannot share a mapping again"):
        pickle.dumps(opened.crop(1, 1, 2, 2))
    rewrapped = GpuImage.from_pointer(opened.ptr, opened.spec)  # the owner is lost: the address tells
    with pytest.raises(ExportError, match="memory mapped from process"):
        pickle.dumps(rewrapped)


def test_memory_without_an_ipc_handle_says_which_allocators_give_one(ipc: FakeDriver) -> None:
    ipc.refuse_handles = True
    with pytest.raises(ExportError, match="expandable segment"):
        pickle.dumps(GpuImage.empty(4, 4))


def test_an_image_over_several_allocations_is_refused(ipc: FakeDriver) -> None:
    image = GpuImage.empty(4, 4)
    base, size = ipc.address_range(image.ptr, 0)
    over = GpuImage.from_pointer(base, ImageSpec(height=2, width=size))  # two rows: past the allocation
    with pytest.raises(BoundsError, match="inside one allocation"):
        pickle.dumps(over)


def test_a_pointer_the_driver_does_not_know_is_refused(ipc: FakeDriver) -> None:
    with pytest.raises(ExportError, match="not device memory"):
        pickle.dumps(GpuImage.from_pointer(0x7F00_0000_0000, ImageSpec(height=2, width=2)))


def test_a_stream_being_captured_is_refused(ipc: FakeDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ipc, "is_capturing", lambda stream: True)
    image = GpuImage.empty(4, 4, stream=7)
    with pytest.raises(ExportError, match="being captured"):
        pickle.dumps(image)
    assert gpuimage.collect_shared() == 0, "a refused pickling leaves no lease behind"


def test_a_failed_description_ends_its_lease(ipc: FakeDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Description) -> None:
        raise BoundsError("forged")

    monkeypatch.setattr(Description, "check", broken)
    with pytest.raises(BoundsError, match="forged"):
        pickle.dumps(GpuImage.empty(4, 4))
    assert gpuimage.collect_shared() == 0
    assert not os.listdir(_ipc_lease.lease_directory())
