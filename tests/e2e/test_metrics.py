"""The operator's /metrics through a real Prometheus: every dashboard panel's and every
alert rule's query parses and returns data, from three real canaries (one promoted, one
aborted by its analysis, one whose analysis cannot reach its provider).

The rules, the dashboard and the scrape job are the chart's: what an install with its
ServiceMonitor, PrometheusRule and dashboard switches on gives Prometheus and Grafana, so a
rule or panel that selects another job than the ServiceMonitor produces fails here."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.render import of_kind, one, render, scrape_job
from tests.e2e.conftest import Cluster, Operator, wait_for
from tests.e2e.test_notify import Receiver
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.e2e
MONITORING = {
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
    "dashboard": {"enabled": True},
}


def chart_monitoring() -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The scrape job, PrometheusRule and dashboard of a default install (monitoring on)."""
    pytest.importorskip("helm_python")
    objects = render({"metrics": MONITORING})
    (config,) = [
        c
        for c in of_kind(objects, "ConfigMap")
        if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    dashboard = json.loads(config["data"]["sluice.json"])
    return scrape_job(objects), one(objects, "PrometheusRule"), dashboard


def query(prom: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{expr}: {exc.code} {exc.read().decode()[:300]}") from None
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def rollout(name: str, steps: list[dict[str, Any]], metric: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
            "strategy": {
                "canary": {
                    "scaleDownDelaySeconds": 0,
                    "steps": steps,
                    "analysis": {
                        "metrics": [{"name": name + "-check", "interval": "1s", **metric}]
                    },
                }
            },
        },
    }


def substitute(expr: str, namespace: str) -> str:
    """Grafana's variables as the dashboard would send them."""
    return (
        expr.replace("$namespace", namespace)
        .replace("$rollout", ".*")
        .replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
    )


def test_every_panel_and_rule_returns_data(
    cluster: Cluster, operator: Operator, tmp_path: Path
) -> None:
    job, manifest, dashboard = chart_monitoring()
    prom = PrometheusServer([(job, f"127.0.0.1:{operator.port}", {})], workdir=tmp_path / "p")
    prom.start()
    receiver = Receiver()  # notifications too, for the dashboard's notification panels
    try:
        config = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "sluice-notifications"},
                  "data": {"webhook-url": f"{receiver.url}/hook"}}  # fmt: skip
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(config))
        wait_for("the first scrape", lambda: query(prom, f'up{{job="{job}"}} == 1'), timeout=30)
        ok = {"provider": {"prometheus": {"address": prom.url, "query": "vector(0.01)"}},
              "successCondition": "result < 0.5"}  # fmt: skip
        bad = {"provider": {"prometheus": {"address": prom.url, "query": "vector(1)"}},
               "successCondition": "result < 0.5"}  # fmt: skip
        down = {"provider": {"prometheus": {"address": "http://127.0.0.1:1", "query": "up"}},
                "successCondition": "result < 0.5", "consecutiveErrorLimit": 0,
                "onProviderError": "pause"}  # fmt: skip
        bodies = [
            rollout("good", [{"setWeight": 50}, {"pause": {"duration": "2s"}}], ok),
            rollout("bad", [{"setWeight": 50}, {"pause": {"duration": "60s"}}], bad),
            rollout("flaky", [{"setWeight": 50}, {"pause": {}}], down),
        ]
        apply = {"apiVersion": "v1", "kind": "List", "items": bodies}
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(apply))
        for name in ("good", "bad", "flaky"):
            wait_for(f"{name} Healthy", lambda n=name: cluster.status(n).get("phase") == "Healthy")
        for body in bodies:  # the new version: a canary each
            body["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(apply))
        # until the operator has seen the new version, Completed=True still describes v1
        generation = cluster.rollout("good")["metadata"]["generation"]
        wait_for(
            "the operator saw the new version",
            lambda: cluster.status("good").get("observedGeneration", 0) >= generation,
        )
        completed = lambda: cluster.condition("Completed", "good").get("status") == "True"  # noqa: E731
        wait_for("good Completed", completed, timeout=90)
        wait_for(
            "bad Degraded", lambda: cluster.status("bad").get("phase") == "Degraded", timeout=60
        )
        erroring = (
            f'sluice_analysis_metric_phase{{metric="flaky-check",namespace="{cluster.namespace}",'
            'phase="Holding",rollout="flaky"} 1.0'
        )
        # onProviderError pause: held (within maxOutage) while its provider is down
        wait_for("flaky's metric Holding", lambda: erroring in operator.metrics(), timeout=60)
        assert receiver.got, "no notification delivered"
        time.sleep(3)  # two more scrapes
        text = operator.metrics()
        revisions = {cluster.status(n).get("stableRevision") for n in ("good", "bad", "flaky")}
        assert all(r and r not in text for r in revisions), "a revision hash in a label"
        for edge in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25"):
            assert f'sluice_reconcile_duration_seconds_bucket{{le="{edge}"}}' in text
        # its own time, the API waits taken out: never more reconciles than measured
        own = re.search(r"^sluice_reconcile_own_seconds_count (\S+)$", text, re.M)
        whole = re.search(r"^sluice_reconcile_duration_seconds_count (\S+)$", text, re.M)
        assert own and whole and 0 < float(own.group(1)) == float(whole.group(1))
        own_sum = re.search(r"^sluice_reconcile_own_seconds_sum (\S+)$", text, re.M)
        whole_sum = re.search(r"^sluice_reconcile_duration_seconds_sum (\S+)$", text, re.M)
        assert own_sum and whole_sum and float(own_sum.group(1)) < float(whole_sum.group(1))
        assert "process_resident_memory_bytes" in text and "python_info{" in text
        assert 'sluice_aborts_total{cause="AnalysisFailed"} 1.0' in text
        assert re.search(r'sluice_analysis_metric_value\{metric="bad-check",.*\} 1\.0', text)

        # every panel of the dashboard
        panels = [p for p in dashboard["panels"] if p["type"] != "row"]
        assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
        empty = []
        for panel in panels:
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                result = query(prom, substitute(target["expr"], cluster.namespace))
                values = [float(r["value"][1]) for r in result]
                if not any(not math.isnan(v) for v in values):
                    empty.append(f"{panel['title']}: {target['expr']} -> {result}")
        assert not empty, "\n".join(empty)

        # every rule: promtool accepts them, and each alert fires on its condition
        plain = tmp_path / "rules.yaml"
        plain.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}))
        check = subprocess.run(
            [prom.promtool_bin, "check", "rules", str(plain)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "SUCCESS: 4 rules found" in check.stdout
        rules = {r["alert"]: r["expr"] for g in manifest["spec"]["groups"] for r in g["rules"]}
        assert set(rules) == {
            "SluiceRolloutDegraded",
            "SluiceAnalysisErroring",
            "SluiceOperatorDown",
            "SluiceNoLeader",
        }
        degraded = query(prom, rules["SluiceRolloutDegraded"])
        assert [r["metric"]["rollout"] for r in degraded] == ["bad"], degraded
        failing = query(prom, rules["SluiceAnalysisErroring"])
        assert [(r["metric"]["rollout"], r["metric"]["metric"]) for r in failing] == [
            ("flaky", "flaky-check")
        ], failing
        leading = re.search(r"^sluice_leader(\{[^}]*\})? 1(\.0)?$", text, re.M) is not None
        assert bool(query(prom, rules["SluiceNoLeader"])) is not leading
        assert query(prom, rules["SluiceOperatorDown"]) == []  # it is up

        # a deleted Rollout's series go away
        cluster.kubectl("delete", "rollout", "bad", "--wait=true")
        wait_for("bad's series gone", lambda: 'rollout="bad"' not in operator.metrics(), timeout=30)
        assert 'rollout="good"' in operator.metrics()

        operator.stop()
        down_expr = rules["SluiceOperatorDown"]
        wait_for("SluiceOperatorDown fires", lambda: query(prom, down_expr), timeout=30)
    finally:
        prom.close()
        receiver.shutdown()
