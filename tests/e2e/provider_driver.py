"""Driving one traffic router directly against the API server (no operator running).

A real Rollout object is created so that owner references are valid and garbage
collection is the API server's; the Services come from Sluice's own ServiceRouter. The
router's context is built the way the reconciler's watch cache holds it: the labelled
objects Sluice owns as `children`, the user's objects the router asks to watch, read by
name, as `objects`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

from sluice.cluster.kube import Kube, load_config
from sluice.engine.types import HeaderRoute, TrafficPlan
from sluice.engine.validate import parse_spec
from sluice.routers.base import RouteContext, TrafficRouter
from sluice.routers.services import ServiceRouter
from tests.e2e import api_calls
from tests.e2e.conftest import Cluster

T = TypeVar("T")
Body = dict[str, Any]
_specs: dict[tuple[str, str], Body] = {}  # (namespace, name) -> the Rollout spec written
PLURALS = {
    "Ingress": "ingresses.networking.k8s.io",
    "TrafficSplit": "trafficsplits.split.smi-spec.io",
}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def kube(cluster: Cluster) -> Kube:
    return Kube(api_calls.track(load_config(cluster.kubeconfig)), limit=2)


def rollout(cluster: Cluster, traffic_routing: Body, name: str = "web") -> Body:
    """A minimal Rollout with `traffic_routing`, as the API server returns it."""
    body = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.27",
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            },
            "strategy": {
                "canary": {"trafficRouting": traffic_routing, "steps": [{"setWeight": 5}]}
            },
        },
    }
    # The CRD installed may predate trafficRouting (and prune it): the router is given the
    # spec as written here, the live object gives the uid that owner references need.
    _specs[(cluster.namespace, name)] = body["spec"]
    cluster.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(body))
    return cluster.rollout(name)


def apply_yaml(cluster: Cluster, text: str) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=text)


def context(cluster: Cluster, router: TrafficRouter, name: str = "web") -> RouteContext:
    """What the router would see from the watch cache, read from the API server now
    (through the client rather than kubectl: a context is built for every call)."""
    api = _api(cluster.kubeconfig)
    body = _read(api, cluster.namespace, ROLLOUTS, name)
    assert body is not None, f"Rollout {name} not found"
    spec = parse_spec(_specs[(cluster.namespace, name)])
    watched = router.watched(RouteContext(body, spec, {}))
    selector = f"sluice.dev/rollout={name}"
    core = kubernetes.client.CoreV1Api(api)
    found = core.list_namespaced_service(
        cluster.namespace, label_selector=selector, _preload_content=False
    )
    children = {f"Service/{s['metadata']['name']}": s for s in json.loads(found.data)["items"]}
    custom = kubernetes.client.CustomObjectsApi(api)
    for ref in {(r.group, r.version, r.plural, r.kind) for r in watched}:
        group, version, plural, kind = ref
        items = custom.list_namespaced_custom_object(
            group, version, cluster.namespace, plural, label_selector=selector
        )["items"]
        children.update({f"{kind}/{i['metadata']['name']}": i for i in items})
    objects: dict[str, Body] = {}
    for ref in (r for r in watched if not r.owned):  # as the reconciler: the user's, by name
        obj = _read(api, cluster.namespace, (ref.group, ref.version, ref.plural), ref.name)
        if obj is not None:
            objects[ref.key] = obj
    return RouteContext(body, spec, children, objects)


ROLLOUTS = ("sluice.dev", "v1alpha1", "rollouts")
_clients: dict[str, kubernetes.client.ApiClient] = {}


def _api(kubeconfig: str) -> kubernetes.client.ApiClient:
    if kubeconfig not in _clients:
        _clients[kubeconfig] = load_config(kubeconfig)
    return _clients[kubeconfig]


def _read(
    api: kubernetes.client.ApiClient, namespace: str, what: tuple[str, str, str], name: str
) -> Body | None:
    try:
        body: Body = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
            *what[:2], namespace, what[2], name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return body


def services(cluster: Cluster, name: str = "web") -> None:
    """The root, stable and canary Services, made by Sluice's own Service router."""
    k = kube(cluster)
    body = cluster.rollout(name)
    ctx = RouteContext(body, parse_spec(_specs[(cluster.namespace, name)]), {})
    run(ServiceRouter(k).apply(ctx, TrafficPlan("a", "b", 0), {"root", "stable", "canary"}))
    k.close()


def plan(weight: int, *routes: HeaderRoute) -> TrafficPlan:
    """Stable in slot a; the canary (slot b) takes traffic when it has weight or a route."""
    return TrafficPlan("a", "b" if weight or routes else None, weight, routes)


def user_view(cluster: Cluster, plural: str, name: str) -> str:
    """What the user wrote and what a write would change: spec, labels, annotations,
    resourceVersion (which any write at all bumps)."""
    body = cluster.get(plural, name)
    assert body is not None, f"{plural} {name} is gone"
    meta = body["metadata"]
    keep = {
        "spec": body.get("spec"),
        "labels": meta.get("labels"),
        "annotations": meta.get("annotations"),
        "resourceVersion": meta["resourceVersion"],
    }
    return json.dumps(keep, sort_keys=True)


def dump(docs: list[Body]) -> str:
    return yaml.safe_dump_all(docs)
