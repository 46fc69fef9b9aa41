"""gpuimage: one trusted way to hand a GPU image between PyTorch, CuPy and OpenCV's CUDA GpuMat.

No copies, no dangling pointers, layouts checked by mypy. ``import gpuimage`` needs only NumPy,
pydantic and typing_extensions; torch, CuPy and OpenCV are imported when a view needs them.
"""

from ._batch import normalize_batch
from ._conversions import ChannelValues
from ._device import CPU, Device, DeviceLike
from ._dtypes import (
    AnyDType,
    BFloat16,
    Bool,
    DTypeLike,
    DTypeName,
    Float16,
    Float32,
    Float64,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
)
from ._errors import (
    BoundsError,
    CudaError,
    DeviceError,
    DTypeError,
    ExportError,
    GpuImageError,
    HostMemoryError,
    InteropError,
    LayoutError,
    LifetimeError,
    MissingBackendError,
    OpenCVStubsError,
    OutOfMemoryError,
    PitchError,
    ReadOnlyError,
    SpecError,
    StrideError,
    WaitTimeoutError,
)
from ._formats import (
    ChannelOrder,
    ChannelOrderLike,
    ColorMatrix,
    ColorMatrixLike,
    ColorRange,
    ColorRangeLike,
    ColorSpec,
    FormatInfo,
    PixelFormat,
    PixelFormatLike,
    PlaneInfo,
    format_info,
    plane_shapes,
)
from ._frame import GpuFrame
from ._frame_layout import FrameLayout, PlaneLayout, frame_layout
from ._image import GpuImage
from ._image_batch import GpuBatch
from ._image_batch_spec import BatchLayout, BatchLayoutLike
from ._ipc_devices import open_on
from ._ipc_lease import collect_shared, set_unopened_timeout, unopened_timeout
from ._ipc_ring import SharedRing
from ._layout import CHW, HWC, AnyLayout, CHWLike, HWCLike, Layout, LayoutLike
from ._lifetime import pending_releases
from ._normalize import denormalize, normalize
from ._prepared_batch import PreparedBatch
from ._runtime import Allocation, Runtime, runtime, set_runtime
from ._spec import ImageSpec
from ._streams import StreamLike
from ._transport import TensorPayload, from_tensor_payload, to_tensor_payload

__version__ = "0.1.0"
"""The version of this gpuimage release."""

__all__ = [
    "Allocation",
    "CHW",
    "CPU",
    "ChannelValues",
    "CudaError",
    "HWC",
    "AnyDType",
    "AnyLayout",
    "BFloat16",
    "Bool",
    "BoundsError",
    "CHWLike",
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
    "OutOfMemoryError",
    "PitchError",
    "PreparedBatch",
    "ReadOnlyError",
    "Runtime",
    "SpecError",
    "StreamLike",
    "StrideError",
    "SharedRing",
    "TensorPayload",
    "WaitTimeoutError",
    "collect_shared",
    "open_on",
    "set_unopened_timeout",
    "unopened_timeout",
    "UInt8",
    "pending_releases",
    "UInt16",
    "UInt32",
    "__version__",
    "denormalize",
    "from_tensor_payload",
    "normalize",
    "normalize_batch",
    "runtime",
    "set_runtime",
    "to_tensor_payload",
]
