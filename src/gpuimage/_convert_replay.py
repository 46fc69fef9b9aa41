"""A single-image conversion seen before, replayed: a frame loop's ``to_layout``, ``contiguous``,
``copy``, ``astype``, ``normalize`` or ``denormalize`` call, checked in full once, then launched.

The first call of a kind goes the full way (``_conversions.converted``: every check, a plan, the
launch) and, once it has succeeded, leaves the executor's packed launch (``ConvertReplay``) here
under the call's kind. What the checks depend on is all in the kind:

- with ``out``: the source's description and pointer, ``out``'s description, pointer, read-only
  flag and channel order (which decide overlap, sizes, device and the channel-order check);
- without: the source's description, and the result's description (which decide its allocation);
- both: the target dtype and layout, the map (checked once per map), the result's channel order,
  and the executor that checked the call (an ``override_executor`` block launches its own).

A later call of a known kind skips the checks: it orders the streams exactly as the full way does
(``begin_conversion``/``end_conversion``), allocates where there is no ``out``, and launches with
its pointers (through ``convert`` where a pointer has another alignment than the plan's).
Descriptions and maps are shared objects (spec caches, cached maps), compared by identity and held
by the entry, so an id is never taken for another object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from ._conversions import chosen
from ._exports import ImageExports
from ._ordering import begin_conversion, end_conversion

if TYPE_CHECKING:
    from ._affine import Affine
    from ._dtypes import DTypeName
    from ._executor import ConvertReplay, Executor
    from ._formats import ChannelOrder
    from ._image import GpuImage
    from ._layout import Layout
    from ._spec import ImageSpec

__all__ = ["forget", "remember", "replayed"]

_Key = TypeVar("_Key")

_LIMIT = 256
"""Entries per table; a full table is emptied (a loop has a handful of kinds)."""


class _Entry:
    """A checked conversion: what it was checked for, and its launch."""

    __slots__ = ("affine", "executor", "kind", "layout", "order", "out_order", "replay", "source", "target")

    def __init__(
        self,
        source: ImageSpec,
        target: ImageSpec,
        affine: Affine,
        layout: Layout,
        order: ChannelOrder | None,
        out_order: ChannelOrder | None,
        executor: Executor,
        replay: ConvertReplay,
    ) -> None:
        self.source, self.target, self.affine = source, target, affine
        self.layout, self.order, self.out_order = layout, order, out_order
        self.kind, self.executor, self.replay = source.device.kind, executor, replay


_into: dict[tuple[int, int, int, int, int, DTypeName], _Entry] = {}
"""Calls with ``out``: (source spec id, source pointer, out spec id, out pointer, map id, dtype)."""

_new: dict[tuple[int, int, DTypeName, int], _Entry] = {}
"""Calls without ``out``: (source spec id, map id, dtype, row alignment)."""


def replayed(
    source: GpuImage[Any, Any],
    order: ChannelOrder | None,
    dtype: DTypeName,
    layout: Layout,
    affine: Affine,
    row_alignment: int,
    out: GpuImage[Any, Any] | None,
) -> GpuImage[Any, Any] | None:
    """The conversion done the short way (``out``, or the new image), or None where this call's kind
    is not known: then the full way runs, and ``remember`` records it."""
    spec = source._spec  # pyright: ignore[reportPrivateUsage]
    if out is None:
        if type(row_alignment) is not int:  # True and 1.0 equal 1: the full way refuses them
            return None
        entry = _new.get((id(spec), id(affine), dtype, row_alignment))
    elif isinstance(out, ImageExports):  # pyright: ignore[reportUnnecessaryIsInstance]  # untyped callers pass arrays
        entry = _into.get((id(spec), source._ptr, id(out._spec), out._ptr, id(affine), dtype))  # pyright: ignore[reportPrivateUsage]
        if (
            entry is None
            or out._readonly  # pyright: ignore[reportPrivateUsage]
            or entry.target is not out._spec  # pyright: ignore[reportPrivateUsage]
            or entry.out_order is not out._channel_order  # pyright: ignore[reportPrivateUsage]
        ):
            return None
    else:
        return None
    if (
        entry is None
        or entry.source is not spec
        or entry.affine is not affine
        or entry.layout is not layout
        or entry.order is not order
        or chosen.get(entry.kind) is not entry.executor
    ):
        return None
    replay = entry.replay
    modulus = replay.modulus
    source_ptr = source._ptr  # pyright: ignore[reportPrivateUsage]
    if source_ptr % modulus != replay.source_residue:
        return None  # planned again the full way (a new image's pointer may differ)
    ready = source._ready  # pyright: ignore[reportPrivateUsage]
    stream, keep = ready.stream, ready.keep
    if stream is None:  # nothing pending: the executor's current stream (_conversions._launch_stream)
        stream, keep = entry.executor.stream_for(source._device_index)  # pyright: ignore[reportPrivateUsage]
    if out is None:
        target = type(source)._allocated(entry.target, row_alignment, stream, keep)  # pyright: ignore[reportPrivateUsage]
        if order is not None:
            target._channel_order = order  # pyright: ignore[reportPrivateUsage]
    else:
        target = out
    target_ptr = target._ptr  # pyright: ignore[reportPrivateUsage]
    record_read = begin_conversion(source, target, stream, keep)
    try:
        if target_ptr % modulus == replay.target_residue:
            replay.launch(source_ptr, target_ptr, stream)
        else:  # new memory aligned otherwise than the first call's: the executor plans it
            entry.executor.convert(source, target, affine, stream)
    finally:  # even a failed launch may have queued work: later users wait for the stream
        end_conversion(source, target, stream, keep, record_read=record_read)
    return target


def remember(
    source: GpuImage[Any, Any],
    order: ChannelOrder | None,
    dtype: DTypeName,
    layout: Layout,
    affine: Affine,
    row_alignment: int,
    out: GpuImage[Any, Any] | None,
    result: GpuImage[Any, Any],
) -> None:
    """Record a call that just succeeded the full way (``result``: ``out``, or the new image), where
    its executor can replay it. GPU images only: host conversions are their own work."""
    spec = source._spec  # pyright: ignore[reportPrivateUsage]
    executor = chosen.get(spec.device.kind)
    if executor is None or not spec.device.is_cuda:
        return
    replay = executor.convert_replay(source, result, affine)
    if replay is None:
        return
    target = result._spec  # pyright: ignore[reportPrivateUsage]
    if out is None:
        entry = _Entry(spec, target, affine, layout, order, None, executor, replay)
        _store(_new, (id(spec), id(affine), dtype, row_alignment), entry)
    else:
        out_order = out._channel_order  # pyright: ignore[reportPrivateUsage]
        entry = _Entry(spec, target, affine, layout, order, out_order, executor, replay)
        _store(_into, (id(spec), source._ptr, id(target), out._ptr, id(affine), dtype), entry)  # pyright: ignore[reportPrivateUsage]


def _store(table: dict[_Key, _Entry], key: _Key, entry: _Entry) -> None:
    if len(table) >= _LIMIT:
        table.clear()
    table[key] = entry


def forget() -> None:
    """Empty both tables (tests; a changed runtime)."""
    _into.clear()
    _new.clear()
