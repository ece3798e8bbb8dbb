"""Blue-green on a real API server: the user's active Service switches in one write, only to
a version whose every pod is Ready; an abort never moves it; deletion leaves it on stable.

Each test records the Services and Deployments from the API server's watch (history.py),
so "one write" and "never to a not-Ready version" are checked on every version the
server stored, not on a final snapshot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.history import Recorder, Seen
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.e2e

SLOT = "sluice.dev/slot"
REPLICAS = 3


def services() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
        }
        for name in ("web-active", "web-preview")
    ]


def rollout(name: str = "web", **blue_green: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
            "strategy": {
                "blueGreen": {
                    "activeService": "web-active",
                    "previewService": "web-preview",
                    "scaleDownDelaySeconds": 8,
                    "abortScaleDownDelaySeconds": 3,
                    **blue_green,
                }
            },
        },
    }


def apply(cluster: Cluster, *docs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


@pytest.fixture
def recorder(cluster: Cluster) -> Iterator[Recorder]:
    rec = Recorder(cluster.kubeconfig, cluster.namespace)
    rec.watch_services()
    rec.watch_deployments()
    yield rec
    rec.stop()


def healthy_v1(cluster: Cluster, **blue_green: Any) -> int:
    """v1 Healthy behind both Services; returns the resourceVersion the test starts from."""
    apply(cluster, *services(), rollout(**blue_green))
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=60)
    wait_for("active on slot a", lambda: cluster.selector("web-active").get(SLOT) == "a")
    wait_for("preview on slot a", lambda: cluster.selector("web-preview").get(SLOT) == "a")
    assert cluster.selector("web-active")["app"] == "web", "the user's selector is kept"
    assert cluster.get("service", "web") is None, "no root Service: the active one is yours"
    body = cluster.get("service", "web-active")
    assert body is not None
    return int(body["metadata"]["resourceVersion"])


def ready_of(body: dict[str, Any]) -> int:
    """Ready pods of the Deployment's current template (old pods of a rolling update are
    assumed Ready and subtracted; nothing counts before the controller saw the template)."""
    meta, status = body["metadata"], body.get("status") or {}
    if int(status.get("observedGeneration", 0) or 0) < int(meta.get("generation", 0)):
        return 0
    updated = int(status.get("updatedReplicas", 0) or 0)
    old = max(0, int(status.get("replicas", 0) or 0) - updated)
    return max(0, min(int(status.get("readyReplicas", 0) or 0) - old, updated))


def selector_writes(rec: Recorder, service: str, after: int) -> list[Seen]:
    return [s for s in rec.history("Service", service) if s.rv > after and s.type == "MODIFIED"]


def assert_switch_once_to_ready(
    rec: Recorder, after: int, to: str, revision: str, writes: list[Seen] | None = None
) -> None:
    writes = selector_writes(rec, "web-active", after) if writes is None else writes
    assert len(writes) == 1, [(s.rv, s.body["spec"].get("selector")) for s in writes]
    switch = writes[0]
    assert switch.body["spec"]["selector"] == {"app": "web", SLOT: to}
    # The Deployment of that slot, as the API server had it just before the switch.
    before = [s for s in rec.history("Deployment", f"web-{to}") if s.rv < switch.rv]
    assert before, "no Deployment seen before the switch"
    deployment = before[-1].body
    assert deployment["metadata"]["annotations"]["sluice.dev/revision"] == revision
    assert deployment["spec"]["replicas"] == REPLICAS
    assert ready_of(deployment) >= REPLICAS, f"switched to {to} with {ready_of(deployment)} ready"


def test_manual_promote_switches_once_to_a_ready_version(
    cluster: Cluster, operator: Operator, recorder: Recorder
) -> None:
    start = healthy_v1(cluster, autoPromotionEnabled=False)
    cluster.set_image("nginx:1.28")
    wait_for(
        "paused for promotion",
        lambda: cluster.condition("Paused").get("reason") == "PausedForPromotion",
        timeout=60,
    )
    st = cluster.status()
    assert st["phase"] == "Paused" and st["stableSlot"] == "a"
    assert cluster.replicas("web-b") == (REPLICAS, REPLICAS), "the preview runs at full size"
    assert cluster.replicas("web-a") == (REPLICAS, REPLICAS)
    assert cluster.selector("web-preview")[SLOT] == "b"
    assert cluster.selector("web-active")[SLOT] == "a"
    time.sleep(3)
    assert cluster.status()["phase"] == "Paused", "without autoPromotion it waits for a human"
    assert not selector_writes(recorder, "web-active", start)

    new = cluster.status()["canaryRevision"]
    cluster.action("promote")
    wait_for("promoted", lambda: cluster.status().get("stableSlot") == "b", timeout=30)
    wait_for("Healthy", lambda: cluster.status().get("phase") == "Healthy")
    assert cluster.selector("web-active")[SLOT] == "b"
    wait_for("preview follows", lambda: cluster.selector("web-preview").get(SLOT) == "b")
    assert cluster.replicas("web-a")[0] == REPLICAS, "the previous version stays warm"
    wait_for("previous scaled down", lambda: cluster.replicas("web-a")[0] == 0, timeout=20)
    wait_for("history has the switch", lambda: selector_writes(recorder, "web-active", start))
    assert_switch_once_to_ready(recorder, start, "b", new)
    reasons = cluster.reasons()
    for reason in ("RolloutStarted", "Promoted", "Completed", "ScaledDown"):
        assert reason in reasons, reasons


def test_auto_promote_scales_the_preview_up_before_the_switch(
    cluster: Cluster, operator: Operator, recorder: Recorder
) -> None:
    start = healthy_v1(cluster, previewReplicaCount=1, autoPromotionSeconds=3)
    cluster.set_image("nginx:1.28")
    wait_for("preview at 1 pod", lambda: cluster.replicas("web-b") == (1, 1), timeout=60)
    assert cluster.status()["stableSlot"] == "a"
    assert cluster.selector("web-active")[SLOT] == "a"
    new = cluster.status()["canaryRevision"]
    wait_for("promoted", lambda: cluster.status().get("stableSlot") == "b", timeout=60)
    assert cluster.replicas("web-b") == (REPLICAS, REPLICAS)
    wait_for("history has the switch", lambda: selector_writes(recorder, "web-active", start))
    assert_switch_once_to_ready(recorder, start, "b", new)
    # autoPromotionSeconds: the preview (at full size) waited before the switch.
    switch = selector_writes(recorder, "web-active", start)[0]
    full = [
        s
        for s in recorder.history("Deployment", "web-b")
        if s.body["spec"].get("replicas") == REPLICAS
    ]
    assert full and full[0].rv < switch.rv, "scaled to replicas before the switch"
    one = [s for s in recorder.history("Deployment", "web-b") if ready_of(s.body) >= 1]
    assert one and switch.at - one[0].at >= 2.5, "autoPromotionSeconds was cut short"


def test_abort_never_moves_the_active_service(
    cluster: Cluster, operator: Operator, recorder: Recorder
) -> None:
    start = healthy_v1(cluster, autoPromotionEnabled=False)
    cluster.set_image("nginx:1.28")
    wait_for(
        "paused for promotion",
        lambda: cluster.condition("Paused").get("reason") == "PausedForPromotion",
        timeout=60,
    )
    asked = time.monotonic()  # the abort comes after this: its delay counts from later
    cluster.action("abort")
    wait_for("Degraded", lambda: cluster.status().get("phase") == "Degraded")
    st = cluster.status()
    assert st["abort"]["reason"] == "UserAbort" and st["stableSlot"] == "a"
    wait_for("preview back on stable", lambda: cluster.selector("web-preview").get(SLOT) == "a")
    assert cluster.selector("web-active")[SLOT] == "a"
    wait_for("aborted version scaled down", lambda: cluster.replicas("web-b")[0] == 0, timeout=20)
    assert time.monotonic() - asked >= 2.9, "scaled down before abortScaleDownDelaySeconds"
    assert not selector_writes(recorder, "web-active", start), "the active Service was written"
    assert cluster.replicas("web-a") == (REPLICAS, REPLICAS)


def test_missing_active_service_is_named_and_nothing_is_made(
    cluster: Cluster, operator: Operator
) -> None:
    body = rollout()
    del body["spec"]["strategy"]["blueGreen"]["previewService"]
    apply(cluster, body)
    wait_for(
        "the problem named",
        lambda: "Service web-active not found" in cluster.status().get("message", ""),
        timeout=60,
    )
    assert cluster.get("service", "web-active") is None, "Sluice never makes the user's Service"
    assert "TrafficRouterProblem" in cluster.reasons()
    apply(cluster, services()[0])
    wait_for("switched once it exists", lambda: cluster.selector("web-active").get(SLOT) == "a")
    wait_for("problem gone", lambda: "not found" not in cluster.status().get("message", ""))


def test_a_service_named_by_two_rollouts_is_never_taken(
    cluster: Cluster, operator: Operator
) -> None:
    healthy_v1(cluster)
    apply(cluster, rollout("other"))
    wait_for(
        "the second Rollout holds",
        lambda: "already managed by Rollout web" in cluster.status("other").get("message", ""),
        timeout=60,
    )
    time.sleep(2)
    assert cluster.selector("web-active") == {"app": "web", SLOT: "a"}
    cluster.set_image("nginx:1.28", name="other")
    time.sleep(3)
    assert cluster.selector("web-active") == {"app": "web", SLOT: "a"}


def test_deletion_leaves_both_services_on_the_stable(cluster: Cluster, operator: Operator) -> None:
    healthy_v1(cluster, autoPromotionEnabled=False)
    finalizers = cluster.rollout()["metadata"].get("finalizers") or []
    assert "sluice.dev/traffic-release" in finalizers
    cluster.set_image("nginx:1.28")
    wait_for("preview on the new slot", lambda: cluster.selector("web-preview").get(SLOT) == "b")
    cluster.kubectl("delete", "rollout", "web", "--wait=true", "--timeout=30s")
    for name in ("web-active", "web-preview"):
        body = cluster.get("service", name)
        assert body is not None, f"{name} was deleted with the Rollout"
        assert body["spec"]["selector"] == {"app": "web", SLOT: "a"}, json.dumps(body["spec"])


@pytest.fixture
def empty_prometheus(tmp_path: Any) -> Iterator[PrometheusServer]:
    server = PrometheusServer(workdir=tmp_path / "prometheus")
    server.start()
    yield server
    server.stop()


def failing_bake(address: str) -> dict[str, Any]:
    """A post-promotion analysis that fails at its first measurement, 10 s after the switch."""
    return {
        "metrics": [
            {
                "name": "always-bad",
                "provider": {"prometheus": {"address": address, "query": "vector(0.5)"}},
                "initialDelay": "10s",
                "interval": "1s",
                "count": 30,
                "failureCondition": "result > 0.1",
                "failureLimit": 0,
            }
        ]
    }


def test_a_failed_post_promotion_analysis_switches_back_at_once(
    cluster: Cluster, operator: Operator, recorder: Recorder, empty_prometheus: PrometheusServer
) -> None:
    bake = failing_bake(empty_prometheus.url)
    start = healthy_v1(cluster, postPromotionAnalysis=bake)
    old = cluster.status()["stableRevision"]
    cluster.set_image("nginx:1.28")
    wait_for(
        "baking",
        lambda: cluster.condition("Progressing").get("reason") == "PostPromotionAnalysis",
        timeout=60,
    )
    new = cluster.status()["stableRevision"]
    assert cluster.selector("web-active")[SLOT] == "b"
    assert cluster.replicas("web-a") == (REPLICAS, REPLICAS), "the previous version stays warm"
    wait_for("Degraded", lambda: cluster.status().get("phase") == "Degraded", timeout=30)
    st = cluster.status()
    assert st["abort"]["reason"] == "AnalysisFailed" and st["stableRevision"] == old
    assert "reverted to" in st["abort"]["message"]
    assert cluster.selector("web-active")[SLOT] == "a"
    wait_for(
        "history has both switches",
        lambda: len(selector_writes(recorder, "web-active", start)) == 2,
    )
    there, back = selector_writes(recorder, "web-active", start)
    assert (
        there.body["spec"]["selector"][SLOT] == "b" and back.body["spec"]["selector"][SLOT] == "a"
    )
    assert_switch_once_to_ready(recorder, start, "b", new, writes=[there])
    assert_switch_once_to_ready(recorder, there.rv, "a", old)


def istio_objects() -> list[dict[str, Any]]:
    """A VirtualService sending everything to the stable subset, and its DestinationRule."""
    subsets = [{"name": n, "labels": {"app": "web"}} for n in ("stable", "canary")]
    return [
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": "web"},
            "spec": {"host": "web-active", "subsets": subsets},
        },
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "web"},
            "spec": {
                "hosts": ["web.example.com"],
                "http": [
                    {
                        "name": "primary",
                        "route": [
                            {
                                "destination": {"host": "web-active", "subset": "stable"},
                                "weight": 100,
                            },
                            {
                                "destination": {"host": "web-active", "subset": "canary"},
                                "weight": 0,
                            },
                        ],
                    }
                ],
            },
        },
    ]


def subset_slots(cluster: Cluster) -> dict[str, str | None]:
    body = cluster.get("destinationrules.v1beta1.networking.istio.io", "web")
    assert body is not None
    return {s["name"]: s["labels"].get(SLOT) for s in body["spec"]["subsets"]}


def test_with_a_traffic_router_the_switch_is_made_in_the_router_too(
    router_crds: str, cluster: Cluster, operator: Operator
) -> None:
    routing = {
        "istio": {
            "virtualService": {"name": "web", "routes": ["primary"]},
            "destinationRule": {
                "name": "web",
                "stableSubsetName": "stable",
                "canarySubsetName": "canary",
            },
        }
    }
    apply(cluster, *istio_objects())
    healthy_v1(cluster, autoPromotionEnabled=False, trafficRouting=routing)
    wait_for("stable subset on a", lambda: subset_slots(cluster) == {"stable": "a", "canary": "b"})
    cluster.set_image("nginx:1.28")
    wait_for(
        "paused for promotion",
        lambda: cluster.condition("Paused").get("reason") == "PausedForPromotion",
        timeout=60,
    )
    assert subset_slots(cluster)["stable"] == "a", "the preview takes no routed traffic"
    cluster.action("promote")
    wait_for("Healthy on b", lambda: cluster.status().get("stableSlot") == "b", timeout=30)
    wait_for("stable subset on b", lambda: subset_slots(cluster) == {"stable": "b", "canary": "a"})
    assert cluster.selector("web-active")[SLOT] == "b"
    vs = cluster.get("virtualservices.v1beta1.networking.istio.io", "web")
    assert vs is not None
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [100, 0]
    wait_for("previous scaled down", lambda: cluster.replicas("web-a")[0] == 0, timeout=30)


def test_header_routes_are_refused_for_blue_green(cluster: Cluster, operator: Operator) -> None:
    routing = {"managedRoutes": [{"name": "beta"}], "smi": {"trafficSplitName": "web"}}
    apply(cluster, *services(), rollout(trafficRouting=routing))
    wait_for(
        "InvalidSpec",
        lambda: cluster.condition("InvalidSpec").get("status") == "True",
        timeout=30,
    )
    message = cluster.condition("InvalidSpec")["message"]
    assert "spec.strategy.blueGreen.trafficRouting.managedRoutes" in message
    assert cluster.get("deployment", "web-a") is None
