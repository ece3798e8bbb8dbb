"""Judge metrics in `sluice simulate`: the scenario's error rates and request rates become
the judge's counts per interval, and the operator's own judge decides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.test_simulate_analysis import metric, rollout, sim

JUDGE = metric("judge", judge={"errors": {}, "maxDuration": "5m"})


def steps(judge: dict[str, Any] = JUDGE) -> list[dict[str, Any]]:
    return [{"setWeight": 50}, {"analysis": {"metrics": [judge]}}]


def test_a_canary_with_six_times_the_errors_is_aborted_by_the_judge(tmp_path: Path) -> None:
    result = sim(
        rollout(tmp_path, steps()),
        {"canary": {"errorRate": 0.03}, "stable": {"errorRate": 0.005}},
    )
    assert result.verdict == "aborted" and result.reason == "AnalysisFailed"
    taken = [m for m in result.measurements if m.metric == "judge"]
    assert taken[-1].phase == "Failed" and taken[-1].trigger == "judge"
    assert taken[-1].value is not None and taken[-1].value >= taken[-1].threshold  # type: ignore[operator]
    assert result.seconds < 300  # evidence, before maxDuration
    assert "errors canary 3.00% of" in result.message
    assert not result.warnings


def test_equal_error_rates_are_judged_until_max_duration_then_promoted(tmp_path: Path) -> None:
    result = sim(
        rollout(tmp_path, steps()),
        {"canary": {"errorRate": 0.01}, "stable": {"errorRate": 0.01}},
    )
    assert result.verdict == "promoted"
    phases = [m.phase for m in result.measurements if m.metric == "judge"]
    assert phases[-1] == "Successful" and set(phases[:-1]) == {"Inconclusive"}
    assert len(phases) == 10  # 5 minutes at 30 s


def test_without_traffic_counts_the_judge_is_inconclusive_and_warned(tmp_path: Path) -> None:
    result = sim(rollout(tmp_path, steps()), {"stable": {"errorRate": 0.01}})
    assert result.verdict == "inconclusive"
    assert any("no canary.errorRate" in w for w in result.warnings), result.warnings


def test_each_measurement_carries_the_band_which_narrows_as_counts_grow(tmp_path: Path) -> None:
    result = sim(
        rollout(tmp_path, steps()),
        {"canary": {"errorRate": 0.01}, "stable": {"errorRate": 0.01}},
    )
    taken = [m for m in result.measurements if m.metric == "judge"]
    bands = [(m.lower, m.estimate, m.upper) for m in taken]
    assert all(lo is not None and est is not None for lo, est, _ in bands), bands
    finite = [(lo, up) for lo, _, up in bands if up is not None and lo is not None]
    assert len(finite) >= 3, bands
    widths = [up - lo for lo, up in finite]
    assert widths[-1] < widths[0] / 2, widths  # ten looks later: far narrower
    assert all(lo <= 1.0 <= up for lo, up in finite)  # equal rates: 1 stays inside
    assert taken[-1].tolerance is not None


def test_the_plot_draws_the_judges_band(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("matplotlib")
    from sluice.sim.plot import plot

    result = sim(
        rollout(tmp_path, steps()),
        {"canary": {"errorRate": 0.03}, "stable": {"errorRate": 0.005}},
    )
    out = tmp_path / "judge.svg"
    plot(result, out, "judge")
    svg = out.read_text()
    assert "confidence sequence" in svg and "tolerated:" in svg


LATENCY = metric("tail", judge={"latency": {}, "maxDuration": "5m"})


def test_a_heavier_latency_tail_with_the_same_p50_is_failed_by_the_latency_judge(
    tmp_path: Path,
) -> None:
    same = {"p50": 0.05, "p99": 0.12}
    result = sim(
        rollout(tmp_path, steps(LATENCY)),
        {"canary": {"latency": {"p50": 0.05, "p99": 0.6}}, "stable": {"latency": same}},
    )
    assert result.verdict == "aborted" and result.reason == "AnalysisFailed", result.message
    assert not result.warnings
    equal = sim(
        rollout(tmp_path, steps(LATENCY)),
        {"canary": {"latency": same}, "stable": {"latency": same}},
    )
    assert equal.verdict == "promoted", equal.message


def test_a_latency_judge_without_latency_in_the_scenario_is_warned(tmp_path: Path) -> None:
    result = sim(rollout(tmp_path, steps(LATENCY)), {"canary": {"errorRate": 0.01}})
    assert any("no canary.latency" in w for w in result.warnings), result.warnings
