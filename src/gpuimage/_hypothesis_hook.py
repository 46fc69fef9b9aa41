"""The ``hypothesis`` entry point: makes ``st.from_type(GpuImage)`` draw ``gpuimage.strategies.images()``.

Hypothesis runs it while hypothesis itself is being imported, which may be from inside
``import gpuimage.strategies``: so it registers a resolver and imports the strategies module only
when a strategy is first asked for, never while that module is half loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from ._image import GpuImage

__all__ = ["setup"]


def _images_for(kind: type[GpuImage]) -> SearchStrategy[GpuImage]:
    """Images of the layout and dtype that ``GpuImage[HWC, UInt8]``-style parameters name (either
    may be left open: ``GpuImage``, ``GpuImage[CHW]``)."""
    from ._dtypes import AnyDType
    from ._layout import AnyLayout
    from .strategies import ALL_DTYPES, ALL_LAYOUTS, image_specs, images

    layouts, dtypes = ALL_LAYOUTS, ALL_DTYPES
    for argument in get_args(kind):
        if isinstance(argument, type) and issubclass(argument, AnyLayout) and argument.layout is not None:
            layouts = (argument.layout,)
        if isinstance(argument, type) and issubclass(argument, AnyDType) and argument.name is not None:
            dtypes = (argument.name,)
    return images(image_specs(layouts=layouts, dtypes=dtypes, device="cpu"))


def setup() -> None:
    """Register the resolver for ``GpuImage`` with hypothesis."""
    from hypothesis import strategies as st

    from ._image import GpuImage

    st.register_type_strategy(GpuImage, _images_for)
