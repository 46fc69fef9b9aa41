"""A preprocess captured in a CUDA graph and replayed: what one replay costs beside the same calls
made one by one, with torch's equivalent captured beside it.

Usage: ``python benchmarks/graphs.py [--quick] [--json PATH]`` on a machine with a CUDA GPU.

The pipeline, on a 1080p uint8 HWC frame, writes into preallocated outputs:
``image.to_layout("CHW", out=chw)`` then ``gpuimage.normalize(chw, MEAN, STD, out=normalized)``
(where ``to_layout`` takes no ``out=`` yet, it allocates, and the row says so). torch's
equivalent: ``chw_t.copy_(t.permute(2, 0, 1))`` then ``torch.sub(chw_t, 255 * mean,
out=out).div_(255 * std)``.

Capture follows torch's rules: warm-up calls on a side stream, then ``torch.cuda.graph(graph,
stream=side)``. The images are made while that stream is current, so gpuimage launches on it.
After capture the input frame is overwritten in place and one replay's output is checked against
torch's on the new frame: the graph must read the live buffers. A failed capture is the row's
result (FAIL, with the error), not a crash. Timing as in ``_timing.py`` (wall clock per call, N
calls then one synchronize; GPU-only beside it).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
from collections.abc import Callable
from typing import Any, cast

import torch
from _common import (
    describe,
    header,
    micros,
    parse_args,
    print_checks,
    ratio_check,
    value_check,
    write_json,
)
from _timing import Loop, gpu_per_call, wall_per_call

import gpuimage
from gpuimage import GpuImage

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HEIGHT, WIDTH = 1080, 1920
QUICK, FULL = Loop(calls=200, repeats=3, warmup=50, gpu_calls=50), Loop(1000, 7, 100, 100)
Op = Callable[[], object]


def ours(hwc: torch.Tensor, out: torch.Tensor) -> tuple[Op, str]:
    """gpuimage's pipeline into ``out``, and a note where it must allocate."""
    image = GpuImage.from_torch(hwc, layout="HWC")
    chw = GpuImage.from_torch(torch.empty((3, HEIGHT, WIDTH), dtype=torch.uint8, device="cuda"), layout="CHW")
    normalized = GpuImage.from_torch(out, layout="CHW")
    to_layout = cast("Callable[..., object]", image.to_layout)  # out= is checked below
    if "out" not in inspect.signature(to_layout).parameters:

        def allocating() -> None:
            gpuimage.normalize(image.to_layout("CHW"), MEAN, STD, out=normalized)

        return allocating, "to_layout() takes no out=: it allocates in the pipeline"

    def run() -> None:
        to_layout("CHW", out=chw)
        gpuimage.normalize(chw, MEAN, STD, out=normalized)

    return run, ""


def theirs(hwc: torch.Tensor, out: torch.Tensor) -> Op:
    chw = torch.empty((3, HEIGHT, WIDTH), dtype=torch.uint8, device="cuda")
    mean255, std255 = (torch.tensor(v, device="cuda").view(3, 1, 1) * 255 for v in (MEAN, STD))

    def run() -> None:
        chw.copy_(hwc.permute(2, 0, 1))
        torch.sub(chw, mean255, out=out).div_(std255)

    return run


def reference(hwc: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(v, device="cuda").view(3, 1, 1) for v in (MEAN, STD))
    return (hwc.permute(2, 0, 1).float() / 255 - mean) / std


def capture(op: Op, stream: torch.cuda.Stream) -> tuple[torch.cuda.CUDAGraph | None, str]:
    """``op`` captured on ``stream``, or why it could not be."""
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, stream=stream):
            op()
    except Exception as exc:
        with contextlib.suppress(Exception):
            torch.cuda.synchronize()
        return None, describe(exc)
    return graph, ""


def timed(op: Op, loop: Loop) -> dict[str, Any]:
    wall = wall_per_call(op, loop)
    gpu = gpu_per_call(op, loop, wall.median_us)
    return {"median_us": wall.median_us, "p10_us": wall.p10_us, "p90_us": wall.p90_us, "gpu_us": gpu}


def replay_error(graph: torch.cuda.CUDAGraph, hwc: torch.Tensor, out: torch.Tensor) -> str:
    """Overwrite the input in place, replay once, and say how the output differs ("" if it does not)."""
    hwc.copy_(torch.randint_like(hwc, 0, 256))
    graph.replay()
    diff = float((out - reference(hwc)).abs().max())
    return (
        "" if diff <= 1e-4 else f"replay output differs from torch's on the new frame (max |diff| {diff:.2e})"
    )


def measure(loop: Loop) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Timings, checks and notes; every failure becomes a check's result."""
    timings: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        hwc = torch.randint(0, 256, (HEIGHT, WIDTH, 3), dtype=torch.uint8, device="cuda")
        outputs = {who: torch.empty((3, HEIGHT, WIDTH), device="cuda") for who in ("gpuimage", "torch")}
        ops: dict[str, Op] = {"torch": theirs(hwc, outputs["torch"])}
        try:
            ops["gpuimage"], note = ours(hwc, outputs["gpuimage"])
            notes += [note] if note else []
        except Exception as exc:
            notes.append(f"gpuimage's pipeline could not be built: {describe(exc)}")
        errors: dict[str, str] = {}
        for who, op in ops.items():
            try:
                for _ in range(3):  # warm-up on the side stream: plans, kernel loads, allocator pools
                    op()
                side.synchronize()
                timings[f"{who} uncaptured"] = timed(op, loop)
                graph, errors[who] = capture(op, side)
                if graph is not None:
                    timings[f"{who} graph replay"] = timed(graph.replay, loop)
                    errors[who] = replay_error(graph, hwc, outputs[who])
            except Exception as exc:
                errors[who] = describe(exc)
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize()
        torch.cuda.synchronize()

    def us(name: str) -> float | None:
        value = timings.get(name, {}).get("median_us")
        return value if isinstance(value, float) else None

    error = errors.get("gpuimage", notes[-1] if notes else "not run")
    result = "captured, replay right" if not error else f"FAILED: {error}"
    case = "CUDA graph capture: to_layout + normalize(out=), 1080p"
    checks = [value_check(case, result, "captures; replay output right", not error)]
    shown = (  # (row, gpuimage's timing, the alternative's): ratios shown, not judged
        ("graph replay vs the same calls uncaptured", "gpuimage graph replay", "gpuimage uncaptured"),
        ("graph replay vs torch's graph replay", "gpuimage graph replay", "torch graph replay"),
        ("uncaptured vs torch uncaptured", "gpuimage uncaptured", "torch uncaptured"),
    )
    checks += [ratio_check(row, us(mine), us(other), other, None) for row, mine, other in shown]
    if errors.get("torch"):
        notes.append(f"torch's graph: {errors['torch']}")
    return timings, checks, notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "graphs.py", argv)
    if args is None:
        return 0
    loop = QUICK if args.quick else FULL
    info = header()
    print(json.dumps(info), str(loop), "", sep="\n")
    timings, checks, notes = measure(loop)
    print(f"{'pipeline':28}{'wall us':>10}{'p10 us':>10}{'p90 us':>10}{'GPU us':>10}")
    for name, entry in timings.items():
        gpu = entry["gpu_us"]
        gpu_text = f"{gpu:.2f}" if isinstance(gpu, float) else str(gpu)
        print(
            f"{name:28}{micros(entry['median_us']):>10}{entry['p10_us']:>10.2f}{entry['p90_us']:>10.2f}{gpu_text:>10}"
        )
    print(*notes, "", sep="\n")
    print_checks(checks)
    write_json(
        args.json, {"header": info, "config": str(loop), "timings": timings, "checks": checks, "notes": notes}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
