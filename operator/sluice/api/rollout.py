"""The Rollout API (`sluice.dev/v1alpha1`): the single source of the CRD schema.

Every field carries a description: `make crds` copies them into the CRD, where
`kubectl explain rollout.spec...` shows them. Python names are snake_case; the
wire names are camelCase (the aliases).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from sluice.api.analysis import BackgroundAnalysis, RolloutAnalysis
from sluice.api.base import Model
from sluice.api.bluegreen import BlueGreenStrategy
from sluice.api.duration import parse_duration
from sluice.api.jobs import JobStep
from sluice.api.rollback import GradualRollback, RollbackProgress
from sluice.api.traffic import PRESERVE, SetCanaryScale, SetHeaderRoute, TrafficRouting
from sluice.api.webhooks import MAX_WEBHOOKS, GateRecord, Webhook

CANARY_ROUTING = "spec.strategy.canary.trafficRouting"  # the path routers name in messages

GROUP = "sluice.dev"
VERSION = "v1alpha1"
ACTION_ANNOTATION = f"{GROUP}/action"
ACTIONS = (
    "promote",
    "promote-full",
    "abort",
    "retry",
    "pause",
    "resume",
    "rollback-gradually",
)
MAX_SECONDS = 30 * 24 * 3600  # bound of every duration: a date past it overflows nothing
MAX_STEPS = 100

Phase = Literal["Progressing", "Paused", "Healthy", "Degraded"]
ConditionType = Literal["Progressing", "Paused", "Completed", "Healthy", "Degraded", "InvalidSpec"]


# ---------------------------------------------------------------- spec: steps


class Pause(Model):
    """Hold the rollout at the current weight."""

    duration: int | str | None = Field(
        default=None,
        description=(
            "How long to hold: seconds as an integer, or a string such as 30s, 5m, 1h. "
            "Omitted: hold until promoted (annotation sluice.dev/action=promote)."
        ),
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )

    @field_validator("duration")
    @classmethod
    def _duration_parses(cls, value: int | str | None) -> int | str | None:
        if value is not None and parse_duration(value) > MAX_SECONDS:
            raise ValueError(f"at most {MAX_SECONDS}s (30 days)")
        return value

    def seconds(self) -> float | None:
        return None if self.duration is None else parse_duration(self.duration)


class CanaryStep(Model):
    """One stage of the canary. Exactly one of the step kinds is set."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["setWeight"]},
                {"required": ["pause"]},
                {"required": ["analysis"]},
                {"required": ["setCanaryScale"]},
                {"required": ["setHeaderRoute"]},
                {"required": ["job"]},
            ],
            **PRESERVE,
        }
    )

    set_weight: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description=(
            "Percentage of traffic for the canary (0-100). Without a traffic router it is "
            "the share of replicas: the canary gets ceil(replicas*weight/100) pods."
        ),
    )
    pause: Pause | None = Field(
        default=None,
        description="Hold here for a duration, or until promoted when no duration is given.",
    )

    analysis: RolloutAnalysis | None = Field(
        default=None,
        description="Run an analysis and wait for its verdict: success moves on, failure "
        "aborts, inconclusive pauses for a human.",
    )

    set_canary_scale: SetCanaryScale | None = Field(
        default=None,
        description="Size the canary apart from its weight, from this step until the next "
        "setCanaryScale or the end of the rollout (needs trafficRouting).",
    )

    def kind(self) -> str:
        """The wire name of the step's kind (the first one set)."""
        for name, info in type(self).model_fields.items():
            if getattr(self, name) is not None:
                return info.alias or name
        return ""

    set_header_route: SetHeaderRoute | None = Field(
        default=None,
        description="Route requests matching a header or cookie to the canary whatever the "
        "weight, until the rollout ends (needs trafficRouting and managedRoutes).",
    )
    job: JobStep | None = Field(
        default=None,
        description="Run a Job (a smoke test) and wait for it: success moves on, failure or "
        "its timeout aborts. One Job per canary attempt and step, owned by the Rollout.",
    )


class CanaryStrategy(Model):
    """Progressive canary: the new version runs beside the stable one, stage by stage."""

    model_config = ConfigDict(json_schema_extra=PRESERVE)

    steps: list[CanaryStep] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        description=(
            "The stages, in order. After the last one the canary is promoted to stable. "
            "Weights may not go down from one setWeight step to a later one."
        ),
    )
    scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        le=MAX_SECONDS,
        description=(
            "How long the previous version stays at full scale after a promotion or an "
            "abort before it is scaled to zero, so that a revert is instant. Defaults to 30."
        ),
    )
    analysis: BackgroundAnalysis | None = Field(
        default=None,
        description="Background analysis from startingStep until promotion; a failure "
        "aborts at once, an inconclusive verdict pauses.",
    )
    post_promotion_analysis: RolloutAnalysis | None = Field(
        default=None,
        description="Analysis after the canary became stable, while the previous version is "
        "still warm (kept until it ends); a failure switches back to the previous at once.",
    )
    stable_service: str | None = Field(
        default=None,
        pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Name of the Service selecting the stable pods. Defaults to <name>-stable, "
        "which Sluice creates and owns; a Service of yours by this name (of no Rollout) is used "
        "as it is: Sluice sets only the sluice.dev/slot key of its selector.",
    )
    canary_service: str | None = Field(
        default=None,
        pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Name of the Service selecting the canary pods. Defaults to <name>-canary, "
        "which Sluice creates and owns; a Service of yours by this name (of no Rollout) is used "
        "as it is: Sluice sets only the sluice.dev/slot key of its selector.",
    )
    dynamic_stable_scale: bool = Field(
        default=False,
        description="With a traffic router: shrink the stable as its share of traffic falls "
        "(never below what its weight needs); on abort it is back at full size and Ready "
        "before traffic returns to it. Defaults to false: the stable stays at full size.",
    )
    traffic_routing: TrafficRouting | None = Field(
        default=None,
        description="Set the weight in an ingress controller or mesh; the canary is then sized "
        "to its weight (or setCanaryScale). Omitted: the weight is the share of pods.",
    )
    gradual_rollback: GradualRollback | None = Field(
        default=None,
        description="The walk back of sluice.dev/action: rollback-gradually (an abort stays "
        "instant); an analysis failure during it goes to 0 at once.",
    )
    track_config: bool = Field(
        default=False,
        description="Treat a change of a ConfigMap or Secret the template references (env, "
        "envFrom, volumes) as a new version: the canary gets a copy of the new content "
        "(<name>-<hash>), the stable keeps its copy until promotion, and an abort leaves it "
        "on the old one. A ConfigMap or Secret labelled sluice.dev/track-config=true is "
        "tracked without this. Secrets need the operator's --track-secrets.",
    )
    webhooks: list[Webhook] = Field(
        default_factory=list,
        max_length=MAX_WEBHOOKS,
        description="HTTP calls the rollout waits on (confirm-rollout, pre-rollout, rollout, "
        "confirm-promotion) or tells (post-rollout, rollback), in this order per type.",
    )


class Strategy(Model):
    """How a new template is rolled out."""

    canary: CanaryStrategy = Field(
        default_factory=CanaryStrategy, description="The canary strategy."
    )
    blue_green: BlueGreenStrategy | None = Field(
        default=None,
        description="The blue-green strategy (instead of canary): the new version is "
        "previewed at full size, then the active Service switches to it in one write.",
    )

    # The engine reads these whichever strategy is set.

    def scale_down_delay(self) -> int:
        if self.blue_green is not None:
            return self.blue_green.scale_down_delay_seconds
        return self.canary.scale_down_delay_seconds

    def abort_scale_down_delay(self) -> int:
        if self.blue_green is not None:
            return self.blue_green.abort_scale_down_delay_seconds
        return self.canary.scale_down_delay_seconds

    def traffic_routing(self) -> TrafficRouting | None:
        if self.blue_green is not None:
            return self.blue_green.traffic_routing
        return self.canary.traffic_routing

    def localize(self, message: str) -> str:
        """A router's message names canary's trafficRouting; a blue-green's lives elsewhere."""
        if self.blue_green is None:
            return message
        return message.replace(CANARY_ROUTING, "spec.strategy.blueGreen.trafficRouting")

    def track_config(self) -> bool:
        if self.blue_green is not None:
            return self.blue_green.track_config
        return self.canary.track_config

    def post_promotion(self) -> RolloutAnalysis | None:
        if self.blue_green is not None:
            return self.blue_green.post_promotion_analysis
        return self.canary.post_promotion_analysis


# ---------------------------------------------------------------- spec


class LabelSelectorRequirement(Model):
    """A set-based selector term."""

    key: str = Field(description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[str] | None = Field(
        default=None, description="Values for In and NotIn; empty for Exists and DoesNotExist."
    )


class LabelSelector(Model):
    """Which pods belong to this Rollout. Must match the template's labels."""

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels a pod must carry, all of them."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Set-based requirements, all of which must hold."
    )


class WorkloadRef(Model):
    """A Deployment the user already runs, whose pod template the Rollout takes."""

    api_version: Literal["apps/v1"] = Field(
        default="apps/v1", description="API version of the referenced workload: apps/v1."
    )
    kind: Literal["Deployment"] = Field(description="Kind of the referenced workload: Deployment.")
    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="Name of the Deployment, in the Rollout's namespace.",
    )
    scale_down: Literal["never", "onsuccess", "progressively"] = Field(
        default="never",
        description="What happens to the Deployment's own pods: never (it keeps running), "
        "onsuccess (scaled to 0 once the Rollout is Healthy with all its pods Ready) or "
        "progressively (scaled down by as many pods as the Rollout has Ready). Deleting the "
        "Rollout scales it back up, Ready, before Sluice's pods go. Defaults to never.",
    )


class RolloutSpec(Model):
    """What the user wants: the workload and how to roll out a new version of it."""

    replicas: int = Field(
        default=1,
        ge=0,
        le=100_000,
        description="Desired number of pods of the stable version. Defaults to 1. "
        "Also the target of the scale subresource (kubectl scale, HPA).",
    )
    selector: LabelSelector = Field(
        description="Label selector of the pods. Must match the template's labels."
    )
    template: dict[str, Any] | None = Field(
        default=None,
        description=(
            "The pod template (as in a Deployment). A change of it starts a rollout; "
            "setting it back to the stable one in the middle reverts at once. Exactly one "
            "of template and workloadRef is set."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )
    workload_ref: WorkloadRef | None = Field(
        default=None,
        description="Take the pod template from a Deployment the user runs (its manifests "
        "stay as they are): a change of its template starts a canary. Instead of template.",
    )
    strategy: Strategy = Field(
        default_factory=Strategy, description="How a new template is rolled out."
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=1,
        le=MAX_SECONDS,
        description=(
            "How long a step may wait for the canary to become available before the "
            "rollout is aborted (reason ProgressDeadlineExceeded). Defaults to 600."
        ),
    )
    paused: bool = Field(
        default=False,
        description="Pause the rollout where it is (weights stay). Defaults to false.",
    )
    revision_history_limit: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="Old ReplicaSets kept by each child Deployment, and how many past canary "
        "attempts keep their AnalysisRuns. Defaults to 10.",
    )

    def pod_template(self) -> dict[str, Any]:
        """The template decisions are made on (a workloadRef's, once the operator read it)."""
        if self.template is None:
            raise ValueError("spec.workloadRef: the Deployment's template was not read")
        return self.template

    @model_validator(mode="after")
    def _one_template_source(self) -> RolloutSpec:
        if (self.template is None) == (self.workload_ref is None):
            raise ValueError("exactly one of spec.template and spec.workloadRef must be set")
        return self

    @field_validator("template")
    @classmethod
    def _template_has_containers(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        containers = (value.get("spec") or {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("spec.template.spec.containers: at least one container is required")
        return value


# ---------------------------------------------------------------- status


class Condition(Model):
    """A standard condition, readable by `kubectl wait --for=condition=TYPE`."""

    type: ConditionType = Field(description="The condition type.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word for machines.")
    message: str = Field(default="", description="What happened, for humans.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )


class AbortInfo(Model):
    """Why and when the current canary was aborted."""

    reason: str = Field(description="CamelCase reason, e.g. UserAbort, ProgressDeadlineExceeded.")
    message: str = Field(default="", description="What triggered the abort.")
    time: str = Field(description="When it was aborted (RFC 3339).")
    revision: str = Field(description="The canary revision that was aborted.")


class SlotStatus(Model):
    """One of the two child Deployments (slots a and b take turns being stable)."""

    slot: Literal["a", "b"] = Field(description="Slot name; the Deployment is <rollout>-<slot>.")
    revision: str = Field(default="", description="Template hash of the version in the slot.")
    replicas: int = Field(default=0, description="Replicas asked of the Deployment.")
    ready_replicas: int = Field(default=0, description="Ready pods of that revision.")


class PreviousStatus(Model):
    """The version replaced by the last promotion, kept warm for an instant revert."""

    slot: Literal["a", "b"] = Field(description="Slot that holds it.")
    revision: str = Field(description="Its template hash.")
    scale_down_at: str = Field(description="When it will be scaled to zero (RFC 3339).")


class RolloutStatus(Model):
    """What Sluice observed and decided. All operator state lives here."""

    # A status written by a newer Sluice may carry fields this one does not know. The
    # engine edits a copy field by field: a misspelt field raises (unknown attributes are
    # refused), the types are checked by mypy, not on every assignment (a hot path).
    model_config = ConfigDict(extra="ignore", frozen=False)

    phase: Phase | None = Field(
        default=None, description="Progressing, Paused, Healthy or Degraded."
    )
    message: str = Field(default="", description="A human summary of the current state.")
    observed_generation: int | None = Field(
        default=None, description="The spec generation this status was computed from."
    )
    current_step_index: int | None = Field(
        default=None, description="Index of the step being executed; absent when no canary runs."
    )
    canary_weight: int = Field(
        default=0, description="Share of traffic (percent) reaching the canary now."
    )
    stable_revision: str = Field(default="", description="Template hash of the stable version.")
    canary_revision: str = Field(
        default="", description="Template hash of the canary; empty when no rollout runs."
    )
    stable_slot: Literal["a", "b"] | None = Field(
        default=None, description="Slot holding the stable version."
    )
    stable: SlotStatus | None = Field(default=None, description="The stable slot.")
    canary: SlotStatus | None = Field(default=None, description="The canary slot.")
    previous: PreviousStatus | None = Field(
        default=None, description="The previous stable version, warm until scaleDownAt."
    )
    replicas: int = Field(default=0, description="Pods of all slots (scale subresource).")
    ready_replicas: int = Field(default=0, description="Ready pods of all slots.")
    selector: str = Field(default="", description="Label selector as a string (scale subresource).")
    abort: AbortInfo | None = Field(default=None, description="Set while the canary is aborted.")
    pause_start_time: str | None = Field(
        default=None, description="When the current pause (step or user) began (RFC 3339)."
    )
    user_paused: bool = Field(
        default=False, description="Paused by the action annotation (resume lifts it)."
    )
    step_start_time: str | None = Field(
        default=None,
        description="When the current step began or last made progress; "
        "the progress deadline counts from here.",
    )
    attempt: int = Field(
        default=0,
        description="Counts canaries and retries; part of AnalysisRun names so none is reused.",
    )
    acknowledged_runs: list[str] = Field(
        default_factory=list,
        description="Inconclusive or erroring AnalysisRuns a human promoted past.",
    )
    post_promotion_run: str | None = Field(
        default=None,
        description="The post-promotion AnalysisRun in progress; the previous version stays "
        "warm until it passes.",
    )
    paused_at: str | None = Field(
        default=None,
        description="When spec.paused or a pause action took hold; the progress deadline "
        "restarts when it is lifted.",
    )
    consumed_action: str | None = Field(
        default=None,
        description="The action annotation applied last, until it is removed from the object.",
    )
    gradual_rollback: RollbackProgress | None = Field(
        default=None, description="Set while the canary's weight is walked back down."
    )
    webhook_gates: list[GateRecord] = Field(
        default_factory=list,
        description="The webhook gates of the current canary attempt and their last answers.",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")


class Rollout(Model):
    """A progressive canary delivery of a pod template."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["sluice.dev/v1alpha1"] = Field(
        default="sluice.dev/v1alpha1", description="sluice.dev/v1alpha1"
    )
    kind: Literal["Rollout"] = Field(default="Rollout", description="Rollout")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: RolloutSpec = Field(description="The desired workload and rollout strategy.")
    status: RolloutStatus | None = Field(default=None, description="Observed state.")
