"""Notifications from a real operator to a receiver on 127.0.0.1 that checks signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import statistics
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.test_analysis import Stage
from tests.e2e.test_canary import at_step, healthy_v1

pytestmark = pytest.mark.e2e
SECRET = b"e2e-hmac-key"


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.got: list[tuple[float, str, dict[str, str], bytes]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for _, p, _, raw in self.got if p == path]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append((time.time(), self.path, dict(self.headers), raw))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_rollout_is_told_to_a_signed_webhook_and_slack(
    cluster: Cluster, operator: Operator
) -> None:
    receiver = Receiver()
    try:
        secret = base64.b64encode(SECRET).decode()
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": [
                        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"},
                         "data": {"hmac": secret}},
                        {"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "sluice-notifications"},
                         "data": {"webhook-url": f"{receiver.url}/hook",
                                  "webhook-secret": "hooks/hmac"}},
                    ],
                }
            ),
        )  # fmt: skip
        healthy_v1(cluster)
        cluster.kubectl(
            "annotate", "rollout", "web", f"notifications.sluice.dev/slack-url={receiver.url}/slack"
        )
        cluster.set_image("nginx:1.28")
        at_step(cluster, 3, "Paused", 50, timeout=60)
        cluster.action("promote")
        wait_for("Completed", lambda: cluster.condition("Completed").get("status") == "True")
        cluster.set_image("nginx:1.29")
        at_step(cluster, 1, "Paused", 20, timeout=60)
        cluster.action("pause")
        wait_for(
            "the paused notification",
            lambda: any(b["event"] == "paused" for b in receiver.bodies("/hook")),
            timeout=30,
        )
        cluster.action("abort")
        wait_for(
            "the aborted notification",
            lambda: any(b["event"] == "aborted" for b in receiver.bodies("/hook")),
            timeout=30,
        )
        time.sleep(1)
    finally:
        receiver.shutdown()

    hooks = [(t, h, raw) for t, p, h, raw in receiver.got if p == "/hook"]
    for _, headers, raw in hooks:
        expected = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        assert headers["X-Sluice-Signature"] == expected
    events = [json.loads(raw)["event"] for _, _, raw in hooks]
    # the first canary, in order; then the second one's start and abort
    first = events[: events.index("completed") + 1]
    assert first == ["started", "step-completed", "step-completed", "step-completed",
                     "paused", "promoted", "completed"], events  # fmt: skip
    # each names the step it completed (rollout-basic: setWeight 20, pause 5s, setWeight 50)
    done = [json.loads(raw) for _, _, raw in hooks][1:4]
    assert [(b["completedStep"], b["message"].split(";")[0]) for b in done] == [
        (0, "step 0/4 completed (setWeight 20)"),
        (1, "step 1/4 completed (pause 5s)"),
        (2, "step 2/4 completed (setWeight 50)"),
    ], done
    paused = next(json.loads(raw) for _, _, raw in hooks if json.loads(raw)["event"] == "paused")
    assert paused["message"] == (
        "step 3/4: pause until promoted: waiting for `kubectl sluice promote web`"
    )
    assert events[events.index("completed") + 1 :][:1] == ["started"]
    assert events[-2:] == ["paused", "aborted"], events
    aborted = json.loads(hooks[-1][2])
    assert aborted["rollout"] == {"namespace": cluster.namespace, "name": "web"}
    assert aborted["abort"]["reason"] == "UserAbort" and aborted["phase"] == "Degraded"
    assert aborted["analysis"] is None  # a human aborted: no metric to name
    slack = receiver.bodies("/slack")
    assert any(f"*{cluster.namespace}/web* completed" in b["text"] for b in slack), slack
    # From the operator's decision to the receiver, per notification.
    latency = [
        t - datetime.fromisoformat(json.loads(raw)["time"].replace("Z", "+00:00")).timestamp()
        for t, _, raw in hooks
    ]
    sys.stderr.write(
        f"\nnotification latency: median {statistics.median(latency) * 1000:.0f} ms, "
        f"max {max(latency) * 1000:.0f} ms over {len(latency)}\n"
    )
    assert max(latency) < 5, latency
    metrics = operator.metrics()
    assert (
        f'sluice_notifications_total{{channel="webhook",result="delivered"}} {len(hooks)}.0'
        in metrics
    )
    assert 'sluice_notifications_total{channel="any",result="dropped"} 0.0' in metrics


def test_an_analysis_abort_names_the_metric_value_threshold_and_query(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Real Prometheus and demo app: the canary's errors fail the analysis, and the receiver
    is told which metric, at what value, against which limit, from which query."""
    receiver = Receiver()
    stage = Stage(cluster, tmp_path, [])
    # held at 50 % until the errors come (the example's 12 s pause can pass first)
    stage.rollout["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 50}, {"pause": {}}]
    try:
        stage.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "sluice-notifications"},
                "data": {
                    "webhook-url": f"{receiver.url}/hook",
                    "slack-url": f"{receiver.url}/slack",
                    "events": "started,aborted",
                },
            }
        )
        stage.start_canary()
        wait_for("canary at 50", lambda: stage.cluster.status("shop").get("canaryWeight") == 50)
        stage.canary.set(error_rate=0.2)
        wait_for(
            "the aborted notification",
            lambda: any(b["event"] == "aborted" for b in receiver.bodies("/hook")),
            timeout=90,
        )
        time.sleep(1)  # a second aborted one, if any, is in too
    except BaseException:
        sys.stderr.write(stage.operator.log.read_text()[-15000:])
        raise
    finally:
        receiver.shutdown()
        stage.close()

    aborted = [b for b in receiver.bodies("/hook") if b["event"] == "aborted"]
    assert aborted and all(b["abort"]["reason"] == "AnalysisFailed" for b in aborted), aborted
    analysis = aborted[0]["analysis"]
    assert analysis is not None, aborted[0]
    assert analysis["metric"] == "error-rate" and analysis["phase"] == "Failed", analysis
    assert float(analysis["value"]) > 0.05, analysis  # the demo app serves 20 % errors
    assert analysis["threshold"] == "errorRate.max 0.05"
    assert "http_requests_total" in analysis["query"], analysis
    assert stage.revisions[1] in analysis["query"]  # the canary's series, as sent
    assert analysis["run"].startswith(f"shop-{stage.revisions[1]}-")
    text = next(b["text"] for b in receiver.bodies("/slack") if "aborted" in b["text"])
    for part in ("error-rate", analysis["value"], "errorRate.max 0.05", analysis["query"]):
        assert part in text, text
