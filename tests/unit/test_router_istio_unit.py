"""The pure VirtualService edit: weights, header routes, and what it refuses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.api.rollout import RolloutSpec
from sluice.api.traffic import HeaderRoutingMatch, IstioDestinationRule, IstioVirtualService
from sluice.engine.types import HeaderRoute
from sluice.engine.validate import parse_spec
from sluice.routers import matching as M
from sluice.routers.base import RouterProblem
from sluice.routers.istio import (
    Hosts,
    IstioRouter,
    Managed,
    edit_destination_rule,
    edit_virtual_service,
)

HOSTS = Hosts("shop", "web-stable", "web-canary")
FIELD = "spec.strategy.canary.trafficRouting.istio.virtualService"
BETA = HeaderRoute(
    "beta",
    (
        HeaderRoutingMatch.model_validate(
            {"headerName": "X-User-Group", "headerValue": {"exact": "beta"}}
        ),
    ),
)
COOKIE = HeaderRoute("tester", (HeaderRoutingMatch.model_validate({"cookieName": "canary"}),))
RESERVED = frozenset({"beta", "tester"})


def vs(**extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
        "spec": {
            "hosts": ["web.example.com"],
            "http": [
                {
                    "name": "admin",
                    "match": [{"uri": {"prefix": "/admin"}}],
                    "route": [{"destination": {"host": "admin"}}],
                },
                {
                    "name": "primary",
                    "match": [{"uri": {"prefix": "/"}}],
                    "retries": {"attempts": 3},
                    "route": [
                        {
                            "destination": {"host": "web-stable", "port": {"number": 80}},
                            "weight": 100,
                        },
                        {
                            "destination": {
                                "host": "web-canary.shop.svc.cluster.local",
                                "port": {"number": 80},
                            },
                            "weight": 0,
                        },
                    ],
                },
            ],
            **extra,
        },
    }


def edit(
    body: dict[str, Any],
    weight: int,
    routes: tuple[HeaderRoute, ...] = (),
    names: list[str] | None = None,
) -> dict[str, Any]:
    managed = Managed(IstioVirtualService(name="web", routes=names or ["primary"]), FIELD)
    return edit_virtual_service(body, managed, HOSTS, (100 - weight, weight), routes, RESERVED)


def weights(body: dict[str, Any], name: str = "primary") -> list[int]:
    route = next(r for r in body["spec"]["http"] if r["name"] == name)
    return [e["weight"] for e in route["route"]]


def test_weights_are_set_and_nothing_else_changes() -> None:
    original = vs()
    out = edit(original, 25)
    assert weights(out) == [75, 25]
    assert original == vs(), "the input is not modified"
    expected = vs()
    expected["spec"]["http"][1]["route"][0]["weight"] = 75
    expected["spec"]["http"][1]["route"][1]["weight"] = 25
    assert out == expected


def test_header_routes_go_ahead_of_the_weighted_route_in_plan_order() -> None:
    out = edit(vs(), 5, (BETA, COOKIE))
    names = [r["name"] for r in out["spec"]["http"]]
    assert names == ["admin", "beta", "tester", "primary"]
    beta = out["spec"]["http"][1]
    assert beta["match"] == [
        {"uri": {"prefix": "/"}, "headers": {"x-user-group": {"exact": "beta"}}}
    ]
    assert beta["route"] == [
        {
            "destination": {"host": "web-canary.shop.svc.cluster.local", "port": {"number": 80}},
            "weight": 100,
        }
    ]
    assert beta["retries"] == {"attempts": 3}, "handled like the weighted route"
    cookie = out["spec"]["http"][2]["match"][0]["headers"]["cookie"]["regex"]
    assert cookie == "^(.*; *)?canary=always( *;.*)?$"


def test_apply_twice_is_the_same_object_and_removal_restores_it() -> None:
    once = edit(vs(), 50, (BETA, COOKIE))
    assert edit(once, 50, (BETA, COOKIE)) == once
    reordered = edit(once, 50, (COOKIE, BETA))
    assert [r["name"] for r in reordered["spec"]["http"]] == ["admin", "tester", "beta", "primary"]
    assert edit(once, 0) == vs()


def test_routes_omitted_needs_exactly_one_http_route() -> None:
    managed = Managed(IstioVirtualService(name="web"), FIELD)
    with pytest.raises(RouterProblem, match=r"has 2 http routes.*virtualService\.routes"):
        edit_virtual_service(vs(), managed, HOSTS, (100, 0), (), RESERVED)
    single = vs()
    del single["spec"]["http"][0]
    with_route = edit_virtual_service(single, managed, HOSTS, (95, 5), (BETA,), RESERVED)
    assert [r["name"] for r in with_route["spec"]["http"]] == ["beta", "primary"]
    # its own header route does not count as a second route
    assert (
        edit_virtual_service(with_route, managed, HOSTS, (95, 5), (BETA,), RESERVED) == with_route
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda b: b["spec"]["http"][1].update(name="main"),
            r"VirtualService web: http route 'primary' not found "
            r"\(spec\.strategy\.canary\.trafficRouting\.istio\.virtualService\.routes\)",
        ),
        (
            lambda b: b["spec"]["http"][1]["route"].pop(),
            r"no destination to the canary Service web-canary \(spec\.http\[1\]\.route\)",
        ),
        (
            lambda b: b["spec"]["http"][1]["route"].append({"destination": {"host": "other"}}),
            r"also routes to 'other'",
        ),
        (
            lambda b: b["spec"]["http"].insert(
                0, {"name": "beta", "route": [{"destination": {"host": "x"}}]}
            ),
            r"http route 'beta' \(spec\.http\[0\]\) has a name listed in .*managedRoutes",
        ),
        (lambda b: b["spec"].pop("http"), r"has no http routes \(spec\.http\)"),
    ],
)
def test_problems_name_the_object_and_field(change: Any, message: str) -> None:
    body = vs()
    change(body)
    with pytest.raises(RouterProblem, match=message):
        edit(body, 5)


def test_a_header_the_managed_match_already_tests_is_refused() -> None:
    body = vs()
    body["spec"]["http"][1]["match"][0]["headers"] = {"x-user-group": {"exact": "internal"}}
    with pytest.raises(RouterProblem, match="x-user-group"):
        edit(body, 5, (BETA,))


def test_port_mismatch_is_a_problem() -> None:
    managed = Managed(IstioVirtualService(name="web", routes=["primary"]), FIELD)
    with pytest.raises(RouterProblem, match=r"port 80 is not a port of Service web-stable"):
        edit_virtual_service(
            vs(),
            managed,
            HOSTS,
            (100, 0),
            (),
            RESERVED,
            lambda svc, port: (
                f"port {port} is not a port of Service {svc}" if svc == "web-stable" else ""
            ),
        )


def test_regexes_are_escaped_for_re2_and_match_whole_cookies() -> None:
    assert M.escape("a.b*c (x)") == r"a\.b\*c \(x\)"
    assert M.escape("v1-beta_2~") == "v1-beta_2~", "no escapes RE2 would refuse"
    prefix = re.compile(M.prefix_regex("v1.2+"))
    assert prefix.fullmatch("v1.2+rc1") and not prefix.fullmatch("v1x2+rc1")
    cookie = re.compile(M.cookie_regex("grp", "a.b"))
    for ok in ("grp=a.b", "x=1; grp=a.b", "grp=a.b; y=2", "x=1;grp=a.b;y=2"):
        assert cookie.fullmatch(ok), ok
    for no in ("xgrp=a.b", "grp=a.bc", "grp=axb", "x=grp=a.b"):
        assert not cookie.fullmatch(no), no


def spec(istio: dict[str, Any] | None = None, **routing: Any) -> RolloutSpec:
    istio = istio or {"virtualService": {"name": "web"}}
    return RolloutSpec.model_validate(
        {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1"}]},
            },
            "strategy": {
                "canary": {
                    "trafficRouting": {"istio": istio, **routing},
                    "steps": [
                        {
                            "setHeaderRoute": {
                                "name": "beta",
                                "match": [
                                    {"cookieName": "a"},
                                    {"headerName": "Cookie", "headerValue": {"prefix": "x"}},
                                ],
                            }
                        }
                    ],
                }
            },
        }
    )


def test_check_refuses_what_istio_cannot_do() -> None:
    problems = IstioRouter.check(spec(maxTrafficWeight=1000))
    assert any("maxTrafficWeight: Istio weights are percentages" in p for p in problems)
    assert any(
        "steps[0].setHeaderRoute.match: two conditions on header 'cookie'" in p for p in problems
    )
    rule = {"name": "web", "stableSubsetName": "v", "canarySubsetName": "v"}
    with_rule = spec({"virtualService": {"name": "web"}, "destinationRule": rule})
    message = "istio.destinationRule: stableSubsetName and canarySubsetName must differ"
    assert any(message in p for p in IstioRouter.check(with_rule))
    assert len(IstioRouter.check(spec())) == 1, "the header clash only"


RULE = IstioDestinationRule(name="web", stableSubsetName="stable", canarySubsetName="canary")
SUBSETS = Hosts("shop", "stable", "canary", host="web.shop.svc.cluster.local")


def destination_rule() -> dict[str, Any]:
    return {
        "metadata": {"name": "web"},
        "spec": {
            "host": "web.shop.svc.cluster.local",
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            "subsets": [
                {"name": "stable", "labels": {"app": "web"}},
                {"name": "canary", "labels": {"app": "web", "sluice.dev/slot": "x"}},
                {"name": "legacy", "labels": {"app": "old"}},
            ],
        },
    }


def test_destination_rule_subsets_get_only_the_slot_label() -> None:
    out = edit_destination_rule(destination_rule(), RULE, {"stable": "a", "canary": "b"})
    expected = destination_rule()
    expected["spec"]["subsets"][0]["labels"]["sluice.dev/slot"] = "a"
    expected["spec"]["subsets"][1]["labels"]["sluice.dev/slot"] = "b"
    assert out == expected
    body = destination_rule()
    del body["spec"]["subsets"][1]
    missing = r"DestinationRule web: subset 'canary' not found \(spec\.subsets; .*istio\."
    with pytest.raises(RouterProblem, match=missing + r"destinationRule\.canarySubsetName\)"):
        edit_destination_rule(body, RULE, {"stable": "a", "canary": "b"})


def test_with_subsets_destinations_are_told_apart_by_subset_of_the_rule_host() -> None:
    body = vs()
    body["spec"]["http"][1]["route"] = [
        {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
        {"destination": {"host": "web.shop.svc.cluster.local", "subset": "canary"}},
    ]
    managed = Managed(IstioVirtualService(name="web", routes=["primary"]), FIELD)
    out = edit_virtual_service(body, managed, SUBSETS, (90, 10), (BETA,), RESERVED)
    assert [e["weight"] for e in out["spec"]["http"][2]["route"]] == [90, 10]
    assert out["spec"]["http"][1]["route"] == [
        {"destination": {"host": "web.shop.svc.cluster.local", "subset": "canary"}, "weight": 100}
    ]
    body["spec"]["http"][1]["route"][1]["destination"]["host"] = "other"
    with pytest.raises(RouterProblem, match=r"also routes to 'other'.*the canary subset 'canary'"):
        edit_virtual_service(body, managed, SUBSETS, (90, 10), (), RESERVED)


def test_the_example_passes_check_and_its_virtual_service_takes_every_step() -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "routers" / "istio.yaml"
    rollout, service = yaml.safe_load_all(path.read_text())
    parsed = parse_spec(rollout["spec"])
    assert IstioRouter.check(parsed) == []
    routing = parsed.strategy.canary.traffic_routing
    assert routing is not None and routing.istio is not None
    managed = Managed(routing.istio.services()[0], FIELD)
    steps = parsed.strategy.canary.steps
    routes = tuple(
        HeaderRoute(s.set_header_route.name, tuple(s.set_header_route.match or ()))
        for s in steps
        if s.set_header_route
    )
    service["metadata"]["namespace"] = "default"
    hosts = Hosts("default", "web-stable", "web-canary")
    out = edit_virtual_service(
        service, managed, hosts, (95, 5), routes, frozenset({"beta", "bucket"})
    )
    assert [r["name"] for r in out["spec"]["http"]] == ["static", "beta", "bucket", "primary"]
