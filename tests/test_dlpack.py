"""DLPack both ways: versioned and legacy capsules, deleters called exactly once, array-API arguments."""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.utils.dlpack
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuimage import (
    DTypeError,
    ExportError,
    GpuImage,
    GpuImageError,
    ImageSpec,
    InteropError,
    Layout,
    LifetimeError,
    SpecError,
    _dlpack,
    _dlpack_abi,
    _source,
)
from gpuimage._dlpack import _exports, live_exports
from gpuimage._source import SpecCache
from hypothesis_paths import record


class Buffer(np.ndarray[Any, Any]):
    """A weak-referenceable ndarray, to watch the memory owner die."""


def _host_image() -> tuple[GpuImage, weakref.ref[Buffer]]:
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4).view(Buffer)
    return GpuImage.from_numpy(array, layout="CHW"), weakref.ref(array)


@pytest.mark.parametrize("max_version", [None, (0, 8), (1, 0), (1, 3)])
def test_export_is_consumed_by_numpy_and_torch(max_version: tuple[int, int] | None) -> None:
    image, _ = _host_image()
    capsule = image.__dlpack__(max_version=max_version)
    versioned = max_version is not None and max_version >= (1, 0)
    assert ("dltensor_versioned" if versioned else "dltensor") in repr(capsule)
    tensor = torch.utils.dlpack.from_dlpack(capsule)
    assert tensor.data_ptr() == image.ptr
    assert tuple(tensor.shape) == image.shape
    assert tuple(s * 4 for s in tensor.stride()) == image.strides
    array = np.from_dlpack(image)
    assert array.__array_interface__["data"][0] == image.ptr
    assert array.strides == image.strides


def test_consumer_deleter_releases_the_owner_exactly_once() -> None:
    image, alive = _host_image()
    before = len(_exports)
    tensor = torch.utils.dlpack.from_dlpack(image)
    del image
    gc.collect()
    assert alive() is not None
    assert float(tensor[1, 2, 3]) == 23.0
    del tensor
    gc.collect()
    assert alive() is None
    assert len(_exports) == before


def test_unconsumed_capsule_releases_the_owner() -> None:
    image, alive = _host_image()
    before = len(_exports)
    capsule = image.__dlpack__(max_version=(1, 0))
    del image
    gc.collect()
    assert alive() is not None
    del capsule
    gc.collect()
    assert alive() is None
    assert len(_exports) == before


def test_import_takes_ownership_and_calls_the_producer_deleter() -> None:
    source = np.arange(24, dtype=np.int32).reshape(2, 3, 4).view(Buffer)
    alive = weakref.ref(source)
    image = GpuImage.from_dlpack(source, layout="HWC")
    assert image.ptr == source.ctypes.data
    assert image.owner.capsule_name == "dltensor_versioned"  # type: ignore[attr-defined]
    view = image.as_torch()
    del source, image
    gc.collect()
    assert alive() is not None, "NumPy's capsule holds the array until the deleter runs"
    assert int(view[1, 2, 3]) == 23
    del view
    gc.collect()
    assert alive() is None, "the producer's deleter ran once the last view was gone"


def test_legacy_capsule_import() -> None:
    capsule = torch.ones(3, 5, dtype=torch.float16).__dlpack__()  # no max_version: a legacy capsule
    image = GpuImage.from_dlpack(capsule)
    assert image.shape == (3, 5, 1)
    assert image.owner.capsule_name == "dltensor"  # type: ignore[attr-defined]
    with pytest.raises(LifetimeError, match="already consumed"):
        GpuImage.from_dlpack(capsule)


def test_legacy_producer_without_max_version() -> None:
    class OldProducer:
        def __init__(self) -> None:
            self.array = np.zeros((4, 4), np.uint8)

        def __dlpack__(self, stream: Any = None) -> Any:
            return self.array.__dlpack__()

        def __dlpack_device__(self) -> tuple[int, int]:
            return (1, 0)

    assert GpuImage.from_dlpack(OldProducer()).shape == (4, 4, 1)


def test_dlpack_device_and_array_api_arguments() -> None:
    image, _ = _host_image()
    assert image.__dlpack_device__() == (1, 0)
    with pytest.raises(ExportError, match="takes no stream"):
        image.__dlpack__(stream=1)
    with pytest.raises(ExportError, match="cannot export"):
        image.__dlpack__(dl_device=(2, 0))
    copied = np.from_dlpack(image, copy=True)
    assert copied.__array_interface__["data"][0] != image.ptr
    np.testing.assert_array_equal(copied, image.as_numpy())
    same = np.from_dlpack(image, device="cpu")
    assert same.__array_interface__["data"][0] == image.ptr


def test_device_image_capsule_over_fake_pointer_carries_device_and_stream_checks() -> None:
    image = GpuImage.from_pointer(0x7F00_0000_0000, ImageSpec(height=2, width=3, device="cuda:1"))
    assert image.__dlpack_device__() == (2, 1)
    for bad in (0, -2, "s"):
        with pytest.raises(ExportError, match="stream"):
            image.__dlpack__(stream=bad)  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="copy=False"):
        image.__dlpack__(dl_device=(1, 0), copy=False)
    capsule = image.__dlpack__(stream=-1, max_version=(1, 0))
    del capsule


def test_not_dlpack() -> None:
    with pytest.raises(InteropError, match="no __dlpack__"):
        GpuImage.from_dlpack(object())


def test_read_only_flag_travels_in_versioned_capsules() -> None:
    array = np.zeros((3, 3), np.uint8)
    array.flags.writeable = False
    image = GpuImage.from_numpy(array)
    back = GpuImage.from_dlpack(image)
    assert back.readonly
    assert back.layout is image.layout  # a GpuImage source carries its layout


# -- crafted capsules: what a hostile or mismatched producer can hand over --------------------------

FAKE = 0x7F00_0000_0000
_HOST = np.zeros(64, np.uint8)  # the data of crafted host capsules (never read)
_NAMES = {
    name: ctypes.create_string_buffer(name.encode())
    for name in ("dltensor", "dltensor_versioned", "used_dltensor", "not_a_dltensor")
}


class Crafted:
    """A ``DLManagedTensor[Versioned]`` built field by field, in a capsule without a destructor.

    Its deleter counts its calls. The struct lives in a buffer large enough for either layout, so a
    capsule whose name lies about its layout is read wrongly, never out of bounds.
    """

    def __init__(
        self,
        *,
        versioned: bool = True,
        name: str | None = None,
        major: int = 1,
        flags: int = 0,
        data: int | None = None,
        byte_offset: int = 0,
        device: tuple[int, int] = (1, 0),
        ndim: int = 2,
        shape: Sequence[int] | None = (4, 4),
        strides: Sequence[int] | None = (4, 1),
        dtype: tuple[int, int, int] = (1, 8, 1),
    ) -> None:
        self.calls = 0
        self._backing = ctypes.create_string_buffer(256)
        self._shape = (ctypes.c_int64 * 4)(*(list(shape or ()) + [0] * 4)[:4])
        self._strides = (ctypes.c_int64 * 4)(*(list(strides or ()) + [0] * 4)[:4])
        self._deleter = _dlpack_abi.Deleter(self._count)
        managed: Any
        if versioned:
            managed = _dlpack_abi.DLManagedTensorVersioned.from_buffer(self._backing)
            managed.version.major, managed.version.minor, managed.flags = major, 0, flags
        else:
            managed = _dlpack_abi.DLManagedTensor.from_buffer(self._backing)
        tensor = managed.dl_tensor
        tensor.data = _HOST.ctypes.data if data is None else data
        tensor.byte_offset = byte_offset
        tensor.device.device_type, tensor.device.device_id = device
        tensor.ndim = ndim
        tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes = dtype
        pointer = ctypes.POINTER(ctypes.c_int64)
        tensor.shape = ctypes.cast(self._shape, pointer) if shape is not None else pointer()
        tensor.strides = ctypes.cast(self._strides, pointer) if strides is not None else pointer()
        managed.deleter = self._deleter
        label = name or ("dltensor_versioned" if versioned else "dltensor")
        self.capsule = _dlpack_abi.capsule_new(
            ctypes.addressof(managed), _NAMES[label], _dlpack_abi.NO_DESTRUCTOR
        )

    def _count(self, address: int | None) -> None:
        self.calls += 1


class Producer:
    """An object with ``__dlpack__``/``__dlpack_device__`` that return (or raise) what it is given."""

    def __init__(self, device: object, result: object, *, old_style_error: bool = False) -> None:
        self.device = device
        self.result = result  # a Crafted is kept alive here, and its capsule returned
        self.old_style_error = old_style_error  # raise TypeError for max_version, then ``result``

    def __dlpack_device__(self) -> object:
        if isinstance(self.device, BaseException):
            raise self.device
        return self.device

    def __dlpack__(self, **kwargs: object) -> object:
        if self.old_style_error and "max_version" in kwargs:
            raise TypeError("__dlpack__() got an unexpected keyword argument 'max_version'")
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result.capsule if isinstance(self.result, Crafted) else self.result


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    """Switch threads every microsecond, so that races show within a few rounds."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


THREADS, ROUNDS = 8, 100


def _race_for(capsule: object, layout: Any = None) -> tuple[list[GpuImage], list[BaseException]]:
    """THREADS threads released together each try GpuImage.from_dlpack(capsule)."""
    barrier = threading.Barrier(THREADS)
    images: list[GpuImage] = []
    errors: list[BaseException] = []

    def consume() -> None:
        barrier.wait()
        try:
            images.append(GpuImage.from_dlpack(capsule, layout=layout))
        except BaseException as exc:  # collected: asserted on below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=consume) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return images, errors


def _assert_one_winner(images: list[GpuImage], errors: list[BaseException]) -> None:
    assert len(images) == 1, f"{len(images)} threads consumed one capsule"
    assert len(errors) == THREADS - 1
    for error in errors:
        assert isinstance(error, LifetimeError), repr(error)
        assert "already consumed" in str(error)


@pytest.mark.usefixtures("fast_thread_switching")
def test_threads_racing_for_a_crafted_capsule_consume_it_once_and_delete_once() -> None:
    # issue 11, defect 3
    for _ in range(ROUNDS):
        crafted = Crafted()
        images, errors = _race_for(crafted.capsule)
        _assert_one_winner(images, errors)
        assert crafted.calls == 0, "the deleter ran while the image was alive"
        del images, errors  # the losers' tracebacks hold the list too
        # a full collection: the cycle may have been promoted past generation 0 while threads ran
        gc.collect()
        assert crafted.calls == 1


@pytest.mark.usefixtures("fast_thread_switching")
def test_threads_racing_for_a_gpuimage_capsule_consume_it_once() -> None:
    # issue 11, defect 3
    start = live_exports()
    for versioned in (True, False) * (ROUNDS // 2):
        image, alive = _host_image()
        capsule = image.__dlpack__(max_version=(1, 0) if versioned else None)
        images, errors = _race_for(capsule, layout="CHW")
        _assert_one_winner(images, errors)
        assert images[0].ptr == image.ptr
        del image, images, errors, capsule
        gc.collect()  # the cycle may have left generation 0 while threads ran
        assert alive() is None, "the export was not released"
        assert live_exports() == start


@pytest.mark.usefixtures("fast_thread_switching")
def test_threads_racing_for_a_numpy_capsule_consume_it_once() -> None:
    # issue 11, defect 3: NumPy's deleter frees its struct; run twice, it frees it twice
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    references = sys.getrefcount(array)
    for versioned in (True, False) * (ROUNDS // 2):
        images, errors = _race_for(array.__dlpack__(max_version=(1, 0) if versioned else None))
        _assert_one_winner(images, errors)
        assert images[0].as_numpy()[2, 3] == 11
        del images, errors
        gc.collect()  # the cycle may have left generation 0 while threads ran
        assert sys.getrefcount(array) == references, "NumPy's deleter ran other than once"


def test_a_consumer_refusing_our_capsule_keeps_its_error_and_leaks_nothing() -> None:
    # issue 11, defect 5: np.from_dlpack refuses CUDA memory after taking our capsule, and drops it
    # with its own error set. No "Exception ignored", no SystemError, no registry entry left behind.
    owner = Buffer(1)
    alive = weakref.ref(owner)
    image = GpuImage.from_pointer(FAKE, ImageSpec(height=2, width=3, device="cuda:0"), owner=owner)
    del owner
    start = live_exports()
    most = 0
    for _ in range(300):
        with pytest.raises((RuntimeError, BufferError), match="Unsupported device"):  # BufferError with a GPU
            np.from_dlpack(image)
        most = max(most, len(_exports))
    assert most <= start + 2 * 16, "refused capsules piled up between sweeps"
    assert live_exports() == start
    del image
    gc.collect()
    assert alive() is None, "a refused capsule kept the memory's owner alive"


def test_an_unconsumed_capsule_is_released_by_the_sweep_without_a_collection() -> None:
    # issue 11, defect 5: the registry sweeps itself when it has doubled, not only after gc
    start = live_exports()
    image, alive = _host_image()
    for _ in range(200):
        image.__dlpack__(max_version=(1, 0))  # dropped unconsumed at once
    assert len(_exports) <= start + 2 * 16
    del image
    assert live_exports() == start
    assert alive() is None


def test_read_only_memory_is_not_exported_as_a_legacy_capsule() -> None:
    # issue 11, defect 6: a legacy capsule has no read-only flag, so the consumer would write to it
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    array.flags.writeable = False
    image = GpuImage.from_numpy(array)
    for max_version in (None, (0, 8)):
        with pytest.raises(ExportError, match="read-only"):
            image.__dlpack__(max_version=max_version)
    with pytest.raises(ExportError, match="max_version"):
        torch.utils.dlpack.from_dlpack(image.__dlpack__())
    assert not np.from_dlpack(image).flags.writeable  # versioned: the flag travels
    copied = torch.utils.dlpack.from_dlpack(image.__dlpack__(copy=True))  # a writable copy may go legacy
    copied[0, 0] = 99
    assert copied.data_ptr() != image.ptr
    assert array[0, 0] == 0


def _opencv_header() -> Any:
    spec = ImageSpec(height=2, width=3, channels=3)
    return GpuImage.from_pointer(FAKE, spec).expect("HWC").as_gpumat()


def test_opencv_gpumat_dlpack_overflowing_on_a_stream_handle_is_an_interop_error() -> None:
    # issue 11, defect 13: GpuMat.__dlpack__ takes a C int stream; a real handle overflows it
    with pytest.raises(InteropError, match=r"cv2\.cuda\.GpuMat.*OverflowError.*from_gpumat"):
        GpuImage.from_dlpack(_opencv_header(), layout="HWC", stream=0x7F12_3456_7000)


HOSTILE: list[tuple[str, Callable[[], Producer], type[GpuImageError], str]] = [
    ("null-shape", lambda: Producer((1, 0), Crafted(shape=None)), InteropError, "NULL shape"),
    ("ndim-huge", lambda: Producer((1, 0), Crafted(ndim=2**31 - 1)), InteropError, "ndim=2147483647"),
    ("ndim-negative", lambda: Producer((1, 0), Crafted(ndim=-5)), InteropError, "ndim=-5"),
    ("lanes", lambda: Producer((1, 0), Crafted(dtype=(1, 8, 4))), DTypeError, "lanes=4"),
    ("bits", lambda: Producer((1, 0), Crafted(dtype=(2, 24, 1))), DTypeError, "bits=24"),
    ("capsule-device-id", lambda: Producer((2, 0), Crafted(device=(2, -1))), InteropError, "device_id=-1"),
    ("device-id-negative", lambda: Producer((2, -1), None), InteropError, "device_id=-1"),
    ("device-id-above-int32", lambda: Producer((2, 2**31), None), InteropError, "device_id=2147483648"),
    ("device-type-str", lambda: Producer(("cuda", 0), None), InteropError, "pair of ints"),
    ("device-none", lambda: Producer(None, None), InteropError, "pair of ints"),
    ("device-raises", lambda: Producer(KeyError("device"), None), InteropError, "KeyError"),
    ("dlpack-raises-keyerror", lambda: Producer((1, 0), KeyError("stream")), InteropError, "KeyError"),
    ("dlpack-raises-overflow", lambda: Producer((1, 0), OverflowError("big")), InteropError, "OverflowError"),
    (
        "dlpack-old-then-raises",
        lambda: Producer((1, 0), ZeroDivisionError("x"), old_style_error=True),
        InteropError,
        "ZeroDivisionError",
    ),
    ("not-a-capsule", lambda: Producer((1, 0), [1, 2]), InteropError, "got list"),
    ("version-2", lambda: Producer((1, 0), Crafted(major=2)), InteropError, "version=2"),
    (
        "foreign-capsule",
        lambda: Producer((1, 0), Crafted(name="not_a_dltensor")),
        InteropError,
        "another capsule",
    ),
    (
        "used-capsule",
        lambda: Producer((1, 0), Crafted(name="used_dltensor", versioned=False)),
        LifetimeError,
        "already consumed",
    ),
    ("device-mismatch", lambda: Producer((2, 0), Crafted()), InteropError, "__dlpack_device__"),
]


@pytest.mark.parametrize(
    ("make", "error", "message"), [case[1:] for case in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_hostile_producer_is_refused_with_a_gpuimage_error(
    make: Callable[[], Producer], error: type[GpuImageError], message: str
) -> None:
    # issue 11, defect 13
    producer = make()
    with pytest.raises(error, match=message):
        GpuImage.from_dlpack(producer)
    if isinstance(producer.result, Crafted):
        assert producer.result.calls == 0, "a refused capsule's deleter ran"


int32s = st.one_of(
    st.sampled_from([0, 1, 2, 3, 13, -1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1)
)
int64s = st.one_of(st.integers(-3, 12), st.sampled_from([2**31, 2**62, 2**63 - 1, -(2**63)]))
junk = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.floats(allow_nan=True),
    st.tuples(st.integers(-3, 3)),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.text(max_size=2), st.integers(0, 2)),
    st.tuples(st.integers(0, 3), st.floats(allow_nan=True)),
    st.lists(st.integers(0, 3), max_size=2),
)
raised = st.sampled_from(
    [KeyError, OverflowError, ValueError, TypeError, RuntimeError, BufferError, IndexError, ZeroDivisionError]
).map(lambda kind: kind("raised by the producer"))
crafted_fields = st.fixed_dictionaries(
    {},
    optional={
        "versioned": st.booleans(),
        "name": st.sampled_from(list(_NAMES)),
        "major": st.sampled_from([0, 1, 1, 2]),
        "flags": st.integers(0, 3),
        "data": st.sampled_from([0, FAKE, FAKE + 1, 2**64 - 8, 2**64 - 1]),
        "byte_offset": st.sampled_from([0, 1, 8, 2**63, 2**64 - 1]),
        "device": st.tuples(int32s, int32s),
        "ndim": st.one_of(st.integers(-2, 5), int32s),
        "shape": st.one_of(st.none(), st.lists(int64s, min_size=4, max_size=4)),
        "strides": st.one_of(st.none(), st.lists(int64s, min_size=4, max_size=4)),
        "dtype": st.tuples(
            st.integers(0, 255), st.sampled_from([0, 1, 8, 16, 32, 64, 255]), st.sampled_from([1, 1, 0, 2])
        ),
    },
)


@settings(max_examples=800)
@given(
    fields=crafted_fields,
    device=st.one_of(
        st.tuples(int32s, st.one_of(int32s, st.sampled_from([2**31, 2**40, -(2**40)]))), junk, raised
    ),
    result=st.one_of(st.just("capsule"), junk, raised),
    bare=st.booleans(),
    old_style_error=st.booleans(),
    layout=st.sampled_from([None, "HWC", "CHW"]),
)
def test_hostile_producers_raise_only_gpuimage_errors(
    fields: dict[str, Any], device: object, result: object, bare: bool, old_style_error: bool, layout: Any
) -> None:
    # issue 11, defect 13: whatever a producer hands over, only a GpuImageError escapes, and nothing crashes
    crafted = Crafted(**fields)
    source: object = (
        crafted.capsule
        if bare
        else Producer(device, crafted if result == "capsule" else result, old_style_error=old_style_error)
    )
    try:
        image = GpuImage.from_dlpack(source, layout=layout)
    except GpuImageError as exc:
        record("from_dlpack(hostile)", exc)
        assert crafted.calls == 0, "a refused capsule's deleter ran"
        return
    record("from_dlpack(hostile)", None)
    assert image.ptr > 0
    if not image.device.is_cuda:
        del image
        assert crafted.calls == 1, "the deleter of a consumed capsule ran other than once"


@pytest.mark.parametrize("layout", [Layout.HWC, Layout.CHW])
def test_a_torch_tensor_is_read_without_a_capsule_and_as_its_capsule_would_give_it(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    tensor = torch.arange(4 * 6 * 3, dtype=torch.int16).reshape(4, 6, 3)[1:, 2:]  # strided
    through_capsule = GpuImage.from_dlpack(tensor.__dlpack__(), layout=layout)  # the capsule route
    asked: list[object] = []
    real = torch.Tensor.__dlpack__

    def counted(self: torch.Tensor, *args: Any, **kwargs: Any) -> object:
        asked.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "__dlpack__", counted)
    image = GpuImage.from_dlpack(tensor, layout=layout)
    assert asked == []  # the torch spoke read it: no capsule, no ctypes
    assert image.spec == through_capsule.spec
    assert image.ptr == through_capsule.ptr == tensor.data_ptr()
    assert np.array_equal(image.as_numpy(), through_capsule.as_numpy())
    del through_capsule
    tensor.fill_(7)  # the same memory, kept alive by the image
    assert (image.as_numpy() == 7).all()


def test_objects_of_no_native_spoke_still_go_through_their_capsule() -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)

    class Producer:  # a library gpuimage has no spoke for
        def __dlpack__(self, **kwargs: Any) -> object:
            calls.append(kwargs)
            return array.__dlpack__(**kwargs)

        def __dlpack_device__(self) -> tuple[int, int]:
            return array.__dlpack_device__()

    calls: list[dict[str, Any]] = []
    image = GpuImage.from_dlpack(Producer())
    assert len(calls) == 1
    assert np.array_equal(image.as_numpy()[..., 0], array)


def test_a_geometry_seen_before_reuses_its_spec_and_still_checks_each_pointer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A decoder exports one geometry per frame: the spec is built once, the pointer checked each time."""
    built: list[tuple[object, ...]] = []
    monkeypatch.setattr(_dlpack, "_specs", SpecCache())  # geometries of earlier tests forgotten
    original = _source.spec_from_strided

    def counted(*args: Any, **kwargs: Any) -> ImageSpec:
        built.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(_dlpack, "spec_from_strided", counted)
    base = _HOST.ctypes.data  # 64 bytes: a 4x4 uint16 image at base and at base + 2 stays inside
    crafted = [Crafted(dtype=(1, 16, 1), data=base + offset) for offset in (0, 2, 1)]
    first = GpuImage.from_dlpack(crafted[0].capsule)
    second = GpuImage.from_dlpack(crafted[1].capsule)
    assert second.spec is first.spec
    assert len(built) == 1, "the second capsule of the geometry was checked in full again"
    assert second.ptr == first.ptr + 2
    with pytest.raises(SpecError, match="aligned"):  # an odd address for 2-byte elements
        GpuImage.from_dlpack(crafted[2].capsule)
    with pytest.raises(SpecError, match="2\\*\\*64"):  # the same geometry ending past the address space
        GpuImage.from_dlpack(Crafted(dtype=(1, 16, 1), data=2**64 - 16).capsule)
    with pytest.raises(SpecError, match="overlap"):  # rows over each other: never stored, refused
        GpuImage.from_dlpack(Crafted(dtype=(1, 16, 1), data=base, strides=(1, 1)).capsule)
    del first, second
    gc.collect()
