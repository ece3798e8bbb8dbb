"""Handing router objects over and back, with the operator, on a real API server.

- An Argo Rollouts migration: the user's own `web-stable` / `web-canary` Services are
  used as they are; only the `sluice.dev/slot` key of their selectors is ever written,
  and after the Rollout is deleted they are still there, selecting the stable.
- A provider removed from `trafficRouting` mid-rollout gives its objects back (the user's
  VirtualService to 100 % stable without Sluice's header route, Sluice's canary Ingress
  deleted), from the note in the cluster, not from the spec that no longer names it.
- A Rollout deleted while its spec is invalid restores what was last applied.
- Two Rollouts sending one Ingress rule to their canaries: the older keeps it.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.traffic_cases import BETA_ROUTE, ISTIO, NGINX, rollout

pytestmark = pytest.mark.e2e
Body = dict[str, Any]
SLOT = "sluice.dev/slot"
CANARY_INGRESS = "web-web-canary"


def apply(cluster: Cluster, body: Body) -> None:
    cluster.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(body))


def users_service(name: str) -> Body:
    """A Service as an Argo Rollouts user made it: their labels, annotations, ports."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "labels": {"team": "shop"},
            "annotations": {"made-by": "argo-migration"},
        },
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "web", "port": 80, "targetPort": 80, "protocol": "TCP"}],
        },
    }


def kept(body: Body | None, named: bool = False) -> str:
    """Everything in a Service but the slot key of its selector (and server fields); with
    `named`, the label sluice.dev/role=named too, which must be there (while a Rollout names
    the Service, for the Service watch's server-side selector)."""
    assert body is not None
    meta = body["metadata"]
    if named:
        labels = dict(meta.get("labels") or {})
        assert labels.pop("sluice.dev/role", None) == "named", labels
        meta = {**meta, "labels": labels}
    selector = {k: v for k, v in (body["spec"].get("selector") or {}).items() if k != SLOT}
    return json.dumps(
        {
            "labels": meta.get("labels"),
            "annotations": meta.get("annotations"),
            "ownerReferences": meta.get("ownerReferences"),
            "ports": body["spec"].get("ports"),
            "selector": selector,
        },
        sort_keys=True,
    )


def nginx_weight(cluster: Cluster) -> int | None:
    body = cluster.get("ingress", CANARY_INGRESS)
    return None if body is None else NGINX.weights(body)[1]


def at(cluster: Cluster, step: int, weight: int, name: str = "web") -> None:
    wait_for(
        f"{name} at step {step}, weight {weight}",
        lambda: (
            cluster.status(name).get("currentStepIndex") == step
            and cluster.status(name).get("canaryWeight") == weight
        ),
        timeout=90,
    )


def test_an_argo_users_own_services_get_only_the_slot_key(
    cluster: Cluster, operator: Operator
) -> None:
    for name in ("web-stable", "web-canary"):
        apply(cluster, users_service(name))
    before = {n: kept(cluster.get("service", n)) for n in ("web-stable", "web-canary")}
    for body in NGINX.objects:
        apply(cluster, body)
    apply(
        cluster,
        rollout(
            NGINX,
            [{"setWeight": 20}, {"pause": {}}],
            replicas=2,
            stableService="web-stable",
            canaryService="web-canary",
        ),
    )
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=90)
    stable_slot = cluster.status()["stableSlot"]
    assert cluster.selector("web-stable") == {"app": "web", SLOT: stable_slot}
    cluster.set_image("nginx:1.28")
    at(cluster, 1, 20)
    canary_slot = "b" if stable_slot == "a" else "a"
    assert cluster.selector("web-canary") == {"app": "web", SLOT: canary_slot}
    assert cluster.selector("web-stable") == {"app": "web", SLOT: stable_slot}
    assert nginx_weight(cluster) == 20
    for name, text in before.items():
        assert kept(cluster.get("service", name), named=True) == text, f"{name} changed"
    # The plan note lives on Sluice's root Service, never on the user's.
    web = cluster.get("service", "web")
    assert web is not None and "sluice.dev/traffic" in web["metadata"]["annotations"]

    cluster.kubectl("delete", "rollout", "web", "--wait=false")
    wait_for("the Rollout gone", lambda: cluster.get("rollouts.sluice.dev", "web") is None, 60)
    for name, text in before.items():
        assert kept(cluster.get("service", name)) == text, f"{name} deleted or changed"
        assert cluster.selector(name) == {"app": "web", SLOT: stable_slot}, name


def test_a_service_of_another_rollout_is_still_refused(
    cluster: Cluster, operator: Operator
) -> None:
    for body in NGINX.objects:
        apply(cluster, body)
    apply(cluster, rollout(NGINX, [{"setWeight": 20}, {"pause": {}}], replicas=1))
    wait_for("web Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=90)
    other = rollout(NGINX, [{"setWeight": 20}, {"pause": {}}], replicas=1)
    other["metadata"]["name"] = "api"
    other["spec"]["selector"]["matchLabels"] = {"app": "api"}
    other["spec"]["template"]["metadata"]["labels"] = {"app": "api"}
    other["spec"]["strategy"]["canary"]["stableService"] = "web-stable"  # web's own
    del other["spec"]["strategy"]["canary"]["trafficRouting"]
    before = kept(cluster.get("service", "web-stable"))
    apply(cluster, other)
    wait_for(
        "api names the Service web owns",
        lambda: "belongs to Rollout web" in json.dumps(cluster.status("api")),
        timeout=60,
    )
    assert kept(cluster.get("service", "web-stable")) == before


def test_removed_providers_give_their_objects_back(
    cluster: Cluster, operator: Operator, router_crds: str
) -> None:
    body = rollout(ISTIO, [{"setWeight": 30}, BETA_ROUTE, {"pause": {}}], replicas=2)
    body["spec"]["strategy"]["canary"]["trafficRouting"]["nginx"] = {"stableIngress": "web"}
    for user in [*ISTIO.objects, *NGINX.objects]:
        apply(cluster, user)
    original = ISTIO.untouched(cluster.get(ISTIO.resource, "web") or {})
    apply(cluster, body)
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=90)
    cluster.set_image("nginx:1.28")
    at(cluster, 2, 30)
    vs = cluster.get(ISTIO.resource, "web") or {}
    assert ISTIO.weights(vs) == (70, 30) and ISTIO.routes(vs) == ["beta"]
    assert nginx_weight(cluster) == 30

    # Istio removed (NGINX kept): the VirtualService goes back to 100 % stable, the beta
    # route leaves, the user's other routes are as they were; NGINX keeps its weight.
    patch = [{"op": "remove", "path": "/spec/strategy/canary/trafficRouting/istio"}]
    cluster.kubectl("patch", "rollout", "web", "--type", "json", "-p", json.dumps(patch))

    def released() -> bool:
        live = cluster.get(ISTIO.resource, "web") or {}
        return ISTIO.weights(live) == (100, 0) and ISTIO.routes(live) == []

    wait_for("the VirtualService released", released, timeout=30)
    assert ISTIO.untouched(cluster.get(ISTIO.resource, "web") or {}) == original
    time.sleep(2)
    assert nginx_weight(cluster) == 30
    assert cluster.status()["canaryWeight"] == 30, "the rollout goes on through NGINX"
    assert released(), "written back to a weight after it was released"

    # Istio back and NGINX removed in one edit: Sluice's canary Ingress goes (it would keep
    # 30 % otherwise), the VirtualService carries the plan again.
    routing = {**ISTIO.routing, "managedRoutes": [{"name": "beta"}]}
    patch = [{"op": "replace", "path": "/spec/strategy/canary/trafficRouting", "value": routing}]
    cluster.kubectl("patch", "rollout", "web", "--type", "json", "-p", json.dumps(patch))
    wait_for("the canary Ingress deleted", lambda: nginx_weight(cluster) is None, timeout=30)
    assert cluster.get("ingress", "web") is not None, "the user's Ingress stays"

    def carried() -> bool:
        live = cluster.get(ISTIO.resource, "web") or {}
        return ISTIO.weights(live) == (70, 30) and ISTIO.routes(live) == ["beta"]

    wait_for("the VirtualService carries the plan again", carried, timeout=30)


def test_deleted_with_an_invalid_spec_restores_what_was_last_applied(
    cluster: Cluster, operator: Operator, router_crds: str
) -> None:
    for user in ISTIO.objects:
        apply(cluster, user)
    original = ISTIO.untouched(cluster.get(ISTIO.resource, "web") or {})
    apply(cluster, rollout(ISTIO, [{"setWeight": 40}, BETA_ROUTE, {"pause": {}}], replicas=2))
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=90)
    cluster.set_image("nginx:1.28")
    at(cluster, 2, 40)
    # A field the CRD keeps but Sluice refuses: the spec no longer parses.
    patch = {"spec": {"strategy": {"canary": {"trafficRouting": {"alb": {"ingress": "web"}}}}}}
    cluster.kubectl("patch", "rollout", "web", "--type", "merge", "-p", json.dumps(patch))
    wait_for(
        "the spec refused",
        lambda: "alb" in json.dumps(cluster.status().get("conditions", [])),
        timeout=30,
    )
    assert ISTIO.weights(cluster.get(ISTIO.resource, "web") or {}) == (60, 40)
    cluster.kubectl("delete", "rollout", "web", "--wait=false")
    wait_for("the Rollout gone", lambda: cluster.get("rollouts.sluice.dev", "web") is None, 60)
    vs = cluster.get(ISTIO.resource, "web") or {}
    assert ISTIO.weights(vs) == (100, 0)
    assert ISTIO.routes(vs) == []
    assert ISTIO.untouched(vs) == original


def test_two_rollouts_on_one_ingress_rule_the_older_keeps_it(
    cluster: Cluster, operator: Operator
) -> None:
    shared = copy.deepcopy(NGINX.objects[0])
    api = {"service": {"name": "api-stable", "port": {"number": 80}}}
    paths = shared["spec"]["rules"][0]["http"]["paths"]
    paths.append({"path": "/api", "pathType": "Prefix", "backend": api})
    apply(cluster, shared)
    apply(cluster, rollout(NGINX, [{"setWeight": 20}, {"pause": {}}], replicas=1))
    wait_for("web Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=90)
    rival = rollout(NGINX, [{"setWeight": 70}, {"pause": {}}], replicas=1)
    rival["metadata"]["name"] = "api"
    rival["spec"]["selector"]["matchLabels"] = {"app": "api"}
    rival["spec"]["template"]["metadata"]["labels"] = {"app": "api"}
    apply(cluster, rival)

    def held() -> bool:
        return "already managed by Rollout web" in str(cluster.status("api").get("message"))

    wait_for("api names the rule web holds", held, timeout=60)
    assert "Ingress web host web.example.com" in cluster.status("api")["message"]
    cluster.set_image("nginx:1.28", name="api")
    time.sleep(3)
    assert cluster.get("ingress", "api-web-canary") is None, "api never wrote its copy"
    assert held()

    cluster.set_image("nginx:1.28")  # the owner still moves its rule
    at(cluster, 1, 20)
    assert nginx_weight(cluster) == 20
