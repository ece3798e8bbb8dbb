"""Identical Prometheus queries of many AnalysisRuns, sent once.

A fleet of Rollouts analysed with one template and the same arguments asks the same
question every interval. Two queries are the same when everything that shapes the
answer is: the provider's identity (address, timeout, headers, credentials, TLS: the
executor hashes its whole configuration, secrets included, so an answer is never shared
across credentials), the kind (instant, range), the query text after its placeholders
were filled, and the evaluation time rounded down to ``window`` seconds (the time sent is
that rounded one, so every sharer gets exactly the answer to its own request).

* Single flight: a query already in flight is joined, not sent again.
* A short cache: an answer is kept ``window`` seconds from when its request was sent,
  never longer (a stale answer could pass a canary on old data), and for at most
  ``limit`` queries.
* Errors are never shared: a failed request is not kept, and whoever had joined it sends
  its own (within what is left of its own timeout), so one caller's error or timeout
  never becomes another's answer, nor another's error.

Each request still goes through its provider, so the per-address thread pools keep one
hanging Prometheus from holding anyone else's queries; a caller that joins a flight holds
no thread at all.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sluice import telemetry as M
from sluice.metrics.base import MetricProvider, ProviderError, QueryResult

DEFAULT_WINDOW = 1.0  # seconds: below any scrape interval, so the data cannot be older
DEFAULT_LIMIT = 10_000  # answers kept at once

Key = tuple[Hashable, ...]


class SharedQueries:
    """The flights and answers of one process (one event loop)."""

    def __init__(
        self,
        window: float = DEFAULT_WINDOW,
        limit: int = DEFAULT_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window, self.limit, self.clock = window, limit, clock
        self._answers: OrderedDict[Key, tuple[float, QueryResult]] = OrderedDict()
        self._flights: dict[Key, asyncio.Task[QueryResult]] = {}
        self.sent = 0
        self.deduplicated = 0

    def provider(self, inner: MetricProvider, identity: Hashable) -> MetricProvider:
        """`inner` with its identical queries shared (`identity`: all of its configuration)."""
        return inner if self.window <= 0 else SharedProvider(self, inner, identity)

    def bucket(self, moment: datetime) -> tuple[int, datetime]:
        """The window `moment` falls in, and that window's start (the time to send)."""
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        index = math.floor(aware.timestamp() / self.window)
        return index, datetime.fromtimestamp(index * self.window, UTC)

    async def ask(
        self,
        key: Key,
        fetch: Callable[[], Awaitable[QueryResult]],
        timeout: float,
        name: str = "Prometheus",
    ) -> QueryResult:
        """The answer to `fetch()` (identified by `key`), asked once for all who ask it
        now; `timeout` is this caller's own deadline, `name` words its timeout."""
        started = self.clock()
        kept = self._answers.get(key)
        if kept is not None:
            if kept[0] > started:
                return self._shared(kept[1])
            del self._answers[key]
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._fly(key, fetch))
            flight.add_done_callback(_retrieved)  # its error may have no one left to see it
            self._flights[key] = flight
            self._count("sent")
            # shielded: the caller giving up (cancelled) does not cancel it for the others
            return self._own(await asyncio.shield(flight))
        try:
            result = await asyncio.wait_for(asyncio.shield(flight), timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not this caller's error: it asks for itself, within its own deadline.
            left = timeout - (self.clock() - started)
            if left <= 0:
                raise ProviderError(f"{name} did not answer within {timeout:g}s") from None
            self._count("sent")
            try:
                return await asyncio.wait_for(fetch(), left)
            except TimeoutError:
                raise ProviderError(f"{name} did not answer within {timeout:g}s") from None
        return self._shared(result)

    async def _fly(self, key: Key, fetch: Callable[[], Awaitable[QueryResult]]) -> QueryResult:
        sent_at = self.clock()
        try:
            result = await fetch()
        finally:
            self._flights.pop(key, None)
        self._keep(key, sent_at + self.window, result)
        return result

    def _keep(self, key: Key, expires: float, result: QueryResult) -> None:
        now = self.clock()
        while self._answers:  # the oldest first: drop what has expired
            oldest = next(iter(self._answers.values()))
            if oldest[0] > now and len(self._answers) < self.limit:
                break
            self._answers.popitem(last=False)
        if expires > now and self.limit > 0:
            self._answers[key] = (expires, result)

    def _shared(self, result: QueryResult) -> QueryResult:
        self._count("deduplicated")
        return self._own(result)

    @staticmethod
    def _own(result: QueryResult) -> QueryResult:
        return replace(result, values=list(result.values))  # no caller edits another's list

    def _count(self, outcome: str) -> None:
        if outcome == "sent":
            self.sent += 1
        else:
            self.deduplicated += 1
        M.PROMETHEUS_QUERIES.labels(outcome).inc()


def _retrieved(flight: asyncio.Task[QueryResult]) -> None:
    if not flight.cancelled():
        flight.exception()


class SharedProvider:
    """A MetricProvider whose identical queries go through one SharedQueries."""

    def __init__(self, shared: SharedQueries, inner: MetricProvider, identity: Hashable) -> None:
        self.shared, self.inner, self.identity = shared, inner, identity
        self.timeout = float(getattr(inner, "timeout", 30.0))
        self.name = f"Prometheus {getattr(inner, 'url', '')}".strip()

    async def query(self, query: str, at: datetime | None = None) -> QueryResult:
        if at is None:  # "now" of the provider: no time to share on
            return await self.inner.query(query, at)
        index, when = self.shared.bucket(at)
        key = (self.identity, "query", query, index)
        return await self.shared.ask(
            key, lambda: self.inner.query(query, when), self.timeout, self.name
        )

    async def query_range(
        self, query: str, start: datetime, end: datetime, step_seconds: float
    ) -> QueryResult:
        length = (end - start).total_seconds()
        index, last = self.shared.bucket(end)
        first = last - (end - start)
        key = (self.identity, "range", query, index, round(length, 3), step_seconds)

        def fetch() -> Awaitable[QueryResult]:
            return self.inner.query_range(query, first, last, step_seconds)

        return await self.shared.ask(key, fetch, self.timeout, self.name)

    def __getattr__(self, name: str) -> Any:  # url, close() ... of the provider it wraps
        return getattr(self.inner, name)
