"""Decode in one process, infer in another: NV12 frames cross a ``gpuimage.SharedRing`` without a copy.

Usage::

    python examples/two_process_pipeline.py [--frames N] [--slots K] [--synthetic]

The protocol:

- this process (the decoder) allocates K ``GpuFrame``s once, makes a ``SharedRing`` over them, and
  starts the inference process (``spawn``) with the ring as its argument. What crosses the process
  boundary is the pickled ring: CUDA IPC handles of the frames' memory and of each slot's events,
  and the path of a small control block. Never pixels;
- the decoder writes each frame into the next free slot (``ring.writing()``): real frames decoded
  on NVDEC by PyNvVideoCodec from a clip that PyAV encodes on the CPU first, or, where either is
  missing (or with ``--synthetic``), a moving gradient made on the GPU by torch;
- the inference process reads each slot (``ring.reading()``), cuts a few regions out of the frame
  with ``gpuimage.normalize_batch`` into one preallocated NCHW batch, and releases the slot; then a
  tiny torch model runs on the batch, and one line per frame goes back through a queue;
- this process prints those lines and, last, the frames per second.

Without a CUDA GPU it says that it needs one and exits with status 0.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import queue
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import gpuimage
from gpuimage import ColorSpec, GpuFrame, SharedRing

WIDTH, HEIGHT = 1280, 720
COLOUR = ColorSpec(matrix="BT709", range="LIMITED")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = (224, 224)  # (height, width) of each region in the batch
# Regions of each frame (x, y, width, height), as a tracker would give them; odd offsets are fine.
ROIS = ((0, 0, WIDTH, HEIGHT), (100, 80, 400, 300), (640, 200, 320, 320), (901, 411, 301, 243))
CLASSES = 10
WAIT_S = 60.0  # how long either side waits for the other before giving up

Fill = Callable[[torch.Tensor], object]
"""Writes one frame into a ring slot's ``(1.5 H, W)`` NV12 tensor, on torch's current stream."""
Message = tuple[Any, ...]


def adding(base: torch.Tensor, shift: int) -> Fill:
    return lambda block: torch.add(base, shift, out=block)


def copying(source: torch.Tensor) -> Fill:
    return lambda block: block.copy_(source)


def synthetic_frames(count: int) -> Iterator[Fill]:
    """A diagonal gradient over the whole NV12 block, moved 5 codes per frame (uint8 adds wrap at
    256), so every frame differs; made once, then one add per frame, on the GPU."""
    rows = torch.arange(HEIGHT * 3 // 2, device="cuda")[:, None]
    base = ((rows + 2 * torch.arange(WIDTH, device="cuda")[None, :]) % 256).to(torch.uint8)
    for index in range(count):
        yield adding(base, index * 5 % 256)


def encode_clip(path: Path, count: int) -> None:
    """``count`` frames of a moving gradient as H.264 in an MP4 file, encoded on the CPU by PyAV."""
    av = importlib.import_module("av")  # untyped; imported by name
    rows, cols = np.mgrid[0 : HEIGHT * 3 // 2, 0:WIDTH]  # I420: Y rows, then U and V
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(count):
            i420 = ((rows + 2 * cols + 5 * index) % 256).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(i420, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode(None):  # flush the encoder
            container.mux(packet)


def nvdec_frames(count: int, folder: Path) -> Iterator[Fill]:
    """``count`` frames decoded on NVDEC (on the default stream, where each is ready when ``Decode``
    returns), each copied into its slot: the decoder's own buffers are reused by the next call. The
    clip is encoded and the decoder made now, before the caller times anything."""
    nvc = importlib.import_module("PyNvVideoCodec")
    encode_clip(folder / "clip.mp4", count)
    demuxer = nvc.CreateDemuxer(str(folder / "clip.mp4"))
    decoder = nvc.CreateDecoder(
        gpuid=0, codec=demuxer.GetNvCodecId(), cudacontext=0, cudastream=0, usedevicememory=True
    )

    def decoded() -> Iterator[Fill]:
        made = 0
        for packets in (demuxer, [nvc.PacketData()]):  # an empty packet flushes, if the last did not
            for packet in packets:
                for frame in decoder.Decode(packet):
                    source = GpuFrame.from_dlpack(frame, format="NV12", colour=COLOUR)  # a view, no copy
                    yield copying(source.as_torch())
                    made += 1
                    # The next Decode() overwrites this frame's buffer, on a stream it does not tell
                    # us: wait on the host until the copy into the slot is done.
                    torch.cuda.current_stream().synchronize()
                    if made == count:
                        return
        raise RuntimeError(f"NVDEC decoded {made} frames of the clip's {count}")

    return decoded()


def unusable_decoder() -> str | None:
    """Why NVDEC frames cannot be made here, or None."""
    for name in ("PyNvVideoCodec", "av"):
        try:
            importlib.import_module(name)
        except Exception as exc:  # PyNvVideoCodec raises RuntimeError where NVDEC's libraries are missing
            return f"{name} does not import: {type(exc).__name__}"
    if "libx264" not in importlib.import_module("av").codecs_available:
        return "this PyAV has no libx264 encoder"
    return None


def frame_source(synthetic: bool, count: int, folder: Path) -> tuple[str, Iterator[Fill]]:
    """What makes the frames, and why: NVDEC where PyNvVideoCodec and PyAV work, else synthetic."""
    reason = "--synthetic" if synthetic else unusable_decoder()
    if reason is None:
        return "NVDEC frames (PyNvVideoCodec) of an H.264 clip encoded by PyAV", nvdec_frames(count, folder)
    return f"synthetic frames ({reason})", synthetic_frames(count)


# -- the inference process ---------------------------------------------------------------------


def build_model() -> torch.nn.Module:
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


def preprocess(frame: GpuFrame, out: torch.Tensor) -> torch.Tensor:
    """The frame's regions, converted to RGB, resized, normalized into ``out``: one launch, queued on
    torch's current stream after the frame's write."""
    return gpuimage.normalize_batch(
        [frame] * len(ROIS), IMAGENET_MEAN, IMAGENET_STD, rois=ROIS, size=SIZE, resize="bilinear", out=out
    )


def checksum(batch: torch.Tensor) -> torch.Tensor:
    """A position-weighted sum in float64: a wrong frame, region or order changes it."""
    weights = torch.arange(batch.numel(), device=batch.device, dtype=torch.float64) % 1009 + 1
    return (batch.to(torch.float64).reshape(-1) * weights).sum()


def infer(ring: SharedRing[GpuFrame], results: Queue[Message], frames: int) -> None:
    """The inference process: the ring arrives unpickled, opened over the decoder's memory."""
    try:
        model = build_model().cuda()
        batch = torch.empty((len(ROIS), 3, *SIZE), device="cuda")  # reused: no allocation per frame
        results.put(("ready",))
        with torch.inference_mode():
            for index in range(frames):
                with ring.reading(timeout=WAIT_S) as frame:
                    preprocess(frame, batch)
                # The slot is released as soon as the kernel that reads it is queued: the decoder's
                # next write into it waits for that kernel on the GPU, not on our model.
                logits = model(batch)
                parts = (logits.argmax(1), logits.mean()[None], checksum(batch)[None])
                values = torch.cat([part.to(torch.float64) for part in parts]).tolist()  # one host sync
                results.put(("frame", index, [int(v) for v in values[:-2]], values[-2], values[-1]))
    except Exception as exc:  # reported by the parent, which exits 1
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        ring.close()


# -- the decoder process: this one --------------------------------------------------------------


def checked(message: Message) -> Message:
    if message[0] == "error":
        raise RuntimeError(f"the inference process failed: {message[1]}")
    return message


def wait_for(results: Queue[Message], reader: BaseProcess) -> Message:
    """The inference process's next message, waiting for it while that process lives."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return checked(results.get(timeout=0.5))
        except queue.Empty:
            if reader.is_alive() and time.monotonic() < deadline:
                continue
        try:  # it may have put its last message just before it exited
            return checked(results.get(timeout=1.0))
        except queue.Empty:
            raise RuntimeError(f"the inference process stopped (exit code {reader.exitcode})") from None


def arrived(results: Queue[Message]) -> Iterator[Message]:
    """The messages already there, without waiting."""
    while True:
        try:
            message = results.get_nowait()
        except queue.Empty:
            return
        yield checked(message)


def show(message: Message) -> None:
    _, index, classes, mean, total = message
    print(f"frame {index}: classes {classes} mean {mean:+.6f} checksum {total:.12e}", flush=True)


def pipeline(source: Iterator[Fill], described: str, args: argparse.Namespace) -> None:
    """Write each frame into the ring, print the inference process's lines as they come back."""
    frames, slots = args.frames, args.slots
    ring = SharedRing.from_items(
        [GpuFrame.empty(WIDTH, HEIGHT, format="NV12", colour=COLOUR) for _ in range(slots)]
    )
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    results: Queue[Message] = context.Queue()  # unbounded: the reader never blocks on our printing
    reader = context.Process(target=infer, args=(ring, results, frames), daemon=True)
    reader.start()  # pickles the ring here: its description, not its pixels
    try:
        print(f"{described}; inference in process {reader.pid}", flush=True)
        wait_for(results, reader)  # "ready": time frames, not torch's start-up
        shown, start = 0, time.perf_counter()
        for fill in source:
            with ring.writing(timeout=WAIT_S) as (_, slot):
                fill(slot.as_torch())  # on torch's current stream, which the ring orders
            for message in arrived(results):  # print results as they come, not at the end
                show(message)
                shown += 1
        for _ in range(shown, frames):
            show(wait_for(results, reader))
        elapsed = time.perf_counter() - start
        print(f"{frames} frames through {slots} slots in {elapsed:.2f} s: {frames / elapsed:.1f} frames/s")
    finally:
        ring.close()  # a reader still waiting (after an error here) then stops at once
        reader.join(timeout=WAIT_S)


def count_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
        return int(text)

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, then run (exit 0); a usage error exits 2, a failure on the way 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=count_in(1, 1_000_000), default=100, metavar="N")
    parser.add_argument("--slots", type=count_in(2, 4096), default=4, metavar="K", help="frames in the ring")
    parser.add_argument("--synthetic", action="store_true", help="generated frames, even where NVDEC works")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("two_process_pipeline: this example needs a CUDA GPU (frames cross processes by CUDA IPC); "
              "torch sees none here, so nothing ran.")  # fmt: skip
        return 0
    try:
        with tempfile.TemporaryDirectory() as folder:  # the clip, where NVDEC decodes one
            described, source = frame_source(args.synthetic, args.frames, Path(folder))
            pipeline(source, f"decoder: {described}; {args.slots} slots of {WIDTH}x{HEIGHT} NV12", args)
    except (gpuimage.GpuImageError, RuntimeError) as exc:
        print(f"two_process_pipeline: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
