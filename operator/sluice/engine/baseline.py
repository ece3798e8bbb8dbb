"""The baseline Deployment: the stable's template at the canary's size, beside the canary.

A judge metric with `baseline: baseline` compares the canary with pods of the stable
version that started with it (same age, same share of traffic shifts), not with the
long-running stable. It exists exactly while a canary is in progress and not aborted;
what is wanted is derived from the status and the observed children every time, so an
operator killed at any moment creates, resizes or removes it on its next decision.
"""

from __future__ import annotations

from sluice.api.rollout import RolloutStatus
from sluice.engine.types import Action, Observed, RemoveBaseline, SetBaseline


def baseline_actions(status: RolloutStatus, seen: Observed) -> list[Action]:
    canary, stable = status.canary, status.stable_revision
    running = bool(status.canary_revision) and status.abort is None and canary is not None
    if seen.baseline_wanted and running and canary is not None and stable and status.stable_slot:
        b = seen.baseline
        if not b.exists or b.revision != stable or b.replicas != canary.replicas:
            return [SetBaseline(status.stable_slot, stable, canary.replicas)]
        return []
    return [RemoveBaseline()] if seen.baseline.exists else []
