"""Where an image's memory lives: a CUDA device ordinal, or host memory."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ._errors import DeviceError

__all__ = ["CPU", "Device", "DeviceLike", "parse_device"]

DLPACK_CPU = 1
DLPACK_CUDA = 2
DLPACK_CUDA_HOST = 3

_DEVICE_TEXT = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


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


CPU = Device("cpu")
"""Host memory, ``Device("cpu")``: where ``device="cpu"`` images live (NumPy allocates them)."""

DeviceLike: TypeAlias = Device | int | str
"""What every ``device=`` parameter accepts: a ``Device``, a CUDA ordinal, ``"cuda:N"`` or ``"cpu"``."""


def parse_device(value: object, *, where: str) -> Device:
    """Turn a ``Device``, an int ordinal, ``"cuda"``, ``"cuda:N"`` or ``"cpu"`` into a ``Device``."""
    if isinstance(value, Device):
        return value
    if type(value) is int and value >= 0:
        return Device("cuda", value)
    if isinstance(value, str):
        match = _DEVICE_TEXT.match(value.strip().lower())
        if match is not None:
            kind, index = match.group(1), match.group(2)
            if kind == "cpu" and index in (None, "0"):
                return CPU
            if kind == "cuda":
                return Device("cuda", int(index or 0))
    raise DeviceError(f"{where}: expected a device such as 0, 'cuda:0' or 'cpu', got device={value!r}.")
