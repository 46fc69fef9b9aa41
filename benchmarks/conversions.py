"""What a user's per-frame loop pays for a conversion: gpuimage beside torch and CV-CUDA, in one run.

Usage: ``python benchmarks/conversions.py [--quick] [--json PATH]`` on a machine with a CUDA GPU.
CV-CUDA (``import cvcuda``, 0.19) is optional: without it its columns say why and are not judged.

Cases, on 1080p and 4K uint8 frames (each variant's output is checked once against torch's):

- HWC->CHW: ``image.to_layout("CHW")`` | ``t.permute(2, 0, 1).contiguous()`` |
  ``cvcuda.reformat(src, "NCHW")``.
- pitched->packed, a ROI 64 pixels into a frame 128 pixels wider: ``image.contiguous()`` |
  ``roi.contiguous()`` | ``cvcuda.reformat(src, "NHWC")`` (same layout: one cudaMemcpy2DAsync).
- normalize to float32 CHW, ``(x / 255 - mean[c]) / std[c]``: ``gpuimage.normalize`` | torch in 4
  ops (``permute().to(float32, contiguous_format).div_(255).sub_(mean).div_(std)``) | CV-CUDA
  ``convertto`` + ``normalize`` + ``reformat`` (its samples' route), and its fused
  ``crop_flip_normalize_reformat`` over a var-shape batch of one. ``convertto`` + ``reformat``
  with one scale and offset for all channels (not the same output; issue 12's anchor) is shown,
  not judged.

Each case runs without ``out=`` (every call allocates its result, as user code does) and with it
(preallocated outputs: gpuimage's ``out=``, torch's ``copy_`` / ``out=``, CV-CUDA's ``*_into``).
gpuimage's ``out=`` is used where ``inspect.signature`` shows one; elsewhere the row says n/a.

Timing: see ``_timing.py``. The headline is wall clock per call, N calls queued then one
synchronize (median of repetitions, a case's variants sampled in turn); GPU-only time goes beside
it. Inputs are wrapped once before
the loop (gpuimage images; CV-CUDA tensors, with a batch dimension as in CV-CUDA's samples). All
three libraries run on one stream: a CV-CUDA stream that is also torch's current stream (as
CV-CUDA's samples do), or a torch side stream without CV-CUDA. GB/s counts bytes read plus
written over GPU time. The torch and CV-CUDA columns are each library's fastest route that gives
the same output.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from _common import (
    describe,
    header,
    measure_in_turn,
    micros,
    module_version,
    optional_module,
    parse_args,
    print_checks,
    ratio_check,
    shared_stream,
    write_json,
)
from _cvcuda_ops import Routes
from _timing import Loop, Spread

import gpuimage
from gpuimage import GpuImage

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZES = {"1080p": (1080, 1920), "4K": (2160, 3840)}
QUICK, FULL = Loop(calls=200, repeats=5, warmup=50, gpu_calls=50), Loop(1000, 7, 100, 100)
LIBRARIES = ("gpuimage", "torch", "CV-CUDA")
# Issue 12's bars: gpuimage / alternative per call <= limit, by (size, out=); None: shown only.
LIMITS: dict[tuple[str, bool], dict[str, float | None]] = {
    ("1080p", False): {"torch": 1.0, "CV-CUDA": 1.5},
    ("1080p", True): {"torch": None, "CV-CUDA": 1.0},
    ("4K", False): {"torch": None, "CV-CUDA": 0.8},
    ("4K", True): {"torch": None, "CV-CUDA": 0.8},
}
Op = Callable[[], object]


class UnavailableError(Exception):
    """A variant this version of a library cannot run: shown as n/a, not as an error."""


@dataclass
class Variant:
    library: str
    call: str  # short name of what it runs (the module docstring gives the calls in full)
    into: bool  # writes into a preallocated output
    op: Op | None
    note: str = ""  # why it did not run, or how its output differs
    exact: bool = True  # must give torch's output (checked); False: shown only
    wall: Spread | None = None
    gpu: float | str | None = None  # GPU microseconds per call, or why there is no figure

    @property
    def us(self) -> float | None:
        """Wall microseconds per call, where it ran and gave the same output as torch."""
        return self.wall.median_us if self.wall is not None and self.exact and not self.note else None

    @property
    def gpu_us(self) -> float | None:
        return self.gpu if isinstance(self.gpu, float) else None


@dataclass
class Case:
    name: str
    size: str
    reference: torch.Tensor  # torch's output
    nbytes: int  # bytes one call reads plus writes
    variants: list[Variant] = field(default_factory=list)

    def add(self, library: str, call: str, into: bool, build: Callable[[], Op] | None, **how: Any) -> None:
        """Add a variant; ``build`` (None: the library is missing) makes its op. Never raises."""
        variant = Variant(library, call, into, None, **how)
        if build is None:
            variant.note = "n/a: cvcuda is not importable"
        else:
            try:
                variant.op = build()
            except UnavailableError as exc:
                variant.note = f"n/a: {exc}"
            except Exception as exc:
                variant.note = f"setup failed: {describe(exc)}"
        self.variants.append(variant)


def route(routes: Routes | None, builder: Callable[[Routes], Op]) -> Callable[[], Op] | None:
    """A CV-CUDA route's builder, or None where CV-CUDA is missing."""
    return None if routes is None else functools.partial(builder, routes)


def with_out(*methods: Callable[..., object], name: str) -> Callable[..., object]:
    """The first of ``methods`` that takes ``out=``."""
    for method in methods:
        with contextlib.suppress(TypeError, ValueError):
            if "out" in inspect.signature(method).parameters:
                return method
    raise UnavailableError(f"{name} takes no out=")


def layout_case(size: str, hwc: torch.Tensor, routes: Routes | None) -> Case:
    reference = hwc.permute(2, 0, 1).contiguous()
    case, chw = Case(f"{size} uint8 HWC->CHW", size, reference, 2 * hwc.numel()), torch.empty_like(reference)

    def ours(into: bool) -> Op:
        image = GpuImage.from_torch(hwc, layout="HWC")
        if not into:
            return lambda: image.to_layout("CHW")
        method, out = with_out(image.to_layout, name="to_layout()"), GpuImage.from_torch(chw, layout="CHW")
        return lambda: method("CHW", out=out)

    case.add("gpuimage", "to_layout", False, lambda: ours(into=False))
    case.add("gpuimage", "to_layout(out=)", True, lambda: ours(into=True))
    case.add("torch", "permute.contiguous", False, lambda: lambda: hwc.permute(2, 0, 1).contiguous())
    case.add("torch", "copy_(permute)", True, lambda: lambda: chw.copy_(hwc.permute(2, 0, 1)))
    case.add("CV-CUDA", "reformat", False, route(routes, Routes.reformat))
    case.add("CV-CUDA", "reformat_into", True, route(routes, Routes.reformat_into))
    return case


def packing_case(size: str, roi: torch.Tensor, routes: Routes | None) -> Case:
    reference = roi.contiguous()
    case = Case(f"{size} uint8 pitched->packed", size, reference, 2 * roi.numel())
    packed = torch.empty_like(reference)

    def ours(into: bool) -> Op:
        image = GpuImage.from_torch(roi, layout="HWC")
        if not into:
            return image.contiguous
        method = with_out(image.contiguous, image.copy, name="contiguous() and copy()")
        out = GpuImage.from_torch(packed, layout="HWC")
        return lambda: method(out=out)

    case.add("gpuimage", "contiguous", False, lambda: ours(into=False))
    case.add("gpuimage", "contiguous(out=)", True, lambda: ours(into=True))
    case.add("torch", "contiguous", False, lambda: roi.contiguous)
    case.add("torch", "copy_", True, lambda: lambda: packed.copy_(roi))
    case.add("CV-CUDA", "reformat (same layout)", False, route(routes, Routes.copy))
    case.add("CV-CUDA", "reformat_into (same layout)", True, route(routes, Routes.copy_into))
    return case


def normalize_case(size: str, hwc: torch.Tensor, routes: Routes | None) -> Case:
    mean, std = (torch.tensor(values, device="cuda").view(3, 1, 1) for values in (MEAN, STD))
    planar, mean255, std255 = hwc.permute(2, 0, 1), mean * 255, std * 255
    reference = ((planar.float() / 255 - mean) / std).contiguous()
    case = Case(f"{size} uint8 -> float32 CHW normalize", size, reference, 5 * hwc.numel())
    out = torch.empty_like(reference)

    def ours(into: bool) -> Op:
        image = GpuImage.from_torch(hwc, layout="HWC")
        if not into:
            return lambda: gpuimage.normalize(image, MEAN, STD)
        out_image = GpuImage.from_torch(out, layout="CHW")
        return lambda: gpuimage.normalize(image, MEAN, STD, out=out_image)

    def torch_ops() -> object:  # 4 kernels, the last three in place
        return planar.to(torch.float32, memory_format=torch.contiguous_format).div_(255).sub_(mean).div_(std)

    def torch_into() -> object:  # 2 kernels: (x - 255 mean) / (255 std)
        return torch.sub(planar, mean255, out=out).div_(std255)

    case.add("gpuimage", "normalize", False, lambda: ours(into=False))
    case.add("gpuimage", "normalize(out=)", True, lambda: ours(into=True))
    case.add("torch", "4 ops", False, lambda: torch_ops)
    case.add("torch", "sub(out=).div_", True, lambda: torch_into)
    case.add("CV-CUDA", "convertto+normalize+reformat", False, route(routes, Routes.three_ops))
    case.add("CV-CUDA", "*_into of the same 3", True, route(routes, Routes.three_ops_into))
    case.add("CV-CUDA", "crop_flip_normalize_reformat", False, route(routes, Routes.fused))
    case.add("CV-CUDA", "crop_flip_normalize_reformat_into", True, route(routes, Routes.fused_into))
    uniform = {
        "exact": False,
        "note": "not judged: one scale and offset for all channels (issue 12's anchor)",
    }
    case.add("CV-CUDA", "convertto+reformat", False, route(routes, Routes.uniform), **uniform)
    case.add("CV-CUDA", "convertto_into+reformat_into", True, route(routes, Routes.uniform_into), **uniform)
    return case


def as_tensor(output: object) -> torch.Tensor:
    """A variant's output as a torch tensor (a tensor, a GpuImage, or a CV-CUDA tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, GpuImage):
        return output.as_torch()
    cuda_view = getattr(output, "cuda", None)  # nvcv.Tensor.cuda(): its __cuda_array_interface__
    return torch.as_tensor(cuda_view() if callable(cuda_view) else output, device="cuda")


def mismatch(output: object, reference: torch.Tensor) -> str:
    """How ``output`` differs from torch's ``reference`` ("" where it does not)."""
    tensor = as_tensor(output)
    if tensor.numel() != reference.numel() or tensor.dtype != reference.dtype:
        return f"WRONG OUTPUT: {tuple(tensor.shape)} {tensor.dtype}, expected {tuple(reference.shape)}"
    tensor = tensor.reshape(reference.shape)
    if reference.is_floating_point():
        diff = float((tensor - reference).abs().max())
        return "" if diff <= 1e-4 else f"WRONG OUTPUT: max |diff| {diff:.2e} from torch's"
    return "" if torch.equal(tensor, reference) else "WRONG OUTPUT: differs from torch's"


def measure(case: Case, loop: Loop) -> None:
    """Check each variant's output against torch's once (where it must match), then time them all."""

    def check(variant: Variant) -> None:
        if variant.exact:
            variant.note = mismatch(cast(Op, variant.op)(), case.reference)

    measure_in_turn(case.variants, check, loop)


def variant_line(case: Case | None, variant: Variant | None) -> str:
    if case is None or variant is None:
        return (
            f"{'case':36} {'library':8} {'call':34} {'wall us':>8} {'p10-p90':>13} {'GPU us':>7} {'GB/s':>5}"
        )
    wall, gpu = variant.wall, variant.gpu_us
    cells = [
        "" if wall is None else f"{wall.median_us:.1f}",
        "" if wall is None else f"{wall.p10_us:.1f}-{wall.p90_us:.1f}",
        "" if gpu is None else f"{gpu:.1f}",
        "" if gpu is None else f"{case.nbytes / gpu / 1e3:.0f}",
    ]
    note = variant.note or (variant.gpu if isinstance(variant.gpu, str) else "")
    line = f"{case.name:36} {variant.library:8} {variant.call:34} {cells[0]:>8} {cells[1]:>13} {cells[2]:>7}"
    return f"{line} {cells[3]:>5}  {note}".rstrip()


def fastest(case: Case, library: str, into: bool) -> Variant | None:
    """The library's fastest variant of this mode that ran and gave the same output as torch."""
    ran = [v for v in case.variants if v.library == library and v.into == into and v.us is not None]
    return min(ran, key=lambda v: v.us or 0.0, default=None)


def judge(cases: list[Case], cv_missing: bool) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """The checks (each bar, and the ratios shown only) and the side-by-side table."""
    checks: list[dict[str, Any]] = []
    lines = [["row", *LIBRARIES, "vs torch", "vs CV-CUDA", "GPU us (ours/torch/cv)", "target", "result"]]
    for case in cases:
        for into in (False, True):
            row = f"{case.name}{', out=' if into else ''}"
            found = {library: fastest(case, library, into) for library in LIBRARIES}
            times = {library: None if v is None else v.us for library, v in found.items()}
            row_checks = []
            for against in ("torch", "CV-CUDA"):
                theirs = found[against]
                label = "cvcuda not importable" if against == "CV-CUDA" and cv_missing else against
                label = label if theirs is None else f"{against} {theirs.call}"
                limit = LIMITS[(case.size, into)][against]
                row_checks.append(ratio_check(row, times["gpuimage"], times[against], label, limit))
            checks += row_checks
            verdicts = [check["passed"] for check in row_checks if check["passed"] is not None]
            result = "info" if not verdicts else "PASS" if all(verdicts) else "FAIL"
            if found["gpuimage"] is None:  # say why: n/a (no out=), an error, or a wrong output
                ours = [v for v in case.variants if v.library == "gpuimage" and v.into == into]
                result += f" ({ours[0].note})" if ours and ours[0].note else ""
            gpu = "/".join(
                "-" if v is None or v.gpu_us is None else f"{v.gpu_us:.1f}" for v in found.values()
            )
            targets = [
                f"{check['target']} {name}"
                for check, name in zip(row_checks, ("torch", "CV-CUDA"), strict=True)
            ]
            ratios = [check["ratio"] or "-" for check in row_checks]
            times_text = [micros(times[library]) for library in LIBRARIES]
            lines.append(
                [row, *times_text, *ratios, gpu, ", ".join(t for t in targets if t[0] == "<"), result]
            )
    return checks, lines


def print_lines(lines: list[list[str]]) -> None:
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    for line in lines:
        cells = (
            c.rjust(w) if 0 < i < 7 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        print("  ".join(cells).rstrip())


def run_cases(cv: Any, loop: Loop) -> list[Case]:
    """Every case at every size, measured and printed as it goes (a crash keeps what was printed)."""
    cases: list[Case] = []
    print(variant_line(None, None))
    for size, (height, width) in SIZES.items():
        hwc = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, device="cuda")
        wide = torch.randint(0, 256, (height, width + 128, 3), dtype=torch.uint8, device="cuda")
        roi = wide[:, 64 : 64 + width]  # rows pitched: the wider frame's stride
        mean, std = (torch.tensor(values, device="cuda") for values in (MEAN, STD))
        routes = None if cv is None else Routes(cv, hwc, roi, mean, std)
        for case in (
            layout_case(size, hwc, routes),
            packing_case(size, roi, routes),
            normalize_case(size, hwc, routes),
        ):
            measure(case, loop)
            for variant in case.variants:
                print(variant_line(case, variant), flush=True)
            cases.append(case)
    return cases


def timings(cases: list[Case]) -> dict[str, dict[str, Any]]:
    """Every variant's figures for the JSON (``median_us`` only where it ran: the runner reads it;
    ``into``: the call writes into a preallocated output, as ``chart.py`` reads it)."""
    table: dict[str, dict[str, Any]] = {}
    for case in cases:
        for v in case.variants:
            entry: dict[str, Any] = {"into": v.into} | ({"note": v.note} if v.note else {})
            if v.wall is not None:
                entry |= {"median_us": v.wall.median_us, "p10_us": v.wall.p10_us, "p90_us": v.wall.p90_us}
            entry |= {"gpu_us": v.gpu} if v.gpu is not None else {}
            table[f"{case.name} | {v.library} {v.call}"] = entry
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "conversions.py", argv)
    if args is None:
        return 0
    loop = QUICK if args.quick else FULL
    cv, missing = optional_module("cvcuda")
    info = header() | {"cvcuda": module_version(cv) if cv is not None else missing}
    stream, cv_stream, where = shared_stream(cv)
    notes = [f"all libraries run on {where}", str(loop), *([missing] if missing else [])]
    print(json.dumps(info), *notes, "", sep="\n")
    with contextlib.ExitStack() as scope:
        scope.enter_context(torch.cuda.stream(stream))
        if cv_stream is not None:
            scope.enter_context(cv_stream)
        cases = run_cases(cv, loop)
        torch.cuda.synchronize()
    checks, lines = judge(cases, cv_missing=cv is None)
    print()
    print_lines(lines)
    print()
    print_checks(checks)
    config = {
        "calls": loop.calls,
        "repeats": loop.repeats,
        "warmup": loop.warmup,
        "gpu_calls": loop.gpu_calls,
    }
    results = {"header": info, "config": config, "notes": notes, "timings": timings(cases), "checks": checks}
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
