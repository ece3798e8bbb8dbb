"""What the engine reads (input, observed children) and what it returns (actions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.api.rollout import RolloutSpec, RolloutStatus
from sluice.api.traffic import HeaderRoutingMatch

Slot = Literal["a", "b"]
SLOTS: tuple[Slot, Slot] = ("a", "b")


def other(slot: Slot) -> Slot:
    return "b" if slot == "a" else "a"


@dataclass(frozen=True)
class RolloutInput:
    """The Rollout object as the engine needs it: raw spec (validated here), parsed status."""

    name: str
    namespace: str
    generation: int
    spec: dict[str, Any]
    status: RolloutStatus
    action: str | None = None  # value of the sluice.dev/action annotation
    # `spec` as parse_spec(spec, name) returns it, when the caller parsed it already (the
    # reconciler does, for the routers): decide() then does not parse it again.
    parsed: RolloutSpec | None = None


@dataclass(frozen=True)
class SlotObserved:
    """One child Deployment as last seen. `ready` counts Ready pods of `revision` only."""

    exists: bool = False
    revision: str = ""
    replicas: int = 0  # asked of the Deployment (.spec.replicas)
    pods: int = 0  # pods it has (.status.replicas)
    ready: int = 0
    drifted: str = ""  # what a hand edit changed in a slot of the spec's own revision


@dataclass(frozen=True)
class HeaderRoute:
    """A managed route: requests matching all of `match` go to the canary."""

    name: str
    match: tuple[HeaderRoutingMatch, ...]


@dataclass(frozen=True)
class TrafficPlan:
    """Where traffic goes. `canary_slot` is None when the canary takes none (no weight, no
    header route); `header_routes` are in the order of trafficRouting.managedRoutes."""

    stable_slot: Slot
    canary_slot: Slot | None = None
    canary_weight: int = 0
    header_routes: tuple[HeaderRoute, ...] = ()


@dataclass(frozen=True)
class TrafficObserved:
    """The plan last applied (read from the Services Sluice owns), and whether every router's
    live objects carry it. `problem` names an object or field that stops a router."""

    plan: TrafficPlan | None = None
    verified: bool = False
    problem: str | None = None

    def settled(self, plan: TrafficPlan) -> bool:
        return self.plan == plan and self.verified and self.problem is None


@dataclass(frozen=True)
class WorkloadObserved:
    """The Deployment a workloadRef names, as last seen, with the Rollout's scaleDown."""

    name: str
    scale_down: str = "never"  # never | onsuccess | progressively
    replicas: int = 0  # its .spec.replicas
    ready: int = 0


@dataclass(frozen=True)
class Observed:
    slots: dict[Slot, SlotObserved] = field(
        default_factory=lambda: {"a": SlotObserved(), "b": SlotObserved()}
    )
    traffic: TrafficObserved = field(default_factory=TrafficObserved)
    # Revisions whose Deployment the API server refused, with its message (e.g. a
    # container without an image): reported as InvalidSpec instead of retried forever.
    rejected: dict[str, str] = field(default_factory=dict)
    runs: dict[str, RunObserved] = field(default_factory=dict)  # AnalysisRuns by name
    workload: WorkloadObserved | None = None  # spec.workloadRef's Deployment
    baseline: SlotObserved = field(default_factory=SlotObserved)  # <rollout>-baseline
    baseline_wanted: bool = False  # the canary's analyses compare with a baseline Deployment
    hooks: dict[str, HookAnswer] = field(default_factory=dict)  # webhook answers by gate key
    jobs: dict[str, JobObserved] = field(default_factory=dict)  # Job gates by Job name


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class DeploySlot:
    """Create the slot's Deployment, or update it to the spec's template, at `replicas`."""

    slot: Slot
    revision: str
    replicas: int


@dataclass(frozen=True)
class ScaleSlot:
    """Change only the replica count of an existing slot."""

    slot: Slot
    replicas: int


@dataclass(frozen=True)
class SetTraffic:
    """Make every router carry `plan` (idempotent; `restore` says a hand edit is undone)."""

    plan: TrafficPlan
    restore: bool = False


@dataclass(frozen=True)
class ScaleWorkload:
    """Change the replica count of the Deployment a workloadRef names (its scaleDown)."""

    name: str
    replicas: int


@dataclass(frozen=True)
class RemoveAction:
    """Delete the consumed sluice.dev/action annotation."""


@dataclass(frozen=True)
class EventNote:
    """A Kubernetes Event to post about the Rollout."""

    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"


@dataclass(frozen=True)
class Decision:
    status: RolloutStatus
    actions: list[Action]
    events: list[EventNote]
    requeue_after: float | None  # seconds until a time-based step is due; None: nothing due
    status_changed: bool


# ---------------------------------------------------------------- analysis


@dataclass(frozen=True)
class RunObserved:
    """An AnalysisRun of this Rollout as last seen."""

    kind: str  # step | background | prePromotion | postPromotion | alert
    revision: str
    phase: str  # Pending | Running | Successful | Failed | Error | Inconclusive
    message: str = ""
    step: int | None = None
    on_error: str | None = None  # abort | pause | ignore, when phase is Error
    terminating: bool = False
    attempt: int | None = None  # status.attempt when it was created (from its name)


@dataclass(frozen=True)
class CreateRun:
    """Start an AnalysisRun; the handler resolves templates and arguments."""

    name: str
    kind: str
    revision: str
    step: int | None = None


@dataclass(frozen=True)
class TerminateRun:
    """Stop a run that is no longer needed (promotion, abort, new canary)."""

    name: str


@dataclass(frozen=True)
class DeleteRun:
    """Delete a finished run of an attempt older than the history kept."""

    name: str


@dataclass(frozen=True)
class SetBaseline:
    """Run the stable's template (`revision`, from `slot`) at `replicas` beside the canary,
    as the Deployment <rollout>-baseline, outside every Service (created or scaled)."""

    slot: Slot
    revision: str
    replicas: int


@dataclass(frozen=True)
class RemoveBaseline:
    """Delete the baseline Deployment: the canary it was compared with is gone."""


# ---------------------------------------------------------------- webhook gates


@dataclass(frozen=True)
class HookAnswer:
    """The last answer of a webhook gate (gathered by the controller, not the engine)."""

    ok: bool  # a 2xx answer
    message: str
    at: str  # when it came (RFC 3339): a new time is a new answer


@dataclass(frozen=True)
class AskHook:
    """Let webhook `name` answer for gate `key`; the controller asks at most once per
    check interval and keeps the answer, so asking again in every decision is cheap."""

    key: str
    name: str
    type: str
    step: int | None = None


# ---------------------------------------------------------------- Job gates


@dataclass(frozen=True)
class JobObserved:
    """A Job Sluice made for a job step, as last seen."""

    phase: str  # Running | Succeeded | Failed
    message: str = ""
    revision: str = ""
    attempt: int | None = None


@dataclass(frozen=True)
class CreateJob:
    """Run the job step `step` of canary `revision` (the name is fixed: a kill makes none twice)."""

    name: str
    step: int
    revision: str
    attempt: int


@dataclass(frozen=True)
class DeleteJob:
    """A Job no longer needed (an older attempt, a canary that ended), with its pods."""

    name: str


Action = (
    DeploySlot
    | ScaleSlot
    | SetTraffic
    | RemoveAction
    | CreateRun
    | TerminateRun
    | DeleteRun
    | ScaleWorkload
    | SetBaseline
    | RemoveBaseline
    | AskHook
    | CreateJob
    | DeleteJob
)
RunAction = CreateRun | TerminateRun | DeleteRun
