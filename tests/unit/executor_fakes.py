"""Stand-ins for the analysis executor's surroundings: the API server's AnalysisRun status
writes and Secrets, and a metric provider that records what it was sent."""

from __future__ import annotations

import base64
import copy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from sluice.api.analysis import AnalysisRunSpec
from sluice.controller.analysis import AnalysisExecutor
from sluice.metrics.base import ProviderError, QueryResult

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
ROLLOUT: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "ns"},
    "status": {"stableRevision": "s1", "stableSlot": "a", "canary": {"slot": "b"}},
}


class FakeKube:
    """Secrets (raw bytes per key) and status writes, with the API server's size limit."""

    def __init__(self, secrets: dict[str, dict[str, bytes]], max_bytes: int = 1_500_000) -> None:
        self.secrets = secrets
        self.max_bytes = max_bytes
        self.written: list[dict[str, Any]] = []
        self.refused = 0
        self.core = self

    def read_namespaced_secret(self, name: str, namespace: str) -> None:
        raise AssertionError("called through raw()")

    async def raw(self, fn: Any, name: str, namespace: str) -> dict[str, Any]:
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        data = {k: base64.b64encode(v).decode() for k, v in self.secrets[name].items()}
        return {"data": data}

    async def replace_status(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        if len(repr(body)) > self.max_bytes:
            self.refused += 1
            raise ApiException(status=500, reason="etcdserver: request is too large")
        written = copy.deepcopy(body)
        written["metadata"]["resourceVersion"] = str(len(self.written) + 2)
        self.written.append(written)
        return written


class Recording:
    """A provider that answers `value` (or raises `error`) and keeps every query sent."""

    def __init__(self, value: float = 0.0, error: str | None = None) -> None:
        self.value, self.error = value, error
        self.sent: list[str] = []

    async def query(self, query: str, at: datetime | None = None) -> QueryResult:
        self.sent.append(query)
        if self.error is not None:
            raise ProviderError(self.error.format(query=query))
        return QueryResult(kind="vector", values=[self.value], series=1, query=query, at=at)

    async def query_range(
        self, query: str, start: datetime, end: datetime, step_seconds: float
    ) -> QueryResult:
        self.sent.append(query)
        return QueryResult(kind="matrix", values=[self.value], series=1, query=query)


def run_body(metrics: list[dict[str, Any]], args: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    spec = AnalysisRunSpec.model_validate(
        {"metrics": metrics, "args": list(args), "kind": "background", "revision": "c1"}
    )
    return {
        "metadata": {"name": "web-c1-bg", "namespace": "ns", "resourceVersion": "1"},
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
    }


class Harness:
    """One AnalysisRun driven through the real executor's `step` on a moved-by-hand clock."""

    def __init__(self, body: dict[str, Any], kube: FakeKube, provider: Recording) -> None:
        self.body, self.kube, self.provider = body, kube, provider
        self.now = NOW

        async def factory(metric: Any, namespace: str) -> Recording:
            return provider

        self.executor = AnalysisExecutor(
            kube,  # type: ignore[arg-type]
            cache_lookup=lambda key: (self.body, ROLLOUT),
            wake_rollout=lambda key: None,
            store=self._store,
            clock=lambda: self.now,
            provider_factory=factory,
        )

    def _store(self, body: dict[str, Any]) -> None:
        self.body = body

    async def steps(self, n: int, seconds: float = 30.0) -> dict[str, Any]:
        for _ in range(n):
            await self.executor.step(("ns", "web", "web-c1-bg"))
            if (self.body.get("status") or {}).get("phase") not in (None, "Running"):
                break
            self.now += timedelta(seconds=seconds)
        return self.body.get("status") or {}
