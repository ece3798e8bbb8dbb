"""Config changes canary too (trackConfig), on a real API server: a ConfigMap change starts
a canary on a copy of the new content, the stable keeps the old copy through an abort, and
a copy no Deployment runs any more is pruned."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.manifests import canary_rollout

pytestmark = pytest.mark.e2e
LABEL = "sluice.dev/track-config"


def config_map(cluster: Cluster, greeting: str, labels: dict[str, str] | None = None) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-env", "labels": labels or {}},
        "data": {"GREETING": greeting},
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))


def rollout(track: bool) -> dict[str, Any]:
    body = canary_rollout({"trackConfig": track, "steps": [{"setWeight": 50}, {"pause": {}}]})
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["envFrom"] = [{"configMapRef": {"name": "web-env"}}]
    return body


def env_source(cluster: Cluster, deployment: str) -> str:
    body = cluster.get("deployment", deployment)
    assert body is not None
    container = body["spec"]["template"]["spec"]["containers"][0]
    return str(container["envFrom"][0]["configMapRef"]["name"])


def greeting(cluster: Cluster, name: str) -> str | None:
    body = cluster.get("configmap", name)
    return None if body is None else body["data"]["GREETING"]


def at_pause(cluster: Cluster) -> bool:
    st = cluster.status()
    return bool(st.get("canaryRevision")) and st.get("currentStepIndex") == 1


def test_a_config_change_canaries_and_an_abort_keeps_the_old_config_on_the_stable(
    cluster: Cluster, operator: Operator
) -> None:
    config_map(cluster, "v1")
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(rollout(track=True)))
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=60)
    first = env_source(cluster, "web-a")
    assert first.startswith("web-env-") and greeting(cluster, first) == "v1"
    copy = cluster.get("configmap", first)
    assert copy is not None and copy["immutable"] is True
    assert copy["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
    user = cluster.get("configmap", "web-env")
    assert user is not None and user["metadata"]["labels"][LABEL] == "auto"

    config_map(cluster, "v2", {LABEL: "auto"})
    wait_for("a canary of the new config", lambda: at_pause(cluster), timeout=60)
    second = env_source(cluster, "web-b")
    assert second != first and greeting(cluster, second) == "v2"
    assert env_source(cluster, "web-a") == first  # the stable still reads v1
    assert "RolloutStarted" in cluster.reasons()

    cluster.action("abort")
    wait_for("aborted", lambda: cluster.status().get("phase") == "Degraded", timeout=30)
    assert env_source(cluster, "web-a") == first and greeting(cluster, first) == "v1"
    wait_for("the stable back at 2", lambda: cluster.replicas("web-a") == (2, 2))

    cluster.action("retry")
    wait_for("at the pause again", lambda: at_pause(cluster), timeout=60)
    cluster.action("promote")
    wait_for(
        "v2 promoted",
        lambda: (
            cluster.status().get("stableSlot") == "b" and cluster.status().get("phase") == "Healthy"
        ),
        timeout=60,
    )
    assert env_source(cluster, "web-b") == second

    # The next change goes to slot a, which ran v1's copy: nothing runs it after that.
    config_map(cluster, "v3", {LABEL: "auto"})
    wait_for("a canary of v3", lambda: at_pause(cluster), timeout=60)
    third = env_source(cluster, "web-a")
    assert greeting(cluster, third) == "v3"
    wait_for("v1's copy pruned", lambda: cluster.get("configmap", first) is None, timeout=30)
    assert greeting(cluster, second) == "v2"  # the stable's stays


def test_a_config_map_labelled_true_is_tracked_without_track_config(
    cluster: Cluster, operator: Operator
) -> None:
    config_map(cluster, "v1", {LABEL: "true"})
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(rollout(track=False)))
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy", timeout=60)
    first = env_source(cluster, "web-a")
    assert greeting(cluster, first) == "v1"
    config_map(cluster, "v2", {LABEL: "true"})
    wait_for("a canary of the new config", lambda: at_pause(cluster), timeout=60)
    assert greeting(cluster, env_source(cluster, "web-b")) == "v2"
