"""The operator's HTTP server with the alert webhook, on 127.0.0.1, for tests.

The receiver is wired to the real `Controller.record_alert`; only the API server behind
it is a stand-in (`FakeRuns`), which refuses what the real one refuses: a duplicate name
(409), an invalid name (422), a body over 1.5 MB (500, "request is too large").

    with webhook() as hook:            # in this process, on a thread of its own
        hook.post(body) -> (status, answer)

`python -m tests.support.webhook PORT IDLE_TIMEOUT MAX_CONNECTIONS` serves the same in a
process of its own (to count its file descriptors).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from sluice import alerts, server
from sluice.controller.reconciler import Controller

TOKEN = "s3cret-token"
NAMESPACE, ROLLOUT = "ns", "web"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def rollout_body() -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": ROLLOUT, "namespace": NAMESPACE, "uid": "u-1"},
        "spec": {},
        "status": {"stableRevision": "s1", "canaryRevision": "c1", "stableSlot": "a"},
    }


class FakeRuns:
    """AnalysisRun create / get / status replace, refusing what the API server refuses."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.custom = self
        self.lock = threading.Lock()

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        name = args[-1]
        if name not in self.runs:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.runs[name])

    async def create_custom(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        with self.lock:
            if not _NAME.match(name):
                raise ApiException(status=422, reason=f"invalid name {name[:80]!r}")
            if name in self.runs:
                raise ApiException(status=409, reason="AlreadyExists")
            stored = {
                **copy.deepcopy(body),
                "metadata": {**body["metadata"], "resourceVersion": "1"},
            }
            self.runs[name] = stored
            return copy.deepcopy(stored)

    async def replace_status(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(body)) > 1_500_000:
            raise ApiException(status=500, reason="etcdserver: request is too large")
        with self.lock:
            self.runs[body["metadata"]["name"]]["status"] = copy.deepcopy(body["status"])
            return copy.deepcopy(self.runs[body["metadata"]["name"]])


@dataclass
class Hook:
    url: str
    kube: FakeRuns
    recorded: list[alerts.AlertAbort] = field(default_factory=list)

    def post(
        self, body: Any, token: str | None = TOKEN, raw: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = raw if raw is not None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"{self.url}/v1/alerts", data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read()
            return exc.code, json.loads(text) if text.startswith(b"{") else {"text": text.decode()}


async def start(
    port: int = 0,
    idle_timeout: float = server.IDLE_TIMEOUT,
    max_connections: int = 256,
    body_timeout: float = alerts.BODY_TIMEOUT,
) -> tuple[Any, Hook]:
    kube = FakeRuns()
    controller = Controller(kube)  # type: ignore[arg-type]
    controller.cache.rollouts[(NAMESPACE, ROLLOUT)] = rollout_body()
    hook = Hook("", kube)

    async def record(alert: alerts.AlertAbort) -> str:
        hook.recorded.append(alert)
        return await controller.record_alert(alert)

    application = server.app(lambda: True)
    application.router.add_post("/v1/alerts", alerts.handler(lambda: TOKEN, record, body_timeout))
    runner = await server.serve(
        application, "127.0.0.1", port, idle_timeout=idle_timeout, max_connections=max_connections
    )
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return runner, hook


@contextlib.contextmanager
def webhook(**kwargs: Any) -> Iterator[Hook]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, hook = asyncio.run_coroutine_threadsafe(start(**kwargs), loop).result(10)
    try:
        yield hook
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def alert(**labels: str) -> dict[str, Any]:
    """A firing alert that asks to abort the test Rollout (labels override)."""
    base = {"alertname": "CanaryErrors", "sluice_action": "abort"}
    base |= {"namespace": NAMESPACE, "rollout": ROLLOUT}
    return {
        "status": "firing",
        "labels": {**base, **labels},
        "annotations": {"summary": "canary error ratio above 5 %"},
        "startsAt": "2026-11-24T08:00:00Z",
        "fingerprint": "abc123def456",
    }


def body(*items: Any) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "sluice", "alerts": list(items)}


async def _main(port: int, idle: float, cap: int) -> None:
    await start(port, idle, cap)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
