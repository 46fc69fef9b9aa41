"""The NumPy frame executor (``_host_frames`` through ``_host_convert.EXECUTOR``): ``_sampling``'s
definition against OpenCV (``resize`` INTER_LINEAR / INTER_NEAREST_EXACT, ``cvtColor``), against
``_colour.yuv_to_rgb``, and the whole crop + resize + letterbox + normalize against a pipeline of
OpenCV steps built here."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frame_cases import YUV_FORMATS, host_batch, random_planes, recipe, source_of
from gpuimage import BoundsError
from gpuimage._colour import yuv_to_rgb
from gpuimage._executor import Executor
from gpuimage._formats import ColorSpec, PixelFormat
from gpuimage._host_convert import EXECUTOR
from gpuimage._sampling import ResizeMode

cv2 = pytest.importorskip("cv2")

Array = npt.NDArray[Any]


def run(
    sources: list[Any], sample: Any, dtype: str = "float32", layout: str = "HWC", spare: int = 0
) -> Array:
    """Every item through the NumPy executor into a fresh host batch; the batch (N, ...)."""
    channels = len(sample.order.value)
    batch, target, pitch = host_batch(
        len(sources), sample.height, sample.width, channels, dtype, layout, spare
    )
    EXECUTOR.convert_frames(sources, target, pitch, sample, 0)
    return np.array(batch)


def test_the_host_executor_has_convert_frames() -> None:
    executor: Executor = EXECUTOR  # mypy and pyright check the protocol here
    assert callable(executor.convert_frames)


def _off_ties(out_len: int, in_len: int) -> Array:
    """The output indices whose nearest centre is not exactly on a pixel boundary (bool mask)."""
    return np.array([((2 * d + 1) * in_len) % (2 * out_len) != 0 for d in range(out_len)])


SIZES = [(1, 1), (1, 5), (3, 7), (7, 3), (5, 5), (16, 9), (33, 17), (9, 40), (2, 31)]


@pytest.mark.parametrize(("out_w", "out_h"), SIZES)
@pytest.mark.parametrize("region", [(0, 0, 13, 11), (3, 2, 1, 1), (5, 4, 7, 1), (1, 7, 2, 5)])
def test_bilinear_is_opencv_inter_linear(out_w: int, out_h: int, region: tuple[int, int, int, int]) -> None:
    rng = np.random.default_rng(out_w * 100 + out_h)
    image = rng.random((12, 14, 3), dtype=np.float32)
    got = run([source_of([image], PixelFormat.RGB, region=region)], recipe(out_h, out_w))[0]
    x, y, w, h = region
    want = cv2.resize(image[y : y + h, x : x + w], (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(got, want.reshape(got.shape), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("out_w", "out_h"), SIZES)
@pytest.mark.parametrize("region", [(0, 0, 13, 11), (3, 2, 1, 1), (5, 4, 7, 1), (1, 7, 2, 5)])
def test_nearest_is_opencv_inter_nearest_exact(
    out_w: int, out_h: int, region: tuple[int, int, int, int]
) -> None:
    x, y, w, h = region
    image = np.random.default_rng(3).random((12, 14, 3), dtype=np.float32)
    got = run([source_of([image], PixelFormat.BGR, region=region)], recipe(out_h, out_w, resize="nearest"))[0]
    want = cv2.resize(image[y : y + h, x : x + w], (out_w, out_h), interpolation=cv2.INTER_NEAREST_EXACT)
    # where a centre falls on a pixel boundary, OpenCV's 16-bit fixed point may pick either pixel
    rows, cols = _off_ties(out_h, h), _off_ties(out_w, w)
    want = want.reshape(got.shape)[..., ::-1]  # a BGR source into an RGB output
    assert np.array_equal(got[np.ix_(rows, cols)], want[np.ix_(rows, cols)])


@given(out_len=st.integers(1, 60), in_len=st.integers(1, 60))
@settings(max_examples=60, deadline=None)
def test_nearest_matches_opencv_off_ties_on_any_sizes(out_len: int, in_len: int) -> None:
    row = np.arange(in_len, dtype=np.float32)[None, :, None].repeat(2, 0).repeat(3, 2)
    got = run([source_of([row], PixelFormat.RGB)], recipe(2, out_len, resize="nearest"))[0, 0, :, 0]
    want = cv2.resize(row, (out_len, 2), interpolation=cv2.INTER_NEAREST_EXACT)[0, :, 0]
    off_ties = _off_ties(out_len, in_len)
    assert np.array_equal(got[off_ties], want[off_ties])


def _nv12(rng: np.random.Generator, width: int, height: int) -> tuple[Array, Array]:
    luma = rng.integers(16, 256, (height, width, 1), dtype=np.uint8)  # OpenCV clamps codes below 16
    return luma, rng.integers(0, 256, (height // 2, width // 2, 2), dtype=np.uint8)


def test_nv12_bt601_limited_is_opencv_cvtcolor_within_one() -> None:
    rng = np.random.default_rng(1)
    luma, chroma = _nv12(rng, 34, 18)
    got = run([source_of([luma, chroma], PixelFormat.NV12)], recipe(18, 34, factors=(255.0,) * 3), "uint8")[0]
    packed = np.concatenate([luma[..., 0], chroma.reshape(9, 34)])
    want = cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_NV12)
    assert np.abs(got.astype(int) - want).max() <= 1


@pytest.mark.parametrize("format", YUV_FORMATS)
@pytest.mark.parametrize("colour", [("BT601", "LIMITED"), ("BT709", "FULL"), ("BT2020", "LIMITED")])
@pytest.mark.parametrize("order", ["RGB", "BGRA"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_the_identity_resize_is_the_colour_reference_exactly(
    format: PixelFormat, colour: tuple[str, str], order: str, mode: ResizeMode
) -> None:
    planes = random_planes(np.random.default_rng(2), format, 10, 6)
    spec = ColorSpec(matrix=colour[0], range=colour[1])  # type: ignore[arg-type]
    source = source_of(planes, format, spec)
    channels = len(order)
    as_uint8 = run([source], recipe(6, 10, resize=mode, order=order, factors=(255.0,) * channels), "uint8")[0]
    assert np.array_equal(as_uint8, yuv_to_rgb(planes, format, spec, order=order, dtype="uint8"))  # type: ignore[arg-type]
    as_float = run([source], recipe(6, 10, resize=mode, order=order), "float32")[0]
    assert np.array_equal(as_float, yuv_to_rgb(planes, format, spec, order=order, dtype="float32"))  # type: ignore[arg-type]


def _reference_batch_item(
    rgb: Array, region: tuple[int, int, int, int], size: tuple[int, int], mean: Array, std: Array, pad: float
) -> Array:
    """crop -> cv2.resize (keep aspect) -> normalize -> centred on a pad canvas, CHW float32."""
    x, y, w, h = region
    out_h, out_w = size
    scale = min(out_w / w, out_h / h)
    pw, ph = min(out_w, max(1, round(w * scale))), min(out_h, max(1, round(h * scale)))
    resized = cv2.resize(rgb[y : y + h, x : x + w], (pw, ph), interpolation=cv2.INTER_LINEAR).reshape(
        ph, pw, 3
    )
    canvas = np.full((out_h, out_w, 3), pad, np.float32)
    top, left = (out_h - ph) // 2, (out_w - pw) // 2
    canvas[top : top + ph, left : left + pw] = (resized - mean) / std
    return canvas.transpose(2, 0, 1)


@pytest.mark.parametrize(
    "region", [(0, 0, 64, 48), (7, 3, 21, 30), (13, 9, 50, 11), (5, 5, 1, 1), (31, 1, 3, 40)]
)
@pytest.mark.parametrize("size", [(24, 32), (57, 31)])
def test_crop_resize_letterbox_normalize_of_an_nv12_frame(
    region: tuple[int, int, int, int], size: tuple[int, int]
) -> None:
    rng = np.random.default_rng(sum(region))
    luma, chroma = _nv12(rng, 64, 48)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    sample = recipe(*size, keep_aspect=True, factors=tuple(1 / std), shifts=tuple(-mean / std), pad=-1.5)
    source = source_of([luma, chroma], PixelFormat.NV12, region=region)
    got = run([source, source._replace(region=(0, 0, 64, 48))], sample, "float32", "CHW", spare=12)
    # the colour step from the reference (float32), then OpenCV's resize
    rgb = yuv_to_rgb([luma, chroma], "NV12", ColorSpec(matrix="BT601", range="LIMITED"), dtype="float32")
    for item, item_region in enumerate([region, (0, 0, 64, 48)]):
        want = _reference_batch_item(rgb, item_region, size, mean, std, -1.5)
        np.testing.assert_allclose(got[item], want, atol=1e-4, rtol=0)
    # the colour step from OpenCV (8-bit rounded: within 1.5 codes, in units of std)
    packed = np.concatenate([luma[..., 0], chroma.reshape(24, 64)])
    rgb8 = cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_NV12).astype(np.float32) / 255
    want = _reference_batch_item(rgb8, region, size, mean, std, -1.5)
    np.testing.assert_allclose(got[0], want, atol=1.5 / 255 / 0.224, rtol=0)


def test_chroma_at_odd_offsets_is_read_from_the_whole_frame() -> None:
    planes = random_planes(np.random.default_rng(4), PixelFormat.I420, 8, 8)
    whole = run([source_of(planes, PixelFormat.I420)], recipe(8, 8))[0]
    part = run([source_of(planes, PixelFormat.I420, region=(3, 1, 3, 5))], recipe(5, 3))[0]
    assert np.array_equal(part, whole[1:6, 3:6])


def test_packed_sources_scale_their_codes_and_keep_their_alpha() -> None:
    rng = np.random.default_rng(5)
    bgra16 = random_planes(rng, PixelFormat.BGRA, 4, 3, "uint16")
    got = run([source_of(bgra16, PixelFormat.BGRA)], recipe(3, 4, order="RGBA"))[0]
    np.testing.assert_allclose(got, bgra16[0][..., [2, 1, 0, 3]] / 65535, atol=1e-7)
    gray = random_planes(rng, PixelFormat.GRAY, 4, 3)
    got = run([source_of(gray, PixelFormat.GRAY)], recipe(3, 4, order="BGRA"))[0]
    np.testing.assert_allclose(got[..., :3], np.repeat(gray[0] / 255, 3, axis=2), atol=1e-7)
    assert np.all(got[..., 3] == 1.0)  # no alpha in the source: 1
    floats = [np.array([[[-0.5, 2.0, 0.25]]], np.float32)]  # floats are taken as they are: no clip
    assert run([source_of(floats, PixelFormat.RGB)], recipe(1, 1))[0].tolist() == [[[-0.5, 2.0, 0.25]]]


def test_p010_ignores_the_low_bits() -> None:
    rng = np.random.default_rng(6)
    planes = random_planes(rng, PixelFormat.P010, 6, 4)
    cleared = [plane & np.uint16(0xFFC0) for plane in planes]
    first = run([source_of(planes, PixelFormat.P010)], recipe(3, 5))
    assert np.array_equal(first, run([source_of(cleared, PixelFormat.P010)], recipe(3, 5)))


def test_uint8_outputs_round_half_to_even_and_saturate_pads_too() -> None:
    image = [np.array([[[0.5, 1.5, 2.5]]], np.float32)]
    out = run([source_of(image, PixelFormat.RGB)], recipe(1, 1, shifts=(0.0, 0.0, 300.0)), "uint8")[0]
    assert out.tolist() == [[[0, 2, 255]]]
    letterboxed = recipe(3, 3, keep_aspect=True, pad=2.5)
    out = run([source_of([np.zeros((1, 3, 3), np.float32)], PixelFormat.RGB)], letterboxed, "uint8")[0]
    assert out[0].tolist() == [[2] * 3] * 3
    assert out[1].tolist() == [[0] * 3] * 3
    assert out[2].tolist() == [[2] * 3] * 3


def test_half_and_bfloat16_outputs_round_once_to_nearest_even() -> None:
    values = np.random.default_rng(7).random((5, 6, 3))
    image = [values.astype(np.float64)]
    halves = run([source_of(image, PixelFormat.RGB)], recipe(5, 6), "float16")[0]
    assert np.array_equal(halves, values.astype(np.float16))
    bits = run([source_of(image, PixelFormat.RGB)], recipe(5, 6), "bfloat16")[0]
    torch = pytest.importorskip("torch")
    want = (
        torch.from_numpy(values.astype(np.float32))
        .to(torch.bfloat16)
        .view(torch.int16)
        .numpy()
        .view(np.uint16)
    )
    assert np.array_equal(bits, want)


def test_layouts_and_item_pitch_hold_the_same_values() -> None:
    planes = random_planes(np.random.default_rng(8), PixelFormat.NV16, 10, 6)
    sources = [source_of(planes, PixelFormat.NV16, region=r) for r in [(0, 0, 10, 6), (2, 1, 5, 5)]]
    sample = recipe(4, 7, keep_aspect=True, pad=9.0)
    hwc = run(sources, sample, "float32", "HWC")
    chw = run(sources, sample, "float32", "CHW", spare=40)
    assert np.array_equal(hwc.transpose(0, 3, 1, 2), chw)


def test_refusals_come_before_any_write() -> None:
    image = [np.zeros((4, 4, 3), np.uint8)]
    batch, target, pitch = host_batch(1, 2, 2, 3, "float32")
    with pytest.raises(BoundsError, match="inside the 4x4 frame"):
        EXECUTOR.convert_frames(
            [source_of(image, PixelFormat.RGB, region=(3, 3, 2, 2))], target, pitch, recipe(2, 2), 0
        )
    assert np.all(batch.view(np.uint8) == 77)
