"""A plain-HTTP proxy that holds every request `delay` seconds before forwarding it.

Put in front of Prometheus: with a delay above a metric's `timeout`, every query times out
on Sluice's side (the proxy's late answer finds the connection closed). The delay can be
changed while it runs; it counts the requests it held.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlowProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay = 0.0
        self.held = 0  # requests forwarded late
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._forward(self, None)

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                proxy._forward(self, self.rfile.read(size))

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SlowProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _forward(self, handler: BaseHTTPRequestHandler, data: bytes | None) -> None:
        delay = self.delay
        if delay:
            with self.lock:
                self.held += 1
            time.sleep(delay)
        headers = {
            k: v for k, v in handler.headers.items() if k.lower() in ("content-type", "accept")
        }
        request = urllib.request.Request(
            self.upstream + handler.path, data=data, headers=headers, method=handler.command
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, body, kind = answer.status, answer.read(), answer.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            status, body, kind = exc.code, exc.read(), "application/json"
        except OSError as exc:
            status, body, kind = 502, str(exc).encode(), "text/plain"
        # The client may have given up long ago (its timeout): nothing to tell it then.
        with contextlib.suppress(OSError):
            handler.send_response(status)
            handler.send_header("Content-Type", kind)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
