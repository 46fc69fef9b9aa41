"""benchmarks/dlpack_exchange.py (issue 12: the DLPack C exchange API against the Python routes).

Unlike the other benchmarks it runs on a CPU-only torch too (host tensors, kDLCPU): its checks of
every route run here for real, and a failed check exits 1, so a run that exits 0 proves them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from file_modules import load_file

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dlpack_exchange.py"
VERDICT = re.compile(
    r"^C exchange API beats the Python route: (yes|no) \((\d+\.\d) us vs (\d+\.\d) us\)$", re.M
)
NEEDS_TABLE = pytest.mark.skipif(
    not hasattr(torch.Tensor, "__dlpack_c_exchange_api__"), reason="this torch has no exchange table"
)


@NEEDS_TABLE
def test_quick_run_verifies_every_route_and_prints_the_table_and_the_verdict(tmp_path: Path) -> None:
    # issue 12: measure whether the C exchange API beats the Python route for wrap and view
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd="/",  # the script finds its helpers beside itself, from any directory
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "verified: routes A, B, C on packed and pitched images" in out
    for row in ("A: ", "B: from_dlpack(capsule) only", "C: view, struct copied from a template", "import: C"):
        assert re.search(rf"^{re.escape(row)}.*\d+\.\d{{3}}\s+\d", out, re.M), row
    verdict = VERDICT.search(out)
    assert verdict is not None, out
    c_us, python_us = float(verdict[2]), float(verdict[3])
    if c_us != python_us:  # the verdict is taken before rounding
        assert verdict[1] == ("yes" if c_us < python_us else "no")
    checks = json.loads(report.read_text())["checks"]
    assert [check["case"].split(":")[0] for check in checks] == ["view", "import"]


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script as a module (benchmarks/ is not a package: its helpers import by bare name)."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    return load_file("benchmarks_dlpack_exchange", SCRIPT)


def test_without_the_exchange_table_route_c_is_skipped_and_the_python_route_stays(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 12: fall back cleanly where torch has no __dlpack_c_exchange_api__ (torch < 2.10)
    reason = "torch 2.9 has no __dlpack_c_exchange_api__ (torch >= 2.10 has)"
    monkeypatch.setattr(script, "find_exchange_api", lambda: (None, reason))
    monkeypatch.setattr(script, "QUICK", script.Loop(calls=50, repeats=3, warmup=5, gpu_calls=0))
    assert script.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "verified: routes A, B on packed and pitched images" in out
    assert "C: view" not in out
    assert f"route C skipped: {reason}." in out
    assert out.rstrip().endswith(
        "C exchange API beats the Python route: no (not available here; gpuimage keeps the Python route)"
    )
