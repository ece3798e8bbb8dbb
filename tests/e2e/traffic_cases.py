"""Per-router fixtures for the rollout e2e tests: the user's object, how to read its weights.

Each case knows the object a user applies (with parts Sluice must never touch), how to
read the (stable, canary) weights and the header routes from a live body, and what must
stay byte-for-byte.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Body = dict[str, Any]


@dataclass(frozen=True)
class Case:
    name: str
    routing: Body  # trafficRouting without managedRoutes
    objects: list[Body]  # what the user applies before the Rollout
    resource: str  # kubectl resource of the object whose weights are read
    object_name: str
    group: str
    version: str
    plural: str
    kind: str
    total: int  # the weights' total
    weights: Callable[[Body], tuple[int, int]]
    routes: Callable[[Body], list[str]]  # header route names, in order
    untouched: Callable[[Body], str]  # JSON of what Sluice must leave alone
    header_routes: bool = True  # the router does setHeaderRoute
    user_resource: str = ""  # where `untouched` reads, when not the weighted object
    user_name: str = ""


# ---------------------------------------------------------------- Istio


def _vs() -> Body:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "web", "labels": {"team": "shop"}, "annotations": {"x": "y"}},
        "spec": {
            "hosts": ["web.example.com"],
            "gateways": ["edge"],
            "http": [
                {
                    "name": "static",
                    "match": [{"uri": {"prefix": "/static"}}],
                    "route": [{"destination": {"host": "static-files"}}],
                },
                {
                    "name": "primary",
                    "retries": {"attempts": 3, "perTryTimeout": "2s"},
                    "timeout": "10s",
                    "route": [
                        {
                            "destination": {"host": "web-stable", "port": {"number": 80}},
                            "weight": 100,
                        },
                        {
                            "destination": {"host": "web-canary", "port": {"number": 80}},
                            "weight": 0,
                        },
                    ],
                },
            ],
        },
    }


def _vs_weights(body: Body) -> tuple[int, int]:
    route = next(r for r in body["spec"]["http"] if r.get("name") == "primary")
    by_host = {d["destination"]["host"]: int(d.get("weight", 0)) for d in route["route"]}
    return by_host.get("web-stable", 0), by_host.get("web-canary", 0)


def _vs_routes(body: Body) -> list[str]:
    return [r["name"] for r in body["spec"]["http"] if r.get("name") not in ("static", "primary")]


def _vs_untouched(body: Body) -> str:
    spec = copy.deepcopy(body["spec"])
    spec["http"] = [
        r if r.get("name") == "static" else {k: v for k, v in r.items() if k != "route"}
        for r in spec["http"]
        if r.get("name") in ("static", "primary")
    ]
    meta = body["metadata"]
    return json.dumps({"spec": spec, "labels": meta.get("labels"), "ann": meta.get("annotations")})


ISTIO = Case(
    name="istio",
    routing={"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
    objects=[_vs()],
    resource="virtualservices.v1beta1.networking.istio.io",
    object_name="web",
    group="networking.istio.io",
    version="v1beta1",
    plural="virtualservices",
    kind="VirtualService",
    total=100,
    weights=_vs_weights,
    routes=_vs_routes,
    untouched=_vs_untouched,
)


# ---------------------------------------------------------------- Gateway API


def _route() -> Body:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "labels": {"team": "shop"}, "annotations": {"x": "y"}},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "hostnames": ["web.example.com"],
            "rules": [
                {
                    "name": "admin",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
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


def _http_weights(body: Body) -> tuple[int, int]:
    rule = next(r for r in body["spec"]["rules"] if "name" not in r)
    by_name = {b["name"]: int(b.get("weight", 1)) for b in rule["backendRefs"]}
    return by_name.get("web-stable", 0), by_name.get("web-canary", 0)


def _http_routes(body: Body) -> list[str]:
    return [r["name"] for r in body["spec"]["rules"] if r.get("name") not in (None, "admin")]


def _http_untouched(body: Body) -> str:
    rules = [
        r if r.get("name") == "admin" else {k: v for k, v in r.items() if k != "backendRefs"}
        for r in body["spec"]["rules"]
        if r.get("name") in (None, "admin")
    ]
    rest = {k: v for k, v in body["spec"].items() if k != "rules"}
    meta = body["metadata"]
    return json.dumps(
        {"rules": rules, "rest": rest, "labels": meta.get("labels"), "ann": meta.get("annotations")}
    )


GATEWAY = Case(
    name="gatewayAPI",
    routing={"maxTrafficWeight": 1000, "gatewayAPI": {"httpRoute": "web"}},
    objects=[_route()],
    resource="httproutes.v1.gateway.networking.k8s.io",
    object_name="web",
    group="gateway.networking.k8s.io",
    version="v1",
    plural="httproutes",
    kind="HTTPRoute",
    total=1000,
    weights=_http_weights,
    routes=_http_routes,
    untouched=_http_untouched,
)

# ---------------------------------------------------------------- NGINX (Sluice's canary Ingress)

NGINX_PREFIX = "nginx.ingress.kubernetes.io"


def _ingress() -> Body:
    backend = {"service": {"name": "web-stable", "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web", "labels": {"team": "shop"}, "annotations": {"x": "y"}},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "web.example.com",
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ],
        },
    }


def _nginx_weights(body: Body) -> tuple[int, int]:
    annotations = body["metadata"].get("annotations") or {}
    canary = int(annotations.get(f"{NGINX_PREFIX}/canary-weight", "0"))
    return 100 - canary, canary


def _nginx_routes(body: Body) -> list[str]:
    annotations = body["metadata"].get("annotations") or {}
    return ["beta"] if f"{NGINX_PREFIX}/canary-by-header" in annotations else []


def _whole(body: Body) -> str:
    meta = body["metadata"]
    return json.dumps(
        {"spec": body["spec"], "labels": meta.get("labels"), "ann": meta.get("annotations")}
    )


NGINX = Case(
    name="nginx",
    routing={"nginx": {"stableIngress": "web"}},
    objects=[_ingress()],
    resource="ingresses.v1.networking.k8s.io",
    object_name="web-web-canary",
    group="networking.k8s.io",
    version="v1",
    plural="ingresses",
    kind="Ingress",
    total=100,
    weights=_nginx_weights,
    routes=_nginx_routes,
    untouched=_whole,
    user_resource="ingresses.v1.networking.k8s.io",
    user_name="web",
)


# ---------------------------------------------------------------- SMI (Sluice's TrafficSplit)


def _split_weights(body: Body) -> tuple[int, int]:
    by_name = {b["service"]: int(b["weight"]) for b in body["spec"]["backends"]}
    return by_name.get("web-stable", 0), by_name.get("web-canary", 0)


SMI = Case(
    name="smi",
    routing={"smi": {}},
    objects=[],
    resource="trafficsplits.v1alpha4.split.smi-spec.io",
    object_name="web",
    group="split.smi-spec.io",
    version="v1alpha4",
    plural="trafficsplits",
    kind="TrafficSplit",
    total=100,
    weights=_split_weights,
    routes=lambda _body: [],
    untouched=lambda _body: "",
    header_routes=False,
)

CASES = {c.name: c for c in (ISTIO, GATEWAY)}  # routers that edit the user's object
EVERY = {c.name: c for c in (ISTIO, GATEWAY, NGINX, SMI)}


def rollout(case: Case, steps: list[Body], replicas: int = 4, **canary: Any) -> Body:
    routing = {**case.routing, "managedRoutes": [{"name": "beta"}]}
    if not case.header_routes:
        steps = [s for s in steps if "setHeaderRoute" not in s]
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.27",
                            "ports": [{"name": "http", "containerPort": 80}],
                        }
                    ]
                },
            },
            "strategy": {
                "canary": {
                    "scaleDownDelaySeconds": 2,
                    "trafficRouting": routing,
                    "steps": steps,
                    **canary,
                }
            },
        },
    }


BETA_ROUTE = {
    "setHeaderRoute": {
        "name": "beta",
        "match": [{"headerName": "X-User-Group", "headerValue": {"exact": "beta"}}],
    }
}
