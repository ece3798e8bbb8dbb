"""Health, /metrics and the alert webhook over HTTP, on the operator's own event loop.

The port may face anyone who can reach the pod, so slow or idle clients are cut off:
a connection that has not sent a whole request within `idle_timeout` is closed (aiohttp
arms its keep-alive timer at connect, and it fires while a request's headers are still
incomplete), a body must arrive within the handler's own deadline, bodies are capped
(413), and beyond `max_connections` open connections new ones are closed at once.

/metrics is built in a thread: at 10,000 Rollouts one exposition is seconds of CPU, which
on the loop would hold every reconcile that long. Scrapes that arrive while a build runs
wait for that build instead of starting their own. (prometheus_client copies a family's
series under its lock, so the loop may go on updating metrics meanwhile.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sluice.alerts import MAX_BODY
from sluice.telemetry import REGISTRY

IDLE_TIMEOUT = 10.0
MAX_CONNECTIONS = 256


class SharedBuild:
    """Runs `build` in a thread; callers that come while it runs get that run's result."""

    def __init__(self, build: Callable[[], bytes]) -> None:
        self._build = build
        self._running: asyncio.Future[bytes] | None = None

    async def get(self) -> bytes:
        if self._running is None:
            self._running = asyncio.ensure_future(asyncio.to_thread(self._build))
            self._running.add_done_callback(self._done)
        # shielded: a scraper that goes away does not cancel the others' build
        return await asyncio.shield(self._running)

    def _done(self, future: asyncio.Future[bytes]) -> None:
        self._running = None
        if not future.cancelled():
            future.exception()  # retrieved: every waiter may have gone


def app(ready: Callable[[], bool], registry: CollectorRegistry = REGISTRY) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        return (
            web.Response(text="ready\n") if ready() else web.Response(status=503, text="starting\n")
        )

    exposition = SharedBuild(lambda: generate_latest(registry))

    async def metrics(_: web.Request) -> web.Response:
        body = await exposition.get()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    application = web.Application(client_max_size=MAX_BODY)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    application.router.add_get("/metrics", metrics)
    return application


class _Refuse(asyncio.Protocol):
    """Closes a connection over the cap before reading a byte of it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted from accept to close.

    (aiohttp's own list of connections grows only when a connection is made, which
    happens after a whole burst of accepts: too late to cap a flood.)
    """

    def __init__(self, inner: asyncio.Protocol, live: list[int]) -> None:
        self.inner, self.live = inner, live
        live[0] += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.live[0] -= 1
        self.inner.connection_lost(exc)


class CappedSite(web.BaseSite):
    """A TCP site that closes connections beyond `limit` open ones."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limit: int) -> None:
        super().__init__(runner)
        self._host, self._port, self._limit = host, port, limit
        self._live = [0]

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None

        def protocol() -> asyncio.Protocol:
            if self._live[0] >= self._limit:
                return _Refuse()
            return _Counted(server(), self._live)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol, self._host, self._port, reuse_address=True
        )


async def serve(
    application: web.Application,
    host: str,
    port: int,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> web.AppRunner:
    runner = web.AppRunner(
        application, access_log=None, keepalive_timeout=idle_timeout, shutdown_timeout=5.0
    )
    await runner.setup()
    await CappedSite(runner, host, port, max_connections).start()
    return runner
