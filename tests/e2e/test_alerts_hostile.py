"""The alert webhook of the live operator under a hostile batch: the valid alert still
aborts the canary, once, and the malformed ones are named."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, wait_for
from tests.e2e.test_analysis import (  # noqa: F401  (token_secret is a fixture)
    TOKEN,
    Stage,
    aborted,
    alert,
    post_alert,
    token_secret,
)

pytestmark = pytest.mark.e2e


def post_raw(stage: Stage, data: bytes) -> int:
    return post_to(stage.operator.port, data, TOKEN)


def post_to(port: int, data: bytes, token: str) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/alerts",
        data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


def test_a_hostile_batch_still_aborts_the_canary_once(
    cluster: Cluster,
    tmp_path: Path,
    token_secret: list[str],  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    s = Stage(cluster, tmp_path, token_secret)
    try:
        for template in s.templates:  # no metric may fail here: only the alert
            for metric in template["spec"]["metrics"]:
                metric["interval"] = "1h"
        s.start_canary()
        wait_for("canary at 50", lambda: cluster.status("shop").get("canaryWeight") == 50)

        # Bodies that are not webhook bodies at all: 400, nothing happens.
        assert post_raw(s, b"[" * 100_000) == 400
        assert post_raw(s, json.dumps({"commonLabels": ["x"], "alerts": []}).encode()) == 400
        assert post_raw(s, b'{"alerts": ["' + b"x" * (3 << 20) + b'"]}') == 413
        assert cluster.status("shop")["phase"] != "Degraded"

        good = alert(cluster.namespace)["alerts"][0]
        hostile = [
            "x",
            {**good, "annotations": ["a", "list"]},
            {**good, "labels": ["a", "list"]},
            {**good, "fingerprint": {"not": "a string"}},
        ]
        big = {**good, "annotations": {"summary": "s" * 800_000}, "fingerprint": "../Ω"}
        many = [{**good, "fingerprint": f"{i:016x}"} for i in range(1000)]
        body = {**alert(cluster.namespace), "alerts": [*hostile, big, *many]}
        code, answer = post_alert(s, TOKEN, body)
        assert code == 400, answer
        assert len(answer["rejected"]) == 4
        assert [r["outcome"][:30] for r in answer["results"]] == ["recorded as failed AnalysisRun"]
        st = aborted(s, "AlertFired")
        assert "CanaryErrorRateHigh" in st["abort"]["message"]

        runs = json.loads(cluster.kubectl("get", "analysisruns.sluice.dev", "-o", "json"))
        alert_runs = [r for r in runs["items"] if "-alert-" in r["metadata"]["name"]]
        assert len(alert_runs) == 1
        (run,) = alert_runs
        assert run["status"]["phase"] == "Failed"
        assert "cut]" in run["status"]["metricResults"][0]["measurements"][0]["message"]
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            sys.stderr.write(s.operator.log.read_text()[-15000:])
        s.close()


def test_with_alerts_port_the_webhook_answers_there_only(
    cluster: Cluster,
    tmp_path: Path,
    token_secret: list[str],  # noqa: F811
) -> None:
    """--alerts-port (the chart sets it): a NetworkPolicy can admit Alertmanager to the
    webhook without opening /metrics, and the metrics port has no webhook."""
    from tests.e2e.conftest import Operator
    from tests.support.prometheus import free_port

    port = free_port()
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "operator.log")
    op.args = [*token_secret, "--alerts-port", str(port)]
    op.start()
    body = json.dumps(alert(cluster.namespace)).encode()
    try:

        def post(to: int, token: str) -> int:
            return post_to(to, body, token)

        assert post(port, "wrong") == 401
        wait_for("the token read", lambda: post(port, TOKEN) in (200, 202))
        assert post(op.port, TOKEN) in (404, 405)
    finally:
        op.stop()
