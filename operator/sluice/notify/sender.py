"""Delivery off the rollout's path: bounded queues, a lane per endpoint, retries with backoff.

`submit` is called from the reconciler when it posts an Event. It never waits: when the
intake queue is full the notification is dropped and counted. One dispatcher turns each
item into requests (settings and Secrets are cached reads) and hands every request to its
endpoint's lane: a bounded queue with its own sender. A hanging endpoint therefore holds
only its own lane; when the lane is full its notifications are dropped (and counted), and
after a few failed deliveries in a row its breaker opens, so its queue drains at once
instead of at ~22 s a notification, while every other endpoint keeps its pace.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from sluice import logs
from sluice import telemetry as M
from sluice.notify import message
from sluice.notify.config import CONFIGMAP, SecretRef, Settings, annotated, merge

log = logs.get("sluice.notify")
Body = dict[str, Any]
Key = tuple[str, str]
TTL = 30.0  # seconds a namespace's ConfigMap and Secrets are reused before re-reading
READ_TIMEOUT = 10.0  # a slow API read holds the one dispatcher: bounded
Request = tuple[str, str, bytes, dict[str, str]]  # channel, url, body, headers


class Source(Protocol):
    async def configmap(self, namespace: str) -> dict[str, str] | None: ...
    async def secret(self, namespace: str, ref: SecretRef) -> bytes | None: ...


class KubeSource:
    """ConfigMaps and Secrets read through the operator's capped client."""

    def __init__(self, kube: Any) -> None:
        self.kube = kube

    async def configmap(self, namespace: str) -> dict[str, str] | None:
        body = await self._read(self.kube.core.read_namespaced_config_map, CONFIGMAP, namespace)
        return None if body is None else dict(body.get("data") or {})

    async def secret(self, namespace: str, ref: SecretRef) -> bytes | None:
        body = await self._read(self.kube.core.read_namespaced_secret, ref.name, namespace)
        value = ((body or {}).get("data") or {}).get(ref.key)
        return None if value is None else base64.b64decode(value).strip()

    async def _read(self, fn: Any, name: str, namespace: str) -> Body | None:
        from kubernetes.client.exceptions import ApiException

        try:
            body: Body = await self.kube.raw(fn, name, namespace)
            return body
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


@dataclass
class Item:
    key: Key
    event: str
    reason: str
    message: str
    when: str
    annotations: dict[str, str]
    queued: float = field(default_factory=time.monotonic)
    rollout: Body | None = None  # as the decision left it (its status is written after)


@dataclass
class Lane:
    """One endpoint's queue, sender and breaker."""

    queue: asyncio.Queue[tuple[Request, Item]]
    failures: int = 0  # failed deliveries in a row
    open_until: float = 0.0  # the breaker is open (nothing is sent) until then
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Notifier:
    def __init__(
        self,
        source: Source,
        lookup: Callable[[Key], tuple[Body | None, list[Body]]],
        queue_size: int = 256,
        workers: int = 1,
        timeout: float = 5.0,
        attempts: int = 4,
        backoff: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        lane_size: int = 64,
        max_lanes: int = 512,
        trip: int = 3,
        cooldown: float = 60.0,
        idle: float = 300.0,
    ) -> None:
        self.source, self.lookup = source, lookup
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=queue_size)
        self.workers, self.timeout, self.attempts, self.backoff = (
            workers,
            timeout,
            attempts,
            backoff,
        )
        self.clock = clock
        # Per endpoint: `workers` senders, `lane_size` waiting; `trip` failed deliveries in
        # a row open the breaker for `cooldown` s; a lane idle for `idle` s is let go.
        self.lane_size, self.max_lanes = lane_size, max_lanes
        self.trip, self.cooldown, self.idle = trip, cooldown, idle
        self.lanes: dict[str, Lane] = {}
        self.configmaps: dict[str, tuple[float, dict[str, str] | None]] = {}
        self.secrets: dict[tuple[str, SecretRef], tuple[float, bytes | None]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ the reconciler's side

    def submit(self, rollout: Body, note: Any, when: str = "") -> None:
        """Queue a notification for an Event; never blocks, never raises."""
        try:
            event = message.kind_of(note.reason)
            if event is None:
                return
            meta = rollout["metadata"]
            annotations = dict(meta.get("annotations") or {})
            cached = self.configmaps.get(meta["namespace"])
            fresh = cached is not None and self.clock() - cached[0] < TTL
            if fresh and cached and cached[1] is None and not annotated(annotations):
                return  # known: nothing configured for this namespace or Rollout
            item = Item(
                (meta["namespace"], meta["name"]), event, note.reason, note.message, when,
                annotations, rollout=rollout,
            )  # fmt: skip
            self.queue.put_nowait(item)
            M.NOTIFY_QUEUE.set(self.queue.qsize())
        except asyncio.QueueFull:
            M.NOTIFICATIONS.labels("any", "dropped").inc()
            log.warning("notification dropped: queue full", reason=note.reason)
        except Exception as exc:  # a notification is never worth a failed reconcile
            log.warning("notification not queued", error=str(exc)[:200])

    # ------------------------------------------------------------ running

    def start(self) -> None:
        self.session = aiohttp.ClientSession()
        self.tasks = [asyncio.create_task(self._dispatch(), name="notify-dispatch")]

    async def stop(self) -> None:
        tasks = self.tasks + [t for lane in self.lanes.values() for t in lane.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.lanes.clear()
        if self.session is not None:
            await self.session.close()

    def _depth(self) -> int:
        return self.queue.qsize() + sum(lane.queue.qsize() for lane in self.lanes.values())

    async def _dispatch(self) -> None:
        while True:
            item = await self.queue.get()
            M.NOTIFY_QUEUE.set(self._depth())
            try:
                await self.handle(item)
            except Exception as exc:
                log.warning("notification failed", rollout=item.key[1], error=str(exc)[:300])
            finally:
                self.queue.task_done()

    async def handle(self, item: Item) -> None:
        """Resolve where the item goes and queue one request per endpoint; never sends."""
        namespace = item.key[0]
        settings = merge(await self._configmap(namespace), item.annotations)
        if not settings.any:
            return
        cached, runs = self.lookup(item.key)
        rollout = item.rollout or cached
        if rollout is None:
            return
        sends = [(item.event, item.reason, item.message)]
        if item.event == "step-completed":
            text = message.step_completed(rollout, item.message)
            sends = [(item.event, item.reason, text)] if text else []
            if message.waits_for_promote(rollout, item.message):
                # What on-call needs to hear at a manual pause is "paused for you".
                name = rollout["metadata"]["name"]
                text = f"{item.message}: waiting for `kubectl sluice promote {name}`"
                sends.append(("paused", "Paused", text))
        for event, reason, text in sends:
            if event not in settings.events:
                continue
            body = message.payload(event, reason, text, item.when, rollout, runs)
            if event == "step-completed":
                body["completedStep"] = message.step_index(item.message, -1)
            for request in await self._requests(namespace, settings, body):
                self._enqueue(request, item)

    def _enqueue(self, request: Request, item: Item) -> None:
        channel, url = request[0], request[1]
        lane = self.lanes.get(url)
        if lane is None:
            if len(self.lanes) >= self.max_lanes:
                M.NOTIFICATIONS.labels(channel, "dropped").inc()
                log.warning("notification dropped: too many endpoints", rollout=item.key[1])
                return
            lane = self.lanes[url] = Lane(asyncio.Queue(maxsize=self.lane_size))
            lane.tasks = [
                asyncio.create_task(self._send(url, lane), name=f"notify-lane-{i}")
                for i in range(self.workers)
            ]
        try:
            lane.queue.put_nowait((request, item))
        except asyncio.QueueFull:
            M.NOTIFICATIONS.labels(channel, "dropped").inc()
            log.warning("notification dropped: endpoint backlog full", rollout=item.key[1])
        M.NOTIFY_QUEUE.set(self._depth())

    async def _send(self, url: str, lane: Lane) -> None:
        """One endpoint's sender: in order, and closed for a while after repeated failures."""
        while True:
            try:
                request, item = await asyncio.wait_for(lane.queue.get(), self.idle)
            except TimeoutError:
                if not lane.queue.empty():
                    continue
                lane.tasks = [t for t in lane.tasks if t is not asyncio.current_task()]
                if not lane.tasks and self.lanes.get(url) is lane:
                    del self.lanes[url]  # idle: a new notification starts a new lane
                return
            M.NOTIFY_QUEUE.set(self._depth())
            channel = request[0]
            try:
                if self.clock() < lane.open_until:
                    M.NOTIFICATIONS.labels(channel, "dropped").inc()
                    log.warning("notification dropped: endpoint failing", rollout=item.key[1])
                    continue
                # Half-open (the first try after a cooldown): one try decides, no retries.
                tries = 1 if lane.failures >= self.trip else self.attempts
                if await self.deliver(*request, item, attempts=tries):
                    lane.failures = 0
                else:
                    lane.failures += 1
                    if lane.failures >= self.trip:
                        lane.open_until = self.clock() + self.cooldown
                        log.warning("notification endpoint failing: paused", channel=channel)
            except Exception as exc:
                log.warning("notification failed", rollout=item.key[1], error=str(exc)[:300])
            finally:
                lane.queue.task_done()

    async def _requests(self, namespace: str, settings: Settings, body: Body) -> list[Request]:
        out: list[Request] = []
        if settings.webhook_url:
            raw = message.encode(body)
            headers = {
                "Content-Type": "application/json",
                "X-Sluice-Event": body["event"],
                "X-Sluice-Delivery": uuid.uuid4().hex,
            }
            if settings.webhook_secret:
                secret = await self._secret(namespace, settings.webhook_secret)
                if secret is None:
                    log.warning(
                        "webhook secret missing: not sent", secret=settings.webhook_secret.name
                    )
                    M.NOTIFICATIONS.labels("webhook", "failed").inc()
                else:
                    headers["X-Sluice-Signature"] = message.signature(secret, raw)
                    out.append(("webhook", settings.webhook_url, raw, headers))
            else:
                out.append(("webhook", settings.webhook_url, raw, headers))
        slack_url = settings.slack_url
        if settings.slack_url_secret:
            secret = await self._secret(namespace, settings.slack_url_secret)
            slack_url = secret.decode() if secret else None
        if slack_url:
            raw = message.encode(message.slack(body))
            out.append(("slack", slack_url, raw, {"Content-Type": "application/json"}))
        return out

    async def deliver(
        self,
        channel: str,
        url: str,
        raw: bytes,
        headers: dict[str, str],
        item: Item,
        attempts: int | None = None,
    ) -> bool:
        assert self.session is not None, "start() first"
        why = ""
        for attempt in range(self.attempts if attempts is None else attempts):
            if attempt:
                M.NOTIFICATIONS.labels(channel, "retried").inc()
                await asyncio.sleep(min(self.backoff * 2 ** (attempt - 1), 30.0))
            try:
                timeout = aiohttp.ClientTimeout(total=self.timeout)
                async with self.session.post(url, data=raw, headers=headers, timeout=timeout) as r:
                    if r.status < 300:
                        M.NOTIFICATIONS.labels(channel, "delivered").inc()
                        M.NOTIFY_SECONDS.labels(channel).observe(time.monotonic() - item.queued)
                        return True
                    why = f"HTTP {r.status}"
                    if r.status < 500 and r.status != 429:
                        break  # the endpoint refuses this request: a retry changes nothing
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = f"{type(exc).__name__}: {exc}"[:200]
        M.NOTIFICATIONS.labels(channel, "failed").inc()
        log.warning("notification not delivered", channel=channel, rollout=item.key[1], error=why)
        return False

    # ------------------------------------------------------------ cached reads

    async def _configmap(self, namespace: str) -> dict[str, str] | None:
        cached = self.configmaps.get(namespace)
        if cached and self.clock() - cached[0] < TTL:
            return cached[1]
        try:
            value = await asyncio.wait_for(self.source.configmap(namespace), READ_TIMEOUT)
        except Exception as exc:  # keep the last good answer
            log.warning(
                "notifications ConfigMap unreadable", namespace=namespace, error=str(exc)[:200]
            )
            return cached[1] if cached else None
        self.configmaps[namespace] = (self.clock(), value)
        return value

    async def _secret(self, namespace: str, ref: SecretRef) -> bytes | None:
        cached = self.secrets.get((namespace, ref))
        if cached and self.clock() - cached[0] < TTL:
            return cached[1]
        try:
            value = await asyncio.wait_for(self.source.secret(namespace, ref), READ_TIMEOUT)
        except Exception as exc:
            log.warning("notification secret unreadable", secret=ref.name, error=str(exc)[:200])
            return cached[1] if cached else None
        self.secrets[(namespace, ref)] = (self.clock(), value)
        return value
