"""What ``benchmarks/processes.py`` runs, in this process and in its ``spawn`` children (a helper
module: the runner skips ``_``-prefixed files). The children import it by name: a spawned child gets
its parent's ``sys.path``, where ``benchmarks/`` is.

The work per frame is the example's (``examples/two_process_pipeline.py``), at 1080p: a moving gradient
written into an NV12 frame on the GPU (one add), ``gpuimage.normalize_batch`` over a few regions of the
frame into one preallocated batch, then the example's tiny torch model on the batch. No host
synchronization per frame, except where a route needs one (``tensor.cpu()``).
"""

from __future__ import annotations

import pickle
import queue
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.reduction import ForkingPickler
from typing import Any

import torch
import torch.multiprocessing  # registers torch's reductions (CUDA IPC of tensors) in ForkingPickler
from torch import nn

import gpuimage
from gpuimage import ColorSpec, GpuFrame, SharedRing

WIDTH, HEIGHT = 1920, 1080
COLOUR = ColorSpec(matrix="BT709", range="LIMITED")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = (224, 224)  # (height, width) of each region in the batch
# (x, y, width, height): the whole frame, and regions as a tracker gives them (odd offsets too)
ROIS = ((0, 0, WIDTH, HEIGHT), (100, 80, 400, 300), (640, 200, 320, 320), (901, 411, 301, 243))
CLASSES = 10
WAIT_S = 60.0  # how long either side waits for the other before giving up
Message = tuple[Any, ...]


def shift(index: int) -> int:
    """How far frame ``index``'s gradient is moved (uint8 codes; the add wraps at 256)."""
    return index * 5 % 256


def gradient(width: int, height: int, device: str | torch.device) -> torch.Tensor:
    """The ``(1.5 H, W)`` uint8 NV12 block of frame 0: a diagonal gradient over luma and chroma."""
    rows = torch.arange(height * 3 // 2, device=device)[:, None]
    return ((rows + 2 * torch.arange(width, device=device)[None, :]) % 256).to(torch.uint8)


def fill(block: torch.Tensor, base: torch.Tensor, index: int) -> None:
    """Write frame ``index`` into ``block`` (a frame's ``as_torch()``), on torch's current stream."""
    torch.add(base, shift(index), out=block)


def build_model() -> nn.Module:
    """The example's tiny classifier, with fixed random weights (the caller's seed is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers = (nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        model = nn.Sequential(*layers, nn.Linear(16, CLASSES))
    return model.eval()


def checksum(batch: torch.Tensor) -> float:
    """A position-weighted float64 sum of ``batch`` (one host sync): a wrong frame or region changes it."""
    weights = torch.arange(batch.numel(), device=batch.device, dtype=torch.float64) % 1009 + 1
    return float((batch.to(torch.float64).reshape(-1) * weights).sum())


class Work:
    """The consumer's work on one frame: ``preprocess`` (which reads the frame), then ``infer``."""

    def __init__(self, device: str = "cuda", rois: Sequence[tuple[int, int, int, int]] = ROIS) -> None:
        self.rois = tuple(rois)
        self.model = build_model().to(device)
        self.batch = torch.empty((len(self.rois), 3, *SIZE), device=device)  # reused: no allocation per frame

    def preprocess(self, frame: GpuFrame) -> None:
        gpuimage.normalize_batch(
            [frame] * len(self.rois), MEAN, STD, rois=self.rois, size=SIZE, resize="bilinear", out=self.batch
        )

    def infer(self) -> torch.Tensor:
        with torch.inference_mode():
            logits: torch.Tensor = self.model(self.batch)
        return logits


def frames_per_second(frames: int, seconds: float) -> float | None:
    """``frames / seconds``, or None where nothing was timed."""
    return frames / seconds if frames > 0 and seconds > 0 else None


def spread_us(samples_ns: Sequence[int]) -> dict[str, float]:
    """Median, p10 and p90 of per-item nanoseconds, in microseconds."""
    if not samples_ns:
        raise ValueError("spread_us(): expected at least one sample, got none")
    micros = [sample / 1000 for sample in samples_ns]
    if len(micros) == 1:
        return {"median_us": micros[0], "p10_us": micros[0], "p90_us": micros[0]}
    deciles = statistics.quantiles(micros, n=10, method="inclusive")
    return {"median_us": statistics.median(micros), "p10_us": deciles[0], "p90_us": deciles[-1]}


# -- the consumer processes ---------------------------------------------------------------------


def _consume(next_frame: Any, results: Queue[Message], warmup: int, frames: int) -> None:
    """Run ``warmup + frames`` frames; say "warm" once the warm-up is done, "done" with the last batch's
    checksum after a final synchronize. ``next_frame(work)`` preprocesses the next frame."""
    work = Work()
    results.put(("ready",))
    for index in range(warmup + frames):
        if index == warmup:
            torch.cuda.synchronize()
            results.put(("warm",))
        next_frame(work)
        work.infer()
    torch.cuda.synchronize()
    results.put(("done", checksum(work.batch)))


def ring_consumer(ring: SharedRing[GpuFrame], results: Queue[Message], warmup: int, frames: int) -> None:
    """Read each frame from the ring (opened over the producer's memory), as the example does: the slot
    is released once the kernel that reads it is queued, before the model runs."""

    def next_frame(work: Work) -> None:
        with ring.reading(timeout=WAIT_S) as frame:
            work.preprocess(frame)

    try:
        _consume(next_frame, results, warmup, frames)
    except Exception as exc:  # reported by the parent
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        ring.close()


def host_consumer(blocks: Queue[torch.Tensor], results: Queue[Message], warmup: int, frames: int) -> None:
    """Take each frame as a host tensor (``tensor.cpu()`` in the producer) and upload it into one frame."""
    try:
        frame = GpuFrame.empty(WIDTH, HEIGHT, format="NV12", colour=COLOUR)
        target = frame.as_torch()

        def next_frame(work: Work) -> None:
            target.copy_(blocks.get(timeout=WAIT_S))  # the .cuda() of the host tensor, into the frame
            work.preprocess(frame)

        _consume(next_frame, results, warmup, frames)
    except Exception as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def handoff_consumer(conn: Connection) -> None:
    """Answer each ``(check, obj)`` message with ``(ns, value)``: ``ns`` the time to unpickle it (open
    and wait: torch's tensor as it arrives, gpuimage's object and its ``as_torch()``), ``value`` its
    first byte (read after a synchronize) where ``check``, else -1. ``b"stop"`` ends it."""
    while True:
        data = conn.recv_bytes()
        if data == b"stop":
            return
        try:
            start = time.perf_counter_ns()
            check, obj = pickle.loads(data)  # ForkingPickler.loads is pickle.loads
            tensor = obj if isinstance(obj, torch.Tensor) else obj.as_torch()
            elapsed = time.perf_counter_ns() - start
            value = int(tensor.reshape(-1)[0]) if check else -1
            del obj, tensor  # let go before answering: the release is part of each hand-off
            conn.send((elapsed, value))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


# -- the producer's side ------------------------------------------------------------------------


def wait_for(results: Queue[Message], child: BaseProcess, tag: str) -> Message:
    """The child's next message, which must be ``tag``; waits while the child lives (``WAIT_S`` at most)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            message = results.get(timeout=0.5)
            break
        except queue.Empty:
            if not child.is_alive() or time.monotonic() > deadline:
                try:  # it may have put its last message just before it exited
                    message = results.get(timeout=1.0)
                    break
                except queue.Empty:
                    raise RuntimeError(f"the consumer stopped (exit code {child.exitcode})") from None
    if message[0] != tag:
        raise RuntimeError(f"the consumer failed: {message[1]}" if message[0] == "error" else repr(message))
    return message


@contextmanager
def explained(results: Queue[Message]) -> Iterator[None]:
    """Where the block fails and the consumer reported an error, raise that instead."""
    try:
        yield
    except Exception as exc:
        why = reported_error(results)
        if why is None:
            raise
        raise RuntimeError(f"the consumer failed: {why}") from exc


def reported_error(results: Queue[Message], wait_s: float = 1.0) -> str | None:
    """An error the consumer reported within ``wait_s`` (it may come after the failure it caused here:
    a writer sees its reader gone before it reads why), or None."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            message = results.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if message[0] == "error":
            return str(message[1])


def handoff(conn: Connection, obj: object, *, check: bool) -> tuple[int, int, int, int]:
    """Send ``obj`` (pickled here as a ``multiprocessing`` queue pickles it) and wait for the answer:
    ``(pickle ns, round trip ns, the consumer's ns, the consumer's value)``."""
    start = time.perf_counter_ns()
    data = ForkingPickler.dumps((check, obj), pickle.HIGHEST_PROTOCOL)
    pickled = time.perf_counter_ns()
    conn.send_bytes(data)
    if not conn.poll(WAIT_S):
        raise RuntimeError(f"the hand-off consumer did not answer within {WAIT_S} s")
    answer = conn.recv()
    end = time.perf_counter_ns()
    if answer[0] == "error":
        raise RuntimeError(f"the hand-off consumer failed: {answer[1]}")
    return pickled - start, end - start, int(answer[0]), int(answer[1])


def stop(child: BaseProcess) -> None:
    """Join the child; kill it after ``WAIT_S`` seconds."""
    child.join(timeout=WAIT_S)
    if child.is_alive():
        child.kill()
        child.join(timeout=10)
