"""The recipe of a frame conversion (``_sampling.SampleRecipe``) from a caller's arguments: the
channel order, resize mode, letterbox and ``(value * scale - mean) / std`` per channel, checked and
cached (a frame loop passes the same constants every call). Pure: no GPU, no foreign library."""

from __future__ import annotations

from ._affine import ChannelValues, channel_key, finite_number, normalize_affine
from ._dtypes import DTypeName
from ._errors import SpecError
from ._formats import ChannelOrder
from ._sampling import FrameSource, ResizeMode, SampleRecipe

__all__ = ["frame_recipe"]

_OUTPUT_ORDERS = frozenset({ChannelOrder.RGB, ChannelOrder.BGR, ChannelOrder.RGBA, ChannelOrder.BGRA})
_RESIZE_MODES = ("bilinear", "nearest")
_CODE_UNIT: dict[DTypeName, float] = {"uint8": 1.0 / 255.0, "uint16": 1.0 / 65535.0}
"""The value of one code of a packed image's integer dtype (``_sampling`` step 1); floats are 1."""


def frame_recipe(
    source: FrameSource,
    *,
    size: tuple[int, int],
    resize: ResizeMode,
    keep_aspect: bool,
    order: ChannelOrder,
    mean: ChannelValues,
    std: ChannelValues,
    scale: float | None,
    pad_value: float,
    is_image: bool,
    where: str,
) -> SampleRecipe:
    """The recipe of ``(value * scale - mean) / std`` into ``size`` slots (value: ``_sampling`` step 1).

    ``scale`` is in the caller's units: for frames the value is in [0, 1] and the default is 1; for
    packed images it applies to the stored codes, as ``normalize`` does (default 1/255 for uint8).
    """
    key = (
        source.format,
        source.planes[0].spec.dtype,
        size,
        resize,
        keep_aspect,
        order,
        channel_key(mean),
        channel_key(std),
        scale,
        pad_value,
        is_image,
    )
    plain = (  # only plain arguments are keys: others are checked and parsed every call
        type(resize) is str
        and type(keep_aspect) is bool
        and type(order) is ChannelOrder
        and None not in key[6:8]
        and type(scale) in (float, int, type(None))
        and type(pad_value) in (float, int)
    )
    if plain:
        recipe = _recipes.get(key)
        if recipe is not None:
            return recipe
    recipe = _recipe(source, size, resize, keep_aspect, order, mean, std, scale, pad_value, is_image, where)
    if plain:
        if len(_recipes) >= 256:
            _recipes.clear()
        _recipes[key] = recipe
    return recipe


_recipes: dict[tuple[object, ...], SampleRecipe] = {}
"""Recipes by their arguments: a frame loop passes the same constants every call."""


def _recipe(
    source: FrameSource,
    size: tuple[int, int],
    resize: ResizeMode,
    keep_aspect: bool,
    order: ChannelOrder,
    mean: ChannelValues,
    std: ChannelValues,
    scale: float | None,
    pad_value: float,
    is_image: bool,
    where: str,
) -> SampleRecipe:
    if resize not in _RESIZE_MODES:
        raise SpecError(f"{where}: expected resize='bilinear' or 'nearest', got resize={resize!r}.")
    if type(keep_aspect) is not bool:
        raise SpecError(f"{where}: expected keep_aspect True or False, got keep_aspect={keep_aspect!r}.")
    if order not in _OUTPUT_ORDERS:
        raise SpecError(f"{where}: expected order 'RGB', 'BGR', 'RGBA' or 'BGRA', got order={order.value!r}.")
    channels = len(order.value)
    # a frame's value is in [0, 1] and scale applies to it; an image's scale applies to its codes
    unit = _CODE_UNIT.get(source.planes[0].spec.dtype, 1.0) if is_image else 1.0
    factor = (unit if scale is None else finite_number(scale, "scale", where)) / unit
    if factor == 0.0:
        raise SpecError(f"{where}: expected a non-zero scale, got scale={scale!r}.")
    affine = normalize_affine(channels, mean, std, factor, reverse=False, where=where)
    pad = finite_number(pad_value, "pad_value", where)
    return SampleRecipe(
        size[0], size[1], resize, keep_aspect, order, affine.scale, affine.offset, (pad,) * channels
    )
