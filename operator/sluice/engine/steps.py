"""Each step kind in one place: what it does when reached, its goal, its text, its checks.

A new step kind is one class here and one field on `CanaryStep`. The decider calls
`advance` for the current step: DONE moves to the next step in the same decision,
WAIT holds (a timer, a watch event or a human brings it back), ABORTED ends the canary.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Protocol

from sluice.api.rollout import CanaryStep, RolloutSpec
from sluice.api.traffic import SetCanaryScale as CanaryScale
from sluice.engine.gates import run_name
from sluice.engine.jobs import job_name
from sluice.engine.timefmt import fmt, since
from sluice.engine.types import CreateJob

if TYPE_CHECKING:
    from sluice.engine.decide import _Decider


class Progress(Enum):
    DONE = "done"
    WAIT = "wait"
    ABORTED = "aborted"


class StepKind(Protocol):
    field: str  # the CanaryStep attribute that makes a step of this kind

    def describe(self, step: CanaryStep) -> str: ...

    def check(self, spec: RolloutSpec, index: int, where: str) -> list[str]: ...

    def advance(self, d: _Decider, step: CanaryStep, index: int, paused: bool) -> Progress: ...


def _needs_router(spec: RolloutSpec, where: str, what: str) -> list[str]:
    if spec.strategy.traffic_routing() is None:
        return [f"{where}.{what}: needs spec.strategy.canary.trafficRouting"]
    return []


class SetWeight:
    field = "set_weight"

    def describe(self, step: CanaryStep) -> str:
        return f"setWeight {step.set_weight}"

    def check(self, spec: RolloutSpec, index: int, where: str) -> list[str]:
        steps = spec.strategy.canary.steps
        weight = steps[index].set_weight or 0
        earlier = [(i, s.set_weight) for i, s in enumerate(steps[:index]) if s.set_weight]
        problems = []
        if earlier and weight < (earlier[-1][1] or 0):
            last_index, last = earlier[-1]
            problems.append(
                f"{where}.setWeight: {weight} is lower than {last} at steps[{last_index}]; "
                "weights may not go down"
            )
        scale = canary_scale(spec, index)
        if weight > 0 and scale is not None and (scale.replicas == 0 or scale.weight == 0):
            problems.append(
                f"{where}.setWeight: {weight} % of traffic with setCanaryScale of 0 pods would "
                "send requests to no Ready pod"
            )
        return problems

    def advance(self, d: _Decider, step: CanaryStep, index: int, paused: bool) -> Progress:
        weight = step.set_weight or 0
        if not d.canary_has_pods(index, paused):
            return Progress.WAIT
        if not d.traffic_at(index, weight, routes_through=index):
            return Progress.WAIT
        d.s.canary_weight = weight
        return Progress.DONE


class Pause:
    field = "pause"

    def describe(self, step: CanaryStep) -> str:
        assert step.pause is not None
        if step.pause.duration is None:
            return "pause until promoted"
        return f"pause {step.pause.duration}"

    def check(self, spec: RolloutSpec, index: int, where: str) -> list[str]:
        return []

    def advance(self, d: _Decider, step: CanaryStep, index: int, paused: bool) -> Progress:
        assert step.pause is not None
        s = d.s
        if not s.pause_start_time:
            s.pause_start_time = fmt(d.now)
        seconds = step.pause.seconds()
        if seconds is None:
            return Progress.WAIT
        left = seconds - since(s.pause_start_time, d.now)
        if left > 0:
            if not paused:
                d._due_in(left)
            return Progress.WAIT
        return Progress.DONE


class Analysis:
    field = "analysis"

    def describe(self, step: CanaryStep) -> str:
        return "analysis"

    def check(self, spec: RolloutSpec, index: int, where: str) -> list[str]:
        return []

    def advance(self, d: _Decider, step: CanaryStep, index: int, paused: bool) -> Progress:
        name = run_name(d.inp.name, d.revision, d.s.attempt, "step", index)
        verdict = d._run_gate(name, "step", index)
        if verdict.verdict == "abort":
            d._abort(verdict.reason, verdict.message)
            d._aborted()
            return Progress.ABORTED
        if verdict.verdict == "pause":
            d.held = verdict
        return Progress.DONE if verdict.verdict == "pass" else Progress.WAIT


class SetCanaryScale:
    """Sizes the canary from here on (see `canary_scale`); it takes effect at once."""

    field = "set_canary_scale"

    def describe(self, step: CanaryStep) -> str:
        scale = step.set_canary_scale
        assert scale is not None
        if scale.replicas is not None:
            return f"setCanaryScale {scale.replicas} pods"
        if scale.weight is not None:
            return f"setCanaryScale {scale.weight} %"
        return "setCanaryScale matchTrafficWeight"

    def check(self, spec: RolloutSpec, index: int, where: str) -> list[str]:
        return _needs_router(spec, where, "setCanaryScale")

    def advance(self, d: _Decider, step: CanaryStep, index: int, paused: bool) -> Progress:
        return Progress.DONE


class SetHeaderRoute:
    field = "set_header_route"

    def describe(self, step: CanaryStep) -> str:
        route = step.set_header_route
        assert route is not None
        return f"setHeaderRoute {route.name}" + ("" if route.match else " removed")

    def check(self, spec: RolloutSpec, index: int, where: str) -> list[str]:
        problems = _needs_router(spec, where, "setHeaderRoute")
        route = spec.strategy.canary.steps[index].set_header_route
        routing = spec.strategy.traffic_routing()
        assert route is not None
        managed = [r.name for r in (routing.managed_routes or [])] if routing else []
        if routing is not None and route.name not in managed:
            problems.append(
                f"{where}.setHeaderRoute.name: {route.name!r} is not in "
                "spec.strategy.canary.trafficRouting.managedRoutes"
            )
        scale = canary_scale(spec, index)
        if route.match and scale is not None and (scale.replicas == 0 or scale.weight == 0):
            problems.append(
                f"{where}.setHeaderRoute: a header route with setCanaryScale of 0 pods would "
                "send requests to no Ready pod"
            )
        return problems

    def advance(self, d: _Decider, step: CanaryStep, index: int, paused: bool) -> Progress:
        route = step.set_header_route
        assert route is not None
        if route.match and not d.canary_has_pods(index, paused):
            return Progress.WAIT
        if not d.traffic_at(index, d.s.canary_weight, routes_through=index + 1):
            return Progress.WAIT
        return Progress.DONE


class Job:
    """Runs a Job made from the step's template and waits for it (a smoke test)."""

    field = "job"

    def describe(self, step: CanaryStep) -> str:
        return "job"

    def check(self, spec: RolloutSpec, index: int, where: str) -> list[str]:
        job = spec.strategy.canary.steps[index].job
        assert job is not None
        policy = ((job.spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            return [f"{where}.job.spec.template.spec.restartPolicy: must be Never or OnFailure"]
        return []

    def advance(self, d: _Decider, step: CanaryStep, index: int, paused: bool) -> Progress:
        assert step.job is not None
        s = d.s
        name = job_name(d.inp.name, d.revision, s.attempt, index)
        job = d.obs.jobs.get(name)
        if job is None:
            d.actions.append(CreateJob(name, index, d.revision, s.attempt))
        elif job.phase == "Succeeded":
            return Progress.DONE
        elif job.phase == "Failed":
            d._abort("JobFailed", f"job {name} failed: {job.message}")
            d._aborted()
            return Progress.ABORTED
        left = step.job.seconds() - since(s.step_start_time, d.now)
        if left <= 0:
            d._abort("JobTimedOut", f"job {name} did not succeed within {step.job.timeout}")
            d._aborted()
            return Progress.ABORTED
        d.waiting_for = f"job {name}"
        d._due_in(left)
        return Progress.WAIT


KINDS: dict[str, StepKind] = {
    k.field: k
    for k in (SetWeight(), Pause(), Analysis(), SetCanaryScale(), SetHeaderRoute(), Job())
}
FIELD_NAMES = {
    "set_weight": "setWeight",
    "pause": "pause",
    "analysis": "analysis",
    "set_canary_scale": "setCanaryScale",
    "set_header_route": "setHeaderRoute",
    "job": "job",
}


def kinds_of(step: CanaryStep) -> list[str]:
    return [f for f in KINDS if getattr(step, f) is not None]


def kind_of(step: CanaryStep) -> StepKind:
    return KINDS[kinds_of(step)[0]]


def canary_scale(spec: RolloutSpec, index: int) -> CanaryScale | None:
    """The setCanaryScale in force at step `index` (the last one at or before it)."""
    for step in reversed(spec.strategy.canary.steps[: index + 1]):
        if step.set_canary_scale is not None:
            scale = step.set_canary_scale
            return None if scale.match_traffic_weight else scale
    return None


def goal_weight(spec: RolloutSpec, index: int) -> int:
    """The weight step `index` moves to (other steps hold the last one; promotion is 100)."""
    steps = spec.strategy.canary.steps
    if index >= len(steps):
        return 100
    weights = [s.set_weight for s in steps[: index + 1] if s.set_weight is not None]
    return weights[-1] if weights else 0
