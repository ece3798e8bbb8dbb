"""/metrics is built off the event loop, and scrapes that meet share one build."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sluice import server

BUILD = 0.4  # seconds one exposition takes here
TICK = 0.01


class Slow(Collector):
    """A collector that takes BUILD seconds (as 10,000 Rollouts' series do) and counts builds."""

    def __init__(self) -> None:
        self.builds = 0
        self.lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.lock:
            self.builds += 1
        time.sleep(BUILD)
        yield GaugeMetricFamily("slow_builds", "Builds so far.", value=self.builds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scrape_while_ticking(scrapes: int) -> tuple[Slow, list[str], float]:
    """`scrapes` concurrent scrapes of a slow registry; the worst lateness of a loop timer."""
    slow = Slow()
    registry = CollectorRegistry()
    registry.register(slow)
    port = free_port()
    runner = await server.serve(server.app(lambda: True, registry), "127.0.0.1", port)
    worst = 0.0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal worst
        while not done.is_set():
            due = time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            worst = max(worst, time.perf_counter() - due)

    try:
        async with aiohttp.ClientSession() as session:

            async def get() -> str:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
                    assert answer.status == 200
                    assert answer.headers["Content-Type"].startswith("text/plain")
                    return await answer.text()

            ticker = asyncio.create_task(tick())
            bodies = await asyncio.gather(*(get() for _ in range(scrapes)))
            done.set()
            await ticker
            bodies.append(await get())  # after the shared build: a fresh one
    finally:
        await runner.cleanup()
    return slow, bodies, worst


def test_the_loop_stays_responsive_while_a_slow_exposition_is_built() -> None:
    _, bodies, worst = asyncio.run(scrape_while_ticking(1))
    assert "slow_builds 1.0" in bodies[0]
    # on the loop, the timer would wait the whole build (0.4 s)
    assert worst < BUILD / 4, worst


def test_scrapes_that_arrive_during_a_build_share_it() -> None:
    slow, bodies, _ = asyncio.run(scrape_while_ticking(3))
    assert slow.builds == 2, slow.builds  # the three concurrent ones, then the later one
    assert bodies[:3] == [bodies[0]] * 3 and "slow_builds 1.0" in bodies[0]
    assert "slow_builds 2.0" in bodies[3]


def test_a_failed_build_fails_its_scrapes_and_the_next_one_builds_again() -> None:
    class Broken(Collector):
        calls = 0

        def collect(self) -> Iterator[GaugeMetricFamily]:
            Broken.calls += 1
            if Broken.calls == 1:
                raise RuntimeError("collector broke")
            yield GaugeMetricFamily("fine", "Fine now.", value=1)

    async def main() -> list[int]:
        registry = CollectorRegistry()
        registry.register(Broken())
        port = free_port()
        runner = await server.serve(server.app(lambda: True, registry), "127.0.0.1", port)
        try:
            async with aiohttp.ClientSession() as session:
                statuses = []
                for _ in range(2):
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
                        statuses.append(answer.status)
                return statuses
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) == [500, 200]
