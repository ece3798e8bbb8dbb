"""Driving a traffic router directly against the real API server (no operator running).

A real Rollout object and the user's router objects live in the test's namespace; the
router gets a RouteContext built from objects read back from the API server, exactly
as the reconciler's cache would hand them over, and the tests read the results with
kubectl.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

from sluice.cluster.kube import Kube, load_config
from sluice.engine.types import HeaderRoute, TrafficPlan
from sluice.engine.validate import parse_spec
from sluice.routers.base import Body, ObjectRef, RouteContext, TrafficRouter
from tests.e2e import api_calls
from tests.e2e.conftest import Cluster
from tests.e2e.manifests import canary_rollout


def rollout_manifest(traffic_routing: dict[str, Any]) -> Body:
    steps = [{"setWeight": 5}, {"setWeight": 25}, {"setWeight": 50}]
    return canary_rollout({"trafficRouting": traffic_routing, "steps": steps})


def plan(weight: int, *routes: HeaderRoute) -> TrafficPlan:
    return TrafficPlan("a", "b" if weight or routes else None, weight, tuple(routes))


class Harness:
    """One Rollout, its router, and the objects the router reads."""

    def __init__(self, cluster: Cluster, router: type[TrafficRouter], routing: Body) -> None:
        self.cluster = cluster
        self.kube = Kube(api_calls.track(load_config(cluster.kubeconfig)), limit=2)
        self.router = router(self.kube)
        manifest = rollout_manifest(routing)
        # --validate=false and the spec as written: crds/ may predate trafficRouting (the
        # API server then prunes it). Identity (uid) comes from the live object.
        cluster.kubectl("create", "--validate=false", "-f", "-", stdin=json.dumps(manifest))
        self.rollout = cluster.rollout("web")
        self.spec = parse_spec(manifest["spec"])

    def create(self, body: Body) -> Body:
        out = self.cluster.kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(body))
        return dict(json.loads(out))

    def ctx(self, services: tuple[str, ...] = ()) -> RouteContext:
        """A context from what the API server holds now."""
        refs = self.router.watched(self.bare())
        objects = {r.key: b for r in refs if (b := self.run(self.kube.get_object(r, self.ns)))}
        children: dict[str, Body] = {}
        for name in services:
            body = self.cluster.get("service", name)
            if body is not None:
                children[f"Service/{name}"] = body
        return RouteContext(self.rollout, self.spec, children, objects)

    def bare(self) -> RouteContext:
        return RouteContext(self.rollout, self.spec, {})

    @property
    def ns(self) -> str:
        return self.cluster.namespace

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)

    def apply(self, p: TrafficPlan) -> list[Body]:
        return list(self.run(self.router.apply(self.ctx(), p)))

    def release(self) -> list[Body]:
        return list(self.run(self.router.release(self.ctx())))

    def close(self) -> None:
        self.kube.close()


def read(cluster: Cluster, ref: ObjectRef) -> Body:
    body = cluster.get(f"{ref.plural}.{ref.version}.{ref.group}", ref.name)
    assert body is not None, f"{ref.key} not found"
    return body


def harness(cluster: Cluster, router: type[TrafficRouter], routing: Body) -> Iterator[Harness]:
    h = Harness(cluster, router, routing)
    try:
        yield h
    finally:
        h.close()
