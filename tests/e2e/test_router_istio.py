"""The Istio router on a real API server: a user's VirtualService, edited only where managed.

The Rollout names VirtualService `web`, route `primary`, and header routes beta and tester.
The VirtualService also has an `admin` route to another Service, retries, a timeout,
labels and annotations that Sluice must leave exactly as they were.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from sluice.api.traffic import HeaderRoutingMatch
from sluice.engine.types import HeaderRoute, TrafficPlan
from sluice.routers.base import RouterProblem
from sluice.routers.istio import IstioRouter, dr_ref, vs_ref
from tests.e2e.conftest import Cluster
from tests.e2e.routers import Harness, harness, plan, read

pytestmark = pytest.mark.e2e

ROUTING = {
    "managedRoutes": [{"name": "beta"}, {"name": "tester"}],
    "istio": {"virtualService": {"name": "web", "routes": ["primary"]}},
}
BETA = HeaderRoute(
    "beta",
    (
        HeaderRoutingMatch.model_validate(
            {"headerName": "X-User-Group", "headerValue": {"exact": "beta"}}
        ),
    ),
)
TESTER = HeaderRoute("tester", (HeaderRoutingMatch.model_validate({"cookieName": "tester"}),))
REF = vs_ref("web")
KIND_VS = "virtualservices.v1beta1.networking.istio.io"


def virtual_service(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {
            "name": "web",
            "labels": {"team": "shop"},
            "annotations": {"owner": "someone@example.com"},
        },
        "spec": {
            "hosts": ["web.example.com"],
            "gateways": ["edge"],
            "http": [
                {
                    "name": "admin",
                    "match": [{"uri": {"prefix": "/admin"}}],
                    "route": [{"destination": {"host": "admin", "port": {"number": 8080}}}],
                    "timeout": "3s",
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
                            "destination": {
                                "host": f"web-canary.{ns}.svc.cluster.local",
                                "port": {"number": 80},
                            },
                            "weight": 0,
                        },
                    ],
                },
            ],
        },
    }


@pytest.fixture
def istio(router_crds: str, cluster: Cluster) -> Iterator[Harness]:
    yield from harness(cluster, IstioRouter, ROUTING)


def http(cluster: Cluster) -> list[dict[str, Any]]:
    return list(read(cluster, REF)["spec"]["http"])


def primary_weights(cluster: Cluster) -> list[int]:
    route = next(r for r in http(cluster) if r["name"] == "primary")
    return [entry["weight"] for entry in route["route"]]


def untouched(body: dict[str, Any]) -> str:
    """Everything Sluice must not change, as JSON: the other route, the other fields."""
    rest = copy.deepcopy(body)
    meta = rest.pop("metadata")
    rest["spec"]["http"] = [r for r in rest["spec"]["http"] if r["name"] == "admin"] + [
        {k: v for k, v in r.items() if k != "route"}
        for r in rest["spec"]["http"]
        if r["name"] == "primary"
    ]
    rest.pop("apiVersion")  # kubectl reads the preferred version
    kept = {"labels": meta.get("labels"), "annotations": meta.get("annotations"), **rest}
    return json.dumps(kept, sort_keys=True)


def test_weights_and_header_routes_follow_each_plan_then_release_restores(
    istio: Harness, cluster: Cluster
) -> None:
    original = istio.create(virtual_service(cluster.namespace))
    steps = [
        (plan(0), ["admin", "primary"], [100, 0]),
        (plan(5), ["admin", "primary"], [95, 5]),
        (plan(25, BETA), ["admin", "beta", "primary"], [75, 25]),
        (plan(50, BETA, TESTER), ["admin", "beta", "tester", "primary"], [50, 50]),
        (plan(50, TESTER), ["admin", "tester", "primary"], [50, 50]),
        (plan(100), ["admin", "primary"], [0, 100]),
    ]
    for p, names, weights in steps:
        istio.apply(p)
        live = http(cluster)
        assert [r["name"] for r in live] == names, p
        assert primary_weights(cluster) == weights, p
        assert untouched(read(cluster, REF)) == untouched(original), p
        assert istio.router.verify(istio.ctx(), p).verified, p
        assert istio.apply(p) == [], "a second apply of the same plan writes nothing"

    p = plan(25, BETA, TESTER)
    istio.apply(p)
    beta, tester = http(cluster)[1:3]
    assert beta["match"] == [{"headers": {"x-user-group": {"exact": "beta"}}}]
    assert beta["route"] == [
        {
            "destination": {
                "host": f"web-canary.{cluster.namespace}.svc.cluster.local",
                "port": {"number": 80},
            },
            "weight": 100,
        }
    ]
    assert beta["retries"] == {"attempts": 3, "perTryTimeout": "2s"}
    assert tester["match"][0]["headers"]["cookie"] == {"regex": "^(.*; *)?tester=always( *;.*)?$"}

    # A hand edit of the managed weight is seen, and the next apply writes it back.
    index = [r["name"] for r in http(cluster)].index("primary")
    cluster.kubectl(
        "patch", "virtualservices.v1beta1.networking.istio.io", "web", "--type", "json", "-p",
        json.dumps([{"op": "replace", "path": f"/spec/http/{index}/route/1/weight", "value": 60},
                    {"op": "replace", "path": f"/spec/http/{index}/route/0/weight", "value": 40}]),
    )  # fmt: skip
    seen = istio.router.verify(istio.ctx(), p)
    assert not seen.verified and seen.problem is None
    assert "primary 40/60" in seen.detail and "primary 75/25" in seen.detail
    istio.apply(p)
    assert primary_weights(cluster) == [75, 25]

    # A header route removed from the user's object by hand is not verified either.
    cluster.kubectl(
        "patch", "virtualservices.v1beta1.networking.istio.io", "web", "--type", "json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/http/1"}]),
    )  # fmt: skip
    assert not istio.router.verify(istio.ctx(), p).verified

    istio.release()
    final = read(cluster, REF)
    assert final["spec"] == original["spec"], "100 % stable, no header routes, all else as was"
    assert final["metadata"]["labels"] == original["metadata"]["labels"]
    assert final["metadata"]["annotations"] == original["metadata"]["annotations"]
    assert istio.router.verify(istio.ctx(), plan(0)).verified


def test_problems_name_the_object_and_field_and_write_nothing(
    istio: Harness, cluster: Cluster
) -> None:
    seen = istio.router.verify(istio.ctx(), plan(5))
    assert seen.problem == (
        f"VirtualService web: not found in {cluster.namespace} "
        "(spec.strategy.canary.trafficRouting.istio.virtualService.name)"
    )
    with pytest.raises(RouterProblem, match=r"VirtualService web: not found.*never creates it"):
        istio.apply(plan(5))
    assert cluster.get("virtualservices.networking.istio.io", "web") is None
    assert istio.release() == [], "releasing a VirtualService that is gone is fine"

    body = virtual_service(cluster.namespace)
    body["spec"]["http"][1]["name"] = "main"
    istio.create(body)
    before = read(cluster, REF)
    for p in (plan(5), plan(0, BETA)):
        with pytest.raises(RouterProblem) as info:
            istio.apply(p)
        assert str(info.value) == (
            "VirtualService web: http route 'primary' not found "
            "(spec.strategy.canary.trafficRouting.istio.virtualService.routes)"
        )
    assert istio.router.verify(istio.ctx(), plan(5)).problem == str(info.value)
    assert read(cluster, REF) == before

    fix = [{"op": "replace", "path": "/spec/http/1/name", "value": "primary"},
           {"op": "remove", "path": "/spec/http/1/route/1"}]  # fmt: skip
    cluster.kubectl("patch", "virtualservices.networking.istio.io", "web", "--type", "json",
                    "-p", json.dumps(fix))  # fmt: skip
    with pytest.raises(RouterProblem, match=r"'primary' has no destination to the canary Service "
                       r"web-canary \(spec\.http\[1\]\.route\)"):  # fmt: skip
        istio.apply(plan(5))
    assert "no destination to the canary" in str(istio.router.verify(istio.ctx(), plan(5)).problem)

    # A user route already called like a managed route is not Sluice's to replace.
    clash = [{"op": "replace", "path": "/spec/http/0/name", "value": "beta"}]
    cluster.kubectl("patch", "virtualservices.networking.istio.io", "web", "--type", "json",
                    "-p", json.dumps(clash))  # fmt: skip
    listed = r"'beta' \(spec\.http\[0\]\) has a name listed in .*trafficRouting\.managedRoutes"
    with pytest.raises(RouterProblem, match=listed):
        istio.release()


def test_a_port_the_service_does_not_have_is_a_problem(istio: Harness, cluster: Cluster) -> None:
    istio.create(virtual_service(cluster.namespace))
    for name in ("web-stable", "web-canary"):
        cluster.kubectl("create", "service", "clusterip", name, "--tcp=8080:8080")
    ctx = istio.ctx(services=("web-stable", "web-canary"))
    seen = istio.router.verify(ctx, plan(5))
    assert seen.problem == (
        "VirtualService web: http route 'primary': port 80 is not a port of Service "
        "web-stable (it has [8080]) (spec.http[1].route[].destination.port)"
    )


def test_a_stale_resource_version_is_a_conflict_not_an_overwrite(
    istio: Harness, cluster: Cluster
) -> None:
    istio.create(virtual_service(cluster.namespace))
    ctx = istio.ctx()
    cluster.kubectl("annotate", "virtualservices.networking.istio.io", "web", "edited=by-hand")
    with pytest.raises(ApiException) as info:
        istio.run(istio.router.apply(ctx, plan(25, BETA)))
    assert info.value.status == 409
    live = read(cluster, REF)
    assert live["metadata"]["annotations"]["edited"] == "by-hand"
    assert primary_weights(cluster) == [100, 0] and len(live["spec"]["http"]) == 2
    istio.apply(plan(25, BETA))  # re-read: goes through
    assert primary_weights(cluster) == [75, 25]


DR_ROUTING = {
    "istio": {
        "virtualService": {"name": "web"},
        "destinationRule": {
            "name": "web",
            "stableSubsetName": "stable",
            "canarySubsetName": "canary",
        },
    },
}
DR_KIND = "destinationrules.v1beta1.networking.istio.io"


def destination_rule() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": "web", "labels": {"team": "shop"}},
        "spec": {
            "host": "web",
            "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}},
            "subsets": [
                {"name": "stable", "labels": {"app": "web"}},
                {"name": "canary", "labels": {"app": "web"}},
                {"name": "legacy", "labels": {"app": "web-v0"}},
            ],
        },
    }


def subset_service(ns: str) -> dict[str, Any]:
    body = virtual_service(ns)
    body["spec"]["http"] = [
        {
            "name": "primary",
            "route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
                {"destination": {"host": f"web.{ns}.svc.cluster.local", "subset": "canary"}},
            ],
        }
    ]
    return body


@pytest.fixture
def istio_dr(router_crds: str, cluster: Cluster) -> Iterator[Harness]:
    yield from harness(cluster, IstioRouter, DR_ROUTING)


def slots(cluster: Cluster) -> dict[str, str | None]:
    body = read(cluster, dr_ref("web"))
    return {s["name"]: s["labels"].get("sluice.dev/slot") for s in body["spec"]["subsets"]}


def watch(cluster: Cluster, kind: str) -> subprocess.Popen[str]:
    """`kubectl get --watch -o json`, returned once the current object has been printed."""
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    args = ["kubectl", "-n", cluster.namespace, "get", kind, "web", "--watch", "-o", "json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    while proc.stdout.readline() not in ("}\n", ""):  # the end of the current object
        pass
    return proc


def versions(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """Every version the watch saw after it started."""
    time.sleep(1.0)
    proc.terminate()
    text = proc.communicate(timeout=10)[0].strip()
    decoder, seen, at = json.JSONDecoder(), [], 0
    while at < len(text):
        body, at = decoder.raw_decode(text, at)
        seen.append(body)
        while at < len(text) and text[at].isspace():
            at += 1
    return seen


def test_destination_rule_subsets_follow_the_slots_stable_side_first(
    istio_dr: Harness, cluster: Cluster
) -> None:
    original = istio_dr.create(destination_rule())
    istio_dr.create(subset_service(cluster.namespace))
    p = TrafficPlan("a", "b", 5)
    istio_dr.apply(p)
    assert slots(cluster) == {"stable": "a", "canary": "b", "legacy": None}
    assert primary_weights(cluster) == [95, 5]
    assert istio_dr.router.verify(istio_dr.ctx(), p).verified
    istio_dr.apply(TrafficPlan("a", "b", 100))

    # Promotion: b becomes the stable. The stable subset moves before the weights, the
    # canary subset after, so no request goes back to a while the weights swing.
    dr_watch = watch(cluster, DR_KIND)
    istio_dr.apply(TrafficPlan("b", None, 0))
    seen = versions(dr_watch)
    vs_version = int(read(cluster, REF)["metadata"]["resourceVersion"])
    states = [(int(b["metadata"]["resourceVersion"]), {s["name"]: s["labels"].get(
        "sluice.dev/slot") for s in b["spec"]["subsets"]}) for b in seen]  # fmt: skip
    halfway = [rv for rv, labels in states if labels["stable"] == "b" and labels["canary"] == "b"]
    final = [rv for rv, labels in states if labels["stable"] == "b" and labels["canary"] == "a"]
    assert halfway and final, states
    assert halfway[0] < vs_version < final[0], (states, vs_version)
    assert primary_weights(cluster) == [100, 0]
    assert istio_dr.router.verify(istio_dr.ctx(), TrafficPlan("b", None, 0)).verified

    after = read(cluster, dr_ref("web"))
    for subset, was in zip(after["spec"]["subsets"], original["spec"]["subsets"], strict=True):
        was_labels = {**was["labels"]}
        assert {k: v for k, v in subset["labels"].items() if k != "sluice.dev/slot"} == was_labels
    rest = {k: v for k, v in after["spec"].items() if k != "subsets"}
    assert rest == {k: v for k, v in original["spec"].items() if k != "subsets"}
    assert after["metadata"]["labels"] == original["metadata"]["labels"]

    # The DestinationRule gone: apply and verify say so; release still works, by subset.
    cluster.kubectl("delete", DR_KIND, "web")
    message = (
        f"DestinationRule web: not found in {cluster.namespace} "
        "(spec.strategy.canary.trafficRouting.istio.destinationRule.name); Sluice never creates it"
    )
    assert istio_dr.router.verify(istio_dr.ctx(), p).problem == message
    with pytest.raises(RouterProblem) as info:
        istio_dr.apply(p)
    assert str(info.value) == message
    half = [{"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 50}]  # fmt: skip
    cluster.kubectl("patch", KIND_VS, "web", "--type", "json", "-p", json.dumps(half))
    istio_dr.release()
    assert primary_weights(cluster) == [100, 0]


TWO = {
    "istio": {
        "virtualServices": [
            {"name": "web", "routes": ["primary"]},
            {"name": "web-mesh"},
        ]
    },
}


@pytest.fixture
def two_services(router_crds: str, cluster: Cluster) -> Iterator[Harness]:
    yield from harness(cluster, IstioRouter, TWO)


def test_two_virtual_services_move_together_and_a_problem_in_one_writes_neither(
    two_services: Harness, cluster: Cluster
) -> None:
    two_services.create(virtual_service(cluster.namespace))
    mesh = virtual_service(cluster.namespace)
    mesh["metadata"]["name"] = "web-mesh"
    two_services.create(mesh)  # two http routes, and none named: which one is meant?
    before = read(cluster, REF)
    with pytest.raises(RouterProblem) as info:
        two_services.apply(plan(5))
    assert str(info.value) == (
        "VirtualService web-mesh: has 2 http routes; name the ones Sluice manages "
        "(spec.strategy.canary.trafficRouting.istio.virtualServices[1].routes)"
    )
    assert read(cluster, REF) == before, "web was not written either"

    drop = [{"op": "remove", "path": "/spec/http/0"}]
    cluster.kubectl("patch", KIND_VS, "web-mesh", "--type", "json", "-p", json.dumps(drop))
    two_services.apply(plan(5))
    assert primary_weights(cluster) == [95, 5]
    mesh_route = read(cluster, vs_ref("web-mesh"))["spec"]["http"][0]
    assert [e["weight"] for e in mesh_route["route"]] == [95, 5]
    assert two_services.router.verify(two_services.ctx(), plan(5)).verified
