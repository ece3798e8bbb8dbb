"""Gradual rollback: the canary's weight walked back down, step by step, to 0.

Started by `sluice.dev/action: rollback-gradually` on a canary in progress. Each
setWeight of the walk moves capacity first and traffic second (the stable is Ready
for its share before it gets it); pauses hold. The background analysis and alerts
still judge the canary while it has traffic: a failure aborts, which is instant.
At the end of the walk the canary is aborted with reason GradualRollback.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from sluice.api.duration import parse_duration
from sluice.api.rollback import DEFAULT_PAUSE_SECONDS, DEFAULT_WEIGHTS, RollbackProgress
from sluice.api.rollout import RolloutSpec
from sluice.engine import replicas as rep
from sluice.engine.timefmt import fmt, since

if TYPE_CHECKING:
    from sluice.engine.decide import _Decider

Stage = tuple[str, float]  # ("weight", percent) or ("pause", seconds)


def walk_of(spec: RolloutSpec, from_weight: int) -> list[Stage]:
    """The stages below `from_weight`, ending at 0."""
    configured = spec.strategy.canary.gradual_rollback
    stages: list[Stage] = []
    if configured is not None and configured.steps:
        for step in configured.steps:
            if step.set_weight is not None:
                if step.set_weight < from_weight:
                    stages.append(("weight", step.set_weight))
            elif step.pause is not None and stages:
                stages.append(("pause", parse_duration(step.pause.duration)))
    else:
        for weight in (w for w in DEFAULT_WEIGHTS if w < from_weight):
            stages += [("weight", weight), ("pause", DEFAULT_PAUSE_SECONDS)]
    if not stages or stages[-1] != ("weight", 0):
        stages.append(("weight", 0))
    return stages


def check_rollback(spec: RolloutSpec) -> list[str]:
    configured = spec.strategy.canary.gradual_rollback
    weights = [s.set_weight for s in (configured.steps if configured else [])]
    seen = [w for w in weights if w is not None]
    if any(later > earlier for earlier, later in itertools.pairwise(seen)):
        return ["spec.strategy.canary.gradualRollback.steps: weights may not go up"]
    return []


def start(d: _Decider, action: str) -> None:
    s = d.s
    if s.gradual_rollback is not None:
        d._event("ActionIgnored", f"{action}: a gradual rollback is under way", warning=True)
    elif not s.canary_revision or s.abort or d.replacing:
        d._event("ActionIgnored", f"{action}: no canary is in progress", warning=True)
    else:
        s.gradual_rollback = RollbackProgress(from_weight=s.canary_weight, started_at=fmt(d.now))
        s.pause_start_time = None
        stages = ", ".join(
            f"{v:g} %" if k == "weight" else f"pause {v:g}s"
            for k, v in walk_of(d.spec, s.canary_weight)
        )
        d._event(
            "RollbackStarted",
            f"walking canary {s.canary_revision} back from {s.canary_weight} %: {stages}",
            warning=True,
        )


def walk(d: _Decider, paused: bool) -> None:
    """One decision of the walk: finish what stages are done, size the slots for the rest."""
    s = d.s
    progress = s.gradual_rollback
    assert progress is not None
    stages = walk_of(d.spec, progress.from_weight)
    index = progress.step_index
    while index < len(stages):
        kind, value = stages[index]
        if kind == "weight":
            if not _at_weight(d, int(value)):
                break
        else:
            _size(d, s.canary_weight)
            if not s.pause_start_time:
                s.pause_start_time = fmt(d.now)
            left = value - since(s.pause_start_time, d.now)
            if left > 0:
                if not paused:
                    d._due_in(left)
                break
        if paused:
            break
        index += 1
        s.pause_start_time = None
        if index < len(stages):
            d._event("RollbackStep", f"gradual rollback at {s.canary_weight} %")
    s.gradual_rollback = progress.model_copy(update={"step_index": index})
    if index >= len(stages):
        d._abort(
            "GradualRollback",
            f"canary walked back from {progress.from_weight} % to 0 by sluice.dev/action",
        )
        d._aborted()
        return
    d.waiting_for = f"gradual rollback, stage {index + 1}/{len(stages)}"


def _at_weight(d: _Decider, weight: int) -> bool:
    """Capacity first: the stable Ready for its share; then the routers carry `weight`."""
    s = d.s
    _size(d, weight)
    floor = rep.stable_floor(d.replicas, weight)
    if d._ready(d.stable_slot, s.stable_revision) < floor:
        d.waiting_for = f"stable at {floor} ready before the canary goes to {weight} %"
        return False
    if not d.traffic_at(0, weight, routes_through=0):  # header routes end with the walk
        return False
    s.canary_weight = weight
    return True


def _size(d: _Decider, weight: int) -> None:
    """The stable grows to its share at once; the canary shrinks only as it is replaced."""
    s, replicas = d.s, d.replicas
    canary, stable = d.canary_slot, d.stable_slot
    floor = rep.stable_floor(replicas, weight)
    if d.routed and not d.dynamic:
        floor = replicas
    stable_now = d.obs.slots[stable].replicas
    d.targets[stable] = (min(replicas, max(floor, stable_now)), False)
    stable_ready = d._ready(stable, s.stable_revision)
    goal = rep.canary_replicas(replicas, weight)
    current = d.obs.slots[canary].replicas
    keep = max(goal, min(current, replicas - stable_ready))
    d.targets[canary] = (keep, True)
