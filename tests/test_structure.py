"""The package's shape, checked from its source with ``ast``: no import circles, no spoke importing a
spoke, no hub or base module importing a spoke at module level, no module over 400 lines. And the
tests mirror the package: every module has ``tests/test_<name>.py``, and every test file is named
after a module or listed as a suite in ``tests/README.md``.

The redesign of issue 12 is under way: ``KNOWN`` lists the violations that are left, each to be
removed by it. The test fails on any violation not listed, and on a listed one that is gone (so the
list only shrinks). An empty ``KNOWN`` is the goal.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gpuimage

PACKAGE = Path(gpuimage.__file__).parent
SPOKE_OF: dict[str, str] = {
    "_torch": "torch",
    "_torch_exchange": "torch",  # the torch spoke's C exchange view, in a module of its own
    "_torch_runtime": "torch",  # and its CUDA runtime calls
    "_cupy_runtime": "cupy",  # CuPy's CUDA runtime calls, apart from its views
    "_cupy": "cupy",
    "_opencv": "opencv",
    "_numpy": "numpy",
    "_dlpack": "dlpack",
    "_cai": "cai",
}
"""The modules of each spoke: one foreign library or protocol each (a spoke may span two files)."""
SPOKES = frozenset(SPOKE_OF)
BASE = frozenset(
    {
        "_image",
        "_image_core",  # GpuImage's base: slots, the construction path, metadata, crops
        "_image_constructors",  # its from_* constructors and empty
        "_exports",
        "_ordering",
        "_spokes",
        "_runtime",
        "_driver",  # the CUDA driver calls no array library offers (ctypes)
        "_pointers",
        "_ops",
        "_spec",
        "_geometry",
        "_streams",
        "_lifetime",
        "_layout",
        "_dtypes",
        "_device",
        "_errors",
        "_source",
        "_spec_errors",
        "_interfaces",
        "_dlpack_abi",  # DLPack's C ABI (ctypes only): the DLPack spoke's and torch's exchange view's
        "_backends",
        "_conversions",
        "_convert_replay",  # a single-image conversion seen before, replayed with new pointers
        "_executor",
        "_plan",
        "_affine",
        "_normalize",
        "_batch",
        "_image_batch",  # GpuBatch (issue 13): the hub one dimension up
        "_image_batch_io",
        "_image_batch_spec",
        "strategies",
        "_hypothesis_hook",
        "_formats",  # pixel formats and colour descriptions (issue 13)
        "_frame_layout",
        "_frame",  # GpuFrame (issue 13): its planes are GpuImage views
        "_frame_build",
        "_frame_exports",
        "_colour",  # the NumPy reference of YUV -> RGB
        "_sampling",  # what a frame conversion computes (issue 13)
        "_frame_convert",  # frames through one executor call: checks, allocation, ordering
        "_frame_recipe",
        "_frame_batch",  # normalize_batch over frames (and with resize=)
        "_frame_replay",  # a frame loop's normalize_batch, replayed with new pointers
        "_prepared_batch",  # PreparedBatch: normalize_batch with every argument but the images fixed
        "_batch_out",  # where a batch conversion writes
        "_ipc",  # issue 15: pickling device images to CUDA IPC descriptions (the producer)
        "_ipc_open",  # and unpickling them (the consumer)
        "_ipc_description",  # what a description carries, checked (pure)
        "_ipc_driver",  # the CUDA driver's IPC calls (ctypes)
        "_ipc_devices",  # open_on: another process's memory on another GPU (peer view or copy)
        "_ipc_lease",  # leases: files and flock, the producer's registry
        "_ipc_ring",  # SharedRing: reusable slots between two processes
        "_ipc_ring_open",
        "_ipc_ring_control",  # its control block and description (pure)
        "_host_pickle",  # host images, frames and batches pickled by value (packed pixels)
        "_transport",  # an image as one torch tensor and JSON, for tensor transports (Ray's)
        "_channel_order",  # what images' and batches' channel orders are, and the conversions that keep them
        "__init__",
        "__main__",
    }
)
"""The hub and the neutral modules it stands on: they may reach a spoke only lazily."""
EXECUTORS = frozenset(
    {
        "_kernel_convert",
        "_kernels",
        "_frame_kernels",
        "_frame_params",  # the frame kernel's parameters, packed on the host (pure)
        "_frame_plan",  # the frame kernel's launches of one call, and the memory of call signatures
        "_staging",
        "_torch_convert",
        "_host_convert",
        "_host_frames",
        "_torch_frames",
    }
)
"""Conversion executors: each may use the one library it runs on (the kernels need CuPy)."""
MAX_LINES = 400

KNOWN: frozenset[str] = frozenset()
"""Violations still allowed (none: issue 12 is done with them). A module over ``MAX_LINES`` may never
be listed: ``test_no_module_is_over_the_line_limit`` checks the line rule without this list."""


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {path.stem: path for path in package.glob("*.py")}
    found.update({f"cli.{path.stem}": path for path in (package / "cli").glob("*.py")})
    return found


def _too_long(modules: dict[str, Path]) -> set[str]:
    """The line rule's violations: every module of more than ``MAX_LINES`` lines."""
    return {
        f"over {MAX_LINES} lines: {name}"
        for name, path in modules.items()
        if len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, names: set[str]) -> tuple[set[str], set[str]]:
    """(every package module ``path`` imports, those imported at module level), TYPE_CHECKING aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    everywhere: set[str] = set()
    top: set[str] = set()

    def visit(node: ast.AST, at_top: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child, at_top)
            return
        found: set[str] = set()
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            base = node.module or ""
            if base:
                found.add(base)
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gpuimage."):
            found.add((node.module or "").removeprefix("gpuimage."))
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("gpuimage.") for a in node.names if a.name.startswith("gpuimage.")
            )
        found &= names
        everywhere.update(found)
        if at_top:
            top.update(found)
        nested = at_top and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        for inner in ast.iter_child_nodes(node):
            visit(inner, nested)

    for statement in tree.body:
        visit(statement, True)
    return everywhere, top


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def violations() -> set[str]:
    modules = _modules()
    names = set(modules) | {"cli"}
    graph: dict[str, set[str]] = {}
    found: set[str] = set()
    for name, path in modules.items():
        everywhere, top = _imports(path, names)
        graph[name] = everywhere - {name}
        if name in SPOKES:
            others = {other for other in everywhere & SPOKES if SPOKE_OF[other] != SPOKE_OF[name]}
            found.update(f"spoke imports spoke: {name} -> {other}" for other in sorted(others))
        if name in BASE:
            found.update(
                f"base imports spoke at module level: {name} -> {other}" for other in sorted(top & SPOKES)
            )
    found |= _too_long(modules)
    for component in _circles({name: edges & set(modules) for name, edges in graph.items()}):
        found.add(f"circle: {', '.join(component)}")
    return found


def test_the_package_keeps_its_shape() -> None:
    found = violations()
    new = sorted(found - KNOWN)
    gone = sorted(KNOWN - found)
    assert not new, "new structure violations:\n" + "\n".join(new)
    assert not gone, "fixed, so remove them from KNOWN:\n" + "\n".join(gone)


def test_no_module_is_over_the_line_limit() -> None:
    """Issue 12: every module under 400 lines, with no exemption (``KNOWN`` cannot hold one)."""
    assert not sorted(_too_long(_modules())), "split these modules"
    assert not [violation for violation in KNOWN if violation.startswith("over ")]


def test_the_checker_sees_a_module_over_the_line_limit(tmp_path: Path) -> None:
    (tmp_path / "cli").mkdir()
    (tmp_path / "_long.py").write_text("x = 1\n" * (MAX_LINES + 1), encoding="utf-8")
    (tmp_path / "_at_limit.py").write_text("x = 1\n" * MAX_LINES, encoding="utf-8")
    (tmp_path / "cli" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1), encoding="utf-8")
    assert _too_long(_modules(tmp_path)) == {
        f"over {MAX_LINES} lines: _long",
        f"over {MAX_LINES} lines: cli.long",
    }


def test_every_module_has_a_place() -> None:
    """A new module is a spoke's, a base module or an executor: its import rules follow from that."""
    placed = SPOKES | BASE | EXECUTORS
    unplaced = sorted(name for name in _modules() if name not in placed and not name.startswith("cli."))
    assert not unplaced, f"place these modules in SPOKE_OF, BASE or EXECUTORS: {unplaced}"


def test_the_checker_sees_a_circle_and_a_spoke_import() -> None:
    graph = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert _circles(graph) == [["a", "b"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


# -- the tests mirror the package (issue 12) ---------------------------------------------------------

TESTS = Path(__file__).resolve().parent
NO_TEST_MODULE: dict[str, str] = {
    "__init__": "re-exports only; test_errors.py pins the exported names",
    "__main__": "runs gpuimage.cli; test_cli.py runs python -m gpuimage",
    "_hypothesis_hook": "the hypothesis entry point; test_strategies.py draws st.from_type(GpuImage[...])",
}
"""Modules without a test module of their own, and why. It only shrinks: a listed module that gains
a test module fails the check until its line is removed."""


def _module_of_test(stem: str) -> str:
    """The package module a test file is named after (``_modules()``'s names), or ``""``."""
    if stem == "test_cli":
        return "cli.__init__"
    if stem.startswith("test_cli_"):
        return "cli." + stem.removeprefix("test_cli_")
    name = stem.removeprefix("test_cuda_") if stem.startswith("test_cuda_") else stem.removeprefix("test_")
    modules = _modules()
    return next((module for module in (f"_{name}", name) if module in modules), "")


def _test_files() -> list[str]:
    """Every test file, as a path relative to tests/: ``test_*.py`` and ``gpu/test_cuda_*.py``."""
    found = [path.name for path in TESTS.glob("test_*.py")]
    found += [f"gpu/{path.name}" for path in (TESTS / "gpu").glob("test_*.py")]
    return sorted(found)


def _suites() -> set[str]:
    """The files listed in the suites table of tests/README.md (its first column)."""
    text = (TESTS / "README.md").read_text(encoding="utf-8")
    table = text.split("## Suites", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE))


def test_every_module_has_a_test_module() -> None:
    """``_foo.py`` is tested in ``tests/test_foo.py`` (or, for GPU-only behaviour, in
    ``tests/gpu/test_cuda_foo.py``): a newcomer finds a module's tests by its name."""
    tested = {_module_of_test(Path(file).stem) for file in _test_files()} - {""}
    missing = sorted(set(_modules()) - tested - set(NO_TEST_MODULE))
    assert not missing, f"add tests/test_<name>.py for these modules: {missing}"
    stale = sorted((set(NO_TEST_MODULE) & tested) | (set(NO_TEST_MODULE) - set(_modules())))
    assert not stale, f"remove these from NO_TEST_MODULE (they have tests, or are gone): {stale}"


def test_every_test_module_is_named_after_a_module_or_listed_as_a_suite() -> None:
    suites = _suites()
    files = _test_files()
    unplaced = [file for file in files if not _module_of_test(Path(file).stem) and file not in suites]
    assert not unplaced, f"name these after a module, or list them as suites in tests/README.md: {unplaced}"
    gone = sorted(suites - set(files))
    assert not gone, f"tests/README.md lists suites that do not exist: {gone}"
    named = sorted(file for file in suites if _module_of_test(Path(file).stem))
    assert not named, f"these are a module's tests, not suites: drop them from tests/README.md: {named}"


def test_the_mirror_check_reads_names_as_documented() -> None:
    assert _module_of_test("test_opencv") == "_opencv"
    assert _module_of_test("test_cuda_ordering") == "_ordering"
    assert _module_of_test("test_strategies") == "strategies"
    assert _module_of_test("test_cli") == "cli.__init__"
    assert _module_of_test("test_cli_info") == "cli.info"
    assert _module_of_test("test_hostile") == ""
    assert _module_of_test("test_cuda_lifetime_streams") == ""
    assert {"test_hostile.py", "gpu/test_cuda_views.py"} <= _suites()
