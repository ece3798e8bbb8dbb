"""Limits and verdicts of an AnalysisRun, measurement by measurement (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.analysis import runstate
from sluice.analysis.judge import judge
from sluice.analysis.template import TemplateError, builtin_values, render
from sluice.analysis.triggers import Question, question
from sluice.api.analysis import AnalysisRunSpec, Measurement, Metric

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def metric(**extra: Any) -> Metric:
    base: dict[str, Any] = {
        "name": "errors",
        "provider": {"prometheus": {"address": "http://p", "query": "q"}},
        "successCondition": "result < 0.02",
        "interval": "30s",
    }
    return Metric.model_validate({**base, **extra})


def run_with(m: Metric, phases: list[str]) -> tuple[AnalysisRunSpec, Any]:
    spec = AnalysisRunSpec(metrics=[m], kind="background", revision="r1")
    status = runstate.start(spec, T0)
    t = T0
    for phase in phases:
        due, _ = runstate.due(spec, status, t)
        assert due == [m], f"measurement due at {t}"
        status = runstate.record(
            spec, status, m, Measurement(phase=phase, started_at="x", message=phase), t
        )
        if status.phase in runstate.TERMINAL:
            break
        t += timedelta(seconds=30)
    return spec, status


def test_consecutive_failure_limit_is_bad_for_two_minutes() -> None:
    m = metric(consecutiveFailureLimit=4)
    # interleaved successes reset the streak; a total failure limit is not implied
    _, status = run_with(m, ["Failed", "Failed", "Successful", "Failed", "Failed", "Failed"])
    assert status.phase == "Running"
    _, status = run_with(m, ["Failed"] * 4)
    assert status.phase == "Failed"
    assert "4 failed in a row (consecutiveFailureLimit 4)" in status.message
    assert status.metric_results[0].next_at is None


def test_failure_limit_counts_in_total() -> None:
    _, status = run_with(metric(failureLimit=2), ["Failed", "Successful", "Failed"])
    assert status.phase == "Running"
    _, status = run_with(metric(failureLimit=2), ["Failed", "Successful", "Failed", "Failed"])
    assert status.phase == "Failed" and "3 failed (failureLimit 2)" in status.message
    _, status = run_with(metric(), ["Failed"])  # default: the first failure fails
    assert status.phase == "Failed"


def test_inconclusive_and_errors() -> None:
    _, status = run_with(metric(inconclusiveLimit=1), ["Inconclusive", "Inconclusive"])
    assert status.phase == "Inconclusive"
    _, status = run_with(metric(), ["Error"] * 5)
    assert status.phase == "Error" and status.on_error == "abort"
    # pause: 2 minutes of errors are within the default maxOutage (10m): it holds and
    # measures on (past maxOutage it is Error, on_error pause: see the tests below)
    _, status = run_with(metric(onProviderError="pause"), ["Error"] * 5)
    assert status.phase == "Holding" and status.metric_results[0].next_at is not None
    _, status = run_with(metric(onProviderError="ignore"), ["Error"] * 20)
    assert status.phase == "Running"


def test_count_completes_and_terminate_ends_clean() -> None:
    _, status = run_with(metric(count=3), ["Successful"] * 3)
    assert status.phase == "Successful" and status.finished_at
    spec, status = run_with(metric(), ["Successful"])
    terminated = spec.model_copy(update={"terminate": True})
    assert runstate.verdict(terminated, status, T0).phase == "Successful"
    assert runstate.due(terminated, status, T0) == ([], None)


def test_schedule_respects_initial_delay_and_interval() -> None:
    m = metric(initialDelay="10s")
    spec = AnalysisRunSpec(metrics=[m], kind="background", revision="r1")
    status = runstate.start(spec, T0)
    assert runstate.due(spec, status, T0) == ([], 10.0)
    assert runstate.due(spec, status, T0 + timedelta(seconds=10))[0] == [m]


def test_retention_keeps_the_newest() -> None:
    m = metric()
    spec = AnalysisRunSpec(metrics=[m], kind="background", revision="r1", measurement_retention=3)
    status = runstate.start(spec, T0)
    for i in range(5):
        status = runstate.record(
            spec, status, m, Measurement(phase="Successful", started_at=str(i)), T0
        )
    kept = status.metric_results[0].measurements
    assert [x.started_at for x in kept] == ["2", "3", "4"]
    assert status.metric_results[0].count == 5


def test_judge_never_calls_missing_data_a_success() -> None:
    q = Question("q", success="result < 0.02", failure=None)
    assert judge(q, [], None, "inconclusive")[0] == "Inconclusive"
    assert judge(q, [float("nan")], None, "inconclusive") == ("Inconclusive", "no data (NaN)")
    assert judge(q, [], None, "failure")[0] == "Failed"
    assert judge(q, [0.01], None, "inconclusive")[0] == "Successful"
    phase, message = judge(q, [0.2], None, "inconclusive")
    assert phase == "Failed" and "result=0.2" in message and "result < 0.02" in message


def test_judge_baseline_comparison() -> None:
    q = Question("q", success="result <= baseline * 1.5 + 0.005", failure=None, baseline="b")
    assert judge(q, [0.02], [0.02], "inconclusive")[0] == "Successful"
    assert judge(q, [0.05], [0.02], "inconclusive")[0] == "Failed"
    assert judge(q, [0.05], [], "inconclusive")[0] == "Inconclusive"


def test_builtin_triggers_write_promql() -> None:
    m = Metric.model_validate(
        {
            "name": "e",
            "provider": {"prometheus": {"address": "http://p"}},
            "errorRate": {"max": 0.02, "window": "30s"},
        }
    )
    q = question(m)
    assert 'code=~"5.."' in q.query and "[30s]" in q.query and q.success == "result <= 0.02"
    m = Metric.model_validate(
        {
            "name": "l",
            "provider": {"prometheus": {"address": "http://p"}},
            "latency": {"quantile": 0.99, "maxSeconds": 0.25, "preset": "istio"},
        }
    )
    q = question(m)
    assert q.query.startswith("histogram_quantile(0.99") and q.query.endswith("/ 1000")
    assert "istio_request_duration_milliseconds_bucket" in q.query


def test_hostile_arguments_cannot_change_the_query() -> None:
    values = builtin_values("web", "ns", "c1", "s1", "b", "a")
    values["args.svc"] = 'x"} or vector(1) #'
    rendered = render('rate(x{svc="{{args.svc}}"}[1m])', values)
    assert rendered == 'rate(x{svc="x\\"} or vector(1) #"}[1m])'
    try:
        render("{{args.missing}}", values)
    except TemplateError as exc:
        assert "args.missing" in str(exc)
    else:
        raise AssertionError("a placeholder without a value must be refused")


def test_a_provider_outage_holds_within_max_outage_and_resumes_by_itself() -> None:
    m = metric(onProviderError="pause", consecutiveErrorLimit=1, maxOutage="2m")
    _, status = run_with(m, ["Error", "Error"])  # past the limit, 30 s into the outage
    assert status.phase == "Holding", status.message
    assert "goes on by itself" in status.message and "maxOutage 2m" in status.message
    assert status.metric_results[0].next_at is not None  # it keeps measuring
    _, status = run_with(m, ["Error", "Error", "Error", "Successful"])  # back within 2m
    assert status.phase == "Running" and status.metric_results[0].consecutive_error == 0
    assert status.metric_results[0].error_since is None


def test_an_outage_past_max_outage_pauses_for_a_human() -> None:
    m = metric(onProviderError="pause", consecutiveErrorLimit=1, maxOutage="1m")
    _, status = run_with(m, ["Error"] * 4)  # 0, 30, 60 s: the third look is past 1m
    assert status.phase == "Error" and status.on_error == "pause"
    assert "longer than maxOutage 1m" in status.message
    assert status.metric_results[0].next_at is None


def test_abort_on_provider_error_does_not_hold() -> None:
    m = metric(onProviderError="abort", consecutiveErrorLimit=1, maxOutage="10m")
    _, status = run_with(m, ["Error", "Error"])
    assert status.phase == "Error" and status.on_error == "abort"
