"""The NGINX router against a real API server: the canary Ingress it owns, as kubectl sees it.

Each test makes a Rollout `web` (trafficRouting.nginx), its Services and the user's
Ingress, calls the router directly, and reads the objects back. The user's Ingress must
never be written: its spec, labels, annotations and resourceVersion stay as they were.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from sluice.api.traffic import HeaderRoutingMatch
from sluice.engine.types import HeaderRoute
from sluice.routers.base import RouterProblem
from sluice.routers.nginx import NginxRouter
from tests.e2e.conftest import EXAMPLES, Cluster, Operator, wait_for
from tests.e2e.provider_driver import (
    apply_yaml,
    context,
    kube,
    plan,
    rollout,
    run,
    services,
    user_view,
)

pytestmark = pytest.mark.e2e

P = "nginx.ingress.kubernetes.io"
ING = "ingresses.networking.k8s.io"
CANARY = "web-web-canary"


def user_ingress(name: str = "web", port: str = "name: http", service: str = "web-stable") -> str:
    """The user's Ingress: one path to the stable Service, others to Services of no concern."""
    return f"""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  labels: {{team: shop}}
  annotations:
    {P}/proxy-body-size: 8m
spec:
  ingressClassName: nginx
  tls: [{{hosts: [shop.example.com], secretName: shop-tls}}]
  rules:
    - host: shop.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {{service: {{name: {service}, port: {{{port}}}}}}}
          - path: /static
            pathType: Prefix
            backend: {{service: {{name: static, port: {{number: 80}}}}}}
    - host: admin.example.com
      http:
        paths:
          - path: /
            pathType: Exact
            backend: {{service: {{name: admin, port: {{number: 80}}}}}}
"""


def canary_annotations(cluster: Cluster, name: str = CANARY) -> dict[str, str]:
    body = cluster.get(ING, name)
    assert body is not None, f"canary Ingress {name} missing"
    annotations = body["metadata"].get("annotations") or {}
    return {k[len(P) + 1 :]: v for k, v in annotations.items() if k.startswith(f"{P}/canary")}


def header(name: str, **value: str) -> HeaderRoute:
    match = HeaderRoutingMatch.model_validate({"headerName": name, "headerValue": value})
    return HeaderRoute("beta", (match,))


def cookie(name: str, value: str = "always") -> HeaderRoute:
    match = HeaderRoutingMatch.model_validate({"cookieName": name, "cookieValue": value})
    return HeaderRoute("beta", (match,))


def setup(cluster: Cluster, routing: dict[str, Any] | None = None) -> NginxRouter:
    rollout(cluster, routing or {"nginx": {"stableIngress": "web"}})
    services(cluster)
    return NginxRouter(kube(cluster))


def test_the_canary_ingress_carries_each_plan_and_the_users_is_never_written(
    cluster: Cluster,
) -> None:
    router = setup(cluster)
    apply_yaml(cluster, user_ingress())
    before = user_view(cluster, ING, "web")
    steps = [
        (plan(0), {"canary-weight": "0"}),
        (plan(5), {"canary-weight": "5"}),
        (
            plan(25, header("X-User-Group", exact="beta")),
            {
                "canary-weight": "25",
                "canary-by-header": "X-User-Group",
                "canary-by-header-value": "beta",
            },
        ),
        (
            plan(50, header("X-User", prefix="team.a+")),
            {
                "canary-weight": "50",
                "canary-by-header": "X-User",
                "canary-by-header-pattern": r"^team\.a\+.*",
            },
        ),
        (
            plan(100, header("X-Bucket", regex="[0-4]")),
            {
                "canary-weight": "100",
                "canary-by-header": "X-Bucket",
                "canary-by-header-pattern": "^(?:[0-4])$",
            },
        ),
    ]
    for step, expected in steps:
        run(router.apply(context(cluster, router), step))
        assert canary_annotations(cluster) == {"canary": "true", **expected}, step
        seen = router.verify(context(cluster, router), step)
        assert seen.verified and seen.problem is None, (step, seen)

    canary = cluster.get(ING, CANARY)
    assert canary is not None
    assert canary["spec"]["ingressClassName"] == "nginx"
    # Only the path to the stable Service is copied, sent to the canary on the same port.
    assert canary["spec"]["rules"] == [
        {
            "host": "shop.example.com",
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
    assert "tls" not in canary["spec"]
    meta = canary["metadata"]
    assert meta["labels"] == {"sluice.dev/rollout": "web", "sluice.dev/role": "canary-ingress"}
    owners = [(o["kind"], o["name"], o["uid"]) for o in meta["ownerReferences"]]
    assert owners == [("Rollout", "web", cluster.rollout()["metadata"]["uid"])]
    # A plan the live object already carries is not written again.
    version = meta["resourceVersion"]
    run(router.apply(context(cluster, router), steps[-1][0]))
    again = cluster.get(ING, CANARY)
    assert again is not None and again["metadata"]["resourceVersion"] == version
    assert user_view(cluster, ING, "web") == before


def test_a_hand_edit_is_seen_restored_and_never_overwritten_blindly_then_release(
    cluster: Cluster,
) -> None:
    router = setup(cluster)
    apply_yaml(cluster, user_ingress())
    before = user_view(cluster, ING, "web")
    step = plan(25, cookie("canary-beta"))
    run(router.apply(context(cluster, router), step))
    assert canary_annotations(cluster) == {
        "canary": "true",
        "canary-weight": "25",
        "canary-by-cookie": "canary-beta",
    }
    stale = context(cluster, router)
    assert router.verify(stale, step).verified

    cluster.kubectl("annotate", "--overwrite", "ingress", CANARY, f"{P}/canary-weight=90")
    seen = router.verify(context(cluster, router), step)
    assert not seen.verified and seen.problem is None
    assert f"{P}/canary-weight" in seen.detail and "'90'" in seen.detail, seen.detail

    # Written from an outdated read, an update is refused (409) and the edit stays.
    with pytest.raises(ApiException) as refused:
        run(router.apply(stale, plan(50, cookie("canary-beta"))))
    assert refused.value.status == 409
    assert canary_annotations(cluster)["canary-weight"] == "90"

    run(router.apply(context(cluster, router), step))
    assert canary_annotations(cluster)["canary-weight"] == "25"
    assert router.verify(context(cluster, router), step).verified

    run(router.release(context(cluster, router)))
    assert canary_annotations(cluster) == {"canary": "true", "canary-weight": "0"}
    assert not router.verify(context(cluster, router), step).verified
    assert router.verify(context(cluster, router), plan(0)).verified
    assert user_view(cluster, ING, "web") == before


def test_several_ingresses_a_weight_total_and_extra_annotations(cluster: Cluster) -> None:
    routing = {
        "maxTrafficWeight": 1000,
        "nginx": {
            "stableIngresses": ["web", "web-internal"],
            "additionalIngressAnnotations": {"example.com/owner": "team-shop"},
        },
    }
    router = setup(cluster, routing)
    apply_yaml(cluster, user_ingress())
    internal = (
        user_ingress("web-internal")
        .replace(
            "  ingressClassName: nginx\n",
            "",
        )
        .replace(f"    {P}/proxy-body-size: 8m", "    kubernetes.io/ingress.class: nginx-internal")
    )
    apply_yaml(cluster, internal)
    before = [user_view(cluster, ING, n) for n in ("web", "web-internal")]

    for weight, canary in ((5, "50"), (25, "250"), (100, "1000")):
        run(router.apply(context(cluster, router), plan(weight)))
        for name in (CANARY, "web-web-internal-canary"):
            expected = {"canary": "true", "canary-weight": canary, "canary-weight-total": "1000"}
            assert canary_annotations(cluster, name) == expected, (weight, name)
        assert router.verify(context(cluster, router), plan(weight)).verified

    first, second = cluster.get(ING, CANARY), cluster.get(ING, "web-web-internal-canary")
    assert first is not None and second is not None
    assert first["metadata"]["annotations"]["example.com/owner"] == "team-shop"
    assert second["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "nginx-internal"
    assert "ingressClassName" not in second["spec"]

    # web-internal is no longer named: its canary copy would keep its weight, so it goes.
    rollout(cluster, {**routing, "nginx": {"stableIngress": "web"}})
    run(router.apply(context(cluster, router), plan(25)))
    assert cluster.get(ING, "web-web-internal-canary") is None
    assert canary_annotations(cluster)["canary-weight"] == "250"
    assert [user_view(cluster, ING, n) for n in ("web", "web-internal")] == before


def test_problems_name_the_object_and_field_and_nothing_is_written(cluster: Cluster) -> None:
    router = setup(cluster)
    cases = [
        (None, "Ingress web: not found (spec.strategy.canary.trafficRouting.nginx.stableIngress)"),
        (
            user_ingress(service="web-old"),
            "Ingress web: no path sends to Service web-stable "
            "(spec.rules[].http.paths[].backend.service.name)",
        ),
        (
            user_ingress(port="number: 9999"),
            "Ingress web: spec.rules[0].http.paths[0].backend.service.port is 9999, which "
            "Service web-stable does not have (its ports: [8080])",
        ),
    ]
    for manifest, message in cases:
        if manifest is not None:
            apply_yaml(cluster, manifest)
        with pytest.raises(RouterProblem) as problem:
            run(router.apply(context(cluster, router), plan(5)))
        assert str(problem.value) == message
        assert router.verify(context(cluster, router), plan(5)).problem == message
        assert cluster.get(ING, CANARY) is None

    # A foreign Ingress with the canary's name is neither taken over nor changed.
    apply_yaml(cluster, user_ingress())
    foreign = yaml.safe_load(user_ingress())
    foreign["metadata"] = {"name": CANARY, "annotations": {f"{P}/canary": "true"}}
    apply_yaml(cluster, json.dumps(foreign))
    foreign_before = user_view(cluster, ING, CANARY)
    expected = (
        f"Ingress {CANARY} exists and is not owned by Rollout web (metadata.ownerReferences); "
        "Sluice will not take it over: rename or delete it"
    )
    with pytest.raises(RouterProblem) as problem:
        run(router.apply(context(cluster, router), plan(5)))
    assert str(problem.value) == expected
    # Unlabelled, it is not in the cache: verify sees no canary Ingress of the Rollout's.
    assert not router.verify(context(cluster, router), plan(5)).verified
    assert user_view(cluster, ING, CANARY) == foreign_before


def test_the_canary_ingress_goes_with_the_rollout(cluster: Cluster) -> None:
    router = setup(cluster)
    apply_yaml(cluster, user_ingress())
    before = user_view(cluster, ING, "web")
    run(router.apply(context(cluster, router), plan(5)))
    assert cluster.get(ING, CANARY) is not None
    cluster.kubectl("delete", "rollout.sluice.dev", "web", "--wait=false")
    wait_for("the canary Ingress garbage-collected", lambda: cluster.get(ING, CANARY) is None)
    assert user_view(cluster, ING, "web") == before


def test_the_operator_runs_the_example_through_the_canary_ingress(
    cluster: Cluster, operator: Operator
) -> None:
    """examples/routers/nginx.yaml with the real operator, at 4 replicas and a canary of 2
    (sized by its 5 % weight it would be 1): the weight and a cookie route at the manual
    pause; after promotion no weight and no route are left."""
    docs = list(yaml.safe_load_all((EXAMPLES / "routers" / "nginx.yaml").read_text()))
    spec = docs[1]["spec"]
    spec["replicas"] = 4
    assert spec["strategy"]["canary"]["steps"][0] == {"setCanaryScale": {"replicas": 1}}
    spec["strategy"]["canary"]["steps"][0] = {"setCanaryScale": {"replicas": 2}}
    apply_yaml(cluster, yaml.safe_dump_all(docs))
    wait_for("first revision Healthy", lambda: cluster.status().get("phase") == "Healthy")
    before = user_view(cluster, ING, "web")

    cluster.set_image("nginx:1.28")
    wait_for(
        "the manual pause at 5 %",
        lambda: (
            (cluster.status().get("currentStepIndex"), cluster.status().get("phase"))
            == (3, "Paused")
        ),
    )
    assert canary_annotations(cluster) == {
        "canary": "true",
        "canary-weight": "5",
        "canary-by-cookie": "canary-beta",
    }
    assert cluster.replicas("web-b") == (2, 2)
    assert cluster.replicas("web-a")[0] == 4
    assert cluster.selector("web-canary")["sluice.dev/slot"] == "b"

    cluster.action("promote-full")
    wait_for("Completed", lambda: cluster.condition("Completed").get("status") == "True")
    wait_for(
        "no weight and no route left",
        lambda: canary_annotations(cluster) == {"canary": "true", "canary-weight": "0"},
    )
    assert cluster.selector("web-stable")["sluice.dev/slot"] == "b"
    assert user_view(cluster, ING, "web") == before
