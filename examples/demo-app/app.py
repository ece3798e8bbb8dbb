"""A tiny HTTP app instrumented with prometheus_client, whose health can be changed live.

    python app.py --port 8081 --revision abc123
    curl -X POST 'localhost:8081/admin?error_rate=0.2&latency=0.3&breakers=1'
    curl -X POST 'localhost:8081/admin?tail_rate=0.1&tail_latency=0.3'   # a heavier tail

It serves `/` (answers 500 with probability error_rate, after `latency` seconds, or
after `tail_latency` seconds for a share `tail_rate` of requests: the same median, a
heavier tail),
`/metrics`, and `/admin` (POST, query parameters as above). With `--load N` it
also sends itself N requests a second, so that rates exist without a load tester.
The metrics carry the label names the `prometheus-client` preset of Sluice's
built-in triggers expects: `http_requests_total{code}`,
`http_request_duration_seconds_bucket`, `circuit_breaker_open`.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

REQUESTS = Counter("http_requests_total", "Requests served.", ["code"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Request latency.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BREAKERS = Gauge("circuit_breaker_open", "Open circuit breakers.")

STATE = {
    "error_rate": 0.0,
    "latency": 0.002,
    "breakers": 0.0,
    "tail_rate": 0.0,
    "tail_latency": 0.0,
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path == "/metrics":
            body = generate_latest()
            self._send(200, body, CONTENT_TYPE_LATEST)
            return
        started = time.perf_counter()
        slow = random.random() < STATE["tail_rate"]
        time.sleep(STATE["tail_latency"] if slow else STATE["latency"])
        code = 500 if random.random() < STATE["error_rate"] else 200
        REQUESTS.labels(str(code)).inc()
        LATENCY.observe(time.perf_counter() - started)
        self._send(code, b"ok\n" if code == 200 else b"boom\n", "text/plain")

    def do_POST(self) -> None:
        url = urlparse(self.path)
        if url.path != "/admin":
            self._send(404, b"not found\n", "text/plain")
            return
        for key, values in parse_qs(url.query).items():
            if key in STATE:
                STATE[key] = float(values[-1])
        BREAKERS.set(STATE["breakers"])
        self._send(200, (repr(STATE) + "\n").encode(), "text/plain")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _load(port: int, per_second: float) -> None:
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        except OSError:
            pass  # a 500 raises; it was counted
        time.sleep(1.0 / per_second)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--load", type=float, default=0.0, help="self-requests per second")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.002)
    args = parser.parse_args()
    STATE.update(error_rate=args.error_rate, latency=args.latency)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.load > 0:
        for _ in range(max(1, int(args.load // 50))):
            threading.Thread(
                target=_load,
                args=(args.port, args.load / max(1, int(args.load // 50))),
                daemon=True,
            ).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
