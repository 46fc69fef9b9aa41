"""Another process's GPU 0 memory opened on GPU 1 (``gpuimage.open_on``, ``_ipc_devices``) between
``spawn`` children (``_ipc_multi_gpu_children.py``): a peer view and a copy of late-written images,
ROIs, NV12 frames and batches, with values checked on the consumer's GPU while another GPU is current,
and a ``SharedRing`` written on GPU 0 and read on GPU 1. Needs 2 GPUs.

Run: ``python -m pytest -q -n 0 tests/gpu/test_cuda_ipc_multi_gpu.py``
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

pytest.importorskip("torch")

import torch

from . import _ipc_children as children
from . import _ipc_multi_gpu_children as multi

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA devices"
    ),
]

CONTEXT = multiprocessing.get_context("spawn")
Key = tuple[str, str]


@pytest.fixture(scope="module")
def reports() -> dict[Key, dict[str, Any]]:
    """Every (access, case), sent once from a producer child to a consumer child; reports by key."""
    producer_end, consumer_end = CONTEXT.Pipe()
    receive, send = CONTEXT.Pipe(duplex=False)
    consumer = CONTEXT.Process(target=multi.consumer, args=(consumer_end,), daemon=True)
    producer = CONTEXT.Process(target=multi.producer, args=(producer_end, send), daemon=True)
    consumer.start()
    producer.start()
    found: dict[Key, dict[str, Any]] = {}
    total = len(multi.ACCESSES) * len(multi.CASES)
    try:
        while len(found) < total and receive.poll(60):
            key, report = receive.recv()
            found[key] = report
    finally:
        codes = children.stop(producer, consumer)
    found[("exit", "codes")] = {"producer": codes[0], "consumer": codes[1]}
    return found


def _answer(reports: dict[Key, dict[str, Any]], access: str, case: str) -> tuple[dict[str, Any], Any]:
    report = reports.get((access, case))
    assert report is not None, f"no report for {access} {case}: exit codes {reports[('exit', 'codes')]}"
    assert "error" not in report, report["error"]
    return report["answer"], report


@pytest.mark.parametrize("case", multi.CASES)
def test_a_peer_view_reads_gpu0_memory_from_gpu1_after_its_late_write(
    reports: dict[Key, dict[str, Any]], case: str
) -> None:
    answer, report = _answer(reports, "peer", case)
    if not answer.get("peer", True):
        assert "cuDeviceCanAccessPeer(1, 0) = 0" in answer.get("error", ""), answer
        assert "access='copy'" in answer["error"]
        return
    assert "error" not in answer, answer["error"]
    assert report["pending_at_send"], "the write was still queued when it was pickled"
    assert answer["device"] == 1, "a peer view is used on GPU 1"
    assert answer["owner"] == "SharedHold", "a view of the producer's memory, not a copy"
    assert answer["checksum"] == report["expected"], "GPU 1 waited for GPU 0's write and reads its values"
    assert answer["current_device"] == 0, "the current device is restored"
    assert report["shared_after"] == 0, "the producer let go once the consumer did"


@pytest.mark.parametrize("case", multi.CASES)
def test_a_copy_lands_on_gpu1_with_the_values(reports: dict[Key, dict[str, Any]], case: str) -> None:
    answer, report = _answer(reports, "copy", case)
    assert "error" not in answer, answer["error"]
    assert report["pending_at_send"]
    assert answer["device"] == 1
    assert answer["owner"] != "SharedHold", "a copy owns its memory"
    assert answer["checksum"] == report["expected"], "the copy waited for the producer's write"
    assert answer["current_device"] == 0
    if case == "batch":
        assert answer["order"] == "BGR"
    assert report["shared_after"] == 0, "the mapping went once the copy had finished"


@pytest.mark.parametrize("case", multi.CASES)
def test_a_plain_open_stays_on_the_memory_s_gpu_while_another_is_current(
    reports: dict[Key, dict[str, Any]], case: str
) -> None:
    answer, report = _answer(reports, "plain", case)
    assert "error" not in answer, answer["error"]
    assert (answer["device"], answer["owner"]) == (0, "SharedHold")
    assert answer["checksum"] == report["expected"], "GPU 0's stream waited for the write, from GPU 1"
    assert answer["current_device"] == 1
    assert report["shared_after"] == 0


def test_the_children_exit_cleanly(reports: dict[Key, dict[str, Any]]) -> None:
    assert reports[("exit", "codes")] == {"producer": 0, "consumer": 0}


def _ring(reader: Any, args: tuple[Any, ...], frames: int) -> tuple[Any, Any, Any, Any]:
    writer_end, reader_end = CONTEXT.Pipe()
    writer_control, writer_child = CONTEXT.Pipe()
    reader_control, reader_child = CONTEXT.Pipe()
    writer = CONTEXT.Process(
        target=children.ring_writer, args=(writer_end, writer_child, frames, 3), daemon=True
    )
    reading = CONTEXT.Process(target=reader, args=(reader_end, reader_child, *args), daemon=True)
    writer.start()
    reading.start()
    return writer, reading, writer_control, reader_control


def test_a_ring_written_on_gpu0_is_read_on_gpu1_through_peer_views() -> None:
    frames = 30
    writer, reader, writer_control, reader_control = _ring(multi.ring_reader, (frames,), frames)
    try:
        assert reader_control.poll(60), "the reader never reported"
        tag, devices, bad = reader_control.recv()
        if tag == "no peer":
            pytest.skip("GPU 1 cannot access GPU 0's memory here: no peer view to read a ring through")
        assert (tag, devices) == ("read", [1]), "the reader's slots are peer views on GPU 1"
        assert bad == [], "frames read before their write, or overwritten while read"
        assert writer_control.poll(30)
        assert writer_control.recv() == ("done", frames, "")
        writer_control.send("finished")
    finally:
        codes = children.stop(reader, writer)
    assert codes == [0, 0]


def test_a_copy_of_a_ring_is_refused() -> None:
    writer, reader, writer_control, reader_control = _ring(multi.ring_copy_reader, (), 1)
    try:
        assert reader_control.poll(60), "the reader never reported"
        name, message = reader_control.recv()
        assert name == "DeviceError", message
        assert "snapshot of the slots" in message
        assert writer_control.poll(30), "the writer never reported"
        writer_control.recv()
        writer_control.send("finished")
    finally:
        codes = children.stop(reader, writer)
    assert codes == [0, 0]
