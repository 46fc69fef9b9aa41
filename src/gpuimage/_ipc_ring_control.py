"""The control block of a ``SharedRing`` and the ring's description: pure state, no GPU call.

One writer process and one reader process share N slots. Writes get sequence numbers 0, 1, 2, ...;
write ``s`` goes to slot ``s % N``, and the reader reads them in the same order. The control block is
a small shared array of 64-bit integers (a memory-mapped file; a ``bytearray`` in tests), each
written by one side only:

- ``write_seq``: how many writes the writer published; ``read_seq``: how many reads the reader released;
- per slot, ``written[i]``: one more than the sequence number last published into slot ``i``, and
  ``read[i]``: one more than the sequence number last released from it (0: never).

A side stores its number only after it recorded its event (the writer's "written" event of the slot,
the reader's "read" event), so whoever sees the number also finds the record. Hence:

- the writer may write ``s`` once ``read[s % N] >= s - N + 1`` (the slot's previous write, ``s - N``,
  was released); it never overwrites a slot the reader holds, and its stream waits on the GPU for
  the slot's "read" event when one was recorded;
- the reader may read ``r`` once ``written[r % N] == r + 1``, and its stream waits for the slot's
  "written" event; a larger number would mean the writer overwrote an unread slot: corrupt.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from ._errors import InteropError, LifetimeError
from ._ipc_description import HANDLE_BYTES, UUID_BYTES, SharedDevice
from ._ipc_lease import check_lease_path

__all__ = ["MAX_SLOTS", "RingControl", "RingDescription", "control_bytes"]

_MAGIC = 0x474E_4952_4950_4755  # "GPUIRING" as a little-endian int64
_VERSION = 1
_HEADER = 5  # magic, version, slots, write_seq, read_seq
MAX_SLOTS = 4096
_WHERE = "pickle.loads(ring)"


def control_bytes(slots: int) -> int:
    """The size of the control block of a ring of ``slots`` slots."""
    return (_HEADER + 2 * slots) * 8


class RingControl:
    """The control block over a writable buffer (see the module). ``create`` initializes one;
    ``attach`` checks an existing one."""

    __slots__ = ("_cells", "slots")

    def __init__(self, buffer: object, slots: int, *, create: bool) -> None:
        if not 0 < slots <= MAX_SLOTS:
            raise InteropError(f"SharedRing: expected 1 to {MAX_SLOTS} slots, got slots={slots}.")
        count = _HEADER + 2 * slots
        try:
            cells = (ctypes.c_int64 * count).from_buffer(buffer)  # type: ignore[arg-type]  # any writable buffer
        except (TypeError, ValueError) as exc:
            raise InteropError(
                f"{_WHERE}: expected a ring control block of {count * 8} bytes, got {exc}."
            ) from exc
        self._cells, self.slots = cells, slots
        if create:
            cells[:] = [0] * count
            cells[0], cells[1], cells[2] = _MAGIC, _VERSION, slots
        elif (cells[0], cells[1], cells[2]) != (_MAGIC, _VERSION, slots):
            raise InteropError(
                f"{_WHERE}: expected the control block of a {slots}-slot ring of version {_VERSION}, got "
                f"(magic, version, slots) = ({cells[0]:#x}, {cells[1]}, {cells[2]}). The ring is corrupt."
            )

    @property
    def write_seq(self) -> int:
        """Writes published so far."""
        return int(self._cells[3])

    @property
    def read_seq(self) -> int:
        """Reads released so far."""
        return int(self._cells[4])

    def written(self, slot: int) -> int:
        """One more than the sequence number last published into ``slot`` (0: never)."""
        return int(self._cells[_HEADER + slot])

    def read(self, slot: int) -> int:
        """One more than the sequence number last released from ``slot`` (0: never)."""
        return int(self._cells[_HEADER + self.slots + slot])

    def writable(self) -> tuple[int, int] | None:
        """``(sequence, slot)`` of the next write, or None while the reader holds or has not yet read
        that slot's previous write."""
        seq = self.write_seq
        slot = seq % self.slots
        return (seq, slot) if self.read(slot) >= seq - self.slots + 1 else None

    def publish(self, seq: int) -> None:
        """The write ``seq`` is recorded (its event): the reader may take it."""
        self._expect(seq, self.write_seq, "publish")
        slot = seq % self.slots
        self._cells[_HEADER + slot] = seq + 1
        self._cells[3] = seq + 1

    def readable(self) -> tuple[int, int] | None:
        """``(sequence, slot)`` of the next read, or None while the writer has not published it."""
        seq = self.read_seq
        slot = seq % self.slots
        written = self.written(slot)
        if written > seq + 1:
            raise LifetimeError(
                f"SharedRing.reading(): expected slot {slot} to hold write {seq} or an older one, got write "
                f"{written - 1} (the writer overwrote a slot that was never read). The control block is "
                "corrupt: was the ring pickled to two readers?"
            )
        return (seq, slot) if written == seq + 1 else None

    def release(self, seq: int) -> None:
        """The read ``seq`` is recorded (its event): the writer may reuse the slot."""
        self._expect(seq, self.read_seq, "release")
        slot = seq % self.slots
        self._cells[_HEADER + self.slots + slot] = seq + 1
        self._cells[4] = seq + 1

    def read_recorded(self, slot: int) -> bool:
        """Whether the reader ever recorded the slot's "read" event (the writer waits on it then)."""
        return self.read(slot) > 0

    @staticmethod
    def _expect(seq: int, current: int, action: str) -> None:
        if seq != current:
            raise LifetimeError(
                f"SharedRing: expected to {action} sequence {current}, got {seq} (out of order)."
            )

    def detach(self) -> None:
        """Let go of the buffer (a memory map can only close once no array points into it)."""
        self._cells = (ctypes.c_int64 * 0)()


@dataclass(frozen=True, slots=True)
class RingDescription:
    """What a pickled ``SharedRing`` carries besides its items: the control block's path, the writer's
    liveness file, the reader's lease, each slot's ("written", "read") event handles, the device."""

    kind: Literal["image", "frame"]
    slots: int
    control: str
    writer: str
    lease: str
    events: tuple[tuple[bytes, bytes], ...]
    device: SharedDevice
    producer_pid: int
    producer_token: str
    version: int = _VERSION

    def to_payload(self) -> dict[str, object]:
        """Plain data that ``from_payload`` reads back."""
        device = self.device
        return {
            "version": self.version,
            "kind": self.kind,
            "slots": self.slots,
            "control": self.control,
            "writer": self.writer,
            "lease": self.lease,
            "events": [list(pair) for pair in self.events],
            "device": {"uuid": device.uuid, "pci_bus_id": device.pci_bus_id, "ordinal": device.ordinal},
            "producer": {"pid": self.producer_pid, "token": self.producer_token},
        }

    @classmethod
    def from_payload(cls, payload: object) -> RingDescription:
        """Read and check a ring's payload; ``InteropError`` for anything malformed."""
        fields = _mapping(payload, "ring")
        if fields.get("version") != _VERSION or type(fields.get("version")) is not int:
            raise InteropError(
                f"{_WHERE}: expected a ring description of version {_VERSION}, got "
                f"version={fields.get('version')!r}. Run the same gpuimage release in both processes."
            )
        kind, slots = fields.get("kind"), fields.get("slots")
        if kind not in ("image", "frame") or type(slots) is not int or not 0 < slots <= MAX_SLOTS:
            raise InteropError(
                f"{_WHERE}: expected an image or frame ring of 1 to {MAX_SLOTS} slots, got {kind=}, {slots=}."
            )
        events = fields.get("events")
        pairs = [_handles(pair) for pair in cast("list[object]", events)] if isinstance(events, list) else []
        if len(pairs) != slots or None in pairs:
            raise InteropError(
                f"{_WHERE}: expected {slots} pairs of {HANDLE_BYTES}-byte event handles, got {events!r:.80}."
            )
        device, producer = (
            _mapping(fields.get("device"), "device"),
            _mapping(fields.get("producer"), "producer"),
        )
        uuid, bus_id, ordinal = device.get("uuid"), device.get("pci_bus_id"), device.get("ordinal")
        if (
            type(uuid) is not bytes
            or len(uuid) != UUID_BYTES
            or not isinstance(bus_id, str)
            or type(ordinal) is not int
        ):
            raise InteropError(
                f"{_WHERE}: expected a device UUID, PCI bus id and ordinal, got device={dict(device)!r}."
            )
        pid, token = producer.get("pid"), producer.get("token")
        if type(pid) is not int or pid <= 0 or not isinstance(token, str) or not token.isalnum():
            raise InteropError(
                f"{_WHERE}: expected a producer pid and token, got producer={dict(producer)!r}."
            )
        return cls(
            kind=kind,
            slots=slots,
            control=check_lease_path(fields.get("control"), where=_WHERE),
            writer=check_lease_path(fields.get("writer"), where=_WHERE),
            lease=check_lease_path(fields.get("lease"), where=_WHERE),
            events=tuple(pair for pair in pairs if pair is not None),
            device=SharedDevice(uuid, bus_id, ordinal),
            producer_pid=pid,
            producer_token=token,
        )


def _handles(pair: object) -> tuple[bytes, bytes] | None:
    """A ``[written, read]`` pair of event handles, or None when it is not one."""
    found = cast("list[object]", pair) if isinstance(pair, list) else []
    if len(found) == 2 and all(type(handle) is bytes and len(handle) == HANDLE_BYTES for handle in found):
        return cast(bytes, found[0]), cast(bytes, found[1])
    return None


def _mapping(raw: object, name: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise InteropError(f"{_WHERE}: expected {name} to be a dict, got {type(raw).__name__}.")
    return cast("Mapping[str, object]", raw)
