"""The exception tree: one root, natural builtins, and the exported names."""

from __future__ import annotations

import inspect

import pytest

import gpuimage
from gpuimage import _errors

ERRORS = [cls for _, cls in inspect.getmembers(_errors, inspect.isclass) if issubclass(cls, Exception)]


@pytest.mark.parametrize("error", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_is_under_the_root_and_exported(error: type[Exception]) -> None:
    assert issubclass(error, gpuimage.GpuImageError)
    assert getattr(gpuimage, error.__name__) is error
    assert error.__doc__


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (gpuimage.SpecError, ValueError),
        (gpuimage.PitchError, ValueError),
        (gpuimage.LayoutError, ValueError),
        (gpuimage.DTypeError, TypeError),
        (gpuimage.DeviceError, ValueError),
        (gpuimage.HostMemoryError, AttributeError),
        (gpuimage.BoundsError, IndexError),
        (gpuimage.StrideError, ValueError),
        (gpuimage.InteropError, TypeError),
        (gpuimage.ExportError, BufferError),
        (gpuimage.LifetimeError, RuntimeError),
        (gpuimage.CudaError, RuntimeError),
        (gpuimage.ReadOnlyError, ValueError),
        (gpuimage.ExportError, ValueError),
        (gpuimage.MissingBackendError, ImportError),
        (gpuimage.OpenCVStubsError, RuntimeError),
        (gpuimage.WaitTimeoutError, TimeoutError),
    ],
)
def test_errors_are_also_their_natural_builtin(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, builtin)


def test_exported_names_are_pinned() -> None:
    assert sorted(gpuimage.__all__) == sorted(
        [
            "Allocation",
            "AnyDType",
            "ChannelOrder",
            "ChannelOrderLike",
            "ColorMatrix",
            "ColorMatrixLike",
            "ColorRange",
            "ColorRangeLike",
            "ColorSpec",
            "FormatInfo",
            "FrameLayout",
            "PixelFormat",
            "PixelFormatLike",
            "PlaneInfo",
            "PlaneLayout",
            "format_info",
            "frame_layout",
            "plane_shapes",
            "AnyLayout",
            "BFloat16",
            "Bool",
            "BoundsError",
            "CHW",
            "CHWLike",
            "CPU",
            "ChannelValues",
            "CudaError",
            "DTypeError",
            "DTypeLike",
            "DTypeName",
            "Device",
            "DeviceError",
            "DeviceLike",
            "ExportError",
            "Float16",
            "Float32",
            "Float64",
            "GpuBatch",
            "BatchLayout",
            "BatchLayoutLike",
            "GpuFrame",
            "GpuImage",
            "GpuImageError",
            "HWC",
            "HWCLike",
            "HostMemoryError",
            "ImageSpec",
            "Int8",
            "Int16",
            "Int32",
            "Int64",
            "InteropError",
            "Layout",
            "LayoutError",
            "LayoutLike",
            "LifetimeError",
            "MissingBackendError",
            "OpenCVStubsError",
            "PitchError",
            "ReadOnlyError",
            "Runtime",
            "SpecError",
            "StreamLike",
            "StrideError",
            "UInt8",
            "UInt16",
            "UInt32",
            "pending_releases",
            "SharedRing",
            "WaitTimeoutError",
            "collect_shared",
            "set_unopened_timeout",
            "unopened_timeout",
            "__version__",
            "denormalize",
            "normalize",
            "normalize_batch",
            "runtime",
            "set_runtime",
        ]
    )
    for name in gpuimage.__all__:
        assert hasattr(gpuimage, name), name
