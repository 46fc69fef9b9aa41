"""``normalize_batch`` over frames and with ``resize=`` on CPU: host NV12 frames and images against a
pipeline built from the definition's parts (``yuv_to_rgb``, ``cv2.resize``), and every refusal."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

import gpuimage as gi
from gpuimage import ColorSpec, GpuFrame, GpuImage, LayoutError, SpecError
from gpuimage._colour import yuv_to_rgb

BT709 = ColorSpec(matrix="BT709", range="LIMITED")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _frame(height: int = 24, width: int = 32) -> tuple[GpuFrame, npt.NDArray[np.float32]]:
    rng = np.random.default_rng(7)
    luma = rng.integers(0, 256, (height, width), dtype=np.uint8)
    chroma = rng.integers(0, 256, (height // 2, width // 2, 2), dtype=np.uint8)
    rgb = yuv_to_rgb([luma, chroma], "NV12", BT709, dtype="float32")
    return GpuFrame.from_planes([luma[..., None], chroma], format="NV12", colour=BT709), rgb


def _expected(
    rgb: npt.NDArray[Any], roi: tuple[int, int, int, int], size: tuple[int, int]
) -> npt.NDArray[Any]:
    x, y, width, height = roi
    crop = np.ascontiguousarray(rgb[y : y + height, x : x + width])
    resized = cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return ((resized - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)


def test_frames_are_cropped_resized_and_normalized_as_opencv_would() -> None:
    frame, rgb = _frame()
    rois = [(0, 0, 32, 24), (3, 5, 11, 7), (20, 1, 12, 23)]
    batch = gi.normalize_batch(
        [frame] * 3, MEAN, STD, rois=rois, size=(16, 12), resize="bilinear", like="numpy"
    )
    assert batch.shape == (3, 3, 16, 12)
    for index, roi in enumerate(rois):
        np.testing.assert_allclose(batch[index], _expected(rgb, roi, (16, 12)), atol=2e-5)


def test_bgr_order_and_a_letterbox() -> None:
    frame, rgb = _frame()
    batch = gi.normalize_batch(
        [frame],
        0.0,
        1.0,
        rois=[(0, 0, 32, 16)],
        size=(8, 8),
        resize="bilinear",
        keep_aspect=True,
        pad_value=-9.0,
        order="BGR",
        like="numpy",
    )
    expected = cv2.resize(np.ascontiguousarray(rgb[:16]), (8, 4), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(batch[0, :, :2], -9.0)
    np.testing.assert_array_equal(batch[0, :, 6:], -9.0)
    np.testing.assert_allclose(batch[0, :, 2:6], expected[..., ::-1].transpose(2, 0, 1), atol=2e-5)


def test_images_take_the_same_path_with_resize() -> None:
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
    image = GpuImage.from_numpy(array, layout="HWC")
    batch = gi.normalize_batch(
        [image], MEAN, STD, size=(5, 7), resize="bilinear", reverse_channels=True, like="numpy"
    )
    resized = cv2.resize(array.astype(np.float32) / 255, (7, 5), interpolation=cv2.INTER_LINEAR)[..., ::-1]
    expected = ((resized - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)
    np.testing.assert_allclose(batch[0], expected, atol=2e-5)


def test_frames_without_resize_must_match_the_size() -> None:
    frame, rgb = _frame()
    batch = gi.normalize_batch([frame, frame], 0.0, 1.0, rois=[(0, 0, 4, 2), (6, 2, 4, 2)], like="numpy")
    np.testing.assert_allclose(batch[1], rgb[2:4, 6:10].transpose(2, 0, 1), atol=1e-6)
    with pytest.raises(SpecError, match=r"without resize=.*resize='bilinear'"):
        gi.normalize_batch([frame, frame], 0.0, 1.0, rois=[(0, 0, 4, 2), (0, 0, 4, 4)], like="numpy")


def test_refusals() -> None:
    frame, _ = _frame()
    image = GpuImage.from_numpy(np.zeros((4, 4, 3), np.uint8), layout="HWC")
    gray = GpuImage.from_numpy(np.zeros((4, 4, 1), np.uint8), layout="HWC")
    with pytest.raises(SpecError, match=r"expected size=.*with resize='nearest'"):
        gi.normalize_batch([frame], 0.0, 1.0, resize="nearest", like="numpy")
    with pytest.raises(SpecError, match="tuple of positive ints"):
        gi.normalize_batch([frame], 0.0, 1.0, resize="nearest", size=(0, 4), like="numpy")
    with pytest.raises(LayoutError, match="channel order is recorded"):  # image: none is recorded
        gi.normalize_batch([image], 0.0, 1.0, order="BGR", like="numpy")
    with pytest.raises(SpecError, match="order='BGR' for frames"):
        gi.normalize_batch([frame], 0.0, 1.0, reverse_channels=True, like="numpy")
    with pytest.raises(SpecError, match="3- or 4-channel images"):
        gi.normalize_batch([gray], 0.0, 1.0, size=(2, 2), resize="bilinear", like="numpy")
    with pytest.raises(SpecError, match="dtype float32, float16"):
        gi.normalize_batch([frame], 0.0, 1.0, size=(2, 2), resize="bilinear", dtype="int16", like="numpy")
    with pytest.raises(SpecError, match="one format and dtype"):
        gi.normalize_batch([frame, image], 0.0, 1.0, size=(2, 2), resize="bilinear", like="numpy")
    rgba = GpuImage.from_numpy(np.zeros((4, 4, 4), np.uint8), layout="HWC")
    with pytest.raises(SpecError, match="reverse_channels=False for 4-channel images"):
        gi.normalize_batch(
            [rgba], 0.0, 1.0, size=(2, 2), resize="nearest", reverse_channels=True, like="numpy"
        )
    with pytest.raises(SpecError, match="with keep_aspect=True, got resize=None"):
        gi.normalize_batch([image], 0.0, 1.0, keep_aspect=True, like="numpy")
    out = np.zeros((1, 3, 2, 2), np.float64)
    with pytest.raises(SpecError, match="dtype float32"):
        gi.normalize_batch([frame], 0.0, 1.0, size=(2, 2), resize="bilinear", out=out)


def test_decoded_h264_frames_batch_alike_from_their_i420_and_nv12_planes() -> None:
    # real decoder output (issue 13): libx264 encodes, PyAV decodes on the CPU, both plane layouts
    av = pytest.importorskip("av")
    import io

    buffer = io.BytesIO()
    rows, columns = np.mgrid[0:64, 0:96]
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for index in range(3):
            rgb = np.stack([(columns * 2 + index * 9) % 220, rows * 3 % 200, (columns + rows) % 180], -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    rois = [(0, 0, 96, 64), (5, 3, 41, 27)]
    options: dict[str, Any] = {"rois": rois, "size": (20, 24), "resize": "bilinear", "like": "numpy"}
    with av.open(buffer) as container:
        decoded = list(container.decode(video=0))
    assert decoded
    for frame in decoded:
        i420 = frame.to_ndarray(format="yuv420p")  # (1.5H, W): Y, then U and V in half rows
        nv12 = frame.to_ndarray(format="nv12")
        from_i420 = GpuFrame.from_dlpack(i420, format="I420", colour=BT709)
        from_nv12 = GpuFrame.from_dlpack(nv12, format="NV12", colour=BT709)
        ours = gi.normalize_batch([from_i420] * 2, MEAN, STD, **options)
        theirs = gi.normalize_batch([from_nv12] * 2, MEAN, STD, **options)
        np.testing.assert_array_equal(ours, theirs)
        rgb = yuv_to_rgb([nv12[:64], nv12[64:].reshape(32, 48, 2)], "NV12", BT709, dtype="float32")
        np.testing.assert_allclose(ours[1], _expected(rgb, rois[1], (20, 24)), atol=2e-5)
