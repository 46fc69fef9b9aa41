"""Channel orders of images and batches: which order fits which channel count, what turns one order
into another, and the conversions that record the order of their result.

An order is a record of the handle, as its ready stream is: imports record none (``None``:
unknown; nothing is guessed, a GpuMat is not assumed BGR), ``with_channel_order`` makes a view that
records one, and conversions that keep the channels' meaning pass it on. The executors read channels
in order or all reversed (``Affine.reverse``): RGB <-> BGR is one reversed pass; RGBA <-> BGRA, which
keeps alpha last, is one pass that writes every channel, then a reversed pass over the three colour
channels (the executors have no other permutation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Self

from ._affine import Affine, flag, identity_affine
from ._conversions import convert_into, converted
from ._convert_replay import remember, replayed
from ._dtypes import DTypeName
from ._errors import LayoutError
from ._formats import ChannelOrder, ChannelOrderLike, parse_channel_order
from ._layout import Layout
from ._spec import ImageSpec, trusted_spec

if TYPE_CHECKING:
    from ._image import GpuImage

__all__ = [
    "ChannelOrdered",
    "batch_plan",
    "check_fits",
    "check_out_order",
    "known_order",
    "needs_swap",
    "ordered",
    "plan_order",
    "recorded",
    "reordered",
    "reversed_order",
    "swap_inputs",
    "swapped",
    "wanted_order",
]

_O = ChannelOrder
_CHANNELS: Final = {_O.RGB: 3, _O.BGR: 3, _O.RGBA: 4, _O.BGRA: 4}
"""How many channels each order names (UNKNOWN names none)."""
_MIRROR: Final = {_O.RGB: _O.BGR, _O.BGR: _O.RGB, _O.RGBA: _O.BGRA, _O.BGRA: _O.RGBA}
"""Each order with red and blue swapped (alpha stays last)."""
_FITTING: Final = {3: "RGB or BGR", 4: "RGBA or BGRA"}
_OPENCV: Final = {3: _O.BGR, 4: _O.BGRA}
"""The order OpenCV reads and writes, by channel count (named in messages: gpuimage assumes none)."""
_PLAIN: Final = {3: _O.RGB, 4: _O.RGBA}


def known_order(value: object, *, where: str) -> ChannelOrder | None:
    """An order to record: a ``ChannelOrder`` or its name; None and UNKNOWN are None (unknown)."""
    if value is None:
        return None
    order = parse_channel_order(value, where=where)
    return None if order is ChannelOrder.UNKNOWN else order


def wanted_order(value: object, *, where: str) -> ChannelOrder:
    """An order to convert to: RGB, BGR, RGBA or BGRA (an unknown order is no target)."""
    order = parse_channel_order(value, where=where)
    if order is ChannelOrder.UNKNOWN:
        raise LayoutError(
            f"{where}: expected order RGB, BGR, RGBA or BGRA, got order={value!r} (no conversion makes an "
            "unknown order). To forget an image's order, use image.with_channel_order(None)."
        )
    return order


def check_fits(order: ChannelOrder, channels: int, *, where: str) -> None:
    """Raise ``LayoutError`` unless ``order`` names ``channels`` channels."""
    if _CHANNELS[order] != channels:
        fitting = _FITTING.get(channels)
        fix = (
            f"Pass {fitting}."
            if fitting
            else "Only 3-channel (RGB, BGR) and 4-channel (RGBA, BGRA) images have a channel order."
        )
        raise LayoutError(
            f"{where}: expected an order for a {channels}-channel image, got order={order.value!r} (it "
            f"names {_CHANNELS[order]} channels). {fix}"
        )


def needs_swap(source: ChannelOrder | None, target: ChannelOrder, *, where: str) -> bool:
    """Whether red and blue change places from ``source`` to ``target`` (same channel count): False
    when they are equal, True for mirrors. An unknown ``source`` is refused, naming the fix."""
    if source is None:
        raise LayoutError(
            f"{where}: expected an image whose channel order is recorded (order={target.value!r} "
            "reorders from it), got channel_order=None (imports record none: nothing is guessed). "
            f"Record it first: image.with_channel_order('{_OPENCV[_CHANNELS[target]].value}') for an "
            f"image from OpenCV, or image.with_channel_order('{_PLAIN[_CHANNELS[target]].value}')."
        )
    return source is not target


def reversed_order(order: ChannelOrder | None, channels: int) -> ChannelOrder | None:
    """The order after ``reverse_channels=True`` (every channel reversed): the mirror for 3 channels;
    None for 4 (BGRA reversed is ARGB, which is no ``ChannelOrder``)."""
    return _MIRROR[order] if order is not None and channels == 3 else None


def plan_order(
    source: ChannelOrder | None, order: object, channels: int, reverse_channels: object, *, where: str
) -> tuple[ChannelOrder, bool, bool]:
    """``(order, reverse, swap_colour)`` of a conversion from ``source`` to ``order``: ``reverse`` reverses
    every channel (3 channels), ``swap_colour`` reverses the colour channels and keeps alpha (4)."""
    if flag(reverse_channels, "reverse_channels", where):
        raise LayoutError(
            f"{where}: expected one of order= and reverse_channels=True, got order={order!r} and "
            f"reverse_channels={reverse_channels!r}. Drop reverse_channels: order= reverses the channels "
            "where the image's recorded order needs it."
        )
    target = wanted_order(order, where=where)
    check_fits(target, channels, where=where)
    swap = needs_swap(source, target, where=where)
    return target, swap and channels == 3, swap and channels == 4


def batch_plan(
    images: Sequence[GpuImage[Any, Any]], order: object, reverse_channels: bool, out: object, *, where: str
) -> tuple[bool, bool]:
    """``(reverse, swap_colour)`` of ``normalize_batch`` over images (as ``plan_order``), with the
    order the batch is written in checked against a ``GpuBatch`` ``out``'s. ``order`` needs every image
    to record one order; without it ``reverse_channels`` is passed on as given (checked later)."""
    channels = images[0].channels
    if order is None:
        if isinstance(out, ChannelOrdered) and out.channel_order is not None:
            source = _shared(images, where=where, strict=False)
            reverse = flag(reverse_channels, "reverse_channels", where)
            check_out_order(out, reversed_order(source, channels) if reverse else source, where=where)
        return reverse_channels, False
    target, reverse, swap = plan_order(
        _shared(images, where=where), order, channels, reverse_channels, where=where
    )
    check_out_order(out, target, where=where)
    return reverse, swap


def _shared(images: Sequence[GpuImage[Any, Any]], *, where: str, strict: bool = True) -> ChannelOrder | None:
    """The order every image records: mixed orders are refused (``strict``) or None."""
    first = images[0].channel_order
    for image in images:
        if image.channel_order is not first:
            if not strict:
                return None
            found = "None" if image.channel_order is None else image.channel_order.value
            raise LayoutError(
                f"{where}: expected images of one recorded channel order for order=, got "
                f"{'None' if first is None else first.value} and {found}. Record one order on each "
                "(image.with_channel_order(...)), or reorder them first (image.to_channel_order(...))."
            )
    return first


def swap_inputs(affine: Affine) -> Affine:
    """A 4-channel map whose constants follow its input channels (``denormalize``'s) made to follow
    its output channels once channels 0 and 2 change places: what ``swapped`` takes."""
    scale, offset = affine.scale, affine.offset
    return Affine(
        (scale[2], scale[1], scale[0], scale[3]), (offset[2], offset[1], offset[0], offset[3]), False
    )


def check_out_order(out: object, order: ChannelOrder | None, *, where: str) -> None:
    """Refuse an ``out`` that records another order than the result's (both known): the record would
    be wrong once written. ``out`` keeps its own record (it describes a handle, not the memory)."""
    if order is None or not isinstance(out, ChannelOrdered):
        return
    found = out._channel_order  # pyright: ignore[reportPrivateUsage]
    if found is not None and found is not order:
        raise LayoutError(
            f"{where}: expected out recording channel_order={order.value} (or none), got "
            f"out.channel_order={found.value} (the result is {order.value}). Pass "
            f"out.with_channel_order('{order.value}'), or out.with_channel_order(None)."
        )


def recorded(image: GpuImage[Any, Any], order: ChannelOrder | None) -> GpuImage[Any, Any]:
    """``image`` (new, not yet seen by anyone) recording ``order``."""
    image._channel_order = order  # pyright: ignore[reportPrivateUsage]
    return image


def ordered(
    source: GpuImage[Any, Any],
    order: ChannelOrder | None,
    *,
    dtype: DTypeName,
    layout: Layout,
    affine: Affine,
    where: str,
    out: GpuImage[Any, Any] | None = None,
    row_alignment: int = 1,
    map_checked: bool = False,
    replay: bool = True,
) -> GpuImage[Any, Any]:
    """``_conversions.converted``, whose new result records ``order`` (``out`` is checked against it
    before any work, and keeps its own record). A call of a kind already seen is replayed
    (``_convert_replay``; ``replay=False``: the caller has just tried); a call that succeeds the full
    way is remembered for that."""
    if replay:
        result = replayed(source, order, dtype, layout, affine, row_alignment, out)
        if result is not None:
            return result
    if out is not None:
        check_out_order(out, order, where=where)
    result = converted(
        source,
        dtype=dtype,
        layout=layout,
        affine=affine,
        row_alignment=row_alignment,
        where=where,
        out=out,
        map_checked=map_checked,
    )
    if out is None and order is not None:  # new images record None already
        result._channel_order = order  # pyright: ignore[reportPrivateUsage]
    remember(source, order, dtype, layout, affine, row_alignment, out, result)
    return result


def swapped(
    source: GpuImage[Any, Any],
    order: ChannelOrder | None,
    *,
    dtype: DTypeName,
    layout: Layout,
    affine: Affine,
    where: str,
    out: GpuImage[Any, Any] | None = None,
    map_checked: bool = False,
) -> GpuImage[Any, Any]:
    """``affine`` (per output channel, ``reverse`` False) of a 4-channel ``source`` whose channels 0 and
    2 change places (RGBA <-> BGRA): every channel in one pass, then the colour channels again,
    reversed, over the first pass's (both queued on one stream, in order)."""
    result = ordered(
        source,
        order,
        dtype=dtype,
        layout=layout,
        affine=affine,
        where=where,
        out=out,
        map_checked=map_checked,
    )
    colour = Affine(affine.scale[:3], affine.offset[:3], True)
    convert_into(_colour(source), _colour(result), colour, where=where)
    return result


def reordered(image: GpuImage[Any, Any], order: object) -> GpuImage[Any, Any]:
    """``GpuImage.to_channel_order``: a packed copy in ``order`` (the image itself if it is in it)."""
    where = "to_channel_order()"
    target = wanted_order(order, where=where)
    check_fits(target, image.channels, where=where)
    source = image.channel_order
    if source is target:
        return image
    needs_swap(source, target, where=where)  # refuses an unknown order
    spec = image.spec
    if spec.channels == 3:
        reverse = identity_affine(3, reverse=True)
        return ordered(image, target, dtype=spec.dtype, layout=spec.layout, affine=reverse, where=where)
    return swapped(
        image, target, dtype=spec.dtype, layout=spec.layout, affine=identity_affine(4), where=where
    )


def _colour(image: GpuImage[Any, Any]) -> GpuImage[Any, Any]:
    """Channels 0..2 of a 4-channel image: a view with its strides, owner and ready state (as a crop)."""
    spec = image.spec
    # a frame loop reorders one description again and again: the view's spec by identity, so the
    # executors' plans keyed on specs find it
    entry = _colour_specs.get(id(spec))
    if entry is None or entry[0] is not spec:
        if len(_colour_specs) >= 256:
            _colour_specs.clear()
        colour = trusted_spec(spec.geometry._replace(channels=3), spec.dtype, spec.layout, spec.device)
        entry = _colour_specs[id(spec)] = (spec, colour)
    return type(image)._wrap(image.ptr, entry[1], image._life, image._ready, image.readonly)  # pyright: ignore[reportPrivateUsage]


_colour_specs: dict[int, tuple[ImageSpec, ImageSpec]] = {}


class ChannelOrdered:
    """The channel-order side of ``GpuImage`` and ``GpuBatch`` (a mixin: each holds the slot)."""

    __slots__ = ()

    _channel_order: ChannelOrder | None

    if TYPE_CHECKING:

        @property
        def channels(self) -> int: ...

    def _relabelled(self, order: ChannelOrder | None) -> Self:
        """A view of the same memory, owner and ready state, recording ``order``."""
        raise NotImplementedError

    @property
    def channel_order(self) -> ChannelOrder | None:
        """The order of the colour channels (RGB, BGR, RGBA or BGRA), or None where no one said.

        Imports record none (a GpuMat is not assumed BGR): say it with ``with_channel_order``.
        ``to_layout``, ``astype``, ``copy``, crops, ``cuda``/``cpu`` and ``normalize`` pass it on;
        ``GpuFrame.to_image`` and ``normalize(frame)`` record the order they wrote.
        """
        return self._channel_order

    def with_channel_order(self, order: ChannelOrderLike | None) -> Self:
        """This memory, recording ``order`` (None or "UNKNOWN" forgets it): a view sharing the owner,
        the ready stream and the lifetime, as a crop does; no pixel moves. Returns the object itself
        when it already records ``order``. ``to_channel_order`` reorders the pixels instead.

        Raises:
            SpecError: a name that is not a ``ChannelOrder``.
            LayoutError: an order of another channel count (RGB and BGR: 3; RGBA and BGRA: 4).
        """
        where = "with_channel_order()"
        known = known_order(order, where=where)
        if known is not None:
            check_fits(known, self.channels, where=where)
        return self if known is self._channel_order else self._relabelled(known)
