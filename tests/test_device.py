"""Device parsing: ordinals, strings and the host."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import CPU, Device, DeviceError, ImageSpec, SpecError
from gpuimage._device import parse_device

_TOO_LARGE = st.one_of(st.integers(2**31, 2**70), st.just(2**32 + 1))


@given(_TOO_LARGE)
def test_ordinals_that_do_not_fit_int32_are_refused(index: int) -> None:
    # issue 11, defect 7: cuda:4294967297 was accepted, and exported through DLPack as cuda:1
    for value in (index, f"cuda:{index}", f"CUDA:{index:020d}"):
        with pytest.raises(DeviceError, match="below 2\\*\\*31"):
            parse_device(value, where="test")
    with pytest.raises(DeviceError, match="below 2\\*\\*31"):
        Device("cuda", index)
    with pytest.raises(SpecError, match="below 2\\*\\*31"):
        ImageSpec(height=1, width=1, device=f"cuda:{index}")


@given(st.integers(0, 2**31 - 1))
def test_every_int32_ordinal_is_accepted(index: int) -> None:
    # issue 11, defect 7: the bound is exactly the C int range
    assert parse_device(index, where="test") == Device("cuda", index)
    assert parse_device(f"cuda:{index}", where="test") == Device("cuda", index)
    assert Device("cuda", index).dlpack == (2, index)


def test_thousands_of_digits_are_a_device_error() -> None:
    # issue 11, defect 7: int() refuses over 4300 digits with a ValueError of its own
    with pytest.raises(DeviceError, match="below 2\\*\\*31"):
        parse_device("cuda:" + "9" * 5000, where="test")


def test_leading_zeros_and_the_host() -> None:
    assert parse_device("cuda:" + "0" * 30 + "3", where="test") == Device("cuda", 3)
    assert parse_device("cpu", where="test") is CPU


def test_a_device_text_is_parsed_once_and_only_texts_that_parse_are_kept() -> None:
    first = parse_device(" CUDA:1 ", where="test")
    assert parse_device(" CUDA:1 ", where="test") is first == Device("cuda", 1)
    for _ in range(2):  # a refusal is never kept: it raises every time
        with pytest.raises(DeviceError):
            parse_device("cuda:x", where="test")
    assert parse_device("cpu", where="test") is CPU
