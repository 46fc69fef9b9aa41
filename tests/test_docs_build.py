"""The docs build's own code (issue 14, docs cosmetics): ``docs/conf.py`` shows every public type
alias by name, ``docs/_ext/gpuimage_pages.py`` renders a module docstring as reStructuredText and
lets inline code in tables break, ``docs/_ext/gpuimage_api.py`` gives viewcode the module that
defines an alias (the source index linked to a missing ``builtins.html``).

The alias table is checked against the source with ``ast`` and needs no Sphinx; the extensions'
tests need Sphinx (the ``docs`` extra) and are skipped without it. The build itself (``scripts/dev
docs``, warnings as errors) also fails on a source-index link without a page.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Literal

import pytest

import gpuimage
from file_modules import load_file
from gpuimage import CHW, HWC

ROOT = Path(__file__).resolve().parents[1]
DOCS, SOURCE = ROOT / "docs", ROOT / "src" / "gpuimage"


def _declared_aliases() -> dict[str, str]:
    """Each ``NAME: TypeAlias = ...`` of the package's modules that gpuimage exports: its module."""
    found: dict[str, str] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and ast.unparse(node.annotation).split(".")[-1] == "TypeAlias"
                and node.target.id in gpuimage.__all__
            ):
                found[node.target.id] = path.stem
    return found


@pytest.fixture
def conf(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """docs/conf.py, imported from its file (it puts docs/_ext on sys.path: undone afterwards)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    return load_file("gpuimage_docs_conf", DOCS / "conf.py")


def test_every_public_type_alias_is_shown_by_name(conf: ModuleType) -> None:
    # issue 14: ChannelValues was spelled out as a four-line union in every overload
    aliases = _declared_aliases()
    assert {"ChannelValues", "StreamLike", "DTypeLike", "BatchLayoutLike"} <= set(aliases)
    assert conf.autodoc_type_aliases == {name: f"gpuimage.{name}" for name in aliases}


def test_aliases_are_imported_under_their_own_name() -> None:
    """autodoc swaps an annotation's text for its alias entry: ``from ._affine import ChannelValues
    as Values`` would annotate with ``Values``, which the table does not know."""
    aliases = set(_declared_aliases())
    renamed = [
        f"{path.relative_to(ROOT)}: {name.name} as {name.asname}"
        for path in sorted(SOURCE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom)
        for name in node.names
        if name.name in aliases and name.asname not in (None, name.name)
    ]
    assert not renamed


def test_the_stylesheets_exist(conf: ModuleType) -> None:
    assert conf.html_css_files == ["gpuimage.css"]
    for name in conf.html_css_files:
        assert (DOCS / conf.html_static_path[0] / name).is_file()


@pytest.fixture
def pages() -> ModuleType:
    for name in ("sphinx", "docutils"):  # a machine may have one without the other
        pytest.importorskip(name, reason="the docs extensions need Sphinx (the docs extra)")
    return load_file("gpuimage_docs_pages", DOCS / "_ext" / "gpuimage_pages.py")


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("GpuImage.from_gpumat(mat).as_cupy()", ["GpuImage.", "from_gpumat(", "mat).", "as_cupy()"]),
        ("tests/test_x.py::test_y", ["tests/", "test_x.", "py::", "test_y"]),
        ("(1,2)", ["(", "1,", "2)"]),
        ("<= 1.0x", ["<= 1.0x"]),  # never inside a number
        ("f() ...", ["f() ..."]),  # nor before a closing bracket, a space or another dot
        ("as_gpumat", ["as_gpumat"]),
    ],
)
def test_inline_code_in_tables_breaks_after_dots_and_brackets(
    pages: ModuleType, text: str, pieces: list[str]
) -> None:
    assert pages.break_opportunities(text) == pieces


def test_the_examples_page_renders_the_pipelines_docstring(pages: ModuleType) -> None:
    # issue 14: the examples page showed the module docstring's raw RST as code
    nodes = pytest.importorskip("docutils.nodes")  # comes with Sphinx; untyped: no plain import
    children, complaints = pages.docstring_nodes(ROOT / "examples" / "pipeline.py")
    assert complaints == []
    found = nodes.section()
    found.extend(children)
    blocks = [block.astext() for block in found.findall(nodes.literal_block)]
    assert any(block.startswith("python examples/pipeline.py") for block in blocks)
    assert list(found.findall(nodes.bullet_list))
    literals = [literal.astext() for literal in found.findall(nodes.literal)]
    assert "cv2.imencode" in literals
    assert "``" not in found.astext()  # markup rendered, not shown


def test_a_docstring_the_parser_rejects_is_a_warning(pages: ModuleType, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('"""A title.\n\n* a list\ncontinued without a blank line.\n"""\n')
    children, complaints = pages.docstring_nodes(bad)
    assert children
    assert [message["level"] for message in complaints] == [2]
    assert "Bullet list ends without a blank line" in complaints[0].astext()
    (tmp_path / "none.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match=r"none\.py has no module docstring"):
        pages.docstring_nodes(tmp_path / "none.py")


def test_viewcode_finds_the_module_that_defines_an_alias() -> None:
    # issue 14: the source index linked to builtins.html (StreamLike = object)
    for name in ("sphinx", "docutils"):  # a machine may have one without the other
        pytest.importorskip(name, reason="the docs extensions need Sphinx (the docs extra)")
    api = load_file("gpuimage_docs_api", DOCS / "_ext" / "gpuimage_api.py")
    for name, module in _declared_aliases().items():
        assert api._defining_module(None, "gpuimage", name) == f"gpuimage.{module}"
    assert api._defining_module(None, "gpuimage", "GpuImage") is None  # a class knows its module
    assert api._defining_module(None, "gpuimage.strategies", "images") is None


def test_gpuimage_is_documented_as_one_class_over_its_modules() -> None:
    # issue 12: GpuImage's members are defined in _image_core, _image_constructors, _image and its
    # mixins; autodoc reads overloads and source order only from the class's own module, so the
    # constructors lost their typed overloads and the members fell into alphabetical order
    pytest.importorskip("docutils", reason="the docs extensions need Sphinx (the docs extra)")
    # untyped where Sphinx is missing: CI type-checks before it installs the docs extra
    pycode = pytest.importorskip("sphinx.pycode", reason="the docs extensions need Sphinx (the docs extra)")
    ModuleAnalyzer = pycode.ModuleAnalyzer  # noqa: N806

    api = load_file("gpuimage_docs_api", DOCS / "_ext" / "gpuimage_api.py")
    modules = {base.__module__ for base in api._sources(gpuimage.GpuImage)}
    assert {"gpuimage._image", "gpuimage._image_core", "gpuimage._image_constructors"} <= modules
    keys: list[tuple[Literal["file", "module"], str]] = [("module", module) for module in modules]
    saved = {key: ModuleAnalyzer.cache.pop(key) for key in keys if key in ModuleAnalyzer.cache}
    try:
        app = SimpleNamespace(config=SimpleNamespace(autodoc_type_aliases={}))
        api._merge_split_classes(app)
        overloads = ModuleAnalyzer.for_module("gpuimage._image_constructors").overloads["GpuImage.from_torch"]
        returned = [signature.return_annotation for signature in overloads]
        image = gpuimage.GpuImage
        assert returned == [image[HWC], image[CHW], image], "evaluated as if written in _image"
        order = ModuleAnalyzer.for_module("gpuimage._image").tagorder
        listed = ["from_torch", "empty", "ptr", "crop", "as_torch", "synchronize", "with_channel_order"]
        listed += ["as_gpumat", "to_layout", "cpu"]
        ranks = [order[f"GpuImage.{member}"] for member in listed]
        assert ranks == sorted(ranks), "constructors, metadata, views, streams, conversions"
        found = api._split_source(app, "gpuimage._image_core")
        assert found is not None
        assert found[1]["GpuImage.crop"] == found[1]["ImageCore.crop"], "viewcode's [source] link"
        assert "GpuImage.ptr" in found[1]
        assert api._split_source(app, "gpuimage._spec") is None
    finally:
        for key in keys:
            ModuleAnalyzer.cache.pop(key, None)
            if key in saved:  # put back what was there before
                ModuleAnalyzer.cache[key] = saved[key]
