"""The stream-lifetime contract (``_lifetime``) on a GPU: images, views, sources, producer and
consumer streams dropped in any order, with no crash and no memory handed back to an allocator under a
pending read.

Every scenario runs in a subprocess (``_stream_scenarios.py``), so a crash is a failure that names
the scenario, not the end of the run. Values are checked after both allocators were churned with a
sentinel while the consumer's read was still queued. A control run with deferred release switched
off shows that the hazard is real.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cupy")
pytest.importorskip("cv2")
pytest.importorskip("torch")

import gpuimage

pytestmark = pytest.mark.cuda

KINDS = ("torch", "cupy", "raw")
APIS = ("as_torch", "as_cupy", "as_gpumat", "dlpack", "cai")
ORDERS = (
    ("view", "image", "consumer", "source", "producer"),  # the issue's repro: del s, img, B; del t, A
    ("source", "producer", "consumer", "view", "image"),
    ("consumer", "producer", "source", "image", "view"),
    ("image", "source", "producer", "view", "consumer"),
    ("producer", "consumer", "image", "source", "view"),
    ("view", "consumer", "image", "producer", "source"),
)


def _environment() -> dict[str, str]:
    source_root = str(Path(gpuimage.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    return env


def _run(
    scenarios: list[dict[str, Any]], *, control: bool = False, timeout: float = 240
) -> list[dict[str, Any]]:
    script = Path(__file__).with_name("_stream_scenarios.py")
    command = [sys.executable, str(script), json.dumps(scenarios), *(["--control"] if control else [])]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=_environment(), timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the scenarios did not finish in {exc.timeout} s; output:\n{exc.stdout!r}")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    finished = [line for line in lines if "sum" in line]
    if done.returncode != 0:
        started = [line["started"] for line in lines if "started" in line]
        crashed = started[-1] if started else None
        pytest.fail(
            f"the scenario process died (exit {done.returncode}) in scenario {crashed}:\n"
            f"{done.stderr[-4000:]}"
        )
    return finished


def _scenarios(producer: str) -> list[dict[str, Any]]:
    return [
        {
            "source": ("torch", "cupy")[index % 2],
            "producer": producer,
            "consumer": consumer,
            "api": api,
            "order": list(order),
        }
        for index, (consumer, api, order) in enumerate(itertools.product(KINDS, APIS, ORDERS))
    ]


@pytest.mark.parametrize("producer", KINDS)
def test_any_drop_order_is_safe_and_reads_the_right_values(producer: str) -> None:
    scenarios = _scenarios(producer)
    results = _run(scenarios)
    assert len(results) == len(scenarios)
    wrong = [result for result in results if result["sum"] != result["expected"]]
    assert not wrong, f"{len(wrong)} of {len(results)} scenarios read wrong values: {wrong[:5]}"


def test_control_without_deferred_release_the_reuse_hazard_is_real() -> None:
    scenarios = [
        {"source": source, "producer": "torch", "consumer": "cupy", "api": api, "order": list(ORDERS[0])}
        for source in ("torch", "cupy")
        for api in ("as_torch", "as_cupy", "dlpack")
    ]
    results = _run(scenarios, control=True)
    assert len(results) == len(scenarios)
    wrong = [result for result in results if result["sum"] != result["expected"]]
    assert wrong, "with release not deferred, churn should overwrite memory still being read"


REPRO = """
import gc, cupy, torch
from gpuimage import GpuImage
t = torch.zeros((1024, 1024, 4), dtype=torch.uint8, device="cuda"); torch.cuda.synchronize()
A = torch.cuda.Stream()
with torch.cuda.stream(A):
    torch.cuda._sleep(60_000_000); t.fill_(7)
img = GpuImage.from_torch(t, layout="HWC", stream=A)
B = cupy.cuda.Stream(non_blocking=True)
with B:
    s = img.as_cupy().sum(dtype=cupy.int64)
B.synchronize()
assert int(s.get()) == 7 * t.numel(), int(s.get())
del s, img, B
del t, A; gc.collect()
torch.cuda.synchronize()
# the same with a torch producer and a DLPack consumer on a CuPy stream
t = torch.full((512, 512, 4), 3, dtype=torch.uint8, device="cuda")
img = GpuImage.from_torch(t, layout="HWC")
B = cupy.cuda.Stream(non_blocking=True)
with B:
    a = cupy.from_dlpack(img)
    total = a.sum(dtype=cupy.int64)
del a, img, B
del t; gc.collect()
assert int(total.get()) == 3 * 512 * 512 * 4
print("clean")
"""


def test_the_issue_repro_runs_clean() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(REPRO)],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().endswith("clean")
