"""Prometheus killed and restarted, and Prometheus slow, while canaries are being analysed.

A real Prometheus scrapes the demo app (examples/demo-app, one local process); each Rollout's
background analysis asks it for the app's request rate every second. The faults:

- killed (SIGKILL) mid-analysis and started again on the same port and data directory:
  every Rollout with `onProviderError: pause` holds (Paused, AnalysisProviderDown), its weight
  and step never move while it holds (watch history), and it goes on by itself once
  Prometheus answers, then is promoted;
- slow: a proxy holds every query 10 s, above the metric's `timeout: 5s`: each query is an
  error after 5 s (recorded so, never a success); `onProviderError: abort` aborts
  (AnalysisError), `pause` holds and resumes when the delay is gone.

The figures (outage, time to hold, time to resume after Prometheus is back) are printed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sluice.engine.hashing import template_hash
from tests.chaos.recording import ChaosRecorder
from tests.chaos.slow_proxy import SlowProxy
from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.history import Seen
from tests.e2e.test_analysis import DemoApp
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.e2e

QUERY = 'sum(up{job="demo"})'  # 1 while the app is scraped: no rate() window to refill
Body = dict[str, Any]


def template(name: str, address: str, policy: str, timeout: str, interval: str) -> Body:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {
            "metrics": [
                {
                    "name": "traffic",
                    "provider": {
                        "prometheus": {"address": address, "query": QUERY, "timeout": timeout}
                    },
                    "successCondition": "result == 1",
                    "interval": interval,
                    "consecutiveErrorLimit": 1,
                    "inconclusiveLimit": 20,
                    "onProviderError": policy,
                    "maxOutage": "3m",
                }
            ]
        },
    }


def rollout(name: str, template_name: str, image: str) -> Body:
    # A long first pause: the faults come while every canary is in it, under analysis.
    steps: list[Body] = [
        {"setWeight": 25},
        {"pause": {"duration": "25s"}},
        {"setWeight": 50},
        {"pause": {"duration": "3s"}},
    ]
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "strategy": {
                "canary": {
                    "scaleDownDelaySeconds": 0,
                    "analysis": {"templates": [{"templateName": template_name}]},
                    "steps": steps,
                }
            },
        },
    }


class Bench:
    """The demo app, Prometheus scraping it, the operator, a gap-free recorder."""

    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.cluster = cluster
        self.app = DemoApp("demo")
        self.prometheus = PrometheusServer(
            [("demo", f"127.0.0.1:{self.app.port}", {})], workdir=tmp / "prometheus"
        )
        self.prometheus.start()
        self.recorder = ChaosRecorder(cluster.kubeconfig, cluster.namespace)
        self.recorder.watch_all([])
        self.operator = Operator(cluster.kubeconfig, cluster.namespace, tmp / "operator.log")
        self.operator.start()

    def apply(self, body: Body) -> None:
        self.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))

    def start_canaries(self, bodies: list[Body], templates: list[Body]) -> None:
        """Version 1 Healthy, then version 2 (a canary under analysis) for each."""
        for t in templates:
            self.apply(t)
        for body in bodies:
            self.apply(body)
        for body in bodies:
            name = body["metadata"]["name"]
            wait_for(f"{name} Healthy", lambda n=name: self.phase(n) == "Healthy", timeout=60)
        for body in bodies:
            body["spec"]["template"]["spec"]["containers"][0]["image"] = "demo-app:2"
            self.apply(body)

    def phase(self, name: str) -> str:
        return str(self.cluster.status(name).get("phase"))

    def analysed(self, name: str) -> bool:
        """The canary has traffic and its background run has a successful measurement."""
        if self.cluster.status(name).get("canaryWeight", 0) <= 0:
            return False
        run = self.run(name)
        results = ((run or {}).get("status") or {}).get("metricResults") or []
        return bool(results) and results[0].get("successful", 0) >= 1

    def run(self, name: str) -> Body | None:
        runs = json.loads(self.cluster.kubectl("get", "analysisruns.sluice.dev", "-o", "json"))
        found = [
            r
            for r in runs["items"]
            if r["metadata"]["name"].startswith(f"{name}-") and r["spec"]["kind"] == "background"
        ]
        found.sort(key=lambda r: r["metadata"]["creationTimestamp"])
        return found[-1] if found else None

    def close(self) -> None:
        self.operator.stop()
        self.recorder.stop()
        self.prometheus.close()
        self.app.stop()


@pytest.fixture
def bench(cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Bench]:
    b = Bench(cluster, tmp_path)
    yield b
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        b.recorder.dump(tmp_path / "history.jsonl")
        sys.stderr.write(f"\nhistory: {tmp_path / 'history.jsonl'}\n")
        sys.stderr.write(b.operator.log.read_text()[-15000:])
    b.close()


def held(seen: Seen) -> bool:
    conditions = (seen.body.get("status") or {}).get("conditions") or []
    return any(
        c["type"] == "Paused" and c.get("reason") == "AnalysisProviderDown" for c in conditions
    )


def status_of(seen: Seen) -> Body:
    return dict(seen.body.get("status") or {})


def frozen_while_held(history: list[Seen], name: str, until: float) -> tuple[float, float]:
    """(when the hold began, when it ended) from the Rollout's history; fails if its weight,
    step or stable moved from the first held version until `until` (the provider back)."""
    versions = [s for s in history if s.kind == "Rollout" and s.name == name]
    first = next((s for s in versions if held(s)), None)
    assert first is not None, f"{name} never held for the provider"
    start = status_of(first)
    for seen in versions:
        if first.at <= seen.at <= until:
            st = status_of(seen)
            moved = {
                k: (start.get(k), st.get(k))
                for k in ("canaryWeight", "currentStepIndex", "stableRevision")
                if st.get(k) != start.get(k)
            }
            assert not moved, f"{name} moved while the provider was down: {moved}"
    end = next((s for s in versions if s.at > until and not held(s)), None)
    assert end is not None, f"{name} did not resume by itself"
    return first.at, end.at


def test_prometheus_killed_and_restarted_holds_then_resumes_by_itself(bench: Bench) -> None:
    names = [f"pk{i}" for i in range(3)]
    bench.start_canaries(
        [rollout(n, "via-prom", "demo-app:1") for n in names],
        [template("via-prom", bench.prometheus.url, "pause", "1s", "1s")],
    )
    wait_for("every canary analysed", lambda: all(bench.analysed(n) for n in names), 90)
    killed = time.monotonic()
    bench.prometheus.kill()
    wait_for(
        "every Rollout held for the provider",
        lambda: all(
            bench.cluster.condition("Paused", n).get("reason") == "AnalysisProviderDown"
            for n in names
        ),
        timeout=30,
    )
    time.sleep(8)  # down a while: nothing may move meanwhile
    for n in names:
        assert bench.cluster.status(n)["stableRevision"] != template_hash(
            bench.cluster.rollout(n)["spec"]["template"]
        ), f"{n} promoted while Prometheus was down"
    restarted = time.monotonic()
    bench.prometheus.start()  # same port, same data directory
    back = time.monotonic()
    for n in names:
        wait_for(
            f"{n} promoted after the outage",
            lambda n=n: bench.cluster.condition("Completed", n).get("status") == "True",
            timeout=90,
        )
    history = bench.recorder.history()
    figures = []
    for n in names:
        began, ended = frozen_while_held(history, n, back)
        figures.append((began - killed, ended - back))
        st = bench.cluster.status(n)
        assert not st.get("acknowledgedRuns"), "a human was needed"
        assert st["stableRevision"] == template_hash(bench.cluster.rollout(n)["spec"]["template"])
    holds = ", ".join(f"{h:.1f}" for h, _ in figures)
    resumes = ", ".join(f"{r:.1f}" for _, r in figures)
    print(
        f"\nprometheus killed: down {back - killed:.1f} s (restart took {back - restarted:.1f} s);"
        f" held after {holds} s; resumed {resumes} s after it was ready; all promoted"
    )


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_slow_prometheus_times_out_as_errors_abort_or_hold_never_success(
    bench: Bench,
) -> None:
    proxy = SlowProxy(bench.prometheus.url).start()
    try:
        bench.start_canaries(
            [
                rollout("slow-abort", "slow-abort", "demo-app:1"),
                rollout("slow-pause", "slow-pause", "demo-app:1"),
            ],
            [
                template("slow-abort", proxy.url, "abort", "5s", "2s"),
                template("slow-pause", proxy.url, "pause", "5s", "2s"),
            ],
        )
        names = ["slow-abort", "slow-pause"]
        wait_for("both canaries analysed", lambda: all(bench.analysed(n) for n in names), 90)
        slowed, slowed_wall = time.monotonic(), time.time()
        proxy.delay = 10.0
        wait_for("slow-abort aborted", lambda: bench.phase("slow-abort") == "Degraded", 60)
        aborted_after = time.monotonic() - slowed
        st = bench.cluster.status("slow-abort")
        assert st["abort"]["reason"] == "AnalysisError", st["abort"]
        assert "provider errors in a row" in st["abort"]["message"]
        assert st["canaryWeight"] == 0
        wait_for(
            "slow-pause held",
            lambda: (
                bench.cluster.condition("Paused", "slow-pause").get("reason")
                == "AnalysisProviderDown"
            ),
            timeout=60,
        )
        held_after = time.monotonic() - slowed
        time.sleep(4)
        # Every measurement taken while slow: an error after the 5 s timeout, not a success.
        for n in names:
            run = bench.run(n)
            assert run is not None
            result = run["status"]["metricResults"][0]
            late = [m for m in result["measurements"] if _stamp(m["startedAt"]) > slowed_wall + 0.5]
            assert late, f"{n}: no measurement while slow"
            for m in late:
                assert m["phase"] == "Error", m
                assert "did not answer within 5s" in m["message"], m
                took = _stamp(m["finishedAt"]) - _stamp(m["startedAt"])
                assert 4.0 <= took <= 8.0, f"{n}: a 5 s timeout took {took:.1f} s: {m}"
        errors = {n: bench.run(n)["status"]["metricResults"][0]["error"] for n in names}  # type: ignore[index]
        proxy.delay = 0.0
        fast = time.monotonic()
        wait_for(
            "slow-pause promoted once Prometheus is fast again",
            lambda: bench.cluster.condition("Completed", "slow-pause").get("status") == "True",
            timeout=90,
        )
        back = time.monotonic()
        history = bench.recorder.history()
        _, resumed = frozen_while_held(history, "slow-pause", fast)
        assert bench.phase("slow-abort") == "Degraded"  # an abort stays an abort
        print(
            f"\nprometheus slow (10 s behind a 5 s timeout): slow-abort aborted after "
            f"{aborted_after:.1f} s, slow-pause held after {held_after:.1f} s; errors counted "
            f"{errors}; {proxy.held} queries held; slow-pause resumed "
            f"{resumed - fast:.1f} s after the delay was gone, promoted after {back - fast:.1f} s"
        )
    finally:
        proxy.stop()
