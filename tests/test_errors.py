"""The exception tree: one root, natural builtins, and the exported names; and advice that fits the
machine: where torch and CuPy are installed and see no GPU, no message tells the user to install them
(the conversions' executor, the runtime, a torch view)."""

from __future__ import annotations

import inspect

import pytest

import gpuimage
from gpuimage import Device, GpuImage, ImageSpec, MissingBackendError, _conversions, _errors, _runtime

FAKE = 0x7F00_0000_0000  # never dereferenced

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
        (gpuimage.OutOfMemoryError, MemoryError),
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
            "OutOfMemoryError",
            "PitchError",
            "PreparedBatch",
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
            "TensorPayload",
            "WaitTimeoutError",
            "collect_shared",
            "open_on",
            "set_unopened_timeout",
            "unopened_timeout",
            "__version__",
            "denormalize",
            "normalize",
            "normalize_batch",
            "runtime",
            "set_runtime",
            "from_tensor_payload",
            "to_tensor_payload",
        ]
    )
    for name in gpuimage.__all__:
        assert hasattr(gpuimage, name), name


# -- advice that fits the machine ------------------------------------------------------------------


def _libraries_see_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch and CuPy installed, imported, and blind: a machine without a GPU (or without a driver)."""
    pytest.importorskip("torch")  # imported, as the runtime's probe imports them
    pytest.importorskip("cupy")
    monkeypatch.setattr(_runtime, "_probe", lambda library: "sees no GPU")
    monkeypatch.setattr(_conversions, "_gpu_executor", lambda: None)
    for kind in ("cpu", "cuda"):  # emptied in place: the replay table reads the same dict
        monkeypatch.delitem(_conversions.chosen, kind, raising=False)


def test_no_gpu_with_both_libraries_installed_says_so_and_what_was_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _libraries_see_no_gpu(monkeypatch)
    import cupy
    import torch

    with pytest.raises(MissingBackendError) as caught:
        _conversions.executor_for(Device("cuda", 0), "to_layout()")
    message = str(caught.value)
    assert message.startswith("to_layout(): converting a GPU image needs CuPy (its kernels) or torch")
    assert "no GPU is visible to CuPy or torch" in message
    assert f"found CuPy {cupy.__version__}, torch {torch.__version__}" in message
    assert "pip install" not in message, "both are installed: installing them again would not help"
    assert "no GPU is visible to CuPy or torch" in str(_runtime.missing_runtime("x"))


def test_nothing_installed_still_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runtime, "_probe", lambda library: "not installed")
    monkeypatch.setattr(_conversions, "_gpu_executor", lambda: None)
    for kind in ("cpu", "cuda"):  # emptied in place: the replay table reads the same dict
        monkeypatch.delitem(_conversions.chosen, kind, raising=False)
    with pytest.raises(MissingBackendError, match=r"pip install 'gpuimage\[torch\]' or 'gpuimage\[cupy\]'"):
        _conversions.executor_for(Device("cuda", 0), "astype()")


@pytest.mark.parametrize(
    ("cuda", "says", "not_said"),
    [
        (None, "is a CPU-only build. Install a CUDA build of torch", "sees no GPU"),
        ("13.0", "(CUDA 13.0) sees no GPU. Run where a GPU is visible", "Install"),
    ],
    ids=["cpu-only-torch", "cuda-torch-without-gpu"],
)
def test_a_torch_view_without_a_gpu_gives_the_advice_that_fits(
    monkeypatch: pytest.MonkeyPatch, cuda: str | None, says: str, not_said: str
) -> None:
    torch = pytest.importorskip("torch")
    from gpuimage import _source, _torch

    monkeypatch.setattr(_torch, "cuda_available", lambda: False)
    monkeypatch.setattr(_torch, "_headers", _source.SpecMemo(_torch._header))  # nothing cached from before
    monkeypatch.setattr(torch.version, "cuda", cuda)
    image = GpuImage.from_pointer(FAKE, ImageSpec(height=2, width=3))
    with pytest.raises(MissingBackendError) as caught:
        image.as_torch()
    message = str(caught.value)
    assert message.startswith(f"as_torch(): the image is on cuda:0, but torch {torch.__version__} ")
    assert says in message
    assert not_said not in message
