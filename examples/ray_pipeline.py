"""Decode in one Ray actor, infer in another: NV12 frames cross as Ray task arguments.

Usage::

    python examples/ray_pipeline.py [--frames N] [--in-flight K] [--host]

The protocol:

- this process starts a local Ray cluster and two actors: a decoder, which makes synthetic NV12
  frames (a moving gradient, written by torch), and an inference actor, which holds a tiny torch
  model and one preallocated NCHW batch;
- for each frame, the decoder's result goes straight to the inference actor as an argument
  (``inference.infer.remote(i, decoder.decode.remote(i))``); this process only holds the refs, at
  most K frames in flight, and prints one line per frame, in order, then the frames per second;
- on a GPU, a frame pickles to a CUDA IPC description: the inference actor maps the decoder's memory
  and waits for its write on the GPU; no pixel goes through the object store. The decoder's memory
  is kept until the inference actor lets go of the frame (``docs/processes.md``);
- without a GPU, or with ``--host``, frames are host memory and travel by value: a packed copy in
  Ray's object store, which the inference actor reads in place (read-only);
- the inference actor cuts a few regions out of each frame with ``gpuimage.normalize_batch`` into
  its batch, runs the model, and answers with the classes, the logits' mean and a checksum.

Across hosts, return ``gpuimage.to_tensor_payload(frame)`` from a method with
``@ray.method(tensor_transport="nccl")`` instead, and rebuild with ``gpuimage.from_tensor_payload``.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import ray
import torch
from ray.exceptions import RayError
from torch import nn

import gpuimage
from gpuimage import ColorSpec, GpuFrame

WIDTH, HEIGHT = 1280, 720
COLOUR = ColorSpec(matrix="BT709", range="LIMITED")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = (224, 224)  # (height, width) of each region in the batch
# Regions of each frame (x, y, width, height), as a tracker would give them; odd offsets are fine.
ROIS = ((0, 0, WIDTH, HEIGHT), (100, 80, 400, 300), (640, 200, 320, 320), (901, 411, 301, 243))
CLASSES = 10
WAIT_S = 120.0  # how long this process waits for one frame's answer

Answer = tuple[int, list[int], float, float]
"""One frame's answer: its index, the classes, the logits' mean, the batch checksum."""


def build_model() -> nn.Module:
    """A tiny classifier with fixed random weights (seeded without touching the caller's seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        features = (
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        model = nn.Sequential(*features, nn.Linear(16, CLASSES))
    return model.eval()


def gradient(device: str) -> torch.Tensor:
    """The ``(1.5 H, W)`` NV12 block of frame 0: a diagonal gradient (each frame adds 5, wrapping)."""
    rows = torch.arange(HEIGHT * 3 // 2, device=device)[:, None]
    return ((rows + 2 * torch.arange(WIDTH, device=device)[None, :]) % 256).to(torch.uint8)


def fill(frame: GpuFrame, base: torch.Tensor, index: int) -> GpuFrame:
    """Write frame ``index`` into ``frame`` on torch's current stream, and say so to the frame."""
    torch.add(base, index * 5 % 256, out=frame.as_torch())
    if frame.device.is_cuda:
        frame.record_write(torch.cuda.current_stream(frame.device.index))
    return frame


def preprocess(frame: GpuFrame, out: torch.Tensor) -> torch.Tensor:
    """The frame's regions, converted to RGB, resized, normalized into ``out``: one call."""
    return gpuimage.normalize_batch(
        [frame] * len(ROIS), IMAGENET_MEAN, IMAGENET_STD, rois=ROIS, size=SIZE, resize="bilinear", out=out
    )


def checksum(batch: torch.Tensor) -> torch.Tensor:
    """A position-weighted sum in float64: a wrong frame, region or order changes it."""
    weights = torch.arange(batch.numel(), device=batch.device, dtype=torch.float64) % 1009 + 1
    return (batch.to(torch.float64).reshape(-1) * weights).sum()


def answer(index: int, frame: GpuFrame, model: nn.Module, batch: torch.Tensor) -> Answer:
    """Preprocess and infer one frame; one host synchronization for the answer."""
    with torch.inference_mode():
        preprocess(frame, batch)
        logits = model(batch)
        parts = (logits.argmax(1), logits.mean()[None], checksum(batch)[None])
        values = torch.cat([part.to(torch.float64) for part in parts]).tolist()
    return index, [int(value) for value in values[:-2]], values[-2], values[-1]


class Decoder:
    """Makes frames where it runs: in GPU memory (``device="cuda"``) or in host memory."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.base = gradient(device)

    @ray.method
    def ready(self) -> bool:
        return True

    @ray.method
    def decode(self, index: int) -> GpuFrame:
        """Frame ``index`` in new memory: on a GPU, torch's caching allocator reuses what the
        inference actor let go of; the returned frame pickles to a CUDA IPC description."""
        frame = GpuFrame.empty(WIDTH, HEIGHT, format="NV12", colour=COLOUR, device=self.device)
        return fill(frame, self.base, index)


class Inference:
    """Holds the model and one batch; answers for each frame it is sent."""

    def __init__(self, device: str) -> None:
        self.model = build_model().to(device)
        self.batch = torch.empty((len(ROIS), 3, *SIZE), device=device)  # reused: no allocation per frame

    @ray.method
    def ready(self) -> bool:
        return True

    @ray.method
    def infer(self, index: int, frame: GpuFrame) -> Answer:
        """``frame`` arrives unpickled: mapped from the decoder's GPU memory, or a host copy."""
        return answer(index, frame, self.model, self.batch)


# Ray's actor classes: ``ray.remote`` called, not a class decorator, and each remote method under
# ``@ray.method``, so that mypy and pyright know ``.remote()`` and what it returns
DecoderActor = ray.remote(Decoder)
InferenceActor = ray.remote(Inference)


def show(result: Answer) -> None:
    index, classes, mean, total = result
    print(f"frame {index}: classes {classes} mean {mean:+.6f} checksum {total:.12e}", flush=True)


def pipeline(frames: int, in_flight: int, device: str) -> None:
    """Send every frame from the decoder to the inference actor; print the answers in order."""
    gpus = 0.5 if device == "cuda" else 0  # both actors share one GPU: CUDA IPC needs the same one
    decoder = DecoderActor.options(num_gpus=gpus).remote(device)
    inference = InferenceActor.options(num_gpus=gpus).remote(device)
    ray.get([decoder.ready.remote(), inference.ready.remote()], timeout=WAIT_S)  # time frames, not start-up
    pending: collections.deque[Any] = collections.deque()
    start = time.perf_counter()
    for index in range(frames):
        pending.append(inference.infer.remote(index, decoder.decode.remote(index)))
        if len(pending) >= in_flight:
            show(ray.get(pending.popleft(), timeout=WAIT_S))
    while pending:
        show(ray.get(pending.popleft(), timeout=WAIT_S))
    elapsed = time.perf_counter() - start
    print(f"{frames} frames in {elapsed:.2f} s: {frames / elapsed:.1f} frames/s", flush=True)


def count_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
        return int(text)

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, then run (exit 0); a usage error exits 2, a failure on the way 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=count_in(1, 1_000_000), default=50, metavar="N")
    parser.add_argument("--in-flight", type=count_in(1, 64), default=4, metavar="K", help="frames sent ahead")
    parser.add_argument("--host", action="store_true", help="host frames (by value), even where a GPU is")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not args.host else "cpu"
    how = "GPU frames by CUDA IPC" if device == "cuda" else "host frames by value through the object store"
    print(f"ray_pipeline: {WIDTH}x{HEIGHT} NV12 synthetic frames, {how}", flush=True)
    ray.init(
        num_cpus=2,
        num_gpus=1 if device == "cuda" else 0,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        pipeline(args.frames, args.in_flight, device)
    except (gpuimage.GpuImageError, RayError) as exc:
        print(f"ray_pipeline: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
