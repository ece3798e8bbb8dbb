"""Routers the spec no longer names, given back from what was last applied.

The plan note on Sluice's Service (routers/services.py) records the trafficRouting block
and the Service names each plan was applied through. A provider dropped from the spec,
or every provider when the Rollout is deleted with a spec that no longer parses, is
released from that record: the user's objects back to 100 % stable with Sluice's header
routes removed, Sluice's own objects of that provider deleted. The record is in the
cluster, so an operator killed halfway releases again (every release is idempotent)
before it rewrites the note.
"""

from __future__ import annotations

import contextlib
import json

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from sluice import logs
from sluice.api.rollout import RolloutSpec
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube
from sluice.routers.base import Body, RouteContext, RouterProblem
from sluice.routers.factory import PROVIDERS

log = logs.get("sluice.routers")


def note(children: dict[str, Body], holder: str | None) -> Body | None:
    """The `routers` record of the plan note on `holder` (or, when the spec cannot say
    which Service holds it, on Sluice's stable or root Service)."""
    services = [b for k, b in children.items() if k.startswith("Service/")]
    if holder is not None:
        services = [b for b in services if b["metadata"]["name"] == holder]
    else:
        rank = {"stable": 0, "root": 1}
        services = [b for b in services if (b["metadata"].get("labels") or {}).get(L.ROLE) in rank]
        services.sort(key=lambda b: rank[b["metadata"]["labels"][L.ROLE]])
    for body in services:
        text = (body["metadata"].get("annotations") or {}).get(L.TRAFFIC)
        try:
            found = json.loads(text or "").get("routers")
        except (ValueError, AttributeError):
            continue
        if isinstance(found, dict):
            return found
    return None


def spec_of(record: Body) -> RolloutSpec | None:
    """A spec carrying only what releasing needs: the Services and trafficRouting."""
    canary = {
        "stableService": record.get("stableService"),
        "canaryService": record.get("canaryService"),
        "trafficRouting": record.get("trafficRouting"),
    }
    raw = {
        "selector": {"matchLabels": {}},
        "template": {"spec": {"containers": [{"name": "released", "image": "none"}]}},
        "strategy": {"canary": {k: v for k, v in canary.items() if v is not None}},
    }
    try:
        return RolloutSpec.model_validate(raw)
    except (ValidationError, ValueError):
        return None


def dropped(record: Body, spec: RolloutSpec | None) -> list[str]:
    """Providers (trafficRouting fields) last applied that `spec` no longer names."""
    old = spec_of(record)
    routing = old.strategy.traffic_routing() if old else None
    if routing is None:
        return []
    now = spec.strategy.traffic_routing() if spec else None
    keep = set(now.providers()) if now else set()
    return [field for field in routing.providers() if field not in keep]


async def release(
    kube: Kube,
    rollout: Body,
    children: dict[str, Body],
    objects: dict[str, Body],
    record: Body,
    fields: list[str],
    delete_owned: bool = True,
) -> list[Body]:
    """Release `fields`' providers as last applied; returns the bodies written. A router
    object that is gone, or lacks what was managed in it, holds no traffic: skipped."""
    spec = spec_of(record)
    if spec is None:
        return []
    ctx = RouteContext(rollout, spec, children, objects)
    written: list[Body] = []
    for field in fields:
        provider = PROVIDERS[field](kube)
        try:
            written += await provider.release(ctx)
        except RouterProblem as exc:
            log.info("router release skipped", rollout=ctx.name, router=field, reason=str(exc))
        if not delete_owned:
            continue
        for ref in provider.watched(ctx):
            if ref.owned and ctx.get(ref) is not None:
                with contextlib.suppress(ApiException):  # gone already is fine
                    await kube.delete_object(ref, ctx.namespace)
                written = [b for b in written if b["metadata"]["name"] != ref.name]
    return written
