"""A canary walked through its steps on a real API server, from `kubectl apply` of examples/.

examples/rollout-basic.yaml: replicas 10; setWeight 20 -> pause 5s -> setWeight 50 ->
pause (until promoted); scaleDownDelaySeconds 5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for

pytestmark = pytest.mark.e2e


def healthy_v1(cluster: Cluster) -> None:
    cluster.apply_example("rollout-basic.yaml")
    wait_for("first revision Healthy", lambda: cluster.status().get("phase") == "Healthy")
    assert cluster.replicas("web-a") == (10, 10)
    assert cluster.replicas("web-b") == (-1, -1)  # the first template has no canary phase
    assert cluster.selector("web")["sluice.dev/slot"] == "a"


def at_step(cluster: Cluster, index: int, phase: str, weight: int, timeout: float = 30) -> None:
    def reached() -> bool:
        st = cluster.status()
        return (
            st.get("currentStepIndex") == index
            and st.get("phase") == phase
            and st.get("canaryWeight") == weight
        )

    wait_for(f"step {index} {phase} at weight {weight}", reached, timeout=timeout)


def test_happy_path_to_completed(cluster: Cluster, operator: Operator) -> None:
    healthy_v1(cluster)
    stable = cluster.status()["stableRevision"]

    cluster.set_image("nginx:1.28")
    # step 0 setWeight 20: 2 canary pods Ready, stable down to 8, root Service on both slots
    at_step(cluster, 1, "Paused", 20)
    reached_pause = time.monotonic()
    # read at once: the 5 s pause does not wait for a slow kubectl
    assert cluster.condition("Paused")["status"] == "True"
    assert cluster.replicas("web-b") == (2, 2)
    assert cluster.replicas("web-a")[0] == 8
    assert "sluice.dev/slot" not in cluster.selector("web")
    assert cluster.selector("web-canary")["sluice.dev/slot"] == "b"
    assert cluster.selector("web-stable")["sluice.dev/slot"] == "a"
    st = cluster.status()
    assert st["canaryRevision"] != stable and st["stableRevision"] == stable

    # pause 5s, then setWeight 50, then the manual pause
    at_step(cluster, 3, "Paused", 50, timeout=20)
    assert time.monotonic() - reached_pause >= 4.5, "the 5 s pause was cut short"
    assert cluster.replicas("web-b") == (5, 5)
    assert cluster.replicas("web-a")[0] == 5
    time.sleep(3)
    assert cluster.status()["currentStepIndex"] == 3, "a pause without duration must hold"

    cluster.action("promote")
    wait_for("Completed", lambda: cluster.condition("Completed").get("status") == "True")
    st = cluster.status()
    assert st["phase"] == "Healthy" and st["stableSlot"] == "b"
    assert st["stableRevision"] != stable and not st.get("canaryRevision")
    assert cluster.replicas("web-b") == (10, 10)
    assert cluster.selector("web")["sluice.dev/slot"] == "b"
    assert "sluice.dev/action" not in (cluster.rollout()["metadata"].get("annotations") or {})
    # the previous version stays warm for scaleDownDelaySeconds as it ran (5 pods beside
    # the 50 % canary: never scaled back up), then goes to zero
    assert cluster.replicas("web-a")[0] == 5
    wait_for("previous scaled to zero", lambda: cluster.replicas("web-a")[0] == 0, timeout=15)

    out = cluster.kubectl("wait", "--for=condition=Completed", "rollout/web", "--timeout=10s")
    assert "condition met" in out
    reasons = cluster.reasons()
    for reason in ("RolloutStarted", "Promoted", "Completed", "ScaledDown"):
        assert reason in reasons, reasons
    assert reasons.count("StepReached") == 3, reasons
    assert 'sluice_rollout_phase{namespace="' in operator.metrics()


def test_pause_and_resume(cluster: Cluster, operator: Operator) -> None:
    healthy_v1(cluster)
    cluster.action("pause")
    wait_for("annotation consumed", lambda: cluster.status().get("userPaused") is True)
    cluster.set_image("nginx:1.28")
    wait_for("Paused by user", lambda: cluster.condition("Paused").get("reason") == "PausedByUser")
    # a paused rollout still reaches its current step's weight but goes no further
    time.sleep(7)
    st = cluster.status()
    assert st["currentStepIndex"] == 0 and st["phase"] == "Paused"

    cluster.action("resume")
    at_step(cluster, 1, "Paused", 20)
    assert cluster.condition("Paused")["reason"] == "PauseStep"

    # spec.paused pauses too, and only a spec change lifts it
    cluster.kubectl("patch", "rollout", "web", "--type", "merge", "-p", '{"spec":{"paused":true}}')
    wait_for("paused by spec", lambda: "spec.paused" in cluster.status().get("message", ""))
    time.sleep(6)
    assert cluster.status()["currentStepIndex"] == 1
    cluster.kubectl("patch", "rollout", "web", "--type", "merge", "-p", '{"spec":{"paused":false}}')
    at_step(cluster, 3, "Paused", 50)
    assert "Resumed" in cluster.reasons() and "Paused" in cluster.reasons()


def test_abort_and_retry(cluster: Cluster, operator: Operator) -> None:
    healthy_v1(cluster)
    cluster.set_image("nginx:1.28")
    at_step(cluster, 3, "Paused", 50)

    cluster.action("abort")
    wait_for("Degraded", lambda: cluster.status().get("phase") == "Degraded")
    aborted = time.monotonic()
    st = cluster.status()
    assert st["abort"]["reason"] == "UserAbort"
    assert st["canaryWeight"] == 0
    assert cluster.condition("Degraded")["reason"] == "UserAbort"
    # traffic to stable at once; stable back to full scale; canary kept for the delay
    assert cluster.selector("web")["sluice.dev/slot"] == "a"
    wait_for("stable at full scale", lambda: cluster.replicas("web-a") == (10, 10))
    assert cluster.replicas("web-b")[0] == 5
    wait_for("canary scaled down", lambda: cluster.replicas("web-b")[0] == 0, timeout=15)
    assert time.monotonic() - aborted >= 3.5, "canary scaled down before scaleDownDelaySeconds"
    warnings = [e for e in cluster.events() if e["reason"] == "Aborted"]
    assert warnings and warnings[0]["type"] == "Warning" and "UserAbort" in warnings[0]["message"]

    cluster.action("retry")
    at_step(cluster, 1, "Paused", 20)
    assert not cluster.status().get("abort")
    assert cluster.replicas("web-b") == (2, 2)


def test_progress_deadline_aborts_a_canary_that_never_gets_ready(
    cluster: Cluster, operator: Operator
) -> None:
    healthy_v1(cluster)
    broken = [
        {"op": "add", "path": "/spec/progressDeadlineSeconds", "value": 5},
        {
            "op": "add",
            "path": "/spec/template/metadata/annotations",
            "value": {"local-k8s/ready": "false"},
        },
    ]
    cluster.kubectl("patch", "rollout", "web", "--type", "json", "-p", json.dumps(broken))
    wait_for("Degraded", lambda: cluster.status().get("phase") == "Degraded", timeout=30)
    st = cluster.status()
    assert st["abort"]["reason"] == "ProgressDeadlineExceeded"
    assert "0/2 pods ready" in st["abort"]["message"]
    assert st["canaryWeight"] == 0
    assert cluster.selector("web")["sluice.dev/slot"] == "a"
    assert cluster.replicas("web-a") == (10, 10)


def test_template_set_back_mid_rollout_reverts_at_once(
    cluster: Cluster, operator: Operator
) -> None:
    healthy_v1(cluster)
    cluster.set_image("nginx:1.28")
    at_step(cluster, 3, "Paused", 50)
    cluster.set_image("nginx:1.27")
    wait_for("Healthy again", lambda: cluster.status().get("phase") == "Healthy")
    st = cluster.status()
    assert not st.get("canaryRevision") and st.get("currentStepIndex") is None
    assert st["stableSlot"] == "a"
    assert cluster.selector("web")["sluice.dev/slot"] == "a"
    wait_for(
        "stable full, canary gone",
        lambda: cluster.replicas("web-a") == (10, 10) and cluster.replicas("web-b")[0] == 0,
    )
    assert "Reverted" in cluster.reasons()
    assert cluster.reasons().count("StepReached") == 3  # no steps for a revert


def test_operator_killed_mid_rollout_resumes_at_the_same_step(
    cluster: Cluster, operator: Operator
) -> None:
    healthy_v1(cluster)
    cluster.set_image("nginx:1.28")
    at_step(cluster, 1, "Paused", 20)
    paused_at = time.monotonic()
    operator.kill()
    time.sleep(2)
    assert cluster.status()["currentStepIndex"] == 1
    operator.start()
    # the 5 s pause runs from when it began, not from the restart
    at_step(cluster, 3, "Paused", 50, timeout=20)
    assert time.monotonic() - paused_at >= 4.5
    operator.kill()  # and once more right after a promote was requested
    cluster.action("promote")
    operator.start()
    wait_for("Completed", lambda: cluster.condition("Completed").get("status") == "True")
    reasons = cluster.reasons()
    assert reasons.count("StepReached") == 3, reasons  # none repeated, none skipped
    assert reasons.count("Promoted") == 1 and reasons.count("Completed") == 1, reasons


def test_invalid_spec_is_reported_and_touches_nothing(cluster: Cluster, operator: Operator) -> None:
    healthy_v1(cluster)
    before = cluster.get("deployment", "web-a")
    assert before is not None
    bad = {
        "spec": {
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"setWeight": 10}]}},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.29"}]}},
        }
    }
    cluster.kubectl("patch", "rollout", "web", "--type", "merge", "-p", json.dumps(bad))
    wait_for("InvalidSpec", lambda: cluster.condition("InvalidSpec").get("status") == "True")
    message = cluster.condition("InvalidSpec")["message"]
    assert "spec.strategy.canary.steps[1].setWeight" in message
    assert "InvalidSpec" in cluster.reasons()
    time.sleep(2)
    after = cluster.get("deployment", "web-a")
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert cluster.replicas("web-b") == (-1, -1)

    # an unknown action is refused the same way, by name
    cluster.kubectl(
        "patch",
        "rollout",
        "web",
        "--type",
        "merge",
        "-p",
        '{"spec":{"strategy":{"canary":{"steps":[{"setWeight":50}]}}}}',
    )
    cluster.action("yolo")
    wait_for(
        "unknown action reported",
        lambda: "yolo" in cluster.condition("InvalidSpec").get("message", ""),
    )
    assert "sluice.dev/action" in cluster.condition("InvalidSpec")["message"]

    # what the schema can say, the API server refuses outright
    out = cluster.kubectl(
        "patch",
        "rollout",
        "web",
        "--type",
        "merge",
        "-p",
        '{"spec":{"strategy":{"canary":{"steps":[{"setWeight":120}]}}}}',
        check=False,
    )
    assert "less than or equal to 100" in out


def test_deleting_the_rollout_garbage_collects_its_children(
    cluster: Cluster, operator: Operator
) -> None:
    healthy_v1(cluster)
    cluster.set_image("nginx:1.28")
    at_step(cluster, 1, "Paused", 20)
    cluster.kubectl("delete", "rollout", "web")
    wait_for(
        "children gone",
        lambda: (
            cluster.get("deployment", "web-a") is None
            and cluster.get("deployment", "web-b") is None
            and cluster.get("service", "web-canary") is None
            and cluster.get("service", "web") is None
        ),
        timeout=60,
    )


def test_scale_subresource_drives_replicas(cluster: Cluster, operator: Operator) -> None:
    healthy_v1(cluster)
    cluster.kubectl("scale", "rollout", "web", "--replicas=4")
    wait_for("scaled to 4", lambda: cluster.replicas("web-a") == (4, 4))
    wait_for("status follows", lambda: cluster.status().get("readyReplicas") == 4)
    assert cluster.status()["selector"] == "app=web"


def test_kubectl_plugin_steers_a_rollout(cluster: Cluster, operator: Operator) -> None:
    healthy_v1(cluster)
    cluster.set_image("nginx:1.28")
    at_step(cluster, 1, "Paused", 20)
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "kubectl-sluice"),
            "promote-full",
            "web",
            "-n",
            cluster.namespace,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "promote-full requested" in out
    wait_for("Completed", lambda: cluster.condition("Completed").get("status") == "True")


def test_template_the_api_server_refuses_is_invalid_spec(
    cluster: Cluster, operator: Operator
) -> None:
    healthy_v1(cluster)
    # A pull policy no kubelet knows: Sluice's own checks let it through (a container
    # without an image it refuses itself); only the Deployment API says no.
    path = "/spec/template/spec/containers/0/imagePullPolicy"
    bad = [{"op": "add", "path": path, "value": "Sometimes"}]
    cluster.kubectl("patch", "rollout", "web", "--type", "json", "-p", json.dumps(bad))
    wait_for("InvalidSpec", lambda: cluster.condition("InvalidSpec").get("status") == "True")
    message = cluster.condition("InvalidSpec")["message"]
    assert "imagePullPolicy" in message and "Unsupported value" in message, message
    assert cluster.replicas("web-a") == (10, 10)
    assert cluster.selector("web")["sluice.dev/slot"] == "a"
    fixed = [
        {"op": "remove", "path": path},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.28"},
    ]
    cluster.kubectl("patch", "rollout", "web", "--type", "json", "-p", json.dumps(fixed))
    at_step(cluster, 1, "Paused", 20)
