"""Which device owns a pointer (``_pointers.device_of``): values that are no pointer give None without a
runtime call; a pointer is asked of the runtime (``Runtime.pointer_device``), once, and its answer is
a CUDA ``Device`` or None."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuimage
from fake_runtime import Runtime, runtime
from gpuimage import Device, _lifetime, _runtime
from gpuimage._pointers import device_of
from gpuimage._runtime import HostRuntime

__all__ = ["runtime"]  # the fixture

FAKE = 0x7F00_0000_0000


def _asked(runtime: Runtime) -> list[int]:
    """Records the pointers ``runtime`` is asked about."""
    asked: list[int] = []

    def pointer_device(ptr: int, /) -> int | None:
        asked.append(ptr)
        return Runtime.pointer_device(runtime, ptr)  # the class's: no wrapper of an earlier example

    runtime.pointer_device = pointer_device  # type: ignore[method-assign]
    return asked


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=2**64)))
def test_no_pointer_gives_none_without_asking(runtime: Runtime, value: int) -> None:
    asked = _asked(runtime)
    runtime.owners[value] = 1  # an answer the runtime would give, were it asked
    assert device_of(value) is None
    assert asked == []


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 2**64 - 1), st.integers(0, 7))
def test_a_pointer_is_asked_of_the_runtime_once(runtime: Runtime, ptr: int, ordinal: int) -> None:
    asked = _asked(runtime)
    runtime.owners = {ptr: ordinal}
    assert device_of(ptr) == Device("cuda", ordinal)
    assert asked == [ptr]


def test_a_pointer_the_runtime_does_not_know_gives_none(runtime: Runtime) -> None:
    asked = _asked(runtime)
    runtime.owners[FAKE] = 2
    assert device_of(FAKE + 64) is None, "host memory, or the runtime cannot tell"
    assert device_of(FAKE) == Device("cuda", 2)
    assert asked == [FAKE + 64, FAKE]


def test_without_a_gpu_no_pointer_has_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runtime, "_chosen", _runtime._chosen)  # put back after, as the fixture does
    monkeypatch.setattr(_lifetime, "_recorder", list(_lifetime._recorder))
    gpuimage.set_runtime(HostRuntime())
    assert device_of(FAKE) is None
    assert device_of(1) is None


def test_the_installed_runtime_is_asked_at_each_call(runtime: Runtime) -> None:
    runtime.owners[FAKE] = 0
    assert device_of(FAKE) == Device("cuda", 0)
    other = Runtime()
    other.owners[FAKE] = 3
    gpuimage.set_runtime(other)  # the fixture puts back the one chosen before
    assert device_of(FAKE) == Device("cuda", 3), "not a cached answer of the previous runtime"
