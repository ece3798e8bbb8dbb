"""The Job gate on a real API server: a step runs a Job and its outcome decides.

The fake kubelet ends a pod as its `local-k8s/phase` annotation says (Succeeded or
Failed), so the Job controller of the control plane completes or fails the Job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.manifests import canary_rollout

pytestmark = pytest.mark.e2e


def apply(cluster: Cluster, pod_phase: str) -> None:
    job = {
        "metadata": {"labels": {"team": "qa"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"local-k8s/phase": pod_phase}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "smoke", "image": "curlimages/curl"}],
                },
            },
        },
        "timeout": "2m",
    }
    steps = [{"setWeight": 50}, {"job": job}, {"pause": {}}]
    body = canary_rollout({"scaleDownDelaySeconds": 0, "steps": steps})
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy")
    cluster.set_image("nginx:1.28")


def jobs(cluster: Cluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "jobs", "-l", "sluice.dev/rollout=web", "-o", "json")
    return list(json.loads(out)["items"])


def test_a_job_that_succeeds_moves_on_and_is_made_once_across_a_kill(
    cluster: Cluster, tmp_path: Path
) -> None:
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "one.log")
    op.start()
    try:
        apply(cluster, "Succeeded")
        wait_for("the step's Job", lambda: len(jobs(cluster)) == 1, timeout=30)
        op.kill()
    finally:
        op.stop()
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "two.log")
    op.start()
    try:
        wait_for("past the job step", lambda: cluster.status().get("currentStepIndex") == 2)
        st = cluster.status()
        assert st["phase"] == "Paused" and st["canaryWeight"] == 50
        [job] = jobs(cluster)
        meta = job["metadata"]
        assert meta["ownerReferences"][0]["kind"] == "Rollout"
        assert meta["labels"]["team"] == "qa" and meta["labels"]["sluice.dev/step"] == "1"
        assert meta["labels"]["sluice.dev/revision"] == st["canaryRevision"]
        cluster.action("promote")
        wait_for("Healthy on v2", lambda: cluster.status().get("stableSlot") == "b")
        wait_for("the Job cleaned up", lambda: jobs(cluster) == [], timeout=30)
    finally:
        op.stop()


def test_a_job_that_fails_aborts_and_is_kept_to_be_read(
    cluster: Cluster, operator: Operator
) -> None:
    apply(cluster, "Failed")
    wait_for("aborted", lambda: (cluster.status().get("abort") or {}).get("reason") == "JobFailed")
    st = cluster.status()
    [job] = jobs(cluster)
    name = job["metadata"]["name"]
    assert st["phase"] == "Degraded" and st["canaryWeight"] == 0
    assert f"job {name} failed" in st["message"]
    assert "Aborted" in cluster.reasons()
    wait_for("stable back at 2", lambda: cluster.replicas("web-a") == (2, 2))
    assert [j["metadata"]["name"] for j in jobs(cluster)] == [name]
