"""``normalize`` and ``denormalize``: a decoded image to model input and back, one kernel each.

The maps (``(x * scale - mean) / std`` per channel) are planned in ``_affine``; a frame loop passes
the same constants every call, so they are parsed and checked once (plain numbers and sequences of
them are the cache keys; anything else is parsed every call).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from ._affine import (
    Affine,
    ChannelValues,
    channel_key,
    check_finite_map,
    denormalize_affine,
    input_scale,
    normalize_affine,
)
from ._channel_order import (
    check_out_order,
    known_order,
    ordered,
    plan_order,
    recorded,
    reversed_order,
    swap_inputs,
    swapped,
)
from ._conversions import check_is_image
from ._dtypes import AnyDType, DTypeLike, DTypeName, Float32, UInt8, parse_dtype
from ._errors import SpecError
from ._formats import ChannelOrder, ChannelOrderLike
from ._frame_convert import is_frame, normalize_frame
from ._layout import CHW, HWC, Layout

if TYPE_CHECKING:
    from ._frame import GpuFrame
    from ._image import GpuImage

__all__ = ["denormalize", "normalize"]

DT = TypeVar("DT", bound=AnyDType)


def _normalize_map(
    source: DTypeName,
    channels: int,
    target: DTypeName,
    mean: ChannelValues,
    std: ChannelValues,
    scale: float | None,
    reverse: bool,
) -> Affine:
    where = "normalize()"
    factor = input_scale(source, scale, where=where)
    affine = normalize_affine(channels, mean, std, factor, reverse=reverse, where=where)
    check_finite_map(affine, source, target, origin="normalize", where=where)
    return affine


_cached_normalize_map = functools.lru_cache(maxsize=256)(_normalize_map)


# -- normalization ----------------------------------------------------------------------------------


@overload
def normalize(
    image: GpuImage[Any, Any] | GpuFrame,
    mean: ChannelValues,
    std: ChannelValues,
    *,
    dtype: type[DT],
    scale: float | None = None,
    reverse_channels: bool = False,
    order: ChannelOrderLike | None = None,
    out: GpuImage[CHW, Any] | None = None,
) -> GpuImage[CHW, DT]: ...
@overload
def normalize(
    image: GpuImage[Any, Any] | GpuFrame,
    mean: ChannelValues,
    std: ChannelValues,
    *,
    dtype: None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    order: ChannelOrderLike | None = None,
    out: GpuImage[CHW, Any] | None = None,
) -> GpuImage[CHW, Float32]: ...
@overload
def normalize(
    image: GpuImage[Any, Any] | GpuFrame,
    mean: ChannelValues,
    std: ChannelValues,
    *,
    dtype: DTypeLike,
    scale: float | None = None,
    reverse_channels: bool = False,
    order: ChannelOrderLike | None = None,
    out: GpuImage[CHW, Any] | None = None,
) -> GpuImage[CHW]: ...
def normalize(
    image: GpuImage[Any, Any] | GpuFrame,
    mean: ChannelValues,
    std: ChannelValues,
    *,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    order: ChannelOrderLike | None = None,
    out: GpuImage[CHW, Any] | None = None,
) -> GpuImage[CHW, Any]:
    """Turn a decoded image into model input in one pass: ``(x * scale - mean[c]) / std[c]``, CHW.

    Parameters:
        image: any layout, pitch or crop; typically uint8 or uint16 HWC.
        mean, std: one value, or one per channel in the output's channel order.
        dtype: of the result (default float32; float16 and bfloat16 round to nearest even).
        scale: brings raw values to the units of mean and std; default 1/255 for uint8 and 1/65535
            for uint16 (torchvision's convention), else 1.
        reverse_channels: read channels in reverse order (BGR in, RGB out). Images only.
        order: the output's channel order, "RGB", "BGR", "RGBA" or "BGRA". A frame's (default RGB).
            An image's recorded order (``image.channel_order``) is reordered to it: red and blue swap
            places where they differ (alpha stays last); an image whose order is not recorded is
            refused (``image.with_channel_order`` records it). Not with ``reverse_channels``.
        out: a CHW image to write into, for example ``GpuImage.from_torch(batch[i], layout="CHW")``.

    A ``GpuFrame`` (NV12, P010, ...) is converted to R'G'B' values in [0, 1], scaled, normalized and
    laid out CHW in one launch (see "Video frames" in the docs): ``scale`` applies to those values
    and defaults to 1, so ``mean`` and ``std`` are in [0, 1] units either way.

    Returns:
        ``out``, or a new packed CHW image on the image's device, ready on the image's stream. A new
        image records its channel order: ``order``, else the image's (reversed with
        ``reverse_channels`` where that is an order). ``out`` keeps its own record, and is refused
        when it records another order than the result's.

    Raises:
        SpecError: mean or std of the wrong length, a zero std, a destination of another size.
        LayoutError, DeviceError, ReadOnlyError: a destination that cannot take the result.
        LayoutError: ``order`` for an image whose order is not recorded or has another channel count.
        InteropError: an image or ``out`` that is not a GpuImage.
    """
    where = "normalize()"
    if is_frame(image):
        if reverse_channels:
            raise SpecError(
                f"{where}: expected order='BGR' for a frame, got reverse_channels={reverse_channels!r}."
            )
        frame = cast("GpuFrame", image)
        channel_order = "RGB" if order is None else order
        written = known_order(channel_order, where=where)  # UNKNOWN: normalize_frame refuses it
        check_out_order(out, written, where=where)
        result = normalize_frame(frame, mean, std, dtype=dtype, scale=scale, order=channel_order, out=out)
        return result if out is not None else recorded(result, written)
    image = cast("GpuImage[Any, Any]", image)
    check_is_image(image, where=where)
    result_order, reverse_channels, swap_colour = _order_plan(image, order, reverse_channels, where)
    target = parse_dtype(Float32 if dtype is None else dtype, where=where)
    key = (channel_key(mean), channel_key(std), scale, reverse_channels)
    plain_scale = scale is None or type(scale) is float or type(scale) is int  # never True for 1
    if None in key[:2] or not plain_scale or type(reverse_channels) is not bool:
        affine = _normalize_map(image.dtype, image.channels, target, mean, std, scale, reverse_channels)
    else:  # a frame loop passes the same constants every call: parse and check them once
        affine = _cached_normalize_map(image.dtype, image.channels, target, *key)
    return _converted_in_order(
        image, result_order, order is None, swap_colour, affine, target, Layout.CHW, where, out
    )


def _order_plan(
    image: GpuImage[Any, Any], order: ChannelOrderLike | None, reverse_channels: bool, where: str
) -> tuple[ChannelOrder | None, bool, bool]:
    """``normalize``'s and ``denormalize``'s channel order: (the result's order, whether to reverse
    every channel, whether to swap the colour channels of a 4-channel image) for ``order=``; without
    it, the image's own order and ``reverse_channels`` as given."""
    if order is None:
        return image.channel_order, reverse_channels, False
    return plan_order(image.channel_order, order, image.channels, reverse_channels, where=where)


def _converted_in_order(
    image: GpuImage[Any, Any],
    result_order: ChannelOrder | None,
    image_order_kept: bool,
    swap_colour: bool,
    affine: Affine,
    target: DTypeName,
    layout: Layout,
    where: str,
    out: GpuImage[Any, Any] | None,
) -> GpuImage[Any, Any]:
    """``affine`` of ``image`` into ``layout``, recording ``result_order``; where no ``order=`` was
    asked (``image_order_kept``), a reversal records the image's order reversed, where that is one."""
    if image_order_kept and affine.reverse:
        result_order = reversed_order(image.channel_order, image.channels)
    convert = swapped if swap_colour else ordered
    return convert(
        image,
        result_order,
        dtype=target,
        layout=layout,
        affine=affine,
        where=where,
        out=out,
        map_checked=True,
    )


@overload
def denormalize(
    image: GpuImage[Any, Any],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    dtype: type[DT],
    scale: float | None = None,
    reverse_channels: bool = False,
    order: ChannelOrderLike | None = None,
    out: GpuImage[HWC, Any] | None = None,
) -> GpuImage[HWC, DT]: ...
@overload
def denormalize(
    image: GpuImage[Any, Any],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    dtype: None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    order: ChannelOrderLike | None = None,
    out: GpuImage[HWC, Any] | None = None,
) -> GpuImage[HWC, UInt8]: ...
@overload
def denormalize(
    image: GpuImage[Any, Any],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    dtype: DTypeLike,
    scale: float | None = None,
    reverse_channels: bool = False,
    order: ChannelOrderLike | None = None,
    out: GpuImage[HWC, Any] | None = None,
) -> GpuImage[HWC]: ...
def denormalize(
    image: GpuImage[Any, Any],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    order: ChannelOrderLike | None = None,
    out: GpuImage[HWC, Any] | None = None,
) -> GpuImage[HWC, Any]:
    """The inverse of ``normalize``, for drawing and encoding: ``(x * std[c] + mean[c]) / scale``,
    rounded half to even and clamped, as an HWC image (default uint8).

    ``mean`` and ``std`` are in the input's channel order, and ``scale`` defaults by the output dtype
    (1/255 for uint8), so ``denormalize(normalize(img, m, s), m, s)`` gives ``img`` back, and
    ``reverse_channels=True`` undoes a reversal. ``order`` is the output's channel order, reordered
    from the image's recorded one (``order="BGR"`` for OpenCV). Parameters, errors and the recorded
    order of the result as for ``normalize``.
    """
    where = "denormalize()"
    check_is_image(image, where=where)
    result_order, reverse_channels, swap_colour = _order_plan(image, order, reverse_channels, where)
    target = parse_dtype(UInt8 if dtype is None else dtype, where=where)
    factor = input_scale(target, scale, where=where)
    affine = denormalize_affine(image.channels, mean, std, factor, reverse=reverse_channels, where=where)
    check_finite_map(affine, image.dtype, target, origin="denormalize", where=where)
    if swap_colour:  # its constants follow the input's channels: make them follow the output's
        affine = swap_inputs(affine)
    return _converted_in_order(
        image, result_order, order is None, swap_colour, affine, target, Layout.HWC, where, out
    )
