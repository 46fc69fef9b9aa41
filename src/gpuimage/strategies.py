"""Hypothesis strategies for gpuimage, for your own property tests (and ours).

``image_specs()`` draws valid ``ImageSpec`` values (every dtype, both layouts, padded pitches);
``crops()`` draws a rectangle inside a spec; ``images()`` builds real images over fresh memory, in
host memory by default or on a CUDA device. ``st.from_type(GpuImage)`` draws from ``images()``
(registered through hypothesis's entry point, and on import of this module).

Bounds are keyword-only ``min_*``/``max_*`` pairs; each argument takes a value or a strategy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import numpy as np
from hypothesis import strategies as st

from ._device import Device, DeviceLike, parse_device
from ._dtypes import DTYPES, AnyDType, DTypeName
from ._geometry import packed_geometry
from ._image import GpuImage
from ._layout import AnyLayout, Layout
from ._spec import ImageSpec

__all__ = ["crops", "fill_pattern", "image_specs", "images"]

ALL_DTYPES: tuple[DTypeName, ...] = tuple(DTYPES)
ALL_LAYOUTS: tuple[Layout, ...] = (Layout.HWC, Layout.CHW)


def _check_bounds(name: str, low: int, high: int) -> None:
    if low < 1:
        raise ValueError(f"min_{name}={low} must be at least 1.")
    if low > high:
        raise ValueError(f"min_{name}={low} is larger than max_{name}={high}.")


@st.composite
def _specs(
    draw: st.DrawFn,
    dtypes: Sequence[DTypeName],
    layouts: Sequence[Layout],
    side: tuple[int, int],
    channel_range: tuple[int, int],
    max_padding_items: int,
    device: Device,
) -> ImageSpec:
    dtype = draw(st.sampled_from(dtypes))
    layout = draw(st.sampled_from(layouts))
    height = draw(st.integers(*side))
    width = draw(st.integers(*side))
    channels = draw(st.integers(*channel_range))
    itemsize = DTYPES[dtype].itemsize
    packed = packed_geometry(layout, height, width, channels, itemsize)
    row_padding = draw(st.integers(0, max_padding_items)) * itemsize
    row_pitch = packed.row_pitch + row_padding
    if layout is Layout.HWC:
        channel_stride = packed.channel_stride
    else:
        channel_stride = row_pitch * height + draw(st.integers(0, max_padding_items)) * itemsize
    return ImageSpec(
        height=height,
        width=width,
        channels=channels,
        dtype=dtype,
        layout=layout,
        row_pitch=row_pitch,
        pixel_stride=packed.pixel_stride,
        channel_stride=channel_stride,
        device=device,
    )


def image_specs(
    *,
    dtypes: Sequence[DTypeName] = ALL_DTYPES,
    layouts: Sequence[Layout] = ALL_LAYOUTS,
    min_side: int = 1,
    max_side: int = 48,
    min_channels: int = 1,
    max_channels: int = 4,
    max_padding_items: int = 9,
    device: DeviceLike = "cpu",
) -> st.SearchStrategy[ImageSpec]:
    """Valid specs: sizes in ``[min_side, max_side]``, rows (and CHW planes) padded by up to
    ``max_padding_items`` elements. ``device`` is recorded in the spec; no memory is allocated.

    ``device="cpu"`` (the default) makes ``images(image_specs())`` work on a machine without a GPU;
    pass ``device=0`` for specs of CUDA images."""
    _check_bounds("side", min_side, max_side)
    _check_bounds("channels", min_channels, max_channels)
    if max_padding_items < 0:
        raise ValueError(f"max_padding_items={max_padding_items} must be non-negative.")
    if not dtypes or not layouts:
        raise ValueError("dtypes and layouts must not be empty.")
    return _specs(
        tuple(dtypes),
        tuple(layouts),
        (min_side, max_side),
        (min_channels, max_channels),
        max_padding_items,
        parse_device(device, where="image_specs()"),
    )


@st.composite
def _crops(draw: st.DrawFn, spec: ImageSpec) -> tuple[int, int, int, int]:
    x = draw(st.integers(0, spec.width - 1))
    y = draw(st.integers(0, spec.height - 1))
    width = draw(st.integers(1, spec.width - x))
    height = draw(st.integers(1, spec.height - y))
    return x, y, width, height


def crops(spec: ImageSpec) -> st.SearchStrategy[tuple[int, int, int, int]]:
    """``(x, y, width, height)`` rectangles that lie inside ``spec`` (at any offset, odd ones too)."""
    return _crops(spec)


def fill_pattern(image: GpuImage, seed: int) -> None:
    """Write a deterministic, exactly representable pattern into every element of ``image``."""
    count = image.height * image.width * image.channels
    values = (np.arange(count, dtype=np.int64) * 7 + seed) % 101
    if image.dtype == "bool":
        values %= 2
    pattern = values.reshape(image.shape)
    if not image.device.is_cuda and image.dtype == "bfloat16":
        # NumPy has no bfloat16: write the bits (the values are small integers, exact in bfloat16),
        # so host images never import torch in the middle of input generation
        from ._numpy import view

        bits = (pattern.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        view(image.ptr, image.spec, image.owner, readonly=False, as_dtype="uint16")[...] = bits
        return
    if image.device.is_cuda:
        import torch

        from ._torch import DTYPES as TORCH_DTYPES
        from ._torch import from_numpy

        host: torch.Tensor = from_numpy(pattern)
        image.as_torch().copy_(host.to(TORCH_DTYPES[image.spec.dtype]))
    else:
        image.as_numpy()[...] = pattern.astype(image.spec.dtype)


@st.composite
def _images(draw: st.DrawFn, specs: st.SearchStrategy[ImageSpec], device: Device | None) -> GpuImage:
    from ._runtime import runtime

    spec = draw(specs)
    if device is not None and spec.device != device:
        spec = spec.replace(device=device)
    ptr, owner, _ = runtime().allocate(spec.nbytes, spec.device, alignment=256, stream=None)
    image = GpuImage.from_pointer(ptr, spec, owner=owner)
    fill_pattern(image, draw(st.integers(0, 100)))
    return image


def images(
    specs: st.SearchStrategy[ImageSpec] | None = None, *, device: DeviceLike | None = None
) -> st.SearchStrategy[GpuImage]:
    """Real images over fresh memory with the drawn spec's exact pitches, filled with a pattern.

    ``device`` places every image there, whatever device the drawn spec names; None (the default)
    keeps the spec's own device, which is ``"cpu"`` for ``image_specs()`` and for ``images()``
    without specs. Host images work everywhere; a CUDA device needs torch or CuPy and a GPU.
    """
    placed = None if device is None else parse_device(device, where="images()")
    return _images(specs if specs is not None else image_specs(), placed)


def _images_for(kind: type[GpuImage]) -> st.SearchStrategy[GpuImage]:
    """Images of the layout and dtype that ``GpuImage[HWC, UInt8]``-style parameters name (either
    may be left open: ``GpuImage``, ``GpuImage[CHW]``)."""
    layouts, dtypes = ALL_LAYOUTS, ALL_DTYPES
    for argument in get_args(kind):
        if isinstance(argument, type) and issubclass(argument, AnyLayout) and argument.layout is not None:
            layouts = (argument.layout,)
        if isinstance(argument, type) and issubclass(argument, AnyDType) and argument.name is not None:
            dtypes = (argument.name,)
    return images(image_specs(layouts=layouts, dtypes=dtypes, device="cpu"))


# Also where gpuimage runs from a source tree without its entry point installed (the entry point,
# ``_hypothesis_hook``, registers the same resolver without importing this module early).
st.register_type_strategy(GpuImage, _images_for)
