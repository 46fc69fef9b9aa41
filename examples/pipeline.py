"""Decode -> preprocess -> infer -> draw -> encode, with the image's layout and dtype typed at each step.

Usage::

    python examples/pipeline.py [--output PATH] [--device auto|cpu|cuda] [--codec auto|nvimgcodec|opencv]

The input JPEG is made here (a synthetic pattern through ``cv2.imencode``). Then:

- decode: on the GPU with nvImageCodec when it is installed (its ``Image`` speaks the CUDA Array
  Interface, which gpuimage wraps without a copy; RGB), else ``cv2.imdecode`` on the host (BGR),
  wrapped with ``GpuImage.from_numpy`` and copied to the GPU with ``.cuda()`` where there is one;
- preprocess: ``gpuimage.normalize_batch`` cuts a few regions of interest out of the frame into one
  NCHW float32 torch batch (ImageNet mean and std, RGB order whatever the decoder gave);
- infer: a tiny convolutional network with fixed weights (seeded inside ``torch.random.fork_rng``,
  so the caller's random state is left as it was) turns each region into a box and a score; it
  stands in for a real detector;
- draw: the boxes are written back into the decoded frame in place, through a ``GpuMat`` where
  OpenCV has CUDA, else a CuPy view, else a torch view (GPU), or a NumPy view (host);
- encode: nvImageCodec on the GPU when it decoded, else ``cv2.imencode`` after ``.cpu()``.

The annotated JPEG goes to ``--output PATH``; without it, to ``pipeline-output.jpg`` in a new
temporary folder (never the current one). The last line printed says where.

Without a GPU everything runs on the host: the same functions, the same types. A flag this machine
cannot honour (``--device cuda`` without a GPU, ``--codec nvimgcodec`` without nvImageCodec, an
``--output`` that cannot be written) is a usage error, reported before anything runs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal, NamedTuple

import cv2
import numpy as np
import torch

import gpuimage
from gpuimage import HWC, GpuImage, UInt8

Device = Literal["cpu", "cuda"]
Codec = Literal["nvimgcodec", "opencv"]
ChannelOrder = Literal["RGB", "BGR"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, in [0, 1] units (normalize_batch scales uint8 by 1/255)
IMAGENET_STD = (0.229, 0.224, 0.225)
BOX_COLOR = (0, 255, 0)  # green: the same bytes in RGB and BGR order
BOX_THICKNESS = 4  # pixels; thick enough to survive JPEG's chroma subsampling


class Box(NamedTuple):
    """A rectangle in frame pixels: ``(x, y, width, height)``, as ``crop()`` and ``rois=`` take it."""

    x: int
    y: int
    width: int
    height: int


# Regions of interest of the 480x640 test frame (a real pipeline gets them from a tracker or a
# proposal stage). Different sizes: normalize_batch pads each to the largest, at its top left.
ROIS = (Box(40, 60, 200, 150), Box(300, 40, 160, 160), Box(80, 280, 240, 160), Box(400, 250, 200, 200))
# The order of the three channels each decoder writes.
CHANNEL_ORDER: dict[Codec, ChannelOrder] = {"nvimgcodec": "RGB", "opencv": "BGR"}


@dataclass(frozen=True)
class Detection:
    """One region's result: a box in frame pixels and a score in [0, 1]."""

    box: Box
    score: float


@dataclass(frozen=True)
class PipelineResult:
    """The encoded output and how it was made (the test checks the drawn pixels against ``boxes``)."""

    jpeg: bytes
    height: int
    width: int
    detections: tuple[Detection, ...]
    device: Device
    codec: Codec
    drawn_with: str  # "GpuMat", "CuPy", "torch" or "NumPy"


def make_test_jpeg(height: int = 480, width: int = 640) -> bytes:
    """A synthetic BGR pattern (gradients and a few shapes, little green) encoded as a JPEG."""
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    columns = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    pattern = np.empty((height, width, 3), np.uint8)
    pattern[..., 0] = (0.6 * columns + 0.2 * rows).astype(np.uint8)  # blue
    pattern[..., 1] = 40  # green kept low, so drawn green boxes stand out
    pattern[..., 2] = (0.7 * rows + 0.1 * columns).astype(np.uint8)  # red
    cv2.circle(pattern, (140, 135), 50, (230, 60, 30), thickness=-1)
    cv2.rectangle(pattern, (330, 70), (420, 170), (30, 60, 230), thickness=-1)
    cv2.ellipse(pattern, (480, 350), (70, 40), 30, 0, 360, (200, 60, 200), thickness=-1)
    ok, encoded = cv2.imencode(".jpg", pattern, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("cv2.imencode could not encode the test pattern")
    return encoded.tobytes()


# -- decode -------------------------------------------------------------------------------------


def _nvimgcodec() -> ModuleType:
    """nvImageCodec's module; imported by name because it ships no type information."""
    return importlib.import_module("nvidia.nvimgcodec")


def decode_with_nvimgcodec(jpeg: bytes) -> GpuImage[HWC, UInt8]:
    """Decode on the GPU, into RGB. gpuimage wraps the decoder's image through its CUDA Array Interface: no
    copy, the nvImageCodec image is kept alive by the GpuImage, and the interface's stream is where
    the pixels are ready."""
    decoded = _nvimgcodec().Decoder().decode(jpeg)
    if decoded is None:
        raise RuntimeError("nvImageCodec could not decode the JPEG")
    return GpuImage.from_cuda_array_interface(decoded, layout="HWC").expect("HWC", UInt8)


def decode_with_opencv(jpeg: bytes, device: Device) -> GpuImage[HWC, UInt8]:
    """Decode on the host, into BGR; wrap the array without a copy, then copy it to the GPU if asked."""
    pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise RuntimeError("cv2.imdecode could not decode the JPEG")
    frame = GpuImage.from_numpy(pixels, layout="HWC").expect("HWC", UInt8)
    return frame.cuda() if device == "cuda" else frame


# -- preprocess and infer -----------------------------------------------------------------------


def preprocess(frame: GpuImage[HWC, UInt8], rois: Sequence[Box], *, channels: ChannelOrder) -> torch.Tensor:
    """ROIs of a uint8 HWC frame -> one float32 NCHW batch, RGB, normalized, on the frame's device.

    One kernel on a GPU, queued on torch's current stream after the frame's data; the frame records
    the read, so drawing into it later waits for this on the GPU.
    """
    return gpuimage.normalize_batch(
        [frame] * len(rois),
        IMAGENET_MEAN,
        IMAGENET_STD,
        rois=list(rois),
        reverse_channels=channels == "BGR",
    )


class TinyDetector(torch.nn.Module):
    """A stand-in detector: two strided convolutions, a global pool, and five numbers per region
    (score, box centre x and y, box width and height, each squashed into [0, 1])."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )
        self.head = torch.nn.Linear(16, 5)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float32 -> (N, 5) in [0, 1]."""
        return torch.sigmoid(self.head(self.features(batch)))


def build_model(device: Device) -> TinyDetector:
    """The detector with the same weights on every run and every machine.

    The layers draw their initial weights from torch's global CPU generator; seeding it inside
    ``fork_rng`` restores the caller's state afterwards, so running the pipeline does not change
    the random numbers the rest of a program sees. (``devices=[]``: the CUDA generators are not
    touched at all, since the weights are made on the CPU and then moved.)
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        model = TinyDetector()
    return model.eval().to(device)


def infer(model: TinyDetector, batch: torch.Tensor, rois: Sequence[Box]) -> list[Detection]:
    """Run the model and turn its outputs into boxes inside each ROI (in frame pixels)."""
    with torch.inference_mode():
        outputs: torch.Tensor = model(batch)
    detections = []
    for roi, (score, centre_x, centre_y, width, height) in zip(rois, outputs.cpu().tolist(), strict=True):
        box_width = max(BOX_THICKNESS * 3, round((0.3 + 0.5 * width) * roi.width))
        box_height = max(BOX_THICKNESS * 3, round((0.3 + 0.5 * height) * roi.height))
        x = roi.x + min(max(0, round(centre_x * roi.width - box_width / 2)), roi.width - box_width)
        y = roi.y + min(max(0, round(centre_y * roi.height - box_height / 2)), roi.height - box_height)
        detections.append(Detection(Box(x, y, box_width, box_height), score))
    return detections


# -- draw ---------------------------------------------------------------------------------------


def box_outline(box: Box, thickness: int) -> list[Box]:
    """The four edge strips of ``box`` (each a rectangle ``crop()`` can take)."""
    x, y, width, height = box
    return [
        Box(x, y, width, thickness),
        Box(x, y + height - thickness, width, thickness),
        Box(x, y, thickness, height),
        Box(x + width - thickness, y, thickness, height),
    ]


def _opencv_has_cuda() -> bool:
    # Calls below that take a cv2.cuda.Stream abort the interpreter on OpenCV builds without CUDA.
    return cv2.cuda.getCudaEnabledDeviceCount() > 0


def _cupy_usable() -> bool:
    try:
        importlib.import_module("cupy")
    except Exception:  # not installed, or a broken install (OSError for a missing libcudart)
        return False
    return True


def drawing_library(*, on_gpu: bool) -> str:
    """Which library ``draw_boxes`` writes the pixels with: NumPy on the host; on a GPU a ``GpuMat``
    where OpenCV has CUDA, else CuPy where it imports, else torch (always there: the model needs it)."""
    if not on_gpu:
        return "NumPy"
    if _opencv_has_cuda():
        return "GpuMat"
    return "CuPy" if _cupy_usable() else "torch"


def draw_boxes(frame: GpuImage[HWC, UInt8], boxes: Sequence[Box]) -> str:
    """Paint each box's outline into ``frame`` in place, through zero-copy views of crops of it.

    Returns which library wrote the pixels. On a GPU the writes go in ``frame.writing(stream)``: the
    stream first waits for the frame's readers (the preprocessing kernel), and afterwards the frame
    is ready on that stream, so the encoder that follows waits for the boxes.
    """
    strips = [strip for box in boxes for strip in box_outline(box, BOX_THICKNESS)]
    library = drawing_library(on_gpu=frame.device.is_cuda)
    if library == "NumPy":
        for strip in strips:
            frame.crop(*strip).as_numpy()[...] = BOX_COLOR
    elif library == "GpuMat":
        cv_stream = cv2.cuda.Stream()
        with frame.writing(cv_stream):
            for strip in strips:
                frame.crop(*strip).as_gpumat(stream=cv_stream).setTo((*BOX_COLOR, 0), stream=cv_stream)
    elif library == "CuPy":
        import cupy

        color = cupy.asarray(np.array(BOX_COLOR, np.uint8))
        cupy_stream = cupy.cuda.get_current_stream()
        with frame.writing(cupy_stream):
            for strip in strips:
                frame.crop(*strip).as_cupy(stream=cupy_stream)[...] = color
    else:
        torch_stream = torch.cuda.current_stream(frame.device.index)
        with frame.writing(torch_stream):
            color_tensor = torch.tensor(BOX_COLOR, dtype=torch.uint8, device=f"cuda:{frame.device.index}")
            for strip in strips:
                frame.crop(*strip).as_torch(stream=torch_stream)[...] = color_tensor
    return library


# -- encode -------------------------------------------------------------------------------------


def encode_with_nvimgcodec(frame: GpuImage[HWC, UInt8]) -> bytes:
    """Encode an RGB device frame on the GPU; nvImageCodec reads it through its CUDA Array Interface
    and waits on ``frame.stream``, where the boxes were drawn."""
    encoded = _nvimgcodec().Encoder().encode(frame, "jpeg", cuda_stream=frame.stream or 0)
    if encoded is None:
        raise RuntimeError("nvImageCodec could not encode the frame")
    return encoded if isinstance(encoded, bytes) else bytes(memoryview(encoded))  # a buffer in later releases


def encode_with_opencv(frame: GpuImage[HWC, UInt8]) -> bytes:
    """Encode a BGR frame on the host; a device frame is copied to the host first (``cpu()``)."""
    ok, encoded = cv2.imencode(".jpg", frame.cpu().as_numpy(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("cv2.imencode could not encode the frame")
    return encoded.tobytes()


# -- the pipeline -------------------------------------------------------------------------------


def gpu_reachable() -> bool:
    """A CUDA GPU that torch (the model's library) can use."""
    return bool(torch.cuda.is_available())


def nvimgcodec_installed() -> bool:
    try:
        return importlib.util.find_spec("nvidia.nvimgcodec") is not None
    except ImportError:  # no ``nvidia`` namespace at all
        return False


def run(jpeg: bytes, *, device: Device, codec: Codec, rois: Sequence[Box] = ROIS) -> PipelineResult:
    """The whole pipeline on one JPEG."""
    if codec == "nvimgcodec" and device != "cuda":
        raise ValueError("nvImageCodec decodes into GPU memory: use device='cuda' with codec='nvimgcodec'")
    frame = decode_with_nvimgcodec(jpeg) if codec == "nvimgcodec" else decode_with_opencv(jpeg, device)
    batch = preprocess(frame, rois, channels=CHANNEL_ORDER[codec])
    detections = infer(build_model(device), batch, rois)
    drawn_with = draw_boxes(frame, [detection.box for detection in detections])
    encode = encode_with_nvimgcodec if codec == "nvimgcodec" else encode_with_opencv
    return PipelineResult(
        encode(frame), frame.height, frame.width, tuple(detections), device, codec, drawn_with
    )


def _output_problem(output: Path) -> str | None:
    """Why ``output`` cannot be written, or None; checked before the pipeline runs."""
    if output.is_dir():
        return "it is a folder"
    folder = output.parent
    if not folder.is_dir():
        return f"its folder {folder} does not exist"
    if not os.access(folder, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        return "permission denied"
    return None


def default_output() -> Path:
    """``pipeline-output.jpg`` in a new temporary folder: a run never writes into the current one."""
    return Path(tempfile.mkdtemp(prefix="gpuimage-pipeline-")) / "pipeline-output.jpg"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline on a generated JPEG and write the annotated JPEG to ``--output`` (by default
    into a new temporary folder); the last line printed names the file.

    Flags this machine cannot honour end in ``parser.error`` (a usage message and exit status 2)
    before anything runs; a failure to write the output is a message and exit status 1.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="the JPEG to write (default: pipeline-output.jpg in a new temporary folder)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--codec", choices=["auto", "nvimgcodec", "opencv"], default="auto")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not gpu_reachable():
        parser.error("--device cuda: torch sees no CUDA GPU here; use --device cpu (or auto)")
    device: Device = "cuda" if args.device == "cuda" or (args.device == "auto" and gpu_reachable()) else "cpu"
    if args.codec == "nvimgcodec":
        if not nvimgcodec_installed():
            parser.error(
                "--codec nvimgcodec: nvImageCodec is not installed "
                "(pip install nvidia-nvimgcodec-cu12 or -cu13); use --codec opencv (or auto)"
            )
        if device != "cuda":
            parser.error(
                "--codec nvimgcodec decodes into GPU memory, which needs a CUDA GPU and --device cuda "
                "(or auto); use --codec opencv (or auto)"
            )
    if args.output is not None and (problem := _output_problem(args.output)) is not None:
        parser.error(f"--output {args.output} cannot be written: {problem}")
    codec: Codec = "opencv"
    if args.codec == "nvimgcodec" or (args.codec == "auto" and device == "cuda" and nvimgcodec_installed()):
        codec = "nvimgcodec"
    result = run(make_test_jpeg(), device=device, codec=codec)
    output: Path = args.output if args.output is not None else default_output()  # after any usage error
    try:
        output.write_bytes(result.jpeg)
    except OSError as exc:  # checked above; this is the folder changing while the pipeline ran
        print(f"pipeline: could not write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(
        f"{result.device} path: decoded and encoded with {result.codec}, boxes drawn with {result.drawn_with}"
    )
    for detection in result.detections:
        print(f"  box {tuple(detection.box)} score {detection.score:.3f}")
    print(f"wrote {output} ({result.width}x{result.height}, {len(result.jpeg)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
