"""The command line's entry (gpuimage/cli/__init__.py): usage, ``--version``, ``python -m gpuimage``,
the console script, and that the library never imports it. Each subcommand has its own test module:
tests/test_cli_info.py and tests/test_cli_stubs.py."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import gpuimage
from gpuimage.cli import _parser, main

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuimage", *args], capture_output=True, text=True, timeout=300, check=False
    )


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


def test_unknown_command_exits_2_with_usage() -> None:
    result = _run_module("frobnicate")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: gpuimage ")
    assert "invalid choice: 'frobnicate'" in result.stderr


def test_no_command_exits_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: gpuimage " in capsys.readouterr().err


def test_help_lists_info_and_stubs_only(capsys: pytest.CaptureFixture[str]) -> None:
    # issue 12: demo and bench left the package (examples/demo.py, benchmarks/run.py)
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    commands = out[out.index("positional arguments:") : out.index("options:")]
    assert [line.split()[0] for line in commands.splitlines()[2:] if line.strip()] == ["info", "stubs"]
    assert "--version" in out


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_demo_and_bench_are_no_longer_commands(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # issue 12: scripts/dev demo and scripts/dev bench run them from the source tree
    assert main([command]) == 2
    assert f"invalid choice: '{command}'" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    # issue 14: a user asked for `gpuimage --version`
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"gpuimage {gpuimage.__version__}\n"


def test_python_m_gpuimage_runs_the_command_line() -> None:
    result = _run_module("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"gpuimage {gpuimage.__version__}\n"


def test_the_gpuimage_console_script_prints_the_version() -> None:
    # issue 14: `gpuimage --version`, as the installed command (next to this Python, as pip puts it)
    script = shutil.which("gpuimage", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("no gpuimage console script next to this Python (gpuimage is only on PYTHONPATH)")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"gpuimage {gpuimage.__version__}\n"


# -- usage errors name the command they belong to (issue 14) --------------------------------------


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


@pytest.mark.parametrize(
    ("argv", "usage", "error"),
    [
        (
            ["info", "--jsn"],
            "usage: gpuimage info [-h] [--json]",
            "gpuimage info: error: unrecognized arguments: --jsn (did you mean --json?)",
        ),
        (
            ["info", "--jsn", "--quiet"],
            "usage: gpuimage info [-h] [--json]",
            "gpuimage info: error: unrecognized arguments: --jsn --quiet (--jsn: did you mean --json?)",
        ),
        (
            ["info", "--json", "extra"],
            "usage: gpuimage info [-h] [--json]",
            "gpuimage info: error: unrecognized arguments: extra",
        ),
        (
            ["info", "--version"],
            "usage: gpuimage info [-h] [--json]",
            "gpuimage info: error: unrecognized arguments: --version "
            "(--version goes before the command: gpuimage --version)",
        ),
        (
            ["stubs", "opencv", "typings", "--verbose"],
            "usage: gpuimage stubs [-h] LIBRARY DIR",
            "gpuimage stubs: error: unrecognized arguments: --verbose",
        ),
        (
            ["--jsn", "info"],
            "usage: gpuimage [-h] [--version] COMMAND ...",
            "gpuimage: error: unrecognized arguments: --jsn",
        ),
    ],
    ids=[
        "info-typo",
        "info-typo-and-unknown",
        "info-extra-word",
        "info-version",
        "stubs-option",
        "top-level",
    ],
)
def test_an_unknown_argument_is_refused_by_the_command_it_was_given_to(
    capsys: pytest.CaptureFixture[str], argv: list[str], usage: str, error: str
) -> None:
    assert _usage_error(capsys, *argv) == [usage, error]


def _commands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands: dict[str, argparse.ArgumentParser] = action.choices
    return commands


def test_every_command_has_a_description_and_a_help_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert list(_commands()) == ["info", "stubs"]
    for name, command in _commands().items():
        assert command.description, name
        assert any(line.split()[:1] == [name] and len(line.split()) > 1 for line in top.splitlines()), name
        assert main([name, "--help"]) == 0
        out = capsys.readouterr().out
        # argparse wraps the description between the usage and the argument sections
        assert " ".join(command.description.split()[:6]) in " ".join(out.split()), name
        assert out.index("usage: ") < out.index(command.description.split()[0]) < out.index("options:")


def test_stubs_usage_help_and_errors_name_the_same_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stubs", "--help"]) == 0
    help_text = capsys.readouterr().out
    usage = "usage: gpuimage stubs [-h] LIBRARY DIR"
    assert help_text.startswith(usage + "\n")
    arguments = help_text[help_text.index("positional arguments:") : help_text.index("options:")]
    assert [line.split()[0] for line in arguments.splitlines()[1:] if line.strip()] == ["LIBRARY", "DIR"]
    assert _usage_error(capsys, "stubs") == [
        usage,
        "gpuimage stubs: error: the following arguments are required: LIBRARY, DIR",
    ]
    assert _usage_error(capsys, "stubs", "opencv") == [
        usage,
        "gpuimage stubs: error: the following arguments are required: DIR",
    ]
    assert _usage_error(capsys, "stubs", "numpy", "typings") == [
        usage,
        "gpuimage stubs: error: argument LIBRARY: invalid choice: 'numpy' (choose from 'opencv')",
    ]


def test_importing_gpuimage_main_runs_nothing() -> None:
    """``gpuimage.__main__`` imports the command line only when run as ``python -m gpuimage``."""
    result = _python(
        "import sys, gpuimage.__main__; "
        "print(sorted(name for name in sys.modules if name.startswith('gpuimage.cli')))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_import_gpuimage_does_not_import_the_command_line() -> None:
    # issue 12: only the console script (and python -m gpuimage) import gpuimage.cli
    result = _python(
        "import sys, gpuimage; print(sorted(name for name in sys.modules if name.startswith('gpuimage.cli')))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_library_modules_never_import_the_command_line() -> None:
    """No module of the library proper imports ``gpuimage.cli``, at module level or inside a function."""
    import ast

    package = Path(gpuimage.__file__).parent
    offenders: list[str] = []
    for path in sorted(package.glob("*.py")):
        if path.name == "__main__.py":  # the one place allowed, and only under __name__ == "__main__"
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):  # `from .cli import x`, `from . import cli`
                base = "gpuimage" if node.level else ""
                base = ".".join(part for part in (base, node.module or "") if part)
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            if any(name == "gpuimage.cli" or name.startswith("gpuimage.cli.") for name in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_pyproject_console_script_resolves_to_main() -> None:
    # issue 12: [project.scripts] gpuimage = "gpuimage.cli:main"
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts == {"gpuimage": "gpuimage.cli:main"}
    module, _, attribute = scripts["gpuimage"].partition(":")
    assert getattr(importlib.import_module(module), attribute) is main


def test_installed_console_script_entry_point() -> None:
    entries = importlib.metadata.entry_points(group="console_scripts", name="gpuimage")
    if not entries:
        pytest.skip("gpuimage is not installed here (only on PYTHONPATH): no console script to test")
    (entry,) = entries
    assert entry.value == "gpuimage.cli:main", "stale install metadata: run `pip install -e .` again"
    assert entry.load() is main
