"""Pinned staging buffers of batch tables (``_staging``) without a GPU: CuPy's runtime calls are replaced
by a recorder whose pinned memory is NumPy memory, so what ``to_device`` does is visible: the table's
bytes in a pinned buffer, one asynchronous copy and one event on the stream given, slots used round
robin, a slot reused only after its last copy's event, and grown (the old one freed) when too small."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")

from gpuimage import _staging  # noqa: E402

MEMCPY_HOST_TO_DEVICE = 1
DISABLE_TIMING = 2


class FakeCudaRuntime:
    """The ``cupy.cuda.runtime`` calls ``_staging`` makes, recorded; pinned memory is NumPy memory."""

    memcpyHostToDevice = MEMCPY_HOST_TO_DEVICE  # noqa: N815 - CuPy's names
    eventDisableTiming = DISABLE_TIMING  # noqa: N815

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.pinned: dict[int, np.ndarray[Any, np.dtype[np.uint8]]] = {}
        self.copied: list[bytes] = []  # what each copy read from its pinned buffer
        self._events = 0

    def hostAlloc(self, size: int, flags: int) -> int:  # noqa: N802
        memory = np.zeros(size, np.uint8)
        self.pinned[memory.ctypes.data] = memory
        self.calls.append(("hostAlloc", size, flags))
        return int(memory.ctypes.data)

    def freeHost(self, ptr: int) -> None:  # noqa: N802
        self.calls.append(("freeHost", ptr))
        del self.pinned[ptr]

    def eventCreateWithFlags(self, flags: int) -> int:  # noqa: N802
        self._events += 1
        self.calls.append(("eventCreateWithFlags", flags))
        return 0xE000 + self._events

    def eventDestroy(self, event: int) -> None:  # noqa: N802
        self.calls.append(("eventDestroy", event))

    def eventSynchronize(self, event: int) -> None:  # noqa: N802
        self.calls.append(("eventSynchronize", event))

    def eventRecord(self, event: int, stream: int) -> None:  # noqa: N802
        self.calls.append(("eventRecord", event, stream))

    def memcpyAsync(self, target: int, source: int, nbytes: int, kind: int, stream: int) -> None:  # noqa: N802
        self.calls.append(("memcpyAsync", target, source, nbytes, kind, stream))
        self.copied.append(self.pinned[source][:nbytes].tobytes())

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == name]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCudaRuntime:
    """CuPy's runtime and ``cupy.empty`` replaced for one test (device arrays: a pointer each)."""
    runtime = FakeCudaRuntime()
    arrays = iter(range(0xD000_0000, 0xE000_0000, 0x1_0000))

    def empty(size: int, dtype: Any) -> SimpleNamespace:
        assert np.dtype(dtype) == np.int64
        return SimpleNamespace(data=SimpleNamespace(ptr=next(arrays)), size=size)

    monkeypatch.setattr(cupy.cuda, "runtime", runtime)
    monkeypatch.setattr(cupy, "empty", empty)
    monkeypatch.setattr(_staging, "_staging", {})
    return runtime


def _table(rows: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.int64]]:
    return (np.arange(rows * 6, dtype=np.int64) * 1_000_003 + seed).reshape(rows, 6)


def test_a_table_is_copied_from_pinned_memory_on_the_stream_given(fake: FakeCudaRuntime) -> None:
    table = _table(3, seed=-5)
    device = _staging.staging_for(0).to_device(table, 0x5100)
    (alloc,) = fake.named("hostAlloc")
    assert alloc == ("hostAlloc", 4096, 0), "at least a page"
    assert fake.named("eventCreateWithFlags") == [("eventCreateWithFlags", DISABLE_TIMING)]
    ((_, target, source, nbytes, kind, stream),) = fake.named("memcpyAsync")
    assert (target, nbytes, kind, stream) == (device.data.ptr, table.nbytes, MEMCPY_HOST_TO_DEVICE, 0x5100)
    assert source in fake.pinned
    assert fake.copied == [table.tobytes()], "the table's bytes, in order"
    assert fake.named("eventRecord") == [("eventRecord", 0xE001, 0x5100)], "after the copy, on its stream"
    assert fake.named("eventSynchronize") == [], "a fresh slot waits for nothing"
    assert device.size == table.size


def test_slots_are_used_round_robin_and_reused_after_their_event(fake: FakeCudaRuntime) -> None:
    staging = _staging.staging_for(0)
    slots = _staging._Staging.SLOTS
    for index in range(slots):
        staging.to_device(_table(2, seed=index), 7)
    assert len(fake.named("hostAlloc")) == slots, "one buffer per slot"
    assert fake.named("eventSynchronize") == []
    first_buffer = fake.named("memcpyAsync")[0][2]
    staging.to_device(_table(2, seed=99), 8)
    assert fake.named("eventSynchronize") == [("eventSynchronize", 0xE001)], "slot 0's last copy has read it"
    assert len(fake.named("hostAlloc")) == slots, "reused, not allocated"
    assert fake.named("memcpyAsync")[-1][2] == first_buffer
    assert fake.named("eventRecord")[-1] == ("eventRecord", 0xE001, 8)
    assert fake.copied[-1] == _table(2, seed=99).tobytes()


def test_a_slot_too_small_grows_and_frees_the_old_buffer(fake: FakeCudaRuntime) -> None:
    staging = _staging.staging_for(0)
    staging.to_device(_table(2), 1)
    for _ in range(_staging._Staging.SLOTS - 1):
        staging.to_device(_table(1), 1)
    old = fake.named("memcpyAsync")[0][2]
    big = _table(100, seed=3)  # 4800 bytes: more than a page
    staging.to_device(big, 2)
    assert fake.calls[-7:-2] == [
        ("eventSynchronize", 0xE001),
        ("freeHost", old),
        ("eventDestroy", 0xE001),
        ("hostAlloc", 8192, 0),
        ("eventCreateWithFlags", DISABLE_TIMING),
    ], "wait for the old copy, free it and its event, allocate the next power of two"
    assert fake.copied[-1] == big.tobytes()
    assert old not in fake.pinned


@pytest.mark.parametrize(("rows", "size"), [(0, 4096), (1, 4096), (85, 4096), (86, 8192), (700, 65536)])
def test_buffers_are_a_page_or_the_next_power_of_two(fake: FakeCudaRuntime, rows: int, size: int) -> None:
    _staging.staging_for(0).to_device(_table(rows), 1)
    assert fake.named("hostAlloc") == [("hostAlloc", size, 0)]


def test_each_device_has_its_own_staging(fake: FakeCudaRuntime) -> None:
    first = _staging.staging_for(0)
    assert _staging.staging_for(0) is first
    second = _staging.staging_for(1)
    assert second is not first, "an event records only on streams of its own device"
    first.to_device(_table(1), 1)
    second.to_device(_table(1), 1)
    assert len(fake.named("hostAlloc")) == 2


def test_threads_get_one_staging_per_device(fake: FakeCudaRuntime) -> None:
    found: list[object] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        found.append(_staging.staging_for(3))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(each) for each in found}) == 1


def test_concurrent_tables_take_distinct_slots(fake: FakeCudaRuntime) -> None:
    staging = _staging.staging_for(0)
    start = threading.Barrier(8)

    def send(seed: int) -> None:
        start.wait()
        staging.to_device(_table(4, seed=seed), seed)

    threads = [threading.Thread(target=send, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sources = [call[2] for call in fake.named("memcpyAsync")]
    assert len(set(sources)) == 8, "no two tables in one pinned buffer"
    assert sorted(fake.copied) == sorted(_table(4, seed=seed).tobytes() for seed in range(8))
