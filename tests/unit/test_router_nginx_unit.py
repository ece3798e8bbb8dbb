"""The NGINX canary Ingress as built from a Rollout and the user's Ingress (no API server)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.api.rollout import RolloutSpec
from sluice.api.traffic import HeaderRoutingMatch
from sluice.engine.types import HeaderRoute, TrafficPlan
from sluice.engine.validate import parse_spec
from sluice.routers import factory
from sluice.routers.base import RouteContext, RouterProblem
from sluice.routers.nginx import (
    NginxRouter,
    canary_ingress,
    canary_name,
    check_routes,
    escape,
    mismatch,
)

P = "nginx.ingress.kubernetes.io"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def ctx(nginx: dict[str, Any], max_weight: int = 100, services: bool = True) -> RouteContext:
    spec = parse_spec(
        {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "x"}]},
            },
            "strategy": {
                "canary": {
                    "trafficRouting": {"maxTrafficWeight": max_weight, "nginx": nginx},
                    "steps": [{"setWeight": 5}],
                }
            },
        }
    )
    rollout = {"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}
    port = {"spec": {"ports": [{"name": "http", "port": 8080}]}}
    children = {"Service/web-stable": port, "Service/web-canary": port} if services else {}
    return RouteContext(rollout, spec, children)


def stable(name: str = "web", port: dict[str, Any] | None = None) -> dict[str, Any]:
    backend = {"service": {"name": "web-stable", "port": port or {"name": "http"}}}
    other = {"service": {"name": "static", "port": {"number": 80}}}
    return {
        "metadata": {"name": name, "annotations": {"kubernetes.io/ingress.class": "public"}},
        "spec": {
            "rules": [
                {"host": "a.example", "http": {"paths": [{"path": "/x", "backend": other}]}},
                {
                    "host": "shop.example",
                    "http": {
                        "paths": [
                            {"path": "/", "pathType": "Prefix", "backend": backend},
                            {"path": "/static", "pathType": "Prefix", "backend": other},
                        ]
                    },
                },
            ]
        },
    }


def route(**match: Any) -> HeaderRoute:
    return HeaderRoute("beta", (HeaderRoutingMatch.model_validate(match),))


def canary_keys(body: dict[str, Any]) -> dict[str, str]:
    a = body["metadata"]["annotations"]
    return {k.removeprefix(f"{P}/"): v for k, v in a.items() if k.startswith(f"{P}/canary")}


def test_names_are_per_stable_ingress_and_stay_dns_safe_when_long() -> None:
    assert canary_name("web", "web") == "web-web-canary"
    assert canary_name("web", "web-internal") == "web-web-internal-canary"
    long_a, long_b = "a" * 200 + "-x", "a" * 200 + "-y"
    names = {canary_name("r" * 60, long_a), canary_name("r" * 60, long_b)}
    assert len(names) == 2
    for name in names:
        assert len(name) <= 253 and DNS_SUBDOMAIN.match(name), name
    # A cut that ends on '-' or '.' is trimmed before the hash.
    assert DNS_SUBDOMAIN.match(canary_name("r", "b." * 130 + "b"))


def test_only_paths_to_the_stable_are_copied_onto_the_canary_service() -> None:
    body = canary_ingress(ctx({"stableIngress": "web"}), stable(), TrafficPlan("a", "b", 5))
    assert body["spec"]["rules"] == [
        {
            "host": "shop.example",
            "http": {
                "paths": [
                    {
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": "web-canary", "port": {"name": "http"}}},
                    }
                ]
            },
        }
    ]
    assert body["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "public"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert canary_keys(body) == {"canary": "true", "canary-weight": "5"}


def test_weight_total_when_the_max_is_not_100() -> None:
    c = ctx({"stableIngress": "web"}, max_weight=1000)
    body = canary_ingress(c, stable(), TrafficPlan("a", "b", 5))
    assert canary_keys(body) == {
        "canary": "true",
        "canary-weight": "50",
        "canary-weight-total": "1000",
    }
    # No canary slot: no weight and no header route, whatever the plan carries.
    body = canary_ingress(c, stable(), TrafficPlan("a", None, 30, (route(cookieName="b"),)))
    assert canary_keys(body)["canary-weight"] == "0"
    assert "canary-by-cookie" not in canary_keys(body)


@pytest.mark.parametrize(
    ("value", "key", "expected"),
    [
        ({"exact": "a.b"}, "canary-by-header-value", "a.b"),
        ({"prefix": "v1.2+[x]"}, "canary-by-header-pattern", r"^v1\.2\+\[x\].*"),
        ({"regex": "a|b"}, "canary-by-header-pattern", "^(?:a|b)$"),
    ],
)
def test_header_routes(value: dict[str, str], key: str, expected: str) -> None:
    plan = TrafficPlan("a", "b", 0, (route(headerName="X-Group", headerValue=value),))
    body = canary_ingress(ctx({"stableIngress": "web"}), stable(), plan)
    assert canary_keys(body) == {
        "canary": "true",
        "canary-weight": "0",
        "canary-by-header": "X-Group",
        key: expected,
    }


def test_escape_matches_the_text_itself_only() -> None:
    text = r"a.b*c+d?e(f)g[h]i{j}k|l^m$n\o"
    assert re.fullmatch(escape(text), text)
    assert not re.fullmatch(escape("a.b"), "axb")


def test_cookie_route_and_what_nginx_cannot_express() -> None:
    plan = TrafficPlan("a", "b", 0, (route(cookieName="beta"),))
    assert canary_keys(canary_ingress(ctx({"stableIngress": "web"}), stable(), plan)) == {
        "canary": "true",
        "canary-weight": "0",
        "canary-by-cookie": "beta",
    }
    bad = [
        TrafficPlan("a", "b", 0, (route(cookieName="beta", cookieValue="yes"),)),
        TrafficPlan("a", "b", 0, (route(cookieName="a"), HeaderRoute("two", ()))),
        TrafficPlan(
            "a",
            "b",
            0,
            (
                HeaderRoute(
                    "beta",
                    tuple(HeaderRoutingMatch.model_validate({"cookieName": c}) for c in "ab"),
                ),
            ),
        ),
    ]
    messages = []
    for plan in bad:
        with pytest.raises(RouterProblem) as problem:
            check_routes(plan)
        messages.append(str(problem.value))
    assert "cookieValue" in messages[0] and "'always'" in messages[0]
    assert "2 header routes" in messages[1]
    assert "2 conditions" in messages[2]
    caps = factory.capabilities("nginx")
    assert caps is not None and caps.cookie_values == frozenset({"always"})
    assert (caps.max_header_routes, caps.max_matches) == (1, 1)


def test_problems_name_object_and_field() -> None:
    with pytest.raises(RouterProblem, match=r"Ingress web: no path sends to Service web-stable"):
        body = stable()
        body["spec"]["rules"].pop()
        canary_ingress(ctx({"stableIngress": "web"}), body, TrafficPlan("a"))
    with pytest.raises(RouterProblem, match=r"spec\.rules\[1\]\.http\.paths\[0\]\.backend"):
        canary_ingress(ctx({"stableIngress": "web"}), stable(port={"number": 80}), TrafficPlan("a"))
    # Services not created yet: the port cannot be checked, and is not guessed at.
    c = ctx({"stableIngress": "web"}, services=False)
    assert canary_ingress(c, stable(port={"number": 80}), TrafficPlan("a"))


def test_mismatch_sees_a_changed_or_an_extra_canary_annotation() -> None:
    c = ctx({"stableIngress": "web", "additionalIngressAnnotations": {"x/y": "z"}})
    want = canary_ingress(c, stable(), TrafficPlan("a", "b", 5))
    assert mismatch(want, want, P) is None
    live = {
        **want,
        "metadata": {**want["metadata"], "annotations": dict(want["metadata"]["annotations"])},
    }
    live["metadata"]["annotations"][f"{P}/canary-by-header"] = "X"
    assert f"{P}/canary-by-header" in (mismatch(live, want, P) or "")
    live["metadata"]["annotations"] = {**want["metadata"]["annotations"], "x/y": "other"}
    assert "x/y" in (mismatch(live, want, P) or "")
    live["metadata"]["annotations"] = {**want["metadata"]["annotations"], "other/key": "kept"}
    assert mismatch(live, want, P) is None  # what Sluice does not manage is not its business


def test_watched_and_registered() -> None:
    c = ctx({"stableIngresses": ["web", "api"]})
    names = [r.key for r in NginxRouter(None).watched(c)]  # type: ignore[arg-type]
    assert names == [
        "Ingress/web",
        "Ingress/api",
        "Ingress/web-web-canary",
        "Ingress/web-api-canary",
    ]
    assert factory.PROVIDERS["nginx"] is NginxRouter


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "routers"


@pytest.mark.parametrize("file", ["nginx.yaml", "nginx-users.yaml"])
def test_the_examples_ingress_and_routes_fit_the_router(file: str) -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((EXAMPLES / file).read_text())}
    rollout, user = docs["Rollout"], docs["Ingress"]
    # The model only: the step rules are the engine's (test_examples).
    spec = RolloutSpec.model_validate(rollout["spec"])
    meta = {**rollout["metadata"], "namespace": "default", "uid": "u-1"}
    port = {"spec": {"ports": [{"name": "http", "port": 80}]}}
    name = meta["name"]
    c = RouteContext(
        {"metadata": meta}, spec, {f"Service/{name}-stable": port, f"Service/{name}-canary": port}
    )
    routes = [s.set_header_route for s in spec.strategy.canary.steps if s.set_header_route]
    assert routes
    for route in routes:  # one without match removes the route: a plan without it
        live = (HeaderRoute(route.name, tuple(route.match)),) if route.match else ()
        body = canary_ingress(c, user, TrafficPlan("a", "b", 5, live))
        assert any(k.startswith("canary-by-") for k in canary_keys(body)) == bool(live)
        assert body["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == (
            f"{name}-canary"
        )


def test_verify_reads_the_live_objects() -> None:
    c = ctx({"stableIngress": "web"})
    router = NginxRouter(None)  # type: ignore[arg-type]
    plan = TrafficPlan("a", "b", 5)
    want = canary_ingress(c, stable(), plan)
    live = RouteContext(
        c.rollout, c.spec, {**c.children, "Ingress/web-web-canary": want}, {"Ingress/web": stable()}
    )
    assert router.verify(live, plan).verified
    assert not router.verify(live, TrafficPlan("a", "b", 6)).verified
    gone = RouteContext(c.rollout, c.spec, live.children, {})
    assert router.verify(gone, plan).problem == (
        "Ingress web: not found (spec.strategy.canary.trafficRouting.nginx.stableIngress)"
    )
    # Labelled as Sluice's but owned by nobody (copied from another namespace, say).
    unowned = {**want, "metadata": {**want["metadata"], "ownerReferences": []}}
    foreign = RouteContext(
        c.rollout, c.spec, {**c.children, "Ingress/web-web-canary": unowned}, live.objects
    )
    problem = router.verify(foreign, plan).problem or ""
    assert problem.startswith("Ingress web-web-canary exists and is not owned by Rollout web")
