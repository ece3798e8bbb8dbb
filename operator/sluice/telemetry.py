"""Sluice's own /metrics (prometheus_client)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "sluice_reconcile_total", "Reconciles of Rollouts, by result.", ["result"], registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "sluice_reconcile_duration_seconds",
    "Time to reconcile one Rollout, API calls included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
API_CALLS = Counter(
    "sluice_api_calls_total", "Kubernetes API writes, by kind of call.", ["call"], registry=REGISTRY
)
QUEUE_DEPTH = Gauge(
    "sluice_workqueue_depth", "Rollouts waiting to be reconciled.", registry=REGISTRY
)
SCHEDULED = Gauge("sluice_scheduled_wakeups", "Rollouts with a timed wake-up.", registry=REGISTRY)
ROLLOUTS = Gauge("sluice_rollouts", "Rollouts watched.", registry=REGISTRY)
PHASE = Gauge(
    "sluice_rollout_phase",
    "1 for the Rollout's current phase.",
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
EVENTS = Counter(
    "sluice_rollout_events_total",
    "Transitions reported as Kubernetes Events, by reason.",
    ["namespace", "rollout", "reason"],
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

PHASES = ("Progressing", "Paused", "Healthy", "Degraded")


def set_rollout(
    namespace: str, rollout: str, phase: str | None, weight: int, step: int | None
) -> None:
    for name in PHASES:
        PHASE.labels(namespace, rollout, name).set(1 if name == phase else 0)
    WEIGHT.labels(namespace, rollout).set(weight)
    STEP.labels(namespace, rollout).set(-1 if step is None else step)


def forget_rollout(namespace: str, rollout: str) -> None:
    for name in PHASES:
        _remove(PHASE, namespace, rollout, name)
    _remove(WEIGHT, namespace, rollout)
    _remove(STEP, namespace, rollout)


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


MEASUREMENTS = Counter(
    "sluice_analysis_measurements_total",
    "Analysis measurements taken, by verdict.",
    ["phase"],
    registry=REGISTRY,
)
