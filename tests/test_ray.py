"""Host images, frames and batches through a local Ray cluster (CPU only): to a task, to an actor and
back, through ``ray.put``, with values checked; large pixels ride in the object store's shared
memory (they arrive read-only, as Ray's NumPy arrays do); and pickling refusals reach the caller as
gpuimage's errors, not as Ray's. Device images through Ray: ``gpu/test_cuda_ray.py``.

Ray is in the ``test`` extra: CI installs it, so there a missing Ray fails instead of skipping."""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import gpuimage
from fake_ipc import FakeDriver, elsewhere, ipc
from gpuimage import (
    ColorSpec,
    ExportError,
    GpuBatch,
    GpuFrame,
    GpuImage,
    GpuImageError,
    ImageSpec,
    InteropError,
    SharedRing,
)

__all__ = ["elsewhere", "ipc"]  # the fixtures


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        if os.environ.get("CI"):  # CI installs the test extra, which pins Ray: its absence is a bug
            pytest.fail(f"ray is not installed ({exc}); the test extra pins it", pytrace=False)
        pytest.skip("ray is not installed (the test extra pins ray)", allow_module_level=True)


ray = _import_ray()
BT709 = ColorSpec(matrix="BT709", range="LIMITED")


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    """One local Ray cluster for the module: two CPUs, no dashboard, a small object store. Its workers
    import this module (for the remote functions) and the gpuimage imported here."""
    paths = [str(Path(__file__).parent), str(Path(gpuimage.__file__).parent.parent)]
    paths += [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    ray.init(
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}},
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        object_store_memory=128 * 1024 * 1024,
    )
    try:
        yield
    finally:
        ray.shutdown()


def _values(shape: tuple[int, ...], dtype: Any = np.uint8, seed: int = 0) -> npt.NDArray[Any]:
    return np.random.default_rng(seed).integers(0, 250, shape).astype(dtype)


def _items() -> list[Any]:
    """A pitched BGR crop, an NV12 frame with its colour, a strided batch."""
    pitched = GpuImage.empty(9, 12, 3, device="cpu", row_alignment=64)
    pitched.as_numpy()[...] = _values(pitched.shape)
    frame = GpuFrame.empty(16, 8, format="NV12", colour=BT709, device="cpu")
    frame.as_numpy()[...] = _values(frame.as_numpy().shape, seed=1)
    batch = GpuBatch.from_numpy(_values((5, 3, 4, 4), np.float32, seed=2)[::2])
    return [pitched.crop(2, 1, 7, 5).with_channel_order("BGR"), frame, batch]


def _pixels(item: Any) -> list[npt.NDArray[Any]]:
    """Each part's values: an image's or a batch's array, a frame's planes."""
    parts = item.planes if isinstance(item, GpuFrame) else [item]
    return [np.array(part.as_numpy()) for part in parts]


def _assert_same(got: Any, want: Any) -> None:
    assert type(got) is type(want)
    for got_part, want_part in zip(_pixels(got), _pixels(want), strict=True):
        np.testing.assert_array_equal(got_part, want_part)
    if isinstance(want, GpuFrame):
        assert (got.format, got.width, got.height, got.colour) == (want.format, 16, 8, BT709)
    else:
        assert (got.shape, got.dtype, got.channel_order) == (want.shape, want.dtype, want.channel_order)


def _describe_it(item: Any) -> tuple[str, list[npt.NDArray[Any]], Any]:
    """In a worker: what arrived (its type, values), and the object itself, pickled back."""
    return type(item).__name__, _pixels(item), item


class Keeper:
    """An actor that keeps what it is given, and answers with its sums or the object itself."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def keep(self, item: Any) -> float:
        self.items.append(item)
        return float(sum(part.astype(np.float64).sum() for part in _pixels(item)))

    def give(self, index: int) -> Any:
        return self.items[index]


def _make_a_device_image() -> GpuImage:
    """Returned from a worker: pickling it there fails (no GPU memory behind the pointer)."""
    return GpuImage.from_pointer(0x10000, ImageSpec.packed(height=2, width=2, device=0))


# Ray's remote functions and actor classes (``ray.remote`` called, not a decorator: ray is untyped here)
_describe = ray.remote(_describe_it)
_Keeper = ray.remote(Keeper)
_a_device_image = ray.remote(_make_a_device_image)


def test_every_kind_goes_to_a_task_and_back_by_value() -> None:
    items = _items()
    for item in items:
        name, pixels, back = ray.get(_describe.remote(item), timeout=120)
        assert name == type(item).__name__
        for got, want in zip(pixels, _pixels(item), strict=True):
            np.testing.assert_array_equal(got, want)
        _assert_same(back, item)
        assert back.is_contiguous if not isinstance(back, GpuFrame) else back.layout is not None


def test_an_actor_keeps_every_kind_and_gives_it_back() -> None:
    items = _items()
    keeper = _Keeper.remote()
    sums = ray.get([keeper.keep.remote(item) for item in items], timeout=120)
    for total, item in zip(sums, items, strict=True):
        assert total == pytest.approx(sum(part.astype(np.float64).sum() for part in _pixels(item)))
    for index, item in enumerate(items):
        _assert_same(ray.get(keeper.give.remote(index), timeout=120), item)


def test_large_pixels_ride_in_the_object_store_and_arrive_read_only() -> None:
    image = GpuImage.from_numpy(_values((512, 512, 3)), layout="HWC")  # 768 KiB: not inlined
    arrived = ray.get(ray.put(image), timeout=120)
    np.testing.assert_array_equal(arrived.as_numpy(), image.as_numpy())
    assert arrived.readonly, "the object store's shared memory, read-only, as Ray's NumPy arrays are"
    writable = arrived.copy()
    writable.as_numpy()[0, 0, 0] = 251
    assert not writable.readonly
    assert arrived.as_numpy()[0, 0, 0] == image.as_numpy()[0, 0, 0]


def test_a_refusal_in_the_caller_is_gpuimages_own_error(ipc: FakeDriver, elsewhere: None) -> None:
    """Pickling an argument (or ``ray.put``) runs here: Ray lets our ExportError through as it is."""
    opened = pickle.loads(pickle.dumps(GpuImage.empty(4, 4)))  # mapped from another process (faked)
    with pytest.raises(ExportError, match="memory mapped from process") as put:
        ray.put(opened)
    assert type(put.value) is ExportError
    with pytest.raises(ExportError, match="memory mapped from process"):
        _describe.remote(opened)
    del opened
    ipc.settle()


def test_a_refusal_that_is_a_type_error_comes_wrapped_by_ray_with_ours_as_its_cause(ipc: FakeDriver) -> None:
    """Ray re-raises a ``TypeError`` from pickling (ours: ``InteropError``) as its own ``TypeError``
    ("Could not serialize ..."): our error is its ``__cause__``, and our message is in its text."""
    writer = SharedRing.from_items([GpuImage.empty(4, 6, 3) for _ in range(2)])
    reader = pickle.loads(pickle.dumps(writer))  # the reader's side: only a writer may be pickled
    with pytest.raises(TypeError, match="Could not serialize") as raised:
        ray.put(reader)
    assert isinstance(raised.value.__cause__, InteropError)
    assert "expected the writer side of the ring" in str(raised.value)
    reader.close()
    writer.close()
    ipc.settle()


def test_a_refusal_in_a_worker_is_raised_as_gpuimages_error() -> None:
    """Pickling a result runs in the worker: ``ray.get`` raises Ray's ``RayTaskError(<our class>)``,
    which is an instance of our class and carries our message."""
    with pytest.raises(GpuImageError) as raised:
        ray.get(_a_device_image.remote(), timeout=120)
    cause = type(raised.value).__mro__
    ours = next(kind for kind in cause if kind.__module__ == "gpuimage._errors")
    assert ours is not GpuImageError, f"a specific gpuimage error, got {cause}"
    assert "pickle.dumps(image)" in str(raised.value) or "CUDA IPC" in str(raised.value)
    assert isinstance(raised.value, ray.exceptions.RayTaskError)


def _gpuimage_file() -> str:
    return str(gpuimage.__file__)


def test_gpuimage_is_what_the_workers_import() -> None:
    assert ray.get(ray.remote(_gpuimage_file).remote(), timeout=120) == gpuimage.__file__


# -- across hosts: Ray Direct Transport (here over Gloo, between two CPU actors) ----------------------


class Peer:
    """One side of a tensor transport: makes payloads (the tensors go by Gloo, the rest by the object
    store), or rebuilds what it is sent."""

    def ready(self) -> bool:
        return True

    def send(self, items: list[Any]) -> list[Any]:
        """Called with ``.options(tensor_transport="gloo")``: the tensors found in the result go by Gloo."""
        return [gpuimage.to_tensor_payload(item) for item in items]

    def receive(self, payloads: list[Any]) -> list[tuple[Any, list[npt.NDArray[Any]]]]:
        rebuilt = [gpuimage.from_tensor_payload(payload) for payload in payloads]
        return [(item, _pixels(item)) for item in rebuilt]


def test_tensor_payloads_cross_a_gloo_tensor_transport_between_actors() -> None:
    pytest.importorskip("torch")
    collective = importlib.import_module("ray.experimental.collective")
    peer = ray.remote(enable_tensor_transport=True)(Peer)
    sender, receiver = peer.remote(), peer.remote()
    ray.get([sender.ready.remote(), receiver.ready.remote()], timeout=120)
    collective.create_collective_group([sender, receiver], backend="torch_gloo")
    items = _items()
    sent = sender.send.options(tensor_transport="gloo").remote(items)
    arrived = ray.get(receiver.receive.remote(sent), timeout=120)
    for (item, pixels), want in zip(arrived, items, strict=True):
        for got_part, want_part in zip(pixels, _pixels(want), strict=True):
            np.testing.assert_array_equal(got_part, want_part)
        _assert_same(item, want)
