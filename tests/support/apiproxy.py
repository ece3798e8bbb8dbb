"""A recording, fault-injecting proxy in front of the API server, on 127.0.0.1 only.

Clients speak plain HTTP to it with no credentials (the kubeconfig it writes says so);
it forwards every request to the real API server over TLS, streaming responses (watches
included), as one of two identities: the admin kubeconfig's client certificate (default),
or a bearer token (`token=`, e.g. a ServiceAccount's: the API server then applies that
account's RBAC as it would to the client itself). While a fault window is open, a seeded
fraction of the requests is answered with 429, 500 or 504 instead. It counts requests per
second, so a test can tell backoff from a storm, and records every request (monotonic
arrival time, method, path, response status), so a test can tell which client wrote what.
Used by tests/chaos (faults) and tests/e2e/test_ha.py (one proxy per replica).
"""

from __future__ import annotations

import asyncio
import base64
import random
import ssl
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Recorded:
    at: float  # time.monotonic() when the request arrived
    method: str
    path: str  # without the query
    status: int  # the response's (502: upstream unreachable; an injected fault's code)
    answered: float  # time.monotonic() when the response status was known

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING


def _material(
    kubeconfig: str, folder: Path, with_certificate: bool = True
) -> tuple[str, ssl.SSLContext]:
    """The API server's address and a TLS context (with the admin's client certificate)."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    context = {c["name"]: c["context"] for c in config["contexts"]}[config["current-context"]]
    cluster = {c["name"]: c["cluster"] for c in config["clusters"]}[context["cluster"]]
    user = {u["name"]: u["user"] for u in config["users"]}[context["user"]]

    def file_of(entry: dict[str, Any], key: str, name: str) -> str:
        if f"{key}-data" in entry:
            path = folder / name
            path.write_bytes(base64.b64decode(entry[f"{key}-data"]))
            return str(path)
        return str(entry[key])

    tls = ssl.create_default_context(cafile=file_of(cluster, "certificate-authority", "ca.crt"))
    if not with_certificate:
        return str(cluster["server"]).rstrip("/"), tls
    tls.load_cert_chain(
        file_of(user, "client-certificate", "client.crt"), file_of(user, "client-key", "client.key")
    )
    return str(cluster["server"]).rstrip("/"), tls


class FaultProxy:
    def __init__(self, kubeconfig: str, seed: int = 1, token: str | None = None) -> None:
        """`kubeconfig`: the API server, its CA, and (without `token`) the certificate."""
        self._dir = tempfile.TemporaryDirectory(prefix="sluice-proxy-")
        self.folder = Path(self._dir.name)
        self.upstream, self.tls = _material(kubeconfig, self.folder, token is None)
        self.token = token
        self.recorded: list[Recorded] = []  # appended on the proxy's thread, in arrival order
        self.rng = random.Random(seed)
        self.fraction = 0.0
        self.codes = (429, 500, 504)
        self.per_second: Counter[int] = Counter()  # requests seen, by whole second
        self.faults: Counter[int] = Counter()  # faults injected, by status code
        self.window: tuple[float, float] | None = None
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)

    async def _start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.tls, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    def stop(self) -> None:
        async def _stop() -> None:
            # The upstream first: a watch still streaming through a handler ends with it.
            if self.session is not None:
                await self.session.close()
            if self.runner is not None:
                await self.runner.cleanup()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self._dir.cleanup()

    def kubeconfig(self) -> str:
        """A kubeconfig that points at the proxy (plain HTTP on 127.0.0.1, no credentials)."""
        path = self.folder / "kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(config))
        return str(path)

    # ------------------------------------------------------------ faults

    def open_window(self, fraction: float) -> None:
        self.fraction = fraction
        self.window = (time.monotonic(), 0.0)

    def close_window(self) -> None:
        self.fraction = 0.0
        if self.window is not None:
            self.window = (self.window[0], time.monotonic())

    def rate_in_window(self) -> tuple[int, float]:
        """(peak requests in one second, mean requests per second) during the window."""
        assert self.window is not None and self.window[1], "no closed fault window"
        first, last = int(self.window[0]), int(self.window[1])
        counts = [self.per_second.get(s, 0) for s in range(first, last + 1)]
        return max(counts), sum(counts) / max(1, len(counts))

    # ------------------------------------------------------------ forwarding

    def _record(self, at: float, request: web.Request, status: int) -> None:
        self.recorded.append(Recorded(at, request.method, request.path, status, time.monotonic()))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        self.per_second[int(arrived)] += 1
        if self.fraction and self.rng.random() < self.fraction:
            code = self.rng.choice(self.codes)
            self.faults[code] += 1
            self._record(arrived, request, code)
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": f"injected {code}",
                "reason": {429: "TooManyRequests", 500: "InternalError", 504: "Timeout"}[code],
                "code": code,
            }
            headers = {"Retry-After": "1"} if code == 429 else {}
            return web.json_response(body, status=code, headers=headers)
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        if self.token is not None:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {self.token}"
        data = await request.read()
        try:
            upstream = await self.session.request(
                request.method,
                self.upstream + request.path_qs,
                headers=headers,
                data=data or None,
                allow_redirects=False,
                # As sent: the Python client sends JSON with no Content-Type, which the API
                # server takes; aiohttp's default (octet-stream) it refuses with 415.
                skip_auto_headers=("Content-Type",),
            )
        except aiohttp.ClientError as exc:
            self._record(arrived, request, 502)
            return web.json_response(
                {"kind": "Status", "message": str(exc), "code": 502}, status=502
            )
        self._record(arrived, request, upstream.status)
        async with upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP},
            )
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientError, ConnectionResetError):
                return response  # either side went away: nothing more to send
            await response.write_eof()
            return response
