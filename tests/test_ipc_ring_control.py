"""A ring's control block and description (``_ipc_ring_control``), pure: the writer never gets a slot
the reader holds or has not read, the reader reads every write once and in order, and a malformed
description or block is refused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gpuimage import InteropError, LifetimeError
from gpuimage._ipc_description import SharedDevice
from gpuimage._ipc_ring_control import RingControl, RingDescription, control_bytes

DIRECTORY = "/dev/shm/gpuimage-ipc-1000-4026531836-77-0123456789abcdef"


def _block(slots: int) -> tuple[bytearray, RingControl]:
    buffer = bytearray(control_bytes(slots))
    return buffer, RingControl(buffer, slots, create=True)


class RingModel(RuleBasedStateMachine):
    """One writer and one reader interleaved at random; a model of which write each slot holds."""

    def __init__(self) -> None:
        super().__init__()
        self.slots = 0
        self.control: RingControl | None = None
        self.writing: tuple[int, int] | None = None  # (seq, slot) the writer holds
        self.reading: tuple[int, int] | None = None  # (seq, slot) the reader holds
        self.contents: dict[int, int] = {}  # slot -> seq written there (what the reader must get)
        self.read_order: list[int] = []

    @precondition(lambda self: self.control is None)
    @rule(slots=st.integers(1, 5))
    def start(self, slots: int) -> None:
        self.slots = slots
        self.buffer, self.control = _block(slots)

    @precondition(lambda self: self.control is not None and self.writing is None)
    @rule()
    def begin_write(self) -> None:
        assert self.control is not None
        found = self.control.writable()
        if found is None:  # full: every slot written and not yet released, or held by the reader
            assert self.control.write_seq - self.control.read_seq == self.slots or self.reading is not None
            return
        seq, slot = found
        assert self.reading is None or self.reading[1] != slot, "never a slot the reader holds"
        assert seq - self.control.read_seq < self.slots, "never overwrite an unread write"
        self.writing = found

    @precondition(lambda self: self.writing is not None)
    @rule(publish=st.booleans())
    def end_write(self, publish: bool) -> None:
        assert self.control is not None
        assert self.writing is not None
        seq, slot = self.writing
        self.writing = None
        if publish:  # else the write failed: the next one takes the same slot
            self.contents[slot] = seq
            self.control.publish(seq)

    @precondition(lambda self: self.control is not None and self.reading is None)
    @rule()
    def begin_read(self) -> None:
        assert self.control is not None
        found = self.control.readable()
        if found is None:
            assert self.control.read_seq == self.control.write_seq, "nothing published is left unread"
            return
        seq, slot = found
        assert self.contents[slot] == seq, "the reader gets exactly the write published there"
        assert self.writing is None or self.writing[1] != slot
        self.reading = found

    @precondition(lambda self: self.reading is not None)
    @rule()
    def end_read(self) -> None:
        assert self.control is not None
        assert self.reading is not None
        seq, _ = self.reading
        self.read_order.append(seq)
        self.control.release(seq)
        self.reading = None

    @invariant()
    def reads_are_every_write_in_order(self) -> None:
        assert self.read_order == list(range(len(self.read_order)))
        if self.control is not None:
            assert 0 <= self.control.write_seq - self.control.read_seq <= self.slots
            attached = RingControl(self.buffer, self.slots, create=False)  # the other process's view
            assert (attached.write_seq, attached.read_seq) == (self.control.write_seq, self.control.read_seq)
            attached.detach()


TestRingModel = RingModel.TestCase
TestRingModel.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


def test_the_writer_waits_on_a_read_event_only_once_one_was_recorded() -> None:
    _, control = _block(2)
    assert not control.read_recorded(0)
    for seq in (0, 1):
        assert control.writable() == (seq, seq)
        control.publish(seq)
    assert control.writable() is None, "full"
    assert control.readable() == (0, 0)
    control.release(0)
    assert control.read_recorded(0)
    assert not control.read_recorded(1)
    assert control.writable() == (2, 0)


def test_out_of_order_publishing_and_releasing_are_refused() -> None:
    _, control = _block(3)
    with pytest.raises(LifetimeError, match="expected to publish sequence 0, got 1"):
        control.publish(1)
    control.publish(0)
    with pytest.raises(LifetimeError, match="expected to release sequence 0, got 2"):
        control.release(2)


def test_a_slot_overwritten_before_it_was_read_is_reported() -> None:
    buffer, control = _block(2)
    control.publish(0)
    cells: Any = memoryview(buffer).cast("q")
    cells[5] = 3  # slot 0 says write 2: the writer went round without the reader
    with pytest.raises(LifetimeError, match="overwrote a slot that was never read"):
        control.readable()


@given(slots=st.integers(1, 64))
def test_a_block_attaches_only_as_it_was_made(slots: int) -> None:
    buffer, control = _block(slots)
    control.publish(0)
    again = RingControl(buffer, slots, create=False)
    assert again.write_seq == 1
    assert again.written(0) == 1
    again.detach()
    with pytest.raises(InteropError, match="control block of"):  # too small for one more slot
        RingControl(buffer, slots + 1, create=False)
    if slots > 1:
        with pytest.raises(InteropError, match=f"control block of a {slots - 1}-slot ring"):
            RingControl(buffer, slots - 1, create=False)


def test_a_block_of_zeros_or_the_wrong_size_is_refused() -> None:
    with pytest.raises(InteropError, match="magic"):
        RingControl(bytearray(control_bytes(2)), 2, create=False)
    with pytest.raises(InteropError, match="control block of"):
        RingControl(bytearray(8), 2, create=False)
    with pytest.raises(InteropError, match="1 to 4096 slots"):
        RingControl(bytearray(8), 0, create=True)


# -- the ring's description --------------------------------------------------------------------------


def _ring(slots: int = 3) -> RingDescription:
    return RingDescription(
        kind="frame",
        slots=slots,
        control=f"{DIRECTORY}/1.ctl",
        writer=f"{DIRECTORY}/2.writer",
        lease=f"{DIRECTORY}/3.lease",
        events=tuple((bytes([i]) * 64, bytes([i + 100]) * 64) for i in range(slots)),
        device=SharedDevice(bytes(16), "0000:1b:00.0", 0),
        producer_pid=77,
        producer_token="0123456789abcdef",
    )


@given(slots=st.integers(1, 16))
def test_a_ring_description_reads_back(slots: int) -> None:
    description = _ring(slots)
    assert RingDescription.from_payload(description.to_payload()) == description


def _set(key: str, value: object) -> Any:
    return lambda payload: payload.__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("version", 2), "version 1, got version=2"),
        (_set("kind", "batch"), "image or frame ring"),
        (_set("slots", 0), "image or frame ring"),
        (_set("slots", 4), "4 pairs"),
        (_set("events", [[bytes(64)]] * 3), "pairs of 64-byte"),
        (_set("events", [[bytes(64), bytes(63)]] * 3), "pairs of 64-byte"),
        (_set("control", "/etc/passwd"), "lease file"),
        (_set("writer", f"{DIRECTORY}/../2.writer"), "lease file"),
        (_set("lease", None), "lease file"),
        (_set("device", {"uuid": bytes(15), "pci_bus_id": "x", "ordinal": 0}), "device UUID"),
        (_set("producer", {"pid": -1, "token": "x"}), "producer pid"),
        (_set("device", []), "device to be a dict"),
    ],
)
def test_a_bad_ring_description_is_refused(edit: Any, message: str) -> None:
    payload = _ring().to_payload()
    edit(payload)
    with pytest.raises(InteropError, match=message):
        RingDescription.from_payload(payload)
