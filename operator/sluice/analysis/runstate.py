"""An AnalysisRun's progress as pure functions: what is due, and what a measurement changes.

Limits per metric: more than `failureLimit` failures, or `consecutiveFailureLimit`
failures in a row, fail it; more than `inconclusiveLimit` inconclusive answers make
it Inconclusive; more than `consecutiveErrorLimit` provider errors in a row make it
Error (unless `onProviderError: ignore`). A metric that took its `count`
measurements without any of that is Successful. The run takes the worst verdict.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sluice.analysis import bounds
from sluice.analysis.judge_metric import record_judge, verdict_phase
from sluice.api.analysis import (
    MAX_INTERVAL,
    AnalysisRunSpec,
    AnalysisRunStatus,
    Measurement,
    Metric,
    MetricResult,
)
from sluice.api.duration import parse_duration
from sluice.api.judge import JudgeResult
from sluice.engine.timefmt import fmt, parse, since
from sluice.stats.score import score

TERMINAL = ("Successful", "Failed", "Error", "Inconclusive")
ERROR_RETRY_SECONDS = 10.0  # between provider errors of a metric without an interval
_SEVERITY = ("Failed", "Error", "Holding", "Inconclusive", "Running", "Pending", "Successful")


def _seconds(value: int | str | None) -> float:
    """A delay in seconds, capped: the schema bounds it, this keeps datetimes valid anyway."""
    return min(parse_duration(value), MAX_INTERVAL) if value is not None else 0.0


def _kept(measurements: list[dict[str, Any]], retention: int, budget: int) -> list[dict[str, Any]]:
    """The newest `retention` measurements that fit in `budget` bytes (the newest always)."""
    kept: list[dict[str, Any]] = []
    used = 0
    for m in reversed(measurements[-retention:]):
        used += sum(len(str(v)) for v in m.values()) + 64
        if kept and used > budget:
            break
        kept.append(m)
    return kept[::-1]


def _result(status: AnalysisRunStatus, name: str) -> MetricResult | None:
    return next((r for r in status.metric_results if r.name == name), None)


def last_measurement(status: AnalysisRunStatus, metric: Metric, taken: Measurement) -> Measurement:
    """`taken` as `record` kept it (a judge metric's is only judged there)."""
    if metric.judge is None:
        return taken
    result = _result(status, metric.name)
    return result.measurements[-1] if result and result.measurements else taken


def start(spec: AnalysisRunSpec, now: datetime) -> AnalysisRunStatus:
    """The status of a run that begins now: every metric Running, first measurements due."""
    results = []
    for metric in spec.metrics:
        delay = _seconds(metric.initial_delay)
        results.append(
            MetricResult(
                name=metric.name, phase="Running", next_at=fmt(now + timedelta(seconds=delay))
            )
        )
    return AnalysisRunStatus(phase="Running", started_at=fmt(now), metric_results=results)


def due(
    spec: AnalysisRunSpec, status: AnalysisRunStatus, now: datetime
) -> tuple[list[Metric], float | None]:
    """Metrics to measure now, and seconds until the next one is due (None: nothing left)."""
    if status.phase in TERMINAL or spec.terminate:
        return [], None
    ready: list[Metric] = []
    wait: float | None = None
    for metric in spec.metrics:
        result = _result(status, metric.name)
        if result is None or result.phase in TERMINAL or result.next_at is None:
            continue
        left = (parse(result.next_at) - now).total_seconds()
        if left <= 0:
            ready.append(metric)
        else:
            wait = left if wait is None else min(wait, left)
    return ready, wait


def _error_phase(
    metric: Metric, r: dict[str, Any], now: datetime, last: str
) -> tuple[str, str] | None:
    """Error or Holding when provider errors went past consecutiveErrorLimit; else None."""
    if (
        metric.on_provider_error != "ignore"
        and r["consecutive_error"] > metric.consecutive_error_limit
    ):
        errors = (
            f"{r['consecutive_error']} provider errors in a row "
            f"(consecutiveErrorLimit {metric.consecutive_error_limit})"
        )
        if metric.on_provider_error == "pause":
            down = since(r["error_since"], now) if r["error_since"] else 0.0
            bound = _seconds(metric.max_outage)
            if down < bound:
                return (
                    "Holding",
                    f"{errors} for {down:.0f}s: holding, measuring on; goes on by itself if "
                    f"the provider answers within maxOutage {metric.max_outage}: {last}",
                )
            errors += f", down for {down:.0f}s, longer than maxOutage {metric.max_outage}"
        return "Error", f"{errors}: {last}"
    return None


def _metric_phase(metric: Metric, r: dict[str, Any], now: datetime) -> tuple[str, str]:
    limit = metric.total_failure_limit()
    last = r["measurements"][-1]["message"] if r["measurements"] else ""
    if (
        metric.consecutive_failure_limit
        and r["consecutive_failed"] >= metric.consecutive_failure_limit
    ):
        return (
            "Failed",
            f"{r['consecutive_failed']} failed in a row "
            f"(consecutiveFailureLimit {metric.consecutive_failure_limit}): {last}",
        )
    if limit is not None and r["failed"] > limit:
        return "Failed", f"{r['failed']} failed (failureLimit {limit}): {last}"
    if r["inconclusive"] > metric.inconclusive_limit:
        return (
            "Inconclusive",
            f"{r['inconclusive']} inconclusive "
            f"(inconclusiveLimit {metric.inconclusive_limit}): {last}",
        )
    errored = _error_phase(metric, r, now, last)
    if errored is not None:
        return errored
    wanted = metric.measurements_wanted()
    if wanted is not None and r["count"] - r["error"] >= wanted:
        return "Successful", f"{r['successful']}/{r['count']} successful: {last}"
    return "Running", last


def _judge_phase(
    metric: Metric, r: dict[str, Any], result: JudgeResult | None, now: datetime
) -> tuple[str, str]:
    """A judge metric: its verdict decides; provider errors count as for any metric."""
    last = r["measurements"][-1]["message"] if r["measurements"] else ""
    errored = _error_phase(metric, r, now, last)
    if errored is not None:
        return errored
    if result is None:
        return "Running", last
    return verdict_phase(result), result.message()


def record(
    spec: AnalysisRunSpec, status: AnalysisRunStatus, metric: Metric, m: Measurement, now: datetime
) -> AnalysisRunStatus:
    """The run after `metric` got measurement `m` at `now`."""
    results = []
    for current in status.metric_results:
        if current.name != metric.name:
            results.append(current)
            continue
        hold = False
        if metric.judge is not None:
            m, state, judged = record_judge(metric, current.judge, m)
            current = current.model_copy(
                update={"judge": state, "judge_result": judged or current.judge_result}
            )
            hold = judged is not None and not judged.final
        r = current.model_dump()
        r["count"] += 1
        r["measurements"] = _kept(
            [*r["measurements"], m.model_dump()],
            spec.measurement_retention,
            bounds.metric_budget(len(spec.metrics)),
        )
        if m.phase == "Error":
            r["error"] += 1
            r["consecutive_error"] += 1
            r["error_since"] = r["error_since"] or fmt(now)  # the outage began
        else:
            r["consecutive_error"] = 0
            r["error_since"] = None
            key = {"Successful": "successful", "Failed": "failed", "Inconclusive": "inconclusive"}
            if not hold:  # a judge holding for more data is no inconclusive answer
                r[key[m.phase]] += 1
            r["consecutive_failed"] = r["consecutive_failed"] + 1 if m.phase == "Failed" else 0
        r["phase"], r["message"] = (
            _judge_phase(metric, r, current.judge_result, now)
            if metric.judge is not None
            else _metric_phase(metric, r, now)
        )
        r["message"] = bounds.clip(r["message"], bounds.MESSAGE + 200)
        interval = _seconds(metric.interval)
        if m.phase == "Error" and metric.interval is None:
            interval = ERROR_RETRY_SECONDS  # a blip must not use up the error limit at once
        if r["phase"] in TERMINAL:
            r["next_at"] = None
        else:
            r["next_at"] = fmt(now + timedelta(seconds=interval))
        results.append(MetricResult.model_validate(r))
    return verdict(spec, status.model_copy(update={"metric_results": results}), now)


_SCORED = ("Running", "Successful", "Failed", "Inconclusive")
_SCORE_PHASE = {"Fail": "Failed", "Pass": "Successful", "Inconclusive": "Inconclusive"}


def _scored(spec: AnalysisRunSpec, results: list[MetricResult]) -> list[MetricResult]:
    """With `judgeScore`, the judge metrics' verdicts count as one, by their weights; a
    judge metric in provider trouble (Error, Holding) still speaks for itself."""
    card = spec.judge_score
    judges = {m.name: m.judge for m in spec.metrics if m.judge is not None}
    if card is None or not judges:
        return results
    scored = [r for r in results if r.name in judges and r.phase in _SCORED]
    if not scored:  # an empty scorecard scores 100: never a pass by default
        return results
    judged = []
    for r in scored:
        judge = judges[r.name]
        assert judge is not None
        if r.judge_result is None:  # nothing judged yet: the score cannot be final
            return [r for r in results if r not in scored] + [
                MetricResult(name="judgeScore", phase="Running", message="still judging")
            ]
        judged.append((r.name, judge, r.judge_result))
    got = score(judged, card)
    phase = _SCORE_PHASE[got.verdict] if got.final else "Running"
    others = [r for r in results if r not in scored]
    return [*others, MetricResult(name="judgeScore", phase=phase, message=got.message)]


def verdict(spec: AnalysisRunSpec, status: AnalysisRunStatus, now: datetime) -> AnalysisRunStatus:
    """The run's phase: the worst of its metrics; a terminated run ends Successful if clean."""
    results = list(status.metric_results)
    if spec.terminate:
        results = [
            r.model_copy(
                update={
                    "phase": "Successful",
                    "next_at": None,
                    "message": r.message or "terminated",
                }
            )
            if r.phase in ("Running", "Pending")
            else r
            for r in results
        ]
    ranked = results if spec.terminate else _scored(spec, results)
    worst = min(ranked, key=lambda r: _SEVERITY.index(r.phase), default=None)
    phase = worst.phase if worst else "Successful"
    message = f"{worst.name}: {worst.message}" if worst and phase != "Running" else ""
    on_error = None
    if phase == "Error" and worst is not None:
        on_error = next(m.on_provider_error for m in spec.metrics if m.name == worst.name)
    finished = status.finished_at or (fmt(now) if phase in TERMINAL else None)
    return status.model_copy(
        update={
            "phase": phase,
            "message": message,
            "metric_results": results,
            "finished_at": finished,
            "on_error": on_error,
        }
    )
