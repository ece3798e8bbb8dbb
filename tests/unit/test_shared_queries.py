"""Identical Prometheus queries sent once: single flight, a cache no older than the window,
keyed by all that shapes the answer, and no error or timeout ever shared."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.unit.executor_fakes import ROLLOUT, FakeKube

from sluice.api.analysis import Metric
from sluice.controller.analysis import AnalysisExecutor
from sluice.metrics.base import ProviderError, QueryResult
from sluice.metrics.shared import SharedProvider, SharedQueries
from sluice.telemetry import REGISTRY

AT = datetime(2026, 11, 20, 10, 0, 0, 400_000, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Slow:
    """A provider whose answers wait for `gate`; records every request it gets."""

    def __init__(self, value: float = 1.0, fail: int = 0, timeout: float = 5.0) -> None:
        self.value, self.fail, self.timeout = value, fail, timeout
        self.gate = asyncio.Event()
        self.gate.set()
        self.asked: list[tuple[str, datetime | None]] = []

    async def query(self, query: str, at: datetime | None = None) -> QueryResult:
        self.asked.append((query, at))
        await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise ProviderError("HTTP 503")
        return QueryResult(kind="vector", values=[self.value], series=1, query=query, at=at)

    async def query_range(
        self, query: str, start: datetime, end: datetime, step_seconds: float
    ) -> QueryResult:
        self.asked.append((query, end))
        return QueryResult(
            kind="matrix", values=[self.value], series=1, query=query, start=start, end=end
        )


def counter(outcome: str) -> float:
    value = REGISTRY.get_sample_value("sluice_prometheus_queries_total", {"outcome": outcome})
    return value or 0.0


def test_identical_queries_in_flight_send_one_request() -> None:
    async def go() -> None:
        shared = SharedQueries(window=1.0)
        inner = Slow()
        inner.gate.clear()
        provider = shared.provider(inner, "prom-a")
        sent, deduplicated = counter("sent"), counter("deduplicated")
        asks = [asyncio.ensure_future(provider.query("up", AT)) for _ in range(50)]
        await asyncio.sleep(0.01)
        assert len(inner.asked) == 1  # the others wait for the one in flight
        inner.gate.set()
        answers = await asyncio.gather(*asks)
        assert [a.values for a in answers] == [[1.0]] * 50
        answers[0].values.append(99.0)  # each caller has its own list
        assert answers[1].values == [1.0]
        assert (shared.sent, shared.deduplicated) == (1, 49)
        assert counter("sent") - sent == 1
        assert counter("deduplicated") - deduplicated == 49

    asyncio.run(go())


def test_the_time_sent_is_the_window_start_and_each_window_asks_again() -> None:
    async def go() -> None:
        clock = Clock()
        shared = SharedQueries(window=1.0, clock=clock)
        inner = Slow()
        provider = shared.provider(inner, "prom-a")
        first = await provider.query("up", AT)
        assert inner.asked == [("up", AT.replace(microsecond=0))]
        assert first.at == AT.replace(microsecond=0)
        await provider.query("up", AT + timedelta(milliseconds=500))  # same second
        assert len(inner.asked) == 1
        await provider.query("up", AT + timedelta(milliseconds=700))  # the next second
        assert len(inner.asked) == 2

    asyncio.run(go())


def test_an_answer_is_not_kept_past_the_window() -> None:
    async def go() -> None:
        clock = Clock()
        shared = SharedQueries(window=2.0, clock=clock)
        inner = Slow()
        provider = shared.provider(inner, "prom-a")
        await provider.query("up", AT)
        clock.now += 1.9
        await provider.query("up", AT)
        assert len(inner.asked) == 1
        clock.now += 0.2  # 2.1 s after the request was sent: a late caller asks again
        await provider.query("up", AT)
        assert len(inner.asked) == 2

    asyncio.run(go())


def test_the_key_is_everything_that_shapes_the_answer() -> None:
    async def go() -> None:
        shared = SharedQueries(window=60.0)
        inner = Slow()
        tenant_a, tenant_b = shared.provider(inner, "id-a"), shared.provider(inner, "id-b")
        await tenant_a.query("up", AT)
        await tenant_b.query("up", AT)  # other credentials or headers: its own request
        await tenant_a.query("up == 1", AT)  # other text
        await tenant_a.query_range("up", AT - timedelta(minutes=5), AT, 15)
        await tenant_a.query_range("up", AT - timedelta(minutes=10), AT, 15)  # other range
        await tenant_a.query_range("up", AT - timedelta(minutes=5), AT, 30)  # other step
        assert len(inner.asked) == 6
        await tenant_a.query("up", AT)
        await tenant_b.query("up", AT)
        await tenant_a.query_range("up", AT - timedelta(minutes=5), AT, 15)
        assert len(inner.asked) == 6

    asyncio.run(go())


def test_a_failed_request_is_not_shared_and_not_kept() -> None:
    async def go() -> None:
        shared = SharedQueries(window=1.0)
        inner = Slow(fail=1)  # the first request fails, later ones answer
        inner.gate.clear()
        provider = shared.provider(inner, "prom-a")
        leader = asyncio.ensure_future(provider.query("up", AT))
        await asyncio.sleep(0.01)
        follower = asyncio.ensure_future(provider.query("up", AT))
        await asyncio.sleep(0.01)
        inner.gate.set()
        with pytest.raises(ProviderError, match="503"):
            await leader
        assert (await follower).values == [1.0]  # from a request of its own
        assert len(inner.asked) == 2
        inner.fail = 1
        with pytest.raises(ProviderError):  # the error was not kept as an answer either
            await provider.query("up", AT + timedelta(seconds=5))
        await provider.query("up", AT + timedelta(seconds=5))
        assert len(inner.asked) == 4

    asyncio.run(go())


def test_a_hanging_request_times_out_each_caller_on_its_own_deadline() -> None:
    async def go() -> None:
        shared = SharedQueries(window=1.0)
        inner = Slow(timeout=0.2)
        inner.gate.clear()  # never answers
        provider = shared.provider(inner, "prom-a")
        leader = asyncio.ensure_future(provider.query("up", AT))
        await asyncio.sleep(0.01)
        started = asyncio.get_running_loop().time()
        with pytest.raises(ProviderError, match=r"did not answer within 0\.2s"):
            await provider.query("up", AT)
        waited = asyncio.get_running_loop().time() - started
        assert 0.15 < waited < 1.0
        assert not leader.done()  # the follower's deadline did not cancel the flight
        leader.cancel()

    asyncio.run(go())


def test_a_cancelled_caller_does_not_cancel_the_request_of_the_others() -> None:
    async def go() -> None:
        shared = SharedQueries(window=1.0)
        inner = Slow()
        inner.gate.clear()
        provider = shared.provider(inner, "prom-a")
        leader = asyncio.ensure_future(provider.query("up", AT))
        await asyncio.sleep(0.01)
        follower = asyncio.ensure_future(provider.query("up", AT))
        await asyncio.sleep(0.01)
        leader.cancel()
        await asyncio.sleep(0.01)
        inner.gate.set()
        assert (await follower).values == [1.0]
        assert len(inner.asked) == 1

    asyncio.run(go())


def test_the_answers_kept_are_bounded() -> None:
    async def go() -> None:
        shared = SharedQueries(window=60.0, limit=3)
        provider = shared.provider(Slow(), "prom-a")
        for i in range(10):
            await provider.query(f"q{i}", AT)
        assert len(shared._answers) == 3

    asyncio.run(go())


def test_window_zero_shares_nothing() -> None:
    inner = Slow()
    assert SharedQueries(window=0).provider(inner, "prom-a") is inner


def test_the_executor_shares_only_within_one_configuration_credentials_included() -> None:
    kube = FakeKube({"tok-a": {"token": b"secret-a"}, "tok-b": {"token": b"secret-b"}})

    def metric(secret: str) -> Metric:
        return Metric.model_validate(
            {
                "name": "m",
                "provider": {
                    "prometheus": {
                        "address": "http://prometheus:9090",
                        "query": "up",
                        "bearerTokenSecretRef": {"name": secret, "key": "token"},
                    }
                },
                "successCondition": "result == 1",
            }
        )

    async def go() -> list[Any]:
        executor = AnalysisExecutor(
            kube,  # type: ignore[arg-type]
            cache_lookup=lambda key: None,
            wake_rollout=lambda key: None,
            store=lambda body: None,
        )
        ns = ROLLOUT["metadata"]["namespace"]
        return [
            await executor._prometheus(metric("tok-a"), ns),
            await executor._prometheus(metric("tok-a"), ns),
            await executor._prometheus(metric("tok-b"), ns),
        ]

    a, again, b = asyncio.run(go())
    assert isinstance(a, SharedProvider) and isinstance(b, SharedProvider)
    assert a is again
    assert a.identity != b.identity
    assert "secret-a" not in repr(a.identity)
