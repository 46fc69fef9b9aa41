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
  typed (an int region is not a float one, nor is True a 1: the full path refuses those, and they
  are never replayed);
- ``out``'s library and its ``Spoke.out_signature`` (shape, strides, dtype, device, flags); for a
  call without ``out``, the library ``like`` names (each replay makes a new array of the kind the
  first call made: ``NewOut``).

A call with the same key reads its pointers, checks what depends on them (alignment, ``out``
overlapping an input), orders the streams exactly as the full path does (the out library's current
stream waits for every plane's data; one event records the reads, unless a later writer waits
for their whole stream anyway: ``_ordering.begin_reads``) and launches. Anything else (a
key never seen, an unhashable argument, a GpuBatch ``out``, host memory, an executor with no replay)
goes the full way, which raises what is wrong.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ._affine import channel_key
from ._batch_out import NewOut, allocate_batch
from ._conversions import executor_for
from ._errors import MissingBackendError
from ._exports import ImageExports
from ._frame_exports import FrameExports
from ._ordering import begin_reads, end_reads
from ._plan import ranges_overlap
from ._spokes import Spoke, spoke_of
from ._spokes import spoke as spoke_named

if TYPE_CHECKING:
    from ._device import Device
    from ._executor import Executor, FramesReplay, Operand
    from ._frame_convert import FrameLike
    from ._image import GpuImage
    from ._sampling import FrameSource, SampleRecipe

__all__ = ["Call", "Entry", "ItemsPart", "items_part", "known", "launch_entry", "prepare"]

_WHERE = "normalize_batch()"
_NUMBERS = (float, int)
_SCALES = (float, int, type(None))
_LIMIT = 64
"""Keys kept (a loop has one or a few); past it the table starts again."""

Key = tuple[object, ...]


class Entry(NamedTuple):
    """A replay: what the full path checked, and the launch that repeats it."""

    held: tuple[object, ...]  # the specs whose ids the key names
    executor: Executor
    launch: FramesReplay | None  # None: the executor has no replay (the full path every call)
    device: Device
    extent: int  # bytes written from out's pointer
    plane_extents: list[int]  # the bytes each of Call.planes spans (their specs are in the key)
    new_out: NewOut | None = None  # a call without out: the array each call makes


_entries: dict[Key, Entry] = {}


class Call(NamedTuple):
    """A ``normalize_batch`` call described for the replay table (``prepare``)."""

    key: Key
    held: tuple[object, ...]
    spoke: Spoke
    out_ptr: int
    planes: list[GpuImage[Any, Any]]
    """The distinct planes (an image item is its own plane), in first-use order."""
    pointers: list[tuple[int, int, int]]
    """Per item, its plane pointers, zero-padded to three."""
    items: tuple[object, ...]
    """The items' part of the key (``ItemsPart.key``)."""
    described: object
    """``out``'s part of the key (its ``Spoke.out_signature`` record)."""

    def run(self) -> bool:
        """Queue the call if its key was seen: True, and ``out`` is being written on its library's
        current stream; False where the full path must run (then ``remember`` the call)."""
        entry = known(self.key)
        if entry is None:
            return False
        return launch_entry(entry, self.spoke, self.planes, self.pointers, self.out_ptr)

    def run_new(self) -> object:
        """A call without ``out`` (``prepare`` with ``like``): a new array of the kind the first call
        made, written as ``run`` writes ``out``, if its key was seen; else None, and the full path
        must run (then ``remember`` the call)."""
        entry = known(self.key)
        if entry is None or entry.new_out is None or entry.launch is None:
            return None
        made = allocate_batch(*entry.new_out, _WHERE)
        signature = self.spoke.out_signature(made)
        if signature is None or not launch_entry(entry, self.spoke, self.planes, self.pointers, signature[0]):
            return None
        return made

    def remember(
        self,
        executor: Executor,
        sources: Sequence[FrameSource],
        target: Operand,
        item_pitch: int,
        recipe: SampleRecipe,
        extent: int,
        new_out: NewOut | None = None,
    ) -> None:
        """Keep the replay of the call that the full path just queued (checked, with these values;
        ``new_out``: how it made its array, for a call without ``out``)."""
        try:
            kept = _entries.get(self.key)
        except TypeError:  # unhashable (see known)
            return
        if kept is not None and kept.executor is executor:
            return  # else made by another executor (an override since ended): replaced below
        if len(_entries) >= _LIMIT:
            _entries.clear()
        launch = executor.frames_replay(sources, target, item_pitch, recipe)
        extents = [plane.nbytes for plane in self.planes]
        _entries[self.key] = Entry(self.held, executor, launch, target.spec.device, extent, extents, new_out)


def known(key: Key) -> Entry | None:
    """The replay of a call with this key, if one was kept (never for an unhashable key: a list for
    mean or std)."""
    try:
        return _entries.get(key)
    except TypeError:
        return None


def launch_entry(
    entry: Entry,
    spoke: Spoke,
    planes: Sequence[GpuImage[Any, Any]],
    pointers: Sequence[tuple[int, int, int]],
    out_ptr: int,
) -> bool:
    """Queue ``entry``'s launch with these pointers (a call whose every other part matched the
    entry's): True, and ``out`` is being written on ``spoke``'s current stream; False where the
    full path must run (no replay, another executor, or a pointer it must refuse or name)."""
    launch = entry.launch
    if launch is None:
        return False
    device = entry.device
    if executor_for(device, _WHERE) is not entry.executor:  # an override since: the full way
        return False
    if out_ptr % launch.target_alignment or (
        launch.plane_alignment > 1
        and any(ptr % launch.plane_alignment for ptr in itertools.chain.from_iterable(pointers))
    ):
        return False  # the full path names what is misaligned
    written = (out_ptr, entry.extent)
    for plane, extent in zip(planes, entry.plane_extents, strict=True):
        if ranges_overlap((plane.ptr, extent), written):
            return False  # the full path refuses it
    stream = spoke.current_stream(device.index)
    record = begin_reads(planes, stream)
    try:
        launch(pointers, out_ptr, stream)
    finally:  # even a failed launch may have queued work: the next writer waits for the stream
        if record:
            end_reads(planes, stream)
    return True


def _item(
    item: object,
) -> tuple[tuple[object, ...], tuple[GpuImage[Any, Any], ...], tuple[object, ...]] | None:
    """An item's part of the key, its planes, and the specs to hold; None: not a frame or an image
    (the full path says what it is)."""
    if isinstance(item, ImageExports):
        image = cast("GpuImage[Any, Any]", item)
        spec = image.spec
        return (None, image.channel_order, id(spec)), (image,), (spec,)
    if isinstance(item, FrameExports):  # a GpuFrame never changes: its token is made once
        known = _frames.get(id(item))
        if known is not None and known[0]() is item:
            return known[1], item._planes, known[2]  # pyright: ignore[reportPrivateUsage]
    try:
        frame = cast("FrameLike", item)
        planes, fmt, colour = frame.planes, frame.format, frame.colour
    except AttributeError:
        return None
    specs = tuple(plane.spec for plane in planes)
    # names, not the enum and dataclass themselves: their hashes run Python code on every call
    described = None if colour is None else (colour.matrix.value, colour.range.value)
    key: tuple[object, ...] = (fmt.value, described, *map(id, specs))
    if isinstance(item, FrameExports):
        if len(_frames) >= _LIMIT:
            _frames.clear()
        _frames[id(item)] = (weakref.ref(item), key, specs)
    return key, planes, specs


_frames: dict[int, tuple[weakref.ref[FrameExports], tuple[object, ...], tuple[object, ...]]] = {}
"""GpuFrames' key tokens and specs by id, for as long as the frame lives (the weak reference says
whether an id is still the frame's); the specs it holds keep the token's ids theirs."""


def _exact(rois: object, size: object, flags: tuple[object, ...]) -> bool:
    """Arguments typed as the full path requires: equal values of other types (1.0 and 1, True and
    1) hash alike, and the full path refuses some of them. A None region is not replayed."""
    for flag in flags:
        if type(flag) is not bool:
            return False
    if size is not None and (
        type(size) is not tuple or {*map(type, cast("tuple[object, ...]", size))} != {int}
    ):
        return False
    if rois is None:
        return True
    if type(rois) is not list and type(rois) is not tuple:
        return False
    global _checked_boxes  # one tuple, replaced whole: a racing thread reads the old or the new
    boxes = cast("Sequence[tuple[object, ...]]", rois)
    ids = [*map(id, boxes)]
    checked_ids, _held = _checked_boxes
    if ids == checked_ids:  # the very tuples checked last (held, so their ids are theirs): unchanged
        return True
    exact = {*map(type, boxes)} == {tuple} and {*map(type, itertools.chain.from_iterable(boxes))} == {int}
    if exact:  # tuples of ints never change: a loop passing the same ones is checked once
        _checked_boxes = (ids, tuple(boxes))
    return exact


_checked_boxes: tuple[list[int], tuple[object, ...]] = ([], ())
"""The ids of the region tuples ``_exact`` last found exactly typed, and the tuples themselves."""


def prepare(
    images: object,
    rois: object,
    out: object,
    size: object,
    flags: tuple[object, ...],
    numbers: tuple[object, object, object, object],
    options: tuple[object, ...],
    like: object = None,
) -> Call | None:
    """The call described for the replay table, or None where it cannot be replayed (see the
    module). ``flags``: the bool arguments; ``numbers``: mean, std, pad_value and scale; ``options``:
    every other argument, as given (a value of a wrong type there hashes unlike every valid one).
    Without ``out``, ``like`` names the library of the array each call makes (``Call.run_new``)."""
    if type(images) is not list and type(images) is not tuple:
        return None
    items = cast("Sequence[object]", images)
    if not items or not _exact(rois, size, flags):
        return None
    mean, std, pad_value, scale = numbers
    means, stds = channel_key(mean), channel_key(std)  # plain numbers only: True hashes as 1
    if means is None or stds is None or type(pad_value) not in _NUMBERS or type(scale) not in _SCALES:
        return None
    options = (*options, means, stds, pad_value, scale)
    spoke: Spoke | None
    described: object
    if out is None:  # a new array per call: its geometry follows from the rest of the key
        if like != "torch" and like != "cupy":  # host arrays have no replay
            return None
        try:
            spoke = spoke_named("torch" if like == "torch" else "cupy")
        except MissingBackendError:  # the full path says what to install, after the other checks
            return None
        out_ptr, described = 0, ("new", like)
    else:
        spoke = spoke_of(out)
        if spoke is None:
            return None
        signature = spoke.out_signature(out)
        if signature is None:
            return None
        out_ptr, described = signature
    boxes = None if rois is None else tuple(cast("Sequence[object]", rois))
    part = items_part(items)
    if part is None:
        return None
    key = (type(out), described, part.key, boxes, size, flags, options)
    return Call(key, part.held, spoke, out_ptr, part.planes, part.pointers, part.key, described)


class ItemsPart(NamedTuple):
    """The items' part of a call's key, and what a launch reads of them."""

    key: tuple[object, ...]
    """Each distinct item's token, and which item is where (a count where all are one)."""
    held: tuple[object, ...]
    planes: list[GpuImage[Any, Any]]
    pointers: list[tuple[int, int, int]]


def items_part(items: Sequence[object]) -> ItemsPart | None:
    """The items described for a replay key (see ``Call``); None: an item is not a frame or an image."""
    ids = [*map(id, items)]
    if ids.count(ids[0]) == len(ids):  # regions of one frame: the common case, read once
        found = _item(items[0])
        if found is None:
            return None
        token, planes, specs = found
        return ItemsPart(((token,), len(ids)), specs, list(planes), [_pointers(planes)] * len(ids))
    seen: dict[int, int] = {}
    tokens: list[tuple[object, ...]] = []
    held: list[object] = []
    all_planes: list[GpuImage[Any, Any]] = []
    item_pointers: list[tuple[int, int, int]] = []
    pattern: list[int] = []
    for item, item_id in zip(items, ids, strict=True):
        index = seen.get(item_id)
        if index is None:
            found = _item(item)
            if found is None:
                return None
            token, planes, specs = found
            index = seen[item_id] = len(tokens)
            tokens.append(token)
            held += specs
            all_planes += planes
            item_pointers.append(_pointers(planes))
        pattern.append(index)
    pointers = [item_pointers[index] for index in pattern]
    return ItemsPart((tuple(tokens), tuple(pattern)), tuple(held), all_planes, pointers)


def _pointers(planes: tuple[GpuImage[Any, Any], ...]) -> tuple[int, int, int]:
    """An item's plane pointers, zero-padded to three (the kernel's ``Item`` has three)."""
    return cast("tuple[int, int, int]", (*[plane.ptr for plane in planes], 0, 0, 0)[:3])
