"""Two routers in one Rollout (NGINX north-south, Istio east-west) move as one.

The VirtualService is missing at first: nothing moves anywhere (the canary Ingress stays
at 0 % too) and the Rollout says why; once it appears both carry each weight, and the
status counts a weight only after both did (checked on the watch history). Back to the
stable is different: an abort moves every router that can take it, and the canary keeps
its pods until the broken one carries it too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.history import Recorder
from tests.e2e.traffic_cases import ISTIO, rollout

pytestmark = pytest.mark.e2e
P = "nginx.ingress.kubernetes.io"
INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "web"},
    "spec": {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": "web.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web-stable", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ],
    },
}


@pytest.fixture
def recorder(cluster: Cluster, router_crds: str) -> Iterator[Recorder]:
    rec = Recorder(cluster.kubeconfig, cluster.namespace)
    rec.watch_custom("sluice.dev", "v1alpha1", "rollouts", "Rollout")
    rec.watch_custom("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
    rec.watch_custom("networking.k8s.io", "v1", "ingresses", "Ingress")
    time.sleep(0.5)
    yield rec
    rec.stop()


def apply(cluster: Cluster, body: dict[str, object]) -> None:
    cluster.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(body))


def nginx_weight(body: dict[str, object] | None) -> int:
    annotations = ((body or {}).get("metadata") or {}).get("annotations") or {}  # type: ignore[union-attr]
    return int(annotations.get(f"{P}/canary-weight", "0"))


def test_nginx_and_istio_move_together_and_wait_for_each_other(
    cluster: Cluster, operator: Operator, recorder: Recorder
) -> None:
    body = rollout(
        ISTIO, [{"setWeight": 20}, {"pause": {"duration": 1}}, {"setWeight": 60}, {"pause": {}}]
    )
    body["spec"]["strategy"]["canary"]["trafficRouting"]["nginx"] = {"stableIngress": "web"}
    apply(cluster, INGRESS)
    apply(cluster, body)  # the VirtualService is not there yet
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=60)
    cluster.set_image("nginx:1.28")
    wait_for(
        "held for the missing VirtualService",
        lambda: cluster.condition("Paused").get("reason") == "TrafficRouterProblem",
        timeout=30,
    )
    assert "VirtualService web" in cluster.condition("Paused")["message"]
    time.sleep(2)
    canary_ingress = cluster.get("ingress", "web-web-canary")
    assert nginx_weight(canary_ingress) == 0, "NGINX moved while Istio could not"

    apply(cluster, ISTIO.objects[0])
    wait_for(
        "step 3 at weight 60",
        lambda: (
            cluster.status().get("currentStepIndex") == 3
            and cluster.status().get("canaryWeight") == 60
        ),
        timeout=60,
    )
    assert nginx_weight(cluster.get("ingress", "web-web-canary")) == 60
    assert ISTIO.weights(cluster.get(ISTIO.resource, "web") or {}) == (40, 60)

    # Each weight the status counted was carried by both routers before.
    vs = recorder.history("VirtualService", "web")
    ing = recorder.history("Ingress", "web-web-canary")
    first: dict[int, int] = {}
    for seen in recorder.history("Rollout"):
        weight = (seen.body.get("status") or {}).get("canaryWeight", 0)
        if weight:
            first.setdefault(weight, seen.rv)
    assert sorted(first) == [20, 60]
    for weight, rv in first.items():
        vs_then = [s for s in vs if s.rv < rv][-1]
        ing_then = [s for s in ing if s.rv < rv][-1]
        assert ISTIO.weights(vs_then.body)[1] == weight
        assert nginx_weight(ing_then.body) == weight

    cluster.action("abort")
    wait_for(
        "both back to 0",
        lambda: (
            nginx_weight(cluster.get("ingress", "web-web-canary")) == 0
            and ISTIO.weights(cluster.get(ISTIO.resource, "web") or {}) == (100, 0)
        ),
        timeout=30,
    )


def test_an_abort_moves_the_healthy_router_back_while_the_other_is_broken(
    cluster: Cluster, operator: Operator, recorder: Recorder
) -> None:
    body = rollout(ISTIO, [{"setWeight": 50}, {"pause": {}}])
    body["spec"]["strategy"]["canary"]["trafficRouting"]["nginx"] = {"stableIngress": "web"}
    apply(cluster, INGRESS)
    apply(cluster, ISTIO.objects[0])
    apply(cluster, body)
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=60)
    cluster.set_image("nginx:1.28")
    wait_for(
        "weight 50 in both",
        lambda: (
            cluster.status().get("canaryWeight") == 50
            and cluster.condition("Paused").get("reason") == "PauseStep"
        ),
        timeout=60,
    )
    canary = cluster.status()["canary"]["slot"]
    assert cluster.replicas(f"web-{canary}")[0] == 2

    cluster.kubectl("delete", ISTIO.resource, "web")  # the VirtualService goes: broken router
    cluster.action("abort")
    wait_for(
        "NGINX back at 0 % although Istio cannot be written",
        lambda: nginx_weight(cluster.get("ingress", "web-web-canary")) == 0,
        timeout=30,
    )
    wait_for(
        "the broken router named in the status",
        lambda: "VirtualService web" in (cluster.status().get("message") or ""),
        timeout=30,
    )
    assert cluster.status()["phase"] == "Degraded"
    time.sleep(6)  # well past scaleDownDelaySeconds (2)
    assert cluster.replicas(f"web-{canary}")[0] == 2, "the canary lost its pods while routed"

    apply(cluster, ISTIO.objects[0])  # back, as it was before the rollout (100 % stable)
    wait_for(
        "canary scaled down once every router carries 100 % stable",
        lambda: cluster.replicas(f"web-{canary}")[0] == 0,
        timeout=60,
    )
    assert ISTIO.weights(cluster.get(ISTIO.resource, "web") or {}) == (100, 0)
