"""How every benchmark times a call (a helper module: the runner skips ``_``-prefixed files).

Two figures per call:

- **wall** (the headline): what a user's loop pays. After a warm-up, ``calls`` calls are queued
  back to back and followed by one device synchronize; the wall clock of that, divided by
  ``calls``, is one sample. The median of ``repeats`` samples is reported, with p10 and p90.
  Host work, launches, allocation and GPU time all count, as they do in a per-frame loop.
  Calls that are compared with each other are sampled in turn (``wall_per_call_interleaved``):
  a cloud host's speed drifts by up to 2x within a minute, and a library whose call is bound by
  the host moves with it while one bound by the GPU does not, so figures taken one after another
  would compare different hosts.
- **GPU only** (beside it): CUDA events around ``gpu_calls`` calls queued behind a sleep kernel,
  so the GPU runs them back to back whatever the host costs. If the host could not queue them
  all before the sleep ended (a call that blocks the host, or a slow host), the figure would
  include idle gaps: the sleep is lengthened and retried, and after three tries it is reported
  as missing with that reason, never as a number.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
# torch.cuda._sleep counts GPU clock cycles; an H100 runs at up to ~2 GHz. Overestimating the
# clock only lengthens the sleep, which is harmless.
_CYCLES_PER_US = 2_000
_SLEEP_TRIES = 3


@dataclass(frozen=True)
class Loop:
    """How many calls one measurement makes."""

    calls: int  # calls per timed repetition (wall clock)
    repeats: int  # timed repetitions; the median is reported
    warmup: int  # untimed calls first (caches, lazy imports, allocator pools, kernel loads)
    gpu_calls: int  # calls queued behind the sleep kernel for the GPU-only figure


@dataclass(frozen=True)
class Spread:
    """Microseconds per call over the repetitions."""

    median_us: float
    p10_us: float
    p90_us: float


def _spread(samples: list[float]) -> Spread:
    if len(samples) == 1:
        return Spread(samples[0], samples[0], samples[0])
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return Spread(statistics.median(samples), deciles[0], deciles[-1])


def wall_per_call(op: Callable[[], object], loop: Loop) -> Spread:
    """Wall-clock microseconds per call of ``op``: ``loop.calls`` calls queued, then one synchronize.

    The result of each call is dropped at once, as a loop that rebinds its variable does, so
    freeing it is timed too.
    """
    return wall_per_call_interleaved([op], loop)[0]


def wall_per_call_interleaved(ops: Sequence[Callable[[], object]], loop: Loop) -> list[Spread]:
    """``wall_per_call`` of each op, their samples taken in turn: one sample of each op per round,
    each round starting one op further on, so no op is always sampled first. A host that speeds
    up or slows down during the run then moves every op's median alike."""
    for op in ops:
        for _ in range(loop.warmup):
            op()
    torch.cuda.synchronize()
    samples: list[list[float]] = [[] for _ in ops]
    for repeat in range(loop.repeats):
        for shift in range(len(ops)):
            index = (repeat + shift) % len(ops)
            samples[index].append(_sample(ops[index], loop.calls))
    return [_spread(each) for each in samples]


def walls_in_turn(ops: Sequence[Callable[[], object]], loop: Loop) -> list[Spread | Exception]:
    """``wall_per_call_interleaved``; where an op raises on the way, each op is timed alone instead,
    and a failing op's exception stands in its place (the others' figures are still good)."""
    try:
        return list(wall_per_call_interleaved(ops, loop))
    except Exception:
        walls: list[Spread | Exception] = []
        for op in ops:
            try:
                walls.append(wall_per_call(op, loop))
            except Exception as exc:
                walls.append(exc)
        return walls


def timed_in_turn(
    ops: Sequence[Callable[[], object]], loop: Loop
) -> list[tuple[Spread, float | str] | Exception]:
    """Each op's wall clock (``walls_in_turn``) and GPU time (``gpu_per_call``), or the exception
    it raised."""
    results: list[tuple[Spread, float | str] | Exception] = []
    for op, wall in zip(ops, walls_in_turn(ops, loop), strict=True):
        if isinstance(wall, Exception):
            results.append(wall)
            continue
        try:
            results.append((wall, gpu_per_call(op, loop, wall.median_us)))
        except Exception as exc:
            results.append(exc)
    return results


def _sample(op: Callable[[], object], calls: int) -> float:
    """Microseconds per call of ``calls`` calls queued back to back, then one synchronize."""
    gc.collect()  # earlier garbage is not collected on this sample's clock
    start = time.perf_counter_ns()
    for _ in range(calls):
        op()
    torch.cuda.synchronize()
    return (time.perf_counter_ns() - start) / calls / 1000


def wall_per_call_each(op: Callable[[T], object], make: Callable[[], T], loop: Loop) -> Spread:
    """As ``wall_per_call``, with a fresh argument for every call, all made before the clock starts.

    The argument is dropped with the result (the list held its last reference), so tearing it
    down is timed: use it for "first view of a new image" costs.
    """
    for _ in range(loop.warmup):
        op(make())
    torch.cuda.synchronize()
    samples: list[float] = []
    for _ in range(loop.repeats):
        args = [make() for _ in range(loop.calls)]
        gc.collect()
        start = time.perf_counter_ns()
        while args:
            op(args.pop())
        torch.cuda.synchronize()
        samples.append((time.perf_counter_ns() - start) / loop.calls / 1000)
    return _spread(samples)


def gpu_per_call(op: Callable[[], object], loop: Loop, wall_us: float) -> float | str:
    """GPU microseconds per call of ``op`` on the current stream, or why there is no figure.

    ``wall_us`` (the call's wall time) sizes the sleep: the host must queue every call before the
    GPU wakes up. Work that ``op`` puts on other streams is not seen by these events.
    """
    sleep_us = wall_us * loop.gpu_calls * 2 + 2_000
    for _ in range(_SLEEP_TRIES):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(int(sleep_us * _CYCLES_PER_US))
        start.record()
        for _ in range(loop.gpu_calls):
            op()
        end.record()
        queued_ahead = not start.query()  # the GPU was still asleep when the last call was queued
        end.synchronize()
        if queued_ahead:
            return float(start.elapsed_time(end)) * 1000 / loop.gpu_calls
        sleep_us *= 4
    return "n/a: the host could not queue ahead of the GPU (a call blocks the host)"
