"""Leader election against an in-memory Lease with the API server's optimistic concurrency.

Real time, short durations (lease 1.2 s, deadline 0.8 s, retry 0.1 s: long enough for a
loaded machine); what is checked is who may act when: `Elector.leading()` is what guards
every Kubernetes call.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from typing import Any

import pytest

from sluice.leader import Conflict, Elector, NotLeader

LEASE, DEADLINE, RETRY = 1.2, 0.8, 0.1


class MemoryLease:
    """One Lease; replace needs the resourceVersion that was read (409 otherwise)."""

    def __init__(self) -> None:
        self.body: dict[str, Any] | None = None
        self.version = 0
        self.lock = threading.Lock()
        self.broken = False  # every call fails (a partitioned replica)
        self.history: list[tuple[float, str]] = []  # (when, holder) of each write

    def get(self) -> dict[str, Any] | None:
        self._check()
        with self.lock:
            return copy.deepcopy(self.body)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        with self.lock:
            if self.body is not None:
                raise Conflict("exists")
            return self._store(body)

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        with self.lock:
            assert self.body is not None
            if body["metadata"].get("resourceVersion") != self.body["metadata"]["resourceVersion"]:
                raise Conflict("changed")
            return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        body = copy.deepcopy(body)
        body["metadata"] = {**body["metadata"], "resourceVersion": str(self.version)}
        self.body = body
        self.history.append((time.monotonic(), body["spec"]["holderIdentity"]))
        return copy.deepcopy(body)

    def _check(self) -> None:
        if self.broken:
            raise ConnectionError("API server unreachable")


class Flaky:
    """A view of a MemoryLease for one replica, whose own connection can break."""

    def __init__(self, lease: MemoryLease) -> None:
        self.lease, self.broken = lease, False

    def __getattr__(self, name: str) -> Any:
        if self.broken:
            raise ConnectionError("partitioned")
        return getattr(self.lease, name)


async def _until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def elector(store: Any, name: str, **kw: Any) -> Elector:
    return Elector(
        store, name, lease_duration=LEASE, renew_deadline=DEADLINE, retry_period=RETRY, **kw
    )


def test_durations_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        Elector(MemoryLease(), "a", lease_duration=10, renew_deadline=10, retry_period=2)


def test_exactly_one_of_two_leads_and_the_other_waits() -> None:
    async def main() -> None:
        lease = MemoryLease()
        a, b = elector(lease, "a"), elector(lease, "b")
        lost: list[str] = []
        await a.acquire()
        a.start_renewing(lost.append)
        waiting = asyncio.create_task(b.acquire())
        await asyncio.sleep(3 * LEASE)  # long past a lease: a keeps renewing it
        assert a.leading() and not b.leading() and not waiting.done()
        with pytest.raises(NotLeader):
            b.check()
        a.check()
        assert lost == []
        assert {h for _, h in lease.history} == {"a"}
        waiting.cancel()
        a.close()
        b.close()

    asyncio.run(main())


def test_a_partitioned_leader_stops_before_the_standby_takes_over() -> None:
    async def main() -> None:
        lease = MemoryLease()
        view = Flaky(lease)
        a, b = elector(view, "a"), elector(lease, "b")
        stopped: list[float] = []
        await a.acquire()
        a.start_renewing(lambda why: stopped.append(time.monotonic()))
        standby = asyncio.create_task(b.acquire())
        await asyncio.sleep(0.2)
        view.broken = True  # a can no longer renew; b still reads the Lease
        broken_at = time.monotonic()
        await asyncio.wait_for(standby, 5 * LEASE)
        took_over = time.monotonic()
        assert stopped, "the old leader never stopped"
        assert stopped[0] < took_over, "both acted at once"
        assert not a.leading() and b.leading()
        assert stopped[0] - broken_at <= DEADLINE + 5 * RETRY
        assert took_over - broken_at >= LEASE - 0.2 - RETRY  # the last renew was <= 0.2 s before
        with pytest.raises(NotLeader):
            a.check()
        assert lease.body is not None and lease.body["spec"]["holderIdentity"] == "b"
        assert lease.body["spec"]["leaseTransitions"] == 1
        a.close()
        b.close()

    asyncio.run(main())


def test_a_frozen_leader_refuses_to_act_when_it_wakes() -> None:
    """A paused process (SIGSTOP) sees its clock jump: no call goes out, then it stops."""

    async def main() -> None:
        lease = MemoryLease()
        a = elector(lease, "a")
        b = elector(lease, "b")
        lost: list[str] = []
        await a.acquire()
        a.start_renewing(lost.append)
        standby = asyncio.create_task(b.acquire())
        await asyncio.sleep(0.1)
        assert a.task is not None
        a.task.cancel()  # frozen: no renewals...
        await asyncio.wait_for(standby, 5 * LEASE)
        # ...and on waking, real time has passed: the guard says no
        with pytest.raises(NotLeader):
            a.check()
        a.start_renewing(lost.append)  # the renew loop resumes, sees the new holder
        await _until(lambda: bool(lost))
        assert not a.leading()
        assert lease.body is not None and lease.body["spec"]["holderIdentity"] == "b"
        a.close()
        b.close()

    asyncio.run(main())


def test_a_leader_paused_before_anyone_took_over_renews_and_goes_on() -> None:
    """Past its deadline it refuses to act; its next renewal (nobody wrote the Lease
    meanwhile, so the conditional replace succeeds) makes it the leader again."""

    async def main() -> None:
        lease = MemoryLease()
        a = elector(lease, "a")
        lost: list[str] = []
        await a.acquire()
        await asyncio.sleep(DEADLINE + RETRY)  # no renew loop running: a "pause"
        assert not a.leading()
        with pytest.raises(NotLeader):
            a.check()
        a.start_renewing(lost.append)
        await _until(a.leading)
        assert lost == []
        assert {h for _, h in lease.history} == {"a"}
        a.close()

    asyncio.run(main())


def test_release_hands_over_at_once() -> None:
    async def main() -> None:
        lease = MemoryLease()
        a, b = elector(lease, "a"), elector(lease, "b")
        await a.acquire()
        a.start_renewing(lambda why: None)
        standby = asyncio.create_task(b.acquire())
        await asyncio.sleep(0.1)
        released = time.monotonic()
        await a.release()
        assert not a.leading()
        await asyncio.wait_for(standby, LEASE)
        assert time.monotonic() - released < LEASE / 2, "waited for expiry despite the release"
        a.close()
        b.close()

    asyncio.run(main())


def test_the_kube_guard_blocks_calls_of_a_replica_that_does_not_lead() -> None:
    from sluice.cluster.kube import Kube

    class Client:
        def close(self) -> None: ...

    async def main() -> None:
        kube = Kube(Client(), limit=1)  # type: ignore[arg-type]
        a = elector(MemoryLease(), "a")
        kube.guard = a.check
        calls: list[str] = []
        with pytest.raises(NotLeader):
            await kube.call(calls.append, "write")
        await a.acquire()
        await kube.call(calls.append, "write")
        assert calls == ["write"]
        a.close()
        kube.close()

    asyncio.run(main())


def test_sluice_run_refuses_durations_that_would_overlap(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sluice.cli.main import main

    code = main(["run", "--leader-elect", "--lease-duration", "5", "--renew-deadline", "6"])
    assert code == 2
    assert "--renew-deadline < --lease-duration" in capsys.readouterr().err
