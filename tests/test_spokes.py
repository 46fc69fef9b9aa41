"""The spoke interface and registry (``_spokes``): one record of functions per foreign library."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from gpuimage import CPU, GpuImage, ImageSpec, InteropError, _spokes
from gpuimage._spokes import OutArray, Spoke, loaded_spokes, spoke, spoke_of

SPEC = ImageSpec.packed(height=2, width=3, device="cpu")


@pytest.mark.parametrize("name", sorted(_spokes._REGISTRY))  # pyright: ignore[reportPrivateUsage]
def test_every_registered_module_defines_its_spoke(name: str) -> None:
    found = spoke(name)
    assert isinstance(found, Spoke)
    assert found.name == name
    assert spoke(name) is found  # loaded once


def test_foreign_objects_find_the_spoke_of_their_package() -> None:
    assert spoke_of(torch.zeros(2)) is spoke("torch")
    assert spoke_of(np.zeros(2)) is spoke("numpy")
    assert spoke_of(object()) is None
    assert spoke_of(3) is None


def test_loaded_spokes_reports_only_what_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_spokes, "_loaded", {})
    assert loaded_spokes("torch", "cupy") == []
    torch_spoke = spoke("torch")
    assert loaded_spokes("torch", "cupy") == [torch_spoke]


def test_a_new_library_is_one_module_and_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_spoke")

    def view(ptr: int, spec: ImageSpec, owner: object, /) -> object:
        return ("view", ptr)

    module.SPOKE = Spoke(name="fake", view=view)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_spoke", module)
    monkeypatch.setitem(_spokes._REGISTRY, "fake", "fake_spoke")  # pyright: ignore[reportPrivateUsage]
    monkeypatch.setattr(_spokes, "_loaded", {})
    found = spoke("fake")
    assert found.view(16, SPEC, None) == ("view", 16)
    assert found.current_stream(0) == 0  # a library without streams queues on the legacy default
    assert found.current_stream_object(0) is None
    found.note_use(None, 0)  # the default tells no allocator anything, and does not fail


def test_what_a_spoke_does_not_offer_is_refused_with_our_error() -> None:
    bare = Spoke(name="bare")
    with pytest.raises(InteropError, match="cannot import a list"):
        bare.parse([], layout=None, device=None, stream=None, where="from_bare()")
    with pytest.raises(InteropError, match="no zero-copy view"):
        bare.view(16, SPEC, None)
    with pytest.raises(InteropError, match="no stream handle"):
        bare.stream_handle(object(), where="stream")
    with pytest.raises(InteropError, match="expected out to be an array"):
        bare.describe_out([], where="normalize_batch()")


def test_out_arrays_are_described_by_their_library_spoke() -> None:
    described = spoke("torch").describe_out(torch.zeros(2, 3, 4, 5), where="out")
    assert described == OutArray(described.ptr, (2, 3, 4, 5), (240, 80, 20, 4), "float32", CPU)  # bytes


def test_the_hub_reads_through_the_registry() -> None:
    image = GpuImage.from_numpy(np.zeros((2, 3), np.uint8))
    view = spoke("numpy").view(image.ptr, image.spec, None)
    assert isinstance(view, np.ndarray)
    assert view.shape == (2, 3, 1)
