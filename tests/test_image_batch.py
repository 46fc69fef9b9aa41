"""``GpuBatch`` (``_image_batch``): constructors, metadata, items, ordering and ``normalize_batch(out=)``,
on host batches and on fake device pointers (``fake_runtime``)."""

from __future__ import annotations

import gc
import pickle
import weakref
from typing import Any, cast

import numpy as np
import pytest

import gpuimage
from fake_runtime import Runtime, runtime
from gpuimage import BatchLayout, GpuBatch, GpuImage, ImageSpec, _conversions

__all__ = ["runtime"]

FAKE = 0x7F0000000000


def _host(n: int = 3, c: int = 3, h: int = 4, w: int = 5) -> np.ndarray:
    return np.arange(n * c * h * w, dtype=np.float32).reshape(n, c, h, w)


def test_from_numpy_reads_shape_strides_and_pitch() -> None:
    array = _host()
    batch = GpuBatch.from_numpy(array)
    assert (len(batch), batch.size, batch.channels, batch.height, batch.width) == (3, 3, 3, 4, 5)
    assert batch.layout is BatchLayout.NCHW
    assert batch.item_spec.layout is gpuimage.Layout.CHW
    assert batch.shape == array.shape
    assert batch.strides == array.strides
    assert batch.item_pitch == 240
    assert batch.ptr == array.ctypes.data
    assert batch.device == gpuimage.CPU
    assert batch.stream is None
    assert batch.is_contiguous
    assert batch.nbytes == array.nbytes


def test_padded_items_keep_their_pitch() -> None:
    base = np.zeros((4, 6, 5, 3), np.uint8)
    array = base[:, :4]  # NHWC items of 4 rows in slots of 6
    batch = GpuBatch.from_numpy(array, layout="NHWC")
    assert batch.layout is BatchLayout.NHWC
    assert batch.item_pitch == 6 * 5 * 3
    assert not batch.is_contiguous
    batch[2].as_numpy()[...] = 7
    assert (base[2, :4] == 7).all()
    assert (base[2, 4:] == 0).all()
    assert (base[1] == 0).all()


def test_items_are_views_sharing_owner_and_ready_state() -> None:
    array = _host()
    batch = GpuBatch.from_numpy(array)
    item = batch[1]
    assert isinstance(item, GpuImage)
    assert item.ptr == batch.ptr + batch.item_pitch
    assert item.owner is batch.owner
    assert (item.as_numpy() == array[1]).all()
    assert batch[-1].ptr == batch[2].ptr
    assert batch[1] is item  # cached
    assert [each.ptr for each in batch] == [batch[i].ptr for i in range(3)]


@pytest.mark.parametrize("index", [3, -4, 100])
def test_index_outside_is_a_bounds_error(index: int) -> None:
    batch = GpuBatch.from_numpy(_host())
    with pytest.raises(gpuimage.BoundsError, match=r"expected an index in \[-3, 3\)"):
        batch[index]


@pytest.mark.parametrize("index", [1.0, "1", slice(0, 1), True])
def test_index_of_another_type_is_refused(index: object) -> None:
    batch = GpuBatch.from_numpy(_host())
    with pytest.raises(gpuimage.InteropError, match="expected an int index"):
        batch[index]  # type: ignore[index]


def test_read_only_numpy_gives_a_read_only_batch() -> None:
    array = _host()
    array.flags.writeable = False
    batch = GpuBatch.from_numpy(array)
    assert batch.readonly
    assert batch[0].readonly
    assert not batch.as_numpy().flags.writeable


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: np.zeros((2, 3, 4), np.uint8), gpuimage.LayoutError, "expected a 4-D"),
        (lambda: np.zeros((0, 3, 4, 5), np.uint8), gpuimage.SpecError, "positive int number of items"),
        (
            lambda: np.broadcast_to(np.zeros((1, 3, 4, 5), np.uint8), (2, 3, 4, 5)),
            gpuimage.PitchError,
            "overlap",
        ),
        (lambda: np.zeros((2, 3, 4, 5), np.uint8)[::-1], gpuimage.StrideError, "non-negative"),
        (lambda: np.zeros((2, 3, 4, 2), np.uint8).transpose(3, 1, 2, 0), gpuimage.PitchError, "overlap"),
        (lambda: [[[[1]]]], gpuimage.LayoutError, "expected a 4-D"),
    ],
)
def test_bad_arrays_are_refused(make: object, error: type[Exception], message: str) -> None:
    array = make()  # type: ignore[operator]
    with pytest.raises(error, match=message):
        GpuBatch.from_numpy(array)


def test_a_torch_tensor_is_not_numpy() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(gpuimage.InteropError, match=r"numpy\.ndarray"):
        GpuBatch.from_numpy(torch.zeros(2, 3, 4, 5))


def test_bad_layouts_are_refused() -> None:
    with pytest.raises(gpuimage.LayoutError, match="'NCHW' or 'NHWC'"):
        GpuBatch.from_numpy(_host(), layout="CHWN")  # type: ignore[arg-type]


def test_direct_construction_is_refused_and_pickle_copies() -> None:
    with pytest.raises(gpuimage.InteropError, match=r"GpuBatch\.empty"):
        GpuBatch()
    # host batches pickle by value (tests/test_host_pickle.py)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(GpuBatch.from_numpy(_host()))).as_numpy(), _host()
    )


def test_empty_on_the_host_is_packed() -> None:
    batch = GpuBatch.empty(4, 2, 3, 3, "uint8", layout="NHWC", device="cpu")
    assert batch.shape == (4, 2, 3, 3)
    assert batch.strides == (18, 9, 3, 1)
    assert batch.is_contiguous
    batch.as_numpy()[...] = 1
    assert batch[3].as_numpy().sum() == 18


def test_empty_on_a_device_allocates_once_on_the_pool_stream(runtime: Runtime) -> None:
    runtime.current = 7
    batch = GpuBatch.empty(8, 224, 224, 3)
    assert runtime.allocations == [(8 * 3 * 224 * 224 * 4, gpuimage.Device("cuda", 0), 4, None)]
    assert batch.stream == 7
    assert batch.strides == (3 * 224 * 224 * 4, 224 * 224 * 4, 224 * 4, 4)


def test_empty_ready_on_a_given_stream_orders_after_the_pool(runtime: Runtime) -> None:
    runtime.home = 3
    batch = GpuBatch.empty(2, 4, 4, 3, stream=9)
    assert batch.stream == 9
    assert (3, 9, 0) in runtime.waits


@pytest.mark.parametrize(
    ("n", "pitch", "error", "message"),
    [
        (2, 47, gpuimage.PitchError, "multiple of the item size"),
        (2, 40, gpuimage.PitchError, "at least one item's extent"),
        (2, -48, gpuimage.StrideError, "non-negative"),
        (2, 2.0, gpuimage.PitchError, "int item_pitch"),
        (0, None, gpuimage.SpecError, "positive int"),
        (True, None, gpuimage.SpecError, "positive int"),
        (2, 2**63, gpuimage.SpecError, "2\\*\\*63"),
    ],
)
def test_from_pointer_refuses_bad_pitches(
    n: object, pitch: object, error: type[Exception], message: str
) -> None:
    spec = ImageSpec(height=2, width=2, channels=3, dtype="float32", layout="CHW", device="cuda:0")
    with pytest.raises(error, match=message):
        GpuBatch.from_pointer(FAKE, spec, n, item_pitch=pitch)  # type: ignore[arg-type]


def test_from_pointer_with_padded_items() -> None:
    spec = ImageSpec(height=2, width=2, channels=3, dtype="float32", layout="CHW", device="cuda:0")
    batch = GpuBatch.from_pointer(FAKE, spec, 4, item_pitch=256)
    assert batch.strides == (256, 16, 8, 4)
    assert batch[3].ptr == FAKE + 768
    assert batch.nbytes == 768 + 48
    assert batch.owner is None
    with pytest.raises(gpuimage.SpecError, match="2\\*\\*64"):
        GpuBatch.from_pointer(2**64 - 1024, spec, 8, item_pitch=256)
    with pytest.raises(gpuimage.SpecError, match="aligned"):
        GpuBatch.from_pointer(FAKE + 2, spec, 2)
    with pytest.raises(gpuimage.InteropError, match="ImageSpec"):
        GpuBatch.from_pointer(FAKE, "spec", 2)  # type: ignore[arg-type]


def test_an_item_write_is_seen_by_the_batch_and_its_views(runtime: Runtime) -> None:
    spec = ImageSpec(height=2, width=2, channels=3, dtype="float32", layout="CHW", device="cuda:0")
    batch = GpuBatch.from_pointer(FAKE, spec, 2, owner=object(), stream=5)
    with batch[1].writing(11):
        pass
    assert batch.stream == 11  # the ready state is shared
    runtime.waits.clear()
    batch.as_cupy(stream=13)
    assert runtime.waits == [(11, 13, 0)]


def test_owner_lives_while_items_live() -> None:
    class Owner:
        pass

    owner = Owner()
    alive = weakref.ref(owner)
    spec = ImageSpec(height=2, width=2, channels=1, dtype="uint8", device="cpu")
    memory = np.zeros(64, np.uint8)
    batch = GpuBatch.from_pointer(memory.ctypes.data, spec, 4, item_pitch=16, owner=owner)
    item = batch[3]
    del owner, batch
    gc.collect()
    assert alive() is not None
    del item
    gc.collect()
    assert alive() is None


def test_normalize_batch_writes_into_a_host_batch() -> None:
    rng = np.random.default_rng(0)
    images = [
        GpuImage.from_numpy(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), layout="HWC") for _ in range(3)
    ]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    storage = np.full((3, 3, 6, 5), np.nan, np.float32)
    batch = GpuBatch.from_numpy(storage[:, :, :4])  # padded items
    assert gpuimage.normalize_batch(images, mean, std, out=batch) is batch
    for index, image in enumerate(images):
        expected = gpuimage.normalize(image, mean, std).as_numpy()
        np.testing.assert_allclose(batch[index].as_numpy(), expected, rtol=1e-6)
    assert np.isnan(storage[:, :, 4:]).all()  # nothing written between items


def test_normalize_batch_writes_nhwc_like_nchw() -> None:
    images = [GpuImage.from_numpy(np.full((2, 2, 3), 10 * i, np.uint8), layout="HWC") for i in range(2)]
    nhwc = GpuBatch.empty(2, 2, 2, 3, layout="NHWC", device="cpu")
    nchw = gpuimage.normalize_batch(images, 0.0, 1.0, like="numpy")
    gpuimage.normalize_batch(images, 0.0, 1.0, out=nhwc)
    np.testing.assert_array_equal(nhwc.as_numpy().transpose(0, 3, 1, 2), nchw)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (lambda: GpuBatch.empty(3, 2, 2, 3, device="cpu"), r"\(N, C, H, W\) = \(2, 3, 2, 2\)"),
        (lambda: GpuBatch.empty(2, 2, 2, 3, "float16", device="cpu"), "dtype float32"),
        (lambda: _readonly(), "read-only"),
    ],
)
def test_normalize_batch_refuses_a_batch_that_does_not_fit(batch: object, message: str) -> None:
    images = [GpuImage.from_numpy(np.zeros((2, 2, 3), np.uint8), layout="HWC") for _ in range(2)]
    with pytest.raises(gpuimage.GpuImageError, match=message):
        gpuimage.normalize_batch(images, 0.0, 1.0, out=batch())  # type: ignore[operator]


def _readonly() -> GpuBatch:
    array = np.zeros((2, 3, 2, 2), np.float32)
    array.flags.writeable = False
    return GpuBatch.from_numpy(array)


def test_repr_names_the_geometry() -> None:
    text = repr(GpuBatch.from_numpy(_host()))
    assert text.startswith("GpuBatch(3x4x5x3 float32 NCHW, cpu, item_pitch=240")


def test_from_cupy_reads_a_header_without_a_gpu() -> None:
    pytest.importorskip("cupy")
    spec = ImageSpec(height=2, width=3, channels=3, dtype="float32", layout="CHW", device="cuda:0")
    source = GpuBatch.from_pointer(FAKE, spec, 4, item_pitch=256, owner=object())
    batch = GpuBatch.from_cupy(source.as_cupy())
    assert (batch.ptr, batch.shape, batch.strides) == (FAKE, (4, 3, 2, 3), (256, 24, 12, 4))
    assert batch.owner is not source.owner  # the CuPy array, which keeps the source's owner
    with pytest.raises(gpuimage.LayoutError, match=r"4-D .* got ndarray of shape \(4, 2, 3\)"):
        GpuBatch.from_cupy(source.as_cupy()[:, 0])


class _Queued:
    """An executor that records where each batch conversion was queued and touches no memory."""

    name = "queued"

    def __init__(self) -> None:
        self.streams: list[int] = []

    def stream_for(self, device: int, /) -> tuple[int, object]:
        return 21, None

    def convert_batch(self, *args: Any) -> None:
        self.streams.append(args[-1])


def test_normalize_batch_into_a_device_batch_is_ordered(runtime: Runtime) -> None:
    queued = _Queued()
    spec = ImageSpec(height=2, width=2, channels=3, dtype="uint8", device="cuda:0")
    image = GpuImage.from_pointer(FAKE, spec, owner=object(), stream=5)
    item = ImageSpec(height=2, width=2, channels=3, dtype="float32", layout="CHW", device="cuda:0")
    batch = GpuBatch.from_pointer(FAKE + 4096, item, 2, owner=object(), stream=9)
    with _conversions.override_executor(cast(Any, queued)):
        gpuimage.normalize_batch([image, image], 0.0, 1.0, out=batch)
        assert queued.streams == [9]  # on the batch's ready stream
        assert (5, 9, 0) in runtime.waits  # after the source's data
        assert batch.stream == 9
        assert batch._ready.event is not None  # the write is recorded: consumers wait for exactly it
        with batch[0].reading(13):  # a reader of one item holds back the next write to the batch
            pass
        runtime.waits.clear()
        gpuimage.normalize_batch([image, image], 0.0, 1.0, out=batch)
        assert (13, 9, 0) in runtime.waits
        fresh = GpuBatch.from_pointer(FAKE + 8192, item, 2, owner=object())
        gpuimage.normalize_batch([image, image], 0.0, 1.0, out=fresh)
        assert queued.streams[-1] == 21  # nothing pending: the executor's current stream
        assert fresh.stream == 21
