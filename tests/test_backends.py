"""Optional libraries (``_backends``): ``is_installed`` finds a library without importing it and asks
once, and ``missing_backend`` is the ``ImportError`` that names the extra to install."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from typing import get_args

import pytest

from gpuimage import GpuImageError, MissingBackendError, _backends
from gpuimage._backends import Backend, imported_version, install_hint, is_installed, missing_backend

BACKENDS: tuple[Backend, ...] = get_args(Backend)


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """An empty ``is_installed`` cache for one test, and again after it (real answers come back)."""
    is_installed.cache_clear()
    yield
    is_installed.cache_clear()


def _finder(monkeypatch: pytest.MonkeyPatch, present: set[str]) -> list[str]:
    """Makes ``importlib.util.find_spec`` see only ``present``; returns the names it was asked."""
    asked: list[str] = []

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        asked.append(name)
        return ModuleSpec(name, None) if name in present else None

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    return asked


@pytest.mark.usefixtures("fresh_cache")
def test_present_and_absent_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _finder(monkeypatch, {"torch"})
    assert is_installed("torch") is True
    assert is_installed("cupy") is False
    assert is_installed("cv2") is False
    assert asked == ["torch", "cupy", "cv2"]


@pytest.mark.usefixtures("fresh_cache")
def test_each_library_is_asked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _finder(monkeypatch, {"cupy"})
    for _ in range(3):
        assert is_installed("cupy") is True
        assert is_installed("torch") is False
    assert asked == ["cupy", "torch"], "a conversion asks on every call: the answer is kept"


@pytest.mark.usefixtures("fresh_cache")
def test_installed_libraries_are_found_without_importing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")  # installed here (the test environment has every extra)
    monkeypatch.delitem(sys.modules, "torch")  # monkeypatch puts the imported module back after
    assert is_installed("torch") is True
    assert "torch" not in sys.modules, "a check, not an import"


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("torch", "pip install 'gpuimage[torch]'"),
        ("cupy", "pip install 'gpuimage[cupy]' (or cupy-cuda12x for a CUDA 12 driver)"),
        ("cv2", "pip install 'gpuimage[opencv]' (one OpenCV distribution only)"),
    ],
)
def test_a_missing_backend_names_the_extra_to_install(name: Backend, hint: str) -> None:
    error = missing_backend(name)
    assert str(error) == f"this needs {name}, which is not installed: {hint}."
    assert isinstance(error, MissingBackendError)
    assert isinstance(error, ImportError), "code that catches ImportError for optional imports still works"
    assert isinstance(error, GpuImageError)


def test_every_backend_has_a_hint() -> None:
    assert set(BACKENDS) == set(_backends._HINTS)
    assert all("gpuimage[" in str(missing_backend(name)) for name in BACKENDS)


@pytest.mark.parametrize("name", BACKENDS)
def test_the_install_hint_is_the_one_the_missing_backend_error_gives(name: Backend) -> None:
    assert install_hint(name).startswith("pip install 'gpuimage[")
    assert str(missing_backend(name)).endswith(f": {install_hint(name)}.")


def test_an_imported_library_s_version_is_read_without_importing_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = types.ModuleType("fakelib")
    fake.__version__ = "1.2.3+cpu"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fakelib", fake)
    assert imported_version("fakelib") == "1.2.3+cpu"
    monkeypatch.delitem(sys.modules, "fakelib")
    assert imported_version("fakelib") == "", "not imported: nothing is imported to find out"
    assert "fakelib" not in sys.modules
