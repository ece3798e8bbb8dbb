"""The judge metric: its API, verdicts (never a pass without data), messages, PromQL glue."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from sluice.analysis import sequential
from sluice.api.judge import JudgeMetric, JudgeState
from sluice.stats import judge


def _errors(**kw: object) -> JudgeMetric:
    return JudgeMetric.model_validate({"errors": {}, "maxDuration": "60s", **kw})


def _feed(spec: JudgeMetric, intervals: Sequence[tuple[int, int, int, int]]) -> JudgeState:
    state = judge.start(spec)
    for x_c, n_c, x_b, n_b in intervals:
        state = judge.add_counts(state, 10, x_c, n_c, x_b, n_b)
    return state


def test_a_regression_fails_with_its_evidence_explained() -> None:
    spec = _errors()
    result = judge.result(spec, _feed(spec, [(6, 100, 1, 100)] * 4))
    assert (result.verdict, result.final) == ("Fail", True)
    assert result.e_value >= 20 and result.p_value == pytest.approx(1 / result.e_value)
    assert result.lower > 1 and result.canary_rate == pytest.approx(0.06)
    line = result.message()
    for text in ("Fail", "6.00% of 400", "1.00% of 400", "e=", "p=", "alpha 0.05"):
        assert text in line


def test_no_evidence_holds_then_passes_at_max_duration() -> None:
    spec = _errors()
    held = judge.result(spec, _feed(spec, [(1, 100, 1, 100)] * 3))
    assert (held.verdict, held.final) == ("Inconclusive", False)
    assert "(hold)" in held.message()
    passed = judge.result(spec, _feed(spec, [(1, 100, 1, 100)] * 6))
    assert (passed.verdict, passed.final) == ("Pass", True)
    assert sequential.metric_phase(held) == "Running"
    assert sequential.metric_phase(passed) == "Successful"


def test_too_little_data_is_never_a_pass() -> None:
    spec = _errors(minSample=1000)
    result = judge.result(spec, _feed(spec, [(0, 10, 0, 10)] * 6))  # 60 s, 60 requests
    assert (result.verdict, result.final) == ("Inconclusive", True)
    assert "minSample" in result.reason
    assert sequential.metric_phase(result) == "Inconclusive"


def test_strong_evidence_before_min_sample_holds() -> None:
    spec = _errors(minSample=500)
    result = judge.result(spec, _feed(spec, [(50, 100, 0, 100)] * 3))
    assert result.verdict == "Inconclusive" and not result.final


def test_state_round_trips_through_the_status_compactly() -> None:
    spec = _errors()
    state = _feed(spec, [(3, 100, 1, 90)] * 5)
    wire = state.model_dump_json(by_alias=True)
    assert JudgeState.model_validate_json(wire) == state
    assert len(wire) < 3000 and "canaryBad" in wire


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"errors": {}, "latency": {}},
        {"errors": {}, "alpha": 0},
        {"errors": {}, "alpha": 0.9},
        {"errors": {}, "tolerance": -0.1},
        {"errors": {}, "minSample": 0},
        {"errors": {}, "maxDuration": "30d"},
        {"latency": {"buckets": [0.5, 0.1]}},
        {"latency": {"buckets": [float("inf")]}},
        {"latency": {"quantiles": [1.5]}},
    ],
)
def test_invalid_specs_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JudgeMetric.model_validate(body)


def test_every_field_is_described() -> None:
    from sluice.api import judge as api

    for model in (api.JudgeMetric, api.JudgeErrors, api.JudgeLatency, api.JudgeCounts,
                  api.JudgeState, api.JudgeResult, api.QuantileShift):  # fmt: skip
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"


def test_error_queries_ask_about_one_interval_of_each_side() -> None:
    q = sequential.queries(_errors(baseline="baseline"), 10)
    assert q.counts is not None
    bad_c, total_c, bad_b, total_b = q.counts
    assert bad_c == (
        'sum(increase(http_requests_total{sluice_dev_revision="{{canary.revision}}", '
        'code=~"5.."}[10s])) or vector(0)'
    )
    assert (
        total_c
        == 'sum(increase(http_requests_total{sluice_dev_revision="{{canary.revision}}"}[10s]))'
    )
    assert 'sluice_dev_baseline="true"' in bad_b and 'sluice_dev_baseline="true"' in total_b
    stable = sequential.queries(_errors(), 10).counts
    assert stable is not None and 'sluice_dev_baseline!="true"' in stable[3]


def test_latency_queries_one_per_bucket_bound() -> None:
    spec = JudgeMetric.model_validate({"latency": {"buckets": [0.1, 1]}})
    q = sequential.queries(spec, 30)
    assert q.bounds == (0.1, 1.0)
    assert len(q.canary_buckets) == len(q.baseline_buckets) == 3
    assert 'le=~"0\\\\.1"' in q.canary_buckets[0]
    assert 'le=~"1|1\\\\.0"' in q.canary_buckets[1]
    assert 'le="+Inf"' in q.canary_buckets[2] and "[30s]" in q.canary_buckets[2]


def test_counter_ratio_queries_get_the_interval() -> None:
    spec = JudgeMetric.model_validate(
        {
            "counts": {
                k: f"sum(increase({k}[{{{{interval}}}}]))"
                for k in ("canaryBad", "canaryTotal", "baselineBad", "baselineTotal")
            }
        }
    )
    q = sequential.queries(spec, 15)
    assert q.counts is not None and q.counts[0] == "sum(increase(canaryBad[15s]))"


def test_answers_become_whole_counts() -> None:
    assert sequential.count_of([2.4, 0.4]) == 3.0
    assert sequential.count_of([]) == 0.0
    assert sequential.count_of([math.nan, -1.0, math.inf]) == 0.0
    # Cumulative per le, slightly non-monotone from extrapolation -> buckets >= 0.
    assert sequential.buckets_of([10.2, 9.8, 30.0, 31.4]) == [10.0, 0.0, 20.0, 1.0]


def test_observe_drives_a_judge_from_answers() -> None:
    spec = JudgeMetric.model_validate({"latency": {"buckets": [0.1, 1]}, "maxDuration": "5m"})
    q = sequential.queries(spec, 10)
    canary = dict(zip(q.canary_buckets, [50.0, 80.0, 100.0], strict=True))
    base = dict(zip(q.baseline_buckets, [50.0, 98.0, 100.0], strict=True))

    async def ask(query: str) -> list[float]:
        return [canary.get(query, base.get(query, 0.0))]

    state = None
    for _ in range(6):
        state, result = asyncio.run(sequential.observe(spec, state, 10, ask))
    assert state is not None and state.canary_buckets == [300.0, 180.0, 120.0]
    assert result.verdict == "Fail" and result.bound == 1.0  # 20 % vs 2 % above 1 s
    assert result.quantiles[0].canary == pytest.approx(result.quantiles[0].baseline)
    assert np.isfinite(result.e_value_equal or 0.0)


def _verdict(spec: JudgeMetric, verdict: str, final: bool = True):
    state = _feed(spec, [(1, 100, 1, 100)] * 6 if verdict == "Pass" else [(9, 100, 0, 100)] * 3)
    result = judge.result(spec, state)
    assert result.verdict == verdict
    return result.model_copy(update={"final": final})


def test_scorecard_weights_and_critical_metrics() -> None:
    from sluice.api.judge import JudgeScore
    from sluice.stats.score import score

    heavy, light = _errors(weight=3), _errors(weight=1)
    card = JudgeScore(pass_score=90, marginal_score=70)
    ok = [("a", heavy, _verdict(heavy, "Pass")), ("b", light, _verdict(light, "Pass"))]
    assert score(ok, card).verdict == "Pass"
    marginal = [("a", heavy, _verdict(heavy, "Pass")), ("b", light, _verdict(light, "Fail"))]
    got = score(marginal, card)
    assert (got.verdict, got.final, got.score) == ("Inconclusive", True, 75.0)
    bad = [("a", heavy, _verdict(heavy, "Fail")), ("b", light, _verdict(light, "Pass"))]
    assert score(bad, card).verdict == "Fail"
    critical = _errors(critical=True, weight=1)
    early = [("a", heavy, _verdict(heavy, "Pass", final=False)),
             ("c", critical, _verdict(critical, "Fail"))]  # fmt: skip
    assert score(early, card).verdict == "Fail" and "critical" in score(early, card).message
    assert score(early[:1], card).final is False
    with pytest.raises(ValidationError):
        JudgeScore(pass_score=50, marginal_score=60)


def test_results_round_trip_through_json_with_unbounded_intervals() -> None:
    from sluice.api.judge import JudgeResult

    spec = _errors()
    result = judge.result(spec, _feed(spec, [(5, 100, 0, 100)] * 3))  # no baseline error
    assert result.upper is None  # no upper bound without a baseline error: not +inf
    assert "inf" not in result.model_dump_json()
    assert JudgeResult.model_validate_json(result.model_dump_json()) == result
    empty = JudgeMetric.model_validate({"latency": {"buckets": [0.1]}})
    shifts = judge.result(empty, judge.start(empty)).quantiles
    assert shifts[0].canary is None and "n/a" in judge.result(empty, judge.start(empty)).message()


def test_directions_of_a_counter_ratio() -> None:
    fewer = [(0, 100, 6, 100)] * 4  # the canary has fewer bad events than the baseline
    results = {
        d: judge.result(_errors(direction=d), _feed(_errors(direction=d), fewer)).verdict
        for d in ("increase", "decrease", "either")
    }
    assert results == {"increase": "Inconclusive", "decrease": "Fail", "either": "Fail"}
