"""``_convert_replay`` on CPU: a single-image conversion is checked in full once per kind of call,
then launched with each call's pointers, ordered exactly as the full way orders it; anything the
checks depend on that differs goes the full way again (and is refused there when wrong).

The fake runtime's "device" memory is host memory, so the executor here computes with NumPy both
ways (a full ``convert`` and a replayed launch) and the values are checked, not only the calls."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuimage
from fake_runtime import Runtime, install, runtime
from gpuimage import Device, GpuImage, ImageSpec, _channel_order, _convert_replay, _image, _lifetime
from gpuimage._affine import Affine
from gpuimage._conversions import override_executor
from gpuimage._executor import Buffer, ConvertReplay, Operand
from gpuimage._host_convert import EXECUTOR as HOST
from gpuimage._interfaces import host_view
from gpuimage._spec import trusted_spec

__all__ = ["runtime"]

STREAM = 11
"""The executor's current stream: where a conversion of an image with nothing pending queues."""


class Computing:
    """An executor that computes with NumPy (device memory is host memory here), notes full calls
    and launches, and offers a replay while ``offer`` is True."""

    name = "computing"

    def __init__(self, modulus: int = 1) -> None:
        self.full: list[tuple[int, int, int]] = []
        self.launches: list[tuple[int, int, int]] = []
        self.replays_made = 0
        self.offer = True
        self.modulus = modulus

    def stream_for(self, device: int, /) -> tuple[int, object]:
        return STREAM, None

    def convert(self, source: Operand, target: Operand, affine: Affine, stream: int, /) -> None:
        self.full.append((source.ptr, target.ptr, stream))
        HOST.convert(
            on_host(source.ptr, source.spec, source), on_host(target.ptr, target.spec, target), affine, 0
        )

    def convert_replay(self, source: Operand, target: Operand, affine: Affine, /) -> ConvertReplay | None:
        if not self.offer:
            return None
        self.replays_made += 1
        source_spec, target_spec = source.spec, target.spec

        def launch(source_ptr: int, target_ptr: int, stream: int) -> None:
            self.launches.append((source_ptr, target_ptr, stream))
            HOST.convert(on_host(source_ptr, source_spec), on_host(target_ptr, target_spec), affine, 0)

        modulus = self.modulus
        return ConvertReplay(launch, modulus, source.ptr % modulus, target.ptr % modulus)

    def convert_batch(self, *args: object) -> None:
        raise AssertionError("not a batch call")

    def convert_frames(self, *args: object) -> None:
        raise AssertionError("not a frame call")

    def frames_replay(self, *args: object) -> None:
        return None


def on_host(ptr: int, spec: ImageSpec, owner: object = None) -> Buffer:
    """The memory as NumPy sees it: the fake runtime's device memory is host memory."""
    return Buffer(ptr, trusted_spec(spec.geometry, spec.dtype, spec.layout, HOST_DEVICE), owner)


HOST_DEVICE = Device("cpu", 0)


@pytest.fixture
def computing(runtime: Runtime) -> Iterator[Computing]:
    executor = Computing()
    _convert_replay.forget()
    with override_executor(executor):
        yield executor
    _convert_replay.forget()


def device_image(
    array: npt.NDArray[Any], layout: Literal["HWC", "CHW"] = "HWC", *, stream: int | None = None
) -> GpuImage[Any, Any]:
    """A cuda:0 image over ``array`` (host memory, which the fake runtime's device memory is)."""
    if layout == "HWC":
        height, width, channels = array.shape
    else:
        channels, height, width = array.shape
    spec = ImageSpec(
        height=height,
        width=width,
        channels=channels,
        dtype=array.dtype,
        layout=layout,
        device="cuda:0",
    )
    return GpuImage.from_pointer(array.ctypes.data, spec, owner=array, stream=stream)


def values(image: GpuImage) -> npt.NDArray[Any]:
    """The image's values as a (H, W, C) NumPy array, read through its memory."""
    spec = trusted_spec(image.spec.geometry, image.spec.dtype, image.spec.layout, HOST_DEVICE)
    array = host_view(image.ptr, spec, image.owner, readonly=True)
    return array.transpose(1, 2, 0) if image.layout == "CHW" else array


def pixels(seed: int) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (4, 6, 3), dtype=np.uint8)


def test_a_loop_into_out_is_checked_once_then_launched(computing: Computing, runtime: Runtime) -> None:
    array = pixels(0)
    source = device_image(array, stream=5)
    out = device_image(np.zeros((3, 4, 6), np.uint8), "CHW")
    for step in range(3):
        array[...] = pixels(step)  # the next frame in the same memory
        assert source.to_layout("CHW", out=out) is out
        np.testing.assert_array_equal(values(out), array)
    assert computing.full == [(source.ptr, out.ptr, 5)]
    assert computing.replays_made == 1
    assert computing.launches == [(source.ptr, out.ptr, 5)] * 2, "queued where the source is ready"
    assert out.stream == 5


def test_a_loop_without_out_launches_into_a_new_image_each_call(computing: Computing) -> None:
    array = pixels(1)
    source = device_image(array, stream=5).with_channel_order("BGR")
    results = [source.astype("float32", scale=0.5) for _ in range(3)]
    assert len({result.ptr for result in results}) == 3, "each call allocates its own result"
    for result in results:
        np.testing.assert_array_equal(values(result), array.astype(np.float32) * 0.5)
        assert result.channel_order == "BGR", "a replayed result records the order as the full way does"
        assert result.stream == 5
    assert len(computing.full) == 1
    assert [launch[1] for launch in computing.launches] == [result.ptr for result in results[1:]]


def test_normalize_into_out_is_replayed_with_its_cached_map(computing: Computing) -> None:
    array = pixels(2)
    source = device_image(array, stream=5).with_channel_order("RGB")
    out = device_image(np.zeros((3, 4, 6), np.float32), "CHW")
    expected = (array.astype(np.float32) / 255 - 0.5) / 0.25
    for _ in range(3):
        gpuimage.normalize(source, 0.5, 0.25, out=out)
        np.testing.assert_allclose(values(out), expected, atol=1e-6)
    assert (len(computing.full), len(computing.launches)) == (1, 2)


def _read_on_13(images: dict[str, GpuImage]) -> None:
    with images["chw"].reading(13):
        pass


def _steps(runtime: Runtime) -> list[Callable[[dict[str, GpuImage]], object]]:
    """What a loop does between conversions, and the conversions themselves."""
    return [
        lambda images: images["source"].to_layout("CHW", out=images["chw"]),
        lambda images: images["source"].to_layout("CHW"),
        lambda images: images["chw"].to_layout("HWC", out=images["source"]),
        lambda images: images["source"].astype("float32", scale=2.0),
        lambda images: images["source"].record_write(7),
        lambda images: images["chw"].record_write(9),
        _read_on_13,
        lambda images: images["source"].synchronize(),
        lambda images: setattr(runtime, "current", 3),
    ]


@settings(max_examples=40, deadline=None)
@given(program=st.lists(st.integers(0, 8), min_size=1, max_size=12))
def test_a_replay_orders_streams_exactly_as_the_full_way(program: list[int]) -> None:
    """Any sequence of conversions, writes, reads and stream changes: the same waits, the same
    events recorded, the same ready states and the same values with replays as without them."""
    traces = []
    for replay in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            traces.append(_run(program, replay=replay, patch=patch))
    assert traces[0] == traces[1]


def _run(program: list[int], *, replay: bool, patch: pytest.MonkeyPatch) -> object:
    """``program``'s steps on a fresh fake runtime (put back afterwards, as the ``runtime`` fixture
    does), with replays or without: what the runtime saw, the ready states and the values."""
    fake = Runtime()
    install(fake, patch)
    executor = Computing()
    _convert_replay.forget()
    if not replay:  # both places that try a replay first
        patch.setattr(_channel_order, "replayed", lambda *args: None)
        patch.setattr(_image, "replayed", lambda *args: None)
    images: dict[str, GpuImage[Any, Any]] = {}
    made: list[object] = []
    try:
        images.update(
            source=device_image(pixels(3), stream=5), chw=device_image(np.zeros((3, 4, 6), np.uint8), "CHW")
        )
        steps = _steps(fake)
        with override_executor(executor):
            made.extend(steps[index](images) for index in program)
        states = [
            (image.stream, image._ready.event is not None, sorted(image._ready.reads))
            for image in images.values()
        ]
        results = [values(image).tolist() for image in made if isinstance(image, GpuImage)]
        if not replay:
            assert not executor.launches
        elif program.count(0) > 1:  # the second call into chw is a replay
            assert executor.launches
        return list(fake.waits), list(fake.recorded), states, results
    finally:
        images.clear()  # released on this runtime, not the next run's
        made.clear()
        gc.collect()
        fake.complete_all()
        _lifetime.pending_releases()
        _convert_replay.forget()


def test_what_the_checks_depend_on_goes_the_full_way_again(computing: Computing) -> None:
    source = device_image(pixels(4), stream=5)
    out = device_image(np.zeros((3, 4, 6), np.uint8), "CHW")
    source.to_layout("CHW", out=out)
    source.to_layout("CHW", out=out)
    assert (len(computing.full), len(computing.launches)) == (1, 1)
    twin = GpuImage.from_pointer(out.ptr, out.spec, owner=out, readonly=True)
    with pytest.raises(gpuimage.ReadOnlyError):
        source.to_layout("CHW", out=twin)
    with pytest.raises(gpuimage.LayoutError, match="channel_order"):
        source.with_channel_order("RGB").to_layout("CHW", out=out.with_channel_order("BGR"))
    other = Computing()
    with override_executor(other):  # an override launches its own way, never another's entry
        source.to_layout("CHW", out=out)
    assert (len(other.full), len(computing.launches)) == (1, 1)
    source.to_layout("CHW", out=out)  # the override's entry is not this executor's: checked again
    source.to_layout("CHW", out=out)
    assert (len(computing.full), len(computing.launches)) == (2, 2)
    with pytest.raises(gpuimage.SpecError):
        source.copy(row_alignment=True)  # equal to 1, but refused the full way


def test_a_pointer_of_another_alignment_is_planned_again(runtime: Runtime) -> None:
    computing = Computing(modulus=16)
    _convert_replay.forget()
    memory = np.zeros(4 * 6 * 3 + 64, np.uint8)
    base = (-memory.ctypes.data) % 16
    spec = ImageSpec(height=4, width=6, channels=3, dtype="uint8", device="cuda:0")
    aligned = GpuImage.from_pointer(memory.ctypes.data + base, spec, owner=memory, stream=5)
    shifted = GpuImage.from_pointer(memory.ctypes.data + base + 3, spec, owner=memory, stream=5)
    out = device_image(np.zeros((3, 4, 6), np.uint8), "CHW")
    with override_executor(computing):
        aligned.to_layout("CHW", out=out)
        aligned.to_layout("CHW", out=out)
        assert (len(computing.full), len(computing.launches)) == (1, 1)
        shifted.to_layout("CHW")  # a source pointer of another residue: the new-image entry
        shifted.to_layout("CHW")
        aligned.to_layout("CHW")  # same description, a pointer the new-image entry was not made for
    assert (len(computing.full), len(computing.launches)) == (3, 2)
    _convert_replay.forget()


def test_a_new_image_of_another_alignment_is_converted_by_the_executor(runtime: Runtime) -> None:
    executor = Computing(modulus=1 << 20)  # no two allocations share a residue modulo 1 MiB
    _convert_replay.forget()
    source = device_image(pixels(5), stream=5)
    with override_executor(executor):
        results = [source.to_layout("CHW") for _ in range(3)]
    assert not executor.launches
    assert len(executor.full) == 3
    for result in results:
        np.testing.assert_array_equal(values(result), values(source))
    _convert_replay.forget()


def test_host_images_are_never_replayed(computing: Computing) -> None:
    image = GpuImage.from_numpy(pixels(6), layout="HWC")
    for _ in range(3):
        image.to_layout("CHW")
    assert (len(computing.full), computing.replays_made) == (3, 0)
