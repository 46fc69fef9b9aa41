"""Sphinx configuration: MyST pages, an autodoc API reference, byte-map figures drawn at build time.

Build with ``scripts/dev docs`` (``sphinx-build -E -W --keep-going -b html docs docs/_build/html``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import gpuimage

# The local extensions (byte-map figures, API reference helpers) live in docs/_ext.
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "gpuimage"
author = "the gpuimage authors"
copyright = "2026, the gpuimage authors"
version = release = gpuimage.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "gpuimage_bytemap",
    "gpuimage_api",
    "gpuimage_pages",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
# _generated holds the byte-map SVGs (written by gpuimage_bytemap, git-ignored); snippets are
# Python files that pages include.
exclude_patterns = ["_build", "_generated", "snippets"]

html_theme = "furo"
html_title = f"gpuimage {release}"
# gpuimage.css: wide tables and code blocks scroll with a scrollbar drawn, instead of being cut off
# at the content's edge with nothing to say there is more.
html_static_path = ["_static"]
html_css_files = ["gpuimage.css"]

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# Signatures show the public aliases by name rather than spelled out: the package uses postponed
# annotations, so autodoc reads each annotation as the text written in the source and swaps a name
# found here for its entry. Every ``X: TypeAlias = ...`` that gpuimage exports must be listed
# (tests/test_docs_build.py checks this against the source).
PUBLIC_TYPE_ALIASES = (
    *("DTypeLike", "DTypeName", "LayoutLike", "HWCLike", "CHWLike", "DeviceLike", "StreamLike"),
    *("ChannelValues", "BatchLayoutLike", "PixelFormatLike", "ChannelOrderLike"),
    *("ColorMatrixLike", "ColorRangeLike"),
)
autodoc_type_aliases = {name: f"gpuimage.{name}" for name in PUBLIC_TYPE_ALIASES}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Every cross-reference must resolve. The exceptions are the foreign libraries' own types
# (torch.Tensor, cupy.ndarray, cv2.cuda.GpuMat, numpy and pydantic types): the build runs without
# network access, so there is no intersphinx inventory to resolve them against.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|cupy|cv2|numpy|np|npt|pydantic|hypothesis|st|typing_extensions)(\..+)?"),
    # The standard library's types, for the same reason (PyCapsule: typing_extensions.CapsuleType).
    (r"py:.*", r"(collections\.abc|typing)\..+|PyCapsule"),
]
