"""Run a Rollout through the real engine on the in-memory cluster, on a simulated clock.

The Rollout's template is the new version; the simulation first makes a
previous version stable, then applies the file's template, exactly as a user's
`kubectl apply` of a changed manifest would.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.api.duration import parse_duration
from sluice.api.rollout import RolloutStatus
from sluice.engine import Decision, RemoveAction, RolloutInput, decide
from sluice.engine.hashing import template_hash
from sluice.engine.validate import InvalidSpec, check_action, parse_spec
from sluice.sim.memory import MemoryCluster

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PREVIOUS = "sluice.dev/simulated-previous"
MAX_DECISIONS = 1_000_000


@dataclass(frozen=True)
class Scenario:
    """What happens during the simulation. Times are seconds from the template change."""

    ready_after: float = 2.0  # seconds from scale-up to Ready
    canary_ready: bool = True  # False: canary pods never become Ready
    actions: list[tuple[float, str]] = field(default_factory=list)
    max_seconds: float = 4 * 3600.0

    @classmethod
    def parse(cls, data: dict[str, Any] | None) -> Scenario:
        data = data or {}
        known = {"readyAfter", "canaryReady", "actions", "maxDuration"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidSpec(f"scenario: unknown field(s) {', '.join(unknown)}")
        actions = []
        for i, item in enumerate(data.get("actions") or []):
            if not isinstance(item, dict) or "at" not in item or "action" not in item:
                raise InvalidSpec(f"scenario.actions[{i}]: needs `at` and `action`")
            try:
                check_action(str(item["action"]))
                at = parse_duration(item["at"])
            except (InvalidSpec, ValueError) as exc:
                raise InvalidSpec(f"scenario.actions[{i}]: {exc}") from None
            actions.append((at, str(item["action"])))
        try:
            return cls(
                ready_after=parse_duration(data.get("readyAfter", 2)),
                canary_ready=bool(data.get("canaryReady", True)),
                actions=sorted(actions),
                max_seconds=parse_duration(data.get("maxDuration", "4h")),
            )
        except ValueError as exc:
            raise InvalidSpec(f"scenario: {exc}") from None


@dataclass(frozen=True)
class Frame:
    """One decision of the engine, as the timeline shows it."""

    t: float
    phase: str
    step: int | None
    weight: int
    stable: int
    canary: int
    events: list[tuple[str, str, str]]  # (type, reason, message)


@dataclass
class Result:
    verdict: str  # promoted | aborted | paused | invalid
    seconds: float
    frames: list[Frame]
    status: RolloutStatus
    reason: str = ""

    @property
    def exit_code(self) -> int:
        return {"promoted": 0, "aborted": 1, "paused": 2, "invalid": 3}[self.verdict]


def _previous_template(template: dict[str, Any]) -> dict[str, Any]:
    older = copy.deepcopy(template)
    meta = older.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), PREVIOUS: "true"}
    return older


def simulate(
    rollout: dict[str, Any],
    scenario: Scenario,
    on_frame: Callable[[Frame], None] | None = None,
) -> Result:
    spec_new = rollout.get("spec") or {}
    meta = rollout.get("metadata") or {}
    try:
        parsed = parse_spec(spec_new)
    except InvalidSpec as exc:
        return Result("invalid", 0.0, [], RolloutStatus(), str(exc))
    spec_old = {**spec_new, "template": _previous_template(spec_new["template"])}
    canary_revision = template_hash(parsed.template)
    cluster = MemoryCluster(ready_delay=scenario.ready_after)
    if not scenario.canary_ready:
        cluster.broken_revisions.add(canary_revision)
    name, namespace = meta.get("name", "rollout"), meta.get("namespace", "default")
    status = RolloutStatus()

    def run(spec: dict[str, Any], t: float, action: str | None) -> Decision:
        nonlocal status
        inp = RolloutInput(name, namespace, 1, spec, status, action)
        decision = decide(inp, cluster.observe(t), EPOCH + timedelta(seconds=t))
        cluster.apply(decision.actions, t)
        status = decision.status
        return decision

    # Make the previous version stable first (its time is before t=0 and not shown).
    t = -scenario.ready_after - 1
    for _ in range(4):
        run(spec_old, t, None)
        t += scenario.ready_after + 0.001

    frames: list[Frame] = []
    pending = list(scenario.actions)
    t, action = 0.0, None
    for _ in range(MAX_DECISIONS):
        decision = run(spec_new, t, action)
        if any(isinstance(a, RemoveAction) for a in decision.actions):
            action = None
        frame = _frame(t, status, decision)
        if frame.events or not frames or _moved(frames[-1], frame):
            frames.append(frame)
            if on_frame:
                on_frame(frame)
        if status.stable_revision == canary_revision and not status.canary_revision:
            return Result("promoted", t, frames, status)
        if status.abort is not None and not any(at >= t for at, _ in pending):
            return Result("aborted", t, frames, status, status.abort.reason)
        wakeups = [
            x
            for x in (
                t + decision.requeue_after if decision.requeue_after is not None else None,
                cluster.next_ready(t),
                pending[0][0] if pending else None,
            )
            if x is not None
        ]
        if action is not None:
            wakeups.append(t)  # the annotation is consumed on the next pass
        if not wakeups or min(wakeups) > scenario.max_seconds:
            return Result("paused", t, frames, status, status.message)
        t = max(t, min(wakeups))
        while pending and pending[0][0] <= t and action is None:
            action = pending.pop(0)[1]
    return Result("paused", t, frames, status, "simulation did not settle")


def _frame(t: float, status: RolloutStatus, decision: Decision) -> Frame:
    return Frame(
        t=t,
        phase=status.phase or "",
        step=status.current_step_index,
        weight=status.canary_weight,
        stable=status.stable.replicas if status.stable else 0,
        canary=status.canary.replicas if status.canary else 0,
        events=[(e.type, e.reason, e.message) for e in decision.events],
    )


def _moved(a: Frame, b: Frame) -> bool:
    return (a.phase, a.step, a.weight, a.stable, a.canary) != (
        b.phase,
        b.step,
        b.weight,
        b.stable,
        b.canary,
    )
