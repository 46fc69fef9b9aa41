"""Opening a pickled ``SharedRing`` (``_ipc_ring_open``): a reader gets the writer's slots, or a clear
error when the payload does not fit its items or the writer's files are gone."""

from __future__ import annotations

import os
import pickle
from typing import Any, cast

import pytest

import gpuimage
from fake_ipc import FakeDriver, elsewhere, ipc
from gpuimage import GpuImage, InteropError, LifetimeError, SharedRing
from gpuimage._ipc_ring_open import Shared, open_ring

__all__ = ["elsewhere", "ipc"]  # the fixtures


def _reduced(slots: int = 2) -> tuple[SharedRing[Any], dict[str, Any], tuple[Any, ...]]:
    writer: SharedRing[Any] = SharedRing.from_items([GpuImage.empty(4, 4) for _ in range(slots)])
    function, (cls, payload, items) = cast(Any, writer.__reduce_ex__(2))
    assert (function, cls) == (open_ring, SharedRing)
    return writer, payload, items


def test_a_reader_in_the_writer_s_process_shares_its_block_and_events(ipc: FakeDriver) -> None:
    writer, payload, items = _reduced()
    reader = open_ring(SharedRing, payload, items)
    assert reader._shared is writer._shared
    assert isinstance(reader._shared, Shared)
    assert not ipc.opened


def test_a_reader_elsewhere_maps_the_block_and_opens_each_event(ipc: FakeDriver, elsewhere: None) -> None:
    writer, payload, items = _reduced(3)
    reader = open_ring(SharedRing, payload, items)
    assert reader._shared is not writer._shared
    assert reader._shared.control.slots == 3
    with writer.writing():
        pass
    assert reader._shared.control.write_seq == 1, "one control block, two mappings"
    reader.close()


def test_a_payload_for_other_items_is_refused(ipc: FakeDriver) -> None:
    _, payload, items = _reduced(2)
    with pytest.raises(InteropError, match="expected 2 items, got 1"):
        open_ring(SharedRing, payload, items[:1])


def test_a_ring_whose_reader_came_too_late_is_refused(
    ipc: FakeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, payload, items = _reduced()
    gpuimage.set_unopened_timeout(1e-6)
    gpuimage.collect_shared()
    with pytest.raises(LifetimeError, match="lease ended"):
        open_ring(SharedRing, payload, items)
    from gpuimage import _ipc_ring_open

    monkeypatch.setattr(_ipc_ring_open, "is_this_process", lambda pid, token: False)
    with pytest.raises(LifetimeError, match="is gone"):
        open_ring(SharedRing, payload, items)


def test_a_ring_whose_control_block_is_gone_is_refused(ipc: FakeDriver, elsewhere: None) -> None:
    writer, payload, items = _reduced()
    os.unlink(payload["control"])
    with pytest.raises(LifetimeError, match="closed the ring or exited"):
        open_ring(SharedRing, payload, items)
    assert gpuimage.collect_shared() >= 0
    del writer


def test_pickle_loads_a_ring_through_open_ring(ipc: FakeDriver, elsewhere: None) -> None:
    writer, _, _ = _reduced()
    reader = pickle.loads(pickle.dumps(writer))
    assert reader.role == "reader"
