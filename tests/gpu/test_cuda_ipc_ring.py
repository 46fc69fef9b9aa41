"""``SharedRing`` (``_ipc_ring``) on a GPU: a writer child and a reader child of the ``spawn`` context
(``_ipc_children.py``). Each write is queued behind a sleep kernel and each read too, with no host
synchronization per frame, so only the slots' events keep the reader from reading early and the writer
from overwriting a slot still being read: every frame's values are checked on the reader's GPU."""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any

import pytest

pytest.importorskip("torch")

from . import _ipc_children as children

pytestmark = pytest.mark.cuda

CONTEXT = multiprocessing.get_context("spawn")
MiB = 1 << 20
# How much each figure of ``_ipc_children.usage`` may grow from frame 1,000 to frame 10,000. A leak of
# anything per frame exceeds it 9,000 times over (torch's smallest block is 512 bytes); the slack is
# for an allocator segment or a descriptor opened late, once.
GROWTH = {"allocated": MiB, "reserved": 2 * MiB, "device used": 16 * MiB, "open files": 4, "mappings": 0,
          "shared": 0, "lease files": 0}  # fmt: skip


def _start(
    frames: int,
    slots: int,
    stop_after: int | None,
    *,
    sleep_cycles: tuple[int, int] = (1_000_000, 2_000_000),
    measure_at: int | None = None,
) -> tuple[Any, Any, Any, Any]:
    """A writer and a reader of one ring; ``sleep_cycles``: the writer's and the reader's sleep kernel
    before each write and read; ``measure_at``: both report their usage after that frame and the last."""
    writer_end, reader_end = CONTEXT.Pipe()
    writer_control, writer_child_control = CONTEXT.Pipe()
    reader_control, reader_child_control = CONTEXT.Pipe()
    writer = CONTEXT.Process(
        target=children.ring_writer,
        args=(writer_end, writer_child_control, frames, slots, sleep_cycles[0], measure_at),
        daemon=True,
    )
    reader = CONTEXT.Process(
        target=children.ring_reader,
        args=(reader_end, reader_child_control, frames, stop_after, sleep_cycles[1], measure_at),
        daemon=True,
    )
    writer.start()
    reader.start()
    return writer, reader, writer_control, reader_control


def test_fifty_frames_cross_a_ring_of_four_in_order_with_their_values() -> None:
    writer, reader, writer_control, reader_control = _start(50, 4, None)
    try:
        assert reader_control.poll(120), "the reader never reported"
        tag, count, bad = reader_control.recv()
        assert (tag, count) == ("read", 50)
        assert bad == [], "frames read before their write finished, or overwritten while read"
        assert writer_control.poll(30)
        assert writer_control.recv() == ("done", 50, "")
        writer_control.send("finished")
    finally:
        codes = children.stop(reader, writer)
    assert codes == [0, 0]


def test_a_writer_whose_reader_is_sigkilled_stops_with_an_error() -> None:
    writer, reader, writer_control, reader_control = _start(50, 4, 2)
    try:
        assert reader_control.poll(120), "the reader never reported"
        assert reader_control.recv() == ("read", 2, [])
        assert reader.pid is not None
        os.kill(reader.pid, signal.SIGKILL)
        assert writer_control.poll(60), "the writer waits forever for a dead reader"
        tag, written, message = writer_control.recv()
        assert tag == "gone"
        assert written < 50
        assert "reader closed its ring, exited or was killed" in message
        writer_control.send("finished")
    finally:
        codes = children.stop(writer, reader)
    assert codes[0] == 0, "the writer survives its reader's death"


def _grown(first: dict[str, int], last: dict[str, int], *, device_wide: bool) -> dict[str, tuple[int, int]]:
    """The figures that grew past ``GROWTH``, as (at frame 1,000, at the last frame)."""
    return {
        name: (first[name], last[name])
        for name, limit in GROWTH.items()
        if name in first and (device_wide or name != "device used") and last[name] - first[name] > limit
    }


def test_ten_thousand_frames_cross_a_ring_without_growth() -> None:
    # issue 15: every frame's values right, and nothing grows from frame 1,000 to frame 10,000 in
    # either process: torch's allocator, the device, descriptors, mappings, leases and their files
    frames = 10_000
    writer, reader, writer_control, reader_control = _start(
        frames, 4, None, sleep_cycles=(50_000, 100_000), measure_at=1_000
    )
    try:
        assert reader_control.poll(children.LONG_HANG_S), "the reader never reported"
        tag, reader_first, reader_last = reader_control.recv()
        assert tag == "usage"
        assert reader_control.poll(30)
        tag, count, bad = reader_control.recv()
        assert (tag, count) == ("read", frames)
        assert bad == [], f"{len(bad)} frames wrong, the first {bad[:10]}"
        assert writer_control.poll(30)
        tag, writer_first, writer_last = writer_control.recv()
        assert tag == "usage"
        assert writer_control.recv() == ("done", frames, "")
        writer_control.send("finished")
    finally:
        codes = children.stop(reader, writer)
    assert codes == [0, 0]
    assert writer_first["lease files"] >= 1, "the writer's lease directory is not where its ring lives"
    assert reader_first["mappings"] >= 1, "the reader maps the ring's frames"
    # Another pytest worker may use the same GPU meanwhile: the device as a whole is judged alone only.
    alone = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") == "1"
    assert _grown(writer_first, writer_last, device_wide=alone) == {}, "the writer grew"
    assert _grown(reader_first, reader_last, device_wide=alone) == {}, "the reader grew"
