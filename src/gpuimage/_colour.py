"""The NumPy reference of YUV -> RGB conversion: the semantics every executor must reproduce. Host only.

The GPU kernels and the torch executor of frame conversions are tested against ``yuv_to_rgb``; its
docstring is the definition. ``ypbpr_to_rgb_matrix`` and ``code_scales`` are the constants they
share (the kernels take them as parameters, so all three compute with the same numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from ._errors import DTypeError, InteropError, SpecError
from ._formats import (
    FORMATS,
    ChannelOrder,
    ChannelOrderLike,
    ColorMatrix,
    ColorRange,
    ColorSpec,
    PixelFormatLike,
    check_frame_size,
    parse_channel_order,
    parse_pixel_format,
)

__all__ = ["KR_KB", "CodeScales", "code_scales", "ypbpr_to_rgb_matrix", "yuv_to_rgb"]

Array = npt.NDArray[Any]

KR_KB: Mapping[ColorMatrix, tuple[float, float]] = MappingProxyType(
    {
        ColorMatrix.BT601: (0.299, 0.114),  # ITU-R BT.601-7, section 2.5.1
        ColorMatrix.BT709: (0.2126, 0.0722),  # ITU-R BT.709-6, item 3.2
        ColorMatrix.BT2020: (0.2627, 0.0593),  # ITU-R BT.2020-2, table 4 (non-constant luminance)
    }
)
"""Each matrix's luma weights of red and blue, ``(Kr, Kb)``; green's is ``Kg = 1 - Kr - Kb``."""


def ypbpr_to_rgb_matrix(matrix: ColorMatrix) -> tuple[tuple[float, float, float], ...]:
    """The 3x3 matrix from ``(Y', Pb, Pr)`` (Y' in [0, 1], Pb and Pr in [-0.5, 0.5]) to R'G'B'.

    Rows R, G, B: ``R = Y' + 2(1-Kr) Pr``, ``G = Y' - 2Kb(1-Kb)/Kg Pb - 2Kr(1-Kr)/Kg Pr``,
    ``B = Y' + 2(1-Kb) Pb`` (the inverse of ``Y' = Kr R + Kg G + Kb B``, ``Pb = (B - Y') / (2(1-Kb))``,
    ``Pr = (R - Y') / (2(1-Kr))``).
    """
    kr, kb = KR_KB[matrix]
    kg = 1.0 - kr - kb
    return (
        (1.0, 0.0, 2.0 * (1.0 - kr)),
        (1.0, -2.0 * kb * (1.0 - kb) / kg, -2.0 * kr * (1.0 - kr) / kg),
        (1.0, 2.0 * (1.0 - kb), 0.0),
    )


class CodeScales(NamedTuple):
    """How N-bit codes map to Y', Pb, Pr: ``Y' = (D - luma_offset) / luma_scale``, the same for chroma."""

    luma_offset: float
    luma_scale: float
    chroma_offset: float
    chroma_scale: float


def code_scales(colour_range: ColorRange, bit_depth: int) -> CodeScales:
    """The offsets and scales of ``bit_depth``-bit codes in ``colour_range`` (BT.601/709/2020 alike).

    Limited: luma 16..235 and chroma 16..240 (centre 128) at 8 bits, times ``2**(N-8)`` at N bits
    (10 bits: 64..940, 64..960, centre 512). Full: ``Y' = D / (2**N - 1)``, ``P = (D - 2**(N-1)) /
    (2**N - 1)`` (8 bits: as JPEG's YCbCr).
    """
    if colour_range is ColorRange.LIMITED:
        step = float(2 ** (bit_depth - 8))
        return CodeScales(16.0 * step, 219.0 * step, 128.0 * step, 224.0 * step)
    top = float(2**bit_depth - 1)
    return CodeScales(0.0, top, float(2 ** (bit_depth - 1)), top)


def yuv_to_rgb(
    planes: Sequence[Array],
    format: PixelFormatLike,
    colour: ColorSpec,
    *,
    order: ChannelOrderLike = "RGB",
    dtype: Literal["uint8", "float32"] = "uint8",
) -> Array:
    """Convert host planes of a YUV frame to one interleaved ``(H, W, 3 or 4)`` R'G'B' image.

    The definition, for a frame of ``format`` (NV12, NV21, I420, P010, P016, NV16, YUV444) with
    ``N``-bit codes (8; P010: 10; P016: 16):

    1. **Codes.** Each plane's element is read as stored; P010's 10 significant bits lie in the high
       bits of each uint16, so its code is ``D = stored >> 6`` (the low 6 bits are ignored).
    2. **Chroma upsampling: nearest.** The chroma sample at ``(i, j)`` of a plane subsampled by
       ``(sy, sx)`` serves the luma pixels ``(sy*i + a, sx*j + b)`` for ``0 <= a < sy``,
       ``0 <= b < sx``: each sample covers its 2x2 block (4:2:0) or 2x1 pair (4:2:2), replicated,
       never interpolated (chroma is taken as co-sited with the block's top-left pixel, as OpenCV
       does).
    3. **Range** (``code_scales``): limited: ``Y' = (D_Y - 16k) / 219k``, ``Pb = (D_U - 128k) /
       224k``, ``Pr = (D_V - 128k) / 224k`` with ``k = 2**(N-8)``; full: ``Y' = D_Y / (2**N - 1)``,
       ``Pb = (D_U - 2**(N-1)) / (2**N - 1)``, the same for ``Pr``. Codes outside the nominal range
       (limited range's foot- and headroom) are kept as they are, not clamped.
    4. **Matrix** (``ypbpr_to_rgb_matrix``, with ``(Kr, Kb)`` of BT.601 (0.299, 0.114), BT.709
       (0.2126, 0.0722), BT.2020 (0.2627, 0.0593)): ``R = Y' + 2(1-Kr) Pr``,
       ``G = Y' - 2Kb(1-Kb)/Kg Pb - 2Kr(1-Kr)/Kg Pr``, ``B = Y' + 2(1-Kb) Pb``, in float64.
    5. **Output.** Each of R, G, B is clipped to [0, 1]. ``dtype="float32"``: that value, rounded
       to float32 (not scaled by 255). ``dtype="uint8"``: ``rint(255 * value)``, rounding half to
       even (so it saturates at 0 and 255). Channels in ``order``; the alpha of RGBA/BGRA is 255
       (uint8) or 1.0 (float32). A value exactly halfway in exact arithmetic (full range BT.601 has
       some: ``255 * 2(1-Kb) * 125/255 = 221.5``) goes to the side float64 lands on; compare other
       executors within 1 there.

    No transfer function is applied: the result is gamma-encoded R'G'B', as decoders' RGB output is.

    Parameters:
        planes: one C- or arbitrarily-strided NumPy array per plane, shaped as ``plane_shapes(format,
            W, H)`` says: ``(h, w, c)``, or ``(h, w)`` for a one-channel plane. Their dtype is the
            format's (uint8; uint16 for P010 and P016). The frame's size is read off plane 0.
        format: the frame's pixel format (a YUV one).
        colour: the matrix and range; there is no default (see ``ColorSpec``).
        order: ``"RGB"``, ``"BGR"``, ``"RGBA"`` or ``"BGRA"``.
        dtype: ``"uint8"`` or ``"float32"``.

    Returns:
        A new C-contiguous ``(H, W, 3)`` (``(H, W, 4)`` with alpha) array.

    Raises:
        SpecError: a format that is not YUV, the wrong number of planes, a plane of the wrong shape,
            sizes the format's subsampling does not divide, or ``order="UNKNOWN"``.
        DTypeError: planes not of the format's dtype, or a ``dtype`` other than uint8/float32.
        InteropError: planes that are not NumPy arrays, or ``colour`` that is not a ``ColorSpec``.

    Notes:
        OpenCV's ``cvtColor(COLOR_YUV2RGB_NV12)`` (and NV21, I420) computes BT.601 limited range with
        the same nearest upsampling in 20-bit fixed point, and clamps ``D_Y - 16`` at 0 first: where
        ``D_Y >= 16`` it agrees with this reference within 1; below 16 it differs (by up to about
        19 at 8 bits), because this reference keeps the footroom.
    """
    where = "yuv_to_rgb()"
    info = FORMATS[parse_pixel_format(format, where=where)]
    if not info.is_yuv:
        raise SpecError(
            f"{where}: expected a YUV format (NV12, NV21, I420, P010, P016, NV16, YUV444), got "
            f"format={info.format.value}. A packed image needs no colour conversion: wrap it as an image."
        )
    if not isinstance(cast(object, colour), ColorSpec):  # untyped callers
        raise InteropError(
            f"{where}: expected colour to be a gpuimage.ColorSpec, got colour={colour!r}. Pass "
            "ColorSpec(matrix=..., range=...): gpuimage does not guess a frame's colours."
        )
    channel_order = parse_channel_order(order, where=where)
    if channel_order is ChannelOrder.UNKNOWN:
        raise SpecError(f"{where}: expected order RGB, BGR, RGBA or BGRA, got order={order!r}.")
    if dtype not in ("uint8", "float32"):
        raise DTypeError(f"{where}: expected dtype 'uint8' or 'float32', got dtype={dtype!r}.")
    if isinstance(planes, np.ndarray) or not isinstance(cast(object, planes), Sequence):
        raise InteropError(
            f"{where}: expected a sequence of {len(info.planes)} NumPy planes, got planes of type "
            f"{type(planes).__name__}. Pass [y, uv] for NV12 (a list, even of one frame's views)."
        )
    if len(planes) != len(info.planes):
        raise SpecError(
            f"{where}: expected {len(info.planes)} planes for {info.format.value}, got {len(planes)}."
        )
    for index, plane in enumerate(planes):
        if not isinstance(cast(object, plane), np.ndarray):
            raise InteropError(
                f"{where}: expected NumPy arrays (host memory), got planes[{index}] of type "
                f"{type(plane).__name__}. Copy device planes to the host first."
            )
        if plane.dtype != np.dtype(info.dtype):
            raise DTypeError(
                f"{where}: expected {info.dtype} planes for {info.format.value}, got "
                f"planes[{index}].dtype={plane.dtype}."
            )
    if planes[0].ndim not in (2, 3):
        raise SpecError(f"{where}: expected plane 0 of shape (H, W), got shape={planes[0].shape}.")
    height, width = planes[0].shape[:2]
    check_frame_size(info, width, height, where)
    samples: dict[str, Array] = {}
    for index, (plane, plane_info) in enumerate(zip(planes, info.planes, strict=True)):
        expected = (height // plane_info.subsample_y, width // plane_info.subsample_x, plane_info.channels)
        if plane.shape != expected and not (plane_info.channels == 1 and plane.shape == expected[:2]):
            raise SpecError(
                f"{where}: expected planes[{index}] of shape {expected} for a {width}x{height} "
                f"{info.format.value} frame, got shape={plane.shape}."
            )
        codes = plane.reshape(expected) >> info.bit_shift if info.bit_shift else plane.reshape(expected)
        for channel, component in enumerate(plane_info.components):
            values = codes[..., channel]
            values = np.repeat(values, plane_info.subsample_y, axis=0)
            samples[component] = np.repeat(values, plane_info.subsample_x, axis=1).astype(np.float64)
    scales = code_scales(colour.range, info.bit_depth)
    luma = (samples["Y"] - scales.luma_offset) / scales.luma_scale
    pb = (samples["U"] - scales.chroma_offset) / scales.chroma_scale
    pr = (samples["V"] - scales.chroma_offset) / scales.chroma_scale
    (_, _, r_pr), (_, g_pb, g_pr), (_, b_pb, _) = ypbpr_to_rgb_matrix(colour.matrix)
    red = luma + r_pr * pr
    green = luma + g_pb * pb + g_pr * pr
    blue = luma + b_pb * pb
    rgb = {"R": red, "G": green, "B": blue}
    channels = [np.clip(rgb[name], 0.0, 1.0) for name in channel_order.value if name != "A"]
    if dtype == "uint8":
        channels = [np.rint(255.0 * values) for values in channels]
    if channel_order.value.endswith("A"):
        channels.append(np.full_like(channels[0], 255.0 if dtype == "uint8" else 1.0))
    result: Array = np.stack(channels, axis=-1).astype(dtype)
    return result
