"""After a restart the AnalysisRuns' watch may deliver a Running run before the Rollouts'
watch delivers its owner: the executor skips a run whose Rollout is not cached, so the run
must be handed to it again once the Rollout arrives (found by the chaos suite's analysis
kills: a post-promotion run left at 3 of 5 measurements, its Rollout waiting forever)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tests.unit.executor_fakes import NOW, FakeKube, Recording, run_body

from sluice.analysis import runstate
from sluice.api.analysis import AnalysisRunSpec
from sluice.controller.analysis import AnalysisExecutor
from sluice.controller.reconciler import Controller


def rollout(rv: str) -> dict[str, Any]:
    meta = {"name": "web", "namespace": "ns", "uid": "u1", "resourceVersion": rv}
    return {"metadata": meta, "status": {"stableRevision": "s1", "stableSlot": "a"}}


def running_run() -> dict[str, Any]:
    metric = {"name": "m", "provider": {"prometheus": {"address": "http://p", "query": "q"}}}
    body = run_body([{**metric, "successCondition": "result == 0", "interval": "1s", "count": 5}])
    body["kind"] = "AnalysisRun"
    body["metadata"]["labels"] = {"sluice.dev/rollout": "web"}
    spec = AnalysisRunSpec.model_validate(body["spec"])
    begun = runstate.start(spec, NOW - timedelta(seconds=9))  # by the operator killed since
    body["status"] = begun.model_dump(by_alias=True, exclude_none=True)
    return body


def wired() -> tuple[Controller, AnalysisExecutor, Recording]:
    """The Controller and the executor as handlers.py wires them."""
    controller = Controller(kube=None)  # type: ignore[arg-type]  # no call reaches it
    provider = Recording(0.0)

    async def factory(metric: Any, namespace: str) -> Recording:
        return provider

    executor = AnalysisExecutor(
        FakeKube({}),  # type: ignore[arg-type]
        controller.run_lookup,
        controller.queue.add,
        controller.cache.put_child,
        clock=lambda: NOW,
        provider_factory=factory,
    )
    controller.on_run_created = lambda body: executor.run_event("ADDED", body)
    return controller, executor, provider


async def drain(executor: AnalysisExecutor) -> int:
    """Step every run queued now; how many were."""
    stepped = 0
    while len(executor.queue):
        key = await executor.queue.get()
        await executor.step(key)
        executor.queue.done(key)
        stepped += 1
    return stepped


def test_a_run_seen_before_its_rollout_is_measured_once_the_rollout_arrives() -> None:
    async def scenario() -> None:
        controller, executor, provider = wired()
        run = running_run()
        controller.child_event("ADDED", run)  # what handlers.analysis_run_event does
        executor.run_event("ADDED", run)
        assert await drain(executor) == 1
        assert provider.sent == [] and executor.queue.scheduled == 0  # skipped, not due later

        controller.rollout_event("ADDED", rollout("5"))
        assert await drain(executor) == 1, "the run was never handed to the executor again"
        assert provider.sent == ["q"]

        controller.rollout_event("MODIFIED", rollout("6"))  # only its first arrival
        assert await drain(executor) == 0

    asyncio.run(scenario())
