"""From cached child bodies to what the engine reads."""

from __future__ import annotations

import dataclasses
from typing import Any

from sluice.cluster import labels as L
from sluice.engine.types import (
    SLOTS,
    JobObserved,
    Observed,
    RunObserved,
    Slot,
    SlotObserved,
    TrafficObserved,
)

Body = dict[str, Any]


def slot_observed(body: Body | None) -> SlotObserved:
    """Ready pods of the Deployment's current template, counted conservatively.

    Until the Deployment controller has seen the template Sluice wrote, nothing
    counts as Ready; during its rolling update, old pods are assumed Ready and
    subtracted, so `ready` never overstates the new revision.
    """
    if body is None or body.get("metadata", {}).get("deletionTimestamp"):
        return SlotObserved()
    meta, spec, status = body["metadata"], body.get("spec", {}), body.get("status") or {}
    annotations = meta.get("annotations") or {}
    revision = annotations.get(L.REVISION, "")
    wanted_generation = int(annotations.get(L.TEMPLATE_GENERATION, "0") or 0)
    pods = int(status.get("replicas", 0) or 0)
    if int(status.get("observedGeneration", 0) or 0) < wanted_generation:
        ready = 0
    else:
        updated = int(status.get("updatedReplicas", 0) or 0)
        old = max(0, pods - updated)
        ready = max(0, min(int(status.get("readyReplicas", 0) or 0) - old, updated))
    return SlotObserved(True, revision, int(spec.get("replicas", 0) or 0), pods, ready)


def images(template: Body) -> dict[str, str]:
    spec = template.get("spec") or {}
    return {
        f"{group}/{c.get('name')}": str(c.get("image"))
        for group in ("initContainers", "containers")
        for c in spec.get(group) or []
        if isinstance(c, dict)
    }


def drift(body: Body | None, template: Body) -> str:
    """Images in the live Deployment that are not the template's (a hand edit). Only images:
    the API server normalizes other fields (quantities, defaults) and would look edited."""
    if body is None:
        return ""
    live = images((body.get("spec") or {}).get("template") or {})
    want = images(template)
    changed = [
        f"{k.split('/')[1]}: {live.get(k)} instead of {v}"
        for k, v in want.items()
        if live.get(k) != v
    ]
    return "; ".join(changed)


def observe(
    name: str,
    children: dict[str, Body],
    traffic: TrafficObserved,
    rejected: dict[str, str] | None = None,
    revision: str = "",
    template: Body | None = None,
) -> Observed:
    slots: dict[Slot, SlotObserved] = {}
    wanted = False
    for slot in SLOTS:
        body = children.get(f"Deployment/{name}-{slot}")
        seen = slot_observed(body)
        if template is not None and seen.exists and seen.revision == revision:
            seen = dataclasses.replace(seen, drifted=drift(body, template))
        if seen.exists and seen.revision == revision and body is not None:
            wanted = (body["metadata"].get("annotations") or {}).get(L.BASELINE) == "wanted"
        slots[slot] = seen
    runs = {
        body["metadata"]["name"]: run_observed(body)
        for name, body in children.items()
        if name.startswith("AnalysisRun/")
    }
    jobs = {
        body["metadata"]["name"]: job_observed(body)
        for name, body in children.items()
        if name.startswith("Job/")
    }
    return Observed(
        slots=slots,
        traffic=traffic,
        rejected=dict(rejected or {}),
        runs=runs,
        baseline=slot_observed(children.get(f"Deployment/{name}-baseline")),
        baseline_wanted=wanted,
        jobs=jobs,
    )


def job_observed(body: Body) -> JobObserved:
    """Succeeded or Failed once the Job controller says so (its conditions), else Running."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    labels = meta.get("labels") or {}
    attempt = str(labels.get(L.ATTEMPT, ""))
    phase, message = "Running", ""
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            phase, message = "Succeeded", "complete"
        elif condition.get("type") == "Failed":
            phase = "Failed"
            message = f"{condition.get('reason', '')}: {condition.get('message', '')}".strip(": ")
    if meta.get("deletionTimestamp") and phase == "Running":
        phase = "Terminating"
    return JobObserved(
        phase=phase,
        message=message[:500],
        revision=str(labels.get(L.REVISION, "")),
        attempt=int(attempt) if attempt.isdigit() else None,
    )


def run_observed(body: Body) -> RunObserved:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    return RunObserved(
        attempt=run_attempt(body),
        kind=str(spec.get("kind", "")),
        revision=str(spec.get("revision", "")),
        phase=str(status.get("phase", "Pending")),
        message=str(status.get("message", "")),
        step=spec.get("step"),
        on_error=status.get("onError"),
        terminating=bool(spec.get("terminate")),
    )


def run_attempt(body: Body) -> int | None:
    """The attempt in a run's name: `<rollout>-<revision>-<attempt>-<kind>`."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    name = str(meta.get("name", ""))
    prefix = f"{(meta.get('labels') or {}).get(L.ROLLOUT, '')}-{spec.get('revision', '')}-"
    rest = name[len(prefix) :] if name.startswith(prefix) else ""
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None
