"""The frame kernel's launches for one call, checked and packed on the host (pure): ``plan_launches``
checks every item (``checked_items``) and packs one ``Params`` buffer per ``MAX_ITEMS`` items
(``pack_launches``); ``planned`` does the same, remembering the checked items of a call signature (a
frame loop's: the same plane descriptions, regions, recipe and target every call, new pointers), so
that a repeated call only reads its pointers and packs; ``replay_parts`` / ``repack`` go further for
a replayed call (``_frame_replay``): everything packed once, the pointers written per call."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from ._errors import PitchError
from ._frame_params import (
    ITEM,
    MAX_ITEMS,
    SHARED,
    FrameVariant,
    Setup,
    grid_for,
    item_values,
    params_bytes,
    pixels_per_thread,
    setup_for,
    with_capacity,
)
from ._sampling import check_frames

if TYPE_CHECKING:
    from ._executor import Operand
    from ._sampling import FrameSource, SampleRecipe
    from ._spec import ImageSpec

__all__ = [
    "Launch",
    "ReplayPart",
    "check_target",
    "checked_items",
    "pack_launches",
    "plan_launches",
    "planned",
    "repack",
    "replay_parts",
]

_WHERE = "convert_frames()"


class Launch(NamedTuple):
    """One launch: the variant, the grid (``BLOCK`` threads a block) and its packed ``Params``."""

    variant: FrameVariant
    grid: tuple[int, int, int]
    parameters: ctypes.Array[ctypes.c_char]


def plan_launches(
    sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe
) -> list[Launch]:
    """Check a ``convert_frames`` call and pack its ``ceil(N / MAX_ITEMS)`` launches (``checked_items``
    then ``pack_launches``): item ``i`` into slot ``i`` of ``target``, all checked first."""
    if not sources:
        return []
    setup, items = checked_items(sources, target, item_pitch, recipe)
    return pack_launches(setup, items, target.ptr, item_pitch, recipe)


def checked_items(
    sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe
) -> tuple[Setup, list[tuple[tuple[float | int, ...], bool]]]:
    """The call's shared setup and each item's ``Item`` values (plane pointers first), and whether it
    is read unresized.

    Raises:
        SpecError: what ``_sampling.check_frames`` refuses; items of mixed formats, colours or
            dtypes; an unaligned plane; a slot of over 524,280 rows.
        DTypeError: a target or source dtype the kernel or format does not have.
        BoundsError: a region outside its frame.
        StrideError: a YUV plane whose pixels are not packed.
        DeviceError: a plane on another device than the target.
        PitchError: a target pointer or item pitch that is not a multiple of the element size.
    """
    first, target_spec = sources[0], target.spec
    check_frames(sources, target_spec, recipe, _WHERE)  # what every executor refuses, alike
    setup = setup_for(first, target_spec, item_pitch, recipe)
    check_target(setup, target.ptr)
    device = target_spec.device
    return setup, [item_values(source, setup, first, recipe, device) for source in sources]


def check_target(setup: Setup, target_ptr: int) -> None:
    """Refuse a target pointer that is not aligned to its element."""
    if target_ptr % setup.itemsize:
        raise PitchError(
            f"{_WHERE}: expected a target pointer aligned to its {setup.itemsize}-byte element, got "
            f"ptr={target_ptr:#x}."
        )


def pack_launches(
    setup: Setup,
    items: Sequence[tuple[tuple[float | int, ...], bool]],
    target_ptr: int,
    item_pitch: int,
    recipe: SampleRecipe,
) -> list[Launch]:
    """One ``Params`` buffer per ``MAX_ITEMS`` items (the driver copies it at the launch: no lock)."""
    launches: list[Launch] = []
    for start in range(0, len(items), MAX_ITEMS):
        part = items[start : start + MAX_ITEMS]
        identity = all(unresized for _, unresized in part)
        variant = with_capacity(setup.variants[0 if identity else 1], len(part))
        buffer = ctypes.create_string_buffer(params_bytes(variant.capacity))
        SHARED.pack_into(buffer, 0, target_ptr + start * item_pitch, *setup.shared, len(part))
        for index, (values, _) in enumerate(part):
            ITEM.pack_into(buffer, SHARED.size + index * ITEM.size, *values)
        grid = grid_for(recipe.width, recipe.height, len(part), pixels_per_thread(variant))
        launches.append(Launch(variant, grid, buffer))
    return launches


Signature = tuple[object, ...]
_calls: dict[Signature, tuple[list[ImageSpec], Setup, list[tuple[float | int, ...]], list[bool]]] = {}
"""Checked calls by signature: the plane specs held (so their ids stay theirs), the setup, each
item's ``Item`` values after its pointers, and whether it is read unresized."""


def planned(
    sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe
) -> list[Launch]:
    """``plan_launches``, checking a call signature once: later calls with the same plane
    descriptions (specs are interned per description), regions, formats, colours, recipe, target
    spec and item pitch only check their pointers' alignment and pack."""
    if not sources:
        return []
    target_spec = target.spec
    specs: list[ImageSpec] = []
    known: dict[int, tuple[object, ...]] = {}  # regions of one frame share its planes: read them once
    signature: list[object] = [id(target_spec), item_pitch, recipe]
    for source in sources:
        planes = source.planes
        described = known.get(id(planes))
        if described is None:
            plane_specs = [plane.spec for plane in planes]
            specs += plane_specs
            described = known[id(planes)] = (*[id(spec) for spec in plane_specs],)
        signature += (source.format, source.colour, source.region, described)
    key = tuple(signature)
    entry = _calls.get(key)
    if entry is None or not _same(entry[0], specs, target_spec):
        setup, items = checked_items(sources, target, item_pitch, recipe)
        if len(_calls) >= 256:
            _calls.clear()
        _calls[key] = (
            [*specs, target_spec],
            setup,
            [values[3:] for values, _ in items],  # each item's values after its three plane pointers
            [plain for _, plain in items],
        )
        return pack_launches(setup, items, target.ptr, item_pitch, recipe)
    _, setup, rests, unresized = entry
    check_target(setup, target.ptr)
    alignment = sources[0].planes[0].spec.itemsize
    repeated: list[tuple[tuple[float | int, ...], bool]] = []
    for source, rest, plain in zip(sources, rests, unresized, strict=True):
        pointers = [plane.ptr for plane in source.planes]
        if alignment > 1 and any(ptr % alignment for ptr in pointers):
            checked_items(sources, target, item_pitch, recipe)  # raises, naming the plane
        repeated.append(((*pointers, 0, 0)[:3] + rest, plain))
    return pack_launches(setup, repeated, target.ptr, item_pitch, recipe)


def _same(held: list[ImageSpec], specs: list[ImageSpec], target_spec: ImageSpec) -> bool:
    """The held specs are these very objects (an id can be reused once its object is gone)."""
    return held[-1] is target_spec and all(a is b for a, b in zip(held, specs, strict=False))


_DESTINATION = struct.Struct("<Q")  # Shared's first field: the launch's slot 0
_POINTERS = struct.Struct("<3Q")  # Item's first fields: the plane pointers


class ReplayPart(NamedTuple):
    """One launch of a replayed call: its first item and its number of items (``size``), variant,
    grid, and its ``Params`` with every value packed but the pointers (``repack`` writes them)."""

    start: int
    size: int
    variant: FrameVariant
    grid: tuple[int, int, int]
    parameters: ctypes.Array[ctypes.c_char]
    target_alignment: int
    """The target pointer's required alignment in bytes (its element size)."""
    plane_alignment: int
    """The plane pointers' required alignment in bytes (the planes' element size)."""


def replay_parts(
    sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe
) -> list[ReplayPart]:
    """``plan_launches`` of a checked call, with the pointers left out: whoever replays it vouches
    that its planes, regions, recipe, target spec and item pitch are the ones checked here."""
    setup, items = checked_items(sources, target, item_pitch, recipe)
    zeroed = [((0, 0, 0, *values[3:]), plain) for values, plain in items]
    launches = pack_launches(setup, zeroed, 0, item_pitch, recipe)
    plane_alignment = sources[0].planes[0].spec.itemsize
    return [
        ReplayPart(
            start,
            min(MAX_ITEMS, len(items) - start),
            launch.variant,
            launch.grid,
            launch.parameters,
            setup.itemsize,
            plane_alignment,
        )
        for start, launch in zip(range(0, len(items), MAX_ITEMS), launches, strict=True)
    ]


def repack(
    part: ReplayPart, pointers: Sequence[tuple[int, int, int]], target_ptr: int, item_pitch: int
) -> None:
    """Write this call's pointers into ``part``'s parameters: the slot 0 of the launch, and each
    item's three plane pointers (``pointers[i]``: item ``i`` of the call, zero-padded)."""
    buffer = part.parameters
    _DESTINATION.pack_into(buffer, 0, target_ptr + part.start * item_pitch)
    for index in range(part.size):
        _POINTERS.pack_into(buffer, SHARED.size + index * ITEM.size, *pointers[part.start + index])
