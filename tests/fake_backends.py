"""Optional libraries faked missing, in this process: ``import cv2`` (or cupy, torch) fails as it does
where the library is not installed, and gpuimage's spoke for it loads again on next use (and fails).
Everything is put back when the test ends (``monkeypatch``)."""

from __future__ import annotations

import sys

import pytest

from gpuimage import _spokes

__all__ = ["fake_missing"]

_SPOKES: dict[str, tuple[str, ...]] = {
    "cv2": ("opencv",),
    "cupy": ("cupy",),
    "torch": ("torch",),
}
"""Library -> the spokes that import it."""


def fake_missing(monkeypatch: pytest.MonkeyPatch, *libraries: str) -> None:
    """Make ``libraries`` ("cv2", "cupy", "torch") look uninstalled until the test ends."""
    for library in libraries:
        monkeypatch.setitem(sys.modules, library, None)  # what an absent package looks like to import
        for name in _SPOKES[library]:
            monkeypatch.delitem(_spokes._loaded, name, raising=False)
            monkeypatch.delitem(sys.modules, _spokes._REGISTRY[name], raising=False)
