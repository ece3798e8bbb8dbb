"""One Prometheus that never answers must not delay another's measurements: ten
canaries asking a hung server (a real socket on 127.0.0.1 that accepts and never
answers) and one asking a real Prometheus, through the real executor and its queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.test_prometheus_provider import silent_server
from tests.support.prometheus import PrometheusServer, prometheus  # noqa: F401  (fixture)
from tests.unit.executor_fakes import ROLLOUT, FakeKube

from sluice.api.analysis import AnalysisRunSpec
from sluice.controller.analysis import AnalysisExecutor

HUNG = 10


def run(name: str, address: str, timeout: str) -> dict[str, Any]:
    metric = {
        "name": "m",
        "provider": {"prometheus": {"address": address, "timeout": timeout, "query": "vector(0)"}},
        "successCondition": "result == 0",
        "consecutiveErrorLimit": 0,
    }
    spec = AnalysisRunSpec.model_validate(
        {"metrics": [metric], "kind": "background", "revision": "c1"}
    )
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"},
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
    }


@pytest.fixture
def hung() -> Iterator[str]:
    with silent_server() as address:
        yield address


def test_a_hung_prometheus_does_not_delay_another(
    prometheus: PrometheusServer,  # noqa: F811
    hung: str,
) -> None:
    bodies = {f"hung-{i}": run(f"hung-{i}", hung, "5m") for i in range(HUNG)}
    bodies["healthy"] = run("healthy", prometheus.url, "5s")

    async def go() -> float:
        kube = FakeKube({})

        def store(body: dict[str, Any]) -> None:
            bodies[body["metadata"]["name"]] = body

        executor = AnalysisExecutor(
            kube,  # type: ignore[arg-type]
            cache_lookup=lambda key: (bodies[key[2]], ROLLOUT),
            wake_rollout=lambda key: None,
            store=store,
            workers=8,
        )
        executor.start()
        try:
            for name in bodies:  # the hung ones first: they are taken first
                executor.queue.add(("ns", "web", name))
            started = time.monotonic()
            while (bodies["healthy"].get("status") or {}).get("phase") in (None, "Running"):
                assert time.monotonic() - started < 20, "the healthy run was starved"
                await asyncio.sleep(0.05)
            waited = time.monotonic() - started
            # the hung ones are still waiting on their provider, without a verdict yet
            assert all(
                (bodies[f"hung-{i}"].get("status") or {}).get("phase") in (None, "Running")
                for i in range(HUNG)
            )
            return waited
        finally:
            await executor.stop()

    waited = asyncio.run(go())
    assert bodies["healthy"]["status"]["phase"] == "Successful"
    assert waited < 5.0, waited
    print(f"healthy verdict after {waited:.2f}s beside {HUNG} hung canaries")
