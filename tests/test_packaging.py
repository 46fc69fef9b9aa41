"""Packaging as a user meets it (issue 14): a project of the user's own, outside this repository,
type-checks against gpuimage with mypy --strict and pyright, both against the editable install that
``scripts/dev`` makes and against the wheel installed into a fresh venv; the wheel holds nothing but
``gpuimage`` (no ``cupy-stubs``: scverse's PyPI project of that name gives the ``cupy.ndarray`` types)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The user's module. assert_type pins the exact types (a gpuimage the checker cannot see makes them
# Any, which mypy --strict and pyright strict both reject); reveal_type shows them in the output.
USER_MODULE = """\
from typing import assert_type

import cupy
import torch

from gpuimage import CHW, HWC, GpuImage, UInt8


def decode(frame: torch.Tensor) -> GpuImage[HWC, UInt8]:
    return GpuImage.from_torch(frame, layout="HWC").expect("HWC", UInt8)


def preprocess(image: GpuImage[HWC, UInt8]) -> GpuImage[CHW, UInt8]:
    return image.crop(0, 0, 224, 224).to_layout("CHW")


def views(image: GpuImage[HWC, UInt8]) -> None:
    assert_type(preprocess(image), GpuImage[CHW, UInt8])
    assert_type(image.as_torch(), torch.Tensor)
    assert_type(image.as_cupy(), cupy.ndarray)
    reveal_type(image.as_torch())
    reveal_type(image.as_cupy())
"""
TORCH_LINE = USER_MODULE.splitlines().index("    reveal_type(image.as_torch())") + 1
CUPY_LINE = TORCH_LINE + 1


def _unavailable(reason: str) -> NoReturn:
    """Skip where this environment lacks what scripts/dev installs. CI runs ``scripts/dev test``,
    whose setup installs it, so there a missing piece is a bug: fail."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _require_cupy_stubs() -> None:
    try:
        importlib.metadata.version("cupy-stubs")
    except importlib.metadata.PackageNotFoundError:
        _unavailable(
            "cupy-stubs is not installed: the cupy extra brings it (scripts/dev installs the extras "
            "again after pyproject.toml changes)"
        )


def _clean_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH and MYPYPATH: either would put a checkout's src/
    on the checkers' path and hide what the install itself gives a user."""
    return {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "MYPYPATH"}}


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=300, check=False
    )


def _pyright_executable() -> str:
    executable = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which("pyright")
    if executable is None:
        pytest.skip("pyright is not installed (it comes with the dev extra)")
    return executable


def _user_project(folder: Path) -> Path:
    """A throwaway project: the module, and pyright at its strictest (mypy gets --strict)."""
    folder.mkdir()
    (folder / "user.py").write_text(USER_MODULE)
    (folder / "pyrightconfig.json").write_text(json.dumps({"typeCheckingMode": "strict"}))
    return folder


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for both tests (of one xdist worker): torch's stubs are read once, not twice."""
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy_revealed(project: Path, python: Path, cache: Path) -> tuple[dict[int, str], str]:
    """Run mypy --strict on the project for ``python``'s packages: the revealed types by line, and
    the verbose log (which names the files mypy read)."""
    pytest.importorskip("mypy")  # the GPU machine has no mypy; CI and scripts/dev have it
    options = ["--strict", "--verbose", "--cache-dir", str(cache), "--python-executable", str(python)]
    result = _run([sys.executable, "-m", "mypy", *options, "user.py"], project)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "error:" not in result.stdout, result.stdout
    revealed = re.findall(r'^user\.py:(\d+): note: Revealed type is "(.*)"$', result.stdout, re.MULTILINE)
    return {int(line): text for line, text in revealed}, result.stderr


def _pyright_revealed(project: Path, python: Path) -> dict[int, str]:
    """Run pyright (strict) on the project for ``python``'s packages: the revealed types by line."""
    result = _run([_pyright_executable(), "--outputjson", "--pythonpath", str(python), "user.py"], project)
    report = json.loads(result.stdout)
    diagnostics: list[dict[str, object]] = report["generalDiagnostics"]
    problems = [item for item in diagnostics if item["severity"] != "information"]
    assert problems == [], problems
    assert result.returncode == 0, result.stdout
    revealed: dict[int, str] = {}
    for item in diagnostics:
        found = re.fullmatch(r'Type of ".*" is "(.*)"', str(item["message"]), re.DOTALL)
        if found:
            revealed[int(item["range"]["start"]["line"]) + 1] = found.group(1)  # type: ignore[index]
    return revealed


def _check_revealed(mypy_types: dict[int, str], pyright_types: dict[int, str]) -> None:
    assert mypy_types[TORCH_LINE] == "torch._tensor.Tensor"
    # cupy-stubs declares ndarray in a private module (cupy._core.core) and re-exports it as cupy.ndarray
    assert re.match(r"cupy\.(\w+\.)*ndarray\b", mypy_types[CUPY_LINE]), mypy_types[CUPY_LINE]
    assert pyright_types[TORCH_LINE] == "Tensor"
    assert pyright_types[CUPY_LINE].startswith("ndarray["), pyright_types[CUPY_LINE]


def _found_package(python: Path, cwd: Path) -> Path | None:
    """The gpuimage folder that ``python`` finds on its sys.path (as mypy and pyright search it: no
    import hook, no PYTHONPATH, not the working folder), or None."""
    code = (
        "import importlib.machinery as m; s = m.PathFinder.find_spec('gpuimage'); "
        "print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')"
    )
    result = _run([str(python), "-I", "-c", code], cwd)
    assert result.returncode == 0, result.stderr
    found = result.stdout.strip()
    return Path(found).resolve() if found else None


def test_a_users_project_type_checks_against_the_editable_install(tmp_path: Path, mypy_cache: Path) -> None:
    """From a project outside the repository, mypy --strict and pyright see the gpuimage that
    ``scripts/dev`` installed editable from this checkout, with its types."""
    python = Path(sys.executable)
    found = _found_package(python, tmp_path)
    if found != ROOT / "src" / "gpuimage":
        reason = (
            f"{python} has no gpuimage that a static checker can find: none on its sys.path"
            if found is None
            else f"{python}'s gpuimage is {found}, not this checkout's"
        ) + " (scripts/dev installs this checkout editable, as a path; an import-hook install is invisible)"
        _unavailable(reason)
    _require_cupy_stubs()
    project = _user_project(tmp_path / "project")
    mypy_types, _ = _mypy_revealed(project, python, mypy_cache)
    _check_revealed(mypy_types, _pyright_revealed(project, python))


def _build_wheel(tmp_path: Path) -> Path:
    """gpuimage's wheel, built offline with this interpreter's setuptools from a copy of the sources
    (the build writes build/ and egg-info next to them, never into the checkout)."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    result = _run([*command, "-w", str(dist), str(source)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = dist.glob("gpuimage-*.whl")
    return wheel


def test_the_wheel_holds_only_gpuimage_and_types_in_a_fresh_venv(tmp_path: Path, mypy_cache: Path) -> None:
    """The wheel has files under gpuimage/ and its dist-info only; installed alone into a fresh venv
    (its dependencies seen through a .pth after the venv's own site-packages), a user's project
    type-checks against that copy with mypy --strict and pyright."""
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    outside = [name for name in names if not re.match(r"(gpuimage/|gpuimage-[^/]+\.dist-info/)", name)]
    assert outside == [], f"the wheel ships files outside gpuimage/: {outside}"
    assert {"gpuimage/py.typed", "gpuimage/_kernels.cu", "gpuimage/__main__.py"} <= set(names)

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path).returncode == 0
    python = venv / "bin" / "python"
    install = ["install", "-q", "--no-deps", "--no-index", str(wheel)]
    result = _run([sys.executable, "-m", "pip", "--python", str(python), *install], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    paths = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
    site = Path(paths.stdout.strip())
    # Lines of a .pth go after the folder that holds it: the venv's own gpuimage comes first.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert _found_package(python, tmp_path) == (site / "gpuimage").resolve()

    _require_cupy_stubs()
    project = _user_project(tmp_path / "project")
    mypy_types, log = _mypy_revealed(project, python, mypy_cache)
    assert str(site / "gpuimage" / "__init__.py") in log, "mypy read another gpuimage than the wheel's"
    _check_revealed(mypy_types, _pyright_revealed(project, python))
