"""Sluice's own /metrics (prometheus_client).

Labels are namespace, rollout, metric and small fixed sets (phase, result, cause): never a
revision hash, so series do not pile up rollout after rollout; a deleted Rollout's series
are removed (forget_rollout). A Rollout's phase is one series (its current phase, 1), not
one per phase it could be in: at 10,000 Rollouts every series per Rollout is 10,000 more
to build at each scrape.
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
from datetime import datetime
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from sluice import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)  # process_*, python_info, python_gc_*

BUILD = Gauge(
    "sluice_build_info", "Always 1; the labels say which build runs.", ["version", "python"],
    registry=REGISTRY,
)  # fmt: skip
BUILD.labels(__version__, platform.python_version()).set(1)

RECONCILES = Counter(
    "sluice_reconcile_total", "Reconciles of Rollouts, by result.", ["result"], registry=REGISTRY
)
# Fine below 250 ms, where reconciles are: 5/10/25/50/100/250 ms are all bucket edges.
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.035, 0.05, 0.075,
                     0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)  # fmt: skip
RECONCILE_SECONDS = Histogram(
    "sluice_reconcile_duration_seconds",
    "Time to reconcile one Rollout, API calls included.",
    buckets=RECONCILE_BUCKETS,
    registry=REGISTRY,
)
RECONCILE_OWN_SECONDS = Histogram(
    "sluice_reconcile_own_seconds",
    "Time to reconcile one Rollout, less the time it waited for the API server.",
    buckets=RECONCILE_BUCKETS,
    registry=REGISTRY,
)
API_CALLS = Counter(
    "sluice_api_calls_total", "Kubernetes API writes, by kind of call.", ["call"], registry=REGISTRY
)
API_REQUESTS = Counter(
    "sluice_api_requests_total",
    "Every request of the operator's Kubernetes client (reads too; not kopf's watches).",
    ["call"],
    registry=REGISTRY,
)
# Bounded: the groups and resources are those Sluice's code and kopf's watches name.
API_ACCESS = Counter(
    "sluice_api_access_total",
    "Every request to the API server (Sluice's client and kopf's), as its authorizer sees it.",
    ["group", "resource", "verb", "scope"],
    registry=REGISTRY,
)
WATCH_EVENTS = Counter(
    "sluice_watch_events_total",
    "Watch events received, by kind; foreign: not Sluice's (the selectors should keep them away).",
    ["kind", "origin"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "sluice_workqueue_depth", "Rollouts waiting to be reconciled.", registry=REGISTRY
)
SCHEDULED = Gauge("sluice_scheduled_wakeups", "Rollouts with a timed wake-up.", registry=REGISTRY)
ROLLOUTS = Gauge("sluice_rollouts", "Rollouts watched.", registry=REGISTRY)
PHASE = Gauge(
    "sluice_rollout_phase",
    "1, labelled with the Rollout's current phase (no series for the phases it is not in).",
    ["namespace", "rollout", "phase"],
    registry=REGISTRY,
)
WEIGHT = Gauge(
    "sluice_rollout_canary_weight",
    "Percent of traffic on the canary.",
    ["namespace", "rollout"],
    registry=REGISTRY,
)
STEP = Gauge(
    "sluice_rollout_step",
    "Current step index (-1: no canary).",
    ["namespace", "rollout"],
    registry=REGISTRY,
)
# Fleet-wide, by reason and type: per Rollout, a counter is series for every reason it
# ever posted (the Rollout's own Events are in Kubernetes).
EVENTS = Counter(
    "sluice_rollout_events_total",
    "Transitions reported as Kubernetes Events, by reason and type (Normal, Warning).",
    ["reason", "type"],
    registry=REGISTRY,
)

LEADER = Gauge(
    "sluice_leader",
    "1 while this replica holds the leader Lease (or runs without election), 0 on standby.",
    registry=REGISTRY,
)
LEADER_TRANSITIONS = Counter(
    "sluice_leader_acquisitions_total", "Times this replica became the leader.", registry=REGISTRY
)

_phases: dict[tuple[str, str], str] = {}  # the phase each Rollout's series is labelled with


def set_rollout(
    namespace: str, rollout: str, phase: str | None, weight: int, step: int | None
) -> None:
    key = (namespace, rollout)
    if _phases.get(key) != phase:
        _forget_phase(key)
        if phase is not None:
            PHASE.labels(namespace, rollout, phase).set(1)
            _phases[key] = phase
    WEIGHT.labels(namespace, rollout).set(weight)
    STEP.labels(namespace, rollout).set(-1 if step is None else step)
    if weight == 0:
        reverted(namespace, rollout)


def count_event(namespace: str, rollout: str, reason: str, kind: str) -> None:
    """One Event the reconciler posts (`kind`: the Event's type, Normal or Warning)."""
    EVENTS.labels(reason, kind).inc()


def _forget_phase(key: tuple[str, str]) -> None:
    old = _phases.pop(key, None)
    if old is not None:
        _remove(PHASE, *key, old)


def forget_rollout(namespace: str, rollout: str) -> None:
    _forget_phase((namespace, rollout))
    _remove(WEIGHT, namespace, rollout)
    _remove(STEP, namespace, rollout)
    for metric, verdict in _METRICS.pop((namespace, rollout), {}).items():
        _remove(ANALYSIS_VALUE, namespace, rollout, metric)
        _remove(ANALYSIS_PHASE, namespace, rollout, metric, verdict)
    _started.pop((namespace, rollout), None)
    _step_started.pop((namespace, rollout), None)
    _aborted.pop((namespace, rollout), None)


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


PROMETHEUS_QUERIES = Counter(
    "sluice_prometheus_queries_total",
    "Prometheus queries of analyses: sent (an HTTP request) or deduplicated (answered by "
    "an identical query in flight or answered less than the sharing window ago).",
    ["outcome"],
    registry=REGISTRY,
)
for _outcome in ("sent", "deduplicated"):
    PROMETHEUS_QUERIES.labels(_outcome)
MEASUREMENTS = Counter(
    "sluice_analysis_measurements_total",
    "Analysis measurements taken, by verdict.",
    ["phase"],
    registry=REGISTRY,
)


# ---------------------------------------------------------------- analysis, per metric

ANALYSIS_VALUE = Gauge(
    "sluice_analysis_metric_value",
    "Last value measured by an analysis metric (NaN when not a single number).",
    ["namespace", "rollout", "metric"],
    registry=REGISTRY,
)
ANALYSIS_PHASE = Gauge(
    "sluice_analysis_metric_phase",
    "1, labelled with the analysis metric's current verdict (of the Rollout's latest run).",
    ["namespace", "rollout", "metric", "phase"],
    registry=REGISTRY,
)
# Per Rollout, its metrics and the verdict each one's series is labelled with: one series
# per metric, not one per verdict it could have.
_METRICS: dict[tuple[str, str], dict[str, str]] = {}


def record_analysis(namespace: str, rollout: str, status: Any, taken: list[Any]) -> None:
    """After a run's measurements: each metric's last value and verdict (AnalysisRunStatus).
    Nothing taken (no Rollout any more, or not due): nothing to record."""
    if not taken:
        return
    verdicts = _METRICS.setdefault((namespace, rollout), {})
    for result in status.metric_results:
        if result.measurements:
            ANALYSIS_VALUE.labels(namespace, rollout, result.name).set(
                _number(result.measurements[-1].value)
            )
        old = verdicts.get(result.name)
        if old != result.phase:
            if old is not None:
                _remove(ANALYSIS_PHASE, namespace, rollout, result.name, old)
            ANALYSIS_PHASE.labels(namespace, rollout, result.name, result.phase).set(1)
            verdicts[result.name] = result.phase


def _number(value: str) -> float:
    try:
        return float(value.strip().strip("[]"))
    except ValueError:
        return math.nan


# ---------------------------------------------------------------- from the Events posted

ROLLOUT_SECONDS = Histogram(
    "sluice_rollout_duration_seconds",
    "From a canary's start to its promotion or abort.",
    ["result"],
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
    registry=REGISTRY,
)
STEP_SECONDS = Histogram(
    "sluice_step_duration_seconds",
    "Time spent in one step of a canary.",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
ABORTS = Counter(
    "sluice_aborts_total",
    "Canaries aborted, by cause (the abort reason: AnalysisFailed, UserAbort, ...).",
    ["cause"],
    registry=REGISTRY,
)
DETECT_SECONDS = Histogram(
    "sluice_time_to_detect_seconds",
    "From the first failing measurement of the run that aborted to the abort decision.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
REVERT_SECONDS = Histogram(
    "sluice_time_to_revert_seconds",
    "From the abort decision to traffic on stable applied by the routers and recorded.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)
# Series that exist from the start (0), so increase() also sees the first observation.
for _result in ("promoted", "aborted"):
    ROLLOUT_SECONDS.labels(_result)
ABORT_CAUSES = ("UserAbort", "AnalysisFailed", "AnalysisError", "AlertFired",
                "ProgressDeadlineExceeded", "Other")  # fmt: skip
for _cause in ABORT_CAUSES:
    ABORTS.labels(_cause)
_started: dict[tuple[str, str], float] = {}
_step_started: dict[tuple[str, str], float] = {}
_aborted: dict[tuple[str, str], float] = {}
_CAUSE_LEN = 40  # abort reasons are CamelCase words; anything longer is not one


def on_event(rollout: dict[str, Any], note: Any, now: datetime, runs: list[dict[str, Any]]) -> None:
    """Durations and aborts from the Events the reconciler posts (`now`: its decision time)."""
    meta = rollout["metadata"]
    key = (meta["namespace"], meta["name"])
    at = now.timestamp()
    if note.reason in ("RolloutStarted", "CanaryReplaced", "Retried"):
        _started[key] = _step_started[key] = at
    elif note.reason == "StepReached":
        if key in _step_started:
            STEP_SECONDS.observe(max(0.0, at - _step_started[key]))
        _step_started[key] = at
    elif note.reason in ("Completed", "Aborted"):
        result = "promoted" if note.reason == "Completed" else "aborted"
        if key in _started:
            ROLLOUT_SECONDS.labels(result).observe(max(0.0, at - _started.pop(key)))
        if key in _step_started and note.reason == "Completed":
            STEP_SECONDS.observe(max(0.0, at - _step_started[key]))
        _step_started.pop(key, None)
    if note.reason == "Aborted":
        cause = note.message.split(":", 1)[0].strip()
        ABORTS.labels(cause if cause.isalnum() and len(cause) <= _CAUSE_LEN else "Other").inc()
        _aborted[key] = at
        first = _first_failure(runs)
        if first is not None:
            DETECT_SECONDS.observe(max(0.0, at - first))


def _first_failure(runs: list[dict[str, Any]]) -> float | None:
    """Start of the unbroken series of failing measurements that ends the latest failed run."""
    failed = [r for r in runs if (r.get("status") or {}).get("phase") in ("Failed", "Error")]
    if not failed:
        return None
    run = max(failed, key=lambda r: (r.get("status") or {}).get("finishedAt") or "")
    first: float | None = None
    for result in (run.get("status") or {}).get("metricResults") or []:
        if result.get("phase") not in ("Failed", "Error"):
            continue
        since: str | None = None
        for m in result.get("measurements") or []:
            since = (since or m.get("startedAt")) if m.get("phase") == result["phase"] else None
        if since:
            stamp = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
            first = stamp if first is None else min(first, stamp)
    return first


def reverted(namespace: str, rollout: str) -> None:
    """The reconcile that aborted has applied and recorded the revert."""
    at = _aborted.pop((namespace, rollout), None)
    if at is not None:
        REVERT_SECONDS.observe(max(0.0, time.time() - at))


# ---------------------------------------------------------------- notifications

NOTIFICATIONS = Counter(
    "sluice_notifications_total",
    "Notifications, by channel (webhook, slack) and result (delivered, retried, failed, "
    "dropped: a queue was full or the endpoint's breaker was open).",
    ["channel", "result"],
    registry=REGISTRY,
)
for _channel in ("webhook", "slack"):
    for _result in ("delivered", "retried", "failed", "dropped"):
        NOTIFICATIONS.labels(_channel, _result)
NOTIFICATIONS.labels("any", "dropped")
NOTIFY_SECONDS = Histogram(
    "sluice_notification_delivery_seconds",
    "From the Event to the endpoint's 2xx answer, retries included.",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
for _channel in ("webhook", "slack"):
    NOTIFY_SECONDS.labels(_channel)
NOTIFY_QUEUE = Gauge(
    "sluice_notification_queue_depth", "Notifications waiting to be sent.", registry=REGISTRY
)
