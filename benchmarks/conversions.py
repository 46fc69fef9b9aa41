"""Conversions at memory bandwidth: gpuimage's kernels beside torch and CuPy doing the same job, and
beside a plain device-to-device copy of the same bytes, all measured in one run.

Usage: ``python benchmarks/conversions.py [--quick] [--json PATH]`` on a machine with a CUDA GPU.

Bandwidth counts the bytes each job must read plus the bytes it must write, over GPU time. GPU time is
taken with CUDA events around ``REPEATS`` calls queued behind a sleep kernel, so the GPU runs them back
to back whatever the host overhead (shown separately as host microseconds per call, measured with a
synchronize after the loop). Every job allocates its result, as user code does (torch's caching
allocator serves all three libraries' outputs from warm pools). The batch case is timed end to end
(host and GPU: a loop of small torch kernels is bound by the host), as frames per second would be.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import cupy
import torch
from _common import header, parse_args

import gpuimage
from gpuimage import GpuImage

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZES = {"4K": (2160, 3840), "1080p": (1080, 1920)}
CROPS, CROP = 64, 224
COPY_TARGET, TORCH_TARGET, BATCH_TARGET = 0.85, 2.0, 3.0


@dataclass(frozen=True)
class Row:
    case: str
    library: str
    gbps: float  # bytes read + written per second of GPU time, in GB/s
    device_us: float  # GPU time per call
    host_us: float  # wall time per call, host included


def device_time(op: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(GPU microseconds per call, host microseconds per call) of ``op``."""
    op()
    torch.cuda.synchronize()
    start_host = time.perf_counter()
    for _ in range(repeats):
        op()
    torch.cuda.synchronize()
    host_us = (time.perf_counter() - start_host) / repeats * 1e6
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    # Hold the GPU while the host queues the calls: the events then time the GPU work alone.
    torch.cuda._sleep(int(host_us * repeats * 2e3 * 1.5) + 100_000)  # ~2 GHz clock, 1.5x margin
    start.record()
    for _ in range(repeats):
        op()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / repeats, host_us


def rows_for(case: str, nbytes: int, jobs: dict[str, Callable[[], object]], repeats: int) -> list[Row]:
    rows = []
    for library, op in jobs.items():
        device_us, host_us = device_time(op, repeats)
        rows.append(Row(case, library, nbytes / device_us / 1e3, device_us, host_us))
    return rows


def frame(height: int, width: int, dtype: str) -> torch.Tensor:
    if dtype == "uint8":
        return torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, device="cuda")
    return torch.rand((height, width, 3), dtype=torch.float32, device="cuda")


def layout_cases(size: str, dtype: str, repeats: int) -> list[Row]:
    height, width = SIZES[size]
    hwc = frame(height, width, dtype)
    chw = hwc.permute(2, 0, 1).contiguous()
    flat = hwc.reshape(-1)
    nbytes = 2 * hwc.numel() * hwc.element_size()
    # A ROI of a wider frame: rows are pitched (the frame's pitch), the start is 64 pixels in.
    wide = frame(height, width + 128, dtype)
    roi = wide[:, 64 : 64 + width]
    image_hwc, image_chw = GpuImage.from_torch(hwc, layout="HWC"), GpuImage.from_torch(chw, layout="CHW")
    image_roi = GpuImage.from_torch(roi, layout="HWC")
    cupy_hwc, cupy_chw, cupy_roi = cupy.asarray(hwc), cupy.asarray(chw), cupy.asarray(roi)
    copy = {"copy": lambda: flat.clone()}
    rows = rows_for(
        f"{size} {dtype} HWC->CHW",
        nbytes,
        {
            "gpuimage": lambda: image_hwc.to_layout("CHW"),
            "torch": lambda: hwc.permute(2, 0, 1).contiguous(),
            "cupy": lambda: cupy.ascontiguousarray(cupy_hwc.transpose(2, 0, 1)),
            **copy,
        },
        repeats,
    )
    rows += rows_for(
        f"{size} {dtype} CHW->HWC",
        nbytes,
        {
            "gpuimage": lambda: image_chw.to_layout("HWC"),
            "torch": lambda: chw.permute(1, 2, 0).contiguous(),
            "cupy": lambda: cupy.ascontiguousarray(cupy_chw.transpose(1, 2, 0)),
            **copy,
        },
        repeats,
    )
    rows += rows_for(
        f"{size} {dtype} pitched->packed",
        nbytes,
        {
            "gpuimage": lambda: image_roi.contiguous(),
            "torch": lambda: roi.contiguous(),
            "cupy": lambda: cupy.ascontiguousarray(cupy_roi),
            **copy,
        },
        repeats,
    )
    if dtype == "uint8":
        mean = torch.tensor(MEAN, device="cuda").view(3, 1, 1)
        std = torch.tensor(STD, device="cuda").view(3, 1, 1)
        cupy_mean, cupy_std = cupy.asarray(mean), cupy.asarray(std)
        fused = hwc.numel() * (1 + 4)
        same_bytes = torch.empty(fused // 2, dtype=torch.uint8, device="cuda")  # copied: fused bytes moved
        rows += rows_for(
            f"{size} uint8 HWC -> float32 CHW normalize",
            fused,
            {
                "gpuimage": lambda: gpuimage.normalize(image_hwc, MEAN, STD),
                "torch": lambda: hwc.permute(2, 0, 1).contiguous().float().div_(255).sub_(mean).div_(std),
                "cupy": lambda: (
                    (cupy_hwc.transpose(2, 0, 1).astype(cupy.float32) / 255 - cupy_mean) / cupy_std
                ),
                "copy": lambda: same_bytes.clone(),
            },
            repeats,
        )
    return rows


def batch_case(repeats: int) -> list[Row]:
    """64 crops of 224x224 from 1080p frames into one NCHW float32 batch, end to end."""
    generator = torch.Generator().manual_seed(0)
    frames = [frame(1080, 1920, "uint8") for _ in range(8)]
    boxes = [
        (
            int(torch.randint(0, 1920 - CROP, (1,), generator=generator)),
            int(torch.randint(0, 1080 - CROP, (1,), generator=generator)),
        )
        for _ in range(CROPS)
    ]
    images = [GpuImage.from_torch(frames[index % 8], layout="HWC") for index in range(CROPS)]
    rois = [(x, y, CROP, CROP) for x, y in boxes]
    out = torch.empty((CROPS, 3, CROP, CROP), dtype=torch.float32, device="cuda")
    mean = torch.tensor(MEAN, device="cuda").view(3, 1, 1)
    std = torch.tensor(STD, device="cuda").view(3, 1, 1)

    def torch_loop() -> None:
        for index, (x, y) in enumerate(boxes):
            crop = frames[index % 8][y : y + CROP, x : x + CROP]
            out[index] = crop.permute(2, 0, 1).float().div_(255).sub_(mean).div_(std)

    jobs = {
        "gpuimage": lambda: gpuimage.normalize_batch(images, MEAN, STD, rois=rois, out=out),
        "torch loop": torch_loop,
    }
    nbytes = CROPS * CROP * CROP * 3 * (1 + 4)
    rows = []
    for library, op in jobs.items():
        op()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            op()
        torch.cuda.synchronize()
        wall_us = (time.perf_counter() - start) / repeats * 1e6
        rows.append(
            Row(f"batch {CROPS}x{CROP}x{CROP} from 1080p", library, nbytes / wall_us / 1e3, wall_us, wall_us)
        )
    return rows


def verdicts(rows: list[Row]) -> list[dict[str, Any]]:
    """Ratios and targets: 4K at >= 85% of the copy, uint8 >= 2x torch, the batch >= 3x torch."""
    by_case: dict[str, dict[str, Row]] = {}
    for row in rows:
        by_case.setdefault(row.case, {})[row.library] = row
    results = []
    for case, libraries in by_case.items():
        ours = libraries["gpuimage"]
        for library, other in libraries.items():
            if library == "gpuimage":
                continue
            if library == "copy":
                ratio, target = ours.gbps / other.gbps, COPY_TARGET if case.startswith("4K") else None
            else:
                ratio = other.device_us / ours.device_us  # speed-up over the alternative
                target = (
                    BATCH_TARGET
                    if case.startswith("batch")
                    else (TORCH_TARGET if library == "torch" and "uint8" in case else None)
                )
            results.append(
                {
                    "case": case,
                    "against": library,
                    "gpuimage_gbps": round(ours.gbps, 1),
                    "other_gbps": round(other.gbps, 1),
                    "ratio": round(ratio, 3),
                    "target": target,
                    "passed": None if target is None else ratio >= target,
                }
            )
    return results


def report(rows: list[Row], checks: list[dict[str, Any]]) -> None:
    print(f"{'case':44} {'library':11} {'GB/s':>8} {'GPU us':>9} {'host us':>9}")
    for row in rows:
        print(f"{row.case:44} {row.library:11} {row.gbps:8.1f} {row.device_us:9.1f} {row.host_us:9.1f}")
    print()
    print(f"{'case':44} {'gpuimage vs':11} {'ratio':>7} {'target':>7}  verdict")
    for check in checks:
        target = "" if check["target"] is None else f">={check['target']}"
        verdict = "" if check["passed"] is None else ("PASS" if check["passed"] else "FAIL")
        print(f"{check['case']:44} {check['against']:11} {check['ratio']:7.2f} {target:>7}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "conversions.py", argv)
    if args is None:
        return 0
    repeats = 5 if args.quick else 50
    print(json.dumps(header()))
    rows: list[Row] = []
    for size in SIZES:
        for dtype in ("uint8", "float32"):
            rows += layout_cases(size, dtype, repeats)
    rows += batch_case(repeats)
    checks = verdicts(rows)
    report(rows, checks)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"header": header(), "rows": [asdict(row) for row in rows], "checks": checks}, indent=2
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
