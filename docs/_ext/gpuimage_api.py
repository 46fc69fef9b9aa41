"""Sphinx extension: the API reference documents gpuimage's public names as ``gpuimage.X``.

The objects are defined in private modules (``gpuimage._image``, ``gpuimage._dtypes``, ...) and
re-exported. Three things follow, handled here:

- Module-level aliases (``DTypeLike``, ``DeviceLike``, ...) keep their docstrings in the module that
  defines them; autodoc looks only in ``gpuimage`` and would show the docstring of the alias's type
  (``types.UnionType``, ``object``). ``autodoc-process-docstring`` puts the real one back.
- Type annotations name private paths (``gpuimage._layout.Layout.HWC``); ``missing-reference``
  resolves them to the public entry (``gpuimage.Layout.HWC``) when there is one, and shows the
  private type variables of generic signatures (``DT``, ``gpuimage._image.D``) as plain text.
- Every name in ``gpuimage.__all__`` and ``gpuimage.strategies.__all__`` must have an API entry:
  a warning (an error under ``-W``) names any that has none.
- napoleon reads the first line of a property's docstring, ``"X: Y"``, as "of type X: Y", and
  nitpicky mode then fails on a "type" such as ``How YUV codes map to RGB; None``. gpuimage's
  properties take their types from annotations, so their docstrings are parsed as a method's.
"""

from __future__ import annotations

import inspect
import pkgutil
import re
import sys
from functools import cache
from typing import Any, TypeVar

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext.napoleon.docstring import GoogleDocstring
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docstrings import prepare_docstring

import gpuimage
import gpuimage.strategies

logger = logging.getLogger(__name__)

_PRIVATE_PATH = re.compile(r"^gpuimage\._\w+\.(?P<rest>.+)$")
# Private base classes whose only public face is the class that mixes them in.
_MIXED_INTO = {"gpuimage._ordering.StreamOrdering": "gpuimage.GpuImage"}


def public_names() -> list[str]:
    """Fully qualified names of everything the package exports."""
    return [f"gpuimage.{name}" for name in gpuimage.__all__] + [
        f"gpuimage.strategies.{name}" for name in gpuimage.strategies.__all__
    ]


@cache
def _private_attribute_docs() -> dict[str, list[str]]:
    """Attribute docstrings (the string after ``NAME = ...``) of gpuimage's private modules."""
    docs: dict[str, list[str]] = {}
    for module in pkgutil.iter_modules(gpuimage.__path__):
        if not module.name.startswith("_"):
            continue
        analyzer = ModuleAnalyzer.for_module(f"gpuimage.{module.name}")
        for (scope, name), lines in analyzer.find_attr_docs().items():
            if scope == "":
                docs.setdefault(name, list(lines))
    return docs


def _attribute_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    if what != "data" or not name.startswith("gpuimage."):
        return
    found = _private_attribute_docs().get(name.removeprefix("gpuimage."))
    if found is not None:
        lines[:] = found


def _property_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    """After napoleon: a property docstring with an inline "type" (``X: Y``) parsed again, as prose."""
    if what != "property" or not any(line.startswith(":type: ") for line in lines):
        return
    doc = inspect.getdoc(obj)
    if doc:
        lines[:] = GoogleDocstring(prepare_docstring(doc), app.config, app, "method", name, obj).lines()


# Sphinx 9 prints an ``autodoc_type_aliases`` alias nested in ``X | None`` or ``Sequence[X]`` as
# ``TypeAliasForwardRef('gpuimage.X')``; show the alias's name there as it does elsewhere.
_FORWARD_REF = re.compile(r"TypeAliasForwardRef\('(?P<name>[\w.]+)'\)")


def _alias_names(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    def fix(text: str | None) -> str | None:
        return None if text is None else _FORWARD_REF.sub(lambda match: match["name"], text)

    return fix(signature), fix(return_annotation)


def _type_variables() -> set[str]:
    """Names (qualified and bare) of the type variables defined in gpuimage's private modules."""
    names: set[str] = set()
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("gpuimage._") and module is not None:
            for name, value in vars(module).items():
                if isinstance(value, TypeVar):
                    names.update((f"{module_name}.{name}", name))
    return names


def _public_reference(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.Element | None:
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    if target in _type_variables():
        return contnode  # a type variable has no entry of its own: its name, unlinked
    match = _PRIVATE_PATH.match(target)
    if match is None:
        return None
    public = _MIXED_INTO.get(target, f"gpuimage.{match['rest']}")
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env,
        node["refdoc"],
        app.builder,
        node["reftype"],
        public,
        node,
        contnode,
    )


def _check_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    documented = set(env.get_domain("py").objects)  # type: ignore[attr-defined]  # PythonDomain
    for name in public_names():
        if name not in documented:
            logger.warning(
                "%s is exported but has no API entry: add it to docs/api.md", name, type="gpuimage"
            )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _attribute_docstring)
    app.connect("autodoc-process-docstring", _property_docstring, priority=600)  # napoleon's is 500
    app.connect("autodoc-process-signature", _alias_names)
    app.connect("missing-reference", _public_reference)
    app.connect("env-check-consistency", _check_coverage)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
