"""The pure HTTPRoute edit: backendRefs weights, header rules, and what it refuses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.api.rollout import RolloutSpec
from sluice.api.traffic import GatewayAPIRoute, HeaderRoutingMatch
from sluice.engine.types import HeaderRoute
from sluice.engine.validate import parse_spec
from sluice.routers.base import RouterProblem
from sluice.routers.gateway import Backends, GatewayAPIRouter, Managed, condition, edit_http_route

BACKENDS = Backends("shop", "web-stable", "web-canary")
FIELD = "spec.strategy.canary.trafficRouting.gatewayAPI.httpRoute"
RESERVED = frozenset({"beta", "tester"})


def match(raw: dict[str, Any]) -> HeaderRoutingMatch:
    return HeaderRoutingMatch.model_validate(raw)


BETA = HeaderRoute(
    "beta", (match({"headerName": "X-User-Group", "headerValue": {"exact": "beta"}}),)
)
TESTER = HeaderRoute("tester", (match({"cookieName": "tester", "cookieValue": "yes"}),))


VIA = {"set": [{"name": "x-via", "value": "gw"}]}


def route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"team": "shop"}},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "hostnames": ["web.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "backendRefs": [{"name": "admin", "port": 8080, "weight": 1}],
                },
                {
                    "matches": [
                        {"path": {"type": "PathPrefix", "value": "/"}},
                        {"path": {"type": "Exact", "value": "/api"}, "method": "POST"},
                    ],
                    "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": VIA}],
                    "backendRefs": [
                        {"kind": "Service", "name": "web-stable", "port": 80, "weight": 1},
                        {"name": "web-canary", "port": 80},
                    ],
                },
            ],
        },
    }  # fmt: skip


def edit(body: dict[str, Any], weights: tuple[int, int], routes: tuple[HeaderRoute, ...] = (),
         header_routes: bool = True) -> dict[str, Any]:  # fmt: skip
    managed = Managed(GatewayAPIRoute(name="web", useHeaderRoutes=header_routes), FIELD)
    return edit_http_route(body, managed, BACKENDS, weights, routes, RESERVED)


def test_weights_out_of_any_total_and_nothing_else_changes() -> None:
    original = route()
    out = edit(original, (9500, 500))
    assert original == route(), "the input is not modified"
    expected = route()
    expected["spec"]["rules"][1]["backendRefs"][0]["weight"] = 9500
    expected["spec"]["rules"][1]["backendRefs"][1]["weight"] = 500
    assert out == expected


def test_header_rules_carry_each_match_plus_the_conditions_in_plan_order() -> None:
    out = edit(route(), (100, 0), (BETA, TESTER))
    rules = out["spec"]["rules"]
    assert [r.get("name") for r in rules] == [None, "beta", "tester", None]
    beta = rules[1]
    header = {"name": "X-User-Group", "type": "Exact", "value": "beta"}
    assert beta["matches"] == [
        {"path": {"type": "PathPrefix", "value": "/"}, "headers": [header]},
        {"path": {"type": "Exact", "value": "/api"}, "method": "POST", "headers": [header]},
    ]
    assert beta["backendRefs"] == [{"name": "web-canary", "port": 80, "weight": 1}]
    assert beta["filters"] == route()["spec"]["rules"][1]["filters"]
    cookie = rules[2]["matches"][0]["headers"][0]
    assert cookie == {"name": "Cookie", "type": "RegularExpression",
                      "value": "^(.*; *)?tester=yes( *;.*)?$"}  # fmt: skip


def test_a_rule_without_matches_gets_the_path_the_api_server_would_default() -> None:
    body = route()
    del body["spec"]["rules"][1]["matches"]
    beta = edit(body, (100, 0), (BETA,))["spec"]["rules"][1]
    assert beta["matches"] == [
        {"path": {"type": "PathPrefix", "value": "/"},
         "headers": [{"name": "X-User-Group", "type": "Exact", "value": "beta"}]}
    ]  # fmt: skip


def test_prefix_and_regex_become_regular_expressions() -> None:
    prefix = condition(match({"headerName": "X-Ver", "headerValue": {"prefix": "1.2 (rc)"}}))
    assert prefix == {"name": "X-Ver", "type": "RegularExpression", "value": r"^1\.2 \(rc\).*$"}
    assert re.fullmatch(prefix["value"], "1.2 (rc)-4") and not re.fullmatch(prefix["value"], "1x2")
    regex = condition(match({"headerName": "X-Ver", "headerValue": {"regex": "v[0-9]+"}}))
    assert regex == {"name": "X-Ver", "type": "RegularExpression", "value": "v[0-9]+"}


def test_apply_twice_is_the_same_object_and_removal_restores_it() -> None:
    once = edit(route(), (50, 50), (BETA, TESTER))
    assert edit(once, (50, 50), (BETA, TESTER)) == once
    swapped = edit(once, (50, 50), (TESTER, BETA))
    assert [r.get("name") for r in swapped["spec"]["rules"]] == [None, "tester", "beta", None]
    restored = edit(once, (1, 0))
    assert restored["spec"]["rules"][0] == route()["spec"]["rules"][0]
    assert len(restored["spec"]["rules"]) == 2


def test_without_use_header_routes_no_rule_is_added_but_stale_ones_go() -> None:
    with_rules = edit(route(), (100, 0), (BETA,))
    assert len(edit(route(), (100, 0), (BETA,), header_routes=False)["spec"]["rules"]) == 2
    assert len(edit(with_rules, (100, 0), (BETA,), header_routes=False)["spec"]["rules"]) == 2


def test_every_rule_sending_to_the_stable_is_weighted() -> None:
    body = route()
    body["spec"]["rules"][0]["backendRefs"] = [
        {"name": "web-stable", "port": 80}, {"name": "web-canary", "port": 80}
    ]  # fmt: skip
    out = edit(body, (3, 1), (BETA,))
    weights = [[b["weight"] for b in r["backendRefs"]] for r in out["spec"]["rules"]]
    assert weights == [[1], [3, 1], [3, 1]]
    assert out["spec"]["rules"][0]["name"] == "beta", "ahead of the first weighted rule"
    assert len(out["spec"]["rules"][0]["matches"]) == 3, "the matches of both rules"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b["spec"]["rules"][1]["backendRefs"].pop(),
         r"HTTPRoute web: spec\.rules\[1\] has no backendRef to the canary Service web-canary "
         r"\(spec\.rules\[1\]\.backendRefs\)"),
        (lambda b: b["spec"]["rules"][1]["backendRefs"][0].update(name="web"),
         r"no rule has a backendRef to the stable Service web-stable"),
        (lambda b: b["spec"]["rules"][1]["backendRefs"].append({"name": "x", "port": 1}),
         r"spec\.rules\[1\] also sends to Service 'x'"),
        (lambda b: b["spec"]["rules"][0].update(name="tester"),
         r"rule 'tester' \(spec\.rules\[0\]\) has a name listed in .*managedRoutes"),
        (lambda b: b["spec"].pop("rules"), r"has no rules \(spec\.rules\)"),
    ],
)  # fmt: skip
def test_problems_name_the_object_and_field(change: Any, message: str) -> None:
    body = route()
    change(body)
    with pytest.raises(RouterProblem, match=message):
        edit(body, (95, 5))


def test_a_backend_in_another_group_or_namespace_is_not_the_stable() -> None:
    for extra in ({"group": "example.com", "kind": "Backend"}, {"namespace": "elsewhere"}):
        body = route()
        body["spec"]["rules"][1]["backendRefs"][0].update(extra)
        with pytest.raises(RouterProblem, match="no rule has a backendRef to the stable Service"):
            edit(body, (95, 5))


def test_check_refuses_header_steps_no_route_can_take() -> None:
    raw = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]},
        },
        "strategy": {"canary": {
            "trafficRouting": {"managedRoutes": [{"name": "beta"}], "gatewayAPI": {
                "httpRoutes": [{"name": "web", "useHeaderRoutes": False}]}},
            "steps": [{"setHeaderRoute": {"name": "beta", "match": [
                {"headerName": "X-A", "headerValue": {"exact": "1"}},
                {"headerName": "x-a", "headerValue": {"exact": "2"}}]}}],
        }},
    }  # fmt: skip
    problems = GatewayAPIRouter.check(RolloutSpec.model_validate(raw))
    assert any("needs useHeaderRoutes: true" in p for p in problems)
    assert any("two conditions on header 'x-a'" in p for p in problems)


def test_the_example_passes_check_and_its_http_route_takes_every_step() -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "routers" / "gateway-api.yaml"
    rollout, http_route = yaml.safe_load_all(path.read_text())
    parsed = parse_spec(rollout["spec"])
    assert GatewayAPIRouter.check(parsed) == []
    routing = parsed.strategy.canary.traffic_routing
    assert routing is not None and routing.gateway_api is not None
    managed = Managed(routing.gateway_api.routes()[0], FIELD)
    routes = tuple(
        HeaderRoute(s.set_header_route.name, tuple(s.set_header_route.match or ()))
        for s in parsed.strategy.canary.steps
        if s.set_header_route
    )
    http_route["metadata"]["namespace"] = "default"
    backends = Backends("default", "web-stable", "web-canary")
    reserved = frozenset({"opt-in", "bucket"})
    out = edit_http_route(http_route, managed, backends, (95, 5), routes, reserved)
    assert [r.get("name") for r in out["spec"]["rules"]] == [None, "opt-in", "bucket", None]
