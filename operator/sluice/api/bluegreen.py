"""The blue-green strategy (`spec.strategy.blueGreen`), with Argo Rollouts' field names.

The new version comes up beside the active one, behind the preview Service, is judged,
and the active Service is switched to it in one write once every one of its pods is
Ready. Both Services are the user's: Sluice only sets the `sluice.dev/slot` key of their
selectors.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from sluice.api.analysis import RolloutAnalysis
from sluice.api.base import Model
from sluice.api.traffic import PRESERVE, TrafficRouting

MAX_SECONDS = 30 * 24 * 3600
SERVICE_NAME = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"


class BlueGreenStrategy(Model):
    """Blue-green: the new version runs at full size (or previewReplicaCount) behind the
    preview Service; promotion switches the active Service to it at once."""

    # Unknown (Argo) fields are kept by the CRD and refused by name by the operator.
    model_config = ConfigDict(json_schema_extra=PRESERVE)

    active_service: str = Field(
        pattern=SERVICE_NAME,
        description="Name of your Service that takes production traffic. Sluice adds "
        "sluice.dev/slot to its selector and switches it to the new version on promotion; "
        "it must exist in the Rollout's namespace.",
    )
    preview_service: str | None = Field(
        default=None,
        pattern=SERVICE_NAME,
        description="Name of your Service that selects the new version before promotion "
        "(the active version when no rollout runs). Optional.",
    )
    auto_promotion_enabled: bool = Field(
        default=True,
        description="Promote as soon as the new version is Ready and its pre-promotion "
        "analysis passed. false: pause until promoted (sluice.dev/action=promote). "
        "Defaults to true.",
    )
    auto_promotion_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SECONDS,
        description="Once the new version is Ready and judged, wait this many seconds "
        "before promoting it on its own (with autoPromotionEnabled: true, the default).",
    )
    scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        le=MAX_SECONDS,
        description="How long the previous version stays at full size after the switch "
        "(and until its post-promotion analysis passed), so a switch back is instant. "
        "Defaults to 30.",
    )
    abort_scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        le=MAX_SECONDS,
        description="How long an aborted new version keeps its pods before it is scaled to "
        "zero. Defaults to 30.",
    )
    traffic_routing: TrafficRouting | None = Field(
        default=None,
        description="Make the switch in an ingress controller or mesh too: the routers send "
        "all traffic to <name>-stable, which Sluice switches with the active Service, and "
        "promotion counts only once every router has read it back. Header routes "
        "(managedRoutes) are a canary's and are refused here.",
    )
    track_config: bool = Field(
        default=False,
        description="Treat a change of a ConfigMap or Secret the template references (env, "
        "envFrom, volumes) as a new version: the preview gets a copy of the new content "
        "(<name>-<hash>), the active version keeps its copy, and an abort leaves it "
        "on the old one. A ConfigMap or Secret labelled sluice.dev/track-config=true is "
        "tracked without this. Secrets need the operator's --track-secrets.",
    )
    preview_replica_count: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Pods of the new version while it is previewed; it is scaled to "
        "replicas (and all Ready) before the switch. Omitted: replicas.",
    )
    pre_promotion_analysis: RolloutAnalysis | None = Field(
        default=None,
        description="Analysis of the previewed version before the switch: success allows "
        "the promotion, failure aborts, inconclusive pauses for a human.",
    )
    post_promotion_analysis: RolloutAnalysis | None = Field(
        default=None,
        description="Analysis after the switch, while the previous version is kept warm "
        "(until it ends); a failure switches the active Service back at once.",
    )
