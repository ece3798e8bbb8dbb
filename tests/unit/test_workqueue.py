"""The single work queue: one worker per key, dirty re-runs, and one timer heap."""

from __future__ import annotations

import asyncio
import time

from sluice.controller.workqueue import WorkQueue


def test_a_key_is_queued_once_and_rerun_if_it_changed_while_processed() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        queue.add("a")
        queue.add("b")
        assert len(queue) == 2
        first = await queue.get()
        queue.add(first)  # an event while it is being processed
        assert len(queue) == 1  # not queued twice...
        queue.done(first)  # ...but queued again once done
        return [await queue.get(), await queue.get()]

    assert asyncio.run(scenario()) == ["b", "a"]


def test_timers_fire_in_order_and_the_earliest_wins() -> None:
    async def scenario() -> tuple[list[str], float]:
        queue: WorkQueue[str] = WorkQueue()
        timers = asyncio.create_task(queue.run_timers())
        start = time.monotonic()
        queue.add_after("late", 0.3)
        queue.add_after("soon", 0.1)
        queue.add_after("soon", 5.0)  # a later wake-up does not push an earlier one back
        got = [await queue.get(), await queue.get()]
        elapsed = time.monotonic() - start
        assert queue.scheduled == 0
        timers.cancel()
        return got, elapsed

    got, elapsed = asyncio.run(scenario())
    assert got == ["soon", "late"]
    assert 0.25 <= elapsed < 2.0


def test_forget_drops_a_scheduled_wakeup() -> None:
    async def scenario() -> int:
        queue: WorkQueue[str] = WorkQueue()
        timers = asyncio.create_task(queue.run_timers())
        queue.add_after("gone", 0.05)
        queue.forget("gone")
        await asyncio.sleep(0.2)
        timers.cancel()
        return len(queue)

    assert asyncio.run(scenario()) == 0


def test_a_cancelled_timer_does_not_fire() -> None:
    async def scenario() -> int:
        queue: WorkQueue[str] = WorkQueue()
        timers = asyncio.create_task(queue.run_timers())
        queue.add_after("stale", 0.05)
        queue.cancel_timer("stale")
        queue.add_after("live", 0.1)
        assert await queue.get() == "live"
        await asyncio.sleep(0.1)
        timers.cancel()
        return len(queue)

    assert asyncio.run(scenario()) == 0
