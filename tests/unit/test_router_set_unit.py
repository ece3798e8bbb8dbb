"""RouterSet and the Services every Rollout has, on an in-memory Service store (no API server)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, ClassVar

import pytest

from sluice.cluster import children as C
from sluice.cluster import labels as L
from sluice.engine.types import TrafficPlan
from sluice.engine.validate import parse_spec
from sluice.routers.base import (
    Body,
    Capabilities,
    ObjectRef,
    RouteContext,
    RouterProblem,
    Verification,
)
from sluice.routers.services import ServiceRouter, decode, encode
from sluice.routers.set import PartlyApplied, RouterSet, toward_stable

ROLLOUT: Body = {"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}
AT_50 = TrafficPlan("a", "b", 50)
BACK = TrafficPlan("a")  # an abort: all traffic to the stable


def routed_spec(routed: bool = True) -> Any:
    canary: dict[str, Any] = {"steps": [{"setWeight": 50}]}
    if routed:
        canary["trafficRouting"] = {"nginx": {"stableIngress": "web"}}
    return parse_spec(
        {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "app", "image": "x", "ports": [{"containerPort": 80}]}]
                },
            },
            "strategy": {"canary": canary},
        }
    )


class FakeServices:
    """Service create / patch / get, on a dict."""

    def __init__(self) -> None:
        self.bodies: dict[str, Body] = {}
        self.patched: list[str] = []

    async def create_service(self, body: Body) -> Body:
        self.bodies[body["metadata"]["name"]] = copy.deepcopy(body)
        return copy.deepcopy(body)

    async def patch_service(self, namespace: str, name: str, patch: Body) -> Body:
        body = self.bodies[name]
        body["metadata"].setdefault("annotations", {}).update(patch["metadata"]["annotations"])
        body["spec"].update(patch["spec"])
        self.patched.append(name)
        return copy.deepcopy(body)

    async def get_service(self, namespace: str, name: str) -> Body | None:
        return copy.deepcopy(self.bodies.get(name))


class FakeRouter:
    """A provider that either carries every plan it is given or has a problem."""

    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, problem: str | None = None, fails_on_write: str | None = None) -> None:
        self.problem = problem
        self.fails_on_write = fails_on_write
        self.plan: TrafficPlan | None = AT_50
        self.writes: list[TrafficPlan] = []

    def watched(self, ctx: RouteContext) -> list[ObjectRef]:
        return []

    def verify(self, ctx: RouteContext, plan: TrafficPlan) -> Verification:
        if self.problem:
            return Verification(False, problem=self.problem)
        return Verification(self.plan == plan)

    async def apply(self, ctx: RouteContext, plan: TrafficPlan) -> list[Body]:
        if self.fails_on_write:
            raise RouterProblem(self.fails_on_write)
        self.plan = plan
        self.writes.append(plan)
        return [{"kind": "Fake", "metadata": {"name": "fake"}}]

    async def release(self, ctx: RouteContext) -> list[Body]:
        return await self.apply(ctx, BACK)


def services_at(spec: Any, plan: TrafficPlan) -> dict[str, Body]:
    """The three Services as Sluice left them after applying `plan` (the watch cache)."""
    ctx = RouteContext(ROLLOUT, spec, {})
    out = {}
    for name, role, slot in ServiceRouter(None).roles(ctx, plan):  # type: ignore[arg-type]
        body = C.service(ROLLOUT, spec, name, role, slot)
        body["metadata"]["annotations"] = {L.TRAFFIC: encode(plan)}
        out[f"Service/{name}"] = body
    return out


def router_set(*providers: FakeRouter) -> tuple[RouterSet, FakeServices, RouteContext]:
    spec = routed_spec()
    kube = FakeServices()
    children = services_at(spec, AT_50)
    for key, body in children.items():
        kube.bodies[key.removeprefix("Service/")] = copy.deepcopy(body)
    routers = RouterSet(ServiceRouter(kube), list(providers))  # type: ignore[arg-type]
    return routers, kube, RouteContext(ROLLOUT, spec, children)


def selected(kube: FakeServices, name: str) -> str | None:
    return kube.bodies[name]["spec"]["selector"].get(L.SLOT)


def test_an_abort_moves_every_router_that_can_take_it_and_still_names_the_broken_one() -> None:
    healthy = FakeRouter()
    broken = FakeRouter(problem="VirtualService web: not found")
    routers, kube, ctx = router_set(healthy, broken)
    with pytest.raises(PartlyApplied) as raised:
        asyncio.run(routers.apply(ctx, BACK))
    assert healthy.plan == BACK  # e.g. the NGINX canary Ingress back at weight 0
    assert "VirtualService web: not found" in str(raised.value)  # the problem stays reported
    assert {b["kind"] for b in raised.value.written} >= {"Service", "Fake"}
    assert selected(kube, "web") == "a" and selected(kube, "web-stable") == "a"
    # The broken router may still send requests to the canary Service: it keeps its pods.
    assert selected(kube, "web-canary") == "b"
    # the plan noted is the one applied (the note also records the routers: applied.py)
    assert decode(kube.bodies["web-stable"]["metadata"]["annotations"][L.TRAFFIC]) == BACK


def test_a_router_refusing_the_write_does_not_stop_the_others_going_back_to_stable() -> None:
    refusing = FakeRouter(fails_on_write="HTTPRoute web: changed under us")
    healthy = FakeRouter()
    routers, _kube, ctx = router_set(refusing, healthy)
    with pytest.raises(PartlyApplied, match="HTTPRoute web: changed under us"):
        asyncio.run(routers.apply(ctx, BACK))
    assert healthy.plan == BACK


@pytest.mark.parametrize(
    "plan", [TrafficPlan("a", "b", 60), TrafficPlan("b")], ids=["weight-up", "promotion"]
)
def test_traffic_toward_the_canary_moves_in_all_routers_or_none(plan: TrafficPlan) -> None:
    healthy = FakeRouter()
    broken = FakeRouter(problem="VirtualService web: not found")
    routers, kube, ctx = router_set(healthy, broken)
    with pytest.raises(RouterProblem, match="VirtualService web") as raised:
        asyncio.run(routers.apply(ctx, plan))
    assert not isinstance(raised.value, PartlyApplied)
    assert healthy.writes == [] and kube.patched == []


def test_all_healthy_routers_carry_the_plan_and_nothing_is_raised() -> None:
    one, two = FakeRouter(), FakeRouter()
    routers, _kube, ctx = router_set(one, two)
    asyncio.run(routers.apply(ctx, TrafficPlan("a", "b", 60)))
    assert one.plan == two.plan == TrafficPlan("a", "b", 60)


def test_toward_stable() -> None:
    assert toward_stable(AT_50, BACK)
    assert toward_stable(AT_50, TrafficPlan("a", "b", 20))
    assert toward_stable(None, BACK)  # nothing applied yet: a release
    assert not toward_stable(AT_50, TrafficPlan("a", "b", 60))
    assert not toward_stable(AT_50, TrafficPlan("b"))  # a promotion
    assert not toward_stable(None, AT_50)


# ---------------------------------------------------------------- the root Service


def test_with_a_router_the_root_service_selects_only_the_stable_slot_during_a_canary() -> None:
    # Otherwise the router's 5 % and a pod split of the root Service would multiply.
    routers, kube, ctx = router_set(FakeRouter())
    asyncio.run(routers.apply(ctx, TrafficPlan("a", "b", 5)))
    assert selected(kube, "web") == "a"
    assert selected(kube, "web-stable") == "a" and selected(kube, "web-canary") == "b"
    fresh = RouteContext(ROLLOUT, ctx.spec, {f"Service/{n}": b for n, b in kube.bodies.items()})
    assert ServiceRouter(kube).verify(fresh, TrafficPlan("a", "b", 5)).verified


def test_without_a_router_the_root_service_selects_both_slots_during_a_canary() -> None:
    spec = routed_spec(routed=False)
    ctx = RouteContext(ROLLOUT, spec, {})
    roles = {role: slot for _n, role, slot in ServiceRouter(None).roles(ctx, AT_50)}  # type: ignore[arg-type]
    assert roles == {"root": None, "stable": "a", "canary": "b"}
    assert {r: s for _n, r, s in ServiceRouter(None).roles(ctx, BACK)}["root"] == "a"  # type: ignore[arg-type]
