"""The static types are part of the API: mypy and pyright must accept tests/typing/accepted.py and
reject each marked line of tests/typing/rejected/ with the marked error, and nothing else."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ACCEPTED = ROOT / "tests" / "typing" / "accepted.py"
REJECTED = sorted((ROOT / "tests" / "typing" / "rejected").glob("*.py"))
MARK = re.compile(r"#\s*(mypy|pyright):\s*([\w-]+)")


def _expected(tool: str) -> dict[tuple[str, int], str]:
    marks: dict[tuple[str, int], str] = {}
    for path in REJECTED:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for found_tool, code in MARK.findall(line):
                if found_tool == tool:
                    marks[(path.name, number)] = code
    return marks


def _mypy(*paths: Path) -> tuple[str, int]:
    # imported here, not at module level: the GPU machine has no mypy, and the pyright tests still run
    mypy_api = pytest.importorskip("mypy.api")  # issue 11: tests must collect everywhere
    stdout, stderr, status = mypy_api.run(
        ["--strict", "--no-incremental", "--config-file", str(ROOT / "pyproject.toml"), *map(str, paths)]
    )
    return stdout + stderr, status


def test_mypy_accepts_the_accepted_cases() -> None:
    output, status = _mypy(ACCEPTED)
    assert status == 0, output


def test_mypy_rejects_each_marked_line_with_its_code() -> None:
    output, _ = _mypy(*REJECTED)
    found: dict[tuple[str, int], set[str]] = {}
    for match in re.finditer(r"^(?:.*/)?([\w]+\.py):(\d+): error: .*\[([\w-]+)\]$", output, re.MULTILINE):
        found.setdefault((match.group(1), int(match.group(2))), set()).add(match.group(3))
    expected = _expected("mypy")
    assert expected, "no marked lines found"
    for place, code in expected.items():
        assert code in found.get(place, set()), (
            f"{place}: expected mypy [{code}], got {found.get(place)}\n{output}"
        )
    assert set(found) == set(expected), f"unexpected mypy errors:\n{output}"


def _pyright(*paths: Path) -> list[dict[str, object]]:
    """Errors pyright reports for ``paths``, with the project's settings but without its excludes
    (the rejected cases are excluded from the project-wide run)."""
    executable = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which("pyright")
    if executable is None:
        pytest.skip("pyright is not installed")
    with tempfile.TemporaryDirectory() as folder:
        config = {
            "include": [os.path.relpath(path, folder) for path in paths],
            "stubPath": str(ROOT / "stubs" / "pyright"),
            "extraPaths": [str(ROOT / "src")],
            "pythonVersion": "3.11",
            "typeCheckingMode": "strict",
        }
        config_path = Path(folder) / "pyrightconfig.json"
        config_path.write_text(json.dumps(config))
        result = subprocess.run(
            [executable, "--outputjson", "--pythonpath", sys.executable, "-p", str(config_path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
            check=False,
        )
    report = json.loads(result.stdout)
    diagnostics: list[dict[str, object]] = report["generalDiagnostics"]
    return [item for item in diagnostics if item["severity"] == "error"]


def test_pyright_accepts_the_accepted_cases() -> None:
    errors = _pyright(ACCEPTED)
    assert errors == [], errors


def test_pyright_rejects_each_marked_line_with_its_rule() -> None:
    found: dict[tuple[str, int], set[str]] = {}
    for error in _pyright(*REJECTED):
        path = Path(str(error["file"])).name
        line = int(error["range"]["start"]["line"]) + 1  # type: ignore[index]
        found.setdefault((path, line), set()).add(str(error.get("rule", "")))
    expected = _expected("pyright")
    for place, rule in expected.items():
        assert rule in found.get(place, set()), f"{place}: expected pyright {rule}, got {found.get(place)}"
    assert set(found) == set(expected), f"unexpected pyright errors: {found}"


def test_public_api_types_are_complete(tmp_path: Path) -> None:
    """``pyright --verifytypes gpuimage`` over an installed (not editable) copy scores 100%."""
    executable = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which("pyright")
    if executable is None:
        pytest.skip("pyright is not installed")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            "--target",
            str(site),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert not (site / "cupy-stubs").exists(), "cupy-stubs is scverse's PyPI project: not in our wheel"
    result = subprocess.run(
        [executable, "--pythonpath", sys.executable, "--verifytypes", "gpuimage", "--ignoreexternal"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=600,
        check=False,
    )
    assert "Type completeness score: 100%" in result.stdout, result.stdout


def test_the_readme_quotes_what_mypy_says_about_its_pipeline(tmp_path: Path) -> None:
    """The README's typed pipeline and the mypy error it quotes must stay true."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Typed pipelines") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    quoted = re.search(r"\$ mypy --strict pipeline.py\n(.*?)\n```", section, re.S)
    assert code is not None
    assert quoted is not None
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(code.group(1))
    output, status = _mypy(pipeline)
    assert status == 1
    reported = [
        line.replace(str(pipeline), "pipeline.py") for line in output.splitlines() if ": error:" in line
    ]
    assert reported == [quoted.group(1)]
