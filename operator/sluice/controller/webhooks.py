"""Webhook gates on the controller's side: the HTTP calls the engine asks for.

A gate is called at most once per check interval whatever the number of reconciles;
its answer is kept (per Rollout, attempt, type, webhook and step) and handed to the
engine as an observation. Calls run off the reconcile path, a few at a time, each with
its own strict timeout; an answer wakes its Rollout, a refusal wakes it again after
the interval so it is asked again. No per-object timer: the Rollouts' queue does that.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from sluice import logs
from sluice import telemetry as M
from sluice.api.rollout import RolloutSpec
from sluice.engine.timefmt import fmt
from sluice.engine.types import AskHook, HookAnswer

log = logs.get("sluice.webhooks")
Body = dict[str, Any]
Key = tuple[str, str]
CHECK_INTERVAL = 10.0  # seconds between two calls of a gate that did not allow
CONCURRENCY = 16
ANSWER_TEXT = 200  # characters of an answer's body kept in the status
TOLD = {"Completed": "post-rollout", "Aborted": "rollback", "RolledBack": "rollback"}
TELL_ATTEMPTS = 4  # a notification hook is retried with backoff; its answer changes nothing


def _utcnow() -> datetime:
    return datetime.now(UTC)


def request_body(rollout: Body, act: AskHook, metadata: dict[str, str] | None) -> Body:
    """What the endpoint is told: the rollout's own state, never a Secret."""
    meta, status = rollout["metadata"], rollout.get("status") or {}
    return {
        "type": act.type,
        "webhook": act.name,
        "name": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta.get("uid", ""),
        "phase": status.get("phase", ""),
        "canaryRevision": status.get("canaryRevision", ""),
        "stableRevision": status.get("stableRevision", ""),
        "attempt": status.get("attempt", 0),
        "step": act.step,
        "canaryWeight": status.get("canaryWeight", 0),
        "metadata": dict(metadata or {}),
    }


class HookCaller:
    def __init__(
        self,
        wake: Callable[[Key], None],
        wake_after: Callable[[Key, float], None],
        interval: float = CHECK_INTERVAL,
        concurrency: int = CONCURRENCY,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.wake, self.wake_after = wake, wake_after
        self.interval = interval
        self.clock = clock
        self.slots = asyncio.Semaphore(concurrency)
        self.answers: dict[Key, dict[str, HookAnswer]] = {}
        self.asked: dict[tuple[Key, str], datetime] = {}  # when each gate was last called
        self.tasks: set[asyncio.Task[None]] = set()
        self.calling: set[tuple[Key, str]] = set()  # never two calls of one gate at once
        self.session: aiohttp.ClientSession | None = None

    def observed(self, key: Key, attempt: int) -> dict[str, HookAnswer]:
        """The answers of the attempt in the status; older attempts' are dropped."""
        bucket = self.answers.get(key, {})
        keep = {k: v for k, v in bucket.items() if k.startswith(f"{attempt}/")}
        if len(keep) != len(bucket):
            for gone in set(bucket) - set(keep):
                self.asked.pop((key, gone), None)
            self.answers[key] = keep
        return dict(keep)

    def forget(self, key: Key) -> None:
        self.answers.pop(key, None)
        for asked in [a for a in self.asked if a[0] == key]:
            self.asked.pop(asked, None)

    def ask(self, key: Key, rollout: Body, spec: RolloutSpec, act: AskHook) -> None:
        """Call the gate unless it is being called, or was within the interval."""
        last = self.asked.get((key, act.key))
        now = self.clock()
        if (key, act.key) in self.calling:
            return
        if last is not None and (now - last).total_seconds() < self.interval:
            # Each reconcile drops the Rollout's earlier wake-up: set it again for when the
            # gate is due to be asked again (a held gate is asked once per interval).
            self.wake_after(key, self.interval - (now - last).total_seconds())
            return
        hook = next((h for h in spec.strategy.canary.webhooks if h.name == act.name), None)
        if hook is None:
            return
        self.asked[(key, act.key)] = now
        self.calling.add((key, act.key))
        body = request_body(rollout, act, hook.metadata)
        task = asyncio.create_task(
            self._call(key, act.key, hook.url, hook.seconds(), body), name=f"hook-{act.name}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def tell(self, rollout: Body, reason: str, message: str) -> None:
        """After a promotion or an abort: POST to the post-rollout or rollback webhooks."""
        type_ = TOLD.get(reason)
        if type_ is None:
            return
        try:
            spec = RolloutSpec.model_validate(rollout.get("spec") or {})
        except ValueError:
            return
        key: Key = (rollout["metadata"]["namespace"], rollout["metadata"]["name"])
        for hook in (h for h in spec.strategy.canary.webhooks if h.type == type_):
            act = AskHook(f"{type_}/{hook.name}", hook.name, type_)
            body = {**request_body(rollout, act, hook.metadata), "reason": reason}
            body["message"] = message
            task = asyncio.create_task(
                self._tell(key, hook.name, hook.url, hook.seconds(), body), name=f"tell-{hook.name}"
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _tell(self, key: Key, name: str, url: str, timeout: float, body: Body) -> None:
        message = ""
        for attempt in range(TELL_ATTEMPTS):
            if attempt:
                await asyncio.sleep(min(2.0**attempt, 30.0))
            async with self.slots:
                ok, message = await call(self._session(), url, timeout, body)
            M.API_CALLS.labels("webhook").inc()
            if ok:
                log.info("webhook told", namespace=key[0], rollout=key[1], webhook=name)
                return
        log.warning(
            "webhook not told", namespace=key[0], rollout=key[1], webhook=name, answer=message
        )

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    async def _call(self, key: Key, gate: str, url: str, timeout: float, body: Body) -> None:
        try:
            async with self.slots:
                started = self.clock()
                ok, message = await call(self._session(), url, timeout, body)
        except Exception as exc:  # never let a gate crash the operator: it holds instead
            ok, message = False, f"not called: {type(exc).__name__}: {exc}"[:300]
            started = self.clock()
        finally:
            self.calling.discard((key, gate))
        answer = HookAnswer(ok, message, fmt(self.clock()))
        M.API_CALLS.labels("webhook").inc()
        log.info(
            "webhook answered",
            namespace=key[0],
            rollout=key[1],
            gate=gate,
            allowed=ok,
            answer=message,
            seconds=round((self.clock() - started).total_seconds(), 3),
        )
        if (key, gate) in self.asked:  # not forgotten meanwhile
            self.answers.setdefault(key, {})[gate] = answer
            self.wake(key)
            if not ok:
                self.wake_after(key, self.interval)

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession()
        return self.session


async def call(
    session: aiohttp.ClientSession, url: str, timeout: float, body: Body
) -> tuple[bool, str]:
    """(allowed, what was answered). Any failure to get a 2xx in time is a refusal."""
    raw = json.dumps(body, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "sluice-webhook"}
    limit = aiohttp.ClientTimeout(total=timeout)
    try:
        # The outer bound also covers a server that trickles its answer byte by byte.
        async with asyncio.timeout(timeout + 0.5):
            async with session.post(
                url, data=raw, headers=headers, timeout=limit, allow_redirects=False
            ) as response:
                text = (await response.content.read(ANSWER_TEXT)).decode("utf-8", "replace")
                text = " ".join(text.split())
                detail = f"HTTP {response.status}" + (f": {text}" if text else "")
                return 200 <= response.status < 300, detail
    except TimeoutError:
        return False, f"no answer within {timeout:g}s"
    except aiohttp.InvalidURL:
        return False, f"invalid URL {url!r}"
    except aiohttp.ClientError as exc:
        return False, f"not reachable: {type(exc).__name__}: {exc}"[:300]
