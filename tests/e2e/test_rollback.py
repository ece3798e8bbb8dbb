"""Going back on a real API server: `kubectl sluice undo` to a warm revision, and the
gradual rollback (`kubectl sluice rollback-gradually`), walked to the end or cut short
by a failed analysis (here: a firing alert, which fails the canary like a metric)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.test_plugin import plugin

pytestmark = pytest.mark.e2e
TOKEN = "walk-back-token"


def apply(cluster: Cluster, replicas: int, canary: dict[str, Any], image: str) -> None:
    body = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
            "strategy": {"canary": canary},
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))


def test_undo_to_a_warm_revision_switches_back_at_once(
    cluster: Cluster, operator: Operator
) -> None:
    canary = {"scaleDownDelaySeconds": 120, "steps": [{"pause": {"duration": 1}}]}
    apply(cluster, 2, canary, "nginx:1.27")
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy")
    v1 = cluster.status()["stableRevision"]
    cluster.set_image("nginx:1.28")
    wait_for("v2 promoted", lambda: cluster.status().get("stableSlot") == "b", timeout=60)
    st = cluster.status()
    assert st["previous"]["revision"] == v1 and cluster.replicas("web-a") == (2, 2)

    out = plugin(cluster, "undo", "web", "--to-revision", v1)
    assert out.returncode == 0, out.stderr
    asked = time.monotonic()
    wait_for("back on v1", lambda: cluster.status().get("stableSlot") == "a", timeout=20)
    assert time.monotonic() - asked < 10, "a warm revision is switched to at once"
    st = cluster.status()
    assert st["stableRevision"] == v1 and not st.get("canaryRevision")
    assert st["phase"] == "Healthy" and cluster.selector("web")["sluice.dev/slot"] == "a"
    assert "RolledBack" in cluster.reasons() and "RolloutStarted" not in cluster.reasons()[-3:]
    assert cluster.rollout()["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


def walking(cluster: Cluster, seen: list[int], stop: threading.Event) -> threading.Thread:
    def watch() -> None:
        while not stop.is_set():
            weight = cluster.status().get("canaryWeight", 0)
            if not seen or seen[-1] != weight:
                seen.append(weight)
            time.sleep(0.3)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def canary_at_75(cluster: Cluster) -> None:
    walk = {
        "steps": [
            {"setWeight": 50},
            {"pause": {"duration": "4s"}},
            {"setWeight": 25},
            {"pause": {"duration": "4s"}},
        ]
    }
    canary = {"steps": [{"setWeight": 75}, {"pause": {}}], "gradualRollback": walk}
    apply(cluster, 4, canary, "nginx:1.27")
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy")
    cluster.set_image("nginx:1.28")
    wait_for("canary at 75", lambda: cluster.status().get("currentStepIndex") == 1, timeout=60)
    assert cluster.status()["canaryWeight"] == 75


def test_a_gradual_rollback_walks_down_with_pauses_to_zero(
    cluster: Cluster, operator: Operator
) -> None:
    canary_at_75(cluster)
    seen: list[int] = []
    stop = threading.Event()
    thread = walking(cluster, seen, stop)
    try:
        started = time.monotonic()  # before the request: the walk may begin while it exits
        out = plugin(cluster, "rollback-gradually", "web")
        assert out.returncode == 0, out.stderr
        wait_for(
            "walked to 0",
            lambda: (cluster.status().get("abort") or {}).get("reason") == "GradualRollback",
            timeout=60,
        )
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
    # The sampler may stop between the last step and its next poll: the weight the walk
    # ended on is read once more, so the end of the walk is always in the record.
    last = cluster.status().get("canaryWeight", 0)
    if seen[-1] != last:
        seen.append(last)
    assert [w for w in seen if w in (75, 50, 25, 0)] == [75, 50, 25, 0], seen
    assert took >= 8, "the two 4 s pauses were held"
    st = cluster.status()
    assert st["phase"] == "Degraded" and not st.get("gradualRollback")
    reasons = cluster.reasons()
    assert "RollbackStarted" in reasons and reasons.count("RollbackStep") >= 3
    wait_for("stable back at 4", lambda: cluster.replicas("web-a") == (4, 4))


@pytest.fixture
def alerting_operator(cluster: Cluster, tmp_path: Path) -> Any:
    cluster.kubectl("create", "secret", "generic", "sluice-alerts", f"--from-literal=token={TOKEN}")
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "operator.log")
    op.args = ["--alert-token-secret", f"{cluster.namespace}/sluice-alerts"]
    op.start()
    yield op
    op.stop()


def test_a_failure_during_the_walk_goes_to_zero_at_once(
    cluster: Cluster, alerting_operator: Operator
) -> None:
    canary_at_75(cluster)
    assert plugin(cluster, "rollback-gradually", "web").returncode == 0
    wait_for("walked to 50", lambda: cluster.status().get("canaryWeight") == 50, timeout=30)
    assert cluster.status().get("gradualRollback")
    firing = {
        "version": "4",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "CanaryErrors",
                    "sluice_action": "abort",
                    "namespace": cluster.namespace,
                    "rollout": "web",
                },
                "annotations": {"summary": "errors while walking back"},
            }
        ],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{alerting_operator.port}/v1/alerts",
        data=json.dumps(firing).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    sent = time.monotonic()
    wait_for("aborted", lambda: (cluster.status().get("abort") or {}).get("reason") == "AlertFired")
    assert time.monotonic() - sent < 4, "at once, not after the walk's 4 s pause"
    st = cluster.status()
    assert st["canaryWeight"] == 0 and not st.get("gradualRollback")
    assert cluster.selector("web")["sluice.dev/slot"] == "a", "all traffic back on the stable"
