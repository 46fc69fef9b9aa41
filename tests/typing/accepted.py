"""Static cases that must type-check: layouts and dtypes flow through constructors, views and ops.

Checked by mypy --strict and pyright (tests/test_typing.py runs both); never executed.
"""

from __future__ import annotations

from typing import Any, assert_type

import cupy
import cv2
import numpy as np
import numpy.typing as npt
import torch

from gpuimage import (
    CHW,
    HWC,
    AnyDType,
    AnyLayout,
    Float32,
    GpuImage,
    ImageSpec,
    Layout,
    UInt8,
)


def constructors_infer_the_layout(
    tensor: torch.Tensor,
    array: cupy.ndarray,
    mat: cv2.cuda.GpuMat,
    host: npt.NDArray[np.uint8],
    layout: Layout,
) -> None:
    assert_type(GpuImage.from_torch(tensor, layout=Layout.HWC), GpuImage[HWC])
    assert_type(GpuImage.from_torch(tensor, layout="CHW"), GpuImage[CHW])
    assert_type(GpuImage.from_torch(tensor, layout=CHW), GpuImage[CHW])
    assert_type(GpuImage.from_torch(tensor), GpuImage[HWC])  # 2-D sources are single-channel HWC
    assert_type(GpuImage.from_torch(tensor, layout=layout), GpuImage[AnyLayout])
    assert_type(GpuImage.from_cupy(array, layout="HWC"), GpuImage[HWC])
    assert_type(GpuImage.from_gpumat(mat), GpuImage[HWC])
    assert_type(GpuImage.from_dlpack(tensor, layout="CHW"), GpuImage[CHW])
    assert_type(GpuImage.from_cuda_array_interface(array, layout=Layout.CHW), GpuImage[CHW])
    assert_type(GpuImage.from_numpy(host, layout="HWC"), GpuImage[HWC])
    assert_type(GpuImage.empty(4, 4, 3, "float32", layout="CHW"), GpuImage[CHW])
    assert_type(GpuImage.from_pointer(1 << 20, ImageSpec(height=1, width=1)), GpuImage[AnyLayout, AnyDType])


def views_are_precise(image: GpuImage[HWC, UInt8]) -> None:
    assert_type(image.as_torch(), torch.Tensor)
    assert_type(image.as_cupy(), cupy.ndarray)
    assert_type(image.as_gpumat(), cv2.cuda.GpuMat)
    assert_type(image.as_numpy(), npt.NDArray[Any])


def ops_keep_or_change_the_parameters(image: GpuImage[HWC, UInt8]) -> None:
    assert_type(image.crop(0, 0, 2, 2), GpuImage[HWC, UInt8])
    assert_type(image.crop(0, 0, 2, 2).crop(0, 0, 1, 1), GpuImage[HWC, UInt8])
    assert_type(image.copy(), GpuImage[HWC, UInt8])
    assert_type(image.contiguous(), GpuImage[HWC, UInt8])
    assert_type(image.cpu(), GpuImage[HWC, UInt8])
    assert_type(image.to_layout("CHW"), GpuImage[CHW, UInt8])
    assert_type(image.to_layout(Layout.CHW).to_layout(HWC), GpuImage[HWC, UInt8])


def checked_narrowing(image: GpuImage) -> None:
    assert_type(image, GpuImage[AnyLayout, AnyDType])
    assert_type(image.expect("HWC"), GpuImage[HWC, AnyDType])
    assert_type(image.expect(Layout.CHW, Float32), GpuImage[CHW, Float32])
    image.expect("HWC").as_gpumat()


def specific_images_widen(image: GpuImage[HWC, UInt8]) -> None:
    any_dtype: GpuImage[HWC] = image
    anything: GpuImage = image
    del any_dtype, anything


# A typed three-stage pipeline: decode -> preprocess -> infer.
def decode(frame: torch.Tensor) -> GpuImage[HWC, UInt8]:
    return GpuImage.from_torch(frame, layout="HWC").expect("HWC", UInt8)


def preprocess(image: GpuImage[HWC, UInt8]) -> GpuImage[CHW, UInt8]:
    return image.crop(0, 0, 224, 224).to_layout("CHW")


def infer(planar: GpuImage[CHW]) -> torch.Tensor:
    return planar.as_torch().float().mean()


def pipeline(frame: torch.Tensor) -> torch.Tensor:
    return infer(preprocess(decode(frame)))
