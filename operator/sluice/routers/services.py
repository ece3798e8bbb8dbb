"""The Services every Rollout has, router or not; without a router they are the router.

Three Services: the root `<name>`, the stable one (`<name>-stable`) and the canary one
(`<name>-canary`), each selecting pods by slot. Without a traffic router the root selects
both slots while the canary takes traffic, so the weight is the share of Ready pods, and
an abort or a promotion moves all traffic in one write. With a router the root selects
the stable slot only (the router's split and a pod split would multiply), and the
routers point at the stable and canary Services.

The stable Service carries the plan last applied (`sluice.dev/traffic`), so a restarted
operator knows what it asked for; whether the live objects still carry it is verified
from the objects themselves.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from sluice.api.traffic import HeaderRoutingMatch
from sluice.cluster import children as C
from sluice.cluster import labels as L
from sluice.cluster.kube import Kube
from sluice.engine.types import HeaderRoute, Slot, TrafficPlan, other
from sluice.routers.base import Body, RouteContext, RouterProblem, Verification


def encode(plan: TrafficPlan) -> str:
    routes = [
        {"name": r.name, "match": [m.model_dump(by_alias=True, exclude_none=True) for m in r.match]}
        for r in plan.header_routes
    ]
    data: dict[str, Any] = {
        "stableSlot": plan.stable_slot,
        "canarySlot": plan.canary_slot,
        "canaryWeight": plan.canary_weight,
    }
    if routes:
        data["headerRoutes"] = routes
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def decode(text: str | None) -> TrafficPlan | None:
    try:
        data = json.loads(text or "")
        routes = tuple(
            HeaderRoute(r["name"], tuple(HeaderRoutingMatch.model_validate(m) for m in r["match"]))
            for r in data.get("headerRoutes") or []
        )
        return TrafficPlan(
            data["stableSlot"], data["canarySlot"], int(data["canaryWeight"]), routes
        )
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


class ServiceRouter:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def roles(self, ctx: RouteContext, plan: TrafficPlan) -> list[tuple[str, str, Slot | None]]:
        """(Service name, role, slot it selects; None: both) in the order they are written."""
        routed = ctx.spec.strategy.traffic_routing() is not None
        stable_canary: list[tuple[str, str, Slot | None]] = [
            (ctx.stable_service, "stable", plan.stable_slot),
            (ctx.canary_service, "canary", plan.canary_slot or other(plan.stable_slot)),
        ]
        if ctx.spec.strategy.blue_green is not None:
            return stable_canary  # the user's activeService takes the root's place
        root_slot = None if plan.canary_slot and not routed else plan.stable_slot
        return [(ctx.name, "root", root_slot), *stable_canary]

    def applied(self, ctx: RouteContext) -> TrafficPlan | None:
        """The plan last applied, from the stable Service's note; None: never applied."""
        stable = ctx.children.get(f"Service/{ctx.stable_service}")
        if stable is None:
            return None
        return decode((stable["metadata"].get("annotations") or {}).get(L.TRAFFIC))

    def verify(self, ctx: RouteContext, plan: TrafficPlan) -> Verification:
        for name, _role, slot in self.roles(ctx, plan):
            body = ctx.children.get(f"Service/{name}")
            if body is None:
                return Verification(False, detail=f"Service {name} missing")
            selector = body.get("spec", {}).get("selector") or {}
            if selector.get(L.SLOT) != slot:
                return Verification(False, detail=f"Service {name} selects {selector}")
        return Verification(True)

    async def apply(self, ctx: RouteContext, plan: TrafficPlan, roles: set[str]) -> list[Body]:
        written: list[Body] = []
        stamp = encode(plan)
        wanted = [(n, r, s) for n, r, s in self.roles(ctx, plan) if r in roles]
        if wanted and not any(f"Service/{n}" in ctx.children for n, _, _ in wanted):
            # A new Rollout: none is there, nothing selects anything yet, so the order does
            # not matter; created side by side, one round trip instead of three.
            written = await self._create_all(ctx, plan, stamp, wanted)
            wanted = [w for w in wanted if w[0] not in {b["metadata"]["name"] for b in written}]
        for name, role, slot in wanted:
            desired = C.service(ctx.rollout, ctx.spec, name, role, slot)
            desired["metadata"]["annotations"] = {L.TRAFFIC: stamp}
            current = ctx.children.get(f"Service/{name}")
            if current is None:
                # Not in the watch cache: almost always not there at all (a new Rollout),
                # so create at once; only a name taken (409) costs a read.
                created, current = await self._create_or_read(ctx.namespace, desired)
                if created is not None:
                    written.append(created)
                    continue
            if not ctx.owned(current):
                owner = (current["metadata"].get("labels") or {}).get(L.ROLLOUT)
                whose = f"Rollout {owner}" if owner else "another owner"
                raise RouterProblem(
                    f"Service {name} ({role}) exists and belongs to {whose}; Sluice will not "
                    "take it over: rename or delete it"
                )
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
        for body in written:
            body.setdefault("kind", "Service")
        return written

    async def _create_all(
        self, ctx: RouteContext, plan: TrafficPlan, stamp: str, wanted: list[Any]
    ) -> list[Body]:
        """Create the Services side by side; the ones whose name is taken are left out."""

        async def one(name: str, role: str, slot: Slot | None) -> Body | None:
            desired = C.service(ctx.rollout, ctx.spec, name, role, slot)
            desired["metadata"]["annotations"] = {L.TRAFFIC: stamp}
            try:
                created: Body = await self.kube.create_service(desired)
                return created
            except ApiException as exc:
                if exc.status != 409:
                    raise
                return None

        found = await asyncio.gather(*(one(*w) for w in wanted))
        return [body for body in found if body is not None]

    async def _create_or_read(self, namespace: str, desired: Body) -> tuple[Body | None, Body]:
        """(created, None) or (None, the Service already there under that name)."""
        name = desired["metadata"]["name"]
        while True:
            try:
                return await self.kube.create_service(desired), {}
            except ApiException as exc:
                if exc.status != 409:
                    raise
            current = await self.kube.get_service(namespace, name)
            if current is not None:
                return None, current
