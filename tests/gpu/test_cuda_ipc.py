"""Images, frames and batches crossing processes zero-copy by CUDA IPC (``_ipc``, ``_ipc_open``,
``_ipc_driver``, ``_ipc_lease``) on a GPU. Every scenario runs in ``spawn`` children
(``_ipc_children.py``): a producer pickles, a consumer unpickles and answers with checksums computed
on its GPU; the test process only compares. A crash is a failed test, not the end of the run.

Run: ``python -m pytest -q -n 0 tests/gpu/test_cuda_ipc.py tests/gpu/test_cuda_ipc_ring.py``
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any

import pytest

pytest.importorskip("torch")

from . import _ipc_children as children

pytestmark = pytest.mark.cuda

ROUND_TRIPS = ["hwc_uint8", "pitched", "roi", "chw_float32", "bfloat16", "nv12_frame", "batch"]
CASES = [*ROUND_TRIPS, "late", "together", "same_process"]
SLEEP_CYCLES = 1_000_000_000  # about half a second of GPU time: the write is surely still queued
CONTEXT = multiprocessing.get_context("spawn")


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    """Every case, sent once from a producer child to a consumer child; the reports by case."""
    producer_end, consumer_end = CONTEXT.Pipe()
    receive, send = CONTEXT.Pipe(duplex=False)
    consumer = CONTEXT.Process(target=children.consumer, args=(consumer_end,), daemon=True)
    producer = CONTEXT.Process(
        target=children.producer, args=(producer_end, send, CASES, SLEEP_CYCLES), daemon=True
    )
    consumer.start()
    producer.start()
    found: dict[str, dict[str, Any]] = {}
    try:
        while len(found) < len(CASES) and receive.poll(120):
            case, report = receive.recv()
            found[case] = report
    finally:
        codes = children.stop(producer, consumer)
    found["exit codes"] = {"producer": codes[0], "consumer": codes[1]}
    return found


def _report(reports: dict[str, dict[str, Any]], case: str) -> dict[str, Any]:
    report = reports.get(case)
    assert report is not None, f"no report for {case}: the children ended with {reports['exit codes']}"
    assert "error" not in report, report["error"]
    assert "error" not in report["answer"], report["answer"]["error"]
    return report


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_each_kind_arrives_with_its_values_and_geometry(
    reports: dict[str, dict[str, Any]], case: str
) -> None:
    report = _report(reports, case)
    answer = report["answer"]
    assert answer["checksum"] == report["expected"], "the consumer reads the producer's values"
    assert answer["facts"] == report["facts"], "pitch, ROI, layout, planes and item pitch travel as they are"
    assert answer["owner"] == "SharedHold"
    assert answer["repickled"] == "ExportError", "a mapping of another process's memory is not shared again"
    assert report["shared_after"] == 0, "the producer let go once the consumer did"


def test_a_late_write_is_read_complete(reports: dict[str, dict[str, Any]]) -> None:
    report = _report(reports, "late")
    assert report["pending_at_send"], "the write was still queued when the image was pickled"
    assert report["answer"]["checksum"] == report["expected"], "the consumer's stream waited for it"
    assert report["shared_after"] == 0


def test_descriptions_of_one_allocation_share_one_mapping(reports: dict[str, dict[str, Any]]) -> None:
    report = _report(reports, "together")
    assert report["answer"]["mappings"] == 1, "cuIpcOpenMemHandle fails on a second open: one cached mapping"
    assert report["answer"]["checksums"] == report["expected"]
    assert report["shared_after"] == 0


def test_unpickling_where_it_was_pickled_gives_the_original(reports: dict[str, dict[str, Any]]) -> None:
    answer = _report(reports, "same_process")["answer"]
    assert answer == {"same": [True, True, True], "opened": 0}


def test_the_children_exit_cleanly(reports: dict[str, dict[str, Any]]) -> None:
    assert reports["exit codes"] == {"producer": 0, "consumer": 0}


def test_a_sigkilled_consumer_frees_the_producer_s_memory() -> None:
    nbytes = 16 << 20
    to_consumer, consumer_end = CONTEXT.Pipe()
    control, producer_control = CONTEXT.Pipe()
    consumer = CONTEXT.Process(target=children.holder, args=(consumer_end,), daemon=True)
    producer = CONTEXT.Process(
        target=children.producer_of_a_killed_consumer,
        args=(to_consumer, producer_control, nbytes),
        daemon=True,
    )
    consumer.start()
    producer.start()
    try:
        assert control.poll(120), "the producer never reported"
        tag, same, shared, held = control.recv()
        assert (tag, same, shared) == ("holding", True, 1), "the consumer opened the image and holds it"
        assert held >= nbytes
        assert consumer.pid is not None
        os.kill(consumer.pid, signal.SIGKILL)
        consumer.join(timeout=30)
        assert consumer.exitcode == -signal.SIGKILL
        control.send("killed")
        assert control.poll(60), "the producer never reported after the kill"
        tag, shared, held = control.recv()
        assert (tag, shared) == ("after", 0), "the dead consumer's lease was released by the OS"
        assert held == 0, "device memory is back to the baseline"
    finally:
        codes = children.stop(producer, consumer)
    assert codes[0] == 0, "the producer survives its consumer's death"


@pytest.mark.parametrize("conf", ["expandable_segments:True", "backend:cudaMallocAsync"])
def test_memory_without_a_legacy_ipc_handle_is_refused_with_what_to_do(
    conf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    receive, send = CONTEXT.Pipe(duplex=False)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", conf)
    child = CONTEXT.Process(target=children.refused_allocator, args=(send,), daemon=True)
    child.start()
    try:
        assert receive.poll(120), "the child never reported"
        name, message = receive.recv()
    finally:
        children.stop(child)
    assert name == "ExportError", message
    assert "expandable_segments" in message
    assert "GpuImage.empty()" in message
