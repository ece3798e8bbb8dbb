"""From the instant the demo canary starts failing to the instant its weight is 0 in the cluster.

Two paths, each run --runs times (median reported):
- polling: background analysis, errorRate over a 2 s window, interval 5 s,
  consecutiveFailureLimit 1 (target: <= interval + 1 s);
- alert: an Alertmanager-style webhook post to the operator at the fault instant
  (target: <= 2 s beyond Prometheus' own 1 s scrape; here the post is immediate, so the
  figure is the operator's share of the fast path).

Needs the local control plane (KUBECONFIG) and Debian's prometheus; run from the repo root:
    python benchmarks/detect_to_revert.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kubernetes  # noqa: E402
from tests.e2e.conftest import Cluster, wait_for  # noqa: E402
from tests.e2e.test_analysis import TOKEN, Stage, alert, post_alert  # noqa: E402


def polling_template(stage: Stage) -> None:
    metric = stage.templates[0]["spec"]["metrics"][0]
    metric.update(interval="5s", consecutiveFailureLimit=1, inconclusiveLimit=10)
    metric["errorRate"]["window"] = "2s"
    stage.templates[0]["spec"]["metrics"] = [metric]


def weight_zero_at(api: Any, namespace: str, deadline: float) -> float:
    """Poll the root Service (what carries the traffic) at 50 Hz until it selects one slot."""
    core = kubernetes.client.CoreV1Api(api)
    while time.monotonic() < deadline:
        svc = core.read_namespaced_service("shop", namespace)
        if "sluice.dev/slot" in (svc.spec.selector or {}):
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError("the canary weight never went to 0")


def one(kind: str, kubeconfig: str, tmp: Path) -> float:
    namespace = f"bench-revert-{uuid.uuid4().hex[:6]}"
    cluster = Cluster(kubeconfig, namespace)
    os.environ["KUBECONFIG"] = kubeconfig
    cluster.kubectl("create", "namespace", namespace)
    wait_for("token", lambda: "default-token" in cluster.kubectl("get", "secrets", "-o", "name"))
    args: list[str] = []
    if kind == "alert":
        cluster.kubectl(
            "create", "secret", "generic", "sluice-alerts", f"--from-literal=token={TOKEN}"
        )
        args = ["--alert-token-secret", f"{namespace}/sluice-alerts"]
    stage = Stage(cluster, tmp, args)
    try:
        if kind == "polling":
            polling_template(stage)
        else:
            for metric in stage.templates[0]["spec"]["metrics"]:
                metric["interval"] = "1h"
        stage.rollout["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 50}, {"pause": {}}]
        stage.start_canary()
        wait_for(
            "canary at 50", lambda: cluster.status("shop").get("canaryWeight") == 50, timeout=120
        )
        if kind == "polling":  # let some healthy measurements pass first
            time.sleep(6)
        api = kubernetes.config.new_client_from_config(config_file=kubeconfig)
        fault = time.monotonic()
        if kind == "polling":
            stage.canary.set(error_rate=1.0)
        else:
            code, body = post_alert(stage, TOKEN, alert(namespace))
            assert code == 200, body
        return weight_zero_at(api, namespace, fault + 60) - fault
    finally:
        stage.close()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--paths", default="polling,alert")
    args = parser.parse_args()
    kubeconfig = os.environ.get("SLUICE_E2E_KUBECONFIG") or os.environ["KUBECONFIG"]
    results: dict[str, list[float]] = {}
    for kind in args.paths.split(","):
        for i in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                seconds = one(kind, kubeconfig, Path(tmp))
            results.setdefault(kind, []).append(seconds)
            print(f"{kind} run {i + 1}: {seconds:.2f} s", flush=True)
    print(json.dumps({k: [round(v, 3) for v in vs] for k, vs in results.items()}))
    for kind, values in results.items():
        target = 5 + 1 if kind == "polling" else 2
        median = statistics.median(values)
        print(
            f"{kind:8} median {median:.2f} s  min {min(values):.2f}  max {max(values):.2f}  "
            f"target <= {target} s  ratio {median / target:.2f}"
        )


if __name__ == "__main__":
    main()
