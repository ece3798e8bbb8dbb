"""The Services every Rollout has, router or not; without a router they are the router.

Three Services: the root `<name>`, the stable one (`<name>-stable`) and the canary one
(`<name>-canary`), each selecting pods by slot. Without a traffic router the root selects
both slots while the canary takes traffic, so the weight is the share of Ready pods, and
an abort or a promotion moves all traffic in one write. With a router the root selects
the stable slot only (the router's split and a pod split would multiply), and the
routers point at the stable and canary Services.

Sluice's Services carry the plan last applied (`sluice.dev/traffic`), read from the
stable one (the root when the stable is the user's), so a restarted operator knows what
it asked for; whether the live objects still carry it is verified from the objects
themselves. The note also records the routers it was applied through, so a router
dropped from the spec can still be given back (routers/applied.py).

`stableService` / `canaryService` may name a Service the user made (as Argo Rollouts
users have): one that exists, is not Sluice's and belongs to no other Rollout is used as
it is. Sluice then only sets the `sluice.dev/slot` key of its selector, leaves every
other field as it was, never deletes it, and on deletion of the Rollout leaves it
selecting the stable version. A Service that another Rollout owns is refused.
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
from sluice.routers.base import Body, ObjectRef, RouteContext, RouterProblem, Verification


def encode(plan: TrafficPlan, routers: Body | None = None) -> str:
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
    if routers:
        data["routers"] = routers  # what the plan was applied through (routers/applied.py)
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


def service_ref(name: str) -> ObjectRef:
    return ObjectRef("", "v1", "services", "Service", name)


def rollout_owner(body: Body) -> str | None:
    """The Rollout a Service belongs to (label or owner reference); None: the user's."""
    meta = body.get("metadata") or {}
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("kind") == "Rollout"]
    owner = (meta.get("labels") or {}).get(L.ROLLOUT)
    return owner or (str(refs[0].get("name", "")) if refs else None)


def routers_note(ctx: RouteContext) -> Body | None:
    """What a router dropped from the spec later needs to give its objects back: the
    trafficRouting block and the Service names it routed between."""
    routing = ctx.spec.strategy.traffic_routing()
    if routing is None:
        return None
    return {
        "stableService": ctx.stable_service,
        "canaryService": ctx.canary_service,
        "trafficRouting": routing.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


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

    @staticmethod
    def named(ctx: RouteContext) -> list[str]:
        """The Services the spec names (stableService, canaryService): maybe the user's."""
        canary = ctx.spec.strategy.canary
        return [n for n in (canary.stable_service, canary.canary_service) if n]

    def watched(self, ctx: RouteContext) -> list[ObjectRef]:
        return [service_ref(name) for name in self.named(ctx)]

    def users(self, ctx: RouteContext) -> dict[str, Body]:
        """Named Services that are the user's: there, not Sluice's, of no Rollout."""
        found: dict[str, Body] = {}
        for name in self.named(ctx):
            if f"Service/{name}" in ctx.children:
                continue  # Sluice made it (owned by this Rollout)
            body = ctx.objects.get(f"Service/{name}")
            if body is not None and rollout_owner(body) is None:
                found[name] = body
        return found

    def claims(self, ctx: RouteContext) -> list[str]:
        """A user's Service one Rollout switches: no other Rollout may switch it too."""
        return [f"Service {name}" for name in self.users(ctx)]

    def holder(self, ctx: RouteContext) -> str:
        """The Service whose note is read: the stable one, or the root if the user owns it."""
        if ctx.stable_service in self.users(ctx) and ctx.spec.strategy.blue_green is None:
            return ctx.name
        return ctx.stable_service

    def applied(self, ctx: RouteContext) -> TrafficPlan | None:
        """The plan last applied, from the note; None: never applied."""
        body = ctx.children.get(f"Service/{self.holder(ctx)}")
        if body is None:
            return None
        return decode((body["metadata"].get("annotations") or {}).get(L.TRAFFIC))

    def verify(self, ctx: RouteContext, plan: TrafficPlan) -> Verification:
        users = self.users(ctx)
        for name, _role, slot in self.roles(ctx, plan):
            body = ctx.children.get(f"Service/{name}") or users.get(name)
            if body is None:
                return Verification(False, detail=f"Service {name} missing")
            selector = body.get("spec", {}).get("selector") or {}
            if selector.get(L.SLOT) != slot:
                return Verification(False, detail=f"Service {name} selects {selector}")
        return Verification(True)

    async def apply(self, ctx: RouteContext, plan: TrafficPlan, roles: set[str]) -> list[Body]:
        written: list[Body] = []
        stamp = encode(plan, routers_note(ctx))
        users = self.users(ctx)
        wanted: list[tuple[str, str, Slot | None]] = []
        for name, role, slot in self.roles(ctx, plan):
            if role not in roles:
                continue
            if name in users:  # the user's: only the slot key of its selector
                written += await self._select(ctx, users[name], slot)
            else:
                wanted.append((name, role, slot))
        if wanted and not any(f"Service/{n}" in ctx.children for n, _, _ in wanted):
            # A new Rollout: none is there, nothing selects anything yet, so the order does
            # not matter; created side by side, one round trip instead of three.
            made = await self._create_all(ctx, plan, stamp, wanted)
            wanted = [w for w in wanted if w[0] not in {b["metadata"]["name"] for b in made}]
            written += made
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
                owner = rollout_owner(current)
                if owner is None and name in self.named(ctx):  # the user's, not cached yet
                    written += await self._select(ctx, current, slot)
                    continue
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

    async def restamp(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        """The note rewritten for the routers the spec names now (the plan unchanged)."""
        name = self.holder(ctx)
        if f"Service/{name}" not in ctx.children:
            return []
        patch = {"metadata": {"annotations": {L.TRAFFIC: encode(plan, routers_note(ctx))}}}
        body: Body = await self.kube.patch_service(ctx.namespace, name, patch)
        body.setdefault("kind", "Service")
        return [body]

    async def _select(self, ctx: RouteContext, body: Body, slot: Slot | None) -> list[Body]:
        """The user's Service on `slot`: one write of the slot key, only when it differs."""
        if slot is None or ((body.get("spec") or {}).get("selector") or {}).get(L.SLOT) == slot:
            return []
        patch = {
            "metadata": {"resourceVersion": body["metadata"].get("resourceVersion")},
            "spec": {"selector": {L.SLOT: slot}},
        }
        out: Body = await self.kube.patch_service(ctx.namespace, body["metadata"]["name"], patch)
        return [out]

    async def release(self, ctx: RouteContext) -> list[Body]:
        """Deleted: the user's stable and canary Services are left on the stable version."""
        stable = (ctx.rollout.get("status") or {}).get("stableSlot")
        if stable not in ("a", "b"):
            return []
        written: list[Body] = []
        for body in self.users(ctx).values():
            written += await self._select(ctx, body, "a" if stable == "a" else "b")
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


async def mark_named(
    kube: Kube, namespace: str, body: Body, instance: str | None = None
) -> Body | None:
    """A user's Service a Rollout names, read directly (the watch did not bring it): labelled
    role=named (and with the shard of the Rollout of `instance`) so the Service watch's
    server-side selector brings its later changes. Only metadata labels are written, never
    its spec (no drift for GitOps); Sluice's own Services and ones already labelled are
    returned as they are."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    if labels.get(L.ROLLOUT) or labels.get(L.ROLE):
        return body  # Sluice's (or another Rollout's): watched by its own labels already
    patch = {
        "metadata": {"labels": {L.ROLE: L.NAMED, **({L.INSTANCE: instance} if instance else {})}}
    }
    try:
        marked: Body = await kube.patch_service(namespace, body["metadata"]["name"], patch)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return None  # deleted in between: missing
    marked.setdefault("kind", "Service")
    return marked


async def unmark_named(kube: Kube, namespace: str, bodies: list[Body]) -> None:
    """The role=named label taken off the user's Services no Rollout names any more."""
    for body in bodies:
        labels = (body.get("metadata") or {}).get("labels") or {}
        if body.get("kind") != "Service" or labels.get(L.ROLE) != L.NAMED:
            continue
        patch = {"metadata": {"labels": {L.ROLE: None, L.INSTANCE: None}}}
        try:
            await kube.patch_service(namespace, body["metadata"]["name"], patch)
        except ApiException as exc:
            if exc.status != 404:  # gone already: nothing to unlabel
                raise
