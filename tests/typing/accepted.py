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
    BFloat16,
    ChannelOrder,
    Float16,
    Float32,
    GpuBatch,
    GpuFrame,
    GpuImage,
    ImageSpec,
    Layout,
    PixelFormat,
    PreparedBatch,
    UInt8,
    UInt16,
    denormalize,
    normalize,
    normalize_batch,
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


def conversions_change_the_dtype(image: GpuImage[HWC, UInt8], planar: GpuImage[CHW, Float32]) -> None:
    assert_type(image.astype(Float32), GpuImage[HWC, Float32])
    assert_type(image.astype(Float16, scale=2.0), GpuImage[HWC, Float16])
    assert_type(image.astype("float32"), GpuImage[HWC, AnyDType])
    assert_type(planar.astype(UInt8, scale=255.0), GpuImage[CHW, UInt8])
    assert_type(image.copy(row_alignment=256), GpuImage[HWC, UInt8])
    assert_type(normalize(image, (0.5, 0.5, 0.5), 0.25), GpuImage[CHW, Float32])
    assert_type(normalize(image, 0.5, 0.25, dtype=BFloat16), GpuImage[CHW, BFloat16])
    assert_type(normalize(image, 0.5, 0.25, dtype="float16"), GpuImage[CHW, AnyDType])
    assert_type(denormalize(planar, 0.5, 0.25), GpuImage[HWC, UInt8])
    assert_type(denormalize(planar, 0.5, 0.25, dtype=UInt16), GpuImage[HWC, UInt16])
    denormalize(planar, 0.5, 0.25).as_gpumat()  # back to HWC: a GpuMat view type-checks again


def batches_return_the_library_array(images: list[GpuImage[HWC, UInt8]], out: torch.Tensor) -> None:
    assert_type(normalize_batch(images, 0.5, 0.25), torch.Tensor)
    assert_type(normalize_batch(images, 0.5, 0.25, like="cupy"), cupy.ndarray)
    assert_type(normalize_batch(images, 0.5, 0.25, like="numpy"), npt.NDArray[Any])
    assert_type(normalize_batch(images, 0.5, 0.25, rois=[(0, 0, 8, 8)] * len(images), out=out), torch.Tensor)


def prepared_batches_return_their_out(
    frames: list[GpuFrame], out: torch.Tensor, array: cupy.ndarray, batch: GpuBatch
) -> None:
    assert_type(PreparedBatch(0.5, 0.25, size=(8, 8), resize="bilinear", out=out)(frames), torch.Tensor)
    assert_type(PreparedBatch(0.5, 0.25, size=(8, 8), resize="bilinear", out=array)(frames), cupy.ndarray)
    assert_type(PreparedBatch(0.5, 0.25, out=batch).out, GpuBatch)


def checked_narrowing(image: GpuImage) -> None:
    assert_type(image, GpuImage[AnyLayout, AnyDType])
    assert_type(image.expect("HWC"), GpuImage[HWC, AnyDType])
    assert_type(image.expect(Layout.CHW, Float32), GpuImage[CHW, Float32])
    image.expect("HWC").as_gpumat()


def specific_images_widen(image: GpuImage[HWC, UInt8]) -> None:
    any_dtype: GpuImage[HWC] = image
    anything: GpuImage = image
    del any_dtype, anything


def frames_convert_to_typed_images(frame: GpuFrame, tensor: torch.Tensor, layout: Layout) -> None:
    assert_type(frame.to_image(), GpuImage[HWC, UInt8])
    assert_type(frame.to_image(layout="CHW"), GpuImage[CHW, UInt8])
    assert_type(frame.to_image(layout=CHW, dtype=Float32), GpuImage[CHW, Float32])
    assert_type(frame.to_image(dtype=Float16, order="BGR"), GpuImage[HWC, Float16])
    assert_type(frame.to_image(dtype="float32"), GpuImage[HWC, AnyDType])
    assert_type(frame.to_image(layout=layout), GpuImage[AnyLayout, AnyDType])
    frame.to_image().as_gpumat()  # an HWC image again: a GpuMat view type-checks
    assert_type(frame.planes[1].as_gpumat(), cv2.cuda.GpuMat)  # planes are HWC images
    assert_type(GpuFrame.from_dlpack(tensor, format="NV12").as_torch(), torch.Tensor)
    assert_type(GpuFrame.empty(64, 32, format=PixelFormat.P010, colour=None), GpuFrame)


def channel_orders_keep_the_image_type(image: GpuImage[HWC, UInt8], batch: GpuBatch) -> None:
    assert_type(image.channel_order, ChannelOrder | None)
    assert_type(image.with_channel_order("BGR"), GpuImage[HWC, UInt8])
    assert_type(image.with_channel_order(None), GpuImage[HWC, UInt8])
    assert_type(image.with_channel_order(ChannelOrder.BGR).to_channel_order("RGB"), GpuImage[HWC, UInt8])
    assert_type(image.with_channel_order("BGR").as_gpumat(), cv2.cuda.GpuMat)  # still an HWC image
    assert_type(
        denormalize(normalize(image, 0.5, 0.5, order="RGB"), 0.5, 0.5, order="BGR"), GpuImage[HWC, UInt8]
    )
    assert_type(batch.with_channel_order("RGB"), GpuBatch)
    assert_type(batch.channel_order, ChannelOrder | None)


# A typed three-stage pipeline: decode -> preprocess -> infer.
def decode(frame: torch.Tensor) -> GpuImage[HWC, UInt8]:
    return GpuImage.from_torch(frame, layout="HWC").expect("HWC", UInt8)


def preprocess(image: GpuImage[HWC, UInt8]) -> GpuImage[CHW, UInt8]:
    return image.crop(0, 0, 224, 224).to_layout("CHW")


def infer(planar: GpuImage[CHW]) -> torch.Tensor:
    return planar.as_torch().float().mean()


def pipeline(frame: torch.Tensor) -> torch.Tensor:
    return infer(preprocess(decode(frame)))
