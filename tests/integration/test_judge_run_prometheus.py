"""A judge metric in an AnalysisRun against a real Prometheus, through the executor's code.

Backfilled (4-5 hours ago) `http_requests_total` of a canary `c1` and its stable `s1`,
10 requests/s each: the canary answers 4 % 500s where the stable answers 1 %; a second
canary `c2` answers 1 % like the stable. `measure.advance` (what the operator's executor,
simulate and replay run) takes a measurement every 30 s of that history: the judge's
PromQL goes to Prometheus, the evidence accumulates in the run's status, the verdict
becomes the metric's phase. c1 is failed within minutes; c2 is not, and passes at
maxDuration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from tests.support.prometheus import PrometheusServer, counter_openmetrics, hours_ago

from sluice.analysis.measure import Values, advance, measure
from sluice.analysis.template import builtin_values
from sluice.api.analysis import AnalysisRunSpec, AnalysisRunStatus, Measurement, Metric
from sluice.metrics.prometheus import PrometheusProvider

T0 = hours_ago(5, align_seconds=60)
END = T0 + timedelta(minutes=20)


def openmetrics() -> str:
    series = []
    for revision, errors in (("c1", 0.4), ("s1", 0.1), ("c2", 0.1)):
        series += [
            ({"sluice_dev_revision": revision, "code": "500"}, errors),
            ({"sluice_dev_revision": revision, "code": "200"}, 10 - errors),
        ]
    return counter_openmetrics("http_requests_total", series, T0, END, step_seconds=15)


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(workdir=tmp_path_factory.mktemp("prometheus-judge-run"))
    server.backfill(openmetrics())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def judge_run(prom: PrometheusServer, canary: str) -> tuple[AnalysisRunStatus, list[str]]:
    metric = Metric.model_validate(
        {
            "name": "errors-vs-stable",
            "provider": {"prometheus": {"address": prom.url}},
            "interval": "30s",
            "judge": {"errors": {}, "maxDuration": "8m"},
        }
    )
    spec = AnalysisRunSpec(metrics=[metric], kind="background", revision=canary)
    provider = PrometheusProvider(prom.url, timeout=5)
    now = [T0 + timedelta(minutes=2)]
    phases: list[str] = []

    async def values() -> Values:
        return Values(builtin_values("web", "ns", canary, "s1", "b", "a"))

    async def source() -> PrometheusProvider:
        return provider

    async def take(m: Metric) -> Measurement:
        return await measure(m, values, source, lambda: now[0])

    async def run() -> AnalysisRunStatus:
        status = AnalysisRunStatus()
        for _ in range(40):
            status, taken = await advance(spec, status, lambda: now[0], take)
            phases.extend(m.phase for _, m in taken)
            if status.phase != "Running":
                break
            now[0] += timedelta(seconds=30)
        return status

    try:
        return asyncio.run(run()), phases
    finally:
        provider.close()


def at(status: AnalysisRunStatus) -> datetime | None:
    return None if status.finished_at is None else datetime.fromisoformat(status.finished_at)


def test_a_canary_with_four_times_the_errors_is_failed_by_the_judge(
    prom: PrometheusServer,
) -> None:
    status, phases = judge_run(prom, "c1")
    (r,) = status.metric_results
    assert status.phase == "Failed", status.message
    assert r.judge is not None and r.judge_result is not None
    assert r.judge_result.verdict == "Fail", r.judge_result.message()
    assert r.judge_result.e_value >= 20
    assert r.judge_result.lower > 1 and r.judge_result.estimate == pytest.approx(4, rel=0.25)
    # 10 requests/s for 30 s per measurement, as Prometheus counted them
    assert r.judge.canary_total == pytest.approx(300 * r.count, rel=0.05)
    assert phases[-1] == "Failed" and set(phases[:-1]) <= {"Inconclusive"}
    assert len(phases) <= 8  # minutes, not maxDuration
    assert 'sluice_dev_revision="c1"' in r.measurements[-1].query


def test_a_canary_as_good_as_the_stable_is_not_failed_and_passes_at_max_duration(
    prom: PrometheusServer,
) -> None:
    status, phases = judge_run(prom, "c2")
    (r,) = status.metric_results
    assert status.phase == "Successful", status.message
    assert r.judge_result is not None and r.judge_result.verdict == "Pass"
    assert "Failed" not in phases and len(phases) == 16  # 8 minutes at 30 s
    assert r.judge_result.e_value < 20
