"""Capture Rollouts from a real operator on a real API server as Argo CD test fixtures.

    SLUICE_E2E_KUBECONFIG=... .venv/bin/python -m tests.argocd.capture

Writes tests/argocd/fixtures/<case>.json: the object as `kubectl get -o json` returns
it (managedFields dropped), at each state the health check and actions must handle.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Cluster, Operator

OUT = Path(__file__).parent / "fixtures"


def until(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def save(cluster: Cluster, case: str, name: str = "web") -> None:
    body = cluster.rollout(name)
    body["metadata"].pop("managedFields", None)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{case}.json").write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    print(case, (body.get("status") or {}).get("phase"), (body.get("status") or {}).get("message"))


def main() -> None:
    kubeconfig = os.environ["SLUICE_E2E_KUBECONFIG"]
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    subprocess.run(["kubectl", "apply", "-f", "crds/"], env=env, check=True, capture_output=True)
    ns = f"capture-{uuid.uuid4().hex[:6]}"
    subprocess.run(["kubectl", "create", "ns", ns], env=env, check=True, capture_output=True)
    c = Cluster(kubeconfig, ns)
    until("token", lambda: "default-token" in c.kubectl("get", "secrets", "-o", "name"))
    op = Operator(kubeconfig, ns, Path(tempfile.mkdtemp()) / "op.log")
    try:
        op.start()
        c.apply_example("rollout-basic.yaml")
        until("Healthy", lambda: c.status().get("phase") == "Healthy")
        save(c, "healthy")
        c.set_image("nginx:1.28")
        until("Progressing", lambda: c.status().get("phase") == "Progressing")
        save(c, "progressing")
        until("step 1 paused", lambda: c.status().get("currentStepIndex") == 1)
        save(c, "paused-step")
        until("manual pause", lambda: c.status().get("currentStepIndex") == 3)
        save(c, "paused-manual")
        c.action("abort")
        until("Degraded", lambda: c.status().get("phase") == "Degraded")
        save(c, "aborted")
        c.action("retry")
        until("retried", lambda: c.status().get("abort") is None)
        until("running again", lambda: c.status().get("phase") == "Progressing")
        c.action("pause")
        until("user paused", lambda: c.status().get("userPaused") is True)
        save(c, "user-paused")
        c.action("resume")
        until("resumed", lambda: not c.status().get("userPaused"))
        c.action("promote-full")
        until("promoted", lambda: not c.status().get("canaryRevision"))
        until("Healthy", lambda: c.status().get("phase") == "Healthy")
        save(c, "promoted")
        bad = [{"op": "replace", "path": "/spec/selector/matchLabels/app", "value": "other"}]
        c.kubectl("patch", "rollout", "web", "--type", "json", "-p", json.dumps(bad))
        until(
            "InvalidSpec",
            lambda: any(x["type"] == "InvalidSpec" and x["status"] == "True"
                        for x in c.status().get("conditions", [])),
        )  # fmt: skip
        save(c, "invalid-spec")
        op.stop()
        c.set_image("nginx:1.29")  # nobody observes this generation
        save(c, "lagging-generation")
        c.kubectl("apply", "-f", "-", stdin=(Path("examples/rollout-basic.yaml").read_text()
                                             .replace("name: web", "name: fresh")))  # fmt: skip
        save(c, "no-status", "fresh")
        c.kubectl("annotate", "rollout", "web", "sluice.dev/action=promote")
        save(c, "action-pending")
    finally:
        op.stop()
        delete = ["kubectl", "delete", "ns", ns, "--wait=false"]
        subprocess.run(delete, env=env, capture_output=True)


if __name__ == "__main__":
    main()
