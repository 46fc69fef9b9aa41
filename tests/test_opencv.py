"""The OpenCV spoke's ``view`` over fake device pointers: GpuMat headers need no CUDA (PyPI wheels
have none), so this runs anywhere; nothing reads or writes the memory. Never call
``cv2.cuda.wrapStream`` or ``Stream.Null()`` here: they abort the process on builds without CUDA."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import HWC, GpuImage, GpuImageError, ImageSpec, SpecError

cv2 = pytest.importorskip("cv2")

FAKE = 0x7F00_0000_0000  # 256-byte aligned, never dereferenced
C_INT_MAX = 2**31 - 1


def _fake(height: int, width: int, channels: int = 1, row_pitch: int | None = None) -> GpuImage[HWC]:
    spec = ImageSpec(
        height=height, width=width, channels=channels, dtype="uint8", row_pitch=row_pitch, device="cuda:0"
    )
    return GpuImage.from_pointer(FAKE, spec).expect("HWC")


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
