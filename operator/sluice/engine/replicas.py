"""Replica arithmetic of the replica-ratio canary (no traffic router)."""

from __future__ import annotations

import math


def canary_replicas(replicas: int, weight: int) -> int:
    """Pods the canary needs to carry `weight` percent; rounded up so 5 % of 1 is 1 pod."""
    return math.ceil(replicas * weight / 100)


def stable_floor(replicas: int, weight: int) -> int:
    """Pods the stable keeps at `weight` percent for the canary; rounded up too."""
    return math.ceil(replicas * (100 - weight) / 100)


def stable_target(replicas: int, weight: int, canary_ready: int) -> int:
    """Shrink the stable only by as many pods as the canary has Ready ones.

    Ready capacity (stable + canary) therefore never drops below `replicas`.
    """
    want_canary = canary_replicas(replicas, weight)
    return max(stable_floor(replicas, weight), replicas - min(canary_ready, want_canary))


def retiring_target(current: int, replicas: int, stable_ready: int) -> int:
    """A slot being emptied goes down only as the stable becomes Ready to replace it."""
    return max(0, min(current, replicas - stable_ready))
