"""Cost of wrapping a foreign array and taking a view, beside the raw one-liners doing the same job,
and device-memory growth over create + view + drop cycles.

Usage: ``python benchmarks/views.py [--quick] [--json PATH]`` on a machine with a CUDA GPU.
CV-CUDA (``import cvcuda``) is optional: without it its row says why and is not judged.

Rows, on a 1080x1920x3 uint8 image (timed as ``_timing.py`` says: N calls, then one synchronize,
median of repetitions, a target's two rows sampled in turn; each result is dropped at once, so
freeing it is timed too):

- wrap + first view, the targets (gpuimage / one-liner):
  CuPy -> torch: ``GpuImage.from_cupy(a, layout="HWC").as_torch()`` vs ``torch.as_tensor(a,
  device="cuda")``, <= 1.0x; torch -> CuPy: ``GpuImage.from_torch(t, layout="HWC").as_cupy()`` vs
  ``cupy.asarray(t)``, <= 1.0x; torch -> GpuMat: ``...as_gpumat()`` vs
  ``cv2.cuda.createGpuMatFromCudaMemory`` with rows, cols, type and step read off the tensor,
  <= 2.0x; torch -> CV-CUDA: ``cvcuda.as_tensor(GpuImage.from_torch(t, layout="HWC"), "HWC")`` vs
  ``cvcuda.as_tensor(t, "HWC")``, <= 1.5x.
- cached views: the second and later ``as_torch()``, ``as_cupy()``, ``as_gpumat()`` of one image
  with nothing pending, < 0.3 us each; on an image ready on the current stream (each call also
  checks the ordering) they are shown, not judged.
- shown only: ``from_*`` alone; first views of fresh images made before the clock; the DLPack
  one-liners; ``createGpuMatFromCudaMemory`` with constant arguments; the loop's own overhead.
- memory: deltas of ``torch.cuda.memory_allocated``, CuPy's pool ``used_bytes`` and gpuimage's
  held GpuMats across 100,000 (``--quick``: 2,000) create + three views + drop cycles, read after
  a synchronize and ``gpuimage.pending_releases()``: each must be 0.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import cupy
import cv2
import numpy as np
import torch
import torch.utils.dlpack
from _common import (
    describe,
    header,
    micros,
    module_version,
    optional_module,
    parse_args,
    print_checks,
    ratio_check,
    value_check,
    write_json,
)
from _timing import Loop, Spread, wall_per_call, wall_per_call_each, walls_in_turn

import gpuimage
from gpuimage import HWC, GpuImage

HEIGHT, WIDTH, CHANNELS = 1080, 1920, 3
QUICK, FULL = Loop(calls=2_000, repeats=5, warmup=200, gpu_calls=0), Loop(10_000, 15, 1_000, 0)
CYCLES_QUICK, CYCLES_FULL, CACHED_LIMIT_US = 2_000, 100_000, 0.3

# Wrap + first view: (row, gpuimage's op, the one-liner's op, its text, limit).
CUPY_TO_TORCH, TORCH_TO_CUPY = "wrap + first view: CuPy -> torch", "wrap + first view: torch -> CuPy"
TORCH_TO_MAT, TORCH_TO_CV = "wrap + first view: torch -> GpuMat", "wrap: torch -> CV-CUDA tensor"
TORCH_CAI, CUPY_CAI = "torch.as_tensor(cupy)", "cupy.asarray(torch)"
MAT_BY_HAND, CV_RAW = "createGpuMatFromCudaMemory(read off the tensor)", "cvcuda.as_tensor(t)"
CACHED = ("as_torch() cached", "as_cupy() cached", "as_gpumat() cached")
ORDERED = tuple(f"{name}, ordering checked" for name in CACHED)
TARGETS = (
    (CUPY_TO_TORCH, TORCH_CAI, 1.0),
    (TORCH_TO_CUPY, CUPY_CAI, 1.0),
    (TORCH_TO_MAT, MAT_BY_HAND, 2.0),
    (TORCH_TO_CV, CV_RAW, 1.5),
)
SHOWN = (  # (gpuimage, alternative): ratios shown, not judged
    ("as_torch() first", TORCH_CAI),
    ("as_cupy() first", CUPY_CAI),
    ("as_gpumat() first", MAT_BY_HAND),
    ("as_torch() first", "torch from_dlpack(cupy)"),
    ("as_cupy() first", "cupy.from_dlpack(torch)"),
)


def take_views(image: GpuImage[HWC]) -> None:
    image.as_torch()
    image.as_cupy()
    image.as_gpumat()


def gpumat_by_hand(tensor: torch.Tensor) -> cv2.cuda.GpuMat:
    """The glue gpuimage replaces: no checks, and nothing keeps the tensor alive."""
    rows, cols, channels = tensor.shape
    step = tensor.stride(0) * tensor.element_size()
    return cv2.cuda.createGpuMatFromCudaMemory(
        rows, cols, cv2.CV_MAKETYPE(cv2.CV_8U, channels), tensor.data_ptr(), step
    )


def run_ops(loop: Loop, cv: Any) -> tuple[dict[str, Spread], dict[str, str]]:
    """Per-call timings by row name, and why a row has none."""
    tensor = torch.randint(0, 256, (HEIGHT, WIDTH, CHANNELS), dtype=torch.uint8, device="cuda")
    array = cupy.asarray(tensor).copy()  # memory CuPy owns, so CuPy sources are CuPy's own
    cv_type, step, ptr = cv2.CV_MAKETYPE(cv2.CV_8U, CHANNELS), WIDTH * CHANNELS, tensor.data_ptr()
    torch.cuda.synchronize()
    timings: dict[str, Spread] = {}
    errors: dict[str, str] = {}

    def timed(name: str, op: Callable[[], object]) -> None:
        try:
            timings[name] = wall_per_call(op, loop)
        except Exception as exc:
            errors[name] = describe(exc)

    def timed_together(rows: dict[str, Callable[[], object]]) -> None:
        """Rows compared with each other: their samples taken in turn (``_timing``)."""
        for name, wall in zip(rows, walls_in_turn(list(rows.values()), loop), strict=True):
            if isinstance(wall, Exception):
                errors[name] = describe(wall)
            else:
                timings[name] = wall

    def timed_each(
        name: str, op: Callable[[GpuImage[HWC]], object], make: Callable[[], GpuImage[HWC]]
    ) -> None:
        try:
            timings[name] = wall_per_call_each(op, make, loop)
        except Exception as exc:
            errors[name] = describe(exc)

    timed("(loop overhead: a no-op call)", lambda: None)
    timed("GpuImage.from_torch", lambda: GpuImage.from_torch(tensor, layout="HWC"))
    timed("GpuImage.from_cupy", lambda: GpuImage.from_cupy(array, layout="HWC"))
    timed_together(
        {
            CUPY_TO_TORCH: lambda: GpuImage.from_cupy(array, layout="HWC").as_torch(),
            TORCH_CAI: lambda: torch.as_tensor(array, device="cuda"),
        }
    )
    timed_together(
        {
            TORCH_TO_CUPY: lambda: GpuImage.from_torch(tensor, layout="HWC").as_cupy(),
            CUPY_CAI: lambda: cupy.asarray(tensor),
        }
    )
    timed_together(
        {
            TORCH_TO_MAT: lambda: GpuImage.from_torch(tensor, layout="HWC").as_gpumat(),
            MAT_BY_HAND: lambda: gpumat_by_hand(tensor),
        }
    )
    timed("torch from_dlpack(cupy)", lambda: torch.utils.dlpack.from_dlpack(array))
    timed("cupy.from_dlpack(torch)", lambda: cupy.from_dlpack(tensor))
    timed(
        "createGpuMatFromCudaMemory(constants)",
        lambda: cv2.cuda.createGpuMatFromCudaMemory(HEIGHT, WIDTH, cv_type, ptr, step),
    )
    if cv is None:
        errors[TORCH_TO_CV] = errors[CV_RAW] = "cvcuda is not importable"
    else:
        timed_together(
            {
                TORCH_TO_CV: lambda: cv.as_tensor(GpuImage.from_torch(tensor, layout="HWC"), "HWC"),
                CV_RAW: lambda: cv.as_tensor(tensor, "HWC"),
            }
        )
    # First views of fresh images made before the clock (the view and dropping the image are timed).
    timed_each("as_torch() first", lambda i: i.as_torch(), lambda: GpuImage.from_cupy(array, layout="HWC"))
    timed_each("as_cupy() first", lambda i: i.as_cupy(), lambda: GpuImage.from_torch(tensor, layout="HWC"))
    timed_each(
        "as_gpumat() first", lambda i: i.as_gpumat(), lambda: GpuImage.from_torch(tensor, layout="HWC")
    )
    try:
        cached = GpuImage.from_torch(tensor, layout="HWC")
        cached.synchronize()  # nothing pending: no stream to order after
        ordered = GpuImage.from_torch(tensor, layout="HWC")  # ready on torch's current stream
        for image, names in ((cached, CACHED), (ordered, ORDERED)):
            take_views(image)  # later calls return these
            for name, view in zip(names, (image.as_torch, image.as_cupy, image.as_gpumat), strict=True):
                timed(name, view)  # the bound method itself: no lambda in the way
    except Exception as exc:
        for name in (*CACHED, *ORDERED):
            errors.setdefault(name, describe(exc))
    return timings, errors


def held_mats() -> int | None:
    """gpuimage's GpuMat views still holding their memory's owner (None where this version has no count)."""
    try:
        count: object = importlib.import_module("gpuimage._opencv").held_mats()
    except Exception:
        return None
    return count if isinstance(count, int) else None


def memory_state() -> dict[str, int]:
    gc.collect()
    torch.cuda.synchronize()
    gpuimage.pending_releases()  # memory held for work on other streams is released once it is done
    state = {
        "torch.cuda.memory_allocated": torch.cuda.memory_allocated(),
        "cupy pool used_bytes": cupy.get_default_memory_pool().used_bytes(),
    }
    mats = held_mats()
    return state if mats is None else state | {"gpuimage held GpuMats": mats}


def view_cycle(cycle: int) -> None:
    """Wrap fresh memory (a torch tensor on odd cycles, a CuPy array on even ones), take the three
    views, and drop it all on return: an owner kept alive by a leaked view shows up as growth."""
    shape = (HEIGHT, WIDTH, CHANNELS)
    if cycle % 2:
        take_views(GpuImage.from_torch(torch.empty(shape, dtype=torch.uint8, device="cuda"), layout="HWC"))
    else:
        take_views(GpuImage.from_cupy(cupy.empty(shape, dtype=cupy.uint8), layout="HWC"))


def memory_deltas(cycles: int) -> dict[str, int] | str:
    """Deltas across ``cycles`` cycles (after 100 untimed ones fill the pools), or why none."""
    try:
        for cycle in range(100):
            view_cycle(cycle)
        before = memory_state()
        for cycle in range(cycles):
            view_cycle(cycle)
        after = memory_state()
    except Exception as exc:
        return describe(exc)
    return {name: after[name] - before[name] for name in before}


def compare(
    timings: dict[str, Spread], errors: dict[str, str], deltas: dict[str, int] | str, cycles: int
) -> list[dict[str, Any]]:
    def us(name: str) -> float | None:
        return timings[name].median_us if name in timings else None

    # A target whose one-liner did not run here (CV-CUDA missing) is shown, not judged.
    checks = [
        ratio_check(row, us(row), us(raw), raw, limit, ours_missing_fails=us(raw) is not None)
        for row, raw, limit in TARGETS
    ]
    for ours, theirs in SHOWN:
        checks.append(ratio_check(f"{ours} vs {theirs}", us(ours), us(theirs), theirs, None))
    for name in CACHED:
        median = us(name)
        value = f"n/a: {errors.get(name, '')}" if median is None else micros(median)
        passed = median is not None and median < CACHED_LIMIT_US
        checks.append(value_check(name, value, f"< {CACHED_LIMIT_US} us", passed))
    for name in ORDERED:
        checks.append(value_check(name, micros(us(name)), "", None))
    if isinstance(deltas, str):
        checks.append(value_check(f"memory growth over {cycles} cycles", f"n/a: {deltas}", "== 0", False))
    else:
        for name, delta in deltas.items():
            checks.append(
                value_check(f"{name} growth over {cycles} cycles", f"{delta:+d}", "== 0", delta == 0)
            )
    return checks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "views.py", argv)
    if args is None:
        return 0
    loop, cycles = (QUICK, CYCLES_QUICK) if args.quick else (FULL, CYCLES_FULL)
    cv, missing = optional_module("cvcuda")
    info = header() | {
        "opencv": f"{cv2.__version__} (CUDA devices: {cv2.cuda.getCudaEnabledDeviceCount()})",
        "numpy": np.__version__,
        "cvcuda": module_version(cv) if cv is not None else missing,
    }
    print(json.dumps(info))
    print(f"image {HEIGHT}x{WIDTH}x{CHANNELS} uint8 HWC, cuda:0; {loop}; memory: {cycles} cycles\n")
    timings, errors = run_ops(loop, cv)
    print(f"{'operation':<50}{'median us':>11}{'p10 us':>10}{'p90 us':>10}")
    for name, spread in timings.items():
        print(f"{name:<50}{spread.median_us:>11.3f}{spread.p10_us:>10.3f}{spread.p90_us:>10.3f}")
    for name, why in errors.items():
        print(f"{name:<50}  n/a: {why}")
    print()
    deltas = memory_deltas(cycles)
    checks = compare(timings, errors, deltas, cycles)
    print_checks(checks)
    config = asdict(loop) | {"cycles": cycles}
    ops = {name: asdict(spread) for name, spread in timings.items()}
    write_json(
        args.json,
        {
            "header": info,
            "config": config,
            "ops": ops,
            "errors": errors,
            "memory_deltas": deltas,
            "checks": checks,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
