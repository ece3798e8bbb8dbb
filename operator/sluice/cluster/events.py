"""Kubernetes Events about a Rollout (what `kubectl describe rollout` shows)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sluice.engine.timefmt import fmt_seconds
from sluice.engine.types import EventNote

COMPONENT = "sluice"


# The status fields that say which transition a decision made; message, conditions and
# ready counts are left out, as a concurrent writer or the pods may change them meanwhile.
TRANSITION_FIELDS = (
    "observedGeneration",
    "phase",
    "stableRevision",
    "canaryRevision",
    "currentStepIndex",
    "attempt",
    "abort",
    "stepStartTime",
    "pauseStartTime",
    "userPaused",
    "consumedAction",
    "postPromotionRun",
)


def transition_key(rollout: dict[str, Any]) -> str:
    """What a decision starts from: the same Rollout status and action annotation give the
    same key, so a decision made again (after a kill or a 409) names its Events the same."""
    status = rollout.get("status") or {}
    annotations = (rollout.get("metadata") or {}).get("annotations") or {}
    start = {f: status.get(f) for f in TRANSITION_FIELDS}
    start["action"] = annotations.get("sluice.dev/action")
    start["uid"] = (rollout.get("metadata") or {}).get("uid")
    return json.dumps(start, sort_keys=True, default=str)


def event_name(rollout: dict[str, Any], note: EventNote, key: str) -> str:
    """A name derived from the decision: posting it twice gives AlreadyExists, not a copy."""
    digest = hashlib.sha256(f"{key}\0{note.reason}\0{note.message}".encode()).hexdigest()
    return f"{rollout['metadata']['name'][:200]}.{digest[:16]}"


def event_body(
    rollout: dict[str, Any], note: EventNote, now: Any, name: str | None = None
) -> dict[str, Any]:
    meta = rollout["metadata"]
    stamp = fmt_seconds(now)
    naming = {"name": name} if name else {"generateName": f"{meta['name']}."}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {**naming, "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": rollout.get("apiVersion", "sluice.dev/v1alpha1"),
            "kind": "Rollout",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": note.reason,
        "message": note.message[:1024],
        "type": note.type,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
