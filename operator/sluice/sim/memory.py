"""Deployments and a router held in memory; pods become Ready after a delay, or never."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sluice.engine.types import (
    SLOTS,
    Action,
    DeploySlot,
    Observed,
    RemoveAction,
    ScaleSlot,
    SetTraffic,
    Slot,
    SlotObserved,
    TrafficObserved,
    TrafficPlan,
)


@dataclass
class _Pod:
    revision: str
    ready_at: float | None  # None: never Ready (a broken canary)


@dataclass
class MemoryCluster:
    """Applies DeploySlot / ScaleSlot / SetTraffic; `observe(now)` reports what is Ready."""

    ready_delay: float = 2.0
    broken_revisions: set[str] = field(default_factory=set)
    ready_delays: dict[str, float] = field(default_factory=dict)  # by revision, if not the default
    slots: dict[Slot, tuple[str, int] | None] = field(
        default_factory=lambda: {"a": None, "b": None}
    )
    pods: dict[Slot, list[_Pod]] = field(default_factory=lambda: {"a": [], "b": []})
    traffic: TrafficPlan | None = None
    annotation_removed: int = 0

    def apply(self, actions: list[Action], now: float) -> None:
        for action in actions:
            if isinstance(action, DeploySlot):
                self.slots[action.slot] = (action.revision, action.replicas)
                self._reconcile(action.slot, now)
            elif isinstance(action, ScaleSlot):
                current = self.slots[action.slot]
                if current is not None:
                    self.slots[action.slot] = (current[0], action.replicas)
                    self._reconcile(action.slot, now)
            elif isinstance(action, SetTraffic):
                self.traffic = action.plan  # applied and read back at once: verified
            elif isinstance(action, RemoveAction):
                self.annotation_removed += 1
            # AnalysisRun and baseline Deployment actions are not this cluster's

    def _reconcile(self, slot: Slot, now: float) -> None:
        current = self.slots[slot]
        if current is None:
            return
        revision, replicas = current
        pods = [p for p in self.pods[slot] if p.revision == revision]
        pods = pods[:replicas]
        broken = revision in self.broken_revisions
        while len(pods) < replicas:
            delay = self.ready_delays.get(revision, self.ready_delay)
            pods.append(_Pod(revision, None if broken else now + delay))
        self.pods[slot] = pods

    def observe(self, now: float) -> Observed:
        slots = {}
        for slot in SLOTS:
            current = self.slots[slot]
            if current is None:
                slots[slot] = SlotObserved()
                continue
            revision, replicas = current
            pods = self.pods[slot]
            ready = sum(1 for p in pods if p.ready_at is not None and p.ready_at <= now)
            slots[slot] = SlotObserved(True, revision, replicas, len(pods), ready)
        return Observed(
            slots=slots, traffic=TrafficObserved(self.traffic, self.traffic is not None)
        )

    def next_ready(self, now: float) -> float | None:
        times = [
            p.ready_at for ps in self.pods.values() for p in ps if p.ready_at and p.ready_at > now
        ]
        return min(times) if times else None

    def copy(self) -> MemoryCluster:
        return replace(
            self,
            slots=dict(self.slots),
            pods={k: list(v) for k, v in self.pods.items()},
            broken_revisions=set(self.broken_revisions),
            ready_delays=dict(self.ready_delays),
        )
