"""The user's own stable/canary Services (an Argo Rollouts migration), routers dropped from
the spec released from the plan note, and NGINX claims, against a fake API (no server)."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

from sluice.engine.types import TrafficPlan
from sluice.engine.validate import parse_spec
from sluice.routers import applied as A
from sluice.routers import factory
from sluice.routers.base import ObjectRef, RouteContext, RouterProblem
from sluice.routers.services import ServiceRouter, decode

SLOT = "sluice.dev/slot"
TRAFFIC = "sluice.dev/traffic"
UID = "u-1"


class FakeKube:
    """Records every write; objects keyed by "Kind/name"."""

    def __init__(self, objects: dict[str, dict[str, Any]] | None = None) -> None:
        self.objects = copy.deepcopy(objects or {})
        self.writes: list[tuple[str, str, Any]] = []

    async def create_service(self, body: dict[str, Any]) -> Any:
        self.writes.append(("create", f"Service/{body['metadata']['name']}", body))
        return copy.deepcopy(body)

    async def patch_service(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        self.writes.append(("patch", f"Service/{name}", patch))
        return {"metadata": {"name": name, "namespace": namespace}, "spec": patch.get("spec", {})}

    async def get_object(self, ref: ObjectRef, namespace: str) -> Any:
        return copy.deepcopy(self.objects.get(ref.key))

    async def replace_object(self, ref: ObjectRef, namespace: str, body: dict[str, Any]) -> Any:
        self.writes.append(("replace", ref.key, body))
        return copy.deepcopy(body)

    async def patch_object(self, ref: ObjectRef, namespace: str, patch: Any) -> Any:
        self.writes.append(("patch", ref.key, patch))
        return {"metadata": {"name": ref.name}, **copy.deepcopy(self.objects.get(ref.key, {}))}

    async def delete_object(self, ref: ObjectRef, namespace: str) -> None:
        self.writes.append(("delete", ref.key, None))


def spec(canary: dict[str, Any]) -> Any:
    return parse_spec(
        {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "app", "image": "x", "ports": [{"containerPort": 80}]}]
                },
            },
            "strategy": {"canary": {"steps": [{"setWeight": 5}], **canary}},
        }
    )


def users_service(name: str, slot: str | None = None, **labels: str) -> dict[str, Any]:
    """A Service as an Argo Rollouts user has it: their labels, ports and selector."""
    selector = {"app": "web", **({SLOT: slot} if slot else {})}
    return {
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "resourceVersion": "7",
            "labels": {"team": "shop", **labels},
            "annotations": {"owner": "me"},
        },
        "spec": {"selector": selector, "ports": [{"name": "web", "port": 8080}]},
    }


def ours(name: str, role: str, note: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "shop",
        "labels": {"sluice.dev/rollout": "web", "sluice.dev/role": role},
        "ownerReferences": [{"kind": "Rollout", "name": "web", "uid": UID}],
    }
    if note is not None:
        meta["annotations"] = {TRAFFIC: note}
    return {"kind": "Service", "metadata": meta, "spec": {"selector": {SLOT: "a"}}}


def context(
    canary: dict[str, Any],
    children: list[dict[str, Any]] = (),  # type: ignore[assignment]
    objects: list[dict[str, Any]] = (),  # type: ignore[assignment]
    status: dict[str, Any] | None = None,
) -> RouteContext:
    rollout: dict[str, Any] = {"metadata": {"name": "web", "namespace": "shop", "uid": UID}}
    if status:
        rollout["status"] = status
    return RouteContext(
        rollout,
        spec(canary),
        {f"{b['kind']}/{b['metadata']['name']}": b for b in children},
        {f"{b['kind']}/{b['metadata']['name']}": b for b in objects},
    )


NAMED = {"stableService": "web-stable", "canaryService": "web-canary"}


# ---------------------------------------------------------------- the user's Services


def test_the_users_named_services_get_only_the_slot_key_of_their_selector() -> None:
    kube = FakeKube()
    router = ServiceRouter(kube)  # type: ignore[arg-type]
    c = context(
        NAMED,
        children=[ours("web", "root")],
        objects=[users_service("web-stable"), users_service("web-canary")],
    )
    assert [r.key for r in router.watched(c)] == ["Service/web-stable", "Service/web-canary"]
    assert sorted(router.users(c)) == ["web-canary", "web-stable"]
    plan = TrafficPlan("a", "b", 5)
    asyncio.run(router.apply(c, plan, {"root", "stable", "canary"}))
    by_name = {key: body for _verb, key, body in kube.writes}
    only_slot = {"metadata": {"resourceVersion": "7"}, "spec": {"selector": {SLOT: "a"}}}
    assert by_name["Service/web-stable"] == only_slot
    assert by_name["Service/web-canary"]["spec"] == {"selector": {SLOT: "b"}}
    assert set(by_name["Service/web-canary"]["metadata"]) == {"resourceVersion"}
    # The note is kept on Sluice's root Service, never on the user's.
    root = by_name["Service/web"]
    assert decode(root["metadata"]["annotations"][TRAFFIC]) == plan
    assert router.holder(c) == "web"


def test_the_users_service_already_on_its_slot_is_not_written_and_is_read_back() -> None:
    kube = FakeKube()
    router = ServiceRouter(kube)  # type: ignore[arg-type]
    note = json.dumps({"stableSlot": "a", "canarySlot": "b", "canaryWeight": 5})
    root = ours("web", "root", note)
    root["spec"]["selector"] = {}  # no router: the root selects both slots
    stable, canary = users_service("web-stable", "a"), users_service("web-canary", "b")
    c = context(NAMED, children=[root], objects=[stable, canary])
    plan = TrafficPlan("a", "b", 5)
    assert router.applied(c) == plan
    assert router.verify(c, plan).verified
    assert not router.verify(c, TrafficPlan("b", "a", 5)).verified
    asyncio.run(router.apply(c, plan, {"stable", "canary"}))
    assert kube.writes == []


def test_a_named_service_of_another_rollout_is_refused() -> None:
    kube = FakeKube()
    router = ServiceRouter(kube)  # type: ignore[arg-type]
    theirs = users_service("web-stable", **{"sluice.dev/rollout": "api"})
    c = context(NAMED, children=[ours("web", "root")], objects=[theirs])
    assert "web-stable" not in router.users(c)

    async def taken(body: dict[str, Any]) -> Any:
        from kubernetes.client.exceptions import ApiException

        raise ApiException(status=409)

    async def read(namespace: str, name: str) -> Any:
        return theirs

    kube.create_service = taken  # type: ignore[method-assign]
    kube.get_service = read  # type: ignore[attr-defined]
    with pytest.raises(RouterProblem, match=r"web-stable .*belongs to Rollout api"):
        asyncio.run(router.apply(c, TrafficPlan("a", "b", 5), {"stable"}))


def test_deleted_rollout_leaves_the_users_services_on_the_stable() -> None:
    kube = FakeKube()
    router = ServiceRouter(kube)  # type: ignore[arg-type]
    stable, canary = users_service("web-stable", "b"), users_service("web-canary", "a")
    c = context(NAMED, objects=[stable, canary], status={"stableSlot": "b"})
    asyncio.run(router.release(c))
    assert kube.writes == [
        (
            "patch",
            "Service/web-canary",
            {"metadata": {"resourceVersion": "7"}, "spec": {"selector": {SLOT: "b"}}},
        )
    ]


def test_user_services_need_the_finalizer_only_when_they_are_the_users() -> None:
    c = context(NAMED, children=[ours("web", "root"), ours("web-stable", "stable")])
    assert ServiceRouter(FakeKube()).users(c) == {}  # type: ignore[arg-type]


# ---------------------------------------------------------------- dropped routers


ISTIO = {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}}
NGINX = {"nginx": {"stableIngress": "web"}}


def _vs(canary: int, header_route: bool) -> dict[str, Any]:
    weighted = {
        "name": "primary",
        "route": [
            {"destination": {"host": "web-stable"}, "weight": 100 - canary},
            {"destination": {"host": "web-canary"}, "weight": canary},
        ],
    }
    beta = {
        "name": "beta",
        "match": [{"headers": {"x-group": {"exact": "beta"}}}],
        "route": [{"destination": {"host": "web-canary"}, "weight": 100}],
    }
    http = [beta, weighted] if header_route else [weighted]
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "web", "resourceVersion": "3", "labels": {"team": "shop"}},
        "spec": {"hosts": ["web"], "http": http},
    }


def note_for(c: RouteContext, plan: TrafficPlan) -> str:
    from sluice.routers.services import encode, routers_note

    return encode(plan, routers_note(c))


def test_a_dropped_istio_is_given_back_from_the_note_and_nginx_kept() -> None:
    both = {"trafficRouting": {**ISTIO, **NGINX, "managedRoutes": [{"name": "beta"}]}}
    before = context(both)
    plan = TrafficPlan("a", "b", 30)
    stable = ours("web-stable", "stable", note_for(before, plan))
    now = context({"trafficRouting": NGINX}, children=[stable])
    record = A.note(now.children, ServiceRouter(FakeKube()).holder(now))  # type: ignore[arg-type]
    assert record is not None
    assert A.dropped(record, now.spec) == ["istio"]
    assert A.dropped(record, before.spec) == []

    kube = FakeKube({"VirtualService/web": _vs(30, header_route=True)})
    asyncio.run(A.release(kube, now.rollout, now.children, {}, record, ["istio"]))  # type: ignore[arg-type]
    [(verb, key, body)] = kube.writes
    assert (verb, key) == ("replace", "VirtualService/web")
    assert body["spec"] == _vs(0, header_route=False)["spec"], "100 % stable, beta removed"
    assert body["metadata"]["labels"] == {"team": "shop"}


def test_a_dropped_nginx_deletes_its_canary_ingress_after_weight_zero() -> None:
    before = context({"trafficRouting": NGINX})
    record = json.loads(note_for(before, TrafficPlan("a", "b", 30)))["routers"]
    canary = {
        "kind": "Ingress",
        "metadata": {
            "name": "web-web-canary",
            "annotations": {"nginx.ingress.kubernetes.io/canary-weight": "30"},
            "ownerReferences": [{"kind": "Rollout", "name": "web", "uid": UID}],
        },
    }
    now = context({}, children=[canary])
    assert A.dropped(record, now.spec) == ["nginx"]
    kube = FakeKube({"Ingress/web-web-canary": canary})
    asyncio.run(A.release(kube, now.rollout, now.children, {}, record, ["nginx"]))  # type: ignore[arg-type]
    verbs = [(verb, key) for verb, key, _ in kube.writes]
    assert verbs == [("patch", "Ingress/web-web-canary"), ("delete", "Ingress/web-web-canary")]


def test_without_a_spec_the_note_is_found_on_sluices_stable_service() -> None:
    before = context({"trafficRouting": ISTIO})
    children = {
        "Service/web": ours("web", "root"),
        "Service/web-stable": ours("web-stable", "stable", note_for(before, TrafficPlan("a"))),
    }
    record = A.note(children, None)
    assert record is not None
    assert A.dropped(record, None) == ["istio"], "an unparsable spec names no router"


def test_a_note_without_routers_releases_nothing() -> None:
    children = {"Service/web-stable": ours("web-stable", "stable", '{"stableSlot":"a"}')}
    assert A.note(children, "web-stable") is None


# ---------------------------------------------------------------- claims


def ingress(name: str, rules: list[tuple[str, list[str]]]) -> dict[str, Any]:
    """An Ingress of (host, [Services its paths send to]) rules."""
    return {
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {"path": f"/{s}", "backend": {"service": {"name": s}}} for s in services
                        ]
                    },
                }
                for host, services in rules
            ]
        },
    }


def test_two_rollouts_sending_one_ingress_rule_to_their_canaries_claim_it_alike() -> None:
    shared = ingress("web", [("shop.example", ["web-stable", "api-stable"]), ("x", ["api-stable"])])
    inner = ingress("web-internal", [("", ["web-stable"])])
    routing = {"trafficRouting": {"nginx": {"stableIngresses": ["web", "web-internal"]}}}
    web = context(routing, objects=[shared, inner])
    claims = factory.routers(FakeKube(), web.spec).claims(web)  # type: ignore[arg-type]
    assert claims == ["Ingress web host shop.example", "Ingress web-internal host *"]

    api = context({**NGINX_API, "stableService": "api-stable"}, objects=[shared])
    rival = factory.routers(FakeKube(), api.spec).claims(api)  # type: ignore[arg-type]
    assert rival == ["Ingress web host shop.example", "Ingress web host x"]
    assert set(claims) & set(rival) == {"Ingress web host shop.example"}

    unread = context(routing)
    assert factory.routers(FakeKube(), unread.spec).claims(unread) == [  # type: ignore[arg-type]
        "Ingress web",
        "Ingress web-internal",
    ]


NGINX_API = {"trafficRouting": NGINX}


def test_a_users_service_is_claimed_so_two_rollouts_never_switch_it() -> None:
    c = context(NAMED, objects=[users_service("web-stable")])
    assert ServiceRouter(FakeKube()).claims(c) == ["Service web-stable"]  # type: ignore[arg-type]
