"""Webhook gates on a real API server, against a local HTTP server the test controls.

Each endpoint answers as the test says (a status code, or a delay longer than the
webhook's timeout, or nothing at all); the test looks at the Rollout's status,
conditions, Events and child Deployments, and at the calls the endpoint received.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.manifests import canary_rollout

pytestmark = pytest.mark.e2e
INTERVAL = 1.0  # --webhook-interval: a gate that did not allow is asked again this often


class Gates:
    """A local endpoint: `answers[path]` is a status code or ("sleep", seconds)."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        gates = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                gates.calls.append((self.path, body))
                answer = gates.answers.get(self.path, 404)
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                self.send_response(answer)
                self.end_headers()
                self.wfile.write(b"not now" if answer >= 300 else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def called(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in list(self.calls) if p == path]


@pytest.fixture
def gates() -> Iterator[Gates]:
    g = Gates()
    yield g
    g.server.shutdown()


@pytest.fixture
def fast_operator(
    cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Operator]:
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "operator.log")
    op.args = ["--webhook-interval", str(INTERVAL)]
    op.start()
    yield op
    op.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(op.log.read_text()[-20000:])


def apply(cluster: Cluster, webhooks: list[dict[str, Any]], image: str = "nginx:1.27") -> None:
    canary = {"scaleDownDelaySeconds": 0, "steps": [{"setWeight": 50}], "webhooks": webhooks}
    body = canary_rollout(canary, image)
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))


def healthy_then_v2(cluster: Cluster, webhooks: list[dict[str, Any]]) -> None:
    apply(cluster, webhooks)
    wait_for("v1 Healthy", lambda: cluster.status().get("phase") == "Healthy")
    cluster.set_image("nginx:1.28")


def paused_by(cluster: Cluster, reason: str, timeout: float = 30) -> dict[str, Any]:
    wait_for(
        f"Paused ({reason})",
        lambda: cluster.condition("Paused").get("reason") == reason,
        timeout=timeout,
    )
    return cluster.status()


def test_confirm_rollout_holds_until_allowed_then_rollout_and_promotion_gates(
    cluster: Cluster, fast_operator: Operator, gates: Gates
) -> None:
    gates.answers.update({"/confirm": 403, "/load": 200, "/promote": 200, "/done": 200})
    healthy_then_v2(
        cluster,
        [
            {"name": "confirm", "type": "confirm-rollout", "url": f"{gates.url}/confirm"},
            {
                "name": "load",
                "type": "rollout",
                "url": f"{gates.url}/load",
                "metadata": {"test": "smoke"},
            },
            {"name": "promote", "type": "confirm-promotion", "url": f"{gates.url}/promote"},
            {"name": "done", "type": "post-rollout", "url": f"{gates.url}/done"},
        ],
    )
    st = paused_by(cluster, "WebhookDenied")
    denied_at = time.monotonic()
    assert "webhook confirm (confirm-rollout) did not allow: HTTP 403: not now" in st["message"]
    assert st["currentStepIndex"] == 0 and st["canaryWeight"] == 0
    assert cluster.replicas("web-b")[0] in (0, -1), "no canary pod before it is allowed"
    time.sleep(4)
    assert cluster.status()["currentStepIndex"] == 0
    assert cluster.replicas("web-b")[0] in (0, -1)
    calls = len(gates.called("/confirm"))
    held = time.monotonic() - denied_at + INTERVAL
    assert 2 <= calls <= held / INTERVAL + 2, f"{calls} calls in {held:.1f}s: once per interval"
    assert cluster.reasons().count("WebhookDenied") == 1, "the refusal is told once"
    assert not gates.called("/load") and not gates.called("/promote")

    gates.answers["/confirm"] = 200
    wait_for("Healthy on v2", lambda: cluster.status().get("stableSlot") == "b", timeout=40)
    st = cluster.status()
    assert st["phase"] == "Healthy" and cluster.replicas("web-b") == (2, 2)
    load = gates.called("/load")
    assert len(load) == 1 and load[0]["step"] == 0 and load[0]["metadata"] == {"test": "smoke"}
    assert load[0]["name"] == "web" and load[0]["namespace"] == cluster.namespace
    assert load[0]["canaryRevision"] and load[0]["type"] == "rollout"
    assert len(gates.called("/promote")) == 1
    reasons = cluster.reasons()
    assert reasons.count("WebhookAllowed") == 3 and "Completed" in reasons
    wait_for("post-rollout told", lambda: len(gates.called("/done")) == 1)
    told = gates.called("/done")[0]
    assert told["type"] == "post-rollout" and told["reason"] == "Completed"
    assert "promoted to stable" in told["message"]


@pytest.mark.parametrize("answer", ["slow", "hang", "refused", "deny"])
def test_confirm_promotion_never_promotes_without_a_2xx(
    cluster: Cluster, fast_operator: Operator, gates: Gates, answer: str
) -> None:
    url = f"{gates.url}/promote"
    if answer == "slow":
        gates.answers["/promote"] = ("sleep", 3)  # answers, but after the 1 s timeout
    elif answer == "hang":
        gates.answers["/promote"] = ("sleep", 120)  # never within the test
    elif answer == "refused":
        url = "http://127.0.0.1:9/promote"  # nothing listens there
    else:
        gates.answers["/promote"] = 500
    hooks = [{"name": "promote", "type": "confirm-promotion", "url": url, "timeout": "1s"}]
    healthy_then_v2(cluster, hooks)
    st = paused_by(cluster, "WebhookDenied")
    expected = {
        "slow": "no answer within 1s",
        "hang": "no answer within 1s",
        "refused": "not reachable",
        "deny": "HTTP 500",
    }[answer]
    assert expected in st["message"], st["message"]
    assert st["currentStepIndex"] == 1 and st["canaryRevision"]
    time.sleep(5)
    st = cluster.status()
    assert st["canaryRevision"] and st["stableSlot"] == "a", "promoted on a missing answer"
    assert st["phase"] == "Paused" and cluster.replicas("web-b") == (2, 2)
    if answer != "refused":
        assert 2 <= len(gates.called("/promote")) <= 10
    # The operator is still well: an allow goes on from there.
    gates.answers["/promote"] = 200
    if answer == "refused":
        hooks[0]["url"] = f"{gates.url}/promote"
        cluster.kubectl(
            "patch", "rollout", "web", "--type", "merge",
            "-p", json.dumps({"spec": {"strategy": {"canary": {"webhooks": hooks}}}}),
        )  # fmt: skip
    wait_for("promoted", lambda: cluster.status().get("stableSlot") == "b", timeout=40)


def test_rollout_webhook_failing_beyond_its_limit_aborts(
    cluster: Cluster, fast_operator: Operator, gates: Gates
) -> None:
    gates.answers["/load"] = 503
    gates.answers["/told"] = 500  # a notification hook is retried; its answer changes nothing
    hooks = [
        {"name": "load", "type": "rollout", "url": f"{gates.url}/load", "failureLimit": 1},
        {"name": "told", "type": "rollback", "url": f"{gates.url}/told"},
    ]
    healthy_then_v2(cluster, hooks)
    wait_for(
        "aborted", lambda: (cluster.status().get("abort") or {}).get("reason") == "WebhookFailed"
    )
    st = cluster.status()
    assert st["phase"] == "Degraded" and st["canaryWeight"] == 0
    assert "webhook load (rollout at step 0) failed 2 times in a row: HTTP 503" in st["message"]
    assert len(gates.called("/load")) == 2
    wait_for("stable back at 2", lambda: cluster.replicas("web-a") == (2, 2))
    wait_for("rollback told, then retried", lambda: len(gates.called("/told")) >= 2, timeout=15)
    told = gates.called("/told")[0]
    assert told["type"] == "rollback" and told["reason"] == "Aborted"
    assert "WebhookFailed" in told["message"]
