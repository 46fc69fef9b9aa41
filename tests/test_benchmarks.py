"""benchmarks/ (issue 12, bars): the checks the scripts write, as the runner reads them; how a
row is judged where gpuimage lacks ``out=`` or CV-CUDA is missing; the exit without a GPU.

The scripts are imported from their folder (benchmarks/ is not a package), with a CPU-only torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put benchmarks/ on sys.path for the test (its modules import each other by bare name)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def module(name: str) -> ModuleType:
    return importlib.import_module(name)


@pytest.mark.usefixtures("load")
@pytest.mark.parametrize("script", ["conversions", "views", "graphs"])
def test_each_script_exits_0_without_a_gpu(
    script: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 12, bars: CI imports the scripts; on a machine without a GPU they say so and exit 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert module(script).main(["--quick"]) == 0
    assert capsys.readouterr().out == (
        f"{script}.py: this benchmark needs a CUDA GPU (torch.cuda.is_available() is False); skipped.\n"
    )


@pytest.mark.usefixtures("load")
def test_the_runner_shows_each_check_as_written() -> None:
    # issue 12, bars: the checks' fields are the runner's cells, PASS/FAIL/info as judged
    common, run = module("_common"), module("run")
    checks = [
        common.ratio_check("1080p HWC->CHW", 12.0, 10.0, "CV-CUDA reformat", 1.5),
        common.ratio_check("1080p HWC->CHW, out=", None, 10.0, "CV-CUDA reformat_into", 1.0),
        common.ratio_check("4K HWC->CHW", 5.0, None, "cvcuda not importable", 0.8),
        common.ratio_check("4K HWC->CHW", 5.0, 20.0, "torch permute", None),
        common.value_check("as_torch() cached", "0.250 us", "< 0.3 us", True),
    ]
    rows = [tuple(vars(row).values())[1:] for row in run.bench_rows("conversions", {"checks": checks})]
    assert rows == [
        ("1080p HWC->CHW", "12.00 us", "10.00 us (CV-CUDA reformat)", "1.20", "<= 1.5x", "PASS"),
        ("1080p HWC->CHW, out=", "n/a", "10.00 us (CV-CUDA reformat_into)", "", "<= 1.0x", "FAIL"),
        ("4K HWC->CHW", "5.00 us", "n/a (cvcuda not importable)", "", "<= 0.8x", "info"),
        ("4K HWC->CHW", "5.00 us", "20.00 us (torch permute)", "0.25", "", "info"),
        ("as_torch() cached", "0.250 us", "", "", "< 0.3 us", "PASS"),
    ]


@pytest.mark.usefixtures("load")
def test_a_row_compares_the_fastest_route_with_the_same_output() -> None:
    # issue 12, bars: a wrong output or a near job (exact=False) never becomes the yardstick;
    # a missing out= fails its bar and says why; a missing CV-CUDA is shown, not judged
    conversions, timing = module("conversions"), module("_timing")

    def ran(library: str, call: str, into: bool, us: float, **how: object) -> object:
        return conversions.Variant(
            library, call, into, None, wall=timing.Spread(us, us, us), gpu=us / 2, **how
        )

    case = conversions.Case("1080p uint8 HWC->CHW", "1080p", torch.zeros(1), 2)
    case.variants = [
        ran("gpuimage", "to_layout", False, 9.0),
        conversions.Variant("gpuimage", "to_layout(out=)", True, None, note="n/a: to_layout() takes no out="),
        ran("torch", "permute.contiguous", False, 10.0),
        ran("torch", "wrong", False, 1.0, note="WRONG OUTPUT: differs from torch's"),
        ran("torch", "near", False, 2.0, exact=False),
        conversions.Variant("CV-CUDA", "reformat", False, None, note="n/a: cvcuda is not importable"),
    ]
    checks, lines = conversions.judge([case], cv_missing=True)
    assert [(c["case"], c["alternative"], c["ratio"], c["passed"]) for c in checks] == [
        ("1080p uint8 HWC->CHW", "10.00 us (torch permute.contiguous)", "0.90", True),
        ("1080p uint8 HWC->CHW", "n/a (cvcuda not importable)", "", None),
        ("1080p uint8 HWC->CHW, out=", "n/a (torch)", "", None),
        ("1080p uint8 HWC->CHW, out=", "n/a (cvcuda not importable)", "", False),
    ]
    assert lines[1][-1] == "PASS"
    assert lines[2][-1] == "FAIL (n/a: to_layout() takes no out=)"


@pytest.mark.usefixtures("load")
def test_the_wall_clock_loop_times_every_call_after_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 12, bars: warm-up calls first, then `calls` per repetition, one synchronize after each
    timing = module("_timing")
    synchronized: list[int] = []
    calls: list[int] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: synchronized.append(len(calls)))
    spread = timing.wall_per_call(
        lambda: calls.append(1), timing.Loop(calls=10, repeats=3, warmup=4, gpu_calls=0)
    )
    assert synchronized == [4, 14, 24, 34]
    assert 0 < spread.p10_us <= spread.median_us <= spread.p90_us


@pytest.mark.usefixtures("load")
def test_calls_compared_with_each_other_are_sampled_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    # a host whose speed drifts moves each op's median alike: one sample of each op per round,
    # each round starting one op further on
    timing = module("_timing")
    order: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    spreads = timing.wall_per_call_interleaved(
        [lambda: order.append("a"), lambda: order.append("b"), lambda: order.append("c")],
        timing.Loop(calls=2, repeats=3, warmup=1, gpu_calls=0),
    )
    assert "".join(order) == "abc" + "aabbcc" + "bbccaa" + "ccaabb"
    assert len(spreads) == 3


@pytest.mark.usefixtures("load")
def test_a_variant_that_fails_while_timed_is_the_only_one_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conversions, timing = module("conversions"), module("_timing")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(timing, "gpu_per_call", lambda op, loop, wall_us: 1.0)
    reference = torch.arange(6)
    calls = {"n": 0}

    def fails_later() -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 2:  # the output check and the first warm-up call pass
            raise RuntimeError("out of memory")
        return reference

    case = conversions.Case("1080p uint8 HWC->CHW", "1080p", reference, 12)
    case.add("gpuimage", "to_layout", False, lambda: lambda: reference.clone())
    case.add("torch", "permute.contiguous", False, lambda: fails_later)
    case.add("torch", "wrong", False, lambda: lambda: reference + 1)
    conversions.measure(case, conversions.Loop(calls=3, repeats=2, warmup=2, gpu_calls=1))
    ours, failing, wrong = case.variants
    assert (ours.note, ours.gpu) == ("", 1.0)
    assert ours.us is not None
    assert failing.note.startswith("error: RuntimeError")
    assert failing.us is None
    assert wrong.note.startswith("WRONG OUTPUT")
    assert wrong.wall is not None, "a wrong output is still timed (shown), not used as a yardstick"
    assert wrong.us is None
