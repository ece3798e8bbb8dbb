"""The analysis executor: takes the measurements AnalysisRuns are due for, writes their status.

One queue and one timer heap for all runs (like the Rollouts'): a run is woken when
its next measurement is due; the queries of one run go out together; a verdict
wakes the owning Rollout at once, without waiting for the watch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from sluice import logs
from sluice import telemetry as M
from sluice.analysis import runstate
from sluice.analysis.judge_metric import new_verdicts
from sluice.analysis.measure import ArgError, advance, field_value, measure, run_values
from sluice.api.analysis import (
    MAX_TIMEOUT,
    AnalysisRunSpec,
    AnalysisRunStatus,
    Measurement,
    Metric,
)
from sluice.api.duration import parse_duration
from sluice.api.rollout import GROUP, VERSION
from sluice.cluster import labels as L
from sluice.cluster.events import event_body, event_name
from sluice.cluster.kube import Kube
from sluice.cluster.wire import strip_empty
from sluice.engine.timefmt import fmt
from sluice.engine.types import EventNote
from sluice.metrics.base import MetricProvider
from sluice.metrics.prometheus import PrometheusProvider
from sluice.metrics.shared import DEFAULT_WINDOW, SharedQueries

log = logs.get("sluice.analysis")

Body = dict[str, Any]
RunKey = tuple[str, str, str]  # (namespace, rollout, run name)
__all__ = ["AnalysisExecutor", "SecretReader", "field_value", "owner_of"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SecretReader:
    """Secrets for provider credentials and args, read when needed and kept a minute."""

    def __init__(self, kube: Kube, ttl: float = 60.0) -> None:
        self.kube, self.ttl = kube, ttl
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    async def value(self, namespace: str, name: str, key: str) -> str:
        hit = self._cache.get((namespace, name))
        if hit is None or time.monotonic() - hit[0] > self.ttl:
            body = await self.kube.raw(self.kube.core.read_namespaced_secret, name, namespace)
            hit = (time.monotonic(), dict(body.get("data") or {}))
            self._cache[(namespace, name)] = hit
        if key not in hit[1]:
            raise KeyError(f"Secret {namespace}/{name} has no key {key!r}")
        try:  # decoded per key: one binary key must not spoil the others
            return base64.b64decode(hit[1][key], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ArgError(f"Secret {namespace}/{name} key {key!r} is not UTF-8 text") from None


class AnalysisExecutor:
    def __init__(
        self,
        kube: Kube,
        cache_lookup: Callable[[RunKey], tuple[Body, Body | None] | None],
        wake_rollout: Callable[[tuple[str, str]], None],
        store: Callable[[Body], object],
        workers: int = 8,
        clock: Callable[[], datetime] = _utcnow,
        provider_factory: Callable[..., Awaitable[MetricProvider]] | None = None,
        query_window: float = DEFAULT_WINDOW,
    ) -> None:
        from sluice.controller.workqueue import WorkQueue

        self.kube = kube
        self.lookup = cache_lookup  # run key -> (run body, owning rollout body)
        self.wake_rollout = wake_rollout
        self.store = store  # put a body we wrote into the watch cache
        self.queue: WorkQueue[RunKey] = WorkQueue()
        self.workers = workers
        self.clock = clock
        self.secrets = SecretReader(kube)
        self.provider_factory = provider_factory or self._prometheus
        self.tasks: list[asyncio.Task[None]] = []
        self.running: set[asyncio.Task[None]] = set()
        # Steps in flight at once; Kubernetes calls are capped by the Kube pool anyway,
        # queries per Prometheus address by the provider.
        self.slots = asyncio.Semaphore(max(64, workers * 32))
        self.providers: dict[tuple[Any, ...], MetricProvider] = {}
        # Identical queries of different runs within query_window seconds: one request
        # (0: every measurement sends its own).
        self.shared = SharedQueries(window=query_window)

    def run_event(self, kind: str | None, body: Body) -> None:
        owner = owner_of(body)
        if owner is None:
            return
        key = (body["metadata"]["namespace"], owner, body["metadata"]["name"])
        if kind == "DELETED":
            self.queue.forget(key)
        else:
            self.queue.add(key)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.queue.run_timers(), name="analysis-timers")]
        self.tasks.append(asyncio.create_task(self._dispatch(), name="analysis-dispatch"))

    async def stop(self) -> None:
        for task in [*self.tasks, *self.running]:
            task.cancel()
        await asyncio.gather(*self.tasks, *self.running, return_exceptions=True)

    async def _dispatch(self) -> None:
        """Each due run is stepped in a task of its own: a run waiting on a provider that
        does not answer holds no worker another run needs. The queue hands out a run
        once at a time, so there are at most as many tasks as runs (and max_steps)."""
        while True:
            key = await self.queue.get()
            await self.slots.acquire()
            task = asyncio.create_task(self._one(key), name=f"analysis-{key[2]}")
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _one(self, key: RunKey) -> None:
        try:
            await self.step(key)
        except Exception as exc:
            log.warning(
                "analysis step failed; retrying",
                run=key[2],
                namespace=key[0],
                error=str(exc)[:300],
            )
            self.queue.add_after(key, 2.0)
        finally:
            self.queue.done(key)
            self.slots.release()

    # ------------------------------------------------------------ one run

    async def step(self, key: RunKey) -> None:
        found = self.lookup(key)
        if found is None:
            return
        body, rollout = found
        try:
            spec = AnalysisRunSpec.model_validate(body.get("spec") or {})
            status = AnalysisRunStatus.model_validate(body.get("status") or {})
        except ValidationError as exc:
            log.warning("analysis run unreadable", run=key[2], error=str(exc)[:300])
            await self._unreadable(key, body, rollout, exc)
            return
        if spec.kind == "alert":
            return  # written complete by the alert receiver; nothing to measure
        before = status.phase
        take: Callable[[Metric], Awaitable[Measurement]] | None = None
        if rollout is not None:
            owner = rollout

            async def take(metric: Metric) -> Measurement:
                return await self.measure(spec, metric, owner)

        earlier = status
        status, taken = await advance(spec, status, self.clock, take)
        for _, measurement in taken:
            M.MEASUREMENTS.labels(measurement.phase).inc()
        M.record_analysis(key[0], key[1], status, taken)
        if rollout is not None:  # before the write: a kill then tells it again, never not
            await self._judge_events(key, rollout, earlier, status)
        if status != AnalysisRunStatus.model_validate(body.get("status") or {}):
            await self._write(key, body, status)
        if status.phase != before and rollout is not None:
            log.info(
                "analysis verdict",
                run=key[2],
                namespace=key[0],
                phase=status.phase,
                message=status.message,
            )
            self.wake_rollout((key[0], key[1]))
        _, wait = runstate.due(spec, status, self.clock())
        if wait is not None:
            self.queue.add_after(key, wait)

    async def _judge_events(
        self, key: RunKey, rollout: Body, before: AnalysisRunStatus, after: AnalysisRunStatus
    ) -> None:
        """An Event on the Rollout for each judge metric's verdict, named after the run and
        metric so a verdict told again (after a kill) is not a second Event."""
        for metric, reason, result in new_verdicts(before, after):
            text = f"analysis run {key[2]}: {metric}: {result.message()}"
            note = EventNote(reason, text, "Normal" if result.verdict == "Pass" else "Warning")
            try:
                M.API_CALLS.labels("event").inc()
                name = event_name(rollout, note, f"{key[2]}/{metric}")
                await self.kube.create_event(key[0], event_body(rollout, note, self.clock(), name))
            except ApiException as exc:
                if exc.status != 409:  # 409: told before the kill
                    log.warning("event not posted", reason=reason, error=str(exc.reason))

    async def _unreadable(
        self, key: RunKey, body: Body, rollout: Body | None, exc: ValidationError
    ) -> None:
        """A run the models refuse (made before a bound existed, or edited by hand) cannot
        be measured: an Error verdict that pauses for a human, never silence."""
        if (body.get("status") or {}).get("phase") in runstate.TERMINAL:
            return
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
        now = fmt(self.clock())
        status = AnalysisRunStatus(
            phase="Error",
            message=f"run unreadable: spec.{where}: {first['msg']}"[:1000],
            started_at=now,
            finished_at=now,
            on_error="pause",
        )
        await self._write(key, body, status)
        if rollout is not None:
            self.wake_rollout((key[0], key[1]))

    async def _write(self, key: RunKey, body: Body, status: AnalysisRunStatus) -> None:
        try:
            await self._replace(key, body, status)
        except ApiException as exc:
            if exc.status not in (413, 422, 500):
                raise
            # Too large to write (or refused): keep the verdict and counters, drop the
            # measurements' detail, rather than lose the verdict in a loop of failed writes.
            log.warning(
                "analysis status refused; writing it without measurements",
                run=key[2],
                namespace=key[0],
                status=exc.status,
            )
            bare = [r.model_copy(update={"measurements": []}) for r in status.metric_results]
            await self._replace(key, body, status.model_copy(update={"metric_results": bare}))

    async def _replace(self, key: RunKey, body: Body, status: AnalysisRunStatus) -> None:
        meta = body["metadata"]
        payload = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AnalysisRun",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": body.get("spec"),
            "status": strip_empty(status.model_dump(by_alias=True)),
        }
        M.API_CALLS.labels("analysis_status").inc()
        try:
            written = await self.kube.replace_status("analysisruns", payload)
        except ApiException as exc:
            if exc.status in (404, 409):
                self.queue.add_after(key, 0.2)
                return
            raise
        self.store({**written, "kind": "AnalysisRun"})

    # ------------------------------------------------------------ one measurement

    async def measure(self, spec: AnalysisRunSpec, metric: Metric, rollout: Body) -> Measurement:
        return await measure(
            metric,
            values=lambda: self._values(spec, rollout),
            provider=lambda: self.provider_factory(metric, rollout["metadata"]["namespace"]),
            clock=self.clock,
            errors=(ApiException,),
            reason=lambda exc: exc.reason if isinstance(exc, ApiException) else exc,
        )

    async def _values(self, spec: AnalysisRunSpec, rollout: Body) -> dict[str, str]:
        return await run_values(spec, rollout, self.secrets.value)

    async def _prometheus(self, metric: Metric, namespace: str) -> MetricProvider:
        prom = metric.provider.prometheus
        headers = {h.name: h.value for h in prom.headers}
        if prom.bearer_token_secret_ref is not None:
            ref = prom.bearer_token_secret_ref
            token = await self.secrets.value(namespace, ref.name, ref.key)
            headers["Authorization"] = f"Bearer {token}"
        basic = None
        if prom.basic_auth_secret_ref is not None:
            ref2 = prom.basic_auth_secret_ref
            basic = (
                await self.secrets.value(namespace, ref2.name, ref2.username_key),
                await self.secrets.value(namespace, ref2.name, ref2.password_key),
            )
        ca = None
        if prom.ca_secret_ref is not None:
            ca = await self.secrets.value(
                namespace, prom.ca_secret_ref.name, prom.ca_secret_ref.key
            )
        key = (prom.address, prom.timeout, tuple(sorted(headers.items())), basic, ca, prom.insecure)
        provider = self.providers.get(key)
        if provider is None:  # one per configuration, so connections are reused
            direct = PrometheusProvider(
                prom.address,
                timeout=min(parse_duration(prom.timeout), MAX_TIMEOUT),
                headers=headers,
                basic_auth=basic,
                ca_pem=ca,
                insecure=prom.insecure,
            )
            # Shared only with the same configuration, credentials included (hashed, so
            # the sharing keys hold no secret).
            identity = hashlib.sha256(repr(key).encode()).hexdigest()
            provider = self.shared.provider(direct, identity)
            self.providers[key] = provider
        return provider


def owner_of(body: Body) -> str | None:
    return (body["metadata"].get("labels") or {}).get(L.ROLLOUT)
