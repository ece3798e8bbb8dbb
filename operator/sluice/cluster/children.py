"""Manifests of the child objects. Pure: the Rollout body in, dicts out."""

from __future__ import annotations

import copy
from typing import Any

from sluice.api.rollout import RolloutSpec
from sluice.cluster import labels as L
from sluice.engine.types import Slot

Body = dict[str, Any]


def owner_reference(rollout: Body) -> Body:
    meta = rollout["metadata"]
    return {
        "apiVersion": rollout.get("apiVersion", "sluice.dev/v1alpha1"),
        "kind": "Rollout",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def deployment_name(rollout_name: str, slot: Slot) -> str:
    return f"{rollout_name}-{slot}"


def baseline_name(rollout_name: str) -> str:
    return f"{rollout_name}-baseline"


def baseline_deployment(rollout: Body, stable: Body, revision: str, replicas: int) -> Body:
    """The stable's pod template (from its Deployment) as <rollout>-baseline: its pods are
    labelled sluice.dev/baseline=true and carry neither slot nor rollout label, so no
    Service of the Rollout selects them (every one selects by the rollout label)."""
    name = rollout["metadata"]["name"]
    template = copy.deepcopy((stable.get("spec") or {}).get("template") or {})
    meta = template.setdefault("metadata", {})
    ours = (L.SLOT, L.ROLLOUT)
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in ours}
    own = {L.BASELINE: "true", L.BASELINE_OF: name}
    meta["labels"] = {**labels, L.REVISION: revision, **own}
    match = dict(((stable.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
    selector: Body = {"matchLabels": {**{k: v for k, v in match.items() if k not in ours}, **own}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": baseline_name(name),
            "namespace": rollout["metadata"]["namespace"],
            "labels": {
                L.ROLLOUT: name,
                L.REVISION: revision,
                L.BASELINE: "true",
                **L.shard_of(rollout),
            },
            "annotations": {L.REVISION: revision},
            "ownerReferences": [owner_reference(rollout)],
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template},
    }


def deployment(
    rollout: Body,
    spec: RolloutSpec,
    slot: Slot,
    revision: str,
    replicas: int,
    template_generation: int,
) -> Body:
    """The slot's Deployment running `spec.template` at `revision`."""
    name = rollout["metadata"]["name"]
    own = {L.ROLLOUT: name, L.SLOT: slot}
    template = copy.deepcopy(spec.pod_template())
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **own, L.REVISION: revision}
    selector: Body = {"matchLabels": {**(spec.selector.match_labels or {}), **own}}
    if spec.selector.match_expressions:
        selector["matchExpressions"] = [
            e.model_dump(by_alias=True, exclude_none=True) for e in spec.selector.match_expressions
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name, slot),
            "namespace": rollout["metadata"]["namespace"],
            "labels": {
                **{k: v for k, v in (meta.get("labels") or {}).items() if k != L.INSTANCE},
                L.REVISION: revision,
                **L.shard_of(rollout),  # the Rollout's shard, never one the pods name
            },
            "annotations": {L.REVISION: revision, L.TEMPLATE_GENERATION: str(template_generation)},
            "ownerReferences": [owner_reference(rollout)],
        },
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": template,
            "revisionHistoryLimit": spec.revision_history_limit,
        },
    }


def service_ports(spec: RolloutSpec) -> list[Body]:
    """Service ports from the template's container ports (named when the container names them)."""
    ports: list[Body] = []
    seen: set[tuple[object, object]] = set()
    names: set[str] = set()
    for container in (spec.pod_template().get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if not isinstance(port, dict) or "containerPort" not in port:
                continue
            number, protocol = port["containerPort"], port.get("protocol", "TCP")
            if (number, protocol) in seen:
                continue  # two containers on one port: one Service port serves it
            seen.add((number, protocol))
            suffix = "" if protocol == "TCP" else f"-{str(protocol).lower()}"
            name = port.get("name") or f"p{number}{suffix}"
            if name in names:  # 53/TCP and 53/UDP named alike: the protocol tells them apart
                name = f"{name}{suffix or '-tcp'}"
            names.add(name)
            ports.append(
                {
                    "name": name,
                    "port": number,
                    "targetPort": port.get("name") or number,
                    "protocol": protocol,
                }
            )
    return ports


def service(rollout: Body, spec: RolloutSpec, name: str, role: str, slot: Slot | None) -> Body:
    """A Service of one role; `slot` None selects the pods of both slots."""
    selector = {**(spec.selector.match_labels or {}), L.ROLLOUT: rollout["metadata"]["name"]}
    if slot is not None:
        selector[L.SLOT] = slot
    ports = service_ports(spec)
    body_spec: Body = {"selector": selector, "ports": ports}
    if not ports:
        body_spec["clusterIP"] = "None"  # headless: a Service with no ports must be
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": rollout["metadata"]["namespace"],
            "labels": {
                L.ROLLOUT: rollout["metadata"]["name"],
                L.ROLE: role,
                **L.shard_of(rollout),
            },
            "ownerReferences": [owner_reference(rollout)],
        },
        "spec": body_spec,
    }
