"""A simulated clock around decide() and MemoryCluster, as the reconciler would drive them.

The driver holds what lives in Kubernetes between two reconciles: the Rollout's spec,
its status, its sluice.dev/action annotation, and the child Deployments (the
MemoryCluster). `step()` advances the clock, calls the engine once, applies the
actions it returns (removing the annotation on RemoveAction, as the reconciler
does) and keeps the new status.

It also holds the Rollout's AnalysisRuns (`runs`, passed as Observed.runs): CreateRun
adds one Running, TerminateRun ends it (terminating, Successful, as the executor does);
a test sets verdicts with `set_run` and fires alerts with `add_alert`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.api.rollout import Condition, RolloutStatus
from sluice.engine.decide import decide
from sluice.engine.gates import alert_run_prefix
from sluice.engine.hashing import template_hash
from sluice.engine.types import (
    CreateRun,
    Decision,
    DeleteRun,
    DeploySlot,
    Observed,
    RemoveAction,
    RolloutInput,
    RunObserved,
    ScaleSlot,
    SetTraffic,
    Slot,
    TerminateRun,
    TrafficPlan,
)
from sluice.sim.memory import MemoryCluster

EPOCH = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def template(image: str = "web:1", app: str = "web") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "web", "image": image}]},
    }


def revision(image: str) -> str:
    return template_hash(template(image))


def make_spec(
    steps: list[dict[str, Any]] | None = None,
    *,
    replicas: int = 4,
    image: str = "web:1",
    **extra: Any,
) -> dict[str, Any]:
    """A raw spec as the API server holds it (wire names, camelCase)."""
    canary: dict[str, Any] = {"steps": steps if steps is not None else [{"setWeight": 50}]}
    for wire in ("scaleDownDelaySeconds", "analysis", "postPromotionAnalysis"):
        if wire in extra:
            canary[wire] = extra.pop(wire)
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template(image),
        "strategy": {"canary": canary},
    }
    spec.update(extra)
    return spec


def with_image(spec: dict[str, Any], image: str) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    out["template"]["spec"]["containers"][0]["image"] = image
    return out


MAX_FOLLOW_UPS = 120  # one per step that moves traffic, at most: steps are capped at 100


class Driver:
    def __init__(
        self,
        spec: dict[str, Any],
        *,
        ready_delay: float = 2.0,
        broken: set[str] | None = None,
        name: str = "web",
    ) -> None:
        self.spec = copy.deepcopy(spec)
        self.status = RolloutStatus()
        self.cluster = MemoryCluster(ready_delay=ready_delay, broken_revisions=set(broken or ()))
        self.t = 0.0
        self.generation = 1
        self.annotation: str | None = None
        self.name = name
        self.last: Decision | None = None
        self.history: list[Decision] = []
        self.runs: dict[str, RunObserved] = {}  # AnalysisRuns by name
        self.created: list[str] = []  # every CreateRun, in order
        self.terminated: list[str] = []  # every TerminateRun, in order
        self.deleted: list[str] = []  # every DeleteRun, in order
        self.rejected: dict[str, str] = {}  # what the handler could not create -> why
        self.refuse: dict[str, str] = {}  # run-name substring -> why its creation fails

    # ------------------------------------------------------------ clock and engine

    @property
    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)

    def observe(self) -> Observed:
        return dataclasses.replace(
            self.cluster.observe(self.t), runs=dict(self.runs), rejected=dict(self.rejected)
        )

    def input(self) -> RolloutInput:
        return RolloutInput(
            name=self.name,
            namespace="default",
            generation=self.generation,
            spec=copy.deepcopy(self.spec),
            status=self.status,
            action=self.annotation,
        )

    def peek(self) -> Decision:
        """decide() on the current state, applying nothing."""
        return decide(self.input(), self.observe(), self.now)

    def step(
        self,
        seconds: float = 0.0,
        action: str | None = None,
        spec: dict[str, Any] | None = None,
        *,
        remove_annotation: bool = True,
    ) -> Decision:
        """Advance the clock, set the annotation / spec if given, reconcile once.

        `remove_annotation=False` simulates a crash after the status write but before
        the annotation was deleted.
        """
        self.t += seconds
        if spec is not None:
            if spec != self.spec:
                self.generation += 1
            self.spec = copy.deepcopy(spec)
        if action is not None:
            self.annotation = action
        decision = last = self._reconcile(remove_annotation)
        # Writing the routers' objects brings their watch events at once: the operator
        # reconciles again and counts the weight it verified. One step is that moment.
        for _ in range(MAX_FOLLOW_UPS):
            if not any(isinstance(a, SetTraffic) for a in last.actions):
                break
            more = last = self._reconcile(remove_annotation)
            decision = dataclasses.replace(
                more,
                actions=decision.actions + more.actions,
                events=decision.events + more.events,
                status_changed=decision.status_changed or more.status_changed,
            )
        self.last = decision
        return decision

    def _reconcile(self, remove_annotation: bool) -> Decision:
        decision = decide(self.input(), self.observe(), self.now)
        runs = [a for a in decision.actions if isinstance(a, CreateRun | TerminateRun | DeleteRun)]
        self.cluster.apply([a for a in decision.actions if a not in runs], self.t)
        self._apply_runs(runs)
        if remove_annotation and any(isinstance(a, RemoveAction) for a in decision.actions):
            self.annotation = None
        self.status = decision.status
        self.history.append(decision)
        return decision

    def run(self, seconds: float, tick: float = 1.0) -> list[Decision]:
        """Reconcile every `tick` seconds for `seconds` (a busy controller)."""
        out = []
        for _ in range(math.ceil(seconds / tick)):
            out.append(self.step(tick))
        return out

    def settle(self, limit: int = 50) -> Decision:
        """Reconcile at the current time until nothing is left to do."""
        decision = self.step(0)
        for _ in range(limit):
            if not decision.actions and not decision.status_changed:
                return decision
            decision = self.step(0)
        raise AssertionError(f"no fixed point after {limit} reconciles: {decision}")

    # ------------------------------------------------------------ analysis runs

    def _apply_runs(self, actions: list[CreateRun | TerminateRun | DeleteRun]) -> None:
        for act in actions:
            if isinstance(act, DeleteRun):
                self.deleted.append(act.name)
                self.runs.pop(act.name, None)
            elif isinstance(act, CreateRun):
                self.created.append(act.name)
                refused = [why for part, why in self.refuse.items() if part in act.name]
                if refused:
                    self.rejected[act.name] = refused[0]
                elif act.name not in self.runs:  # the API server would say AlreadyExists
                    self.runs[act.name] = RunObserved(
                        act.kind,
                        act.revision,
                        "Running",
                        step=act.step,
                        attempt=self._attempt_of(act.name, act.revision),
                    )
            else:
                self.terminated.append(act.name)
                run = self.runs.get(act.name)
                if run is not None:
                    done = run.phase in ("Pending", "Running")
                    phase = "Successful" if done else run.phase
                    self.runs[act.name] = dataclasses.replace(run, phase=phase, terminating=True)

    def run_name(self, part: str) -> str:
        """The one run whose name is `part` or contains it."""
        if part in self.runs:
            return part
        found = [name for name in self.runs if part in name]
        assert len(found) == 1, f"runs matching {part!r}: {found} (all: {sorted(self.runs)})"
        return found[0]

    def set_run(self, part: str, phase: str, message: str = "", on_error: str | None = None) -> str:
        """Give the run named by `part` a verdict (as its executor would); returns its name."""
        name = self.run_name(part)
        self.runs[name] = dataclasses.replace(
            self.runs[name], phase=phase, message=message, on_error=on_error
        )
        return name

    def add_alert(self, revision: str, message: str = "alert HighErrorRate firing") -> str:
        """A firing alert recorded as a Failed alert run of `revision`; returns its name."""
        prefix = alert_run_prefix(self.name, revision, self.status.attempt)
        name = f"{prefix}{len(self.runs):012x}"
        self.runs[name] = RunObserved(
            "alert", revision, "Failed", message, attempt=self.status.attempt
        )
        return name

    def _attempt_of(self, name: str, revision: str) -> int | None:
        """As the operator reads it: `<rollout>-<revision>-<attempt>-<kind>`."""
        head = name.removeprefix(f"{self.name}-{revision}-").split("-", 1)[0]
        return int(head) if head.isdigit() else None

    def running_runs(self) -> set[str]:
        """Runs still measuring that were not told to stop."""
        return {
            n
            for n, r in self.runs.items()
            if r.phase in ("Pending", "Running") and not r.terminating
        }

    # ------------------------------------------------------------ what a user sees

    def replicas(self, slot: Slot) -> int:
        """.spec.replicas of the slot's Deployment (0 when it does not exist)."""
        current = self.cluster.slots[slot]
        return 0 if current is None else current[1]

    def revision_of(self, slot: Slot) -> str | None:
        current = self.cluster.slots[slot]
        return None if current is None else current[0]

    def ready(self, slot: Slot) -> int:
        return self.observe().slots[slot].ready

    @property
    def traffic(self) -> TrafficPlan | None:
        return self.cluster.traffic

    def condition(self, kind: str) -> Condition:
        found = [c for c in self.status.conditions if c.type == kind]
        assert len(found) == 1, f"condition {kind}: {self.status.conditions}"
        return found[0]

    def true_conditions(self) -> set[str]:
        return {c.type for c in self.status.conditions if c.status == "True"}

    def reasons(self, decisions: list[Decision] | None = None) -> list[str]:
        decisions = self.history if decisions is None else decisions
        return [e.reason for d in decisions for e in d.events]


def serving_ready(observed: Observed, traffic: TrafficPlan | None) -> int:
    """Ready pods behind the traffic target: the stable slot, plus the canary slot if it
    takes traffic. Pods of any revision the slot runs count (Observed counts its own)."""
    if traffic is None:
        return 0
    total = observed.slots[traffic.stable_slot].ready
    if traffic.canary_slot is not None:
        total += observed.slots[traffic.canary_slot].ready
    return total


def workload_actions(decision: Decision) -> list[DeploySlot | ScaleSlot | SetTraffic]:
    return [a for a in decision.actions if isinstance(a, DeploySlot | ScaleSlot | SetTraffic)]
