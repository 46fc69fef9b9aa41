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
- viewcode takes the module of an alias's value (``builtins`` for ``StreamLike = object``) and its
  source index linked to a page it never wrote: ``viewcode-follow-imported`` names the private
  module that defines the alias, and the build warns on any link of that index without a page.
- napoleon reads the first line of a property's docstring, ``"X: Y"``, as "of type X: Y", and
  nitpicky mode then fails on a "type" such as ``How YUV codes map to RGB; None``. gpuimage's
  properties take their types from annotations, so their docstrings are parsed as a method's.
- ``GpuImage`` is one class over several modules (``_image_core``, ``_image_constructors``, its
  mixins): autodoc reads a method's ``@overload`` signatures and the members' source order only from
  the documented class's own module, and viewcode links a member only from its defining module's
  tags under the class's own name. At ``builder-inited`` the analyzers get every member's source
  order (``gpuimage._image``'s) and overloads (its defining module's, as ``GpuImage.*``);
  ``viewcode-find-source`` gives each defining module's tags the ``GpuImage.*`` names too.
"""

from __future__ import annotations

import inspect
import pkgutil
import re
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext.napoleon.docstring import GoogleDocstring
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docstrings import prepare_docstring
from sphinx.util.inspect import evaluate_signature

import gpuimage
import gpuimage.strategies

logger = logging.getLogger(__name__)

_PRIVATE_PATH = re.compile(r"^gpuimage\._\w+\.(?P<rest>.+)$")
# Private base classes whose only public face is the class that mixes them in.
_MIXED_INTO = {"gpuimage._ordering.StreamOrdering": "gpuimage.GpuImage"}
# Public classes whose members are defined over several private modules (issue 12: modules under 400
# lines): documented as if written in the class's own module.
_SPLIT_CLASSES = ("GpuImage",)


def public_names() -> list[str]:
    """Fully qualified names of everything the package exports."""
    return [f"gpuimage.{name}" for name in gpuimage.__all__] + [
        f"gpuimage.strategies.{name}" for name in gpuimage.strategies.__all__
    ]


@cache
def _private_module_level() -> tuple[dict[str, list[str]], dict[str, str]]:
    """Of gpuimage's private modules' module-level names: the attribute docstrings (the string
    after ``NAME = ...``), and the module that declares each documented or annotated one."""
    docs: dict[str, list[str]] = {}
    modules: dict[str, str] = {}
    for module in pkgutil.iter_modules(gpuimage.__path__):
        if not module.name.startswith("_"):
            continue
        analyzer = ModuleAnalyzer.for_module(f"gpuimage.{module.name}")
        documented = analyzer.find_attr_docs()
        for scope, name in [*documented, *analyzer.annotations]:
            if scope == "":
                modules.setdefault(name, f"gpuimage.{module.name}")
                if (scope, name) in documented:
                    docs.setdefault(name, list(documented[(scope, name)]))
    return docs, modules


def _private_attribute_docs() -> dict[str, list[str]]:
    """Attribute docstrings (the string after ``NAME = ...``) of gpuimage's private modules."""
    return _private_module_level()[0]


def _defining_module(app: Sphinx | None, modname: str, fullname: str) -> str | None:
    """viewcode: the module that defines a public alias (``StreamLike``, ``ChannelValues``, ...).

    viewcode takes an object's ``__module__``; an alias's value is ``object`` or a ``typing`` union,
    so the source index listed ``builtins`` with a link to a page that does not exist. None: the
    default (classes and functions know their module).
    """
    value = getattr(gpuimage, fullname, None) if modname == "gpuimage" else None
    if value is None or str(getattr(value, "__module__", "")).startswith("gpuimage."):
        return None
    return _private_module_level()[1].get(fullname)


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


def _sources(cls: type) -> list[type]:
    """The classes of gpuimage's private modules that define ``cls``'s members, in the order the API
    reference lists them: its bases in method resolution order, then ``cls`` itself."""
    return [base for base in (*cls.__mro__[1:], cls) if base.__module__.startswith("gpuimage._")]


def _members_of(cls: type, base: type, qualnames: Iterable[str]) -> dict[str, str]:
    """``base``'s qualified names (``ImageCore.crop``) of the members ``cls`` takes from it, mapped to
    their name on ``cls`` (``GpuImage.crop``): the ones no class earlier in the MRO overrides."""
    prefix, found = f"{base.__qualname__}.", {}
    for qualname in qualnames:
        member = qualname.removeprefix(prefix)
        defined = qualname.startswith(prefix) and "." not in member
        if defined and next((c for c in cls.__mro__ if member in vars(c)), None) is base:
            found[qualname] = f"{cls.__qualname__}.{member}"
    return found


def _merge_split_classes(app: Sphinx) -> None:
    """The source order of a split class's members in its module's analyzer, which orders them; the
    overloads of each in its defining module's, under the class's name, which is where autodoc looks.

    The overloads are evaluated against the defining module's names and the class's own (a base
    cannot import the class it is a base of), as autodoc evaluates the class's own overloads.
    """
    for name in _SPLIT_CLASSES:
        cls = getattr(gpuimage, name)
        hub = ModuleAnalyzer.for_module(cls.__module__)
        hub.analyze()
        order: dict[str, int] = {}
        for base in _sources(cls):
            analyzer = ModuleAnalyzer.for_module(base.__module__)
            analyzer.analyze()
            names = {**vars(sys.modules[base.__module__]), cls.__name__: cls}
            ranked = sorted(analyzer.tagorder, key=analyzer.tagorder.__getitem__)
            for qualname, public in _members_of(cls, base, ranked).items():
                order.setdefault(public, len(order))
                signatures = analyzer.overloads.get(qualname)
                if signatures and base is not cls:
                    aliases = app.config.autodoc_type_aliases
                    analyzer.overloads[public] = [
                        evaluate_signature(sig, names, aliases) for sig in signatures
                    ]
        prefix = f"{cls.__qualname__}."
        hub.tagorder = {key: value for key, value in hub.tagorder.items() if not key.startswith(prefix)}
        hub.tagorder.update({key: len(hub.tagorder) + value for key, value in order.items()})


def _split_source(app: Sphinx, modname: str) -> tuple[str, dict[str, Any]] | None:
    """viewcode: a split class's members found under the class's name in the module defining them."""
    bases = [
        (getattr(gpuimage, name), base)
        for name in _SPLIT_CLASSES
        for base in _sources(getattr(gpuimage, name))
        if base.__module__ == modname and base is not getattr(gpuimage, name)
    ]
    if not bases:
        return None
    analyzer = ModuleAnalyzer.for_module(modname)
    tags = dict(analyzer.find_tags())
    for cls, base in bases:
        tags.update({public: tags[qualname] for qualname, public in _members_of(cls, base, tags).items()})
    return analyzer.code, tags


def _check_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    documented = set(env.get_domain("py").objects)  # type: ignore[attr-defined]  # PythonDomain
    for name in public_names():
        if name not in documented:
            logger.warning(
                "%s is exported but has no API entry: add it to docs/api.md", name, type="gpuimage"
            )


_HREF = re.compile(r'href="(?![a-z]+:)(?P<target>[^"#?]+)')  # a relative link to a file


def _check_source_index(app: Sphinx, exception: Exception | None) -> None:
    """Every link of viewcode's source index (``_modules/index.html``) names a page that exists."""
    index = Path(app.outdir) / "_modules" / "index.html"
    if exception is not None or app.builder.format != "html" or not index.is_file():
        return
    for match in _HREF.finditer(index.read_text(encoding="utf-8")):
        if not (index.parent / match["target"]).resolve().is_file():
            logger.warning(
                "_modules/index.html links to %s, which was not written", match["target"], type="gpuimage"
            )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _merge_split_classes)
    app.connect("viewcode-find-source", _split_source)
    app.connect("autodoc-process-docstring", _attribute_docstring)
    app.connect("autodoc-process-docstring", _property_docstring, priority=600)  # napoleon's is 500
    app.connect("autodoc-process-signature", _alias_names)
    app.connect("missing-reference", _public_reference)
    app.connect("viewcode-follow-imported", _defining_module)
    app.connect("env-check-consistency", _check_coverage)
    app.connect("build-finished", _check_source_index)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
