"""Labels and annotations Sluice puts on the objects it owns."""

from typing import Any

from sluice.api.rollout import GROUP

ROLLOUT = f"{GROUP}/rollout"  # on every child: the owning Rollout's name
SLOT = f"{GROUP}/slot"  # a | b
REVISION = f"{GROUP}/revision"  # template hash, on Deployments and their pods
TEMPLATE_GENERATION = f"{GROUP}/template-generation"  # Deployment generation of that template
ROLE = f"{GROUP}/role"  # on Services: root | stable | canary (Sluice's own), or NAMED
NAMED = "named"  # on a user's Service a Rollout names (blue-green active/preview, an
# adopted stableService/canaryService): the Service watch's server-side selector is the
# ROLE key, which Sluice's own Services carry too (a selector cannot say "this or that")
WORKLOAD = f"{GROUP}/workload-of"  # on a user's Deployment a workloadRef names: the Rollout
INSTANCE = f"{GROUP}/controller-instance"  # on a Rollout: the shard (operator) that owns it;
# on its children (Deployments, Services, AnalysisRuns) and named user objects too, so each
# shard's watches select only its own on the server
BASELINE = f"{GROUP}/baseline"  # "true" on a baseline Deployment's pods; on a canary's
# Deployment "wanted" when a judge metric of its analyses compares with a baseline Deployment
BASELINE_OF = f"{GROUP}/baseline-of"  # a baseline pod's Rollout (not ROLLOUT: no Service)
TRAFFIC = f"{GROUP}/traffic"  # on the root Service: the TrafficTarget last applied
ATTEMPT = f"{GROUP}/attempt"  # on a Job gate: the canary attempt it runs for
STEP = f"{GROUP}/step"  # on a Job gate: the step index
TRACK_CONFIG = f"{GROUP}/track-config"  # on a ConfigMap/Secret: "true" (its owner opted in)
# or "auto" (a trackConfig Rollout names it): the watch's server-side selector
COPY_OF = f"{GROUP}/copy-of"  # on a config copy: the ConfigMap/Secret it copies


def shard_of(rollout: dict[str, Any]) -> dict[str, str]:
    """The shard label a child of `rollout` carries: the Rollout's own (none: default shard)."""
    value = ((rollout.get("metadata") or {}).get("labels") or {}).get(INSTANCE)
    return {INSTANCE: value} if value else {}


def in_shard(selector: str, instance: str | None) -> str:
    """`selector` narrowed to one shard's objects: labelled for it, or (default) unlabelled."""
    return f"{selector},{INSTANCE}={instance}" if instance else f"{selector},!{INSTANCE}"
