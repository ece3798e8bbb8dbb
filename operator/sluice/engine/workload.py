"""spec.workloadRef: when the user's own Deployment gives its pods up to the Rollout."""

from __future__ import annotations

from sluice.api.rollout import RolloutStatus
from sluice.engine.types import ScaleWorkload, WorkloadObserved


def scale_workload(
    replicas: int, status: RolloutStatus, stable_ready: int, seen: WorkloadObserved | None
) -> ScaleWorkload | None:
    """Only ever down, and only by pods the Rollout has Ready: no moment below capacity."""
    if seen is None or seen.scale_down == "never":
        return None
    if seen.scale_down == "onsuccess":
        healthy = status.phase == "Healthy" and not status.canary_revision
        want = 0 if healthy and stable_ready >= replicas else seen.replicas
    else:  # progressively
        want = max(0, replicas - stable_ready)
    return ScaleWorkload(seen.name, want) if want < seen.replicas else None
