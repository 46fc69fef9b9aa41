"""Real decoder output on the device (issue 13): clips encoded on the CPU by PyAV (H.264 with libx264;
10-bit HEVC with libx265), decoded on NVDEC by PyNvVideoCodec, wrapped without copying, and checked
against PyAV's CPU decode of the same bitstream; CV-CUDA's NV12 images and tensors, both ways.

What PyNvVideoCodec 2.2.4 does (read from its binary; its CAI is pinned by the first test and the
ordering test), and why these tests read frames the way they do:

- A ``DecodedFrame`` points into the decoder's output buffers, which the next ``Decode()`` call
  overwrites: every read of a frame finishes before the next packet is decoded (``nvdec_frames``).
- Plane CAI (``frame.cuda()``): NV12 ``(H, W, 1)`` and ``(H/2, W/2, 2)``, packed, one allocation.
  Its ``stream`` key is 0 for a decoder on the default stream (CAI v3 forbids 0) and 2 (the
  per-thread default stream) for a decoder with a stream of its own, never that stream: a consumer
  must say where the data is ready (``stream=``). P016 planes say ``'|u2'`` with strides
  ``(W, 1, 1)``: malformed, so 10-bit frames go through DLPack.
- ``__dlpack__(stream)`` exports the whole ``(1.5 H, W)`` frame (strides right for uint8 and
  uint16), takes no ``max_version``, and makes the consumer's stream wait for the frame's event.
- 10-bit video arrives as P016 with the 10 significant bits in the HIGH bits (``code << 6``, the
  low 6 bits zero): gpuimage's P010, not its P016 (16 significant bits).

The cross-stream scenario runs in a child process (this file run as a script), as foreign
producers' stream scenarios do here: a crash there fails the test instead of ending the run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("torch")

import torch
from torch.utils.dlpack import from_dlpack as torch_from_dlpack

import gpuimage as gi
from gpuimage import ColorSpec
from gpuimage._colour import yuv_to_rgb

pytestmark = pytest.mark.cuda

Array = npt.NDArray[Any]
T = TypeVar("T")
WIDTH, HEIGHT, FRAMES = 320, 240, 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ROIS = [(0, 0, WIDTH, HEIGHT), (17, 9, 128, 96), (WIDTH - 81, HEIGHT - 61, 81, 61)]  # odd offsets too
SLEEP_CYCLES = 20_000_000  # about 10 ms of GPU time: the decoder's copy comes late
ROUTES = ("dlpack", "planes")
"""How a decoded frame is wrapped: ``from_dlpack(frame)`` on a decoder on the default stream, or
``from_planes(frame.cuda(), stream=the decoder's stream)`` on a decoder with its own stream."""


def _require(name: str) -> Any:
    """Import ``name`` or skip: PyNvVideoCodec raises RuntimeError, not ImportError, without NVDEC/NVENC
    driver libraries, and that is a reason to skip, not an error of these tests."""
    try:
        return importlib.import_module(name)
    except Exception as exc:
        pytest.skip(f"{name} is not importable here: {type(exc).__name__}: {str(exc)[:300]}")


# -- the clips: synthetic YUV codes, encoded and decoded on the CPU ----------------------------------


def yuv_pattern(index: int, bits: int) -> tuple[Array, Array, Array]:
    """Frame ``index`` of a moving colourful pattern: I420 Y, U, V codes inside the nominal limited
    range (8 bits: luma 16-235, chroma 16-240; 10 bits: four times that, plus motion in the low bits)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    luma = 16 + (cols * 3 + rows * 2 + index * 7) % 220
    chroma_rows, chroma_cols = np.mgrid[0 : HEIGHT // 2, 0 : WIDTH // 2]
    u = 16 + (chroma_cols * 5 + index * 3) % 225
    v = 16 + (chroma_rows * 4 + chroma_cols * 2 + index * 11) % 225
    if bits == 8:
        return luma.astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8)
    low = index % 4  # 10-bit codes: the 8-bit ones times 4, plus motion in the two low bits
    return (
        (luma * 4 + low).astype(np.uint16),
        (u * 4 + low).astype(np.uint16),
        (v * 4 + low).astype(np.uint16),
    )


class Clip(NamedTuple):
    """A clip on disk and PyAV's CPU decode of it, laid out as NVDEC lays its frames out."""

    path: Path
    bits: int
    colour: ColorSpec
    """What the stream's colour description says (BT.709 limited was asked for; see ``described``)."""
    described: str
    planes: list[tuple[Array, Array]]
    """Per frame: Y ``(H, W)`` and interleaved UV ``(H/2, W/2, 2)``; 10-bit codes shifted into the
    high bits (``<< 6``), as NVDEC's P016 output holds them."""

    @property
    def format(self) -> gi.PixelFormat:
        """NV12, or P010 for 10-bit video (gpuimage's name for NVDEC's P016 output of 10-bit codes)."""
        return gi.PixelFormat.NV12 if self.bits == 8 else gi.PixelFormat.P010


def _plane_array(plane: Any, dtype: type[np.generic], width: int, height: int) -> Array:
    """A PyAV plane's samples, its row padding (``line_size``) cut off."""
    data = np.frombuffer(memoryview(plane), dtype=dtype)
    return data.reshape(height, -1)[:, :width].copy()


def encode_clip(path: Path, codec: str, bits: int) -> None:
    """Write ``FRAMES`` frames of ``yuv_pattern`` with ``codec`` (no B-frames) to an MP4 file, with
    the colour description BT.709 (matrix, primaries, transfer) and limited range where PyAV sets it."""
    av = _require("av")
    pix_fmt = "yuv420p" if bits == 8 else "yuv420p10le"
    dtype = np.uint8 if bits == 8 else np.uint16
    options = (
        {"crf": "20", "bf": "0"}
        if codec == "libx264"
        else {"crf": "20", "x265-params": "log-level=error:bframes=0"}
    )
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=24, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        for name in ("colorspace", "color_primaries", "color_trc", "color_range"):  # AVCOL_*_BT709, MPEG
            with contextlib.suppress(AttributeError, TypeError, ValueError):  # read_clip says what stuck
                setattr(stream.codec_context, name, 1)
        for index in range(FRAMES):
            frame = av.VideoFrame(WIDTH, HEIGHT, pix_fmt)
            for plane, values in zip(frame.planes, yuv_pattern(index, bits), strict=True):
                padded = np.zeros((plane.height, plane.line_size // values.itemsize), dtype=dtype)
                padded[:, : plane.width] = values
                plane.update(padded.tobytes())
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def read_clip(path: Path, bits: int) -> Clip:
    """Decode ``path`` on the CPU with PyAV; the colour spec is what the stream's description says."""
    av = _require("av")
    dtype = np.uint8 if bits == 8 else np.uint16
    planes: list[tuple[Array, Array]] = []
    described = "no frames"
    colour = ColorSpec(matrix="BT601", range="LIMITED")
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            expected = "yuv420p" if bits == 8 else "yuv420p10le"
            assert frame.format.name == expected, f"PyAV decoded {frame.format.name}, expected {expected}"
            y, u, v = (
                _plane_array(plane, dtype, plane.width, plane.height) for plane in list(frame.planes)[:3]
            )
            uv = np.ascontiguousarray(np.dstack([u, v]))
            planes.append((y, uv) if bits == 8 else (y << 6, uv << 6))
            matrix, full = int(frame.colorspace), int(frame.color_range)
            described = f"AVColorSpace={matrix}, AVColorRange={full}"
            colour = ColorSpec(
                matrix="BT709" if matrix == 1 else "BT601", range="FULL" if full == 2 else "LIMITED"
            )
    assert len(planes) == FRAMES, f"PyAV decoded {len(planes)} frames of {path.name}, expected {FRAMES}"
    return Clip(path, bits, colour, described, planes)


def make_clip(directory: Path, codec: str, bits: int) -> Clip:
    av = _require("av")
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV wheel ({av.__version__}) has no {codec} encoder")
    path = directory / f"{codec}-{bits}bit.mp4"
    encode_clip(path, codec, bits)
    return read_clip(path, bits)


@pytest.fixture(scope="module")
def h264_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    return make_clip(tmp_path_factory.mktemp("clips"), "libx264", 8)


@pytest.fixture(scope="module")
def hevc10_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    return make_clip(tmp_path_factory.mktemp("clips"), "libx265", 10)


@pytest.fixture(scope="module")
def nvc() -> Any:
    return _require("PyNvVideoCodec")


# -- NVDEC, and reading frames back -------------------------------------------------------------------


def nvdec_frames(
    nvc: Any,
    clip: Clip,
    visit: Callable[[int, Any], T],
    *,
    stream: Any = None,
    before_packet: Callable[[], None] | None = None,
) -> list[T]:
    """Decode ``clip`` on NVDEC and return ``visit(index, decoded)`` of every frame, in display order.

    ``visit`` runs before the next packet is decoded and the device is synchronized after it: the
    next ``Decode()`` writes into the memory of the frames it returned before. ``stream``: a torch
    stream for the decoder (None: the default stream, on which each frame is ready when ``Decode``
    returns)."""
    demuxer = nvc.CreateDemuxer(str(clip.path))
    decoder = nvc.CreateDecoder(
        gpuid=0,
        codec=demuxer.GetNvCodecId(),
        cudacontext=0,
        cudastream=0 if stream is None else int(stream.cuda_stream),
        usedevicememory=True,
    )
    results: list[T] = []
    try:
        for packet in demuxer:
            if before_packet is not None:
                before_packet()
            for decoded in decoder.Decode(packet):
                results.append(visit(len(results), decoded))
                torch.cuda.synchronize()
        if len(results) < FRAMES:  # the demuxer's last, empty packet flushes; if it did not, flush here
            for decoded in decoder.Decode(nvc.PacketData()):
                results.append(visit(len(results), decoded))
                torch.cuda.synchronize()
    finally:
        torch.cuda.synchronize()
        del decoder
    assert len(results) == FRAMES, (
        f"NVDEC returned {len(results)} frames of {clip.path.name}, PyAV {FRAMES}, even after an empty "
        "packet (end of stream) was decoded"
    )
    return results


def wrap(decoded: Any, route: str, clip: Clip, stream: Any = None) -> Any:
    """A decoded frame as a ``GpuFrame``: the whole frame through DLPack, or the planes' CAI."""
    if route == "dlpack":
        return gi.GpuFrame.from_dlpack(decoded, format=clip.format, colour=clip.colour, stream=stream)
    return gi.GpuFrame.from_planes(decoded.cuda(), format=clip.format, colour=clip.colour, stream=stream)


def host(tensor: Any) -> Array:
    """A host copy of a torch tensor (uint16 through its bits: torch has few uint16 kernels)."""
    if tensor.dtype == torch.uint16:
        return np.asarray(tensor.view(torch.int16).cpu().numpy()).view(np.uint16)
    return np.asarray(tensor.cpu().numpy())


def frame_planes(frame: Any) -> tuple[Array, Array]:
    """A GpuFrame's Y ``(H, W)`` and UV ``(H/2, W/2, 2)`` on the host, read through torch views."""
    luma, chroma = (host(plane.as_torch()) for plane in frame.planes)
    return luma[..., 0], chroma


def differences(got: Array, want: Array) -> str:
    """How two arrays differ, for an assertion message."""
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    delta = np.abs(got.astype(np.float64) - want.astype(np.float64))
    where = np.argwhere(delta > 0)
    if not where.size:
        return "equal"
    first = tuple(int(i) for i in where[0])
    return (
        f"{len(where)} of {delta.size} differ, max {delta.max():g}, mean {delta.mean():.3g}; first at "
        f"{first}: {got[first]!r} != {want[first]!r}"
    )


def assert_within(got: Array, want: Array, tolerance: float, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    delta = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert float(delta.max()) <= tolerance, f"{what}: beyond {tolerance}: {differences(got, want)}"


def decoder_stream_for(route: str) -> Any:
    return None if route == "dlpack" else torch.cuda.Stream()


# -- PyNvVideoCodec's exports as these tests assume them ---------------------------------------------


def test_pynvvideocodec_exports_what_these_tests_assume(nvc: Any, h264_clip: Clip) -> None:
    def facts(index: int, decoded: Any) -> dict[str, Any]:
        views = list(decoded.cuda())
        return {
            "format": str(decoded.format),
            "cai": [dict(view.__cuda_array_interface__) for view in views],
            "pointers": [int(decoded.GetPtrToPlane(i)) for i in range(len(views))],
            "dlpack_device": tuple(decoded.__dlpack_device__()),
        }

    found = nvdec_frames(nvc, h264_clip, facts)[0]
    y, uv = found["cai"]
    shown = json.dumps(found, default=str)
    assert "NV12" in found["format"], f"expected an NV12 frame, got {shown}"
    assert (tuple(y["shape"]), tuple(uv["shape"])) == ((HEIGHT, WIDTH, 1), (HEIGHT // 2, WIDTH // 2, 2)), (
        shown
    )
    assert (y["typestr"], uv["typestr"]) == ("|u1", "|u1"), shown
    assert [y["data"][0], uv["data"][0]] == found["pointers"], (
        f"CAI pointers are not GetPtrToPlane's: {shown}"
    )
    assert uv["data"][0] == y["data"][0] + WIDTH * HEIGHT, (
        f"expected packed planes in one allocation: {shown}"
    )
    assert found["dlpack_device"] == (2, 0), f"expected kDLCUDA on device 0: {shown}"
    # a decoder on the default stream says stream 0, which CAI v3 forbids (the frame is ready when
    # Decode returns: the decoder synchronizes the default stream). If this changed, update the docs.
    assert (y.get("stream"), uv.get("stream")) == (0, 0), f"PyNvVideoCodec's CAI stream changed: {shown}"


# -- NV12 from NVDEC: zero copy, the same codes as PyAV's, the same colours as the reference ----------


@pytest.mark.parametrize("route", ROUTES)
def test_nvdec_nv12_frames_wrap_without_copying_and_equal_pyavs_decode(
    nvc: Any, h264_clip: Clip, route: str
) -> None:
    clip = h264_clip
    stream = decoder_stream_for(route)

    def check(index: int, decoded: Any) -> None:
        frame = wrap(decoded, route, clip, stream)
        assert (frame.format, frame.width, frame.height, frame.colour) == (
            gi.PixelFormat.NV12,
            WIDTH,
            HEIGHT,
            clip.colour,
        ), repr(frame)
        pointers = [int(decoded.GetPtrToPlane(i)) for i in range(2)]
        assert [plane.ptr for plane in frame.planes] == pointers, (
            f"frame {index}: a copy? {frame!r} vs {pointers}"
        )
        if stream is not None:
            assert frame.stream == int(stream.cuda_stream), (
                f"frame {index}: ready on {frame.stream}, not the decoder's"
            )
        y, uv = frame_planes(frame)
        want_y, want_uv = clip.planes[index]
        # H.264 decoding is bit exact: NVDEC and FFmpeg give the same codes for one bitstream
        assert np.array_equal(y, want_y), f"frame {index} luma: {differences(y, want_y)}"
        assert np.array_equal(uv, want_uv), f"frame {index} chroma: {differences(uv, want_uv)}"
        rgb = host(frame.to_image(layout="HWC", dtype="uint8", order="RGB").as_torch())
        reference = yuv_to_rgb([want_y, want_uv], "NV12", clip.colour)
        assert_within(rgb, reference, 1, f"frame {index} to_image vs yuv_to_rgb ({clip.described})")

    nvdec_frames(nvc, clip, check, stream=stream)


@pytest.mark.parametrize(("resize", "keep_aspect"), [("bilinear", False), ("nearest", True)])
@pytest.mark.parametrize("route", ROUTES)
def test_normalize_batch_of_nvdec_frames_matches_the_host_reference(
    nvc: Any, h264_clip: Clip, route: str, resize: str, keep_aspect: bool
) -> None:
    clip = h264_clip
    stream = decoder_stream_for(route)
    options: dict[str, Any] = {
        "rois": ROIS,
        "size": (64, 64),
        "resize": resize,
        "keep_aspect": keep_aspect,
        "pad_value": 0.0,
    }

    def check(index: int, decoded: Any) -> None:
        if index % 4:
            return
        frame = wrap(decoded, route, clip, stream)
        out = torch.full((len(ROIS), 3, 64, 64), float("nan"), dtype=torch.float32, device="cuda")
        gi.normalize_batch([frame] * len(ROIS), MEAN, STD, out=out, **options)
        # the reference: the same call on a host frame of PyAV's planes (the NumPy executor)
        y, uv = clip.planes[index]
        reference_frame = gi.GpuFrame.from_planes([y, uv], format="NV12", colour=clip.colour)
        reference = np.full((len(ROIS), 3, 64, 64), np.nan, dtype=np.float32)
        gi.normalize_batch([reference_frame] * len(ROIS), MEAN, STD, out=reference, **options)
        assert not np.isnan(reference).any(), "the host reference left slots unwritten"
        assert_within(host(out), reference, 1e-4, f"frame {index} {resize} keep_aspect={keep_aspect}")

    nvdec_frames(nvc, clip, check, stream=stream)


def test_pyavs_i420_planes_on_the_gpu_give_the_batch_of_nvdecs_nv12_frame(nvc: Any, h264_clip: Clip) -> None:
    """The same decoded codes as I420 (PyAV's yuv420p planes, uploaded) and as NV12 (NVDEC's frame)
    give the same batch: the I420 path reads its U and V planes where NV12 reads them interleaved."""
    clip = h264_clip
    options: dict[str, Any] = {"rois": ROIS, "size": (64, 64), "resize": "bilinear", "keep_aspect": True}
    checked: list[int] = []

    def check(index: int, decoded: Any) -> None:
        if index % 8:
            return
        nv12 = wrap(decoded, "dlpack", clip)
        y, uv = clip.planes[index]
        planes = [torch.from_numpy(np.ascontiguousarray(p)).cuda() for p in (y, uv[..., 0], uv[..., 1])]
        i420 = gi.GpuFrame.from_planes(planes, format="I420", colour=clip.colour)
        assert i420.planes[1].ptr == planes[1].data_ptr()  # zero copy of the uploaded planes
        ours = gi.normalize_batch([i420] * len(ROIS), MEAN, STD, **options)
        theirs = gi.normalize_batch([nv12] * len(ROIS), MEAN, STD, **options)
        torch.cuda.synchronize()
        assert torch.equal(ours, theirs), differences(host(ours), host(theirs))
        checked.append(index)

    nvdec_frames(nvc, clip, check)
    assert checked, "no frame was compared"


def test_a_default_stream_decoders_planes_wrap_although_their_cai_says_stream_0(
    nvc: Any, h264_clip: Clip
) -> None:
    # PyNvVideoCodec's most common use: no stream of its own. Its plane CAI says stream 0 (forbidden
    # by CAI v3; here it means "ready now": Decode synchronized the default stream). The issue asks
    # that such a DecodedFrame be importable without copying: either as it is (0 read as the legacy
    # default stream), or, refused with a message that names stream=, once the caller says where
    # the data is ready.
    clip = h264_clip
    outcomes: list[str] = []

    def check(index: int, decoded: Any) -> None:
        if index % 8:
            return
        frame: Any = None
        refusal = ""
        try:
            frame = gi.GpuFrame.from_planes(decoded.cuda(), format="NV12", colour=clip.colour)
        except gi.GpuImageError as exc:
            refusal = str(exc)
        if refusal:
            assert "stream" in refusal, f"a refusal that does not say what to do: {refusal}"
            try:
                frame = gi.GpuFrame.from_planes(
                    decoded.cuda(), format="NV12", colour=clip.colour, stream=torch.cuda.current_stream()
                )
            except gi.GpuImageError as again:
                pytest.fail(
                    "GpuFrame.from_planes(decoded.cuda()) refuses PyNvVideoCodec's default frames (CAI "
                    f"stream 0), without stream=: {refusal} / with stream=: {again}"
                )
        outcomes.append("with stream=" if refusal else "as it is")
        assert frame.planes[0].ptr == int(decoded.GetPtrToPlane(0)), repr(frame)
        y, uv = frame_planes(frame)
        assert np.array_equal(y, clip.planes[index][0]), (
            f"frame {index} luma: {differences(y, clip.planes[index][0])}"
        )
        assert np.array_equal(uv, clip.planes[index][1]), f"frame {index} chroma"

    nvdec_frames(nvc, clip, check)
    assert len(set(outcomes)) == 1, f"the same frames were taken in different ways: {outcomes}"


# -- P010: 10-bit HEVC ------------------------------------------------------------------------------


def test_ten_bit_hevc_arrives_as_p016_with_its_codes_in_the_high_bits(nvc: Any, hevc10_clip: Clip) -> None:
    clip = hevc10_clip

    def check(index: int, decoded: Any) -> None:
        assert "P016" in str(decoded.format), f"expected NVDEC's P016 surface, got {decoded.format}"
        frame = wrap(decoded, "dlpack", clip)  # format P010: 10 significant bits in the high bits
        base = int(decoded.GetPtrToPlane(0))
        assert [plane.ptr for plane in frame.planes] == [base, base + 2 * WIDTH * HEIGHT], repr(frame)
        y, uv = frame_planes(frame)
        want_y, want_uv = clip.planes[index]  # PyAV's codes << 6
        assert not (y & 0x3F).any(), f"frame {index}: luma with low bits set: {differences(y, want_y)}"
        assert not (uv & 0x3F).any(), f"frame {index}: chroma with low bits set"
        assert np.array_equal(y, want_y), f"frame {index} luma (HEVC is bit exact): {differences(y, want_y)}"
        assert np.array_equal(uv, want_uv), f"frame {index} chroma: {differences(uv, want_uv)}"
        reference = yuv_to_rgb([want_y, want_uv], "P010", clip.colour)
        rgb = host(frame.to_image(layout="HWC", dtype="uint8", order="RGB").as_torch())
        assert_within(rgb, reference, 1, f"frame {index} P010 to_image vs yuv_to_rgb ({clip.described})")
        if index == 0:
            # read as P016 (16-bit codes) the limited range scales alike: the same colours, within 1
            as_p016 = gi.GpuFrame.from_dlpack(decoded, format="P016", colour=clip.colour)
            rgb16 = host(as_p016.to_image(layout="HWC", dtype="uint8", order="RGB").as_torch())
            assert_within(rgb16, reference, 1, "P016 reading of NVDEC's 10-bit output")
            # the plane CAI of a P016 frame is malformed ('|u2', strides (W, 1, 1)): a refusal, or
            # if it is ever fixed, the right codes; never a wrong view
            shown = [dict(view.__cuda_array_interface__) for view in decoded.cuda()]
            try:
                planes = gi.GpuFrame.from_planes(decoded.cuda(), format="P010", colour=clip.colour)
            except gi.GpuImageError:
                return
            got_y, got_uv = frame_planes(planes)
            assert np.array_equal(got_y, want_y), (
                f"P016 CAI {shown}: wrong luma: {differences(got_y, want_y)}"
            )
            assert np.array_equal(got_uv, want_uv), f"P016 CAI {shown}: wrong chroma"

    nvdec_frames(nvc, clip, check)


# -- ordering: the decoder's stream is not the consumer's (child process) ---------------------------


def ordering_scenario(path: str, route: str) -> dict[str, Any]:
    """Decode on a stream of the decoder's own, delayed before each packet; read every frame on
    another stream (torch's current): its luma plane and ``to_image``, compared with PyAV's decode.

    Routes: ``planes`` (``from_planes(..., stream=decoder)``), ``dlpack`` (no stream: the frame
    waits on the legacy default stream, where gpuimage asks for it), ``dlpack-stream``."""
    nvc = _require("PyNvVideoCodec")
    clip = read_clip(Path(path), 8)
    decoder, consumer = torch.cuda.Stream(), torch.cuda.Stream()
    given = None if route == "dlpack" else decoder
    report: dict[str, Any] = {"route": route, "decoder_stream": int(decoder.cuda_stream), "bad": []}

    def delay() -> None:
        with torch.cuda.stream(decoder):
            torch.cuda._sleep(SLEEP_CYCLES)

    def check(index: int, decoded: Any) -> None:
        report["cai_stream"] = decoded.cuda()[0].__cuda_array_interface__.get("stream")
        frame = wrap(decoded, "dlpack" if route.startswith("dlpack") else "planes", clip, given)
        report.setdefault("frame_streams", []).append(frame.stream)
        with torch.cuda.stream(consumer):
            luma = host(frame.planes[0].as_torch())[..., 0]
            rgb = host(frame.to_image(layout="HWC", dtype="uint8", order="RGB").as_torch())
        want_y, want_uv = clip.planes[index]
        reference = yuv_to_rgb([want_y, want_uv], "NV12", clip.colour)
        if not np.array_equal(luma, want_y):
            report["bad"].append(f"frame {index} luma: {differences(luma, want_y)}")
        if np.abs(rgb.astype(np.int16) - reference).max() > 1:
            report["bad"].append(f"frame {index} to_image: {differences(rgb, reference)}")

    nvdec_frames(nvc, clip, check, stream=decoder, before_packet=delay)
    return report


def _child_environment() -> dict[str, str]:
    source_root = str(Path(gi.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    return env


@pytest.mark.parametrize("route", ["planes", "dlpack", "dlpack-stream"])
def test_frames_of_a_decoder_on_its_own_stream_are_ordered_for_another_stream(
    nvc: Any, h264_clip: Clip, route: str
) -> None:
    command = [sys.executable, __file__, "ordering", str(h264_clip.path), route]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=_child_environment(), timeout=150, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the ordering scenario did not finish in {exc.timeout} s: {exc.stdout!r}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    died = (
        f"the ordering scenario died (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    assert done.returncode == 0, died
    assert lines, died
    report = json.loads(lines[-1])
    assert not report["bad"], f"{route}: data read before the decoder wrote it? {report['bad'][:5]}"
    if route != "dlpack":  # the caller named the decoder's stream: every frame is ready there
        assert set(report["frame_streams"]) == {report["decoder_stream"]}, json.dumps(report)
    # PyNvVideoCodec 2.2.4 exports 2 (per-thread default) for a decoder's own stream, never the
    # stream itself: wrapping its planes without stream= would order on the wrong stream
    assert report["cai_stream"] == 2, f"PyNvVideoCodec's CAI stream changed: {json.dumps(report)}"


# -- CV-CUDA ------------------------------------------------------------------------------------------


def _cvcuda() -> tuple[Any, Any]:
    """CV-CUDA's module with ``as_tensor``, and the one with ``as_image`` and ``Format``."""
    cvcuda = _require("cvcuda")
    if hasattr(cvcuda, "as_image") and hasattr(cvcuda, "Format"):
        return cvcuda, cvcuda
    return cvcuda, _require("nvcv")


def device_frame(clip: Clip, index: int) -> tuple[Any, Any]:
    """PyAV's planes of frame ``index`` uploaded as torch tensors: Y ``(H, W)``, UV ``(H/2, W/2, 2)``."""
    y, uv = clip.planes[index]
    return torch.from_numpy(y).cuda(), torch.from_numpy(uv).cuda()


def test_cvcuda_nv12_image_wraps_without_copying(h264_clip: Clip) -> None:
    _, nvcv = _cvcuda()
    clip = h264_clip
    for index in (0, 31):
        y_t, uv_t = device_frame(clip, index)
        torch.cuda.synchronize()  # CV-CUDA's import does not order streams
        image, refused = None, []
        for name in ("NV12", "NV12_ER"):  # limited range first; the layout is the same
            try:
                image = nvcv.as_image([y_t, uv_t], getattr(nvcv.Format, name))
                break
            except Exception as exc:
                refused.append(f"{name}: {type(exc).__name__}: {exc}")
        assert image is not None, f"as_image([Y (H, W), UV (H/2, W/2, 2)]) refused: {refused}"
        assert (image.width, image.height) == (WIDTH, HEIGHT), repr(image)
        exported = image.cuda()
        if isinstance(exported, list | tuple):
            frame = gi.GpuFrame.from_planes(list(exported), format="NV12", colour=clip.colour)
        else:  # one (1.5 H, W) buffer
            frame = gi.GpuFrame.from_dlpack(exported, format="NV12", colour=clip.colour)
        assert [plane.ptr for plane in frame.planes] == [y_t.data_ptr(), uv_t.data_ptr()], (
            f"{frame!r} from {image!r} ({type(exported).__name__}): a copy?"
        )
        rgb = host(frame.to_image(layout="HWC", dtype="uint8", order="RGB").as_torch())
        reference = yuv_to_rgb(list(clip.planes[index]), "NV12", clip.colour)
        assert_within(rgb, reference, 1, f"frame {index} of a CV-CUDA NV12 image")


def test_cvcuda_reads_a_normalize_batch_output_in_place(h264_clip: Clip) -> None:
    cvcuda, _ = _cvcuda()
    clip = h264_clip
    y_t, uv_t = device_frame(clip, 5)
    frame = gi.GpuFrame.from_planes([y_t, uv_t], format="NV12", colour=clip.colour)
    batch = gi.GpuBatch.empty(len(ROIS), 64, 64, 3, "float32", layout="NCHW")
    gi.normalize_batch([frame] * len(ROIS), MEAN, STD, rois=ROIS, size=(64, 64), resize="bilinear", out=batch)
    torch.cuda.synchronize()  # CV-CUDA ignores the CAI stream
    tensor = cvcuda.as_tensor(batch, "NCHW")
    assert tuple(tensor.shape) == (len(ROIS), 3, 64, 64), f"{tensor.shape} {tensor.layout}"
    assert "NCHW" in str(tensor.layout), tensor.layout
    assert data_pointer(tensor.cuda()) == batch.ptr, "cvcuda.as_tensor(batch) copied the batch"
    target = torch.full((len(ROIS), 64, 64, 3), float("nan"), dtype=torch.float32, device="cuda")
    cvcuda.reformat_into(cvcuda.as_tensor(target, "NHWC"), tensor)  # CV-CUDA reads our memory
    torch.cuda.synchronize()
    got, want = host(target), host(batch.as_torch().permute(0, 2, 3, 1))
    assert np.array_equal(got, want), f"CV-CUDA read another batch: {differences(got, want)}"


def data_pointer(exported: object) -> int:
    """The address of what a CV-CUDA ``.cuda()`` returns (CAI, else DLPack through torch)."""
    interface = getattr(exported, "__cuda_array_interface__", None)
    if isinstance(interface, dict):
        return int(interface["data"][0])
    return int(torch_from_dlpack(exported).data_ptr())


if __name__ == "__main__":  # the child process of the ordering test
    if sys.argv[1:2] == ["ordering"]:
        print(json.dumps(ordering_scenario(sys.argv[2], sys.argv[3])), flush=True)
