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


def _start(frames: int, slots: int, stop_after: int | None) -> tuple[Any, Any, Any, Any]:
    writer_end, reader_end = CONTEXT.Pipe()
    writer_control, writer_child_control = CONTEXT.Pipe()
    reader_control, reader_child_control = CONTEXT.Pipe()
    writer = CONTEXT.Process(
        target=children.ring_writer, args=(writer_end, writer_child_control, frames, slots), daemon=True
    )
    reader = CONTEXT.Process(
        target=children.ring_reader, args=(reader_end, reader_child_control, frames, stop_after), daemon=True
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
