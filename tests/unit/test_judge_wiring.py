"""The judge metric wired into AnalysisRuns: measured each interval by the real executor,
its evidence in the run's status (resumed by a restarted operator), its verdict the
metric's phase, an Event on the verdict; validation of what a judge metric may say."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError
from tests.unit.executor_fakes import FakeKube, Harness, run_body

from sluice.api.analysis import AnalysisRunSpec, AnalysisRunStatus, Metric, RolloutAnalysis
from sluice.api.judge import JudgeScore
from sluice.cluster.analysis_runs import AnalysisInvalid, merge
from sluice.metrics.base import ProviderError, QueryResult

PROM = {"prometheus": {"address": "http://prometheus:9090"}}


def judge_metric(name: str = "errors-vs-stable", **judge: Any) -> dict[str, Any]:
    spec = {"errors": {}, "maxDuration": "10m", **judge}
    return {"name": name, "provider": PROM, "interval": "30s", "judge": spec}


class Split:
    """Per interval: errors and requests of the canary (c1) and of the stable (s1)."""

    def __init__(self, canary: tuple[float, float], stable: tuple[float, float]) -> None:
        self.canary, self.stable = canary, stable
        self.down = False
        self.sent: list[str] = []

    async def query(self, query: str, at: datetime | None = None) -> QueryResult:
        self.sent.append(query)
        if self.down:
            raise ProviderError("connection refused")
        bad, total = self.canary if '"c1"' in query else self.stable
        value = bad if 'code=~"5..' in query else total
        return QueryResult(kind="vector", values=[value], series=1, query=query, at=at)

    async def query_range(self, *args: Any) -> QueryResult:
        raise AssertionError("a judge asks instant queries")


class EventKube(FakeKube):
    def __init__(self) -> None:
        super().__init__({})
        self.events: list[dict[str, Any]] = []

    async def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        if any(e["metadata"]["name"] == body["metadata"]["name"] for e in self.events):
            from kubernetes.client.exceptions import ApiException

            raise ApiException(status=409, reason="AlreadyExists")
        self.events.append(body)


def harness(metrics: list[dict[str, Any]], provider: Split, **spec: Any) -> Harness:
    body = run_body(metrics)
    body["spec"].update(spec)
    return Harness(body, EventKube(), provider)  # type: ignore[arg-type]


def result_of(status: dict[str, Any], name: str = "errors-vs-stable") -> dict[str, Any]:
    return next(r for r in status["metricResults"] if r["name"] == name)


def test_a_canary_with_more_errors_fails_with_its_evidence_in_the_status() -> None:
    provider = Split(canary=(30, 1000), stable=(5, 1000))  # 3 % against 0.5 %
    h = harness([judge_metric()], provider)
    status = asyncio.run(h.steps(40))
    assert status["phase"] == "Failed", status
    r = result_of(status)
    verdict = r["judgeResult"]
    assert r["phase"] == "Failed" and verdict["verdict"] == "Fail" and verdict["final"]
    assert verdict["eValue"] >= 20 and verdict["pValue"] <= 0.05
    assert verdict["lower"] > 1 and verdict["estimate"] == pytest.approx(6, rel=0.3)
    assert verdict["canaryN"] == r["judge"]["canaryTotal"] == 1000 * r["count"]
    assert r["judge"]["baselineBad"] == 5 * r["count"]
    assert r["count"] < 10  # fails fast: evidence, not a fixed horizon
    last = r["measurements"][-1]
    assert last["phase"] == "Failed" and last["value"] == f"{verdict['eValue']:.3g}"
    assert "errors canary 3.00% of" in last["message"] and "e=" in last["message"]
    assert 'sluice_dev_revision=\\"c1\\"' in last["query"] or '"c1"' in last["query"]
    assert "Fail: errors canary 3.00%" in status["message"]
    kube: EventKube = h.kube  # type: ignore[assignment]
    (event,) = kube.events
    assert event["reason"] == "JudgeFailed" and event["type"] == "Warning"
    assert "e=" in event["message"] and "web-c1-bg" in event["message"]
    assert event["involvedObject"]["kind"] == "Rollout"


def test_equal_error_rates_hold_without_counting_against_inconclusive_limit_then_pass() -> None:
    provider = Split(canary=(5, 1000), stable=(5, 1000))
    h = harness([judge_metric(maxDuration="5m")], provider)
    held = asyncio.run(h.steps(5))
    r = result_of(held)
    assert held["phase"] == "Running" and r["phase"] == "Running"
    assert r["inconclusive"] == 0 and r["count"] == 5  # inconclusiveLimit is 0
    assert r["measurements"][-1]["phase"] == "Inconclusive"
    assert r["judgeResult"]["final"] is False
    done = asyncio.run(h.steps(20))
    r = result_of(done)
    assert done["phase"] == "Successful" and r["judgeResult"]["verdict"] == "Pass"
    assert r["count"] == 10  # maxDuration 5m at 30 s: ten intervals, no earlier
    kube: EventKube = h.kube  # type: ignore[assignment]
    assert [e["reason"] for e in kube.events] == ["JudgePassed"]


def test_too_little_traffic_by_max_duration_is_inconclusive_never_a_pass() -> None:
    provider = Split(canary=(0, 3), stable=(0, 1000))  # 3 requests an interval < minSample
    h = harness([judge_metric(maxDuration="2m")], provider)
    status = asyncio.run(h.steps(10))
    r = result_of(status)
    assert status["phase"] == "Inconclusive" and r["phase"] == "Inconclusive"
    assert r["judgeResult"]["verdict"] == "Inconclusive" and r["judgeResult"]["final"]
    assert "minSample" in r["judgeResult"]["reason"]


def test_a_restarted_operator_resumes_the_evidence_from_the_status() -> None:
    canary, stable = (12, 1000), (5, 1000)
    straight = harness([judge_metric()], Split(canary, stable))
    expected = asyncio.run(straight.steps(40))

    first = harness([judge_metric()], Split(canary, stable))
    asyncio.run(first.steps(2))
    persisted = result_of(first.body["status"])["judge"]
    assert persisted["canaryTotal"] == 2000 and persisted["intervals"] == 2
    # A new executor (a restarted operator) knows nothing but the run object.
    second = Harness(copy.deepcopy(first.body), EventKube(), Split(canary, stable))  # type: ignore[arg-type]
    second.now = first.now
    resumed = asyncio.run(second.steps(40))
    assert resumed["phase"] == expected["phase"] == "Failed"
    assert result_of(resumed)["count"] == result_of(expected)["count"]
    assert result_of(resumed)["judge"] == result_of(expected)["judge"]


def test_a_provider_error_changes_no_evidence_and_counts_against_the_error_limit() -> None:
    provider = Split(canary=(5, 1000), stable=(5, 1000))
    h = harness([judge_metric() | {"consecutiveErrorLimit": 2}], provider)
    asyncio.run(h.steps(2))
    before = result_of(h.body["status"])["judge"]
    provider.down = True
    status = asyncio.run(h.steps(1))
    r = result_of(status)
    assert r["judge"] == before and r["measurements"][-1]["phase"] == "Error"
    assert r["phase"] == "Running" and r["consecutiveError"] == 1
    status = asyncio.run(h.steps(5))
    assert status["phase"] == "Error" and result_of(status)["judge"] == before


def test_judge_score_a_light_failure_is_marginal_a_critical_one_fails_at_once() -> None:
    card = JudgeScore(pass_score=100, marginal_score=70).model_dump(by_alias=True)
    metrics = [
        judge_metric("heavy", weight=3, maxDuration="2m"),
        judge_metric("light", weight=1, maxDuration="2m", errors={"metric": "other_total"}),
    ]

    class Mixed(Split):
        async def query(self, query: str, at: datetime | None = None) -> QueryResult:
            self.canary = (40, 1000) if "other_total" in query else (5, 1000)
            return await super().query(query, at)

    h = harness(metrics, Mixed((5, 1000), (5, 1000)), judgeScore=card)
    status = asyncio.run(h.steps(20))
    assert result_of(status, "light")["phase"] == "Failed"
    assert status["phase"] == "Inconclusive", status  # 3 of 4 passed: 75, marginal
    assert "score 75" in status["message"]

    metrics[1]["judge"]["critical"] = True
    h = harness(metrics, Mixed((5, 1000), (5, 1000)), judgeScore=card)
    status = asyncio.run(h.steps(20))
    assert status["phase"] == "Failed" and "critical metric light failed" in status["message"]
    assert result_of(status, "heavy")["phase"] == "Running"  # decided before it was


def test_the_status_with_the_evidence_reads_back_after_empty_fields_are_dropped() -> None:
    h = harness([judge_metric()], Split((0, 0), (0, 0)))  # no traffic: no estimate bounds
    status = asyncio.run(h.steps(1))
    AnalysisRunStatus.model_validate(status)  # what the next step (or a restart) reads
    assert result_of(status)["judgeResult"]["verdict"] == "Inconclusive"


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"interval": None}, "needs an interval"),
        ({"successCondition": "result < 1"}, "successCondition"),
        ({"failureCondition": "result > 1"}, "failureCondition"),
        ({"count": 5}, "count"),
        ({"errorRate": {"max": 0.01}}, "judge must be set (found errorRate, judge)"),
    ],
)
def test_a_judge_metric_refuses_what_it_does_not_take(extra: dict[str, Any], named: str) -> None:
    body = judge_metric() | extra
    with pytest.raises(ValidationError, match=named.replace("(", r"\(").replace(")", r"\)")):
        Metric.model_validate({k: v for k, v in body.items() if v is not None})


def test_a_step_analysis_judge_needs_no_count() -> None:
    ok = RolloutAnalysis.model_validate({"metrics": [judge_metric(baseline="baseline")]})
    metrics, _, _ = merge(ok, "spec.strategy.canary.steps[1].analysis", {}, "step")
    assert metrics[0].judge is not None and metrics[0].judge.baseline == "baseline"


def test_a_baseline_deployment_after_promotion_is_refused_not_left_inconclusive() -> None:
    analysis = RolloutAnalysis.model_validate({"metrics": [judge_metric(baseline="baseline")]})
    where = "spec.strategy.canary.postPromotionAnalysis"
    with pytest.raises(AnalysisInvalid, match=r"judge\.baseline: baseline in a post-promotion"):
        merge(analysis, where, {}, "postPromotion")
    stable = RolloutAnalysis.model_validate({"metrics": [judge_metric()]})
    assert merge(stable, where, {}, "postPromotion")[0][0].judge is not None


def test_a_judge_selector_placeholder_without_a_value_is_refused() -> None:
    bad = judge_metric(errors={"canarySelector": 'pod=~"{{args.pods}}"'})
    analysis = RolloutAnalysis.model_validate({"metrics": [bad]})
    with pytest.raises(AnalysisInvalid, match=r"no value for args\.pods"):
        merge(analysis, "spec.strategy.canary.analysis", {}, "background")


def test_a_run_spec_with_judge_score_round_trips() -> None:
    body = run_body([judge_metric()])
    body["spec"]["judgeScore"] = {"passScore": 90}
    spec = AnalysisRunSpec.model_validate(body["spec"])
    assert spec.judge_score is not None and spec.judge_score.marginal_score == 75
