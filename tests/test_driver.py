"""``_driver``: whether a stream is being captured, answered without raising whatever the driver says."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from gpuimage import _driver


def test_no_stream_captures_here() -> None:
    assert _driver.is_capturing(0) is False  # no capture runs in this process (or no driver at all)


@pytest.mark.parametrize(
    ("status", "result", "expected"), [(0, 0, False), (1, 0, True), (2, 0, True), (1, 201, False)]
)
def test_the_drivers_answer_is_read(
    monkeypatch: pytest.MonkeyPatch, status: int, result: int, expected: bool
) -> None:
    seen: list[int | None] = []

    def fake(stream: ctypes.c_void_p, out: Any) -> int:
        seen.append(stream.value)
        out._obj.value = status  # byref(c_int): the status written where the driver writes it
        return result

    monkeypatch.setattr(_driver, "_stream_is_capturing", lambda: fake)
    assert _driver.is_capturing(0x1234) is expected
    assert seen == [0x1234]


def test_without_a_driver_nothing_captures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_driver, "_stream_is_capturing", lambda: None)
    assert _driver.is_capturing(7) is False
