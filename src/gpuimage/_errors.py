"""The exceptions gpuimage raises. One ``except GpuImageError`` catches all of them.

Each class also derives from the builtin a caller would naturally expect, so that code written
against torch or NumPy conventions (``except ValueError``) keeps working::

    GpuImageError
    ├── SpecError (ValueError)              an ImageSpec that describes impossible memory
    │   └── PitchError                      a pitch or stride that is too small, unaligned or overlapping
    ├── LayoutError (ValueError)            a layout that is missing, unknown or does not fit the target
    ├── DTypeError (TypeError)              a dtype the source or the target cannot represent
    ├── DeviceError (ValueError)            the wrong device, or host memory where device memory is needed
    │   └── HostMemoryError (AttributeError)  a device-only protocol asked of a host image
    ├── BoundsError (IndexError)            a crop or a view that would point outside its memory
    ├── ReadOnlyError (ValueError)          a writable view asked of read-only memory
    ├── StrideError (ValueError)            strides that a target library cannot express
    ├── InteropError (TypeError)            a foreign object that is not what its protocol promises
    ├── ExportError (BufferError, ValueError)  an export that cannot be made as asked
    ├── LifetimeError (RuntimeError)        memory whose owner is gone or was already consumed
    ├── CudaError (RuntimeError)            a CUDA runtime call (event, stream wait, sync) that failed
    ├── WaitTimeoutError (TimeoutError)     a wait on another process (a ring's slot) past its timeout
    ├── OutOfMemoryError (MemoryError)      host memory for a new image or copy that cannot be had
    ├── MissingBackendError (ImportError)   an optional library that is not installed or lacks CUDA
    └── OpenCVStubsError (RuntimeError)     OpenCV's type stubs cannot be extended (``gpuimage stubs``)

Messages follow one pattern: what was asked, what was expected, what was got, what to do instead.
"""

from __future__ import annotations

__all__ = [
    "BoundsError",
    "CudaError",
    "DTypeError",
    "DeviceError",
    "ExportError",
    "GpuImageError",
    "HostMemoryError",
    "InteropError",
    "LayoutError",
    "LifetimeError",
    "MissingBackendError",
    "OpenCVStubsError",
    "OutOfMemoryError",
    "PitchError",
    "ReadOnlyError",
    "SpecError",
    "StrideError",
    "WaitTimeoutError",
]


class GpuImageError(Exception):
    """The root of every exception gpuimage raises."""


class SpecError(GpuImageError, ValueError):
    """An image description that no memory can satisfy (sizes, dtype, device)."""


class PitchError(SpecError):
    """A row pitch, plane pitch or stride that is too small, unaligned, or makes elements overlap."""


class LayoutError(GpuImageError, ValueError):
    """A layout that is missing, unknown, or not accepted by the operation."""


class DTypeError(GpuImageError, TypeError):
    """A dtype that the source or the target library cannot represent."""


class DeviceError(GpuImageError, ValueError):
    """A device mismatch, or host memory where device memory is needed (or the reverse)."""


class HostMemoryError(DeviceError, AttributeError):
    """A device-only protocol (``__cuda_array_interface__``) asked of an image in host memory.

    It is an ``AttributeError`` so that ``hasattr(image, "__cuda_array_interface__")`` is False for
    host images, as the protocol expects.
    """


class BoundsError(GpuImageError, IndexError):
    """A crop, offset or view that would reach outside the memory it came from."""


class ReadOnlyError(GpuImageError, ValueError):
    """A writable view (torch, CuPy, GpuMat have no read-only arrays) asked of read-only memory."""


class StrideError(GpuImageError, ValueError):
    """Strides that the target library cannot express; ``contiguous()`` makes a packed copy."""


class InteropError(GpuImageError, TypeError):
    """A foreign object of the wrong type, or one whose protocol data is malformed."""


class ExportError(GpuImageError, BufferError, ValueError):
    """An export that cannot be made as requested (DLPack device, copy or stream arguments; a
    NumPy ``copy=False`` that would need a copy). Also a ``ValueError``, as NumPy expects there."""


class LifetimeError(GpuImageError, RuntimeError):
    """Memory whose owner is gone, or a DLPack capsule that was already consumed."""


class CudaError(GpuImageError, RuntimeError):
    """A CUDA runtime call that failed (recording an event, a stream wait, a synchronize)."""


class WaitTimeoutError(GpuImageError, TimeoutError):
    """A wait on another process (a ``SharedRing`` slot) that did not end within its ``timeout``."""


class OutOfMemoryError(GpuImageError, MemoryError):
    """Host memory for a new image or copy that the system cannot give (device memory that runs out
    is a ``CudaError``, as the allocating library reports it)."""


class MissingBackendError(GpuImageError, ImportError):
    """An optional library that is not installed, or is installed without the CUDA support needed."""


class OpenCVStubsError(GpuImageError, RuntimeError):
    """OpenCV's stubs cannot be extended: there are none, ``class GpuMat`` is not in them, or the
    destination holds a ``cv2`` folder that gpuimage did not write."""
