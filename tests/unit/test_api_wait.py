"""A reconcile's own time: its duration less the time one of its API calls was in flight
(side-by-side calls counted once), observed as sluice_reconcile_own_seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import kubernetes

from sluice.cluster import api_wait
from sluice.cluster.kube import Kube


def test_side_by_side_calls_count_once_and_work_between_them_is_own_time() -> None:
    kube = Kube(kubernetes.client.ApiClient(), limit=4)

    def slow(**_: Any) -> None:
        time.sleep(0.2)

    async def one_reconcile() -> tuple[float, float]:
        wait = api_wait.begin()
        started = time.perf_counter()
        await asyncio.gather(kube.call(slow), kube.call(slow), kube.call(slow))
        time.sleep(0.1)  # Sluice's own work, on the loop
        await kube.call(slow)
        return time.perf_counter() - started, wait.total

    took, waited = asyncio.run(one_reconcile())
    assert 0.38 <= waited <= 0.5, waited  # two waits of 0.2 s: the three overlap
    assert 0.08 <= took - waited <= 0.2, took - waited


def test_a_call_outside_any_reconcile_counts_for_none() -> None:
    kube = Kube(kubernetes.client.ApiClient(), limit=1)

    async def outside() -> api_wait.Wait | None:
        await kube.call(lambda: None)
        return api_wait.CURRENT.get()

    assert asyncio.run(outside()) is None
