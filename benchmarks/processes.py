"""Images across processes: frames per second of the two-process pipeline, and the cost of one hand-off.

Usage: ``python benchmarks/processes.py [--quick] [--json PATH]`` on a machine with a CUDA GPU.

Pipeline (``examples/two_process_pipeline.py``'s work at 1080p, ``_processes_work.py``): each frame
is a moving gradient written into an NV12 frame on the GPU, ``normalize_batch`` over 4 regions into
a 4x3x224x224 batch, and a tiny torch model. Three routes, each over the same frames (warm-up frames
first, untimed; the clock stops when the consumer, after a synchronize, says it is done):

- **one process**: the same work, in this process, one frame buffer;
- **two processes, SharedRing**: this process writes each frame into a ring of 4 shared frames, a
  ``spawn`` child reads each slot (CUDA IPC, no copy), preprocesses it, releases it, runs the model;
- **two processes, tensor.cpu()**: this process writes the frame, sends ``block.cpu()`` through a
  ``torch.multiprocessing`` queue of 4 (host tensors travel in shared memory), the child copies it
  into its own device frame (the ``.cuda()``) and does the same work.

Every route's last batch must be the one process's (the output row). Hand-off: one 1080p NV12
``GpuFrame`` and one 1080p HWC uint8 ``GpuImage``, and a bare CUDA tensor of the same shape as
``torch.multiprocessing`` sends it, each taken round-robin from a pool of 4, a one-byte write queued
before each send. Each hand-off is pickled here by ``ForkingPickler`` (what a ``multiprocessing``
queue uses), sent through a pipe to a ``spawn`` child that unpickles it (opens the memory and makes
its stream wait; gpuimage's object also gives its ``as_torch()``), drops it and answers. Rows: the
round trip, the pickling, and the child's unpickling, median µs per hand-off. Ratios are shown, not
judged: issue 15 sets no target for them.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any

import _processes_work as work
import torch
import torch.multiprocessing
from _common import describe, header, parse_args, print_checks, ratio_check, value_check, write_json

from gpuimage import GpuFrame, GpuImage, SharedRing


@dataclass(frozen=True)
class Sizes:
    """How much one run does."""

    warmup: int  # untimed frames (and hand-offs) first: CUDA and cuDNN start-up, plans, allocator pools
    frames: int  # timed frames per pipeline route
    handoffs: int  # timed hand-offs per object kind and library


QUICK, FULL = Sizes(warmup=10, frames=60, handoffs=100), Sizes(warmup=30, frames=600, handoffs=500)
SLOTS = 4  # the ring's frames; the host queue's length; the hand-off pools' size
CONTEXT = torch.multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
Route = dict[str, Any]  # fps, seconds, checksum, error


def new_frame() -> GpuFrame:
    return GpuFrame.empty(work.WIDTH, work.HEIGHT, format="NV12", colour=work.COLOUR)


def one_process(sizes: Sizes) -> Route:
    """The pipeline's work in this process."""
    pipeline = work.Work()
    frame = new_frame()
    block, base = frame.as_torch(), work.gradient(work.WIDTH, work.HEIGHT, "cuda")
    start = 0.0
    for index in range(sizes.warmup + sizes.frames):
        if index == sizes.warmup:
            torch.cuda.synchronize()
            start = time.perf_counter()
        work.fill(block, base, index)
        pipeline.preprocess(frame)
        pipeline.infer()
    torch.cuda.synchronize()
    return timed(sizes, time.perf_counter() - start, work.checksum(pipeline.batch))


def timed(sizes: Sizes, seconds: float, total: float) -> Route:
    return {"fps": work.frames_per_second(sizes.frames, seconds), "seconds": seconds, "checksum": total}


def produce(
    sizes: Sizes, results: Queue[work.Message], child: BaseProcess, send: Callable[[int], None]
) -> Route:
    """Drive a consumer child: once it is ready, ``send(index)`` each frame; the clock starts when it
    reports itself warm and stops when it reports done (with its checksum)."""
    with work.explained(results):
        work.wait_for(results, child, "ready")
        start = 0.0
        for index in range(sizes.warmup + sizes.frames):
            if index == sizes.warmup:
                work.wait_for(results, child, "warm")
                start = time.perf_counter()
            send(index)
        done = work.wait_for(results, child, "done")
        return timed(sizes, time.perf_counter() - start, done[1])


def ring_route(sizes: Sizes) -> Route:
    """This process writes each frame into a ``SharedRing``; a child reads and infers."""
    ring = SharedRing.from_items([new_frame() for _ in range(SLOTS)])
    results = CONTEXT.Queue()
    child = CONTEXT.Process(
        target=work.ring_consumer, args=(ring, results, sizes.warmup, sizes.frames), daemon=True
    )
    child.start()  # pickles the ring: its description, never pixels
    base = work.gradient(work.WIDTH, work.HEIGHT, "cuda")

    def send(index: int) -> None:
        with ring.writing(timeout=work.WAIT_S) as (_, slot):
            work.fill(slot.as_torch(), base, index)

    try:
        return produce(sizes, results, child, send)
    finally:
        ring.close()  # a consumer still waiting (after an error here) stops at once
        work.stop(child)


def host_route(sizes: Sizes) -> Route:
    """This process sends each frame as ``tensor.cpu()`` through a queue; a child uploads and infers."""
    blocks, results = CONTEXT.Queue(maxsize=SLOTS), CONTEXT.Queue()
    child = CONTEXT.Process(
        target=work.host_consumer, args=(blocks, results, sizes.warmup, sizes.frames), daemon=True
    )
    child.start()
    frame = new_frame()
    block, base = frame.as_torch(), work.gradient(work.WIDTH, work.HEIGHT, "cuda")

    def send(index: int) -> None:
        work.fill(block, base, index)
        blocks.put(block.cpu(), timeout=work.WAIT_S)  # .cpu() waits for the write: the host syncs

    try:
        return produce(sizes, results, child, send)
    finally:
        work.stop(child)


def pools() -> dict[str, tuple[list[Any], list[torch.Tensor]]]:
    """Per kind: gpuimage's objects, and bare tensors of the same shape, ``SLOTS`` of each."""
    frames = [new_frame() for _ in range(SLOTS)]
    images = [GpuImage.empty(work.HEIGHT, work.WIDTH, 3) for _ in range(SLOTS)]
    return {
        "1080p NV12 GpuFrame": (frames, [torch.empty_like(each.as_torch()) for each in frames]),
        "1080p HWC uint8 GpuImage": (images, [torch.empty_like(each.as_torch()) for each in images]),
    }


def handoffs(sizes: Sizes) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per-hand-off timings (``"<kind>, <library>, <step>"``) and what the child read back wrong.

    Each library gets its own child: one process must not open the same allocation (the pools may
    share one of torch's segments) through both libraries' IPC caches at once.
    """
    timings: dict[str, dict[str, Any]] = {}
    wrong: list[str] = []
    made = pools()
    for library, side in (("gpuimage", 0), ("torch.multiprocessing", 1)):
        parent_end, child_end = CONTEXT.Pipe()
        child = CONTEXT.Process(target=work.handoff_consumer, args=(child_end,), daemon=True)
        child.start()
        try:
            for kind, both in made.items():
                steps, read = handoff_loop(parent_end, both[side], sizes)
                if read is not None:
                    wrong.append(f"{kind}, {library}: {read}")
                for step, samples in steps.items():
                    timings[f"{kind}, {library}, {step}"] = work.spread_us(samples)
        finally:
            with contextlib.suppress(OSError):  # the child may be gone already
                parent_end.send_bytes(b"stop")
            work.stop(child)
    return timings, wrong


def handoff_loop(
    conn: Connection, items: Sequence[Any], sizes: Sizes
) -> tuple[dict[str, list[int]], str | None]:
    """Hand ``items`` off round-robin (warm-up first, then ``sizes.handoffs`` timed, then one whose value
    the child reads back, untimed: reading it synchronizes the child). Nanoseconds per step, and what
    the child read wrong (None: right)."""
    steps: dict[str, list[int]] = {"round trip": [], "pickle": [], "open + wait": []}
    total = sizes.warmup + sizes.handoffs
    for index in range(total):
        pickled, trip, opened, _ = work.handoff(conn, written(items, index), check=False)
        if index >= sizes.warmup:
            for step, ns in zip(steps, (trip, pickled, opened), strict=True):
                steps[step].append(ns)
    value = work.handoff(conn, written(items, total), check=True)[3]
    return steps, None if value == total % 256 else f"read {value}, wrote {total % 256}"


def written(items: Sequence[Any], index: int) -> Any:
    """Item ``index`` of the pool (round-robin), its first byte set to ``index % 256`` by a kernel queued
    now on torch's current stream (a gpuimage object is told: its pickling records the ready point)."""
    item = items[index % len(items)]
    tensor = item if isinstance(item, torch.Tensor) else item.as_torch()
    tensor.view(-1)[:1].fill_(index % 256)
    if not isinstance(item, torch.Tensor):
        item.record_write(torch.cuda.current_stream())
    return item


def rate_check(case: str, ours: float | None, theirs: float | None, against: str) -> dict[str, Any]:
    """A row of frames per second (ratio: ours / theirs, above 1 is faster), shown, not judged."""
    ratio = "" if ours is None or theirs is None or theirs <= 0 else f"{ours / theirs:.2f}"
    return {
        "case": case,
        "gpuimage": "n/a" if ours is None else f"{ours:.1f} frames/s",
        "alternative": f"{'n/a' if theirs is None else f'{theirs:.1f} frames/s'} ({against})",
        "ratio": ratio,
        "target": "",
        "passed": None,
    }


def outputs_check(routes: dict[str, Route], wrong: list[str]) -> dict[str, Any]:
    """Every route's last batch equals the one process's; every hand-off read back its last write."""
    problems = list(wrong)
    reference = routes.get("one process", {}).get("checksum")
    for name, route in routes.items():
        total = route.get("checksum")
        if "error" in route:
            problems.append(f"{name}: {route['error']}")
        elif reference is None or total is None or abs(total - reference) > 1e-9 * max(1.0, abs(reference)):
            problems.append(f"{name}: checksum {total} against one process's {reference}")
    return value_check(
        "outputs: every route's last batch as one process's; hand-offs read their write",
        "right" if not problems else "WRONG: " + "; ".join(problems),
        "right",
        not problems,
    )


def judge(
    routes: dict[str, Route], timings: dict[str, dict[str, Any]], wrong: list[str]
) -> list[dict[str, Any]]:
    """The rows: frames per second of the two-process routes, the hand-offs' µs, the outputs."""
    fps = {name: route.get("fps") for name, route in routes.items()}
    ring = "two processes, SharedRing"
    checks = [
        rate_check(f"1080p NV12 pipeline fps: {ring} vs one process", fps.get(ring), fps.get("one process"),
                   "one process"),
        rate_check(f"1080p NV12 pipeline fps: {ring} vs tensor.cpu() between processes", fps.get(ring),
                   fps.get("two processes, tensor.cpu()"), "tensor.cpu() through a queue"),
    ]  # fmt: skip
    kinds = sorted({name.split(", ")[0] for name in timings})
    for kind in kinds:
        for step in ("round trip", "pickle", "open + wait"):
            ours = timings.get(f"{kind}, gpuimage, {step}", {}).get("median_us")
            theirs = timings.get(f"{kind}, torch.multiprocessing, {step}", {}).get("median_us")
            case = f"hand-off {step}: {kind} vs bare CUDA tensor"
            checks.append(ratio_check(case, ours, theirs, "torch.multiprocessing", None))
    return [*checks, outputs_check(routes, wrong)]


def measure(sizes: Sizes) -> tuple[dict[str, Route], dict[str, dict[str, Any]], list[str], list[str]]:
    """Every route and the hand-offs; a failure is noted and its rows show n/a."""
    routes: dict[str, Route] = {}
    notes: list[str] = []
    for name, route in (
        ("one process", one_process),
        ("two processes, SharedRing", ring_route),
        ("two processes, tensor.cpu()", host_route),
    ):
        try:
            routes[name] = route(sizes)
        except Exception as exc:
            routes[name] = {"error": describe(exc)}
            notes.append(f"{name}: {describe(exc)}")
    timings: dict[str, dict[str, Any]] = {}
    wrong: list[str] = []
    try:
        timings, wrong = handoffs(sizes)
    except Exception as exc:
        notes.append(f"hand-offs: {describe(exc)}")
        wrong.append(f"hand-offs did not finish: {describe(exc)}")
    return routes, timings, wrong, notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "processes.py", argv)
    if args is None:
        return 0
    sizes = QUICK if args.quick else FULL
    info = header()
    print(json.dumps(info), str(sizes), "", sep="\n")
    routes, timings, wrong, notes = measure(sizes)
    print(f"{'pipeline route':32}{'frames/s':>12}{'seconds':>10}")
    for name, route in routes.items():
        rate = route.get("fps")
        print(f"{name:32}{'n/a' if rate is None else f'{rate:.1f}':>12}{route.get('seconds', 0.0):>10.3f}")
    print(f"\n{'hand-off':66}{'median us':>10}{'p10 us':>10}{'p90 us':>10}")
    for name, entry in timings.items():
        print(f"{name:66}{entry['median_us']:>10.2f}{entry['p10_us']:>10.2f}{entry['p90_us']:>10.2f}")
    print(*notes, "", sep="\n")
    checks = judge(routes, timings, wrong)
    print_checks(checks)
    results = {"header": info, "config": asdict(sizes), "pipeline": routes, "handoffs": timings}
    write_json(args.json, {**results, "checks": checks, "notes": notes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
