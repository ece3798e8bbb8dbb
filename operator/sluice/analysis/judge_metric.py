"""A judge metric in an AnalysisRun: one interval asked, then added to the persisted evidence.

Measuring (I/O) and recording (pure) are split like for every metric: `measure_judge`
asks Prometheus about the last interval and hands the answers on with the Measurement;
`runstate.record` calls `record_judge`, which adds them to the evidence kept in the
metric's `MetricResult.judge` and words the verdict. The evidence is in the status, so an
operator killed between two measurements resumes it; a provider error changes nothing.

The statistics need numpy (the `judge` extra), imported only when a judge metric is
measured: the operator runs without it, and refuses judge metrics then (see
`cluster.analysis_runs`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sluice.analysis import bounds
from sluice.analysis.template import render
from sluice.api.analysis import AnalysisRunStatus, Measurement, Metric
from sluice.api.duration import parse_duration
from sluice.api.judge import JudgeResult, JudgeState
from sluice.engine.timefmt import fmt
from sluice.metrics.base import MetricProvider

Clock = Callable[[], Any]


def shown_queries(metric: Metric, values: Mapping[str, str], masks: Mapping[str, str]) -> str:
    """What a measurement records as its query: the canary's and the baseline's totals."""
    from sluice.analysis import sequential

    assert metric.judge is not None
    q = sequential.queries(metric.judge, parse_duration(metric.interval or 0))
    if q.counts is not None:
        picked = [q.counts[1], q.counts[0], q.counts[3], q.counts[2]]
    else:
        picked = [q.canary_buckets[-1], q.baseline_buckets[-1]]
    try:
        return " ; ".join(render(x, values, masks) for x in picked)
    except ValueError:
        return " ; ".join(picked)


async def measure_judge(
    metric: Metric,
    values: Callable[[], Awaitable[Mapping[str, str]]],
    provider: Callable[[], Awaitable[MetricProvider]],
    clock: Clock,
    errors: tuple[type[Exception], ...],
    reason: Callable[[Exception], object],
    scrub: Callable[[str, Mapping[str, str]], str],
    masks_of: Callable[[Mapping[str, str]], Mapping[str, str]],
) -> Measurement:
    """Ask about the last interval; the Measurement carries the answers to `record_judge`."""
    assert metric.judge is not None
    started = clock()
    filled: Mapping[str, str] = {}
    query = ""
    interval = parse_duration(metric.interval or 0)
    caught: tuple[type[Exception], ...] = (*errors, ImportError)
    try:
        from sluice.analysis import sequential  # no numpy: an Error measurement, no crash

        filled = await values()
        query = shown_queries(metric, filled, masks_of(filled))
        source = await provider()
        ask = sequential.ask_with(source, filled, started)
        seen = await sequential.ask_interval(metric.judge, interval, ask)
    except caught as exc:
        return Measurement(
            phase="Error",
            query=bounds.clip(query, bounds.QUERY),
            started_at=fmt(started),
            finished_at=fmt(clock()),
            message=bounds.clip(scrub(f"error: {reason(exc)}", filled), bounds.MESSAGE),
        )
    m = Measurement(
        phase="Inconclusive",  # until record_judge has weighed it with the evidence
        query=bounds.clip(query, bounds.QUERY),
        window=f"increase over {interval:g}s at {fmt(started)}",
        started_at=fmt(started),
        finished_at=fmt(clock()),
    )
    m._observation = seen
    return m


def record_judge(
    metric: Metric, state: JudgeState | None, m: Measurement
) -> tuple[Measurement, JudgeState | None, JudgeResult | None]:
    """The measurement as recorded, and the evidence and verdict after it.

    An Error (or a measurement without answers) leaves the evidence as it was.
    """
    from sluice.analysis import sequential

    seen = m._observation
    if metric.judge is None or m.phase == "Error" or seen is None:
        return m, state, None
    new, result = sequential.advance(metric.judge, state, seen)
    phase = {"Fail": "Failed", "Pass": "Successful"}.get(result.verdict, "Inconclusive")
    recorded = m.model_copy(
        update={
            "phase": phase,
            "value": f"{result.e_value:.3g}",
            "message": bounds.clip(result.message(), bounds.MESSAGE),
        }
    )
    return recorded, new, result


def verdict_phase(result: JudgeResult) -> str:
    """The metric's phase for a verdict: Running while it holds (never a limit's count)."""
    if result.verdict == "Fail":
        return "Failed"
    if result.verdict == "Pass":
        return "Successful"
    return "Inconclusive" if result.final else "Running"


_REASONS = {"Fail": "JudgeFailed", "Pass": "JudgePassed", "Inconclusive": "JudgeInconclusive"}


def new_verdicts(
    before: AnalysisRunStatus, after: AnalysisRunStatus
) -> list[tuple[str, str, JudgeResult]]:
    """(metric, Event reason, result) of each judge metric that reached its verdict
    between `before` and `after`, for an Event each."""
    was = {r.name: r.phase for r in before.metric_results}
    out = []
    for r in after.metric_results:
        result = r.judge_result
        if result is None or not result.final or r.phase not in _FINAL:
            continue
        if was.get(r.name) not in _FINAL:
            out.append((r.name, _REASONS[result.verdict], result))
    return out


_FINAL = ("Successful", "Failed", "Inconclusive")
