"""benchmarks/processes.py (issue 15's benchmark) and its helper _processes_work.py, on the CPU.

What runs here: the exit without a GPU, the runner finding the script, the per-frame work on host
frames, the hand-off protocol over a real pipe (a consumer thread, host tensors), the waits on a
consumer, and the rows as the runner shows them (informational, but the outputs row).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from file_modules import load_file
from gpuimage import GpuFrame

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """processes.py as a module (benchmarks/ is not a package: its helpers import by bare name)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return load_file("benchmarks_processes", BENCHMARKS / "processes.py")


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return load_file("benchmarks_processes_work", BENCHMARKS / "_processes_work.py")


@pytest.fixture
def consumer(work: ModuleType) -> Iterator[Connection]:
    """The producer's end of a pipe whose other end ``handoff_consumer`` serves, in a thread."""
    ours, theirs = Pipe()
    thread = threading.Thread(target=work.handoff_consumer, args=(theirs,), daemon=True)
    thread.start()
    yield ours
    ours.send_bytes(b"stop")
    thread.join(timeout=10)
    assert not thread.is_alive(), "the consumer did not stop on b'stop'"


def test_without_a_gpu_it_says_so_and_exits_0(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # issue 15, benchmark: CI imports the script; on a machine without a GPU it runs nothing
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert script.main(["--quick", "--json", str(tmp_path / "out.json")]) == 0
    assert capsys.readouterr().out == (
        "processes.py: this benchmark needs a CUDA GPU (torch.cuda.is_available() is False); skipped.\n"
    )
    assert not (tmp_path / "out.json").exists()


def test_a_bad_flag_is_a_usage_error(script: ModuleType) -> None:
    with pytest.raises(SystemExit) as exit_:
        script.main(["--frames", "3"])
    assert exit_.value.code == 2


def test_the_runner_finds_the_script_and_not_its_helper() -> None:
    run = load_file("benchmarks_run_for_processes", BENCHMARKS / "run.py")
    found = {path.name for path in run._find_scripts(run.HERE)}
    assert "processes.py" in found
    assert "_processes_work.py" not in found


def test_quick_does_less_than_a_full_run(script: ModuleType) -> None:
    quick, full = script.QUICK, script.FULL
    assert 0 < quick.frames < full.frames
    assert 0 < quick.handoffs < full.handoffs
    assert full.handoffs >= 500  # issue 15: per item over hundreds of hand-offs


def test_regions_lie_inside_a_1080p_frame(work: ModuleType) -> None:
    assert (work.WIDTH, work.HEIGHT) == (1920, 1080)
    for x, y, width, height in work.ROIS:
        assert 0 <= x < x + width <= work.WIDTH
        assert 0 <= y < y + height <= work.HEIGHT


def test_each_frame_differs_and_the_batch_follows_it(work: ModuleType) -> None:
    # the routes are compared by the last batch's checksum: a stale or wrong frame must change it
    frame = GpuFrame.empty(64, 48, format="NV12", colour=work.COLOUR, device="cpu")
    base = work.gradient(64, 48, "cpu")
    assert base.shape == (72, 64)
    pipeline = work.Work("cpu", rois=((0, 0, 64, 48), (3, 5, 21, 17)))
    sums = []
    for index in (0, 1, 0):
        work.fill(frame.as_torch(), base, index)
        assert torch.equal(frame.as_torch(), base + work.shift(index))
        pipeline.preprocess(frame)
        assert pipeline.infer().shape == (2, work.CLASSES)
        sums.append(work.checksum(pipeline.batch))
    assert sums[0] == sums[2] != sums[1]


def test_the_model_is_the_same_every_time_and_leaves_the_seed_alone(work: ModuleType) -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first, second = work.build_model(), work.build_model()
    assert torch.equal(torch.rand(1), before)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_statistics_of_samples(work: ModuleType) -> None:
    assert work.frames_per_second(600, 2.0) == 300.0
    assert work.frames_per_second(0, 2.0) is None
    assert work.frames_per_second(10, 0.0) is None
    spread = work.spread_us([1000 * n for n in range(1, 101)])
    assert spread["median_us"] == pytest.approx(50.5)
    assert spread["p10_us"] < spread["median_us"] < spread["p90_us"]
    assert work.spread_us([2500]) == {"median_us": 2.5, "p10_us": 2.5, "p90_us": 2.5}
    with pytest.raises(ValueError, match="at least one sample"):
        work.spread_us([])


def test_a_handoff_reads_back_what_was_written(work: ModuleType, consumer: Connection) -> None:
    tensor = torch.full((4, 6), 7, dtype=torch.uint8)
    pickled, trip, opened, value = work.handoff(consumer, tensor, check=True)
    assert value == 7
    assert 0 < pickled < trip
    assert 0 < opened < trip
    assert work.handoff(consumer, tensor, check=False)[3] == -1


class _Unopenable:
    """Arrives fine, but its ``as_torch()`` fails in the consumer."""

    def as_torch(self) -> torch.Tensor:
        raise OSError("no mapping")


def test_a_consumer_failure_is_reported_to_the_producer(work: ModuleType, consumer: Connection) -> None:
    with pytest.raises(RuntimeError, match=r"the hand-off consumer failed: OSError: no mapping"):
        work.handoff(consumer, _Unopenable(), check=False)
    assert work.handoff(consumer, torch.ones(2, dtype=torch.uint8), check=True)[3] == 1  # still serving


def test_the_handoff_loop_times_only_the_timed_items(script: ModuleType, consumer: Connection) -> None:
    pool = [torch.zeros(8, dtype=torch.uint8) for _ in range(2)]
    steps, wrong = script.handoff_loop(consumer, pool, script.Sizes(warmup=2, frames=1, handoffs=5))
    assert wrong is None
    assert {step: len(samples) for step, samples in steps.items()} == {
        "round trip": 5,
        "pickle": 5,
        "open + wait": 5,
    }
    assert [int(each[0]) for each in pool] == [6, 7]  # round-robin; the checked one, 7, last
    assert all(trip > pickle for trip, pickle in zip(steps["round trip"], steps["pickle"], strict=True))


class _Child:
    def __init__(self, alive: bool) -> None:
        self.alive, self.exitcode = alive, None if alive else -9

    def is_alive(self) -> bool:
        return self.alive


def test_waiting_for_a_consumer(work: ModuleType) -> None:
    messages: queue.Queue[tuple[Any, ...]] = queue.Queue()
    messages.put(("ready",))
    assert work.wait_for(messages, _Child(True), "ready") == ("ready",)
    messages.put(("error", "ValueError: boom"))
    with pytest.raises(RuntimeError, match="the consumer failed: ValueError: boom"):
        work.wait_for(messages, _Child(True), "done")
    messages.put(("warm",))
    with pytest.raises(RuntimeError, match=r"\('warm',\)"):
        work.wait_for(messages, _Child(True), "done")
    with pytest.raises(RuntimeError, match=r"the consumer stopped \(exit code -9\)"):
        work.wait_for(messages, _Child(False), "done")


def _timings(ours: float, theirs: float) -> dict[str, dict[str, float]]:
    found = {}
    for kind in ("1080p NV12 GpuFrame", "1080p HWC uint8 GpuImage"):
        for library, us in (("gpuimage", ours), ("torch.multiprocessing", theirs)):
            for step in ("round trip", "pickle", "open + wait"):
                found[f"{kind}, {library}, {step}"] = {"median_us": us, "p10_us": us, "p90_us": us}
    return found


def test_the_rows_are_shown_not_judged_but_the_outputs(script: ModuleType) -> None:
    # issue 15 sets no target for these figures: every row is "info", but the outputs row
    run = load_file("benchmarks_run_for_processes", BENCHMARKS / "run.py")
    routes = {
        "one process": {"fps": 400.0, "seconds": 1.5, "checksum": 12.5},
        "two processes, SharedRing": {"fps": 380.0, "seconds": 1.6, "checksum": 12.5},
        "two processes, tensor.cpu()": {"fps": 95.0, "seconds": 6.3, "checksum": 12.5},
    }
    checks = script.judge(routes, _timings(30.0, 60.0), [])
    rows = [tuple(vars(row).values())[1:] for row in run.bench_rows("processes", {"checks": checks})]
    assert rows[:3] == [
        ("1080p NV12 pipeline fps: two processes, SharedRing vs one process", "380.0 frames/s",
         "400.0 frames/s (one process)", "0.95", "", "info"),
        ("1080p NV12 pipeline fps: two processes, SharedRing vs tensor.cpu() between processes",
         "380.0 frames/s", "95.0 frames/s (tensor.cpu() through a queue)", "4.00", "", "info"),
        ("hand-off round trip: 1080p HWC uint8 GpuImage vs bare CUDA tensor", "30.00 us",
         "60.00 us (torch.multiprocessing)", "0.50", "", "info"),
    ]  # fmt: skip
    assert len(rows) == 2 + 2 * 3 + 1
    assert {row[-1] for row in rows[:-1]} == {"info"}
    assert rows[-1][1:] == ("right", "", "", "right", "PASS")


def test_a_wrong_output_or_a_failed_route_fails_the_outputs_row(script: ModuleType) -> None:
    routes = {
        "one process": {"fps": 400.0, "seconds": 1.5, "checksum": 12.5},
        "two processes, SharedRing": {"fps": 380.0, "seconds": 1.6, "checksum": 12.25},
        "two processes, tensor.cpu()": {"error": "RuntimeError: the consumer stopped (exit code 1)"},
    }
    checks = script.judge(routes, {}, ["1080p NV12 GpuFrame, gpuimage: read 3, wrote 4"])
    assert [check["gpuimage"] for check in checks[:2]] == ["380.0 frames/s", "380.0 frames/s"]
    assert checks[1]["alternative"] == "n/a (tensor.cpu() through a queue)"
    assert checks[1]["ratio"] == ""
    outputs = checks[-1]
    assert outputs["passed"] is False
    assert outputs["gpuimage"] == (
        "WRONG: 1080p NV12 GpuFrame, gpuimage: read 3, wrote 4; two processes, SharedRing: checksum 12.25 "
        "against one process's 12.5; two processes, tensor.cpu(): RuntimeError: the consumer stopped "
        "(exit code 1)"
    )


def test_a_failure_here_is_explained_by_the_consumers_error(work: ModuleType) -> None:
    # a writer sees its reader gone before it reads why: the consumer's reason is what is shown
    messages: queue.Queue[tuple[Any, ...]] = queue.Queue()
    messages.put(("frame",))
    messages.put(("error", "ValueError: bad frame"))
    failed = r"^the consumer failed: ValueError: bad frame$"
    with pytest.raises(RuntimeError, match=failed) as raised, work.explained(messages):
        raise OSError("reader gone")
    assert isinstance(raised.value.__cause__, OSError)
    with pytest.raises(OSError, match="reader gone"), work.explained(messages):
        raise OSError("reader gone")  # nothing reported: the failure stands
    assert work.reported_error(messages, wait_s=0.01) is None
