"""Identical queries of many AnalysisRuns reach a real Prometheus once: the real executor
and its queue, the real provider, and Prometheus' own request counter as the witness."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from typing import Any

from tests.support.prometheus import PrometheusServer, prometheus  # noqa: F401  (fixture)
from tests.unit.executor_fakes import ROLLOUT, FakeKube

from sluice.api.analysis import AnalysisRunSpec
from sluice.controller.analysis import AnalysisExecutor

FLEET = 30  # runs asking the very same question


def run(name: str, address: str, query: str, headers: dict[str, str]) -> dict[str, Any]:
    prom = {
        "address": address,
        "timeout": "5s",
        "query": query,
        "headers": [{"name": k, "value": v} for k, v in headers.items()],
    }
    metric = {"name": "m", "provider": {"prometheus": prom}, "successCondition": "result >= 1"}
    spec = AnalysisRunSpec.model_validate(
        {"metrics": [metric], "kind": "background", "revision": "c1"}
    )
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"},
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
    }


def query_requests(server: PrometheusServer) -> float:
    """Requests Prometheus has served on /api/v1/query (its own counter)."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    pattern = r'^prometheus_http_requests_total\{[^}]*handler="/api/v1/query"[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def measure_all(bodies: dict[str, dict[str, Any]], window: float) -> AnalysisExecutor:
    async def go() -> AnalysisExecutor:
        def store(body: dict[str, Any]) -> None:
            bodies[body["metadata"]["name"]] = body

        executor = AnalysisExecutor(
            FakeKube({}),  # type: ignore[arg-type]
            cache_lookup=lambda key: (bodies[key[2]], ROLLOUT),
            wake_rollout=lambda key: None,
            store=store,
            query_window=window,
        )
        executor.start()
        try:
            for name in bodies:
                executor.queue.add(("ns", "web", name))
            started = time.monotonic()
            while any(
                (b.get("status") or {}).get("phase") in (None, "Running") for b in bodies.values()
            ):
                assert time.monotonic() - started < 30, "runs did not finish"
                await asyncio.sleep(0.05)
        finally:
            await executor.stop()
        return executor

    return asyncio.run(go())


def fleet(address: str) -> dict[str, dict[str, Any]]:
    bodies = {f"fleet-{i}": run(f"fleet-{i}", address, "vector(1)", {}) for i in range(FLEET)}
    for tenant in ("a", "b"):  # the same text for other tenants: never shared across them
        bodies[f"tenant-{tenant}"] = run(
            f"tenant-{tenant}", address, "vector(1)", {"X-Scope-OrgID": tenant}
        )
    for i in range(3):  # a query of its own
        bodies[f"own-{i}"] = run(f"own-{i}", address, f"vector({i + 2})", {})
    return bodies


def test_identical_queries_of_many_runs_reach_prometheus_once(
    prometheus: PrometheusServer,  # noqa: F811
) -> None:
    bodies = fleet(prometheus.url)
    before = query_requests(prometheus)
    executor = measure_all(bodies, window=1.0)
    requests = query_requests(prometheus) - before

    phases = {b["status"]["phase"] for b in bodies.values()}
    assert phases == {"Successful"}, phases
    measured = [b["status"]["metricResults"][0]["measurements"][0] for b in bodies.values()]
    assert {m["value"] for m in measured} == {"1", "2", "3", "4"}
    assert all(re.fullmatch(r"at .*:\d\d\.000Z", m["window"]) for m in measured)

    distinct = 1 + 2 + 3  # the fleet's query, two tenants, three queries of their own
    assert requests == executor.shared.sent  # the counter counts what Prometheus got
    # all measured within a second or two: each distinct query once per window at most
    assert distinct <= requests <= 2 * distinct, requests
    assert executor.shared.deduplicated == len(bodies) - requests


def test_without_sharing_every_run_sends_its_own(
    prometheus: PrometheusServer,  # noqa: F811
) -> None:
    bodies = fleet(prometheus.url)
    before = query_requests(prometheus)
    measure_all(bodies, window=0)
    assert query_requests(prometheus) - before == len(bodies)
    assert {b["status"]["phase"] for b in bodies.values()} == {"Successful"}
