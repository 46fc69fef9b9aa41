"""Where an image's memory lives: a CUDA device ordinal, or host memory."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ._errors import DeviceError

__all__ = ["CPU", "Device", "DeviceLike", "cuda_device", "parse_device"]

DLPACK_CPU = 1
DLPACK_CUDA = 2
DLPACK_CUDA_HOST = 3

_DEVICE_TEXT = re.compile(r"^(cpu|cuda)(?::([0-9]+))?$")
MAX_DEVICE_INDEX = 2**31 - 1
"""The largest ordinal: DLPack's ``device_id`` and CUDA's ``int device`` are signed 32-bit."""


@dataclass(frozen=True, slots=True)
class Device:
    """A memory location: ``Device("cuda", 1)`` is the second GPU, ``Device("cpu")`` is host memory."""

    kind: Literal["cuda", "cpu"]
    index: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("cuda", "cpu"):
            raise DeviceError(f"Device: expected kind 'cuda' or 'cpu', got kind={self.kind!r}.")
        if type(self.index) is not int or self.index < 0 or (self.kind == "cpu" and self.index != 0):
            raise DeviceError(
                f"Device: expected a non-negative int index (0 for 'cpu'), got index={self.index!r}."
            )
        if self.index > MAX_DEVICE_INDEX:
            # Larger ordinals would wrap when written to DLPack's int32 device_id (cuda:2**32+1 -> cuda:1).
            raise DeviceError(
                f"Device: expected a CUDA ordinal below 2**31 (a C int), got index={self.index}. "
                "Use the ordinal torch.cuda.current_device() or cupy.cuda.Device().id reports."
            )

    @property
    def is_cuda(self) -> bool:
        """True for GPU memory."""
        return self.kind == "cuda"

    @property
    def dlpack(self) -> tuple[int, int]:
        """The ``(device_type, device_id)`` pair of ``__dlpack_device__``."""
        return (DLPACK_CUDA, self.index) if self.kind == "cuda" else (DLPACK_CPU, 0)

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" else "cpu"


@functools.lru_cache(maxsize=64)
def cuda_device(index: int) -> Device:
    """``Device("cuda", index)``, made once per ordinal (imports ask on every call)."""
    return Device("cuda", index)


CPU = Device("cpu")
"""Host memory, ``Device("cpu")``: where ``device="cpu"`` images live (NumPy allocates them)."""

DeviceLike: TypeAlias = Device | int | str
"""What every ``device=`` parameter accepts: a ``Device``, a CUDA ordinal, ``"cuda:N"`` or ``"cpu"``."""


def parse_device(value: object, *, where: str) -> Device:
    """Turn a ``Device``, an int ordinal, ``"cuda"``, ``"cuda:N"`` or ``"cpu"`` into a ``Device``."""
    if isinstance(value, Device):
        return value
    if type(value) is int and value >= 0:
        return Device("cuda", _ordinal(value, value, where=where))
    if isinstance(value, str):
        known = _texts.get(value) if type(value) is str else None
        if known is not None:  # "cuda:0" on every frame of a loop
            return known
        match = _DEVICE_TEXT.match(value.strip().lower())
        if match is not None:
            kind, index = match.group(1), match.group(2)
            if kind == "cpu" and index in (None, "0"):
                return _remembered(value, CPU)
            if kind == "cuda":
                # Compare digit counts before int(): Python refuses to parse over 4300 digits.
                digits = (index or "0").lstrip("0") or "0"
                ordinal = MAX_DEVICE_INDEX + 1 if len(digits) > 10 else int(digits)  # 2**31 has 10 digits
                return _remembered(value, Device("cuda", _ordinal(ordinal, value, where=where)))
    raise DeviceError(f"{where}: expected a device such as 0, 'cuda:0' or 'cpu', got device={value!r}.")


_texts: dict[str, Device] = {}
"""Device texts parsed, by their exact text (only texts that parsed)."""


def _remembered(text: str, device: Device) -> Device:
    if type(text) is str and len(text) <= 64:  # a str subclass may compare unlike its text
        if len(_texts) >= 64:
            _texts.clear()
        _texts[text] = device
    return device


def _ordinal(index: int, value: object, *, where: str) -> int:
    """``index`` if it fits a C int (CUDA and DLPack device ids), else ``DeviceError``."""
    if index > MAX_DEVICE_INDEX:
        shown = value if not isinstance(value, str) or len(value) <= 40 else f"{value[:40]}..."
        raise DeviceError(
            f"{where}: expected a CUDA ordinal below 2**31 (CUDA and DLPack device ids are C ints), "
            f"got device={shown!r}. Pass the ordinal of an installed GPU, such as 0 or 'cuda:0'."
        )
    return index
