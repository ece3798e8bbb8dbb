"""Blue-green Services: the user's activeService and previewService, switched by slot.

Both Services are the user's own: Sluice sets only the `sluice.dev/slot` key of their
selectors (the active one to the stable slot, the preview one to the new version's slot,
or to the stable when no rollout runs), each in one write, and only when it differs. A
missing Service or one that Sluice or another Rollout owns stops the switch with a
problem naming it; nothing is written then. On deletion of the Rollout both are left
pointing at the stable version (the finalizer's release).
"""

from __future__ import annotations

from typing import ClassVar

from sluice.cluster import labels as L
from sluice.cluster.kube import Kube
from sluice.engine.types import Slot, TrafficPlan
from sluice.routers.base import Body, Capabilities, ObjectRef, RouteContext, Verification


def service_ref(name: str) -> ObjectRef:
    return ObjectRef("", "v1", "services", "Service", name)


class BlueGreenServices:
    name: ClassVar[str] = "blueGreen"
    capabilities: ClassVar[Capabilities] = Capabilities(edits_user_objects=True)

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    @staticmethod
    def _roles(ctx: RouteContext, plan: TrafficPlan) -> list[tuple[str, str, Slot]]:
        """(field, Service name, slot it should select), the active one first."""
        bg = ctx.spec.strategy.blue_green
        assert bg is not None
        roles: list[tuple[str, str, Slot]] = [
            ("activeService", bg.active_service, plan.stable_slot)
        ]
        if bg.preview_service:
            roles.append(
                ("previewService", bg.preview_service, plan.canary_slot or plan.stable_slot)
            )
        return roles

    def claims(self, ctx: RouteContext) -> list[str]:
        """A Service one Rollout switches: no other Rollout may switch it too."""
        plan = TrafficPlan(stable_slot="a")
        return [f"Service {name}" for _field, name, _slot in self._roles(ctx, plan)]

    def watched(self, ctx: RouteContext) -> list[ObjectRef]:
        return [service_ref(name) for _f, name, _s in self._roles(ctx, TrafficPlan("a"))]

    def _problem(self, field: str, name: str, body: Body | None) -> str | None:
        if body is None:
            return (
                f"blueGreen.{field}: Service {name} not found; create it (Sluice only sets "
                f"{L.SLOT} in its selector)"
            )
        meta = body.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(L.ROLLOUT)
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("kind") == "Rollout"]
        if owner or refs:
            whose = owner or refs[0].get("name", "")
            return (
                f"blueGreen.{field}: Service {name} belongs to Rollout {whose}; Sluice will not "
                "take it over: name a Service of your own"
            )
        return None

    def verify(self, ctx: RouteContext, plan: TrafficPlan) -> Verification:
        verified, detail = True, []
        for field, name, slot in self._roles(ctx, plan):
            body = ctx.objects.get(f"Service/{name}")
            problem = self._problem(field, name, body)
            if problem:
                return Verification(False, problem=problem)
            assert body is not None
            selected = (body.get("spec") or {}).get("selector") or {}
            if selected.get(L.SLOT) != slot:
                verified = False
                detail.append(f"{name} selects {selected}")
        return Verification(verified, detail="; ".join(detail))

    async def _write(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        written: list[Body] = []
        for _field, name, slot in self._roles(ctx, plan):
            body = ctx.objects.get(f"Service/{name}")
            if body is None:
                continue
            if ((body.get("spec") or {}).get("selector") or {}).get(L.SLOT) == slot:
                continue  # already there: no write, so a switch is exactly one write
            patch = {
                "metadata": {"resourceVersion": body["metadata"].get("resourceVersion")},
                "spec": {"selector": {L.SLOT: slot}},
            }
            out = await self.kube.patch_service(ctx.namespace, name, patch)
            out.setdefault("kind", "Service")
            written.append(out)
        return written

    async def apply(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        return await self._write(ctx, plan)

    async def release(self, ctx: RouteContext) -> list[Body]:
        """Deleted: both Services left on the stable version (the active one already is)."""
        stable = (ctx.rollout.get("status") or {}).get("stableSlot")
        if stable not in ("a", "b"):
            return []
        slot: Slot = "a" if stable == "a" else "b"
        return await self._write(ctx, TrafficPlan(stable_slot=slot))
