"""Opening another process's memory on another GPU (``_ipc_devices.open_on``): a peer view or a copy,
refused where the GPUs cannot reach each other, and every event and stream call made with its own
device's context. A recording driver (``fake_ipc``) with two GPUs stands in for CUDA; the same on two
real GPUs between spawn processes is ``gpu/test_cuda_ipc_multi_gpu.py``."""

from __future__ import annotations

import gc
import pickle
from typing import Any

import numpy as np
import pytest

import gpuimage
from fake_ipc import FakeDriver, elsewhere, filled, ipc, values
from gpuimage import Device, DeviceError, GpuBatch, GpuFrame, GpuImage, SharedRing, open_on
from gpuimage._ipc_devices import choice
from gpuimage._ipc_open import SharedHold

__all__ = ["elsewhere", "ipc"]  # the fixtures

PRODUCER, ON_0, ON_1 = 7, 30, 31  # the producer's stream; the consumer's current streams of GPUs 0 and 1


def _late(ipc: FakeDriver, make: Any = lambda: GpuImage.empty(5, 7, 3, row_alignment=64)) -> Any:
    """A filled image (frame, batch) on GPU 0 whose write is still pending on ``PRODUCER``; the
    consumer's current streams are ``ON_0`` and ``ON_1``."""
    made = make()
    for part in made.planes if isinstance(made, GpuFrame) else made if isinstance(made, GpuBatch) else [made]:
        filled(part, seed=3)
    made.record_write(PRODUCER)
    ipc.runtime.streams.update({0: ON_0, 1: ON_1})
    return made


def _ready_event(ipc: FakeDriver) -> int:
    """The ready point's event: recorded on the producer's stream, in GPU 0's context."""
    recorded = [name for call, name, stream, device in ipc.ops if call == "record" and stream == PRODUCER]
    assert recorded, "pickling recorded no ready point"
    assert ("record", recorded[-1], PRODUCER, 0) in ipc.ops
    return recorded[-1]


# -- the choice -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "access", "match"),
    [
        ("cpu", "peer", "expected a GPU"),
        ("cuda:x", "peer", "expected a device such as"),
        (1, "view", "expected access='peer'"),
        (1, None, "expected access='peer'"),
    ],
    ids=["host", "bad-device", "unknown-access", "no-access"],
)
def test_a_bad_choice_is_refused_with_what_to_pass(device: Any, access: Any, match: str) -> None:
    with pytest.raises(DeviceError, match=match), open_on(device, access=access):
        pass


def test_the_choice_holds_inside_its_block_only_and_nests() -> None:
    assert choice() is None
    with open_on("cuda:1", access="peer"):
        assert (choice().device, choice().access) == (1, "peer")  # type: ignore[union-attr]
        with open_on(0, access="copy"):
            assert (choice().device, choice().access) == (0, "copy")  # type: ignore[union-attr]
        assert choice().access == "peer"  # type: ignore[union-attr]
    assert choice() is None


# -- a peer view ------------------------------------------------------------------------------------------


def test_a_peer_view_maps_the_memory_for_the_other_gpu_and_waits_there(
    ipc: FakeDriver, elsewhere: None
) -> None:
    image = _late(ipc)
    data = pickle.dumps(image)
    event = _ready_event(ipc)
    with open_on(1, access="peer"):
        opened = pickle.loads(data)
    assert opened.device == Device("cuda", 1), "the view is used on GPU 1"
    assert isinstance(opened.owner, SharedHold)
    assert opened.ptr == image.ptr, "a view: no copy"
    np.testing.assert_array_equal(values(opened), values(image))
    assert ipc.opened_on == [1], "mapped in GPU 1's context (lazy peer access)"
    assert ("wait", event, ON_1, 0) not in ipc.ops
    assert ("wait", event, ON_1, 1) in ipc.ops, "GPU 1's current stream waits, in GPU 1's context"
    assert 1 in ipc.runtime.guards, "the runtime's device guard made GPU 1 current for it"
    assert opened.stream == ON_1
    assert not ipc.runtime.copies


def test_a_peer_view_the_gpus_cannot_make_is_refused_and_lets_go(ipc: FakeDriver, elsewhere: None) -> None:
    ipc.peers.clear()
    data = pickle.dumps(_late(ipc))
    with (
        pytest.raises(DeviceError, match=r"cuDeviceCanAccessPeer\(1, 0\) = 0") as raised,
        open_on(1, access="peer"),
    ):
        pickle.loads(data)
    assert "access='copy'" in str(raised.value)
    assert not ipc.opened, "nothing was mapped"
    assert gpuimage.collect_shared() == 0, "the consumer let go of its lease"


def test_memory_already_on_the_chosen_gpu_opens_as_usual(ipc: FakeDriver, elsewhere: None) -> None:
    ipc.peers.clear()  # a peer check would refuse: none is made
    data = pickle.dumps(_late(ipc))
    event = _ready_event(ipc)
    with open_on(0, access="peer"):
        opened = pickle.loads(data)
    assert (opened.device, ipc.opened_on, opened.stream) == (Device("cuda", 0), [0], ON_0)
    assert ("wait", event, ON_0, 0) in ipc.ops


def test_one_allocation_opens_one_way_per_process(ipc: FakeDriver, elsewhere: None) -> None:
    image = _late(ipc, lambda: GpuImage.empty(8, 8))
    plain, peer = pickle.dumps(image.crop(0, 0, 4, 4)), pickle.dumps(image.crop(4, 4, 4, 4))
    first = pickle.loads(plain)
    with (
        pytest.raises(DeviceError, match="mapped for cuda:0 already and asked for cuda:1"),
        open_on(1, access="peer"),
    ):
        pickle.loads(peer)
    assert ipc.opened_on == [0]
    assert first.device == Device("cuda", 0)
    assert gpuimage.collect_shared() == 1, "the refused description let go; the first one is held"


# -- a copy -------------------------------------------------------------------------------------------------


def test_a_copy_opens_on_the_memory_s_gpu_and_copies_to_the_chosen_one(
    ipc: FakeDriver, elsewhere: None
) -> None:
    image = _late(ipc)
    data = pickle.dumps(image.with_channel_order("BGR"))
    event = _ready_event(ipc)
    with open_on("cuda:1", access="copy"):
        copy = pickle.loads(data)
    assert copy.device == Device("cuda", 1)
    assert copy.ptr != image.ptr
    assert not isinstance(copy.owner, SharedHold)
    np.testing.assert_array_equal(values(copy), values(image))
    assert copy.channel_order.value == "BGR"
    assert ipc.opened_on == [0], "mapped on its own GPU"
    assert ("wait", event, ON_0, 0) in ipc.ops, "GPU 0's stream waits for the write, before the copy"
    assert [device for *_, device in ipc.runtime.copies] == [1], "copied on GPU 1's stream"
    del copy
    ipc.settle()
    assert ipc.closed == ipc.opened, "the mapping goes once the copy has finished"
    assert gpuimage.collect_shared() == 0


def test_frames_and_batches_are_copied_whole(ipc: FakeDriver, elsewhere: None) -> None:
    frame = _late(ipc, lambda: GpuFrame.empty(16, 8, format="NV12", row_alignment=64))
    batch = _late(ipc, lambda: GpuBatch.empty(3, 4, 5, 3, "float32", layout="NHWC").with_channel_order("RGB"))
    data = pickle.dumps((frame, batch))
    with open_on(1, access="copy"):
        frame_copy, batch_copy = pickle.loads(data)
    assert (frame_copy.device, frame_copy.format, frame_copy.layout is not None) == (
        Device("cuda", 1),
        frame.format,
        True,
    )
    for mine, theirs in zip(frame_copy.planes, frame.planes, strict=True):
        np.testing.assert_array_equal(values(mine), values(theirs))
    assert (batch_copy.device, batch_copy.size, batch_copy.layout) == (Device("cuda", 1), 3, batch.layout)
    assert batch_copy.channel_order == batch.channel_order
    for mine, theirs in zip(batch_copy, batch, strict=True):
        np.testing.assert_array_equal(values(mine), values(theirs))
    assert {device for *_, device in ipc.runtime.copies} == {1}
    assert len(ipc.runtime.copies) == 2 + 3, "each plane, each item"


def test_in_the_process_that_pickled_a_copy_is_made_and_a_peer_view_refused(ipc: FakeDriver) -> None:
    image = filled(GpuImage.empty(4, 4))
    data = pickle.dumps(image)
    with open_on(1, access="copy"):
        copy = pickle.loads(data)
    assert copy is not image
    assert copy.device == Device("cuda", 1)
    np.testing.assert_array_equal(values(copy), values(image))
    with open_on(0, access="copy"):
        assert pickle.loads(data) is image, "already on the chosen GPU: the original"
    with pytest.raises(DeviceError, match="made in this process") as raised, open_on(1, access="peer"):
        pickle.loads(data)
    assert "access='copy'" in str(raised.value)


# -- a ring read from another GPU -----------------------------------------------------------------------


def test_a_ring_read_through_peer_views_keeps_each_event_on_its_own_gpu(
    ipc: FakeDriver, elsewhere: None
) -> None:
    writer = SharedRing.from_items([GpuImage.empty(4, 6, 3) for _ in range(2)])
    ipc.runtime.streams.update({0: ON_0, 1: ON_1})
    with open_on(1, access="peer"):
        reader = pickle.loads(pickle.dumps(writer))
    assert [item.device for item in reader.items] == [Device("cuda", 1)] * 2
    with writer.writing(stream=PRODUCER) as (_, item):
        filled(item, 4)
    written = [name for call, name, stream, _ in ipc.ops if call == "record" and stream == PRODUCER][-1]
    ipc.ops.clear()
    with reader.reading(stream=55) as item:
        np.testing.assert_array_equal(values(item), values(writer.items[0]))
        assert item.device == Device("cuda", 1)
    (bridge,) = {name for call, name, stream, _ in ipc.ops if call == "record" and stream == 55}
    read = [name for call, name, stream, device in ipc.ops if call == "record" and stream == ON_0]
    assert ipc.ops == [
        ("wait", written, 55, 1),  # the reader's stream waits for the write, in GPU 1's context
        ("record", bridge, 55, 1),  # its reads, recorded on GPU 1
        ("wait", bridge, ON_0, 0),  # GPU 0's stream waits for them
        ("record", read[0], ON_0, 0),  # and the slot's "read" event is recorded there, on its own GPU
    ]
    for _ in range(2):  # slot 1, then slot 0 again
        with writer.writing(stream=PRODUCER):
            pass
    assert ("wait", read[0], PRODUCER, 0) in ipc.ops, "the writer waits for the read before rewriting"


def test_a_copy_of_a_ring_is_refused(ipc: FakeDriver, elsewhere: None) -> None:
    writer = SharedRing.from_items([GpuImage.empty(4, 6, 3) for _ in range(2)])
    data = pickle.dumps(writer)
    with pytest.raises(DeviceError, match="a snapshot of the slots") as raised, open_on(1, access="copy"):
        pickle.loads(data)
    assert "access='peer'" in str(raised.value)
    gc.collect()
