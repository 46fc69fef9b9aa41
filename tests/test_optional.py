"""Optional dependencies stay optional: import cost, and the hint a missing backend gives."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_gpuimage_imports_no_backend() -> None:
    result = _run(
        """
        import sys, gpuimage
        loaded = sorted({name.split('.')[0] for name in sys.modules} & {'torch', 'cupy', 'cv2', 'hypothesis'})
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_backend_names_the_extra() -> None:
    result = _run(
        """
        import sys
        sys.modules['torch'] = None  # what an absent package looks like to import
        sys.modules['cupy'] = None
        sys.modules['cv2'] = None
        import numpy as np
        from gpuimage import GpuImage, MissingBackendError, ImageSpec
        image = GpuImage.from_numpy(np.zeros((2, 2), np.uint8))
        print(image.as_numpy().shape)
        for call in (image.as_torch, GpuImage.from_pointer(256, ImageSpec(height=1, width=1)).as_cupy,
                     GpuImage.from_pointer(256, ImageSpec(height=1, width=1)).expect('HWC').as_gpumat):
            try:
                call()
            except MissingBackendError as exc:
                print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "(2, 2, 1)"
    assert "pip install 'gpuimage[torch]'" in lines[1]
    assert "pip install 'gpuimage[cupy]'" in lines[2]
    assert "pip install 'gpuimage[opencv]'" in lines[3]


def test_opencv_path_exits_normally_without_cuda() -> None:
    """Nothing gpuimage does with OpenCV may abort the interpreter on builds without CUDA."""
    result = _run(
        """
        import gc
        from gpuimage import GpuImage, ImageSpec
        image = GpuImage.from_pointer(0x7F0000000000, ImageSpec(height=4, width=4, channels=3)).expect('HWC')
        mat = image.as_gpumat()
        again = GpuImage.from_gpumat(mat)
        print(again.shape, again.crop(1, 1, 2, 2).expect('HWC').as_gpumat().size())
        del image, mat, again
        gc.collect()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(4, 4, 3) (2, 2)"


def test_from_type_works_without_importing_the_strategies() -> None:
    """The hypothesis entry point registers GpuImage's strategy when hypothesis loads."""
    from importlib.metadata import entry_points

    if not any(point.name == "gpuimage" for point in entry_points(group="hypothesis")):
        pytest.skip("gpuimage is not installed here (only on PYTHONPATH): no entry point to test")
    result = _run(
        """
        from hypothesis import given, settings, strategies as st
        from gpuimage import GpuImage

        @settings(max_examples=5, database=None)
        @given(st.from_type(GpuImage))
        def check(image: GpuImage) -> None:
            assert image.dtype == "bfloat16" or image.as_numpy().shape == image.shape

        check()
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_no_call_that_aborts_opencv_without_cuda_is_unguarded() -> None:
    """wrapStream, Stream.Null/Stream_Null and download() abort OpenCV builds without CUDA: gpuimage's
    source never calls them (its OpenCV stream handle is read only where getCudaEnabledDeviceCount()
    > 0 says CUDA is there)."""
    import ast
    from pathlib import Path

    import gpuimage

    package = Path(gpuimage.__file__).parent
    called: set[str] = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                called.add(node.func.attr)
    assert called & {"wrapStream", "Null", "Stream_Null", "download", "upload"} == set()
    opencv = (package / "_opencv.py").read_text()  # the OpenCV spoke reads cv2.cuda.Stream handles
    reader = opencv.index("def _stream_handle(")
    guard = opencv.index("if not cuda_enabled():", reader)
    assert guard < opencv.index("stream.cudaPtr()", reader), "cudaPtr() is read only after the CUDA check"
    assert "getCudaEnabledDeviceCount()" in opencv[opencv.index("def cuda_enabled(") : reader]
