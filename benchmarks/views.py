"""Cost of gpuimage's constructors and views, side by side with the raw interop calls doing the same job.

Usage: ``python benchmarks/views.py [--quick] [--json PATH]`` on a machine with a CUDA GPU.

Every operation runs in batches of calls timed with ``time.perf_counter_ns`` after one warm-up
batch. Per-call times are batch totals divided by the batch size, so p10/p90 are percentiles of
the batch means (a single sub-microsecond call is below the timer's resolution). The ratio column
is gpuimage / alternative: below 1 means gpuimage is faster. Exits 0 whether targets pass or not.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import cupy
import cv2
import numpy as np
import torch
import torch.utils.dlpack
from _common import header as common_header
from _common import parse_args

import gpuimage
from gpuimage import HWC, GpuImage, _opencv

T = TypeVar("T")
HEIGHT, WIDTH, CHANNELS = 1080, 1920, 3
CACHED_TARGET_US = 0.3

# Row names. First views: each call gets a fresh image; cached: the second and later calls on one image.
FROM_TORCH, FROM_CUPY, FROM_GPUMAT = "GpuImage.from_torch", "GpuImage.from_cupy", "GpuImage.from_gpumat"
AS_TORCH, AS_CUPY, AS_GPUMAT = "as_torch() first", "as_cupy() first", "as_gpumat() first"
# Cached views are measured twice: on an image with nothing pending (the cache alone), and on an
# image ready on the current stream (each call also asks the library for its current stream, to
# order it after the image's stream when they differ: the per-use ordering of the streams issue).
AS_TORCH_C, AS_CUPY_C, AS_GPUMAT_C = "as_torch() cached", "as_cupy() cached", "as_gpumat() cached"
AS_TORCH_O, AS_CUPY_O, AS_GPUMAT_O = (
    "as_torch() cached, ordering checked",
    "as_cupy() cached, ordering checked",
    "as_gpumat() cached, ordering checked",
)
E2E_TORCH, E2E_CUPY, E2E_GPUMAT = "from_cupy+as_torch", "from_torch+as_cupy", "from_torch+as_gpumat"
TORCH_CAI, TORCH_DLPACK = "torch.as_tensor(cupy)", "torch from_dlpack(cupy)"
CUPY_CAI, CUPY_DLPACK = "cupy.asarray(torch)", "cupy.from_dlpack(torch)"
CV2_WRAP, OVERHEAD = "cv2 createGpuMatFromCudaMemory", "(loop overhead: identity)"
CV2_BY_HAND = "GpuMat of a tensor, by hand"  # what users write today: shape, type, step read off it

# (gpuimage, alternative doing the same job, is a target): first views must not be slower.
# The end-to-end rows (wrap a foreign object, then view it) are shown for information.
PAIRS: tuple[tuple[str, str, bool], ...] = (
    *((AS_TORCH, TORCH_CAI, True), (AS_TORCH, TORCH_DLPACK, True), (AS_CUPY, CUPY_CAI, True)),
    *((AS_CUPY, CUPY_DLPACK, True), (AS_GPUMAT, CV2_WRAP, True), (AS_GPUMAT, CV2_BY_HAND, True)),
    (E2E_TORCH, TORCH_CAI, False),
    *((E2E_CUPY, CUPY_CAI, False), (E2E_GPUMAT, CV2_WRAP, False), (E2E_GPUMAT, CV2_BY_HAND, False)),
)


@dataclass(frozen=True)
class Config:
    batch: int  # calls per timed batch
    batches: int  # timed batches (after one warm-up batch)
    cycles: int  # create + view + drop cycles of the memory check


@dataclass(frozen=True)
class Stats:
    median_us: float
    p10_us: float
    p90_us: float


def measure(op: Callable[[T], object], inputs: Callable[[int], list[T]], config: Config) -> Stats:
    """The one timing loop: per-call microseconds of ``op`` over ``config.batches`` batches.

    ``inputs(n)`` builds a batch's ``n`` arguments outside the timed region. The loop pops an
    argument, calls ``op`` on it and drops the result, and the argument too when the list held its
    last reference. So every row, gpuimage or raw, includes tearing down what it created (a view
    and, for first views, the image shell), as a per-frame loop would.
    """
    samples: list[float] = []
    for batch in range(config.batches + 1):
        args = inputs(config.batch)
        gc.collect()
        start = time.perf_counter_ns()
        while args:
            op(args.pop())
        elapsed = time.perf_counter_ns() - start
        if batch:  # batch 0 warms up caches, lazy imports and allocators
            samples.append(elapsed / config.batch / 1000)
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return Stats(statistics.median(samples), deciles[0], deciles[-1])


def repeat(value: T) -> Callable[[int], list[T]]:
    """Inputs: the same object every call."""
    return lambda n: [value] * n


def fresh(make: Callable[[], T]) -> Callable[[int], list[T]]:
    """Inputs: a new object for every call, all made before the batch's clock starts."""
    return lambda n: [make() for _ in range(n)]


def identity(value: object) -> object:
    """The loop-overhead probe: what every row pays for the loop, the pop and one call."""
    return value


def take_views(image: GpuImage[HWC]) -> None:
    image.as_torch()
    image.as_cupy()
    image.as_gpumat()


def gpumat_by_hand(tensor: torch.Tensor) -> cv2.cuda.GpuMat:
    """The hand-written glue gpuimage replaces: no checks, and nothing keeps the tensor alive."""
    rows, cols, channels = tensor.shape
    cv_type = cv2.CV_MAKETYPE(cv2.CV_8U, channels)
    step = tensor.stride(0) * tensor.element_size()
    return cv2.cuda.createGpuMatFromCudaMemory(rows, cols, cv_type, tensor.data_ptr(), step)


def run_ops(config: Config) -> dict[str, Stats]:
    tensor = torch.randint(0, 256, (HEIGHT, WIDTH, CHANNELS), dtype=torch.uint8, device="cuda:0")
    array = cupy.asarray(tensor).copy()  # memory CuPy owns, so CuPy sources are CuPy's own
    cv_type, step, ptr = cv2.CV_MAKETYPE(cv2.CV_8U, CHANNELS), WIDTH * CHANNELS, tensor.data_ptr()
    mat = cv2.cuda.createGpuMatFromCudaMemory(HEIGHT, WIDTH, cv_type, ptr, step)
    torch.cuda.synchronize()
    ordered = GpuImage.from_torch(tensor, layout="HWC")  # ready on torch's current stream
    take_views(ordered)  # later calls return these
    cached = GpuImage.from_torch(tensor, layout="HWC")
    cached.synchronize()  # nothing pending: no stream to order after
    take_views(cached)
    of_cupy = fresh(lambda: GpuImage.from_cupy(array, layout="HWC"))
    of_torch = fresh(lambda: GpuImage.from_torch(tensor, layout="HWC"))
    # First views: every call gets a fresh image, made in a list before the batch's clock starts;
    # the clock covers the view and dropping it with the image. Chosen over timing create + view
    # and subtracting the create time, which would be a difference of two noisy numbers.
    return {
        OVERHEAD: measure(identity, repeat(tensor), config),
        FROM_TORCH: measure(lambda t: GpuImage.from_torch(t, layout="HWC"), repeat(tensor), config),
        FROM_CUPY: measure(lambda a: GpuImage.from_cupy(a, layout="HWC"), repeat(array), config),
        FROM_GPUMAT: measure(GpuImage.from_gpumat, repeat(mat), config),
        AS_TORCH: measure(lambda i: i.as_torch(), of_cupy, config),
        AS_CUPY: measure(lambda i: i.as_cupy(), of_torch, config),
        AS_GPUMAT: measure(lambda i: i.as_gpumat(), of_torch, config),
        AS_TORCH_C: measure(lambda i: i.as_torch(), repeat(cached), config),
        AS_CUPY_C: measure(lambda i: i.as_cupy(), repeat(cached), config),
        AS_GPUMAT_C: measure(lambda i: i.as_gpumat(), repeat(cached), config),
        AS_TORCH_O: measure(lambda i: i.as_torch(), repeat(ordered), config),
        AS_CUPY_O: measure(lambda i: i.as_cupy(), repeat(ordered), config),
        AS_GPUMAT_O: measure(lambda i: i.as_gpumat(), repeat(ordered), config),
        E2E_TORCH: measure(lambda a: GpuImage.from_cupy(a, layout="HWC").as_torch(), repeat(array), config),
        E2E_CUPY: measure(lambda t: GpuImage.from_torch(t, layout="HWC").as_cupy(), repeat(tensor), config),
        E2E_GPUMAT: measure(
            lambda t: GpuImage.from_torch(t, layout="HWC").as_gpumat(), repeat(tensor), config
        ),
        TORCH_CAI: measure(lambda a: torch.as_tensor(a, device="cuda"), repeat(array), config),
        TORCH_DLPACK: measure(torch.utils.dlpack.from_dlpack, repeat(array), config),
        CUPY_CAI: measure(cupy.asarray, repeat(tensor), config),
        CUPY_DLPACK: measure(cupy.from_dlpack, repeat(tensor), config),
        CV2_WRAP: measure(
            lambda p: cv2.cuda.createGpuMatFromCudaMemory(HEIGHT, WIDTH, cv_type, p, step),
            repeat(ptr),
            config,
        ),
        CV2_BY_HAND: measure(gpumat_by_hand, repeat(tensor), config),
    }


def memory_state() -> dict[str, int]:
    gc.collect()
    torch.cuda.synchronize()
    gpuimage.pending_releases()
    return {
        "torch.cuda.memory_allocated": torch.cuda.memory_allocated(),
        "cupy pool used_bytes": cupy.get_default_memory_pool().used_bytes(),
        "gpuimage held_mats": _opencv.held_mats(),
    }


def view_cycle(cycle: int) -> None:
    """Wrap fresh memory (a torch tensor on odd cycles, a CuPy array on even ones), take the three
    views, and drop it all on return: an owner kept alive by a leaked view shows up as growth."""
    shape = (HEIGHT, WIDTH, CHANNELS)
    if cycle % 2:
        take_views(GpuImage.from_torch(torch.empty(shape, dtype=torch.uint8, device="cuda:0"), layout="HWC"))
    else:
        take_views(GpuImage.from_cupy(cupy.empty(shape, dtype=cupy.uint8), layout="HWC"))


def memory_deltas(cycles: int) -> dict[str, int]:
    """Deltas across ``cycles`` create-image + as_torch + as_cupy + as_gpumat + drop cycles."""
    before = memory_state()
    for cycle in range(cycles):
        view_cycle(cycle)
    after = memory_state()
    return {name: after[name] - before[name] for name in before}


def header() -> dict[str, str]:
    return common_header() | {
        "opencv": f"{cv2.__version__} (CUDA devices: {cv2.cuda.getCudaEnabledDeviceCount()})",
        "numpy": np.__version__,
    }


def compare(ops: dict[str, Stats], deltas: dict[str, int]) -> tuple[list[dict[str, Any]], bool]:
    """Ratios and targets; returns the rows and whether every target passed."""
    rows: list[dict[str, Any]] = []
    for ours, theirs, is_target in PAIRS:
        ratio = ops[ours].median_us / ops[theirs].median_us
        passed = ratio <= 1.0 if is_target else None
        rows.append({"check": f"{ours} vs {theirs}", "value": f"ratio {ratio:.2f}", "passed": passed})
    for name in (AS_TORCH_C, AS_CUPY_C, AS_GPUMAT_C):
        median = ops[name].median_us
        rows.append(
            {"check": f"{name} < {CACHED_TARGET_US} us", "value": f"{median:.3f} us", "passed": median < 0.3}
        )
    for name in (AS_TORCH_O, AS_CUPY_O, AS_GPUMAT_O):  # shown, not a target: includes the ordering check
        rows.append({"check": name, "value": f"{ops[name].median_us:.3f} us", "passed": None})
    for name, delta in deltas.items():
        rows.append({"check": f"{name} delta == 0", "value": f"{delta:+d}", "passed": delta == 0})
    return rows, all(row["passed"] is not False for row in rows)


def report(info: dict[str, str], ops: dict[str, Stats], checks: list[dict[str, Any]], config: Config) -> None:
    for key, value in info.items():
        print(f"{key:>9}: {value}")
    print(f"image {HEIGHT}x{WIDTH}x{CHANNELS} uint8 HWC, cuda:0; {config.batches} batches of {config.batch}")
    print(f"\n{'operation':<34}{'median us':>11}{'p10 us':>10}{'p90 us':>10}")
    for name, stats in ops.items():
        print(f"{name:<34}{stats.median_us:>11.3f}{stats.p10_us:>10.3f}{stats.p90_us:>10.3f}")
    print(f"\n{'check (ratio = gpuimage / alternative; < 1: gpuimage faster)':<72}{'value':>14}  result")
    for row in checks:
        result = {True: "PASS", False: "FAIL", None: "info"}[row["passed"]]
        print(f"{row['check']:<72}{row['value']:>14}  {result}")
    print(f"(memory check: {config.cycles} create + as_torch + as_cupy + as_gpumat + drop cycles)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "views.py", argv)
    if args is None:
        return 0
    config = Config(batch=100, batches=5, cycles=1_000) if args.quick else Config(1_000, 30, 100_000)
    info, ops = header(), run_ops(config)
    deltas = memory_deltas(config.cycles)
    checks, all_passed = compare(ops, deltas)
    report(info, ops, checks, config)
    print("\nevery target passed" if all_passed else "\nsome targets FAILED (see above)")
    if args.json is not None:
        results: dict[str, object] = {"info": info, "config": asdict(config), "checks": checks}
        results |= {
            "ops": {k: asdict(v) for k, v in ops.items()},
            "memory_deltas": deltas,
            "all_passed": all_passed,
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    faulthandler.cancel_dump_traceback_later()
    return 0


if __name__ == "__main__":
    sys.exit(main())
