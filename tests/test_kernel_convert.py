"""The kernel executor (``_kernel_convert``) without a GPU: it imports where CuPy imports, says it reaches
no GPU, and its launch-plan cache (by spec, map and pointer alignment identity) reuses one plan per
description, makes another for any other description, and stays bounded. ``launch_plan`` and
``launch_batch`` are replaced by recorders; the GPU suite runs the real kernels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import pytest

from gpu_probe import gpu_available

pytest.importorskip("cupy")

from gpuimage import ImageSpec, _cupy
from gpuimage import _kernel_convert as kernel_convert
from gpuimage._affine import Affine, identity_affine
from gpuimage._executor import Buffer
from gpuimage._geometry import Geometry
from gpuimage._plan import MAX_VECTOR, BatchItem

BASE = 0x7F00_0000_0000  # a multiple of MAX_VECTOR
SOURCE = ImageSpec.packed(height=4, width=6, channels=3, device=1)
TARGET = ImageSpec.packed(height=4, width=6, channels=3, dtype="float32", layout="CHW", device=1)


class Call(NamedTuple):
    """One ``launch_plan`` call's arguments."""

    source_dtype: str
    target_dtype: str
    source_alignment: int
    source: Geometry
    target_alignment: int
    target: Geometry
    affine: Affine
    device: int


class Plan:
    """A launch plan that records its launches."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.launches: list[tuple[int, int, int]] = []

    def launch(self, source_ptr: int, target_ptr: int, stream: int) -> None:
        self.launches.append((source_ptr, target_ptr, stream))


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[Plan]:
    """The plans ``launch_plan`` makes, in order, from an empty cache."""
    made: list[Plan] = []

    def launch_plan(*arguments: Any) -> Plan:
        made.append(Plan(Call(*arguments)))
        return made[-1]

    monkeypatch.setattr(kernel_convert, "launch_plan", launch_plan)
    monkeypatch.setattr(kernel_convert, "_plans", {})
    return made


def _convert(
    source_ptr: int,
    target_ptr: int,
    affine: Affine,
    *,
    source: ImageSpec = SOURCE,
    target: ImageSpec = TARGET,
    stream: int = 5,
) -> None:
    kernel_convert.EXECUTOR.convert(
        Buffer(source_ptr, source, None), Buffer(target_ptr, target, None), affine, stream
    )


@pytest.mark.skipif(gpu_available(), reason="checks what is reported without a GPU")
def test_it_imports_without_a_gpu_and_says_it_reaches_none() -> None:
    assert kernel_convert.reaches_gpu() is False
    assert kernel_convert.EXECUTOR.name == "kernels"


def test_one_description_reuses_one_plan(plans: list[Plan]) -> None:
    affine = identity_affine(3)
    _convert(BASE, BASE + 0x10000, affine, stream=5)
    _convert(BASE + 16 * 40, BASE + 0x20000, affine, stream=9)  # other pointers, same alignments
    assert len(plans) == 1
    assert plans[0].launches == [(BASE, BASE + 0x10000, 5), (BASE + 640, BASE + 0x20000, 9)]
    assert plans[0].call == Call("uint8", "float32", 0, SOURCE.geometry, 0, TARGET.geometry, affine, 1), (
        "dtypes, alignments, geometries, map and device"
    )


def test_another_alignment_makes_another_plan(plans: list[Plan]) -> None:
    affine = identity_affine(3)
    _convert(BASE, BASE, affine)
    _convert(BASE + 3, BASE, affine)
    _convert(BASE, BASE + 8, affine)
    _convert(BASE + 3 + MAX_VECTOR, BASE + 8 + MAX_VECTOR, affine)  # the two alignments seen before
    assert [(plan.call.source_alignment, plan.call.target_alignment) for plan in plans] == [
        (0, 0),
        (3, 0),
        (0, 8),
        (3, 8),
    ]
    assert [len(plan.launches) for plan in plans] == [1, 1, 1, 1]
    _convert(BASE + 3, BASE + 8, affine)
    assert len(plans) == 4, "(3, 8) was planned already"
    assert plans[3].launches[-1] == (BASE + 3, BASE + 8, 5)


def test_another_spec_or_map_makes_another_plan(plans: list[Plan]) -> None:
    affine = identity_affine(3)
    _convert(BASE, BASE, affine)
    pitched = ImageSpec.packed(height=4, width=6, channels=3, device=1, row_alignment=64)
    _convert(BASE, BASE, affine, source=pitched)
    scaled = Affine((0.5,) * 3, (0.0,) * 3, False)
    _convert(BASE, BASE, scaled)
    assert len(plans) == 3
    assert plans[1].call.source == pitched.geometry
    assert plans[2].call.affine is scaled
    for index, (spec, map_) in enumerate([(SOURCE, affine), (pitched, affine), (SOURCE, scaled)]):
        _convert(BASE, BASE, map_, source=spec)
        assert len(plans) == 3, f"description {index} was planned already"
        assert plans[index].launches == [(BASE, BASE, 5)] * 2


def test_specs_built_again_for_one_description_find_its_plan(plans: list[Plan]) -> None:
    first = ImageSpec.packed(height=5, width=6, channels=3, device=1)
    again = ImageSpec.packed(height=5, width=6, channels=3, device=1)  # shared per description
    _convert(BASE, BASE, identity_affine(3), source=first)
    _convert(BASE, BASE, identity_affine(3), source=again)
    assert len(plans) == 1, "a frame loop's per-frame specs hit the cache"


def test_the_cache_is_bounded(plans: list[Plan]) -> None:
    limit = kernel_convert._PLANS_LIMIT
    maps = [Affine((float(index),) * 3, (0.0,) * 3, False) for index in range(limit + 40)]
    for affine in maps:  # kept alive in ``maps``: no id is reused
        _convert(BASE, BASE, affine)
    assert len(plans) == limit + 40
    assert 0 < len(kernel_convert._plans) <= limit
    _convert(BASE, BASE, maps[-1])
    assert len(plans) == limit + 40, "the latest plan survives the bound"


class BatchCall(NamedTuple):
    """One ``launch_batch`` call."""

    variant: object
    items: Sequence[BatchItem]
    target: tuple[int, Geometry]
    item_pitch: int
    affine: Affine
    pad: float
    stream: int
    device: int


def test_a_batch_is_one_launch_over_its_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    variants: list[tuple[Any, ...]] = []
    launches: list[BatchCall] = []

    def plan_variant(*arguments: Any, item_pitch: int) -> str:
        variants.append((*arguments, item_pitch))
        return "variant"

    def launch_batch(variant: object, **keywords: Any) -> None:
        launches.append(BatchCall(variant, **keywords))

    monkeypatch.setattr(kernel_convert, "plan_variant", plan_variant)
    monkeypatch.setattr(kernel_convert, "launch_batch", launch_batch)
    source = Buffer(BASE, SOURCE, None)
    regions = [BatchItem(BASE + 3, 18, 3, 1, 2, 5), BatchItem(BASE + 21, 18, 3, 1, 3, 4)]
    slot = ImageSpec.packed(height=3, width=5, channels=3, dtype="float32", layout="CHW", device=1)
    affine = identity_affine(3)
    kernel_convert.EXECUTOR.convert_batch(
        [source, source], regions, Buffer(BASE, slot, None), 4096, affine, 0.5, 7
    )
    read = [(BASE + 3, Geometry(2, 5, 3, 18, 3, 1)), (BASE + 21, Geometry(3, 4, 3, 18, 3, 1))]
    assert variants == [("uint8", "float32", read, (BASE, slot.geometry), affine, 4096)]
    assert launches == [BatchCall("variant", regions, (BASE, slot.geometry), 4096, affine, 0.5, 7, 1)]


def test_the_default_stream_is_cupys_current_one(monkeypatch: pytest.MonkeyPatch) -> None:
    stream_object = object()
    monkeypatch.setattr(_cupy, "current_stream", lambda device: 0x700 + device)
    monkeypatch.setattr(_cupy, "current_stream_object", lambda device: stream_object)
    handle, keep = kernel_convert.EXECUTOR.stream_for(2)
    assert handle == 0x702
    assert keep is stream_object, "CuPy destroys a stream with its object: the executor hands it on"
