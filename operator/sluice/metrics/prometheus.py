"""Prometheus as a metric provider: its HTTP API (``/api/v1/query``, ``query_range``).

Plain ``requests`` rather than prometheus-api-client, which would bring numpy, pandas and
matplotlib into the operator image. The calls are blocking, so each runs on a small
thread pool of its own:
the event loop never waits on a socket, and a Prometheus that hangs cannot use up the
threads that the Kubernetes client shares. Each call has one deadline, ``timeout``
seconds, enforced three ways: Prometheus' own ``timeout`` parameter (it stops evaluating),
requests' connect/read timeouts (the thread gives up), and ``asyncio.wait_for`` around
the whole call (the caller never waits longer, whatever the socket does).

No retries: an error is reported at once as :class:`ProviderError`, and the analysis
decides whether to measure again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

from sluice.metrics.base import ProviderError, QueryResult

DEFAULT_TIMEOUT = 30.0

# Threads per Prometheus address, not one pool for all: a Prometheus that never answers
# holds only its own threads (and queries beyond PER_ADDRESS wait for it alone), so it
# cannot delay the queries of a healthy one. A provider is cheap and may be made per
# measurement; the pools live as long as the process.
PER_ADDRESS = 4
_POOLS: dict[str, ThreadPoolExecutor] = {}


def _pool(url: str) -> ThreadPoolExecutor:
    parts = urlsplit(url)
    key = f"{parts.scheme}://{parts.netloc}".lower()
    pool = _POOLS.get(key)
    if pool is None:
        pool = ThreadPoolExecutor(max_workers=PER_ADDRESS, thread_name_prefix="sluice-prometheus")
        _POOLS[key] = pool
    return pool


def escape_label_value(value: str) -> str:
    """``value`` made safe inside a double-quoted PromQL label matcher: ``{l="<here>"}``.

    Backslash, double quote and line breaks are escaped, so whatever the value holds
    (``"``, ``}``, ``#``, ``\\``) it stays one string literal and cannot end the matcher
    or add to the query. For ``=~`` / ``!~`` matchers also escape regex syntax first
    (``re.escape`` is close to RE2's, but the result is then a regex, not a literal).
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def _ca_file(pem: str) -> str:
    """A file holding ``pem`` (named by its hash, so the same CA is written once)."""
    digest = hashlib.sha256(pem.encode()).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / f"sluice-ca-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{digest}.pem"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        os.replace(tmp, path)
    return str(path)


def _to_float(raw: Any) -> float:
    """Prometheus sends sample values as strings: "1.5", "NaN", "+Inf", "-Inf"."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(f"sample value {raw!r} is not a number")
    return float(raw)


def _flatten(
    data: Any, default: Literal["vector", "matrix"]
) -> tuple[Literal["scalar", "vector", "matrix"], list[float], int]:
    """(kind, values, series) from ``data.result`` (resultType is not passed down).

    The shape tells: a scalar is ``[ts, "v"]``, a vector a list of ``{"metric", "value"}``,
    a matrix a list of ``{"metric", "values"}``. An empty list is ``default``.
    """
    if not isinstance(data, list):
        raise ValueError(f"result is a {type(data).__name__}, not a list")
    if not data:
        return default, [], 0
    if not isinstance(data[0], dict):  # scalar (or string): [timestamp, "value"]
        if len(data) != 2:
            raise ValueError(f"unexpected scalar result {data!r:.200}")
        return "scalar", [_to_float(data[1])], 1
    if all("value" in s for s in data):
        return "vector", [_to_float(s["value"][1]) for s in data], len(data)
    if all("values" in s for s in data):
        points = sorted(
            ((float(ts), i, _to_float(v)) for i, s in enumerate(data) for ts, v in s["values"]),
            key=lambda p: (p[0], p[1]),
        )
        return "matrix", [v for _, _, v in points], len(data)
    raise ValueError(f"unexpected result shape {json.dumps(data)[:200]}")


def _api_error(status: int, raw: bytes) -> ProviderError:
    """HTTP status and Prometheus' errorType/error out of a non-200 answer."""
    body = raw.decode(errors="replace")
    error_type: str | None = None
    try:
        answer = json.loads(body)
        error_type = str(answer.get("errorType") or "") or None
        message = str(answer.get("error") or body)
    except (ValueError, AttributeError):
        message = body.strip() or "(empty body)"
    kind = f" {error_type}" if error_type else ""
    return ProviderError(
        f"Prometheus answered HTTP {status}{kind}: {message[:500]}",
        status=status,
        error_type=error_type,
    )


def _aware(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (``datetime.timestamp`` would use local time)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class PrometheusProvider:
    """Instant and range PromQL queries against one Prometheus (or compatible) endpoint.

    ``url`` is the base address (``https://prometheus.monitoring:9090``, or one with a
    path prefix). Authentication: ``bearer_token`` (sent as ``Authorization: Bearer``),
    ``basic_auth=(user, password)``, or any ``headers``. TLS: ``ca_file`` (a path) or
    ``ca_pem`` (the certificate text) to trust a private CA, ``insecure=True`` to skip
    verification. ``timeout`` (seconds) bounds every call, end to end.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | None = None,
        ca_pem: str | None = None,
        insecure: bool = False,
    ) -> None:
        if not re.match(r"^https?://[^/]", url):
            raise ProviderError(f"Prometheus address {url!r} is not an http(s) URL")
        if not timeout > 0 or math.isinf(timeout):
            raise ProviderError(f"timeout must be a positive number of seconds, not {timeout}")
        if bearer_token is not None and basic_auth is not None:
            raise ProviderError("give a bearer token or basic auth, not both")
        if ca_file is not None and ca_pem is not None:
            raise ProviderError("give a CA file or CA PEM text, not both")
        self.url = url.rstrip("/")
        try:
            self._pool = _pool(self.url)
        except ValueError as exc:
            raise ProviderError(f"Prometheus address {url[:200]!r} is invalid: {exc}") from None
        self.timeout = float(timeout)
        self.headers = dict(headers or {})
        if bearer_token is not None:
            self.headers["Authorization"] = f"Bearer {bearer_token}"
        verify: bool | str = True
        if insecure:
            verify = False
        elif ca_file is not None:
            verify = ca_file
        elif ca_pem is not None:
            verify = _ca_file(ca_pem)
        try:
            urlsplit(self.url)
        except ValueError as exc:  # e.g. an invalid IPv6 address: "http://[::1"
            raise ProviderError(f"Prometheus address {url[:200]!r} is invalid: {exc}") from None
        self._auth = basic_auth
        self._session = requests.Session()  # its default adapter does not retry
        self._session.verify = verify

    def close(self) -> None:
        self._session.close()

    def _get(self, path: str, params: dict[str, str]) -> Any:
        """``data.result`` of one GET (runs on the thread pool)."""
        response = self._session.get(
            f"{self.url}{path}",
            params=params,
            headers=self.headers,
            auth=self._auth,
            verify=self._session.verify,  # explicit: a CA bundle from the environment must not win
            timeout=(self.timeout, self.timeout),  # requests: (connect, read)
        )
        if response.status_code != 200:
            raise _api_error(response.status_code, response.content)
        return response.json()["data"]["result"]

    async def __aenter__(self) -> PrometheusProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @property
    def _params(self) -> dict[str, str]:
        return {"timeout": f"{self.timeout:g}"}  # Prometheus takes float seconds

    async def query(self, query: str, at: datetime | None = None) -> QueryResult:
        params = self._params
        when = _aware(at) if at is not None else None
        if when is not None:
            params["time"] = f"{when.timestamp():.3f}"
        data = await self._call(lambda: self._get("/api/v1/query", {"query": query, **params}))
        try:
            kind, values, series = _flatten(data, "vector")
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ProviderError(f"unexpected answer from {self.url}: {exc}") from exc
        return QueryResult(kind=kind, values=values, series=series, query=query, at=when)

    async def query_range(
        self, query: str, start: datetime, end: datetime, step_seconds: float
    ) -> QueryResult:
        if not step_seconds > 0:
            raise ProviderError(f"step must be a positive number of seconds, not {step_seconds}")
        # start/end are sent rounded to whole seconds: report those.
        first = datetime.fromtimestamp(round(_aware(start).timestamp()), UTC)
        last = datetime.fromtimestamp(round(_aware(end).timestamp()), UTC)
        step = f"{step_seconds:g}"
        params = {
            "query": query,
            "start": f"{first.timestamp():.0f}",
            "end": f"{last.timestamp():.0f}",
            "step": step,
            **self._params,
        }
        data = await self._call(lambda: self._get("/api/v1/query_range", params))
        try:
            kind, values, series = _flatten(data, "matrix")
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ProviderError(f"unexpected answer from {self.url}: {exc}") from exc
        return QueryResult(
            kind=kind, values=values, series=series, query=query, start=first, end=last
        )

    async def _call(self, fn: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, fn)
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise ProviderError(
                f"Prometheus {self.url} did not answer within {self.timeout:g}s"
            ) from None
        except requests.Timeout as exc:
            raise ProviderError(
                f"Prometheus {self.url} did not answer within {self.timeout:g}s: {exc}"
            ) from exc
        except requests.ConnectionError as exc:
            raise ProviderError(f"cannot reach Prometheus {self.url}: {exc}") from exc
        except requests.RequestException as exc:  # includes a 200 whose body is not JSON
            raise ProviderError(f"request to Prometheus {self.url} failed: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"unexpected answer from Prometheus {self.url}: {exc}") from exc
