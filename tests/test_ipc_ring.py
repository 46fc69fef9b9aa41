"""``SharedRing`` (``_ipc_ring``) with a recording driver (``fake_ipc``): which events each side records
and waits on, when the host waits, what a failed write leaves, and how a side learns that the other is
gone (closed, exited, or SIGKILLed in a real child process) instead of waiting forever."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

import gpuimage
from fake_ipc import FakeDriver, elsewhere, filled, ipc, values
from gpuimage import (
    DeviceError,
    GpuFrame,
    GpuImage,
    InteropError,
    LayoutError,
    LifetimeError,
    SharedRing,
    SpecError,
    WaitTimeoutError,
)
from gpuimage._ipc_open import SharedHold

__all__ = ["elsewhere", "ipc"]  # the fixtures

WRITER, READER = 11, 22  # the two sides' streams


def _ring(slots: int = 3) -> SharedRing[GpuImage]:
    return SharedRing.from_items([GpuImage.empty(4, 6, 3) for _ in range(slots)])


def _names(ipc: FakeDriver, kind: str, stream: int) -> list[int]:
    return [name for what, name, on in ipc.log if what == kind and on == stream]


def test_a_ring_needs_two_or_more_device_items_of_one_geometry(ipc: FakeDriver) -> None:
    with pytest.raises(SpecError, match="2 to 4096"):
        SharedRing.from_items([GpuImage.empty(4, 4)])
    with pytest.raises(SpecError, match="every item like the first"):
        SharedRing.from_items([GpuImage.empty(4, 4), GpuImage.empty(4, 5)])
    with pytest.raises(SpecError, match="every item like the first"):
        SharedRing.from_items([GpuImage.empty(8, 8), GpuFrame.empty(8, 8, format="NV12")])  # type: ignore[type-var]
    with pytest.raises(DeviceError, match="device memory"):
        SharedRing.from_items([GpuImage.empty(4, 4, device="cpu") for _ in range(2)])
    apart = GpuFrame.from_planes([GpuImage.empty(8, 8), GpuImage.empty(4, 4, 2)], format="NV12")
    with pytest.raises(LayoutError, match=r"GpuFrame\.empty"):
        SharedRing.from_items([apart, apart])
    with pytest.raises(InteropError, match="GpuImage or GpuFrame"):
        SharedRing.from_items([np.zeros(3), np.zeros(3)])  # type: ignore[type-var]


def test_writes_and_reads_order_each_other_through_the_slot_events(ipc: FakeDriver) -> None:
    writer = _ring(2)
    reader = pickle.loads(pickle.dumps(writer))  # in this process: the reader shares the block
    assert (writer.role, reader.role, reader.slots) == ("writer", "reader", 2)
    for seed in (0, 1):
        with writer.writing(stream=WRITER) as (index, item):
            assert index == seed
            filled(item, seed)
    written = _names(ipc, "record", WRITER)
    assert len(written) == 2
    assert not _names(ipc, "wait", WRITER), "no read was ever recorded: the writer does not wait"
    with reader.reading(stream=READER) as item:
        assert item is writer.items[0]
        np.testing.assert_array_equal(values(item), values(filled(GpuImage.empty(4, 6, 3), 0)))
        assert item.stream == READER
    assert _names(ipc, "wait", READER) == written[:1], "the reader's stream waits for slot 0's write"
    read = _names(ipc, "record", READER)
    with writer.writing(stream=WRITER) as (index, _):
        assert index == 0
    assert _names(ipc, "wait", WRITER) == read, "the writer's stream waits for the slot's last read"
    assert "written=3, read=1" in repr(writer)


def test_the_reader_elsewhere_opens_the_items_and_events(ipc: FakeDriver, elsewhere: None) -> None:
    writer = SharedRing.from_items([GpuFrame.empty(16, 8, format="NV12") for _ in range(2)])
    reader = pickle.loads(pickle.dumps(writer))
    assert all(isinstance(item.planes[0].owner, SharedHold) for item in reader.items)
    assert [item.planes[1].ptr for item in reader.items] == [item.planes[1].ptr for item in writer.items]
    with writer.writing(stream=WRITER) as (_, frame):
        filled(frame.planes[1], 5)
    with reader.reading(stream=READER) as frame:
        assert frame is reader.items[0]
        np.testing.assert_array_equal(values(frame.planes[1]), values(writer.items[0].planes[1]))
        assert frame.stream == READER
    assert _names(ipc, "wait", READER) == _names(ipc, "record", WRITER)[-1:]


def test_a_full_ring_and_an_empty_one_time_out(ipc: FakeDriver) -> None:
    writer = _ring(2)
    reader = pickle.loads(pickle.dumps(writer))
    with (
        pytest.raises(WaitTimeoutError, match=r"writer to publish a slot within timeout=0\.01"),
        reader.reading(timeout=0.01),
    ):
        pass
    for _ in range(2):
        with writer.writing():
            pass
    with (
        pytest.raises(WaitTimeoutError, match="reader to release a slot") as raised,
        writer.writing(timeout=0.01),
    ):
        pass
    assert isinstance(raised.value, TimeoutError)


def test_a_failed_write_publishes_nothing_and_the_slot_is_taken_again(ipc: FakeDriver) -> None:
    writer = _ring(2)
    reader = pickle.loads(pickle.dumps(writer))
    with pytest.raises(RuntimeError, match="decoder"), writer.writing() as (index, _):
        raise RuntimeError("decoder")
    with pytest.raises(WaitTimeoutError), reader.reading(timeout=0.01):
        pass
    with writer.writing() as (again, _):
        assert again == index == 0


def test_a_read_is_released_even_through_an_exception(ipc: FakeDriver) -> None:
    writer = _ring(2)
    reader = pickle.loads(pickle.dumps(writer))
    for _ in range(2):
        with writer.writing():
            pass
    with pytest.raises(ValueError, match="model"), reader.reading():
        raise ValueError("model")
    with writer.writing(timeout=0.01) as (index, _):
        assert index == 0


def test_each_side_does_only_its_own_part(ipc: FakeDriver) -> None:
    writer = _ring(2)
    reader = pickle.loads(pickle.dumps(writer))
    with pytest.raises(InteropError, match="expected the reader side"), writer.reading():
        pass
    with pytest.raises(InteropError, match="expected the writer side"), reader.writing():
        pass
    with pytest.raises(InteropError, match="expected the writer side"):
        pickle.dumps(reader)
    writer.close()
    writer.close()
    with pytest.raises(LifetimeError, match="closed"):
        pickle.dumps(writer)
    with pytest.raises(TypeError, match="from_items"):
        SharedRing()


# -- the other side is gone --------------------------------------------------------------------------


def _fill(writer: SharedRing[Any]) -> None:
    for _ in range(writer.slots):
        with writer.writing():
            pass


def test_a_writer_stops_when_its_reader_closed_the_ring(ipc: FakeDriver, elsewhere: None) -> None:
    writer = _ring(2)
    reader = pickle.loads(pickle.dumps(writer))
    _fill(writer)
    reader.close()
    with (
        pytest.raises(LifetimeError, match="reader closed its ring, exited or was killed"),
        writer.writing(timeout=10),
    ):
        pass


def test_a_writer_stops_when_its_reader_is_sigkilled(ipc: FakeDriver) -> None:
    writer = _ring(2)
    pickle.dumps(writer)  # the description a reader would get: its lease is what the reader holds
    lease = writer._lease
    assert lease is not None
    code = f"""
        import sys, time
        sys.path[:0] = {sys.path!r}
        from gpuimage._ipc_lease import Hold
        hold = Hold.take({lease.path!r}, where="reader")
        print("attached", flush=True)
        time.sleep(60)
    """
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "attached"
        _fill(writer)
        with pytest.raises(WaitTimeoutError), writer.writing(timeout=0.3):  # alive: the writer waits for it
            pass
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        with pytest.raises(LifetimeError, match="let go"), writer.writing(timeout=10):
            pass
    finally:
        child.kill()


def test_a_writer_whose_reader_never_came_is_told(ipc: FakeDriver) -> None:
    writer = _ring(2)
    pickle.dumps(writer)
    gpuimage.set_unopened_timeout(1e-6)
    gpuimage.collect_shared()
    _fill(writer)
    with pytest.raises(LifetimeError, match="none within unopened_timeout"), writer.writing(timeout=10):
        pass


def test_a_reader_stops_when_its_writer_is_gone(ipc: FakeDriver, elsewhere: None) -> None:
    writer = _ring(2)
    reader = pickle.loads(pickle.dumps(writer))
    with writer.writing():
        pass
    writer.close()
    with reader.reading(timeout=10):
        pass  # what was published is still read
    with (
        pytest.raises(LifetimeError, match="writer closed the ring, exited or was killed"),
        reader.reading(timeout=10),
    ):
        pass
