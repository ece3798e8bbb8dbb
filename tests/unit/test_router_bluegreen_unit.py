"""The blue-green Services router against a fake core API (no API server)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from sluice.engine.types import TrafficPlan
from sluice.engine.validate import parse_spec
from sluice.routers import factory
from sluice.routers.base import RouteContext
from sluice.routers.bluegreen import BlueGreenServices

SLOT = "sluice.dev/slot"


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def patch_service(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        self.patches.append((name, patch))
        return {"metadata": {"name": name, "namespace": namespace}, "spec": patch["spec"]}


def service(name: str, slot: str | None = None, **meta: Any) -> dict[str, Any]:
    selector = {"app": "web", **({SLOT: slot} if slot else {})}
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "7", **meta},
        "spec": {"selector": selector},
    }


def ctx(objects: list[dict[str, Any]], status: dict[str, Any] | None = None) -> RouteContext:
    spec = parse_spec(
        {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "x"}]},
            },
            "strategy": {
                "blueGreen": {"activeService": "web-active", "previewService": "web-preview"}
            },
        }
    )
    rollout = {"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}
    if status:
        rollout["status"] = status
    return RouteContext(
        rollout, spec, {}, {f"Service/{o['metadata']['name']}": copy.deepcopy(o) for o in objects}
    )


def test_blue_green_has_only_its_router_which_edits_user_objects() -> None:
    c = ctx([])
    routers = factory.routers(FakeKube(), c.spec)  # type: ignore[arg-type]
    assert [type(p) for p in routers.providers] == [BlueGreenServices]
    assert routers.edits_user_objects
    assert routers.claims(c) == ["Service web-active", "Service web-preview"]
    assert [r.key for r in routers.watched(c)] == ["Service/web-active", "Service/web-preview"]
    roles = [role for _n, role, _s in routers.services.roles(c, TrafficPlan("a"))]
    assert roles == ["stable", "canary"], "no root Service: the active one takes its place"


def test_preview_follows_the_new_version_and_active_the_stable() -> None:
    kube = FakeKube()
    router = BlueGreenServices(kube)  # type: ignore[arg-type]
    c = ctx([service("web-active", "a"), service("web-preview", "a")])
    plan = TrafficPlan("a", "b")
    assert not router.verify(c, plan).verified
    asyncio.run(router.apply(c, plan))
    assert kube.patches == [
        ("web-preview", {"metadata": {"resourceVersion": "7"}, "spec": {"selector": {SLOT: "b"}}})
    ], "the active Service, already right, is not written"


def test_the_switch_is_one_write_of_the_active_service() -> None:
    kube = FakeKube()
    router = BlueGreenServices(kube)  # type: ignore[arg-type]
    c = ctx([service("web-active", "a"), service("web-preview", "b")])
    asyncio.run(router.apply(c, TrafficPlan("b")))
    assert [(name, p["spec"]) for name, p in kube.patches] == [
        ("web-active", {"selector": {SLOT: "b"}})
    ]
    done = ctx([service("web-active", "b"), service("web-preview", "b")])
    assert router.verify(done, TrafficPlan("b")).verified


def test_a_missing_or_foreign_service_is_a_problem_and_nothing_is_written() -> None:
    router = BlueGreenServices(FakeKube())  # type: ignore[arg-type]
    missing = router.verify(ctx([service("web-preview")]), TrafficPlan("a"))
    assert missing.problem and "activeService: Service web-active not found" in missing.problem
    owned = service("web-active", labels={"sluice.dev/rollout": "shop"})
    foreign = router.verify(ctx([owned, service("web-preview")]), TrafficPlan("a"))
    assert foreign.problem and "belongs to Rollout shop" in foreign.problem


def test_release_leaves_both_on_the_stable() -> None:
    kube = FakeKube()
    router = BlueGreenServices(kube)  # type: ignore[arg-type]
    c = ctx([service("web-active", "a"), service("web-preview", "b")], {"stableSlot": "a"})
    asyncio.run(router.release(c))
    assert [(name, p["spec"]) for name, p in kube.patches] == [
        ("web-preview", {"selector": {SLOT: "a"}})
    ]
