"""What a metric provider must do: answer an instant or a range query with plain floats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol


@dataclass(frozen=True)
class QueryResult:
    """A query's answer, flattened to floats.

    * ``scalar``: ``values`` holds the one value; ``series`` is 1.
    * ``vector``: one value per series, in the order the provider returned them.
    * ``matrix``: every point of every series, in time order (ties keep series order).

    An empty answer has ``values == []`` and ``series == 0``. NaN and +/-Inf are kept as
    floats. ``query`` is exactly the text sent; ``at`` (instant queries) and ``start`` /
    ``end`` (range queries) are the times sent, or None when the provider's "now" was used.
    """

    kind: Literal["scalar", "vector", "matrix"]
    values: list[float]
    series: int
    query: str
    start: datetime | None = None
    end: datetime | None = None
    at: datetime | None = None


class ProviderError(Exception):
    """The provider could not answer: network error, timeout, HTTP 4xx/5xx, bad query.

    The message names the HTTP status (when there was one) and the provider's own error
    text; ``status`` and ``error_type`` carry them for callers that branch on them.
    """

    def __init__(
        self, message: str, *, status: int | None = None, error_type: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


class MetricProvider(Protocol):
    async def query(self, query: str, at: datetime | None = None) -> QueryResult:
        """Evaluate ``query`` at ``at`` (the provider's now when None)."""

    async def query_range(
        self, query: str, start: datetime, end: datetime, step_seconds: float
    ) -> QueryResult:
        """Evaluate ``query`` from ``start`` to ``end`` every ``step_seconds``."""
