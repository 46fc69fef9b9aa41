"""The ``hypothesis`` entry point: makes ``st.from_type(GpuImage)`` draw ``gpuimage.strategies.images()``.

Hypothesis runs it while hypothesis itself is being imported, which may be from inside
``import gpuimage.strategies``: so it registers a resolver and imports the strategies module only
when a strategy is first asked for, never while that module is half loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from ._image import GpuImage

__all__ = ["setup"]


def _images_for(kind: type[GpuImage]) -> SearchStrategy[GpuImage]:
    """The strategies module's resolver, imported when a strategy is first asked for."""
    strategies = importlib.import_module("gpuimage.strategies")
    resolver: Callable[[type[GpuImage]], SearchStrategy[GpuImage]] = strategies._images_for
    return resolver(kind)


def setup() -> None:
    """Register the resolver for ``GpuImage`` with hypothesis."""
    from hypothesis import strategies as st

    from ._image import GpuImage

    st.register_type_strategy(GpuImage, _images_for)
