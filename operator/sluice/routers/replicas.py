"""No mesh, no ingress: the weight is the share of Ready pods behind one Service.

Three Services per Rollout: `<name>` (the root: both slots while a canary takes
traffic, the stable slot alone otherwise, so an abort or a promotion moves all
traffic at once), `<name>-stable` and `<name>-canary` (one slot each, for
metric queries and for the mesh routers). A root Service that exists but is not
owned by the Rollout is left alone.
"""

from __future__ import annotations

import json

from sluice.cluster import children as C
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube
from sluice.engine.types import Slot, TrafficTarget, other
from sluice.routers.base import Body, RouteContext


def _encode(target: TrafficTarget) -> str:
    return json.dumps(
        {
            "stableSlot": target.stable_slot,
            "canarySlot": target.canary_slot,
            "canaryWeight": target.canary_weight,
        },
        sort_keys=True,
    )


def _decode(text: str | None) -> TrafficTarget | None:
    try:
        data = json.loads(text or "")
        return TrafficTarget(data["stableSlot"], data["canarySlot"], int(data["canaryWeight"]))
    except (ValueError, KeyError, TypeError):
        return None


class ReplicaRouter:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def _roles(
        self, ctx: RouteContext, target: TrafficTarget
    ) -> list[tuple[str, str, Slot | None]]:
        root_slot = None if target.canary_slot else target.stable_slot
        canary = target.canary_slot or other(target.stable_slot)
        return [
            (ctx.name, "root", root_slot),
            (f"{ctx.name}-stable", "stable", target.stable_slot),
            (f"{ctx.name}-canary", "canary", canary),
        ]

    def observe(self, ctx: RouteContext) -> TrafficTarget | None:
        stable = ctx.children.get(f"Service/{ctx.name}-stable")
        if stable is None or f"Service/{ctx.name}-canary" not in ctx.children:
            return None
        return _decode((stable["metadata"].get("annotations") or {}).get(L.TRAFFIC))

    async def apply(self, ctx: RouteContext, target: TrafficTarget) -> list[Body]:
        written: list[Body] = []
        stamp = _encode(target)
        for name, role, slot in self._roles(ctx, target):
            desired = C.service(ctx.rollout, ctx.spec, name, role, slot)
            desired["metadata"]["annotations"] = {L.TRAFFIC: stamp}
            current = ctx.children.get(f"Service/{name}")
            if current is None:
                current = await self.kube.get_service(ctx.namespace, name)
            if current is None:
                written.append(await self.kube.create_service(desired))
                continue
            owners = current["metadata"].get("ownerReferences") or []
            if not any(o.get("uid") == ctx.rollout["metadata"]["uid"] for o in owners):
                continue  # someone else's Service of that name
            patch = {
                "metadata": {
                    "annotations": {L.TRAFFIC: stamp},
                    "labels": desired["metadata"]["labels"],
                },
                "spec": {
                    "selector": {**desired["spec"]["selector"], L.SLOT: slot},
                    "ports": desired["spec"]["ports"],
                },
            }
            written.append(await self.kube.patch_service(ctx.namespace, name, patch))
        return written
