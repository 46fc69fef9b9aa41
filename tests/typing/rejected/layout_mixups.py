"""Misuse that must be a static error. Each marked line names the error it must produce, as
``# mypy: <code>`` and ``# pyright: <rule>``; tests/test_typing.py checks both, line by line."""

from __future__ import annotations

import torch

from gpuimage import CHW, HWC, Float32, GpuImage, UInt8, normalize


def needs_chw(image: GpuImage[CHW]) -> None: ...


def hwc_where_chw_is_declared(frame: torch.Tensor) -> None:
    image = GpuImage.from_torch(frame, layout="HWC")
    needs_chw(image)  # mypy: arg-type  # pyright: reportArgumentType


def gpumat_of_a_chw_image(frame: torch.Tensor) -> None:
    planar = GpuImage.from_torch(frame, layout="CHW")
    planar.as_gpumat()  # mypy: misc  # pyright: reportAttributeAccessIssue


def gpumat_of_an_unknown_layout(image: GpuImage) -> None:
    image.as_gpumat()  # mypy: misc  # pyright: reportAttributeAccessIssue


def wrong_dtype_assignment(image: GpuImage[HWC, UInt8]) -> None:
    floats: GpuImage[HWC, Float32] = image  # mypy: assignment  # pyright: reportAssignmentType
    del floats


def converted_layout_is_tracked(image: GpuImage[HWC, UInt8]) -> None:
    still_hwc: GpuImage[HWC] = image.to_layout("CHW")  # mypy: assignment  # pyright: reportAssignmentType
    del still_hwc


def unknown_layout_string(frame: torch.Tensor) -> None:
    GpuImage.from_torch(frame, layout="NCHW")  # mypy: call-overload  # pyright: reportCallIssue


def conversion_changes_the_dtype(image: GpuImage[HWC, UInt8]) -> None:
    same: GpuImage[HWC, UInt8] = image.astype(Float32)  # mypy: assignment  # pyright: reportAssignmentType
    del same


def normalized_images_are_planar(image: GpuImage[HWC, UInt8]) -> None:
    normalize(image, 0.5, 0.25).as_gpumat()  # mypy: misc  # pyright: reportAttributeAccessIssue


def an_order_that_is_no_channel_order(image: GpuImage[HWC, UInt8]) -> None:
    image.with_channel_order("ARGB")  # mypy: arg-type  # pyright: reportArgumentType
