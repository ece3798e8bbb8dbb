"""Leader election on a coordination.k8s.io/v1 Lease: of N replicas, exactly one acts.

Safety rests on two durations and no wall clock: a standby takes a Lease over only once
its record (holder, renewTime, resourceVersion) has not changed for `lease_duration`
seconds *as measured by the standby since it first saw that record*; the leader stops
acting once `renew_deadline` (< lease_duration) has passed since the start of its last
successful renewal. The leader therefore stops before any standby may start, whatever
the two hosts' clocks say, as long as they tick at about the same rate.

"Stops acting" is enforced twice: `check()` is called right before every Kubernetes
call of the operator (cluster/kube.py), so a leader that was frozen (SIGSTOP, a long GC
pause, a partitioned node) refuses its first write when it wakes; and the renew loop
calls `on_lost`, which ends the process so that Kubernetes restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

from sluice import logs, telemetry

log = logs.get("sluice.leader")

Body = dict[str, Any]


class NotLeader(RuntimeError):
    """Raised instead of a Kubernetes call by a replica that does not hold the Lease."""


class Conflict(Exception):
    """The Lease changed since it was read (409), or already exists on create."""


class LeaseStore(Protocol):
    """Plain-JSON get/create/replace of one Lease; blocking (runs on a thread)."""

    def get(self) -> Body | None: ...

    def create(self, body: Body) -> Body: ...

    def replace(self, body: Body) -> Body: ...


def default_identity() -> str:
    """Pod name (the hostname in a pod) plus a random suffix: a restart is a new candidate."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def micro_time(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError(
                "need 0 < retry period < renew deadline < lease duration, got "
                f"{retry_period} / {renew_deadline} / {lease_duration}"
            )
        self.store, self.identity = store, identity
        self.lease_duration, self.renew_deadline = lease_duration, renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        self.renewed_at: float | None = None  # start of the last successful acquire/renew
        self.lost = False
        self.lease: Body | None = None
        self.taken_from: str | None = None  # the holder before this replica, if any
        self.task: asyncio.Task[None] | None = None
        telemetry.LEADER.set(0)

    # ------------------------------------------------------------ the guard

    def leading(self) -> bool:
        if self.lost or self.renewed_at is None:
            return False
        return self.clock() - self.renewed_at < self.renew_deadline

    def check(self) -> None:
        """Raise NotLeader unless this replica may act right now."""
        if not self.leading():
            raise NotLeader(f"{self.identity} does not hold the Lease (or could not renew it)")

    # ------------------------------------------------------------ acquire

    async def acquire(self) -> None:
        """Return once this replica holds the Lease; a standby waits here."""
        seen: tuple[Any, ...] | None = None
        seen_at = self.clock()
        announced = False
        while True:
            started = self.clock()
            try:
                current = await self._run(self.store.get)
                if current is None:
                    self.lease = await self._run(self.store.create, self._record(None))
                    return self._won(started, "created")
                spec = current.get("spec") or {}
                record = (
                    spec.get("holderIdentity"),
                    spec.get("renewTime"),
                    current["metadata"].get("resourceVersion"),
                )
                # Count from when the answer arrived, not when it was asked for: the
                # record may have been written while the request was in flight.
                answered = self.clock()
                if record != seen:
                    seen, seen_at = record, answered
                holder = spec.get("holderIdentity") or ""
                duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
                if not holder or holder == self.identity or answered - seen_at >= duration:
                    self.lease = await self._run(self.store.replace, self._record(current))
                    self.taken_from = holder or None
                    return self._won(started, f"taken over from {holder or 'nobody'}")
                if not announced:
                    log.info("standing by", holder=holder, identity=self.identity)
                    announced = True
            except Conflict:
                pass  # someone else wrote first: read again
            except Exception as exc:
                log.warning("lease unreadable", error=str(exc)[:200])
            await asyncio.sleep(self.retry_period)

    def _won(self, started: float, how: str) -> None:
        self.renewed_at = started
        telemetry.LEADER.set(1)
        telemetry.LEADER_TRANSITIONS.inc()
        log.info("leading", identity=self.identity, how=how)

    def _record(self, current: Body | None) -> Body:
        now = micro_time()
        if current is None:
            return {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "", "namespace": ""},  # the store fills them in
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": int(self.lease_duration),
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
        spec = dict(current.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.lease_duration),
            renewTime=now,
        )
        return {**current, "spec": spec}

    # ------------------------------------------------------------ renew

    def start_renewing(self, on_lost: Callable[[str], None]) -> None:
        self.task = asyncio.create_task(self._renew_loop(on_lost))

    async def _renew_loop(self, on_lost: Callable[[str], None]) -> None:
        while True:
            await asyncio.sleep(self.retry_period)
            started = self.clock()
            why = await self._renew()
            if why is None:
                # The record changed after `started`: a standby counts from then, so the
                # deadline may too. (A renewal that took longer than the deadline leaves
                # the guard closed until the next one.)
                self.renewed_at = started
                continue
            if why != "taken" and self.leading():
                log.warning("lease renewal failed, retrying", error=why)
                continue
            self._lose(why)
            on_lost(why)
            return

    async def _renew(self) -> str | None:
        """None when renewed; else why not ("taken" when another replica holds it).

        The replace carries the resourceVersion just read, so it fails if anyone else
        wrote the Lease since: a leader that was paused past its deadline renews only
        if nobody has taken over meanwhile.
        """
        timeout = max(self.retry_period, self.renew_deadline / 2)
        try:
            current = await asyncio.wait_for(self._run(self.store.get), timeout)
            holder = ((current or {}).get("spec") or {}).get("holderIdentity")
            if current is None or holder != self.identity:
                return "taken"
            self.lease = await asyncio.wait_for(
                self._run(self.store.replace, self._record(current)), timeout
            )
            return None
        except Conflict:
            return "taken"
        except Exception as exc:
            return str(exc)[:200] or type(exc).__name__

    def _lose(self, why: str) -> None:
        self.lost = True
        telemetry.LEADER.set(0)
        log.error("leadership lost: stopping", identity=self.identity, why=why)

    async def release(self) -> None:
        """On a clean shutdown: hand the Lease over at once instead of after it expires."""
        if self.task is not None:
            self.task.cancel()
        if not self.leading() or self.lease is None:
            return
        self.lost = True
        telemetry.LEADER.set(0)
        spec = {**(self.lease.get("spec") or {}), "holderIdentity": "", "renewTime": micro_time()}
        try:
            await asyncio.wait_for(self._run(self.store.replace, {**self.lease, "spec": spec}), 5)
            log.info("lease released", identity=self.identity)
        except Exception as exc:
            log.warning("lease not released", error=str(exc)[:200])

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)


def exit_process(why: str) -> None:
    """on_lost for `sluice run`: end now; Kubernetes restarts the pod as a standby."""
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)


class KubeLeaseStore:
    """LeaseStore over the official client's CoordinationV1Api (plain JSON in and out)."""

    def __init__(self, client: Any, namespace: str, name: str, timeout: float = 5.0) -> None:
        import kubernetes

        self.api = kubernetes.client.CoordinationV1Api(client)
        self.namespace, self.name, self.timeout = namespace, name, timeout

    def _json(self, fn: Callable[..., Any], *args: Any) -> Body:
        from kubernetes.client.exceptions import ApiException

        try:
            response = fn(*args, _preload_content=False, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(str(exc.reason)) from exc
            raise
        return dict(json.loads(response.data))

    def get(self) -> Body | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._json(self.api.read_namespaced_lease, self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, body: Body) -> Body:
        body = {**body, "metadata": {"name": self.name, "namespace": self.namespace}}
        return self._json(self.api.create_namespaced_lease, self.namespace, body)

    def replace(self, body: Body) -> Body:
        return self._json(self.api.replace_namespaced_lease, self.name, self.namespace, body)
