"""A frame loop's ``normalize_batch``, replayed: the same call every frame, new pointers.

A decoder loop calls ``normalize_batch(frames, mean, std, rois=..., size=..., resize=..., out=batch)``
with frames of one geometry, the same regions (or regions that change only now and then), the
same options and the same ``out`` array. The first call of a kind is checked in full
(``_frame_batch``); it leaves a replay here: the executor's packed launch (``frames_replay``) under
the call's *key*, everything the checks depended on except pointers:

- each item's format, colour and plane specs (specs are interned per description, so their ids
  name a geometry; the entry holds them, so an id stays theirs), an image item's spec and channel
  order, and which items are the same object;
- the regions, size, resize, aspect, order, mean, std, pad, dtype and scale as given, exactly
  typed (an int region is not a float one: those are refused by the full path, never replayed);
- ``out``'s library, shape, byte strides, dtype and device.

A call with the same key reads its pointers, checks what depends on them (alignment, ``out``
overlapping an input), orders the streams exactly as the full path does (the out library's current
stream waits for every plane's data; one event records the reads) and launches. Anything else (a
key never seen, an unhashable argument, a GpuBatch ``out``, host memory, an executor with no replay)
goes the full way, which raises what is wrong.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ._conversions import executor_for
from ._errors import GpuImageError
from ._exports import ImageExports
from ._ordering import begin_reads, end_reads
from ._plan import ranges_overlap
from ._spokes import Spoke, spoke_of

if TYPE_CHECKING:
    from ._executor import Executor, FramesReplay, Operand
    from ._frame_convert import FrameLike
    from ._image import GpuImage
    from ._sampling import FrameSource, SampleRecipe

__all__ = ["Call", "prepare"]

_WHERE = "normalize_batch()"
_LIMIT = 64
"""Keys kept (a loop has one or a few); past it the table starts again."""

Key = tuple[object, ...]


class _Entry(NamedTuple):
    held: tuple[object, ...]  # the specs whose ids the key names
    executor: Executor
    launch: FramesReplay | None  # None: the executor has no replay (the full path every call)
    extent: int  # bytes written from out's pointer


_entries: dict[Key, _Entry] = {}


class Call(NamedTuple):
    """A ``normalize_batch`` call described for the replay table (``prepare``)."""

    key: Key
    held: tuple[object, ...]
    spoke: Spoke
    out_ptr: int
    device_index: int
    planes: list[GpuImage[Any, Any]]
    """The distinct planes (an image item is its own plane), in first-use order."""
    pointers: list[tuple[int, int, int]]
    """Per item, its plane pointers, zero-padded to three."""

    def run(self) -> bool:
        """Queue the call if its key was seen: True, and ``out`` is being written on its library's
        current stream; False where the full path must run (then ``remember`` the call)."""
        try:
            entry = _entries.get(self.key)
        except TypeError:  # a list for mean or std: never replayed
            return False
        if entry is None or entry.launch is None:
            return False
        launch = entry.launch
        device = self.planes[0].spec.device
        if executor_for(device, _WHERE) is not entry.executor:  # an override since: the full way
            return False
        if self.out_ptr % launch.target_alignment or (
            launch.plane_alignment > 1
            and any(ptr % launch.plane_alignment for ptr in itertools.chain.from_iterable(self.pointers))
        ):
            return False  # the full path names what is misaligned
        written = (self.out_ptr, entry.extent)
        if any(ranges_overlap((plane.ptr, plane.nbytes), written) for plane in self.planes):
            return False  # the full path refuses it
        stream = self.spoke.current_stream(self.device_index)
        begin_reads(self.planes, stream)
        try:
            launch(self.pointers, self.out_ptr, stream)
        finally:  # even a failed launch may have queued work: the next writer waits for the stream
            end_reads(self.planes, stream)
        return True

    def remember(
        self,
        executor: Executor,
        sources: Sequence[FrameSource],
        target: Operand,
        item_pitch: int,
        recipe: SampleRecipe,
        extent: int,
    ) -> None:
        """Keep the replay of the call that the full path just queued (checked, with these values)."""
        try:
            if self.key in _entries:
                return
        except TypeError:  # unhashable (see run)
            return
        if len(_entries) >= _LIMIT:
            _entries.clear()
        launch = executor.frames_replay(sources, target, item_pitch, recipe)
        _entries[self.key] = _Entry(self.held, executor, launch, extent)


def _item(
    item: object,
) -> tuple[tuple[object, ...], tuple[GpuImage[Any, Any], ...], tuple[object, ...]] | None:
    """An item's part of the key, its planes, and the specs to hold; None: not a frame or an image
    (the full path says what it is)."""
    if isinstance(item, ImageExports):
        image = cast("GpuImage[Any, Any]", item)
        spec = image.spec
        return (None, image.channel_order, id(spec)), (image,), (spec,)
    try:
        frame = cast("FrameLike", item)
        planes, fmt, colour = frame.planes, frame.format, frame.colour
    except AttributeError:
        return None
    specs = tuple(plane.spec for plane in planes)
    key: tuple[object, ...] = (fmt, colour, *map(id, specs))
    return key, planes, specs


def _exact(rois: object, size: object, flags: tuple[object, ...]) -> bool:
    """Arguments typed as the full path requires: equal values of other types (1.0 and 1, True and
    1) hash alike, and the full path refuses some of them."""
    if any(type(flag) is not bool for flag in flags):
        return False
    if size is not None and (
        type(size) is not tuple or {*map(type, cast("tuple[object, ...]", size))} != {int}
    ):
        return False
    if rois is None:
        return True
    if type(rois) is not list and type(rois) is not tuple:
        return False
    boxes = cast("Sequence[object]", rois)
    if any(type(box) is not tuple for box in boxes if box is not None):
        return False
    values = itertools.chain.from_iterable(
        cast("Sequence[tuple[object, ...]]", [box for box in boxes if box is not None])
    )
    return {*map(type, values)} <= {int}


def prepare(
    images: object,
    rois: object,
    out: object,
    size: object,
    flags: tuple[object, ...],
    options: tuple[object, ...],
) -> Call | None:
    """The call described for the replay table, or None where it cannot be replayed (see the
    module). ``flags``: the bool arguments; ``options``: every other argument, as given."""
    if type(images) is not list and type(images) is not tuple:
        return None
    items = cast("Sequence[object]", images)
    if not items or not _exact(rois, size, flags):
        return None
    spoke = spoke_of(out)
    if spoke is None:
        return None
    try:
        described = spoke.describe_out(out, where=_WHERE)
    except GpuImageError:
        return None  # the full path raises it, after the checks that come first
    if not described.device.is_cuda:
        return None
    seen: dict[int, int] = {}
    tokens: list[tuple[object, ...]] = []
    held: list[object] = []
    planes: list[GpuImage[Any, Any]] = []
    item_pointers: list[tuple[int, int, int]] = []
    pattern: list[int] = []
    pointers: list[tuple[int, int, int]] = []
    for item in items:
        index = seen.get(id(item))
        if index is None:
            found = _item(item)
            if found is None:
                return None
            token, item_planes, specs = found
            index = seen[id(item)] = len(tokens)
            tokens.append(token)
            held += specs
            planes += item_planes
            item_pointers.append(
                cast("tuple[int, int, int]", (*[plane.ptr for plane in item_planes], 0, 0, 0)[:3])
            )
        pattern.append(index)
        pointers.append(item_pointers[index])
    boxes = None if rois is None else tuple(cast("Sequence[object]", rois))
    key = (
        type(out),
        described.shape,
        described.strides,
        described.dtype,
        described.device,
        tuple(tokens),
        tuple(pattern),
        boxes,
        size,
        flags,
        options,
    )
    return Call(key, tuple(held), spoke, described.ptr, described.device.index, planes, pointers)
