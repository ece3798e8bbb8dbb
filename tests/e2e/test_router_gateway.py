"""The Gateway API router on a real API server: a user's HTTPRoute, edited only where managed.

The Rollout names HTTPRoute `web` (maxTrafficWeight 1000, header routes beta and tester).
The HTTPRoute also has an `/admin` rule to another Service with a filter and timeouts,
and its weighted rule has no `matches` (the API server fills in the default path).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from sluice.api.traffic import HeaderRoutingMatch
from sluice.engine.types import HeaderRoute
from sluice.routers.base import RouterProblem
from sluice.routers.gateway import GatewayAPIRouter, route_ref
from tests.e2e.conftest import Cluster
from tests.e2e.routers import Harness, harness, plan, read

pytestmark = pytest.mark.e2e

ROUTING = {
    "maxTrafficWeight": 1000,
    "managedRoutes": [{"name": "beta"}, {"name": "tester"}],
    "gatewayAPI": {"httpRoutes": [{"name": "web", "useHeaderRoutes": True}]},
}
BETA = HeaderRoute(
    "beta",
    (
        HeaderRoutingMatch.model_validate(
            {"headerName": "X-User-Group", "headerValue": {"prefix": "beta."}}
        ),
    ),
)
TESTER = HeaderRoute("tester", (HeaderRoutingMatch.model_validate({"cookieName": "tester"}),))
REF = route_ref("web")
KIND = "httproutes.v1.gateway.networking.k8s.io"


def http_route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "web",
            "labels": {"team": "shop"},
            "annotations": {"owner": "someone@example.com"},
        },
        "spec": {
            "parentRefs": [{"name": "edge", "sectionName": "https"}],
            "hostnames": ["web.example.com"],
            "rules": [
                {
                    "name": "admin",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"add": [{"name": "x-admin", "value": "1"}]},
                        }
                    ],
                    "timeouts": {"request": "5s"},
                    "backendRefs": [{"name": "admin", "port": 8080}],
                },
                {
                    "timeouts": {"request": "10s"},
                    "backendRefs": [
                        {"name": "web-stable", "port": 80, "weight": 1000},
                        {"name": "web-canary", "port": 80, "weight": 0},
                    ],
                },
            ],
        },
    }


@pytest.fixture
def gateway(router_crds: str, cluster: Cluster) -> Iterator[Harness]:
    yield from harness(cluster, GatewayAPIRouter, ROUTING)


def rules(cluster: Cluster) -> list[dict[str, Any]]:
    return list(read(cluster, REF)["spec"]["rules"])


def weighted(cluster: Cluster) -> list[int]:
    rule = next(r for r in rules(cluster) if "name" not in r)
    return [ref["weight"] for ref in rule["backendRefs"]]


def untouched(body: dict[str, Any]) -> str:
    """Everything Sluice must not change, as JSON: the other rule, the other fields."""
    rest = copy.deepcopy(body)
    meta = rest.pop("metadata")
    rest["spec"]["rules"] = [r for r in rest["spec"]["rules"] if r.get("name") == "admin"] + [
        {k: v for k, v in r.items() if k != "backendRefs"}
        for r in rest["spec"]["rules"]
        if "name" not in r
    ]
    kept = {"labels": meta.get("labels"), "annotations": meta.get("annotations"), **rest}
    return json.dumps(kept, sort_keys=True)


def test_weights_and_header_rules_follow_each_plan_then_release_restores(
    gateway: Harness, cluster: Cluster
) -> None:
    original = gateway.create(http_route())
    assert original["spec"]["rules"][1]["matches"] == [
        {"path": {"type": "PathPrefix", "value": "/"}}
    ], "the API server defaults an omitted matches"
    steps = [
        (plan(0), ["admin", None], [1000, 0]),
        (plan(5), ["admin", None], [950, 50]),
        (plan(25, BETA), ["admin", "beta", None], [750, 250]),
        (plan(50, BETA, TESTER), ["admin", "beta", "tester", None], [500, 500]),
        (plan(50, TESTER), ["admin", "tester", None], [500, 500]),
        (plan(100), ["admin", None], [0, 1000]),
    ]
    for p, names, weights in steps:
        gateway.apply(p)
        assert [r.get("name") for r in rules(cluster)] == names, p
        assert weighted(cluster) == weights, p
        assert untouched(read(cluster, REF)) == untouched(original), p
        assert gateway.router.verify(gateway.ctx(), p).verified, p
        assert gateway.apply(p) == [], "a second apply of the same plan writes nothing"

    p = plan(25, BETA, TESTER)
    gateway.apply(p)
    beta, tester = rules(cluster)[1:3]
    assert beta == {
        "name": "beta",
        "matches": [
            {
                "path": {"type": "PathPrefix", "value": "/"},
                "headers": [
                    {"name": "X-User-Group", "type": "RegularExpression", "value": r"^beta\..*$"}
                ],
            }
        ],
        "timeouts": {"request": "10s"},
        # a copy of the canary backendRef as the API server stored it (kind defaulted)
        "backendRefs": [{"kind": "Service", "name": "web-canary", "port": 80, "weight": 1}],
    }
    assert tester["matches"][0]["headers"] == [
        {"name": "Cookie", "type": "RegularExpression", "value": "^(.*; *)?tester=always( *;.*)?$"}
    ]

    # A hand edit of a managed weight is seen, and the next apply writes it back.
    index = [r.get("name") for r in rules(cluster)].index(None)
    edit = [{"op": "replace", "path": f"/spec/rules/{index}/backendRefs/1/weight", "value": 10}]
    cluster.kubectl("patch", KIND, "web", "--type", "json", "-p", json.dumps(edit))
    seen = gateway.router.verify(gateway.ctx(), p)
    assert not seen.verified and seen.problem is None
    assert "rules[3] 750/10" in seen.detail and "rules[3] 750/250" in seen.detail
    gateway.apply(p)
    assert weighted(cluster) == [750, 250]

    gateway.release()
    final = read(cluster, REF)
    assert final["spec"] == original["spec"], "all to stable, no header rules, all else as was"
    assert final["metadata"]["labels"] == original["metadata"]["labels"]
    assert final["metadata"]["annotations"] == original["metadata"]["annotations"]


def test_problems_name_the_object_and_field_and_write_nothing(
    gateway: Harness, cluster: Cluster
) -> None:
    field = "spec.strategy.canary.trafficRouting.gatewayAPI.httpRoutes[0].name"
    seen = gateway.router.verify(gateway.ctx(), plan(5))
    assert seen.problem == f"HTTPRoute web: not found in {cluster.namespace} ({field})"
    with pytest.raises(RouterProblem, match=r"HTTPRoute web: not found.*never creates it"):
        gateway.apply(plan(5))
    assert cluster.get(KIND, "web") is None
    assert gateway.release() == [], "releasing an HTTPRoute that is gone is fine"

    body = http_route()
    body["spec"]["rules"][1]["backendRefs"].pop()
    gateway.create(body)
    before = read(cluster, REF)
    message = (
        "HTTPRoute web: spec.rules[1] has no backendRef to the canary Service web-canary "
        "(spec.rules[1].backendRefs)"
    )
    with pytest.raises(RouterProblem) as info:
        gateway.apply(plan(5, BETA))
    assert str(info.value) == message
    assert gateway.router.verify(gateway.ctx(), plan(5)).problem == message
    assert read(cluster, REF) == before

    # No rule sends to the stable: the route is not the one the Rollout thinks it is.
    rename = [{"op": "replace", "path": "/spec/rules/1/backendRefs/0/name", "value": "web-v1"}]
    cluster.kubectl("patch", KIND, "web", "--type", "json", "-p", json.dumps(rename))
    no_stable = r"no rule has a backendRef to the stable Service web-stable \(spec\.rules\[\]"
    with pytest.raises(RouterProblem, match=no_stable + r"\.backendRefs; .*httpRoutes\[0\]\.name"):
        gateway.apply(plan(5))

    # A user rule already called like a managed route is not Sluice's to replace.
    clash = [{"op": "replace", "path": "/spec/rules/0/name", "value": "tester"}]
    cluster.kubectl("patch", KIND, "web", "--type", "json", "-p", json.dumps(clash))
    listed = r"rule 'tester' \(spec\.rules\[0\]\) has a name listed in .*managedRoutes"
    with pytest.raises(RouterProblem, match=listed):
        gateway.release()
    assert "web-v1" in json.dumps(read(cluster, REF)["spec"]["rules"][1])


def test_a_port_the_service_does_not_have_is_a_problem(gateway: Harness, cluster: Cluster) -> None:
    gateway.create(http_route())
    for name in ("web-stable", "web-canary"):
        cluster.kubectl("create", "service", "clusterip", name, "--tcp=8080:8080")
    seen = gateway.router.verify(gateway.ctx(services=("web-stable", "web-canary")), plan(5))
    assert seen.problem == (
        "HTTPRoute web: spec.rules[1]: port 80 is not a port of Service web-stable "
        "(it has [8080]) (spec.rules[1].backendRefs)"
    )


def test_a_stale_resource_version_is_a_conflict_not_an_overwrite(
    gateway: Harness, cluster: Cluster
) -> None:
    gateway.create(http_route())
    ctx = gateway.ctx()
    cluster.kubectl("annotate", KIND, "web", "edited=by-hand")
    with pytest.raises(ApiException) as info:
        gateway.run(gateway.router.apply(ctx, plan(25, BETA)))
    assert info.value.status == 409
    live = read(cluster, REF)
    assert live["metadata"]["annotations"]["edited"] == "by-hand"
    assert weighted(cluster) == [1000, 0] and len(live["spec"]["rules"]) == 2
    gateway.apply(plan(25, BETA))  # re-read: goes through
    assert weighted(cluster) == [750, 250]


TWO = {
    "managedRoutes": [{"name": "beta"}],
    "gatewayAPI": {
        "httpRoutes": [
            {"name": "web", "useHeaderRoutes": True},
            {"name": "web-internal", "useHeaderRoutes": False},
        ]
    },
}


@pytest.fixture
def two_routes(router_crds: str, cluster: Cluster) -> Iterator[Harness]:
    yield from harness(cluster, GatewayAPIRouter, TWO)


def test_two_http_routes_move_together_and_a_problem_in_one_writes_neither(
    two_routes: Harness, cluster: Cluster
) -> None:
    two_routes.create(http_route())
    internal = http_route()
    internal["metadata"]["name"] = "web-internal"
    internal["spec"]["rules"][1]["backendRefs"].pop()  # no canary backendRef yet
    two_routes.create(internal)
    before = read(cluster, REF)
    with pytest.raises(RouterProblem, match=r"HTTPRoute web-internal: spec\.rules\[1\] has no "):
        two_routes.apply(plan(5, BETA))
    assert read(cluster, REF) == before, "web was not written either"

    add = [{"op": "add", "path": "/spec/rules/1/backendRefs/-",
            "value": {"name": "web-canary", "port": 80, "weight": 0}}]  # fmt: skip
    cluster.kubectl("patch", KIND, "web-internal", "--type", "json", "-p", json.dumps(add))
    two_routes.apply(plan(5, BETA))
    assert [r.get("name") for r in rules(cluster)] == ["admin", "beta", None]
    other = read(cluster, route_ref("web-internal"))["spec"]["rules"]
    assert [r.get("name") for r in other] == ["admin", None], "useHeaderRoutes: false"
    assert [b["weight"] for b in other[1]["backendRefs"]] == [95, 5]
    assert weighted(cluster) == [95, 5]
    assert two_routes.router.verify(two_routes.ctx(), plan(5, BETA)).verified
    two_routes.release()
    assert weighted(cluster) == [100, 0] and len(rules(cluster)) == 2
