"""Cost of gpuimage's stream ordering, and what it buys in a decode -> preprocess -> infer pipeline.

Usage: ``python benchmarks/streams.py [--quick] [--json PATH]`` on a machine with a CUDA GPU.

1. Ordering per view, streams A != B: ``record_write(A)`` (an event recorded on A) +
   ``as_torch(stream=B)`` (B waits for it), minus ``record_write(B)`` + the same view (nothing to
   order), is the ordering overhead. Beside them: the same ordering by hand with torch and CuPy
   events, and gpuimage's ordering at use (event record + wait) for images without a recorded write.
2. 1920x1080x3 uint8 frames: "decode" on A into a ring of buffers, "preprocess" (224x224 crops to
   normalized float CHW) and "infer" (a small conv net) on B, ordered by gpuimage (no host sync per
   frame) or by ``torch.cuda.synchronize()`` per frame. Both must produce equal outputs.
3. Shown, not judged: ``to_layout("CHW")`` per call inside a side stream's context, by where the
   source's data is ready (that stream, the legacy default stream, another stream; a conversion is
   queued where its data is ready), beside torch's ``permute(2, 0, 1).contiguous()`` there.

Timing as in views.py: batches timed with ``time.perf_counter_ns`` after a warm-up batch; per-call
times are batch means, p10/p90 percentiles of them; a pipeline run is a batch of one call that ends
with a device synchronize. Exits 0 whether targets pass or not.
"""

from __future__ import annotations

import faulthandler
import functools
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import cupy
import torch
from _common import header, parse_args

from gpuimage import HWC, GpuImage, runtime

T = TypeVar("T")
HEIGHT, WIDTH, CHANNELS = 1080, 1920, 3
RING = 4  # frame buffers: decode of frame i + 1 overlaps preprocess and infer of frame i
DECODE_PASSES = 8  # smoothing passes of the stand-in decode
CROP, FEATURES = 224, 64  # crop side; the net's outputs per crop
BOXES = tuple((y, x) for y in (100, 756) for x in (0, 565, 1130, 1696))  # 8 crops per frame
OVERHEAD_TARGET_US = 5.0

TORCH_ORDERED, TORCH_SAME = "record_write(A); as_torch(stream=B)", "record_write(B); as_torch(stream=B)"
TORCH_WAITED, TORCH_BY_HAND = (
    "as_torch(stream=B), write on A recorded",
    "torch Event().record(A); B.wait_event",
)
TORCH_REUSED = "the same, one reused torch Event"
CUPY_ORDERED, CUPY_SAME = "record_write(A); as_cupy(stream=B)", "record_write(B); as_cupy(stream=B)"
CUPY_BY_HAND, PRIMITIVE = "cupy Event().record(A); B.wait_event", "gpuimage.runtime().wait(A, B, 0)"
OVERHEAD, ORDERED, SYNCHRONIZED = "(loop overhead: identity)", "gpuimage ordering", "synchronize per frame"
CONVERTED = (
    "to_layout, data ready on the current stream",
    "to_layout, data ready on the legacy default stream",
    "to_layout, data ready on another stream",
    "to_layout(out=), data ready on another stream",
    "torch permute(2, 0, 1).contiguous()",
)
RESULT = {True: "PASS", False: "FAIL", None: "info"}
PAIRS = ((TORCH_ORDERED, TORCH_SAME, TORCH_BY_HAND), (CUPY_ORDERED, CUPY_SAME, CUPY_BY_HAND))


@dataclass(frozen=True)
class Config:
    batch: int  # calls per timed batch of the ordering rows
    batches: int  # timed batches (after one warm-up batch)
    frames: int  # frames per pipeline run
    runs: int  # timed pipeline runs per variant (after one warm-up run)


@dataclass(frozen=True)
class Stats:
    median_us: float
    p10_us: float
    p90_us: float


@dataclass(frozen=True)
class Results:
    info: dict[str, str]
    config: Config
    ordering: dict[str, Stats]  # per call
    conversions: dict[str, Stats]  # per call
    stage_gpu_ms: dict[str, float]
    pipelines: dict[str, Stats]  # per run of config.frames frames
    checks: list[dict[str, Any]]
    all_passed: bool


def measure(op: Callable[[T], object], value: T, batch: int, batches: int) -> Stats:
    """The one timing loop: per-call microseconds of ``op(value)`` over ``batches`` batches.

    Before each batch, outside the clock, the GPU drains what earlier batches queued.
    """
    samples: list[float] = []
    for index in range(batches + 1):
        args = [value] * batch
        torch.cuda.synchronize()
        gc.collect()
        start = time.perf_counter_ns()
        while args:
            op(args.pop())
        elapsed = time.perf_counter_ns() - start
        if index:  # batch 0 warms up caches, lazy imports, events, cuDNN and allocators
            samples.append(elapsed / batch / 1000)
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return Stats(statistics.median(samples), deciles[0], deciles[-1])


def identity(value: object) -> object:
    """The loop-overhead probe: what every row pays for the loop, the pop and one call."""
    return value


def torch_by_hand(event: torch.cuda.Event, streams: tuple[torch.cuda.Stream, torch.cuda.Stream]) -> None:
    event.record(streams[0])
    streams[1].wait_event(event)


def cupy_by_hand(streams: tuple[cupy.cuda.Stream, cupy.cuda.Stream]) -> None:
    event = cupy.cuda.Event(disable_timing=True)  # as torch's events are by default
    event.record(streams[0])
    streams[1].wait_event(event)


def written_on(writer: object, view: Callable[[GpuImage[HWC]], object]) -> Callable[[GpuImage[HWC]], object]:
    """An op that records a write on ``writer`` (so the next view must order again), then views."""

    def op(image: GpuImage[HWC]) -> object:
        image.record_write(writer)
        return view(image)

    return op


def run_ordering(config: Config) -> dict[str, Stats]:
    """Part 1: microseconds per call of each way to order stream B after stream A."""
    tensor = torch.zeros((HEIGHT, WIDTH, CHANNELS), dtype=torch.uint8, device="cuda:0")
    a, b = torch.cuda.Stream(), torch.cuda.Stream()
    ca, cb = cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream(non_blocking=True)
    image = GpuImage.from_torch(tensor, layout="HWC", stream=a)
    cupy_image = GpuImage.from_cupy(cupy.zeros((HEIGHT, WIDTH, CHANNELS), dtype=cupy.uint8), layout="HWC")
    reused = torch.cuda.Event()
    timed = functools.partial(measure, batch=config.batch, batches=config.batches)
    stats = {
        OVERHEAD: timed(identity, image),
        TORCH_ORDERED: timed(written_on(a, lambda i: i.as_torch(stream=b)), image),
        TORCH_SAME: timed(written_on(b, lambda i: i.as_torch(stream=b)), image),
    }
    image.record_write(a)
    stats[TORCH_WAITED] = timed(lambda i: i.as_torch(stream=b), image)  # a wait on the write's event
    stats[TORCH_BY_HAND] = timed(lambda s: torch_by_hand(torch.cuda.Event(), s), (a, b))
    stats[TORCH_REUSED] = timed(lambda s: torch_by_hand(reused, s), (a, b))
    stats[CUPY_ORDERED] = timed(written_on(ca, lambda i: i.as_cupy(stream=cb)), cupy_image)
    stats[CUPY_SAME] = timed(written_on(cb, lambda i: i.as_cupy(stream=cb)), cupy_image)
    stats[CUPY_BY_HAND] = timed(cupy_by_hand, (ca, cb))
    stats[PRIMITIVE] = timed(lambda h: runtime().wait(h[0], h[1], 0), (a.cuda_stream, b.cuda_stream))
    return stats


def run_conversions(config: Config) -> dict[str, Stats]:
    """Part 3: microseconds per conversion inside a side stream's context, by where the data is
    ready. The result of each call is dropped at once (its release is timed too)."""
    tensor = torch.randint(0, 256, (HEIGHT, WIDTH, CHANNELS), dtype=torch.uint8, device="cuda:0")
    side, other = torch.cuda.Stream(), torch.cuda.Stream()
    on_default = GpuImage.from_torch(tensor, layout="HWC", stream=0)  # 0: the legacy default stream
    on_other = GpuImage.from_torch(tensor, layout="HWC", stream=other)
    timed = functools.partial(measure, batch=config.batch, batches=config.batches)
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        here = GpuImage.from_torch(tensor, layout="HWC")
        out = here.to_layout("CHW")

        def planar(image: GpuImage[HWC]) -> object:
            return image.to_layout("CHW")

        return {
            CONVERTED[0]: timed(planar, here),
            CONVERTED[1]: timed(planar, on_default),
            CONVERTED[2]: timed(planar, on_other),
            CONVERTED[3]: timed(lambda image: image.to_layout("CHW", out=out), on_other),
            CONVERTED[4]: timed(lambda t: t.permute(2, 0, 1).contiguous(), tensor),
        }


@dataclass(frozen=True)
class Pipeline:
    decode_stream: torch.cuda.Stream  # A
    infer_stream: torch.cuda.Stream  # B
    sources: tuple[torch.Tensor, ...]  # stand-ins for compressed frames, cycled
    gain: torch.Tensor  # the decode's per-channel color correction
    buffers: tuple[torch.Tensor, ...]  # the ring of decoded frames
    images: tuple[GpuImage[HWC], ...]  # the same buffers, as images
    net: torch.nn.Sequential
    outputs: torch.Tensor  # (frames, crops, FEATURES), written on B


def make_pipeline(frames: int) -> Pipeline:
    """Deterministic inputs and weights, so both variants must produce equal outputs."""
    shape, generator = (HEIGHT, WIDTH, CHANNELS), torch.Generator(device="cuda").manual_seed(0)
    pixels = torch.randint(0, 256, (3, *shape), dtype=torch.uint8, device="cuda", generator=generator)
    sources = tuple(pixels.unbind())
    buffers = tuple(torch.zeros(shape, dtype=torch.uint8, device="cuda") for _ in range(RING))
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for width_in, width_out in ((3, 16), (16, 32), (32, FEATURES)):
        layers += [torch.nn.Conv2d(width_in, width_out, 3, stride=2, padding=1), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).cuda().eval()
    a, b = torch.cuda.Stream(), torch.cuda.Stream()
    images = tuple(GpuImage.from_torch(buffer, layout="HWC", stream=a) for buffer in buffers)
    gain = torch.tensor([0.9, 1.05, 0.8], device="cuda")
    outputs = torch.zeros((frames, len(BOXES), FEATURES), device="cuda")
    torch.cuda.synchronize()
    return Pipeline(a, b, sources, gain, buffers, images, net, outputs)


def decode(pipe: Pipeline, index: int, target: torch.Tensor) -> None:
    """Stage 1, on A: smoothing and a color correction of a source frame into ``target`` (a stand-in
    for a hardware decoder's output stage, a few tenths of a millisecond of GPU)."""
    with torch.cuda.stream(pipe.decode_stream):
        planar = pipe.sources[index % len(pipe.sources)].permute(2, 0, 1).float()[None]
        for _ in range(DECODE_PASSES):
            planar = torch.nn.functional.avg_pool2d(planar, 3, stride=1, padding=1)
        pixels = planar[0].permute(1, 2, 0).mul_(pipe.gain).add_(index % 7).clamp_(0, 255)
        target.copy_(pixels)


def preprocess_and_infer(pipe: Pipeline, index: int, frame: torch.Tensor) -> None:
    """Stages 2 and 3, on B: crops -> normalized float CHW batch -> conv net -> ``outputs[index]``."""
    with torch.cuda.stream(pipe.infer_stream), torch.inference_mode():
        crops = torch.stack([frame[y : y + CROP, x : x + CROP] for y, x in BOXES])
        batch = crops.permute(0, 3, 1, 2).float().div_(255).sub_(0.45).div_(0.225)
        pipe.outputs[index].copy_(pipe.net(batch))


def run_ordered(pipe: Pipeline, frames: int) -> None:
    """gpuimage orders the streams on the GPU; the host waits once, at the end."""
    a, b = pipe.decode_stream, pipe.infer_stream
    for index in range(frames):
        image = pipe.images[index % RING]
        # writing(A) waits for frame index - RING's reads of this buffer (write after read) and
        # records the decode; reading(B) waits for exactly that decode (read after write) and
        # records the reads for the next writer. No host waits, no hand-made events.
        with image.writing(a):
            decode(pipe, index, image.as_torch(stream=a))
        with image.reading(b):
            preprocess_and_infer(pipe, index, image.as_torch(stream=b))
    torch.cuda.synchronize()


def run_synchronized(pipe: Pipeline, frames: int) -> None:
    """The same pipeline ordered by the host, which waits for the whole device once per frame."""
    for index in range(frames):
        frame = pipe.buffers[index % RING]
        decode(pipe, index, frame)
        # Read after write: this frame's decode is done. Write after read: so are all earlier
        # preprocess reads, including those of this buffer's earlier frames.
        torch.cuda.synchronize()
        preprocess_and_infer(pipe, index, frame)
    torch.cuda.synchronize()


def gpu_ms(stream: torch.cuda.Stream, stage: Callable[[], None], repeats: int = 20) -> float:
    """GPU milliseconds per call of ``stage`` alone on ``stream`` (CUDA events, after a warm-up)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    stage()
    start.record(stream)
    for _ in range(repeats):
        stage()
    end.record(stream)
    end.synchronize()
    return float(start.elapsed_time(end)) / repeats


def run_pipelines(config: Config) -> tuple[dict[str, Stats], dict[str, float], float]:
    """Part 2: per-run stats of both variants, GPU ms per stage, the outputs' largest difference."""
    pipe = make_pipeline(config.frames)
    frame = pipe.buffers[0]
    stages = {
        "decode": gpu_ms(pipe.decode_stream, lambda: decode(pipe, 0, frame)),
        "preprocess + infer": gpu_ms(pipe.infer_stream, lambda: preprocess_and_infer(pipe, 0, frame)),
    }
    stats: dict[str, Stats] = {}
    outputs: list[torch.Tensor] = []
    for name, run in ((ORDERED, run_ordered), (SYNCHRONIZED, run_synchronized)):
        pipe.outputs.zero_()
        stats[name] = measure(functools.partial(run, pipe), config.frames, 1, config.runs)
        outputs.append(pipe.outputs.clone())
    return stats, stages, float((outputs[0] - outputs[1]).abs().max())


def row(check: str, value: str, passed: bool | None) -> dict[str, Any]:
    """One line of the checks table; ``passed`` is None for a line shown for information."""
    return {"check": check, "value": value, "passed": passed}


def compare(ops: dict[str, Stats], pipes: dict[str, Stats], max_diff: float) -> list[dict[str, Any]]:
    """Targets and ratios. PAIRS: (ordered, nothing to order, by hand); overhead = first - second."""
    rows: list[dict[str, Any]] = []
    for ordered, same, by_hand in PAIRS:
        overhead = ops[ordered].median_us - ops[same].median_us
        check = f"overhead: ({ordered}) - ({same}) <= {OVERHEAD_TARGET_US:g} us"
        rows.append(row(check, f"{overhead:.2f} us", overhead <= OVERHEAD_TARGET_US))
        ratio = overhead / ops[by_hand].median_us
        rows.append(row(f"  that overhead / ({by_hand})", f"ratio {ratio:.2f}", None))
    ratio = pipes[SYNCHRONIZED].median_us / pipes[ORDERED].median_us
    rows.append(row(f"pipeline frames/s: {ORDERED} / {SYNCHRONIZED} > 1", f"ratio {ratio:.2f}", ratio > 1))
    check = f"pipeline outputs equal: {ORDERED} vs {SYNCHRONIZED}"
    return [*rows, row(check, f"max diff {max_diff:g}", max_diff == 0.0)]


def report(results: Results) -> None:
    config, stages = results.config, results.stage_gpu_ms
    for key, value in results.info.items():
        print(f"{key:>9}: {value}")
    print(f"image {HEIGHT}x{WIDTH}x{CHANNELS} uint8 HWC, cuda:0; {config.batches} batches of {config.batch}")
    print(f"\n{'ordering (A, B: two streams)':<44}{'median us':>11}{'p10 us':>10}{'p90 us':>10}")
    for name, stats in results.ordering.items():
        print(f"{name:<44}{stats.median_us:>11.3f}{stats.p10_us:>10.3f}{stats.p90_us:>10.3f}")
    print(f"\n{'conversion in a side stream, HWC->CHW':<52}{'median us':>11}{'p10 us':>10}{'p90 us':>10}")
    for name, stats in results.conversions.items():
        print(f"{name:<52}{stats.median_us:>11.3f}{stats.p10_us:>10.3f}{stats.p90_us:>10.3f}")
    print(f"\npipeline: {config.frames} frames, {RING} buffers, {len(BOXES)} {CROP}x{CROP} crops per frame")
    decode_ms, infer_ms = stages["decode"], stages["preprocess + infer"]
    print(f"GPU ms per frame (events): decode {decode_ms:.3f} on A, preprocess + infer {infer_ms:.3f} on B")
    limits = 1e3 / (decode_ms + infer_ms), 1e3 / max(decode_ms, infer_ms)
    print("GPU-bound limits: {:.0f} frames/s with no overlap, {:.0f} with full overlap".format(*limits))
    print(f"{'variant':<44}{'frames/s':>11}{'p10':>10}{'p90':>10}  ({config.runs} runs)")
    for name, stats in results.pipelines.items():  # the slowest runs (p90 time) give the p10 rate
        rates = [config.frames * 1e6 / us for us in (stats.median_us, stats.p90_us, stats.p10_us)]
        print(f"{name:<44}{rates[0]:>11.0f}{rates[1]:>10.0f}{rates[2]:>10.0f}")
    print(f"\n{'check':<96}{'value':>16}  result")
    for row in results.checks:
        print(f"{row['check']:<96}{row['value']:>16}  {RESULT[row['passed']]}")
    print("\nevery target passed" if results.all_passed else "\nsome targets FAILED (see above)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "streams.py", argv)
    if args is None:
        return 0
    config = Config(batch=100, batches=5, frames=30, runs=2) if args.quick else Config(1_000, 30, 300, 7)
    torch.backends.cudnn.deterministic = True  # the same convolution algorithms in both variants
    info, ops, conversions = header(), run_ordering(config), run_conversions(config)
    pipes, stages, max_diff = run_pipelines(config)
    checks = compare(ops, pipes, max_diff)
    all_passed = all(row["passed"] is not False for row in checks)
    results = Results(info, config, ops, conversions, stages, pipes, checks, all_passed)
    report(results)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(results), indent=2) + "\n")
    faulthandler.cancel_dump_traceback_later()
    return 0


if __name__ == "__main__":
    sys.exit(main())
