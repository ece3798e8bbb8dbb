"""The Job of a job step. Pure: the Rollout body and the action in, a manifest out."""

from __future__ import annotations

import copy
from typing import Any

from sluice.api.rollout import RolloutSpec
from sluice.cluster import labels as L
from sluice.cluster.children import owner_reference
from sluice.engine.types import CreateJob

Body = dict[str, Any]


def job_manifest(rollout: Body, spec: RolloutSpec, act: CreateJob) -> Body:
    step = spec.strategy.canary.steps[act.step].job
    assert step is not None
    meta = rollout["metadata"]
    extra = step.metadata
    labels = {
        **((extra.labels if extra else None) or {}),
        L.ROLLOUT: meta["name"],
        L.REVISION: act.revision,
        L.ATTEMPT: str(act.attempt),
        L.STEP: str(act.step),
    }
    metadata: Body = {
        "name": act.name,
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(rollout)],
    }
    if extra and extra.annotations:
        metadata["annotations"] = dict(extra.annotations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": copy.deepcopy(step.spec),
    }
