"""Kubernetes Events about a Rollout (what `kubectl describe rollout` shows)."""

from __future__ import annotations

from typing import Any

from sluice.engine.timefmt import fmt_seconds
from sluice.engine.types import EventNote

COMPONENT = "sluice"


def event_body(rollout: dict[str, Any], note: EventNote, now: Any) -> dict[str, Any]:
    meta = rollout["metadata"]
    stamp = fmt_seconds(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
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
