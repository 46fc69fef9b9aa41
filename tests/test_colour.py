"""The NumPy reference of YUV -> RGB: against OpenCV's cvtColor, against a float64 formula written
here from the standards' definitions, across formats of the same content, and its refusals.

OpenCV's YUV420 conversions (NV12, NV21, I420) upsample chroma by replication (each chroma sample
serves its 2x2 block), as the reference does: so they are compared on fully random chroma. OpenCV
clamps ``Y - 16`` at 0 before its matrix; the reference keeps the footroom (see ``yuv_to_rgb``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import ColorSpec, DTypeError, InteropError, SpecError
from gpuimage._colour import code_scales, ypbpr_to_rgb_matrix, yuv_to_rgb
from gpuimage._formats import ColorMatrix, ColorRange

cv2 = pytest.importorskip("cv2")

Array = npt.NDArray[Any]
BT601_LIMITED = ColorSpec(matrix="BT601", range="LIMITED")
untyped: Any = yuv_to_rgb  # for calls that break its types on purpose
SPECS = [ColorSpec(matrix=m, range=r) for m in ColorMatrix for r in ColorRange]


def _frame(seed: int, width: int, height: int, *, low: int = 0) -> tuple[Array, Array, Array]:
    """Random 8-bit Y (codes ``low`` to 255), U and V (0 to 255) at half width and height."""
    rng = np.random.default_rng(seed)
    y = rng.integers(low, 256, (height, width), dtype=np.uint8)
    u = rng.integers(0, 256, (height // 2, width // 2), dtype=np.uint8)
    v = rng.integers(0, 256, (height // 2, width // 2), dtype=np.uint8)
    return y, u, v


def _opencv(y: Array, u: Array, v: Array, layout: str, code: int) -> Array:
    """OpenCV's input for its YUV420 codes: one (1.5H, W) uint8 buffer."""
    height, width = y.shape
    if layout == "I420":
        chroma = np.concatenate([u.ravel(), v.ravel()])
    else:
        chroma = np.stack([u, v] if layout == "NV12" else [v, u], axis=-1).ravel()
    result: Array = cv2.cvtColor(np.concatenate([y.ravel(), chroma]).reshape(height * 3 // 2, width), code)
    return result


def _planes(y: Array, u: Array, v: Array, layout: str) -> list[Array]:
    if layout == "I420":
        return [y, u, v]
    return [y, np.stack([u, v] if layout == "NV12" else [v, u], axis=-1)]


sizes = st.tuples(st.integers(1, 24), st.integers(1, 24)).map(lambda half: (2 * half[0], 2 * half[1]))
CODES = {
    ("NV12", "RGB"): "COLOR_YUV2RGB_NV12",
    ("NV12", "BGR"): "COLOR_YUV2BGR_NV12",
    ("NV12", "RGBA"): "COLOR_YUV2RGBA_NV12",
    ("NV21", "RGB"): "COLOR_YUV2RGB_NV21",
    ("NV21", "BGRA"): "COLOR_YUV2BGRA_NV21",
    ("I420", "RGB"): "COLOR_YUV2RGB_I420",
    ("I420", "BGR"): "COLOR_YUV2BGR_I420",
}


@pytest.mark.parametrize(("layout", "order"), sorted(CODES))
@given(seed=st.integers(0, 2**32 - 1), size=sizes)
def test_matches_opencv_within_one_where_luma_is_16_or_more(
    layout: str, order: str, seed: int, size: tuple[int, int]
) -> None:
    y, u, v = _frame(seed, *size, low=16)
    expected = _opencv(y, u, v, layout, getattr(cv2, CODES[layout, order]))
    ours = yuv_to_rgb(_planes(y, u, v, layout), layout, BT601_LIMITED, order=order)  # type: ignore[arg-type]
    assert ours.shape == expected.shape
    assert np.abs(ours.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("layout", ["NV12", "NV21", "I420"])
def test_off_by_one_is_rare_against_opencv(layout: str) -> None:
    y, u, v = _frame(7, 256, 128, low=16)
    code = getattr(cv2, f"COLOR_YUV2RGB_{layout}")
    ours = yuv_to_rgb(_planes(y, u, v, layout), layout, BT601_LIMITED)  # type: ignore[arg-type]
    difference = np.abs(ours.astype(int) - _opencv(y, u, v, layout, code))
    assert difference.max() == 1
    assert (difference == 1).mean() < 0.06  # measured: about 3.4% (rounded coefficients, half up)


@given(seed=st.integers(0, 2**32 - 1), size=sizes)
def test_below_16_opencv_differs_only_by_its_luma_clamp(seed: int, size: tuple[int, int]) -> None:
    y, u, v = _frame(seed, *size)
    expected = _opencv(y, u, v, "NV12", cv2.COLOR_YUV2RGB_NV12)
    clamped = yuv_to_rgb(_planes(np.maximum(y, 16), u, v, "NV12"), "NV12", BT601_LIMITED)
    assert np.abs(clamped.astype(int) - expected).max() <= 1


def test_the_footroom_is_kept_where_opencv_clamps_it() -> None:
    y = np.zeros((2, 2), np.uint8)
    uv = np.array([[[128, 255]]], np.uint8)  # strong red on a luma code of 0
    ours = yuv_to_rgb([y, uv], "NV12", BT601_LIMITED)
    theirs = cv2.cvtColor(np.concatenate([y, uv.reshape(1, 2)]), cv2.COLOR_YUV2RGB_NV12)
    red = 255 * (-16 / 219 + 1.402 * 127 / 224)  # 184.4
    assert ours[0, 0, 0] == round(red) == 184
    assert theirs[0, 0, 0] == 203  # OpenCV computes (0 - 16) as 0


@given(seed=st.integers(0, 2**32 - 1), size=sizes)
def test_full_range_bt601_444_matches_opencv_ycrcb(seed: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(seed)
    y, u, v = (rng.integers(0, 256, size[::-1], dtype=np.uint8) for _ in range(3))
    expected = cv2.cvtColor(np.dstack([y, v, u]), cv2.COLOR_YCrCb2RGB)  # JPEG's full-range BT.601
    ours = yuv_to_rgb([y, u, v], "YUV444", ColorSpec(matrix="BT601", range="FULL"))
    assert np.abs(ours.astype(int) - expected).max() <= 1


# -- against the definitions ---------------------------------------------------------------------

# The luma weights as the standards print them: BT.601-7 2.5.1, BT.709-6 3.2, BT.2020-2 table 4.
KR_KB = {
    ColorMatrix.BT601: (0.299, 0.114),
    ColorMatrix.BT709: (0.2126, 0.0722),
    ColorMatrix.BT2020: (0.2627, 0.0593),
}


def _independent(y: Array, u: Array, v: Array, spec: ColorSpec, bits: int) -> Array:
    """R'G'B' in [0, 1], float64: the codes scaled as the standards define them, then the inverse of
    the forward matrix (R'G'B' -> Y'PbPr) computed numerically."""
    kr, kb = KR_KB[spec.matrix]
    forward = np.array(
        [
            [kr, 1 - kr - kb, kb],  # Y' = Kr R + Kg G + Kb B
            [-kr / (2 - 2 * kb), -(1 - kr - kb) / (2 - 2 * kb), 0.5],  # Pb = (B - Y') / (2 - 2 Kb)
            [0.5, -(1 - kr - kb) / (2 - 2 * kr), -kb / (2 - 2 * kr)],  # Pr = (R - Y') / (2 - 2 Kr)
        ]
    )
    if spec.range is ColorRange.LIMITED:  # BT.709-6 table 4.6: D = (219 E + 16) * 2**(n-8)
        scale = 2.0 ** (bits - 8)
        ypbpr = np.stack([(y / scale - 16) / 219, (u / scale - 128) / 224, (v / scale - 128) / 224])
    else:  # BT.2100 full range: D = (2**n - 1) E (+ 2**(n-1) for colour differences)
        top = 2.0**bits - 1
        ypbpr = np.stack([y / top, (u - 2.0 ** (bits - 1)) / top, (v - 2.0 ** (bits - 1)) / top])
    rgb = np.einsum("ij,jhw->hwi", np.linalg.inv(forward), ypbpr)
    clipped: Array = np.clip(rgb, 0.0, 1.0)
    return clipped


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: f"{spec.matrix.value}-{spec.range.value}")
@given(seed=st.integers(0, 2**32 - 1), size=sizes)
def test_every_matrix_and_range_match_the_definition(
    spec: ColorSpec, seed: int, size: tuple[int, int]
) -> None:
    rng = np.random.default_rng(seed)
    y, u, v = (rng.integers(0, 256, size[::-1], dtype=np.uint8) for _ in range(3))
    expected = _independent(y.astype(float), u.astype(float), v.astype(float), spec, 8)
    floats = yuv_to_rgb([y, u, v], "YUV444", spec, dtype="float32")
    assert floats.dtype == np.float32
    np.testing.assert_allclose(floats, expected, rtol=0, atol=1e-6)
    bytes_ = yuv_to_rgb([y, u, v], "YUV444", spec, order="BGR")[..., ::-1]
    scaled = expected * 255
    wrong = bytes_ != np.rint(scaled)
    # only at exact halves (full-range BT.601: 1.772 * 125 = 221.5), where float64 errors pick the side
    assert np.abs(bytes_[wrong] - scaled[wrong]) == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize(
    ("matrix", "published"),
    [  # 8-bit limited range, Y' and colour-difference codes to R'G'B' codes, as commonly tabulated
        (ColorMatrix.BT601, (1.164384, 1.596027, -0.391762, -0.812968, 2.017232)),
        (ColorMatrix.BT709, (1.164384, 1.792741, -0.213249, -0.532909, 2.112402)),
        (ColorMatrix.BT2020, (1.164384, 1.678674, -0.187326, -0.650424, 2.141772)),
    ],
)
def test_limited_range_coefficients_are_the_published_ones(
    matrix: ColorMatrix, published: tuple[float, ...]
) -> None:
    (_, _, r_pr), (_, g_pb, g_pr), (_, b_pb, _) = ypbpr_to_rgb_matrix(matrix)
    scales = code_scales(ColorRange.LIMITED, 8)
    luma = 255 / scales.luma_scale
    chroma = 255 / scales.chroma_scale
    ours = (luma, r_pr * chroma, g_pb * chroma, g_pr * chroma, b_pb * chroma)
    np.testing.assert_allclose(ours, published, atol=2e-6)


def test_ten_and_sixteen_bit_limited_ranges() -> None:
    assert code_scales(ColorRange.LIMITED, 10) == (64, 876, 512, 896)  # 64..940, 64..960
    assert code_scales(ColorRange.LIMITED, 16) == (4096, 56064, 32768, 57344)
    assert code_scales(ColorRange.FULL, 10) == (0, 1023, 512, 1023)


# -- formats of the same content -------------------------------------------------------------------


def _upsampled(plane: Array, sx: int, sy: int) -> Array:
    """Each sample replicated over its sy x sx block (np.kron: no shared code with the reference)."""
    return np.kron(plane, np.ones((sy, sx), dtype=plane.dtype))


@pytest.mark.parametrize("spec", SPECS[:2] + SPECS[-2:], ids=str)
@given(seed=st.integers(0, 2**32 - 1), size=sizes)
def test_subsampled_formats_equal_444_of_replicated_chroma(
    spec: ColorSpec, seed: int, size: tuple[int, int]
) -> None:
    y, u, v = _frame(seed, *size)
    reference = yuv_to_rgb([y, _upsampled(u, 2, 2), _upsampled(v, 2, 2)], "YUV444", spec)
    assert np.array_equal(yuv_to_rgb([y, np.dstack([u, v])], "NV12", spec), reference)
    assert np.array_equal(yuv_to_rgb([y, np.dstack([v, u])], "NV21", spec), reference)
    assert np.array_equal(yuv_to_rgb([y, u, v], "I420", spec), reference)
    # 4:2:2: each chroma sample covers two pixels of one row
    rows_u, rows_v = _upsampled(u, 1, 2), _upsampled(v, 1, 2)  # full-height chroma of half width
    nv16 = yuv_to_rgb([y, np.dstack([rows_u, rows_v])], "NV16", spec)
    assert np.array_equal(
        nv16, yuv_to_rgb([y, _upsampled(rows_u, 2, 1), _upsampled(rows_v, 2, 1)], "YUV444", spec)
    )


@given(seed=st.integers(0, 2**32 - 1), size=sizes, junk=st.booleans())
def test_p010_and_p016_of_nv12_content_convert_alike(seed: int, size: tuple[int, int], junk: bool) -> None:
    y, u, v = _frame(seed, *size)
    nv12 = [y, np.dstack([u, v])]
    # 10-bit codes of the same content (v10 = v8 * 4), stored in the high bits (P010)
    p010 = [plane.astype(np.uint16) << 8 for plane in nv12]
    if junk:  # the low 6 bits are ignored
        rng = np.random.default_rng(seed + 1)
        p010 = [plane | rng.integers(0, 64, plane.shape, dtype=np.uint16) for plane in p010]
    limited = BT601_LIMITED
    assert np.array_equal(yuv_to_rgb(p010, "P010", limited), yuv_to_rgb(nv12, "NV12", limited))
    np.testing.assert_allclose(
        yuv_to_rgb(p010, "P010", limited, dtype="float32"),
        yuv_to_rgb(nv12, "NV12", limited, dtype="float32"),
        atol=1e-6,
    )
    if not junk:  # 16-bit limited range has the same numbers as high-bit-aligned 10-bit
        assert np.array_equal(yuv_to_rgb(p010, "P016", limited), yuv_to_rgb(nv12, "NV12", limited))
    # full range: v10 / 1023 against v8 / 255, so within one step
    full = ColorSpec(matrix="BT709", range="FULL")
    difference = yuv_to_rgb(p010, "P010", full).astype(int) - yuv_to_rgb(nv12, "NV12", full)
    assert np.abs(difference).max() <= 1


def test_planes_may_be_2d_3d_or_strided_views() -> None:
    y, u, v = _frame(3, 8, 4)
    expected = yuv_to_rgb([y, u, v], "I420", BT601_LIMITED)
    assert np.array_equal(yuv_to_rgb([y[..., None], u[..., None], v], "I420", BT601_LIMITED), expected)
    pitched = np.zeros((4, 16), np.uint8)  # a pitched luma plane: 8 pixels in 16-byte rows
    pitched[:, :8] = y
    assert np.array_equal(yuv_to_rgb([pitched[:, :8], u, v], "I420", BT601_LIMITED), expected)


def test_output_shape_order_alpha_and_contiguity() -> None:
    y, u, v = _frame(4, 6, 4)
    rgb = yuv_to_rgb([y, u, v], "I420", BT601_LIMITED)
    assert rgb.shape == (4, 6, 3)
    assert rgb.dtype == np.uint8
    assert rgb.flags.c_contiguous
    bgra = yuv_to_rgb([y, u, v], "I420", BT601_LIMITED, order="BGRA")
    assert np.array_equal(bgra[..., 2::-1], rgb)
    assert (bgra[..., 3] == 255).all()
    assert (untyped([y, u, v], "I420", BT601_LIMITED, order="rgba", dtype="float32")[..., 3] == 1.0).all()


y8 = np.zeros((2, 2), np.uint8)
uv8 = np.zeros((1, 1, 2), np.uint8)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: untyped([y8], "RGB", BT601_LIMITED), SpecError, "expected a YUV format"),
        (lambda: untyped([y8], "NV12", BT601_LIMITED), SpecError, "expected 2 planes for NV12, got 1"),
        (lambda: untyped([y8, uv8], "P010", BT601_LIMITED), DTypeError, "expected uint16 planes for P010"),
        (
            lambda: untyped([y8, uv8[..., 0]], "NV12", BT601_LIMITED),
            SpecError,
            "planes[1] of shape (1, 1, 2)",
        ),
        (
            lambda: untyped([y8[:, :1], uv8], "NV12", BT601_LIMITED),
            SpecError,
            "even width for NV12, got width=1",
        ),
        (
            lambda: untyped([y8, [[1, 2]]], "NV12", BT601_LIMITED),
            InteropError,
            "got planes[1] of type list",
        ),
        (lambda: untyped(np.zeros((3, 2), np.uint8), "NV12", BT601_LIMITED), InteropError, "a sequence"),
        (lambda: untyped([y8, uv8], "NV12", "BT601"), InteropError, "gpuimage does not guess"),
        (lambda: untyped([y8, uv8], "NV12", BT601_LIMITED, order="UNKNOWN"), SpecError, "order RGB, BGR"),
        (
            lambda: untyped([y8, uv8], "NV12", BT601_LIMITED, dtype="float64"),
            DTypeError,
            "'uint8' or 'float32'",
        ),
        (lambda: untyped([y8[0], uv8], "NV12", BT601_LIMITED), SpecError, "shape (H, W)"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_refusals(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        call()
    assert str(caught.value).startswith("yuv_to_rgb(): expected ")
    assert message in str(caught.value)


# -- real decoder output: H.264 encoded and decoded on the CPU by PyAV (libx264, yuv420p) -----------


def _decoded_frames(width: int = 96, height: int = 64, count: int = 4) -> list[Any]:
    """Frames of a small clip with smooth gradients, encoded with libx264 and decoded again."""
    av = pytest.importorskip("av")
    import io

    buffer = io.BytesIO()
    rows, columns = np.mgrid[0:height, 0:width]
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for index in range(count):
            channels = [
                (columns * 2 + index * 5) % 200 + 30,
                (rows * 3) % 180 + 40,
                (columns + rows + index * 7) % 160 + 50,
            ]
            picture = av.VideoFrame.from_ndarray(np.stack(channels, -1).astype(np.uint8), format="rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as container:
        return list(container.decode(video=0))


def test_decoded_h264_frames_match_opencv_and_pyav() -> None:
    # issue 13: real NV12 and I420 frames from a decoder, not random planes. The clip says nothing of
    # its colours (unspecified matrix and range), so the test names BT.601 limited, as OpenCV and
    # swscale assume; gpuimage never guesses it.
    frames = _decoded_frames()
    assert frames
    for frame in frames:
        nv12: Array = frame.to_ndarray(format="nv12")
        i420: Array = frame.to_ndarray(format="yuv420p")
        height, width = frame.height, frame.width
        luma, chroma = nv12[:height], nv12[height:].reshape(height // 2, width // 2, 2)
        quarter = height // 4
        u = i420[height : height + quarter].reshape(height // 2, width // 2)
        v = i420[height + quarter :].reshape(height // 2, width // 2)
        from_nv12 = yuv_to_rgb([luma, chroma], "NV12", BT601_LIMITED)
        from_i420 = yuv_to_rgb([i420[:height], u, v], "I420", BT601_LIMITED)
        assert np.array_equal(from_nv12, from_i420), "one frame, two layouts, one result"
        assert luma.min() >= 16  # OpenCV clamps lower luma codes: out of this comparison's scope
        opencv = cv2.cvtColor(nv12, cv2.COLOR_YUV2RGB_NV12)
        assert np.abs(from_nv12.astype(np.int16) - opencv).max() <= 1
        # swscale's default path interpolates chroma and rounds coarser: measured max 3, mean 1.1
        pyav = np.abs(from_nv12.astype(np.int16) - frame.to_ndarray(format="rgb24"))
        assert pyav.max() <= 4
        assert pyav.mean() <= 1.5
