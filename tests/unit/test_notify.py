"""Notifications against a real HTTP receiver on 127.0.0.1: signatures, retries, drops."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sluice import telemetry as M
from sluice.engine.types import EventNote
from sluice.notify.config import SecretRef, merge
from sluice.notify.sender import Notifier

SECRET = b"s3cret"
ROLLOUT = {
    "metadata": {"namespace": "team", "name": "web", "annotations": {}},
    "status": {
        "phase": "Degraded",
        "currentStepIndex": 1,
        "canaryWeight": 0,
        "stableRevision": "aaaa",
        "canaryRevision": "bbbb",
        "abort": {"reason": "AnalysisFailed", "message": "error-rate 0.08 > 0.02",
                  "time": "2026-12-01T10:00:09Z", "revision": "bbbb"},
    },
}  # fmt: skip
RUN = {
    "kind": "AnalysisRun",
    "metadata": {"name": "web-bbbb-1-background"},
    "spec": {"revision": "bbbb", "metrics": [{"name": "error-rate", "errorRate": {"max": 0.02}}]},
    "status": {
        "phase": "Failed",
        "finishedAt": "2026-12-01T10:00:09Z",
        "metricResults": [
            {
                "name": "error-rate",
                "phase": "Failed",
                "measurements": [
                    {"phase": "Failed", "value": "0.08", "query": "sum(rate(x[1m]))",
                     "startedAt": "2026-12-01T10:00:08Z", "message": "0.08 > max 0.02"},
                ],
            }
        ],
    },
}  # fmt: skip


@dataclass
class Receiver:
    """Answers with `answers` in turn (then 200); "hang" never answers."""

    answers: list[int | str] = field(default_factory=list)
    got: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.got.append((time.monotonic(), dict(request.headers), raw))
        answer = self.answers.pop(0) if self.answers else 200
        if answer == "hang":
            await asyncio.sleep(3600)
        return web.Response(status=int(answer))


@contextlib.asynccontextmanager
async def serve() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


class Source:
    def __init__(self, data: dict[str, str] | None) -> None:
        self.data = data
        self.reads = 0

    async def configmap(self, namespace: str) -> dict[str, str] | None:
        self.reads += 1
        return self.data

    async def secret(self, namespace: str, ref: SecretRef) -> bytes | None:
        return SECRET if ref == SecretRef("hooks", "hmac") else None


async def _in_receiver(test: Callable[[Receiver], Awaitable[None]]) -> None:
    async with serve() as receiver:
        await test(receiver)


def notifier(url: str, **kwargs: Any) -> Notifier:
    data = {"webhook-url": url, "webhook-secret": "hooks/hmac"}
    return Notifier(Source(data), lambda key: (ROLLOUT, [RUN]), **kwargs)


def count(channel: str, result: str) -> float:
    value = M.REGISTRY.get_sample_value(
        "sluice_notifications_total", {"channel": channel, "result": result}
    )
    return value or 0.0


async def until(what: str, check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


ABORTED = EventNote("Aborted", "AnalysisFailed: error-rate 0.08 > 0.02; traffic back to stable")


def test_signed_abort_names_the_metric() -> None:
    asyncio.run(_in_receiver(_signed_abort_names_the_metric))


async def _signed_abort_names_the_metric(receiver: Receiver) -> None:
    n = notifier(receiver.url)
    n.start()
    delivered = count("webhook", "delivered")
    n.submit(ROLLOUT, ABORTED, "2026-12-01T10:00:09.000Z")
    await until("one delivery", lambda: len(receiver.got) == 1)
    await n.stop()
    _, headers, raw = receiver.got[0]
    expected = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    assert headers["X-Sluice-Signature"] == expected
    assert headers["X-Sluice-Event"] == "aborted"
    body = json.loads(raw)
    assert body["event"] == "aborted" and body["rollout"] == {"namespace": "team", "name": "web"}
    assert body["analysis"] == {
        "run": "web-bbbb-1-background",
        "metric": "error-rate",
        "phase": "Failed",
        "value": "0.08",
        "threshold": "errorRate.max 0.02",
        "query": "sum(rate(x[1m]))",
        "message": "0.08 > max 0.02",
    }
    assert count("webhook", "delivered") == delivered + 1


def test_500s_are_retried_with_backoff() -> None:
    asyncio.run(_in_receiver(_500s_are_retried_with_backoff))


async def _500s_are_retried_with_backoff(receiver: Receiver) -> None:
    receiver.answers = [500, 503]
    n = notifier(receiver.url, backoff=0.2)
    n.start()
    retried = count("webhook", "retried")
    n.submit(ROLLOUT, EventNote("Completed", "canary bbbb promoted"))
    await until("the third try", lambda: len(receiver.got) == 3)
    await asyncio.sleep(0.1)
    await n.stop()
    times = [t for t, _, _ in receiver.got]
    assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.4  # 0.2 s, then 0.4 s
    assert count("webhook", "retried") == retried + 2
    assert len({raw for _, _, raw in receiver.got}) == 1  # the same body each time


def test_a_4xx_is_not_retried_and_counts_as_failed() -> None:
    asyncio.run(_in_receiver(_a_4xx_is_not_retried_and_counts_as_failed))


async def _a_4xx_is_not_retried_and_counts_as_failed(receiver: Receiver) -> None:
    receiver.answers = [400]
    n = notifier(receiver.url, backoff=0.05)
    n.start()
    failed = count("webhook", "failed")
    n.submit(ROLLOUT, EventNote("Completed", "done"))
    await until("failed", lambda: count("webhook", "failed") == failed + 1)
    await asyncio.sleep(0.3)
    await n.stop()
    assert len(receiver.got) == 1


def test_a_hanging_endpoint_never_blocks_submit() -> None:
    asyncio.run(_in_receiver(_a_hanging_endpoint_never_blocks_submit))


async def _a_hanging_endpoint_never_blocks_submit(receiver: Receiver) -> None:
    receiver.answers = ["hang"] * 20
    n = notifier(receiver.url, queue_size=3, workers=1, timeout=0.3, attempts=2, backoff=0.05)
    n.start()
    dropped = count("any", "dropped")
    started = time.perf_counter()
    for _ in range(10):
        n.submit(ROLLOUT, EventNote("StepReached", "step 1/4: pause 5s"))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.05, f"submit took {elapsed:.3f}s"
    # no await in between: three queued, seven dropped at once, and counted
    assert count("any", "dropped") - dropped == 7
    await until("the worker's first try", lambda: len(receiver.got) >= 1)
    await until("timeouts counted", lambda: count("webhook", "failed") >= 1, timeout=5)
    await n.stop()


def test_unconfigured_and_filtered_events_are_not_sent() -> None:
    asyncio.run(_in_receiver(_unconfigured_and_filtered_events_are_not_sent))


async def _unconfigured_and_filtered_events_are_not_sent(receiver: Receiver) -> None:
    source = Source(None)
    n = Notifier(source, lambda key: (ROLLOUT, []))
    n.start()
    n.submit(ROLLOUT, ABORTED)
    await until("the ConfigMap read", lambda: source.reads == 1)
    await asyncio.sleep(0.05)
    n.submit(ROLLOUT, ABORTED)  # known unconfigured: not even queued
    assert n.queue.qsize() == 0
    await n.stop()
    assert receiver.got == []


def test_annotations_override_the_namespace() -> None:
    ns = {"webhook-url": "http://a", "events": "aborted,completed"}
    assert merge(ns, {}).events == frozenset({"aborted", "completed"})
    ann = {"notifications.sluice.dev/webhook-url": "http://b"}
    assert merge(ns, ann).webhook_url == "http://b"
    off = {"notifications.sluice.dev/enabled": "false"}
    assert not merge(ns, off).any
    slack = merge({"slack-url-secret": "slack"}, {})
    assert slack.slack_url_secret == SecretRef("slack", "url") and slack.any


def test_reaching_a_manual_pause_also_says_paused() -> None:
    asyncio.run(_in_receiver(_manual_pause))


async def _manual_pause(receiver: Receiver) -> None:
    waiting = {
        **ROLLOUT,
        "spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}},
        "status": {"phase": "Paused", "currentStepIndex": 1, "canaryWeight": 20},
    }
    data = {"webhook-url": receiver.url}
    n = Notifier(Source(data), lambda key: (waiting, []))
    n.start()
    n.submit(waiting, EventNote("StepReached", "step 1/2: pause until promoted"))
    await until("two deliveries", lambda: len(receiver.got) == 2)
    await n.stop()
    bodies = [json.loads(raw) for _, _, raw in receiver.got]
    assert [b["event"] for b in bodies] == ["step-completed", "paused"]
    assert bodies[0]["message"] == "step 0/2 completed; now at step 1/2: pause until promoted"
    assert bodies[0]["completedStep"] == 0
    assert bodies[1]["message"].endswith("waiting for `kubectl sluice promote web`")
    assert "X-Sluice-Signature" not in receiver.got[0][1]  # no secret configured: unsigned


SPEC = {
    "selector": {"matchLabels": {"app": "web"}},
    "template": {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    },
    "strategy": {"canary": {"steps": [{"setWeight": 20}, {"setWeight": 50}, {"pause": {}}]}},
}


def test_step_completed_names_the_step_that_completed() -> None:
    asyncio.run(_in_receiver(_step_completed_names_the_step_that_completed))


async def _step_completed_names_the_step_that_completed(receiver: Receiver) -> None:
    # One decision passed two steps: both Events carry the body it left (at step 2).
    moved = {
        **ROLLOUT,
        "spec": SPEC,
        "status": {"phase": "Paused", "currentStepIndex": 2, "canaryWeight": 50},
    }
    n = Notifier(Source({"webhook-url": receiver.url}), lambda key: (moved, []))
    n.start()
    n.submit(moved, EventNote("StepReached", "step 1/3: setWeight 50"))
    n.submit(moved, EventNote("StepReached", "step 2/3: pause until promoted"))
    await until("three deliveries", lambda: len(receiver.got) == 3)
    await asyncio.sleep(0.1)
    await n.stop()
    bodies = [json.loads(raw) for _, _, raw in receiver.got]
    assert [(b["event"], b.get("completedStep")) for b in bodies] == [
        ("step-completed", 0),
        ("step-completed", 1),
        ("paused", None),  # once: only the Event for the step it stands on is the pause
    ]
    first = "step 0/3 completed (setWeight 20); now at step 1/3: setWeight 50"
    assert bodies[0]["message"] == first
    assert bodies[1]["message"].startswith("step 1/3 completed (setWeight 50); now at step 2/3")


class Namespaces:
    """A ConfigMap per namespace."""

    def __init__(self, data: dict[str, dict[str, str]]) -> None:
        self.data = data

    async def configmap(self, namespace: str) -> dict[str, str] | None:
        return self.data.get(namespace)

    async def secret(self, namespace: str, ref: SecretRef) -> bytes | None:
        return None


def team(namespace: str) -> dict[str, Any]:
    return {**ROLLOUT, "metadata": {"namespace": namespace, "name": "web", "annotations": {}}}


def test_a_hanging_endpoint_delays_only_its_own_notifications() -> None:
    asyncio.run(_two_receivers(_a_hanging_endpoint_delays_only_its_own))


async def _two_receivers(test: Callable[[Receiver, Receiver], Awaitable[None]]) -> None:
    async with serve() as slow, serve() as fast:
        await test(slow, fast)


async def _a_hanging_endpoint_delays_only_its_own(slow: Receiver, fast: Receiver) -> None:
    slow.answers = ["hang"] * 50
    source = Namespaces({"slow": {"webhook-url": slow.url}, "fast": {"webhook-url": fast.url}})
    # Each slow notification holds its sender 2 x 3 s; before lanes the shared senders made
    # the fast team wait behind them (>= 6 s here, ~22 s with the defaults).
    n = Notifier(source, lambda key: (None, []), timeout=3.0, attempts=2, backoff=0.1, trip=99)
    n.start()
    for _ in range(4):
        n.submit(team("slow"), EventNote("Completed", "slow team done"))
    await until("the slow endpoint's first try", lambda: len(slow.got) >= 1)
    started = time.monotonic()
    n.submit(team("fast"), EventNote("Completed", "fast team done"))
    await until("the fast delivery", lambda: len(fast.got) == 1, timeout=10)
    waited = time.monotonic() - started
    await n.stop()
    assert waited < 2.5, f"the fast endpoint waited {waited:.2f}s behind the slow one"
    assert json.loads(fast.got[0][2])["rollout"]["namespace"] == "fast"
    assert len(slow.got) == 1  # the slow lane is still on its first notification


def test_a_failing_endpoint_trips_its_breaker_and_its_backlog_is_bounded() -> None:
    asyncio.run(_two_receivers(_breaker_and_backlog))


async def _breaker_and_backlog(slow: Receiver, fast: Receiver) -> None:
    slow.answers = ["hang"] * 50
    source = Namespaces({"slow": {"webhook-url": slow.url}, "fast": {"webhook-url": fast.url}})
    n = Notifier(
        source, lambda key: (None, []), timeout=0.3, attempts=2, backoff=0.05,
        lane_size=4, trip=2, cooldown=60,
    )  # fmt: skip
    n.start()
    dropped, failed = count("webhook", "dropped"), count("webhook", "failed")
    for i in range(10):
        n.submit(team("slow"), EventNote("Completed", f"slow {i}"))
    n.submit(team("fast"), EventNote("Completed", "fast"))
    # 10 slow: at most 1 sending + 4 waiting, the rest dropped at once; 2 fail, then the
    # breaker opens and the ones still waiting go without a try.
    await until("the slow backlog gone", lambda: count("webhook", "dropped") - dropped == 8)
    await until("the fast delivery", lambda: len(fast.got) == 1)
    await asyncio.sleep(0.3)
    await n.stop()
    assert count("webhook", "failed") - failed == 2
    assert len(slow.got) == 4  # 2 notifications x 2 tries, none after the breaker opened


def test_an_idle_endpoint_lane_is_let_go_and_comes_back() -> None:
    asyncio.run(_in_receiver(_idle_lane))


async def _idle_lane(receiver: Receiver) -> None:
    n = notifier(receiver.url, idle=0.2)
    n.start()
    n.submit(ROLLOUT, EventNote("Completed", "one"))
    await until("the first delivery", lambda: len(receiver.got) == 1)
    assert list(n.lanes) == [receiver.url]
    await until("the idle lane gone", lambda: not n.lanes, timeout=5)
    n.submit(ROLLOUT, EventNote("Completed", "two"))
    await until("the second delivery", lambda: len(receiver.got) == 2)
    await n.stop()
    assert [json.loads(raw)["message"] for _, _, raw in receiver.got] == ["one", "two"]
