"""Adopting a Deployment the user already runs (spec.workloadRef), on a real API server.

The user's Deployment keeps serving until the Rollout's stable has as many Ready pods;
a change of its template starts a canary; deleting the Rollout gives it its pods back,
Ready, before the Rollout's own go. Capacity is read from the watch history.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.history import Recorder, Seen

pytestmark = pytest.mark.e2e
REPLICAS = 3


def users_deployment(image: str = "nginx:1.27") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


def rollout(scale_down: str) -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "shop"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "workloadRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "web",
                "scaleDown": scale_down,
            },
            "strategy": {"canary": {"steps": [{"setWeight": 34}, {"pause": {}}]}},
        },
    }


def apply(cluster: Cluster, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))


@pytest.fixture
def recorder(cluster: Cluster) -> Iterator[Recorder]:
    rec = Recorder(cluster.kubeconfig, cluster.namespace)
    rec.watch_deployments()
    yield rec
    rec.stop()


def ready_over_time(history: list[Seen], names: set[str]) -> list[tuple[int, dict[str, int]]]:
    """After each Deployment event: Ready pods of each named Deployment (its current revision
    not checked: the user's Deployment and the stable slot run the same template)."""
    ready: dict[str, int] = {}
    out = []
    for seen in history:
        if seen.name not in names:
            continue
        status = seen.body.get("status") or {}
        ready[seen.name] = 0 if seen.type == "DELETED" else int(status.get("readyReplicas") or 0)
        out.append((seen.rv, dict(ready)))
    return out


def test_a_running_deployment_is_adopted_with_no_dip_canaried_and_given_back(
    cluster: Cluster, operator: Operator, recorder: Recorder
) -> None:
    apply(cluster, users_deployment())
    wait_for("the user's pods Ready", lambda: cluster.replicas("web") == (REPLICAS, REPLICAS))
    apply(cluster, rollout("progressively"))
    wait_for("Healthy", lambda: cluster.status("shop").get("phase") == "Healthy", timeout=60)
    wait_for("the user's Deployment at 0", lambda: cluster.replicas("web")[0] == 0, timeout=30)
    body = cluster.get("deployment", "web")
    assert body is not None
    assert body["metadata"]["labels"]["sluice.dev/workload-of"] == "shop"
    assert body["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    stable = cluster.get("deployment", "shop-a")
    assert stable is not None
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    # No moment below capacity: the user's Ready pods plus the stable's, from the history.
    served = ready_over_time(recorder.history("Deployment"), {"web", "shop-a"})
    started = next(i for i, (_, r) in enumerate(served) if r.get("web") == REPLICAS)
    dips = [(rv, r) for rv, r in served[started:] if sum(r.values()) < REPLICAS]
    assert not dips, dips

    # The user changes their own Deployment (their manifests, their Helm chart): a canary.
    patch = [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.28"}
    ]
    cluster.kubectl("patch", "deployment", "web", "--type", "json", "-p", json.dumps(patch))
    wait_for(
        "a canary paused at 34 %",
        lambda: (
            cluster.status("shop").get("phase") == "Paused"
            and cluster.status("shop").get("canaryWeight") == 34
        ),
        timeout=60,
    )
    canary = cluster.get("deployment", "shop-b")
    assert canary is not None
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert cluster.replicas("web")[0] == 0  # the user's Deployment still gives its pods up
    cluster.action("promote", "shop")
    wait_for(
        "the new version stable",
        lambda: (
            cluster.status("shop").get("phase") == "Healthy"
            and cluster.status("shop").get("stableSlot") == "b"
        ),
        timeout=60,
    )

    # Deleting the Rollout gives the user's Deployment its pods back before Sluice's go.
    cluster.kubectl("delete", "rollout", "shop", "--wait=false")
    wait_for("the Rollout gone", lambda: cluster.get("rollout", "shop") is None, timeout=90)
    users = recorder.history("Deployment", "web")
    given_up = max(s.rv for s in users if s.body["spec"].get("replicas") == 0)
    back = [
        s
        for s in users
        if s.rv > given_up and int((s.body.get("status") or {}).get("readyReplicas") or 0) >= 3
    ]
    assert back, "the user's Deployment never had its pods back"
    sluice_gone = [
        s
        for s in recorder.history("Deployment")
        if s.name.startswith("shop-")
        and (s.type == "DELETED" or s.body["metadata"].get("deletionTimestamp"))
    ]
    assert all(s.rv > back[0].rv for s in sluice_gone), "Sluice's pods went first"
    wait_for(
        "the label removed",
        lambda: (
            "sluice.dev/workload-of"
            not in (
                (cluster.get("deployment", "web") or {}).get("metadata", {}).get("labels") or {}
            )
        ),
    )


def test_a_missing_deployment_is_invalid_spec_then_adopted_once_it_exists(
    cluster: Cluster, operator: Operator
) -> None:
    apply(cluster, rollout("never"))

    def invalid() -> bool:
        return cluster.condition("InvalidSpec", "shop").get("status") == "True"

    wait_for("InvalidSpec", invalid, timeout=30)
    assert "Deployment web not found" in cluster.condition("InvalidSpec", "shop")["message"]
    assert cluster.get("deployment", "shop-a") is None  # nothing made
    apply(cluster, users_deployment())
    # looked at again within the retry interval for refusals whose cause lies outside
    wait_for("Healthy", lambda: cluster.status("shop").get("phase") == "Healthy", timeout=75)
    assert cluster.replicas("web")[0] == REPLICAS  # scaleDown: never
