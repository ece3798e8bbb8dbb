"""PrometheusProvider against a real Prometheus (Debian's), backfilled with known counters.

The data: ``http_requests_total{job="demo",track=...,code=...}`` over one hour, 15 s
apart, starting 5 hours ago (backfilled data must lie in the past: see
tests/support/prometheus.py). Counters grow linearly, so every rate is known exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.support.prometheus import (  # noqa: F401  (fixtures)
    PrometheusServer,
    counter_openmetrics,
    hours_ago,
    prometheus,
    prometheus_with,
)

from sluice.metrics.base import MetricProvider, ProviderError, QueryResult
from sluice.metrics.prometheus import PrometheusProvider, escape_label_value

T = TypeVar("T")

START = hours_ago(5)  # first sample; the hour of data ends 4 hours ago
END = START + timedelta(hours=1)
AT = START + timedelta(minutes=30)  # instant queries: inside the window, never "now"
RATES = {  # (track, code) -> requests per second
    ("canary", "200"): 10.0,
    ("canary", "500"): 0.5,
    ("stable", "200"): 20.0,
    ("stable", "500"): 0.0,
}
CANARY_ERROR_RATIO = 0.5 / 10.5
ERROR_RATIO = (
    'sum(rate(http_requests_total{{job="demo",track="{t}",code="500"}}[5m]))'
    ' / sum(rate(http_requests_total{{job="demo",track="{t}"}}[5m]))'
)
HOSTILE = [
    'x"} or vector(1) #',
    "back\\slash",
    "trailing\\",
    '\\"',
    "two\nlines",
    "}{",
    "",
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def demo_data() -> str:
    series = [
        ({"job": "demo", "track": track, "code": code}, rate)
        for (track, code), rate in RATES.items()
    ]
    text = counter_openmetrics("http_requests", series, START, END, 15)
    # One more family whose label values are hostile; series i grows at i+1 per second.
    hostile = [({"v": value}, float(i + 1)) for i, value in enumerate(HOSTILE)]
    extra = counter_openmetrics("hostile", hostile, START, END, 15)
    return text.removesuffix("# EOF\n") + extra


@pytest.fixture
def demo(prometheus_with: Callable[[str], PrometheusServer]) -> PrometheusServer:  # noqa: F811
    return prometheus_with(demo_data())


def provider(url: str, timeout: float = 5.0, **kw: Any) -> PrometheusProvider:
    return PrometheusProvider(url, timeout=timeout, **kw)


# ------------------------------------------------------------------ answers


def test_instant_error_ratio_at_a_chosen_time(demo: PrometheusServer) -> None:
    p: MetricProvider = provider(demo.url)
    result = run(p.query(ERROR_RATIO.format(t="canary"), AT))
    assert result.kind == "vector"
    assert result.series == 1
    assert result.values == [pytest.approx(CANARY_ERROR_RATIO, rel=1e-9)]
    assert result.query == ERROR_RATIO.format(t="canary")
    assert result.at == AT
    assert (result.start, result.end) == (None, None)


def test_instant_vector_one_value_per_series(demo: PrometheusServer) -> None:
    q = 'sum by (code) (rate(http_requests_total{job="demo",track="canary"}[5m]))'
    result = run(provider(demo.url).query(q, AT))
    assert (result.kind, result.series) == ("vector", 2)
    assert sorted(result.values) == [pytest.approx(0.5), pytest.approx(10.0)]


def test_scalar_and_infinities(demo: PrometheusServer) -> None:
    p = provider(demo.url)
    assert run(p.query("scalar(vector(2.5))", AT)) == QueryResult(
        "scalar", [2.5], 1, "scalar(vector(2.5))", at=AT
    )
    assert run(p.query("1/0", AT)).values == [float("inf")]
    assert run(p.query("-1/0", AT)).values == [float("-inf")]


def test_nan_result_zero_over_zero(demo: PrometheusServer) -> None:
    q = ERROR_RATIO.format(t="stable").replace('track="stable"}', 'track="stable",code="500"}')
    result = run(provider(demo.url).query(q, AT))  # 0 errors / 0 errors
    assert (result.kind, result.series, len(result.values)) == ("vector", 1, 1)
    assert result.values[0] != result.values[0]  # NaN
    scalar = run(provider(demo.url).query("0/0", AT))
    assert scalar.kind == "scalar" and scalar.values[0] != scalar.values[0]


def test_empty_results(demo: PrometheusServer) -> None:
    p = provider(demo.url)
    instant = run(p.query('http_requests_total{job="nope"}', AT))
    assert (instant.kind, instant.values, instant.series) == ("vector", [], 0)
    ranged = run(p.query_range('http_requests_total{job="nope"}', START, END, 60))
    assert (ranged.kind, ranged.values, ranged.series) == ("matrix", [], 0)
    # Before the data starts there is nothing either.
    early = run(p.query(ERROR_RATIO.format(t="canary"), START - timedelta(hours=1)))
    assert early.values == []


def test_range_query_point_count_and_order(demo: PrometheusServer) -> None:
    p = provider(demo.url)
    start, end = START + timedelta(minutes=10), START + timedelta(minutes=20)
    result = run(p.query_range(ERROR_RATIO.format(t="canary"), start, end, 60))
    assert (result.kind, result.series) == ("matrix", 1)
    assert len(result.values) == 11  # both ends included
    assert result.values == [pytest.approx(CANARY_ERROR_RATIO, rel=1e-9)] * 11
    assert (result.start, result.end, result.at) == (start, end, None)

    by_code = 'sum by (code) (rate(http_requests_total{job="demo",track="canary"}[1m]))'
    two = run(p.query_range(by_code, start, end, 30))
    assert (two.series, len(two.values)) == (2, 2 * 21)
    # Time order across series: each timestamp contributes one point per series.
    pairs = [sorted(two.values[i : i + 2]) for i in range(0, len(two.values), 2)]
    assert pairs == [[pytest.approx(0.5), pytest.approx(10.0)]] * 21


def test_instant_query_of_range_selector_is_matrix(demo: PrometheusServer) -> None:
    q = 'http_requests_total{job="demo",track="canary",code="200"}[1m]'
    result = run(provider(demo.url).query(q, AT))
    assert (result.kind, result.series) == ("matrix", 1)
    # 15 s samples in a 1m window ending on a sample: 5 in Prometheus 2.x (both ends
    # included), 4 from Prometheus 3.0 on (the window's start is excluded).
    assert len(result.values) in (4, 5)
    assert result.values == sorted(result.values)  # a counter, in time order


# ------------------------------------------------------------------ errors


def test_bad_promql_is_provider_error_with_prometheus_message(demo: PrometheusServer) -> None:
    with pytest.raises(ProviderError) as caught:
        run(provider(demo.url).query("sum(rate(http_requests_total[5m]", AT))
    assert caught.value.status == 400
    assert caught.value.error_type == "bad_data"
    assert "HTTP 400" in str(caught.value)
    assert "parse error" in str(caught.value)

    with pytest.raises(ProviderError) as ranged:
        run(provider(demo.url).query_range("rate(nope)", START, END, 60))
    assert ranged.value.status == 400 and "range vector" in str(ranged.value)


def test_too_many_points_is_provider_error(demo: PrometheusServer) -> None:
    with pytest.raises(ProviderError) as caught:
        run(provider(demo.url).query_range("vector(1)", START, END, 0.01))
    assert caught.value.status == 400
    assert "exceeded maximum resolution" in str(caught.value)


def test_killed_server_fails_fast_and_recovers(
    prometheus: PrometheusServer,  # noqa: F811
) -> None:
    p = provider(prometheus.url, timeout=2.0)
    assert run(p.query("vector(1)")).values == [1.0]
    prometheus.kill()
    began = time.monotonic()
    with pytest.raises(ProviderError, match="cannot reach"):
        run(p.query("vector(1)"))
    assert time.monotonic() - began < 2.0 + 1.0
    prometheus.start()  # same data directory, same URL
    assert run(p.query("vector(1)")).values == [1.0]


@contextlib.contextmanager
def silent_server(trickle: bool = False) -> Iterator[str]:
    """A TCP server that accepts and never answers (or, with trickle, answers a header
    byte every 0.2 s: requests' read timeout then never fires). Bounded: it stops by
    itself after ~30 s and when the block exits."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn, _ = listener.accept()
                held.append(conn)
            if trickle:
                for conn in held:
                    with contextlib.suppress(OSError):
                        conn.sendall(b"H")
                time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


async def timed_with_ticker(coro: Coroutine[Any, Any, Any]) -> tuple[BaseException, float, int]:
    """Await ``coro`` (expected to fail) while counting event-loop ticks of 50 ms."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    began = time.monotonic()
    try:
        await coro
    except BaseException as exc:
        return exc, time.monotonic() - began, ticks
    finally:
        task.cancel()
    raise AssertionError("the query did not fail")


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickle"])
def test_hung_server_times_out_without_blocking_the_loop(trickle: bool) -> None:
    timeout = 1.0
    with silent_server(trickle) as url:
        p = provider(url, timeout=timeout)
        exc, took, ticks = run(timed_with_ticker(p.query("vector(1)")))
    assert isinstance(exc, ProviderError), exc
    assert "within 1s" in str(exc)
    assert timeout * 0.9 <= took < timeout + 1.0
    assert ticks >= 10  # the loop kept running while the request hung


def test_range_query_times_out_too() -> None:
    with silent_server() as url:
        began = time.monotonic()
        with pytest.raises(ProviderError, match=r"within 0\.5s"):
            run(provider(url, timeout=0.5).query_range("vector(1)", START, END, 60))
        assert time.monotonic() - began < 1.5


def test_nothing_listening_is_provider_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed at once: nothing listens there
    with pytest.raises(ProviderError, match="cannot reach"):
        run(provider(f"http://127.0.0.1:{port}", timeout=2).query("vector(1)"))


def test_bad_configuration_is_provider_error() -> None:
    with pytest.raises(ProviderError):
        PrometheusProvider("prometheus:9090")
    with pytest.raises(ProviderError):
        PrometheusProvider("http://x", bearer_token="t", basic_auth=("u", "p"))
    with pytest.raises(ProviderError):
        PrometheusProvider("http://x", timeout=0)


# ------------------------------------------------------------------ escaping


def test_unescaped_hostile_value_changes_the_query(demo: PrometheusServer) -> None:
    """The reason for escaping: pasted raw, the value ends the matcher and adds vector(1)."""
    raw = 'x"} or vector(1) #'
    q = f'http_requests_total{{job="demo",track="{raw}"}}'
    result = run(provider(demo.url).query(q, AT))
    assert (result.series, result.values) == (1, [1.0])


def test_escaped_hostile_value_stays_one_label_value(demo: PrometheusServer) -> None:
    p = provider(demo.url)
    for value in HOSTILE:
        q = f'http_requests_total{{job="demo",track="{escape_label_value(value)}"}}'
        result = run(p.query(q, AT))  # parses, and no demo series has such a track
        assert (result.series, result.values) == (0, []), value


def test_escaped_value_matches_exactly_the_literal(demo: PrometheusServer) -> None:
    p = provider(demo.url)
    for i, value in enumerate(HOSTILE):
        if value == "":  # v="" selects series without the label: not a literal match
            continue
        q = f'rate(hostile_total{{v="{escape_label_value(value)}"}}[5m])'
        result = run(p.query(q, AT))
        assert result.values == [pytest.approx(i + 1.0)], value


def test_escape_label_value_text() -> None:
    assert escape_label_value('x"} or vector(1) #') == 'x\\"} or vector(1) #'
    assert escape_label_value("a\\b") == "a\\\\b"
    assert escape_label_value("a\nb\rc") == "a\\nb\\rc"
    assert escape_label_value("plain-value_1.2") == "plain-value_1.2"


# ------------------------------------------------------------------ auth and TLS


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []
    answer = {"status": "success", "data": {"resultType": "scalar", "result": [1, "7"]}}

    def do_GET(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps(self.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def recorder(tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[dict[str, str]]]]:
    class Handler(_Recorder):
        seen: list[dict[str, str]] = []

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", Handler.seen
    finally:
        server.shutdown()
        server.server_close()


def test_bearer_basic_and_headers_are_sent() -> None:
    with recorder() as (url, seen):
        run(provider(url, bearer_token="s3cret", headers={"X-Scope-OrgID": "t1"}).query("q"))
        run(provider(url, basic_auth=("ann", "pw")).query("q"))
    assert seen[0]["authorization"] == "Bearer s3cret"
    assert seen[0]["x-scope-orgid"] == "t1"
    assert seen[1]["authorization"] == "Basic YW5uOnB3"


def test_tls_private_ca_and_insecure(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with recorder(tls) as (url, _):
        with pytest.raises(ProviderError, match="CERTIFICATE_VERIFY_FAILED"):
            run(provider(url).query("q"))
        assert run(provider(url, ca_pem=cert.read_text()).query("q")).values == [7.0]
        assert run(provider(url, ca_file=str(cert)).query("q")).values == [7.0]
        with pytest.warns(Warning):  # urllib3's InsecureRequestWarning
            assert run(provider(url, insecure=True).query("q")).values == [7.0]


# ------------------------------------------------------------------ the support itself


def test_scrape_targets_and_backfill_into_running_server(tmp_path: Path) -> None:
    """PrometheusServer scrapes its targets every second; backfill restarts it."""
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    Counter("sluice_test_things", "things", registry=registry).inc(3)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    target = ("app", f"127.0.0.1:{port}", {"team": "sluice"})
    prom = PrometheusServer([target], workdir=tmp_path / "prom")
    try:
        prom.start()
        assert prom.startup_seconds is not None and prom.startup_seconds < 30
        p = provider(prom.url)
        deadline = time.monotonic() + 15
        up: list[float] = []
        while time.monotonic() < deadline and up != [1.0]:
            up = run(p.query('up{job="app",team="sluice"}')).values
            time.sleep(0.2)
        assert up == [1.0]
        assert run(p.query('sluice_test_things_total{job="app"}')).values == [3.0]

        prom.backfill(demo_data())  # running: restarted so that the blocks are read
        assert prom.running
        result = run(p.query(ERROR_RATIO.format(t="canary"), AT))
        assert result.values == [pytest.approx(CANARY_ERROR_RATIO, rel=1e-9)]
    finally:
        prom.close()
        server.shutdown()
        thread.join(5)


def test_query_times_are_reported_as_sent(demo: PrometheusServer) -> None:
    at = datetime.fromisoformat("2001-01-01T00:00:00")  # naive: taken as UTC
    result = run(provider(demo.url).query("vector(1)", at))
    assert result.at is not None and result.at.utcoffset() == timedelta(0)
