"""The OpenCV spoke (``_opencv``) over fake device pointers: GpuMat headers out and back in, what
is refused both ways, and the registry that keeps a mat's owner alive.

GpuMat headers need no CUDA (PyPI wheels have none), so this runs anywhere; nothing reads or writes
the memory. Never call ``cv2.cuda.wrapStream`` or ``Stream.Null()`` here: they abort the process on
builds without CUDA."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import (
    HWC,
    Device,
    DeviceError,
    DTypeError,
    GpuImage,
    GpuImageError,
    ImageSpec,
    InteropError,
    Layout,
    LayoutError,
    SpecError,
    StrideError,
)
from gpuimage.strategies import crops, image_specs

cv2 = pytest.importorskip("cv2")
from gpuimage._opencv import DEPTHS, held_mats  # noqa: E402

FAKE = 0x7F00_0000_0000  # 256-byte aligned, never dereferenced
C_INT_MAX = 2**31 - 1


def _fake(height: int, width: int, channels: int = 1, row_pitch: int | None = None) -> GpuImage[HWC]:
    spec = ImageSpec(
        height=height, width=width, channels=channels, dtype="uint8", row_pitch=row_pitch, device="cuda:0"
    )
    return GpuImage.from_pointer(FAKE, spec).expect("HWC")


class Owner:
    """Stands for whatever owns the fake memory; weak-referenceable so tests can see it die."""


def _fake_of(spec: ImageSpec, owner: object = None) -> GpuImage:
    return GpuImage.from_pointer(FAKE, spec, owner=owner)


# -- headers out and back in -----------------------------------------------------------------------


@given(image_specs(device=0, layouts=(Layout.HWC,), dtypes=tuple(DEPTHS)), st.data())
def test_gpumat_header_matches_the_image_and_round_trips(spec: ImageSpec, data: st.DataObject) -> None:
    image = _fake_of(spec).crop(*data.draw(crops(spec))).expect("HWC")
    mat = image.as_gpumat()
    assert mat.cudaPtr() == image.ptr
    assert mat.size() == (image.width, image.height)
    assert mat.channels() == image.channels
    assert mat.type() == cv2.CV_MAKETYPE(DEPTHS[image.spec.dtype], image.channels)
    if image.height > 1:
        assert mat.step == image.row_pitch
    back = GpuImage.from_gpumat(mat)
    assert (back.ptr, back.shape, back.dtype) == (image.ptr, image.shape, image.dtype)
    if image.height > 1:
        assert back.strides == image.strides


def test_gpumat_refusals() -> None:
    chw = _fake_of(ImageSpec(height=2, width=2, channels=3, layout="CHW"))
    with pytest.raises(LayoutError, match="one interleaved plane"):
        chw.as_gpumat()  # type: ignore[misc]  # also a static error: as_gpumat needs GpuImage[HWC]
    with pytest.raises(LayoutError, match="1 to 4 channels"):
        _fake_of(ImageSpec(height=2, width=2, channels=5)).expect("HWC").as_gpumat()
    with pytest.raises(DTypeError, match="no bfloat16 depth"):
        _fake_of(ImageSpec(height=2, width=2, dtype="bfloat16")).expect("HWC").as_gpumat()
    transposed = ImageSpec(height=3, width=4, row_pitch=1, pixel_stride=3)
    with pytest.raises(StrideError, match="interleaved pixels"):
        _fake_of(transposed).expect("HWC").as_gpumat()
    host = GpuImage.empty(2, 2, device="cpu")
    with pytest.raises(DeviceError):
        host.as_gpumat()


def test_gpumat_import_refusals() -> None:
    with pytest.raises(InteropError, match="GpuMat"):
        GpuImage.from_gpumat(object())  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="empty"):
        GpuImage.from_gpumat(cv2.cuda.GpuMat())


@pytest.mark.parametrize("device", ["cpu", "CPU", Device("cpu")], ids=["text", "upper", "device"])
def test_gpumat_labelled_host_memory_is_refused(device: object) -> None:
    # issue 11, defect 2: a GpuMat is always device memory; labelled "cpu", a read segfaulted
    mat = _fake_of(ImageSpec(height=2, width=3, channels=3)).expect("HWC").as_gpumat()
    with pytest.raises(DeviceError, match="a GpuMat always holds device memory"):
        GpuImage.from_gpumat(mat, device=device)  # type: ignore[arg-type]
    assert GpuImage.from_gpumat(mat, device="cuda:1").device == Device("cuda", 1)


# -- the registry: a mat keeps its owner alive -----------------------------------------------------


def test_gpumat_keeps_the_owner_alive_while_referenced() -> None:
    owner = Owner()
    alive = weakref.ref(owner)
    gc.collect()  # mats of earlier tests left in garbage cycles go now, not during the counts below
    start = held_mats()
    image = _fake_of(ImageSpec(height=4, width=4, channels=3), owner).expect("HWC")
    mat = image.as_gpumat()
    assert image.as_gpumat() is mat
    del owner, image
    gc.collect()
    assert alive() is not None, "the mat is still referenced, so its memory must be"
    assert held_mats() == start + 1
    assert GpuImage.from_gpumat(mat).ptr == FAKE
    del mat
    gc.collect()
    assert alive() is None
    assert held_mats() == start


def test_registry_survives_collections_during_its_own_sweeps() -> None:
    """A gc callback that fires inside a sweep must not deadlock on the registry's lock."""
    code = textwrap.dedent(
        """
        import gc
        from gpuimage import GpuImage, ImageSpec
        from gpuimage._opencv import held_mats
        gc.set_threshold(1, 1, 1)  # collect on nearly every allocation
        spec = ImageSpec(height=2, width=2, channels=3)
        mats = [GpuImage.from_pointer(0x7F0000000000, spec).expect("HWC").as_gpumat() for _ in range(3000)]
        assert held_mats() == 3000
        del mats
        gc.collect()
        print(held_mats())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


# -- sides beyond a C int ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width"),
    [(2**31, 1), (1, 2**31), (2**32 + 1, 2), (3, 2**40)],
    ids=["rows-2**31", "cols-2**31", "rows-2**32+1", "cols-2**40"],
)
def test_sides_beyond_a_c_int_are_refused_before_opencv(height: int, width: int) -> None:
    # issue 11, defect 14: OpenCV answered with a bare cv2.error ("integer won't fit into a C int")
    with pytest.raises(SpecError, match=r"as_gpumat\(\): expected height and width up to 2147483647 .*C int"):
        _fake(height, width).as_gpumat()


@given(
    long=st.one_of(st.sampled_from([C_INT_MAX, C_INT_MAX + 1]), st.integers(C_INT_MAX - 2, 2**40)),
    short=st.integers(1, 4),
    rows_are_long=st.booleans(),
)
def test_a_gpumat_is_made_exactly_when_both_sides_fit_a_c_int(
    long: int, short: int, rows_are_long: bool
) -> None:
    # issue 11, defect 14: at the boundary, a header or a SpecError, never cv2.error
    height, width = (long, short) if rows_are_long else (short, long)
    image = _fake(height, width)
    if height <= C_INT_MAX and width <= C_INT_MAX:
        mat = image.as_gpumat()
        assert mat.size() == (width, height)
        assert mat.cudaPtr() == FAKE
    else:
        with pytest.raises(SpecError, match="C ints"):
            image.as_gpumat()


def test_row_steps_beyond_a_c_int_are_fine() -> None:
    # issue 11, defect 14: the step is a size_t in createGpuMatFromCudaMemory, so a pitch of 2**32 works
    image = _fake(3, 4, channels=3, row_pitch=2**32 + 256)
    mat = image.as_gpumat()
    assert mat.step == 2**32 + 256
    assert mat.size() == (4, 3)


def test_the_refusal_is_a_gpuimage_error_and_a_value_error() -> None:
    # issue 11, defect 14: callers catch one root, or the builtin they expect
    with pytest.raises(GpuImageError) as caught:
        _fake(2**31, 1).as_gpumat()
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, cv2.error)
