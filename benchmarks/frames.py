"""Issue 13: decoded video frames into a model's input batch, gpuimage beside CV-CUDA and torch.

Usage: ``python benchmarks/frames.py [--quick] [--json PATH]`` on a machine with a CUDA GPU.
CV-CUDA (``import cvcuda``, 0.19) is optional: without it (or where a route raises) its rows say
why and are not judged. Each row is skipped on its own: one library's failure never stops the rest.

Case 1, per frame: a 1080p NV12 frame (one ``(1620, 1920)`` uint8 tensor, as decoders export it,
codes inside the nominal range) -> 8 fixed regions (``_frames_routes.person_rois``: 100 to 600
pixels tall, half at odd offsets) -> 224x224 bilinear (OpenCV ``INTER_LINEAR``) -> ``(x - mean) /
std`` (ImageNet) -> one ``(8, 3, 224, 224)`` float32 batch. One row per route:

- gpuimage: ``prepared([frame] * 8)`` where ``prepared = PreparedBatch(MEAN, STD, rois=...,
  size=(224, 224), resize="bilinear", out=batch)`` (the per-frame loop's API: the arguments are
  checked once, each call checks the frame and launches once); ``normalize_batch([frame] * 8, MEAN,
  STD, rois=..., size=(224, 224), resize="bilinear", out=batch)`` (one launch), both over a
  ``GpuFrame.from_dlpack(nv12, format="NV12", colour=ColorSpec(BT709, LIMITED))`` made once before
  the clock; ``normalize_batch`` without ``out=`` (returns a new torch tensor); and ``from_dlpack``
  + ``normalize_batch(out=)`` per frame (the wrap of a new decoded frame timed too: shown, not
  judged). Frames are imported with ``stream=`` torch's current stream (asked for once, as a
  decoder's stream is one object), so that gpuimage queues on the stream the others use.
- torch: plane arithmetic (BT.709 limited, chroma nearest-upsampled) over the whole frame, then per
  region ``F.interpolate(bilinear, align_corners=False, antialias=False)``, ``cat`` and an in-place
  normalize (``_frames_routes.TorchRoute``).
- CV-CUDA: ``_frames_routes.ROUTES`` (``cvtcolor`` NV12 -> RGB8, then its resize, convert,
  normalize and reformat operators; all buffers preallocated and wrapped once, before the clock).

Each output is checked once, outside the clock, as the max |difference| in normalized units:
gpuimage's and torch's against torch's BT.709 batch (within ``FLOAT_TOLERANCE``); CV-CUDA's,
whose ``cvtcolor`` can only do BT.601 limited range through 8-bit RGB, against torch's batch in
the colour it matches best (within ``CVCUDA_TOLERANCE``: a few 8-bit codes), and against
gpuimage's batch of a BT.601 limited frame (shown). A route off its reference is not judged. torch
and CV-CUDA run before gpuimage, so that a fault in the library under test cannot spoil them.

Case 2: a 4K NV12 frame -> whole RGB CHW float32 in [0, 1]: ``gpuimage.normalize(frame, 0, 1)``
and ``frame.to_image(layout="CHW", dtype="float32")`` (torch's ``rgb()`` beside them); achieved
GB/s = (NV12 bytes read + float32 bytes written) / GPU time, against a device-to-device
``Tensor.copy_`` of 256 MiB measured in the same run (read + write bytes / GPU time).

Columns: **wall us** (the headline) is wall clock per frame: N frames' work queued back to back,
then one synchronize, median of repetitions taken with a case's rows in turn (p10-p90 beside
it); **GPU us** is GPU time per frame from CUDA events around calls queued behind a sleep kernel
(``_timing.py``). All libraries run on one stream: a CV-CUDA stream that is torch's current one
(as CV-CUDA's samples do), or a torch side stream without CV-CUDA. Targets: gpuimage's wall per
frame (its faster judged row) <= 0.5 x CV-CUDA's fastest matching route's (at least 2x faster);
4K conversion >= 0.85 of the copy bandwidth. Beside them, shown only: gpuimage / torch, GPU-time
ratios, the per-frame-wrap row.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from _common import (
    describe,
    header,
    measure_in_turn,
    module_version,
    optional_module,
    parse_args,
    print_checks,
    ratio_check,
    shared_stream,
    write_json,
)
from _frames_routes import (
    MEAN,
    ROUTES,
    STD,
    Op,
    Roi,
    TorchRoute,
    as_tensor,
    cvcuda_routes,
    max_abs_diff,
    nv12_frame,
    person_rois,
)
from _timing import Loop, Spread, gpu_per_call, wall_per_call

import gpuimage

# The frame API is typed by its own modules (being written beside this script): it is called here
# exactly as documented, through an untyped handle so that the script type-checks either way.
GPUIMAGE: Any = gpuimage
SLOT = (224, 224)  # (height, width) of each batch item
FRAMES = {"1080p": (1080, 1920), "4K": (2160, 3840)}  # (height, width) of each case's frame
DEVICE = "cuda"  # where the frames are made (tests/test_benchmarks_frames.py runs the script on "cpu")
QUICK, FULL = Loop(calls=200, repeats=5, warmup=30, gpu_calls=50), Loop(300, 7, 30, 100)
SPEED_TARGET, BANDWIDTH_TARGET = 0.5, 0.85
FLOAT_TOLERANCE = 1e-3  # float32 routes of one recipe: rounding only
CVCUDA_TOLERANCE = 3 / 255 / min(STD)  # 8-bit RGB and fixed-point BT.601: within ~3 codes
COPY_BYTES = 256 << 20
COLOURS = {  # torch's references, each named "torch <colour>" (CV-CUDA's cvtcolor fixes its colour)
    "torch BT.709 limited": ("BT709", "LIMITED"),
    "torch BT.601 limited": ("BT601", "LIMITED"),
    "torch BT.601 full": ("BT601", "FULL"),
}


@dataclass
class Row:
    """One route of one case: how it was built, checked and timed."""

    case: str
    library: str
    call: str
    op: Op | None = None
    judged: bool = True  # may be the library's headline figure
    note: str = ""  # why it did not run, or how its output is off
    diffs: dict[str, float] = field(default_factory=dict)  # max |diff| against each reference
    wall: Spread | None = None
    gpu: float | str | None = None

    @property
    def us(self) -> float | None:
        """Wall microseconds per frame, where it ran and matched its reference."""
        return self.wall.median_us if self.wall is not None and not self.note else None

    @property
    def gpu_us(self) -> float | None:
        return self.gpu if isinstance(self.gpu, float) and not self.note else None


def build(case: str, library: str, call: str, make: Callable[[], Op] | None, missing: str = "") -> Row:
    """A row whose op ``make`` builds (outside the clock); a failure becomes its note."""
    row = Row(case, library, call)
    if make is None:
        row.note = f"n/a: {missing}"
        return row
    try:
        row.op = make()
    except Exception as exc:
        row.note = f"setup failed: {describe(exc)}"
    return row


def check(row: Row, references: dict[str, torch.Tensor], tolerance: float) -> None:
    """Compare the row's output with each reference; off all of them, the row gets a note."""
    assert row.op is not None
    output = as_tensor(row.op())
    row.diffs = {name: max_abs_diff(output, reference) for name, reference in references.items()}
    matched = {name: diff for name, diff in row.diffs.items() if name.startswith("torch ")}
    best = min(matched, key=lambda name: matched[name])
    if matched[best] > tolerance:
        row.note = f"WRONG OUTPUT: max |diff| {matched[best]:.2e} > {tolerance:.0e} (closest: {best})"


def row_line(row: Row | None) -> str:
    """One printed line per row (``None``: the header)."""
    if row is None:
        names = f"{'case':10} {'library':8} {'call':50} {'wall us':>8} {'p10-p90':>13} {'GPU us':>8}"
        return f"{names}  diffs / note"
    wall, gpu = row.wall, row.gpu if isinstance(row.gpu, float) else None
    cells = (
        "" if wall is None else f"{wall.median_us:.1f}",
        "" if wall is None else f"{wall.p10_us:.1f}-{wall.p90_us:.1f}",
        "" if gpu is None else f"{gpu:.1f}",
    )
    diffs = ", ".join(f"{name} {diff:.1e}" for name, diff in row.diffs.items())
    extra = "; ".join(text for text in (diffs, row.note, row.gpu if isinstance(row.gpu, str) else "") if text)
    line = f"{row.case:10} {row.library:8} {row.call:50} {cells[0]:>8} {cells[1]:>13} {cells[2]:>8}"
    return f"{line}  {extra}".rstrip()


def fastest(rows: list[Row], library: str) -> Row | None:
    """The library's fastest judged row that ran and matched its reference."""
    ran = [row for row in rows if row.library == library and row.judged and row.us is not None]
    return min(ran, key=lambda row: row.us or 0.0, default=None)


def frame_checks(rows: list[Row], cv_missing: str) -> list[dict[str, Any]]:
    """Case 1's checks: the bar against CV-CUDA, the rest shown only."""
    case = "1080p NV12 -> 8 ROIs -> 224x224 batch"
    ours, cv, torch_row = (fastest(rows, library) for library in ("gpuimage", "CV-CUDA", "torch"))
    label = (cv_missing or "CV-CUDA: no route ran and matched") if cv is None else f"CV-CUDA {cv.call}"
    ours_us = None if ours is None else ours.us
    checks = [ratio_check(f"{case}, wall/frame", ours_us, None if cv is None else cv.us, label, SPEED_TARGET)]
    if torch_row is not None:
        theirs = torch_row.us
        checks.append(ratio_check(f"{case}, wall/frame", ours_us, theirs, f"torch {torch_row.call}", None))
    for other, name in ((cv, "CV-CUDA"), (torch_row, "torch")):
        if other is not None:
            gpu = None if ours is None else ours.gpu_us
            checks.append(ratio_check(f"{case}, GPU/frame", gpu, other.gpu_us, f"{name} {other.call}", None))
    wrapped = [row for row in rows if row.library == "gpuimage" and not row.judged and row.us is not None]
    if wrapped and cv is not None:
        call = f"{case}, wall/frame with from_dlpack per frame"
        checks.append(ratio_check(call, wrapped[0].us, cv.us, label, None))
    return checks


def bandwidth_check(case: str, gbps: float | None, copy_gbps: float | None) -> dict[str, Any]:
    """``gbps / copy_gbps >= BANDWIDTH_TARGET`` (FAIL without gpuimage's figure; info without the copy's)."""
    ratio = None if gbps is None or not copy_gbps else gbps / copy_gbps
    return {
        "case": case,
        "gpuimage": "n/a" if gbps is None else f"{gbps:.0f} GB/s",
        "alternative": f"{'n/a' if copy_gbps is None else f'{copy_gbps:.0f} GB/s'} (device-to-device copy_)",
        "ratio": "" if ratio is None else f"{ratio:.2f}",
        "target": f">= {BANDWIDTH_TARGET}",
        "passed": False if gbps is None else None if ratio is None else ratio >= BANDWIDTH_TARGET,
    }


def spec(matrix: str, colour_range: str) -> Any:
    return GPUIMAGE.ColorSpec(matrix=matrix, range=colour_range)


def _current_stream() -> object:
    """torch's current stream, where the other libraries queue (None without CUDA: stand-in runs)."""
    try:
        return torch.cuda.current_stream()
    except (AssertionError, RuntimeError):  # a CPU build of torch
        return None


def compare_with_gpuimage(rows: list[Row], nv12: torch.Tensor, rois: list[Roi]) -> None:
    """Print each CV-CUDA route's max |diff| against gpuimage's batch of the frame as BT.601 limited
    (the colour CV-CUDA's cvtcolor computes). Run last: a gpuimage failure cannot spoil the rest."""
    try:
        frame = GPUIMAGE.GpuFrame.from_dlpack(
            nv12, format="NV12", colour=spec("BT601", "LIMITED"), stream=_current_stream()
        )
        kwargs = {"rois": rois, "size": SLOT, "resize": "bilinear"}
        ours = as_tensor(GPUIMAGE.normalize_batch([frame] * len(rois), MEAN, STD, **kwargs)).clone()
    except Exception as exc:
        print(f"CV-CUDA vs gpuimage (BT.601 limited): no gpuimage batch ({describe(exc)})")
        return
    for row in rows:
        if row.library == "CV-CUDA" and row.op is not None:
            try:
                diff = max_abs_diff(row.op(), ours)
            except Exception as exc:
                print(f"CV-CUDA {row.call}: no comparison with gpuimage ({describe(exc)})", flush=True)
                continue
            row.diffs["gpuimage BT.601 limited"] = diff
            print(
                f"CV-CUDA {row.call}: max |diff| {diff:.2e} against gpuimage's BT.601 limited batch",
                flush=True,
            )


def frame_rows(cv: Any, missing: str, loop: Loop) -> tuple[list[Row], str]:
    """Case 1: every route, checked and timed, printed as it goes (a crash keeps what was printed).

    torch and CV-CUDA run first, gpuimage last: a fault in the library under test cannot take the
    baselines with it. Returns the rows and why CV-CUDA is missing ("" where it ran).
    """
    (height, width), device = FRAMES["1080p"], DEVICE
    nv12, rois = nv12_frame(height, width, seed=13, device=device), person_rois(width, height)
    torch_routes = {name: TorchRoute(nv12, spec(*colour), rois, SLOT) for name, colour in COLOURS.items()}
    references = {name: route.run() for name, route in torch_routes.items()}
    ours_ref = {"torch BT.709 limited": references["torch BT.709 limited"]}
    out = torch.empty((len(rois), 3, *SLOT), dtype=torch.float32, device=device)
    items, options = len(rois), {"rois": rois, "size": SLOT, "resize": "bilinear"}

    decoder_stream = _current_stream()  # a decoder's stream is one object, not asked for per frame

    def wrap() -> Any:
        return GPUIMAGE.GpuFrame.from_dlpack(
            nv12, format="NV12", colour=spec("BT709", "LIMITED"), stream=decoder_stream
        )

    def batch_op(with_out: bool) -> Op:
        frame, kwargs = wrap(), {**options, "out": out} if with_out else options
        return lambda: GPUIMAGE.normalize_batch([frame] * items, MEAN, STD, **kwargs)

    def per_frame_op() -> Op:
        return lambda: GPUIMAGE.normalize_batch([wrap()] * items, MEAN, STD, **options, out=out)

    def prepared_op() -> Op:
        frame, prepared = wrap(), GPUIMAGE.PreparedBatch(MEAN, STD, **options, out=out)
        return lambda: prepared([frame] * items)

    routes, missing = cvcuda_routes(cv, nv12, rois, SLOT, missing)
    torch_op = torch_routes["torch BT.709 limited"].run
    rows = [build("1080p", "torch", "planes + interpolate x 8 + cat + normalize", lambda: torch_op)]
    for name, method in ROUTES.items():
        make = None if routes is None else functools.partial(method, routes)
        rows.append(build("1080p", "CV-CUDA", name, make, missing))
    rows += [
        build("1080p", "gpuimage", "PreparedBatch(out=)(frames), frame made once", prepared_op),
        build("1080p", "gpuimage", "normalize_batch(out=), frame made once", lambda: batch_op(True)),
        build("1080p", "gpuimage", "normalize_batch (new tensor), frame made once", lambda: batch_op(False)),
        build("1080p", "gpuimage", "from_dlpack + normalize_batch(out=) per frame", per_frame_op),
    ]
    rows[-1].judged = False

    def checks(row: Row) -> None:
        is_cv = row.library == "CV-CUDA"
        check(row, *((references, CVCUDA_TOLERANCE) if is_cv else (ours_ref, FLOAT_TOLERANCE)))

    measure_in_turn(rows, checks, loop)
    for row in rows:
        print(row_line(row), flush=True)
    compare_with_gpuimage(rows, nv12, rois)
    return rows, missing


def copy_gbps(loop: Loop) -> float | None:
    """Device-to-device ``copy_`` bandwidth, read + write bytes over GPU time."""
    source = torch.empty(COPY_BYTES // 4, dtype=torch.float32, device=DEVICE)
    target = torch.empty_like(source)
    op = lambda: target.copy_(source)  # noqa: E731
    wall = wall_per_call(op, loop)
    gpu = gpu_per_call(op, loop, wall.median_us)
    return 2 * COPY_BYTES / gpu / 1e3 if isinstance(gpu, float) else None


def bandwidth_rows(loop: Loop) -> tuple[list[Row], dict[str, Any]]:
    """Case 2: the whole 4K frame to RGB CHW float32, and the copy bandwidth beside it."""
    height, width = FRAMES["4K"]
    nv12 = nv12_frame(height, width, seed=4, device=DEVICE)
    torch_route = TorchRoute(nv12, spec("BT709", "LIMITED"), [], SLOT)
    reference = {"torch BT.709 limited": torch_route.rgb()}
    nbytes = height * width * 3 // 2 + 3 * height * width * 4

    def frame() -> Any:
        return GPUIMAGE.GpuFrame.from_dlpack(
            nv12, format="NV12", colour=spec("BT709", "LIMITED"), stream=_current_stream()
        )

    def normalize() -> Op:
        made = frame()
        return lambda: GPUIMAGE.normalize(made, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    def to_image() -> Op:
        made = frame()
        return lambda: made.to_image(layout="CHW", dtype="float32")

    copy = None  # measured first, as the torch row: before the library under test runs
    with contextlib.suppress(Exception):
        copy = copy_gbps(loop)
    rows = [
        build("4K", "torch", "planes -> RGB CHW float32", lambda: torch_route.rgb),
        build("4K", "gpuimage", "normalize(frame, 0, 1)", normalize),
        build("4K", "gpuimage", 'frame.to_image(layout="CHW", dtype="float32")', to_image),
    ]
    measure_in_turn(rows, lambda each: check(each, reference, 1e-4), loop)
    for row in rows:
        print(row_line(row), flush=True)
    best = min((row.gpu_us for row in rows if row.library == "gpuimage" and row.gpu_us), default=None)
    gbps = None if best is None else nbytes / best / 1e3
    figures = {"bytes_per_frame": nbytes, "gpuimage_gbps": gbps, "copy_gbps": copy, "copy_bytes": COPY_BYTES}
    shown = ("n/a" if value is None else f"{value:.0f} GB/s" for value in (gbps, copy))
    print("4K: gpuimage {}, device-to-device copy {}".format(*shown), flush=True)
    return rows, figures


def timings(rows: list[Row]) -> dict[str, dict[str, Any]]:
    """Every row's figures for the JSON (``median_us`` only where it ran: the runner reads it)."""
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry: dict[str, Any] = {"note": row.note} if row.note else {}
        if row.wall is not None:
            entry |= {"median_us": row.wall.median_us, "p10_us": row.wall.p10_us, "p90_us": row.wall.p90_us}
        entry |= {"gpu_us": row.gpu} if row.gpu is not None else {}
        diffs = {name: None if diff == float("inf") else diff for name, diff in row.diffs.items()}
        entry |= {"max_abs_diff": diffs} if diffs else {}  # None: a shape or a value off (JSON has no inf)
        table[f"{row.case} | {row.library} {row.call}"] = entry
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "frames.py", argv)
    if args is None:
        return 0
    loop = QUICK if args.quick else FULL
    cv, missing = optional_module("cvcuda")
    info = header() | {"cvcuda": module_version(cv) if cv is not None else missing}
    stream, cv_stream, where = shared_stream(cv)
    notes = [f"all libraries run on {where}", str(loop), *([missing] if missing else [])]
    print(json.dumps(info), *notes, "", row_line(None), sep="\n")
    with contextlib.ExitStack() as scope:
        scope.enter_context(torch.cuda.stream(stream))
        if cv_stream is not None:
            scope.enter_context(cv_stream)
        rows, missing = frame_rows(cv, missing, loop)
        try:
            rows_4k, figures = bandwidth_rows(loop)
        except Exception as exc:  # its setup (a CUDA fault left by an earlier row): report, go on
            print(f"4K case not run: {describe(exc)}", flush=True)
            rows_4k, figures = [], {"gpuimage_gbps": None, "copy_gbps": None, "error": describe(exc)}
        with contextlib.suppress(Exception):
            torch.cuda.synchronize()
    checks = frame_checks(rows, missing)
    case = "4K NV12 -> RGB CHW float32, GB/s vs copy"
    checks.append(bandwidth_check(case, figures["gpuimage_gbps"], figures["copy_gbps"]))
    print()
    print_checks(checks)
    config = {name: getattr(loop, name) for name in ("calls", "repeats", "warmup", "gpu_calls")}
    results = {
        "header": info,
        "config": config,
        "notes": notes,
        "timings": timings(rows + rows_4k),
        "bandwidth": figures,
        "checks": checks,
    }
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
