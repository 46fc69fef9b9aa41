"""Layouts: the runtime enum and the static markers that parametrize ``GpuImage``."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal, TypeAlias

from ._errors import LayoutError

__all__ = ["CHW", "HWC", "AnyLayout", "CHWLike", "HWCLike", "Layout", "LayoutLike", "parse_layout"]


class Layout(StrEnum):
    """The order of an image's dimensions in memory, slowest first.

    ``HWC`` is interleaved (pixels hold their channels side by side: OpenCV, decoders); ``CHW`` is
    planar (one plane per channel: most neural networks).
    """

    HWC = "HWC"
    CHW = "CHW"


class AnyLayout:
    """Static marker: an image whose layout is known only at run time.

    ``GpuImage[AnyLayout]`` accepts images of either layout; narrow it with ``image.expect("HWC")``.
    """

    layout: ClassVar[Layout | None] = None


class HWC(AnyLayout):
    """Static marker for ``Layout.HWC``: ``GpuImage[HWC]`` is an interleaved image."""

    layout: ClassVar[Layout | None] = Layout.HWC


class CHW(AnyLayout):
    """Static marker for ``Layout.CHW``: ``GpuImage[CHW]`` is a planar image."""

    layout: ClassVar[Layout | None] = Layout.CHW


LayoutLike: TypeAlias = Layout | Literal["HWC", "CHW"] | type[AnyLayout]
"""What every ``layout=`` parameter accepts: a ``Layout``, its name, or a marker class."""


def parse_layout(value: object, *, where: str) -> Layout:
    """Turn a ``Layout``, a string ``"HWC"``/``"CHW"`` or a marker class into a ``Layout``."""
    known = _KNOWN.get(value) if type(value) is str or type(value) is Layout else None
    if known is not None:  # the common spellings, at the cost of one lookup
        return known
    if isinstance(value, Layout):
        return value
    if isinstance(value, str):
        try:
            return Layout(value.upper())
        except ValueError:
            pass
    elif isinstance(value, type) and issubclass(value, AnyLayout) and value.layout is not None:
        return value.layout
    raise LayoutError(f"{where}: expected layout 'HWC' or 'CHW' (or gpuimage.Layout), got layout={value!r}.")


_KNOWN: dict[object, Layout] = {"HWC": Layout.HWC, "CHW": Layout.CHW}  # a str enum: its members hash as these

HWCLike: TypeAlias = Literal[Layout.HWC, "HWC"] | type[HWC]
"""A ``layout=`` argument that statically means HWC."""

CHWLike: TypeAlias = Literal[Layout.CHW, "CHW"] | type[CHW]
"""A ``layout=`` argument that statically means CHW."""
