"""Analysis live: the operator, the local control plane, a real Prometheus scraping the demo
app every second, and the app's health changed while the canary takes traffic.

The demo app runs as two local processes, one labelled as the stable revision and one as
the canary (label sluice_dev_revision, as a labelmap of pod labels would give); pods on the
local control plane run no containers.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.engine.hashing import template_hash
from tests.e2e.conftest import EXAMPLES, Cluster, Operator, wait_for
from tests.support.prometheus import PrometheusServer, free_port

pytestmark = pytest.mark.e2e

DEMO = EXAMPLES / "demo-app" / "app.py"


class DemoApp:
    def __init__(self, name: str) -> None:
        self.name, self.port = name, free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(DEMO), "--port", str(self.port), "--load", "40"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(f"demo app {name}", self._up, timeout=15)

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=1):
                return True
        except OSError:
            return False

    def set(self, **state: float) -> None:
        query = "&".join(f"{k}={v}" for k, v in state.items())
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/admin?{query}", method="POST")
        urllib.request.urlopen(req, timeout=2).read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def manifests(prometheus_url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The example template and Rollout, pointed at the test's Prometheus."""
    text = (EXAMPLES / "analysis" / "http-health-template.yaml").read_text()
    template = yaml.safe_load(text.replace("http://prometheus.monitoring:9090", prometheus_url))
    rollout = yaml.safe_load((EXAMPLES / "analysis" / "rollout-analysis.yaml").read_text())
    return [template], rollout


def v2(rollout: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(rollout)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "demo-app:2"
    return new


class Stage:
    """Everything one analysis test needs, started in order and torn down in reverse."""

    def __init__(self, cluster: Cluster, tmp: Path, operator_args: list[str]) -> None:
        self.cluster = cluster
        self.stable, self.canary = DemoApp("stable"), DemoApp("canary")
        self.prometheus = PrometheusServer(workdir=tmp / "prometheus")
        self.templates, self.rollout = manifests(self.prometheus.url)
        self.revisions = (
            template_hash(self.rollout["spec"]["template"]),
            template_hash(v2(self.rollout)["spec"]["template"]),
        )
        self.prometheus.set_targets(
            [
                (
                    "demo",
                    f"127.0.0.1:{self.stable.port}",
                    {"sluice_dev_revision": self.revisions[0]},
                ),
                (
                    "demo",
                    f"127.0.0.1:{self.canary.port}",
                    {"sluice_dev_revision": self.revisions[1]},
                ),
            ]
        )
        self.prometheus.start()
        self.operator = Operator(cluster.kubeconfig, cluster.namespace, tmp / "operator.log")
        self.operator.args = operator_args
        self.operator.start()

    def apply(self, body: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))

    def start_canary(self) -> None:
        for template in self.templates:
            self.apply(template)
        self.apply(self.rollout)
        wait_for(
            "stable Healthy",
            lambda: self.cluster.status("shop").get("phase") == "Healthy",
            timeout=90,
        )
        assert self.cluster.status("shop")["stableRevision"] == self.revisions[0]
        # a query counting the demo job's series reads 1 until both apps were scraped once
        self.prometheus.wait_scraped("demo")
        self.apply(v2(self.rollout))
        # until the operator has seen v2, the status (Completed=True) still describes v1
        generation = self.cluster.rollout("shop")["metadata"]["generation"]
        wait_for(
            "the operator saw the new revision",
            lambda: self.cluster.status("shop").get("observedGeneration", 0) >= generation,
            timeout=30,
        )

    def run(self, name: str = "bg") -> dict[str, Any]:
        runs = json.loads(self.cluster.kubectl("get", "analysisruns.sluice.dev", "-o", "json"))
        found = [r for r in runs["items"] if r["metadata"]["name"].endswith(name)]
        assert found, f"no AnalysisRun ending in {name}"
        return dict(found[-1])

    def close(self) -> None:
        self.operator.stop()
        self.prometheus.close()
        self.stable.stop()
        self.canary.stop()


@pytest.fixture
def stage(cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stage]:
    args = getattr(request, "param", [])
    s = Stage(cluster, tmp_path, args)
    yield s
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        sys.stderr.write(s.operator.log.read_text()[-15000:])
    s.close()


def aborted(stage: Stage, reason: str) -> dict[str, Any]:
    wait_for(
        f"aborted ({reason})",
        lambda: stage.cluster.status("shop").get("phase") == "Degraded",
        timeout=60,
    )
    st = stage.cluster.status("shop")
    assert st["abort"]["reason"] == reason, st["abort"]
    assert st["canaryWeight"] == 0
    assert stage.cluster.selector("shop")["sluice.dev/slot"] == st["stableSlot"]
    return dict(st)


def test_a_healthy_canary_is_promoted(stage: Stage) -> None:
    stage.start_canary()
    wait_for(
        "Completed",
        lambda: stage.cluster.condition("Completed", "shop").get("status") == "True",
        timeout=90,
    )
    run = stage.run("bg")
    results = {m["name"]: m for m in run["status"]["metricResults"]}
    assert set(results) == {"error-rate", "p99-latency", "circuit-breakers"}
    assert results["error-rate"]["successful"] >= 2
    measurement = results["error-rate"]["measurements"][-1]
    assert stage.revisions[1] in measurement["query"]  # the canary's series, escaped and sent
    assert run["spec"]["terminate"] is True  # stopped at promotion


def test_a_canary_at_20_percent_errors_is_aborted(stage: Stage) -> None:
    stage.start_canary()
    wait_for("canary at 50", lambda: stage.cluster.status("shop").get("canaryWeight") == 50)
    stage.canary.set(error_rate=0.2)
    st = aborted(stage, "AnalysisFailed")
    message = st["abort"]["message"]
    for part in ("error-rate", "result=", "result <= 0.05", "http_requests_total", "at 20"):
        assert part in message, message
    events = [e for e in stage.cluster.events("shop") if e["reason"] == "Aborted"]
    assert events and "error-rate" in events[0]["message"]
    assert stage.run("bg")["status"]["phase"] == "Failed"


def test_a_p99_regression_is_aborted(stage: Stage) -> None:
    stage.start_canary()
    wait_for("canary at 50", lambda: stage.cluster.status("shop").get("canaryWeight") == 50)
    stage.canary.set(latency=0.3)
    st = aborted(stage, "AnalysisFailed")
    assert "p99-latency" in st["abort"]["message"]
    assert "histogram_quantile(0.99" in st["abort"]["message"]


def test_an_open_circuit_breaker_is_aborted(stage: Stage) -> None:
    stage.start_canary()
    wait_for("canary at 50", lambda: stage.cluster.status("shop").get("canaryWeight") == 50)
    stage.canary.set(breakers=2)
    st = aborted(stage, "AnalysisFailed")
    assert "circuit-breakers" in st["abort"]["message"]


@pytest.mark.parametrize("policy", ["abort", "pause", "ignore"])
def test_prometheus_outage_follows_on_provider_error(stage: Stage, policy: str) -> None:
    for metric in stage.templates[0]["spec"]["metrics"]:
        metric.update(onProviderError=policy, consecutiveErrorLimit=1)
        metric["provider"]["prometheus"]["timeout"] = "1s"
    stage.start_canary()
    wait_for("canary at 50", lambda: stage.cluster.status("shop").get("canaryWeight") == 50)
    stage.prometheus.kill()
    if policy == "abort":
        st = aborted(stage, "AnalysisError")
        assert "provider errors in a row" in st["abort"]["message"]
    elif policy == "pause":
        # Held while Prometheus is down (within maxOutage, 10m by default)...
        wait_for(
            "held for the provider",
            lambda: (
                stage.cluster.condition("Paused", "shop").get("reason") == "AnalysisProviderDown"
            ),
            timeout=60,
        )
        assert stage.cluster.status("shop")["canaryWeight"] == 50  # held, not reverted
        # ...and going on by itself when it is back: no human needed for a blip.
        stage.prometheus.restart()
        wait_for(
            "resumed by itself",
            lambda: (
                stage.cluster.condition("Paused", "shop").get("reason") != "AnalysisProviderDown"
            ),
            timeout=60,
        )
        assert not (stage.cluster.status("shop").get("acknowledgedRuns") or [])
    else:
        wait_for(
            "Completed despite the outage",
            lambda: stage.cluster.condition("Completed", "shop").get("status") == "True",
            timeout=90,
        )
        errors = {m["name"]: m["error"] for m in stage.run("bg")["status"]["metricResults"]}
        assert all(n >= 1 for n in errors.values()), errors


TOKEN = "s3cret-token"


def post_alert(stage: Stage, token: str | None, body: Any) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        f"http://127.0.0.1:{stage.operator.port}/v1/alerts", data=data, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def alert(namespace: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "sluice",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "CanaryErrorRateHigh",
                    "sluice_action": "abort",
                    "namespace": namespace,
                    "rollout": "shop",
                },
                "annotations": {"summary": "canary error ratio above 5 %"},
                "startsAt": "2026-11-24T08:00:00Z",
                "fingerprint": "abc123def456",
            }
        ],
    }


@pytest.fixture
def token_secret(cluster: Cluster) -> list[str]:
    cluster.kubectl("create", "secret", "generic", "sluice-alerts", f"--from-literal=token={TOKEN}")
    return ["--alert-token-secret", f"{cluster.namespace}/sluice-alerts"]


def test_an_alert_aborts_at_once_and_strangers_are_refused(
    cluster: Cluster, tmp_path: Path, token_secret: list[str], request: pytest.FixtureRequest
) -> None:
    s = Stage(cluster, tmp_path, token_secret)
    try:
        for template in s.templates:  # no metric may fail here: only the alert
            for metric in template["spec"]["metrics"]:
                metric["interval"] = "1h"
        s.start_canary()
        wait_for("canary at 50", lambda: cluster.status("shop").get("canaryWeight") == 50)

        assert post_alert(s, None, alert(cluster.namespace))[0] == 401
        assert post_alert(s, "wrong", alert(cluster.namespace))[0] == 401
        assert post_alert(s, TOKEN, {"nope": 1})[0] == 400
        time.sleep(1)
        assert cluster.status("shop")["phase"] != "Degraded"

        sent = time.monotonic()
        code, body = post_alert(s, TOKEN, alert(cluster.namespace))
        assert code == 200 and "recorded as failed AnalysisRun" in body["results"][0]["outcome"]
        st = aborted(s, "AlertFired")
        assert time.monotonic() - sent < 5
        assert "CanaryErrorRateHigh" in st["abort"]["message"]
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            sys.stderr.write(s.operator.log.read_text()[-15000:])
        s.close()


def test_a_failed_bake_after_promotion_switches_back_to_the_warm_previous(stage: Stage) -> None:
    canary = stage.rollout["spec"]["strategy"]["canary"]
    canary["steps"] = [{"setWeight": 50}, {"pause": {"duration": "2s"}}]
    canary["postPromotionAnalysis"] = {"templates": [{"templateName": "http-health"}]}
    del canary["analysis"]
    for metric in stage.templates[0]["spec"]["metrics"]:
        metric["count"] = 30  # a long bake
    stage.start_canary()
    wait_for(
        "baking",
        lambda: (
            stage.cluster.condition("Progressing", "shop").get("reason") == "PostPromotionAnalysis"
        ),
        timeout=90,
    )
    st = stage.cluster.status("shop")
    assert st["stableRevision"] == stage.revisions[1] and st["stableSlot"] == "b"
    assert stage.cluster.condition("Completed", "shop")["status"] == "False"
    # The previous version stays warm with the 2 pods it ran at 50 %: never scaled back up.
    assert stage.cluster.replicas("shop-a")[0] == 2
    stage.canary.set(error_rate=0.5)  # the new stable goes bad during the bake
    st = aborted(stage, "AnalysisFailed")
    assert st["stableRevision"] == stage.revisions[0] and st["stableSlot"] == "a"
    assert "reverted to" in st["abort"]["message"] and "post" in st["abort"]["message"]
    # Traffic went back to its 2 Ready pods at once; the other 2 come back beside them.
    assert stage.cluster.replicas("shop-a")[0] == 4
    wait_for("previous back at 4", lambda: stage.cluster.replicas("shop-a") == (4, 4), timeout=60)


def test_simulate_decides_like_the_operator(stage: Stage, tmp_path: Path) -> None:
    """The same Rollout and the same story of the canary's health, simulated and live: same
    steps, same verdict, same aborting metric."""
    scenario = {
        "readyAfter": "2s",
        "canary": {
            "errorRate": [{"at": "0s", "value": 0.0}, {"at": "8s", "value": 0.2}],
            "latency": {"p99": 0.005},
        },
        "stable": {"errorRate": 0.0, "latency": {"p99": 0.005}},
    }
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    # A pause long enough that the live rate() window (which the simulation does not
    # smooth) cannot let the canary slip past it before the verdict.
    stage.rollout["spec"]["strategy"]["canary"]["steps"] = [
        {"setWeight": 50},
        {"pause": {"duration": "60s"}},
        {"setWeight": 100},
    ]
    (tmp_path / "rollout.yaml").write_text(
        yaml.safe_dump_all([*stage.templates, v2(stage.rollout)])
    )
    sim = subprocess.run(
        [
            str(Path(sys.executable).parent / "sluice"),
            "simulate",
            str(tmp_path / "rollout.yaml"),
            "--scenario",
            str(tmp_path / "scenario.yaml"),
            "--instant",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    simulated = json.loads(sim.stdout)
    assert sim.returncode == 1 and simulated["verdict"] == "aborted", sim.stdout[-2000:]
    sim_steps = [
        e["message"]
        for f in simulated["timeline"]
        for e in f["events"]
        if e["reason"] == "StepReached"
    ]

    stage.start_canary()
    started = time.monotonic()
    wait_for("canary at 50", lambda: stage.cluster.status("shop").get("canaryWeight") == 50)
    time.sleep(max(0.0, 8 - (time.monotonic() - started)))
    stage.canary.set(error_rate=0.2)
    live = aborted(stage, simulated["reason"])
    live_steps = [
        e["message"] for e in stage.cluster.events("shop") if e["reason"] == "StepReached"
    ]

    assert live_steps == sim_steps
    assert live["currentStepIndex"] == simulated["timeline"][-1]["step"]
    metric = "error-rate"
    assert metric in live["abort"]["message"] and metric in simulated["message"]


def test_an_outage_longer_than_max_outage_pauses_for_a_human(stage: Stage) -> None:
    for metric in stage.templates[0]["spec"]["metrics"]:
        metric.update(onProviderError="pause", consecutiveErrorLimit=1, maxOutage="3s")
        metric["provider"]["prometheus"]["timeout"] = "1s"
    stage.start_canary()
    wait_for("canary at 50", lambda: stage.cluster.status("shop").get("canaryWeight") == 50)
    stage.prometheus.kill()
    wait_for(
        "paused for a human",
        lambda: stage.cluster.condition("Paused", "shop").get("reason") == "AnalysisError",
        timeout=60,
    )
    assert "longer than maxOutage 3s" in stage.cluster.condition("Paused", "shop")["message"]
    assert stage.cluster.status("shop")["canaryWeight"] == 50
