"""Per-channel affine maps of conversions (``x * scale[c] + offset[c]``), built from the caller's
arguments and checked: every number finite, and the map finite in the accumulator it runs in.

No GPU calls and no imports beyond NumPy (for 0-d arrays given as numbers). ``_plan`` chooses how
the executors apply these maps.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple, TypeAlias, cast

import numpy as np
import numpy.typing as npt

from ._dtypes import Accumulator, DTypeName, accumulator, integer_range, is_integral
from ._errors import SpecError

__all__ = [
    "channel_key",
    "Affine",
    "ChannelValues",
    "MapOrigin",
    "check_finite_map",
    "denormalize_affine",
    "finite_number",
    "flag",
    "identity_affine",
    "input_scale",
    "normalize_affine",
    "scaled_affine",
    "short_repr",
]

ChannelValues: TypeAlias = float | Sequence[float] | npt.NDArray[np.floating[Any]] | np.floating[Any]
"""What ``mean`` and ``std`` accept: one number for every channel, or one per channel (a sequence or a
NumPy array)."""


class Affine(NamedTuple):
    """Per output channel ``scale`` and ``offset``; ``reverse`` reads channel ``C-1-c`` for channel c."""

    scale: tuple[float, ...]
    offset: tuple[float, ...]
    reverse: bool

    @property
    def is_identity(self) -> bool:
        """True when no arithmetic is needed (channels may still be reversed)."""
        return all(value == 1.0 for value in self.scale) and all(value == 0.0 for value in self.offset)


def finite_number(value: object, name: str, where: str) -> float:
    """``value`` as a float, if it is a finite real number (NumPy scalars and 0-d arrays too; bools
    are refused, and so are integers too large for a float)."""
    value = _unwrapped(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SpecError(
            f"{where}: expected a finite number for {name}, got {name}={short_repr(value)} "
            f"({type(value).__name__}). Pass a float."
        )
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError) as exc:  # 10**400, a Fraction of such, ...
        raise SpecError(
            f"{where}: expected a finite number for {name}, got {name}={short_repr(value)} (beyond the "
            "range of a float). Pass a smaller value."
        ) from exc
    if not math.isfinite(number):
        raise SpecError(f"{where}: expected a finite number for {name}, got {name}={short_repr(value)}.")
    return number


def _unwrapped(value: object) -> object:
    """A 0-d numeric NumPy array's number (``np.mean``'s result, for example), else ``value``."""
    if not isinstance(value, np.ndarray):
        return value
    array = cast("npt.NDArray[Any]", value)
    if array.ndim == 0 and array.dtype.kind in "iuf":
        number: object = array.item()
        return number
    return array


def channel_key(values: object) -> float | tuple[float, ...] | None:
    """``mean``/``std`` as a cache key: a plain number, or a list or tuple of them, as given (None:
    anything else, which its caller parses every call)."""
    if type(values) is float or type(values) is int:
        return cast(float, values)
    if (type(values) is tuple or type(values) is list) and {
        *map(type, cast("Sequence[object]", values))
    } <= _PLAIN_NUMBERS:
        return tuple(cast("Sequence[float]", values))
    return None


_PLAIN_NUMBERS = {float, int}


def short_repr(value: object) -> str:
    """``repr(value)``, cut short: a message must stay readable whatever a caller passed."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _per_channel(values: ChannelValues, channels: int, name: str, where: str) -> tuple[float, ...]:
    """One finite value per channel: a single number (or a 1-sequence) applies to every channel."""
    # one number (NumPy scalars and 0-d arrays included), or a sequence or a NumPy array of them
    if isinstance(values, numbers.Real) or (isinstance(values, np.ndarray) and values.ndim == 0):
        items: list[object] = [values]
    elif isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise SpecError(
            f"{where}: expected {name} as one number or one per channel ({channels}), got "
            f"{name}={short_repr(values)} ({type(values).__name__}). Pass a float or a tuple of floats."
        )
    else:
        try:
            items = list(cast("Iterable[object]", values))
        except TypeError as exc:  # iterable by type, not by value: a 0-d tensor
            raise SpecError(
                f"{where}: expected {name} as one number or one per channel ({channels}), got "
                f"{name}={short_repr(values)}. Pass a float or a tuple of floats."
            ) from exc
    if len(items) not in (1, channels):
        raise SpecError(
            f"{where}: expected 1 or {channels} values for {name} (one per channel), got {len(items)}."
        )
    parsed = tuple(finite_number(item, name, where) for item in items)
    return parsed * channels if len(parsed) == 1 else parsed


def flag(value: object, name: str, where: str) -> bool:
    """``value`` if it is a bool (NumPy's too): a list or a string is not a yes or no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(cast(object, value))
    raise SpecError(f"{where}: expected {name}=True or False, got {name}={short_repr(value)}.")


@functools.cache
def identity_affine(channels: int, *, reverse: bool = False) -> Affine:
    """The map that changes nothing but (optionally) the channel order (one object per channel count
    and order: ``copy`` and ``to_layout`` ask for it on every call)."""
    return Affine((1.0,) * channels, (0.0,) * channels, reverse)


def scaled_affine(channels: int, scale: float, offset: float, *, where: str) -> Affine:
    """``astype``'s map: the same ``x * scale + offset`` for every channel. One object per map, so a
    loop's conversion finds its plan and its replay by identity."""
    factor, shift = finite_number(scale, "scale", where), finite_number(offset, "offset", where)
    # -0.0 equals 0.0 but may give a float result another zero's sign: its own key
    key = (channels, factor, shift, factor == 0.0 and math.copysign(1.0, factor) < 0.0,
           shift == 0.0 and math.copysign(1.0, shift) < 0.0)  # fmt: skip
    found = _scaled.get(key)
    if found is None:
        if len(_scaled) >= 256:
            _scaled.clear()
        found = _scaled[key] = Affine((factor,) * channels, (shift,) * channels, False)
    return found


_scaled: dict[tuple[int, float, float, bool, bool], Affine] = {}


def input_scale(dtype: DTypeName, scale: float | None, *, where: str) -> float:
    """The factor that brings raw values to the units of ``mean`` and ``std``: ``scale`` when given,
    else 1/255 for uint8 and 1/65535 for uint16 (torchvision's [0, 1] convention), else 1."""
    if scale is not None:
        value = finite_number(scale, "scale", where)
        if value == 0.0:
            raise SpecError(f"{where}: expected a non-zero scale, got scale={scale!r}.")
        return value
    if dtype in ("uint8", "uint16"):
        return 1.0 / integer_range(dtype)[1]
    return 1.0


_FLOAT_RANGES: dict[DTypeName, tuple[float, float]] = {"float16": (-65504.0, 65504.0)}


def _extremes(dtype: DTypeName) -> tuple[float, ...]:
    """The source values at which ``x * scale + offset`` is largest in magnitude (the map is monotonic):
    the ends of a bounded dtype's range, else none (wide floats hold any value, even inf, so only the
    map itself is checked)."""
    if is_integral(dtype):
        return tuple(float(end) for end in integer_range(dtype))
    return _FLOAT_RANGES.get(dtype, ())


MapOrigin = Literal["astype", "normalize", "denormalize"]
_ORIGINS: dict[MapOrigin, tuple[str, str, str]] = {
    # the map's factor and offset in the caller's arguments, and what to change
    "astype": ("scale", "offset", "Pass a smaller scale or offset, or convert in steps."),
    "normalize": ("scale/std", "-mean/std", "Pass a larger std (or a smaller mean or scale)."),
    "denormalize": ("std/scale", "mean/scale", "Pass a smaller std or mean, or a larger scale."),
}


def check_finite_map(
    affine: Affine, source: DTypeName, target: DTypeName, *, origin: MapOrigin, where: str
) -> None:
    """Raise when ``affine`` is not finite in the accumulator of ``source -> target``.

    The factors are computed in float64, but the kernels round them to the accumulator (float32 for
    most pairs), where 1e39 is already infinite and every output would be inf or NaN. For integer
    and float16 sources, ``x * factor + offset`` must stay finite for every value the source holds.
    ``origin`` names the function whose arguments made the map, so the message names them.
    """
    channel = _overflowing_channel(affine, source, target)
    if channel is None:
        return
    factor, offset, advice = _ORIGINS[origin]
    precision = accumulator(source, target)
    wanted = (
        f"x * {factor} + {offset} finite in {precision} for every {source} value x"
        if _extremes(source)
        else f"{factor} and {offset} finite in {precision}"
    )
    raise SpecError(
        f"{where}: expected {wanted} (the arithmetic's type for "
        f"{source} -> {target}; its largest value is {_largest(precision):.4g}), got "
        f"{factor}={affine.scale[channel]:.4g} and {offset}={affine.offset[channel]:.4g} for channel "
        f"{channel}. {advice}"
    )


@functools.lru_cache(maxsize=256)
def _overflowing_channel(affine: Affine, source: DTypeName, target: DTypeName) -> int | None:
    """The first channel whose map overflows the accumulator, computed as the executors compute it:
    both factors rounded to the accumulator, a multiplication and an addition each rounded once.
    Memoized: conversions are a hot path."""
    wide = np.dtype(accumulator(source, target))
    ends = np.asarray(_extremes(source), dtype=wide)
    with np.errstate(over="ignore", invalid="ignore"):
        for channel, (scale, shift) in enumerate(zip(affine.scale, affine.offset, strict=True)):
            factor, offset = np.asarray(scale, dtype=wide), np.asarray(shift, dtype=wide)
            extremes = ends * factor + offset  # two roundings, as in the kernels
            if not (np.isfinite(factor) and np.isfinite(offset) and np.isfinite(extremes).all()):
                return channel
    return None


def _largest(precision: Accumulator) -> float:
    return float(np.finfo(precision).max)


def _check_shared_beyond_four(affine: Affine, where: str) -> Affine:
    """Kernels carry four per-channel maps; wider images take one map for every channel. And the
    map's factors must be finite (a std of 1e-320 would make every value inf or NaN)."""
    if not all(math.isfinite(value) for value in (*affine.scale, *affine.offset)):
        raise SpecError(
            f"{where}: mean, std and scale give a non-finite map (scale={affine.scale}, "
            f"offset={affine.offset}); std is too small or mean too large."
        )
    if len(affine.scale) > 4 and len(set(zip(affine.scale, affine.offset, strict=True))) > 1:
        raise SpecError(
            f"{where}: per-channel mean and std are supported for 1 to 4 channels, got "
            f"{len(affine.scale)} channels with different values; pass one mean and one std."
        )
    return affine


def _mean_and_std(
    channels: int, mean: ChannelValues, std: ChannelValues, where: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """One finite mean and one finite, non-zero std per channel."""
    means = _per_channel(mean, channels, "mean", where)
    stds = _per_channel(std, channels, "std", where)
    if any(value == 0.0 for value in stds):
        raise SpecError(f"{where}: expected a non-zero std for every channel, got std={stds}.")
    return means, stds


def normalize_affine(
    channels: int,
    mean: ChannelValues,
    std: ChannelValues,
    scale: float,
    *,
    reverse: bool,
    where: str,
) -> Affine:
    """``(x * scale - mean[c]) / std[c]`` as one multiply-add; ``mean`` and ``std`` are in the output's
    channel order (the model's, RGB when ``reverse`` turns BGR input around)."""
    reverse = flag(reverse, "reverse_channels", where)
    means, stds = _mean_and_std(channels, mean, std, where)
    # The factors are computed in float64 once; executors round them to the accumulator type.
    factors = tuple(scale / deviation for deviation in stds)
    shifts = tuple(-average / deviation for average, deviation in zip(means, stds, strict=True))
    return _check_shared_beyond_four(Affine(factors, shifts, reverse), where)


def denormalize_affine(
    channels: int,
    mean: ChannelValues,
    std: ChannelValues,
    scale: float,
    *,
    reverse: bool,
    where: str,
) -> Affine:
    """The inverse of ``normalize_affine``: ``(x * std + mean) / scale``; ``mean`` and ``std`` are in the
    input's channel order, so ``reverse=True`` undoes ``normalize(..., reverse_channels=True)``."""
    reverse = flag(reverse, "reverse_channels", where)
    means, stds = _mean_and_std(channels, mean, std, where)
    source = [channels - 1 - channel if reverse else channel for channel in range(channels)]
    factors = tuple(stds[index] / scale for index in source)
    shifts = tuple(means[index] / scale for index in source)
    return _check_shared_beyond_four(Affine(factors, shifts, reverse), where)
