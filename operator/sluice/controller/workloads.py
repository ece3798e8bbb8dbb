"""spec.workloadRef: read the user's Deployment, label it so the watch brings its changes,
hand its pod template to the engine, and give it its pods back when the Rollout goes."""

from __future__ import annotations

import copy
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from sluice import logs
from sluice import telemetry as M
from sluice.api.rollout import WorkloadRef
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube
from sluice.controller.cache import Body, Key, newer, slim
from sluice.engine.types import WorkloadObserved

log = logs.get("sluice.workloads")


class Workloads:
    """The Deployments Rollouts name, by (namespace, name); each names its Rollout by label."""

    def __init__(self, kube: Kube, instance: str | None = None) -> None:
        self.kube = kube
        self.instance = instance  # the shard label its Deployments get (the watch selects it)
        self.bodies: dict[tuple[str, str], Body] = {}

    def event(self, kind: str | None, body: Body) -> Key | None:
        """A labelled Deployment changed: returns the Rollout to wake."""
        meta = body.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(L.WORKLOAD)
        where = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if kind == "DELETED":
            self.bodies.pop(where, None)
        else:
            self.put(body)
        return (where[0], owner) if owner else None

    def put(self, body: Body) -> None:
        meta = body["metadata"]
        where = (meta["namespace"], meta["name"])
        if newer(body, self.bodies.get(where)):
            self.bodies[where] = slim(body)

    async def get(self, namespace: str, name: str) -> Body | None:
        M.API_CALLS.labels("get_workload").inc()
        try:
            return await self.kube.raw(self.kube.apps.read_namespaced_deployment, name, namespace)
        except ApiException as exc:
            if exc.status == 403:  # said, not swallowed: the RBAC lacks get on Deployments
                log.warning("forbidden: cannot read a workloadRef", name=name, namespace=namespace)
            if exc.status in (403, 404):
                return None
            raise

    async def resolve(
        self, key: Key, raw: dict[str, Any], adopt: bool = True
    ) -> tuple[dict[str, Any], WorkloadObserved | None, str | None]:
        """The spec the engine decides on: the Deployment's template in place of workloadRef,
        what it saw of the Deployment, and a problem that makes the spec invalid for now.
        `adopt=False` (a Rollout being deleted) reads but never labels."""
        ref_body = raw.get("workloadRef")
        if not isinstance(ref_body, dict) or "template" in raw:
            return raw, None, None  # no workloadRef, or both: the engine says why
        try:
            ref = WorkloadRef.model_validate(ref_body)
        except ValidationError:
            return raw, None, None
        namespace, rollout = key
        body = self.bodies.get((namespace, ref.name))
        if body is None:
            body = await self.get(namespace, ref.name)
        if body is None:
            return raw, None, f"spec.workloadRef: Deployment {ref.name} not found in {namespace}"
        labels = body["metadata"].get("labels") or {}
        owners = body["metadata"].get("ownerReferences") or []
        if any(o.get("kind") == "Rollout" for o in owners):
            return raw, None, f"spec.workloadRef: {ref.name} is a Deployment made by Sluice"
        holder = labels.get(L.WORKLOAD)
        if holder and holder != rollout:
            return (
                raw,
                None,
                (
                    f"spec.workloadRef: Deployment {ref.name} is already the workload of Rollout "
                    f"{holder}; two Rollouts cannot take the same Deployment's pods"
                ),
            )
        moved = holder is not None and labels.get(L.INSTANCE) != self.instance  # other shard's
        if (holder is None or moved) and adopt:
            body = await self.label(namespace, ref.name, rollout)
        self.put(body)
        template = copy.deepcopy((body.get("spec") or {}).get("template") or {})
        meta = template.get("metadata")
        if isinstance(meta, dict):
            meta.pop("creationTimestamp", None)
        resolved = {k: v for k, v in raw.items() if k != "workloadRef"}
        resolved["template"] = template
        status = body.get("status") or {}
        seen = WorkloadObserved(
            name=ref.name,
            scale_down=ref.scale_down,
            replicas=int((body.get("spec") or {}).get("replicas", 1) or 0),
            ready=int(status.get("readyReplicas", 0) or 0),
        )
        return resolved, seen, None

    async def label(self, namespace: str, name: str, rollout: str | None) -> Body:
        """Labels are metadata only (no spec change, no drift for GitOps). sluice.dev/rollout
        (and this shard's label) lets the server-side selector of the Deployment watch bring
        it; sluice.dev/workload-of says it is the user's, not a child."""
        M.API_CALLS.labels("label_workload").inc()
        shard = self.instance if rollout else None
        patch = {
            "metadata": {"labels": {L.WORKLOAD: rollout, L.ROLLOUT: rollout, L.INSTANCE: shard}}
        }
        written = await self.kube.patch_deployment(namespace, name, patch)
        if rollout is None:
            self.bodies.pop((namespace, name), None)  # no longer watched: read when named
        return written

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        M.API_CALLS.labels("scale_workload").inc()
        written = await self.kube.patch_deployment(
            namespace, name, {"spec": {"replicas": replicas}}
        )
        self.put(written)
