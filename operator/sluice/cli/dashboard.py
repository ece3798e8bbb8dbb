"""`kubectl sluice dashboard`: a read-only web view on 127.0.0.1, the data of `get rollout`.

The page polls two JSON endpoints once a second and redraws in place (no reload). Every
value from the cluster goes into the page as text (textContent), never as markup.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from sluice.cli.errors import CliError, describe
from sluice.cli.kube import Client
from sluice.cli.view import describe_step, routers, threshold

Body = dict[str, Any]


def summary(body: Body) -> Body:
    meta, st = body["metadata"], body.get("status") or {}
    return {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "phase": st.get("phase") or "",
        "weight": st.get("canaryWeight", 0),
        "step": st.get("currentStepIndex"),
    }


def limit(metric: Body) -> float | None:
    """The metric's numeric threshold, for the chart (None: a condition, not a number)."""
    for field, key in (("errorRate", "max"), ("latency", "maxSeconds"), ("circuitBreaker", "max")):
        if field in metric:
            return float(metric[field].get(key, 0))
    return None


def detail(client: Client, namespace: str, name: str) -> Body:
    client.namespace = namespace
    body = client.rollout(name)
    spec, st = body.get("spec") or {}, body.get("status") or {}
    steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
    runs = sorted(client.runs(name), key=lambda r: r["metadata"].get("creationTimestamp") or "")
    analysis = []
    for run in runs[-2:]:
        rst = run.get("status") or {}
        specs = {m.get("name"): m for m in (run.get("spec") or {}).get("metrics") or []}
        metrics = []
        for result in rst.get("metricResults") or []:
            metric = specs.get(result.get("name")) or {}
            metrics.append(
                {
                    "name": result.get("name"),
                    "phase": result.get("phase"),
                    "threshold": threshold(metric),
                    "limit": limit(metric),
                    "measurements": [
                        {k: m.get(k) for k in ("value", "phase", "startedAt", "message")}
                        for m in result.get("measurements") or []
                    ],
                }
            )
        analysis.append(
            {"name": run["metadata"]["name"], "phase": rst.get("phase"), "metrics": metrics}
        )
    return {
        **summary(body),
        "message": st.get("message", ""),
        "abort": st.get("abort"),
        "steps": [describe_step(s) for s in steps],
        "stable": {**(st.get("stable") or {}), "revision": st.get("stableRevision", "")},
        "canary": {**(st.get("canary") or {}), "revision": st.get("canaryRevision", "")},
        "routers": routers(spec) or [f"Service/{name} (share of pods)"],
        "analysis": analysis,
        "events": [
            {k: e.get(k) for k in ("lastTimestamp", "type", "reason", "message")}
            for e in client.events(name)[-10:]
        ],
    }


def handler(args: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    from sluice.cli.dashboard_page import PAGE

    page = PAGE.encode()
    lock = threading.Lock()  # one kubernetes client, used by one request at a time
    client = Client(args)
    all_namespaces = bool(getattr(args, "all_namespaces", False))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = [unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "localhost"):  # a rebound DNS name reads nothing
                self._send(403, b'{"error": "use http://127.0.0.1"}', "application/json")
                return
            try:
                if parts == [""]:
                    self._send(200, page, "text/html; charset=utf-8")
                    return
                with lock:
                    if parts == ["api", "rollouts"]:
                        data: Any = [summary(b) for b in client.rollouts(all_namespaces)]
                    elif len(parts) == 4 and parts[:2] == ["api", "rollout"]:
                        data = detail(client, parts[2], parts[3])
                    else:
                        self._send(404, b'{"error": "not found"}', "application/json")
                        return
                self._send(200, json.dumps(data).encode(), "application/json")
            except Exception as exc:
                message = describe(exc)
                if message is None:
                    raise
                self._send(502, json.dumps({"error": message}).encode(), "application/json")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", "default-src 'self' 'unsafe-inline'")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


def dashboard(args: argparse.Namespace) -> int:
    try:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(args))
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from None
    print(
        f"Sluice dashboard on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
