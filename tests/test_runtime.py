"""The one CUDA runtime on the CPU: the documented order it is picked in, the errors where no GPU is
reachable, the public override, and the hub's allocations, transfers and pointer queries going
through it (the GPU suite, ``tests/gpu/test_cuda_runtime.py``, checks each real runtime's calls)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import numpy as np
import pytest
from typing_extensions import get_protocol_members

import gpuimage
from fake_runtime import Runtime, runtime
from gpuimage import (
    CPU,
    Device,
    GpuImage,
    ImageSpec,
    InteropError,
    MissingBackendError,
    _lifetime,
    _runtime,
)
from gpuimage._pointers import device_of
from gpuimage._runtime import DefaultRuntime, DeviceGuard, HostRuntime, cuda_error

__all__ = ["runtime"]  # the fixture

FAKE = 0x7F00_0000_0000


def _library(name: str) -> Runtime:
    found = Runtime()
    found.name = name  # the fake's class attribute, shadowed per library
    return found


def _probes(monkeypatch: pytest.MonkeyPatch, **outcomes: Runtime | str) -> list[str]:
    """Makes ``_probe`` answer ``outcomes`` (a runtime, or why not) and returns the libraries asked."""
    asked: list[str] = []

    def probe(library: str) -> Runtime | str:
        asked.append(library)
        return outcomes.get(library, "not installed")

    monkeypatch.setattr(_runtime, "_probe", probe)
    return asked


def _default(
    monkeypatch: pytest.MonkeyPatch, **outcomes: Runtime | str
) -> tuple[gpuimage.Runtime, list[str]]:
    asked = _probes(monkeypatch, **outcomes)
    return _runtime._default_runtime.__wrapped__(), asked


# -- the documented order ----------------------------------------------------------------------------


def test_events_come_from_cupy_and_memory_from_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    cupy, torch = _library("cupy"), _library("torch")
    chosen, asked = _default(monkeypatch, cupy=cupy, torch=torch)
    assert isinstance(chosen, DefaultRuntime)
    assert asked == ["cupy"], "the memory half is picked at the first allocation, not before"
    chosen.wait(7, 9, 0)
    event = chosen.record(9, 0)
    chosen.wait_event(event, 5)
    assert cupy.waits == [(7, 9, 0), (9, 5, 0)]
    assert cupy.recorded == [(9, 0)]
    assert not torch.waits
    chosen.allocate(64, Device("cuda", 0), alignment=16, stream=None)
    assert torch.allocations == [(64, Device("cuda", 0), 16, None)]
    assert not cupy.allocations
    assert asked == ["cupy", "torch"]
    assert chosen.name == "cupy+torch"


def test_torch_alone_does_both(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = _library("torch")
    chosen, _ = _default(monkeypatch, cupy="sees no GPU", torch=torch)
    chosen.synchronize(7, 0)
    chosen.allocate(8, Device("cuda", 0), alignment=1, stream=None)
    assert torch.syncs == [(7, 0)]
    assert len(torch.allocations) == 1
    assert chosen.name == "torch"


def test_cupy_allocates_where_torch_sees_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    cupy = _library("cupy")
    cupy.current = 5
    chosen, _ = _default(monkeypatch, cupy=cupy, torch="sees no GPU")
    memory = chosen.allocate(8, Device("cuda", 0), alignment=1, stream=None)
    assert memory.stream == 5
    assert chosen.current_stream(0) == 5
    assert chosen.name == "cupy"


def test_host_memory_comes_from_numpy_whatever_reaches_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    cupy, torch = _library("cupy"), _library("torch")
    chosen, asked = _default(monkeypatch, cupy=cupy, torch=torch)
    for each in (chosen, HostRuntime()):
        memory = each.allocate(100, CPU, alignment=64, stream=None)
        assert memory.ptr % 64 == 0
        assert memory.stream is None
        owner = memory.owner
        assert isinstance(owner, np.ndarray)
        assert owner.ctypes.data <= memory.ptr
        assert memory.ptr + 100 <= owner.ctypes.data + owner.nbytes
    assert not torch.allocations
    assert not cupy.allocations
    assert asked == ["cupy"]


# -- no GPU reachable -----------------------------------------------------------------------------------


def test_without_a_gpu_the_runtime_is_host_only(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen, _ = _default(monkeypatch, cupy="sees no GPU", torch="sees no GPU")
    assert isinstance(chosen, HostRuntime)
    assert not chosen.has_gpu
    assert chosen.name == "numpy"
    assert chosen.pointer_device(FAKE) is None
    with chosen.device(3):  # nothing to switch
        pass
    calls: list[Callable[[], object]] = [
        lambda: chosen.wait(7, 9, 0),
        lambda: chosen.record(7, 0),
        lambda: chosen.synchronize(7, 0),
        lambda: chosen.stream_idle(7, 0),
        lambda: chosen.current_stream(0),
        lambda: chosen.allocate(8, Device("cuda", 0), alignment=1, stream=None),
    ]
    for call in calls:
        with pytest.raises(MissingBackendError, match="needs a CUDA runtime, and none reaches a GPU here"):
            call()


def test_an_installed_library_that_sees_no_gpu_is_not_told_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _probes(monkeypatch, cupy="not installed", torch="sees no GPU")
    with pytest.raises(MissingBackendError) as caught:
        HostRuntime().wait(7, 9, 0)
    message = str(caught.value)
    assert message.startswith("ordering two streams needs a CUDA runtime")
    assert "no GPU is visible to torch" in message
    assert "pip install" not in message, "torch is installed: installing it again would not help"


def test_nothing_installed_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    _probes(monkeypatch)
    with pytest.raises(MissingBackendError, match=r"pip install 'gpuimage\[torch\]' or 'gpuimage\[cupy\]'"):
        HostRuntime().allocate(8, Device("cuda", 1), alignment=1, stream=None)


def test_a_library_that_fails_to_import_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _probes(monkeypatch, torch="fails to import (OSError: libcudart.so.13)")
    with pytest.raises(MissingBackendError, match=r"torch fails to import \(OSError: libcudart.so.13\)"):
        HostRuntime().synchronize(7, 0)


def test_the_real_probe_passes_over_a_library_without_a_gpu() -> None:
    if _runtime._default_runtime().has_gpu:
        pytest.skip("a GPU runtime is reachable here")
    assert isinstance(_runtime._default_runtime(), HostRuntime)
    assert "no GPU is visible to CuPy or torch" in str(_runtime.missing_runtime("x"))


def test_transfers_and_orderings_without_a_gpu_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runtime, "_chosen", _runtime._chosen)
    monkeypatch.setattr(_lifetime, "_recorder", list(_lifetime._recorder))
    _probes(monkeypatch, torch="sees no GPU")
    gpuimage.set_runtime(HostRuntime())
    image = GpuImage.from_pointer(FAKE, ImageSpec(height=2, width=2, channels=1, device=0))
    with pytest.raises(
        MissingBackendError, match=r"copying a GPU image needs a CUDA runtime.*no GPU is visible"
    ):
        image.cpu()
    pending = GpuImage.from_pointer(FAKE, ImageSpec(height=2, width=2, channels=1, device=0), stream=7)
    with pytest.raises(MissingBackendError, match=r"stream 7 \(or pass stream=.*no GPU is visible"):
        pending.as_cupy()  # the consumer would be CuPy's current stream, which needs a runtime to order


# -- the spokes implement the protocol ------------------------------------------------------------------


@pytest.mark.parametrize("spoke", ["_cupy", "_torch"])
def test_each_spoke_runtime_implements_every_call(spoke: str) -> None:
    module = pytest.importorskip(f"gpuimage.{spoke}")
    runtimes = pytest.importorskip(f"gpuimage.{spoke}_runtime")
    kind = runtimes.CupyRuntime if spoke == "_cupy" else runtimes.TorchRuntime
    made = kind(module.view)
    assert isinstance(made, gpuimage.Runtime)
    assert get_protocol_members(gpuimage.Runtime) <= set(dir(kind))
    if not _runtime._default_runtime().has_gpu:
        assert module.gpu_runtime() is None, "without a GPU the spoke offers no runtime"


# -- picked once, overridable -----------------------------------------------------------------------------


def test_the_chosen_runtime_is_a_global_read(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Runtime()
    monkeypatch.setattr(_runtime, "_chosen", fake)

    def pick() -> gpuimage.Runtime:
        raise AssertionError("runtime() picked again")

    monkeypatch.setattr(_runtime, "_pick", pick)
    assert gpuimage.runtime() is fake
    assert gpuimage.runtime() is fake


def test_it_is_picked_once_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runtime, "_chosen", None)
    monkeypatch.setattr(_lifetime, "_recorder", [None])
    built: list[gpuimage.Runtime] = []

    def default() -> gpuimage.Runtime:
        built.append(Runtime())
        return built[-1]

    monkeypatch.setattr(_runtime, "_default_runtime", default)
    assert gpuimage.runtime() is gpuimage.runtime() is built[0]
    assert len(built) == 1
    assert _lifetime._recorder[0] is not None, "picking it installs its release-event recorder"


def test_set_runtime_installs_yours(runtime: Runtime) -> None:
    assert gpuimage.runtime() is runtime
    image = GpuImage.from_pointer(FAKE, ImageSpec(height=2, width=3, channels=1, device=1), stream=7)
    image.as_cupy(stream=9)
    image.synchronize()
    assert runtime.waits == [(7, 9, 1)]
    assert runtime.syncs == [(7, 1)]


def test_set_runtime_none_goes_back_to_the_default(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    default = HostRuntime()
    monkeypatch.setattr(_runtime, "_default_runtime", lambda: default)
    gpuimage.set_runtime(None)
    assert gpuimage.runtime() is default
    assert _lifetime._recorder[0] is None, "a host-only runtime records no release events"


class _Partial:
    name = "partial"
    has_gpu = True

    def wait(self, producer: int, consumer: int, device: int, /) -> None:
        return None


def test_set_runtime_refuses_an_object_without_every_call(runtime: Runtime) -> None:
    with pytest.raises(
        InteropError, match=r"set_runtime\(\): expected a gpuimage.Runtime or None, got _Partial"
    ):
        gpuimage.set_runtime(_Partial())  # type: ignore[arg-type]
    with pytest.raises(InteropError, match="allocate, copy, current_stream"):
        gpuimage.set_runtime(_Partial())  # type: ignore[arg-type]
    assert gpuimage.runtime() is runtime, "a refused runtime changes nothing"


class _Forwarding:
    """The concepts page's example: one call of its own, the rest forwarded to another runtime."""

    def __init__(self, base: gpuimage.Runtime) -> None:
        self.base = base
        self.asked: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.base, name)

    def allocate(
        self, nbytes: int, device: Device, /, *, alignment: int, stream: int | None
    ) -> gpuimage.Allocation:
        self.asked.append(nbytes)
        return self.base.allocate(nbytes, device, alignment=alignment, stream=stream)


def test_set_runtime_takes_a_wrapper_that_forwards(runtime: Runtime) -> None:
    wrapper = _Forwarding(runtime)
    gpuimage.set_runtime(wrapper)  # type: ignore[arg-type]  # its other calls come through __getattr__
    image = GpuImage.empty(2, 2, 1, "uint8", device=0)
    image.as_cupy(stream=9)
    assert wrapper.asked == [4]
    assert runtime.waits == [(0, 9, 0)], "the forwarded calls reach the wrapped runtime"


class _Owner:
    """Stands in for a tensor: weakly referenceable, so a test sees when it is released."""


@pytest.mark.parametrize("idle", [False, True], ids=["busy", "idle"])
def test_a_release_records_an_event_only_on_busy_streams(runtime: Runtime, idle: bool) -> None:
    owner = _Owner()
    owner_ref = weakref.ref(owner)
    image = GpuImage.from_pointer(
        FAKE, ImageSpec(height=2, width=2, channels=1, device=0), owner=owner, stream=7
    )
    image.as_cupy(stream=9)
    if idle:
        runtime.idle.add(9)
    del owner, image
    gc.collect()
    assert runtime.recorded == ([] if idle else [(9, 0)])
    assert (owner_ref() is None) is idle, "an idle stream holds nothing back; a busy one until its event"


# -- the hub goes through it ------------------------------------------------------------------------------


def test_empty_allocates_through_the_runtime(runtime: Runtime) -> None:
    runtime.current = 5
    image = GpuImage.empty(3, 5, 3, "float32", device=1, row_alignment=64)
    assert runtime.allocations == [(image.spec.nbytes, Device("cuda", 1), 64, None)]
    assert image.ptr % 64 == 0
    assert image.row_pitch == 64
    assert image.stream == 5, "ready on the allocator's stream"
    host = GpuImage.empty(2, 2, 1, "uint8", device="cpu", row_alignment=16)
    assert runtime.allocations[-1] == (host.spec.nbytes, CPU, 16, None)
    assert host.stream is None


def test_empty_on_another_stream_than_the_pools_waits_for_it(runtime: Runtime) -> None:
    runtime.home = 5  # torch's allocator serves its own stream, whatever is asked
    image = GpuImage.empty(2, 2, 1, "uint8", device=0, stream=9)
    assert runtime.allocations[-1][3] == 9
    assert runtime.waits == [(5, 9, 0)], "earlier work on the pool's stream may still use the block"
    assert image.stream == 9


def test_transfers_copy_through_the_runtime_on_its_current_stream(runtime: Runtime) -> None:
    runtime.current = 3
    host = GpuImage.from_numpy(np.arange(24, dtype=np.uint8).reshape(4, 6))
    device = host.cuda(1)
    assert device.device == Device("cuda", 1)
    assert runtime.copies == [(host.ptr, device.ptr, 3, 1)]
    back = device.cpu()
    assert runtime.copies[-1] == (device.ptr, back.ptr, 3, 1)
    assert np.array_equal(back.as_numpy()[..., 0], np.arange(24).reshape(4, 6))
    assert device.stream == 3, "the copy wrote the device image on the runtime's stream"


def test_pointer_devices_come_from_the_runtime(runtime: Runtime) -> None:
    runtime.owners[FAKE] = 2
    assert device_of(FAKE) == Device("cuda", 2)
    assert device_of(FAKE + 1) is None
    runtime.owners.update({0: 3, 2**64: 3})
    assert device_of(0) is None, "not a pointer: the runtime is not asked"
    assert device_of(2**64) is None, "not a pointer: the runtime is not asked"


# -- pieces for implementations -------------------------------------------------------------------------


def test_the_device_guard_switches_and_restores() -> None:
    current = [0]
    sets: list[int] = []

    def set_device(index: int) -> None:
        sets.append(index)
        current[0] = index

    with DeviceGuard(1, lambda: current[0], set_device):
        assert current[0] == 1
    assert current[0] == 0
    assert sets == [1, 0]
    with DeviceGuard(0, lambda: current[0], set_device):
        pass
    assert sets == [1, 0], "already current: no call"
    with pytest.raises(KeyError), DeviceGuard(2, lambda: current[0], set_device):
        raise KeyError
    assert current[0] == 0, "restored through an exception"


def test_cuda_errors_say_what_failed() -> None:
    error = cuda_error("ordering stream 0x9 after stream 0x7 on cuda:1", RuntimeError("invalid handle"))
    assert isinstance(error, gpuimage.CudaError)
    assert str(error).startswith(
        "ordering stream 0x9 after stream 0x7 on cuda:1: expected the CUDA call to succeed, got "
        "RuntimeError: invalid handle."
    )
