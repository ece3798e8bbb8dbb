"""Hostile analysis input, live: what a user with kubectl sees in the AnalysisRun, the
Rollout's conditions and the operator's log."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import wait_for
from tests.e2e.test_analysis import Stage, stage  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

SECRET = "e2e-Tok3n-5ecret"


def test_a_secret_argument_is_sent_but_masked_in_the_run_and_the_log(
    stage: Stage,  # noqa: F811
) -> None:
    stage.cluster.kubectl(
        "create", "secret", "generic", "prom-token", f"--from-literal=token={SECRET}"
    )
    spec = stage.templates[0]["spec"]
    spec["args"] = [
        {"name": "token", "valueFrom": {"secretKeyRef": {"name": "prom-token", "key": "token"}}}
    ]
    spec["metrics"].append(
        {
            "name": "scoped",
            "provider": {
                "prometheus": {
                    "address": stage.prometheus.url,
                    "timeout": "5s",
                    # matches every series whatever the token: the answer proves it was sent
                    "query": 'count(up{job="demo", tenant!="{{args.token}}"})',
                }
            },
            "successCondition": "result == 2",
            "interval": "2s",
            # both demo targets scraped before the first look (a race seen once in CI-like runs)
            "initialDelay": "4s",
            "inconclusiveLimit": 3,
        }
    )
    stage.start_canary()
    wait_for(
        "Completed",
        lambda: stage.cluster.condition("Completed", "shop").get("status") == "True",
        timeout=90,
    )
    run = stage.run("bg")
    scoped = next(m for m in run["status"]["metricResults"] if m["name"] == "scoped")
    assert scoped["successful"] >= 1
    last = scoped["measurements"][-1]
    assert last["query"] == 'count(up{job="demo", tenant!="<secret:prom-token/token>"})'
    assert SECRET not in json.dumps(run)
    assert SECRET not in stage.operator.log.read_text()


def test_an_unbounded_interval_is_invalid_spec_naming_the_field(
    stage: Stage,  # noqa: F811
) -> None:
    stage.templates[0]["spec"]["metrics"][0]["interval"] = "999999999999h"
    stage.start_canary()
    wait_for(
        "InvalidSpec",
        lambda: stage.cluster.condition("InvalidSpec", "shop").get("status") == "True",
        timeout=60,
    )
    message = stage.cluster.condition("InvalidSpec", "shop")["message"]
    assert "spec.metrics.0.interval" in message and "longer than 24h" in message
    time.sleep(3)
    runs = json.loads(stage.cluster.kubectl("get", "analysisruns.sluice.dev", "-o", "json"))
    assert runs["items"] == []  # no run was made, so none loops on its measurements
    log = stage.operator.log.read_text()
    assert "too large to convert" not in log and "analysis step failed" not in log


def test_a_100kb_argument_still_reaches_a_verdict_on_the_api_server(
    stage: Stage,  # noqa: F811
) -> None:
    """Ten kept measurements each quoting a 100 KB query were more than the API server
    takes: the status write failed (500) in a loop and the step never ended."""
    huge = "t" * 100_000
    spec = stage.templates[0]["spec"]
    spec["args"] = [{"name": "tenant", "value": huge}]
    spec["metrics"].append(
        {
            "name": "scoped",
            "provider": {
                "prometheus": {
                    "address": stage.prometheus.url,
                    "timeout": "5s",
                    "query": 'count(up{job="demo", tenant!="{{args.tenant}}"})',
                }
            },
            "successCondition": "result == 2",
            "interval": "1s",
            "inconclusiveLimit": 3,
        }
    )
    stage.start_canary()
    wait_for(
        "Completed",
        lambda: stage.cluster.condition("Completed", "shop").get("status") == "True",
        timeout=90,
    )
    run = stage.run("bg")
    scoped = next(m for m in run["status"]["metricResults"] if m["name"] == "scoped")
    assert scoped["successful"] >= 5
    assert all("more characters not recorded]" in m["query"] for m in scoped["measurements"])
    assert "analysis step failed" not in stage.operator.log.read_text()  # no 500 loop
