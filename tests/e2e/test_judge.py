"""The judge metric live: the operator, the local control plane, a real Prometheus scraping
two demo apps (stable and canary revisions) every second.

A canary answering 500s five times as often as the stable is failed by the judge, and the
AnalysisRun's status shows the evidence (sample sizes, the estimate with its interval,
the e-value, the verdict); a canary as good as the stable is not failed early and the
rollout completes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, wait_for
from tests.e2e.test_analysis import DemoApp, Stage

pytestmark = pytest.mark.e2e


def judge_template(prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "http-health"},
        "spec": {
            "metrics": [
                {
                    "name": "errors-vs-stable",
                    "provider": {"prometheus": {"address": prometheus_url, "timeout": "5s"}},
                    "interval": "5s",
                    "judge": {"errors": {}, "maxDuration": "40s", "minSample": 100},
                }
            ]
        },
    }


@pytest.fixture
def stage(cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stage]:
    s = Stage(cluster, tmp_path, [])
    s.templates = [judge_template(s.prometheus.url)]
    pause = s.rollout["spec"]["strategy"]["canary"]["steps"][1]["pause"]
    pause["duration"] = "60s"  # longer than maxDuration: the judge decides first
    s.rollout["spec"]["strategy"]["canary"].pop("postPromotionAnalysis", None)
    yield s
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        sys.stderr.write(s.operator.log.read_text()[-15000:])
    s.close()


def judged(stage: Stage) -> dict[str, Any]:
    """The judge metric's result ({} before the executor's first write)."""
    results = (stage.run("bg").get("status") or {}).get("metricResults") or [{}]
    (result,) = results
    return dict(result)


def test_a_canary_with_more_errors_than_the_stable_is_failed_by_the_judge(stage: Stage) -> None:
    stage.stable.set(error_rate=0.02)
    stage.canary.set(error_rate=0.10)
    stage.start_canary()
    wait_for(
        "aborted by the judge",
        lambda: stage.cluster.status("shop").get("phase") == "Degraded",
        timeout=90,
    )
    st = stage.cluster.status("shop")
    assert st["abort"]["reason"] == "AnalysisFailed", st["abort"]
    assert "errors-vs-stable" in st["abort"]["message"]
    run = stage.run("bg")
    assert run["status"]["phase"] == "Failed"
    r = judged(stage)
    verdict = r["judgeResult"]
    assert r["phase"] == "Failed" and verdict["verdict"] == "Fail" and verdict["final"]
    assert verdict["canaryN"] >= 100 and verdict["baselineN"] >= 100
    assert verdict["lower"] > 1 and verdict["estimate"] > verdict["lower"]
    assert verdict["eValue"] >= 20 and verdict["pValue"] <= 0.05
    assert r["judge"]["canaryTotal"] == verdict["canaryN"]
    assert r["measurements"][-1]["phase"] == "Failed"
    assert "e=" in r["measurements"][-1]["message"]
    events = [e for e in stage.cluster.events("shop") if e["reason"] == "JudgeFailed"]
    assert len(events) == 1 and "errors canary" in events[0]["message"], events


def test_a_canary_as_good_as_the_stable_is_not_failed_early(stage: Stage) -> None:
    # 20 % tolerated: a false alarm needs evidence of a 1.2x regression that is not there
    stage.templates[0]["spec"]["metrics"][0]["judge"]["tolerance"] = 0.2
    stage.stable.set(error_rate=0.05)
    stage.canary.set(error_rate=0.05)
    stage.start_canary()
    wait_for(
        "the judge passed",
        lambda: (judged(stage).get("judgeResult") or {}).get("verdict") == "Pass",
        timeout=120,
        every=1,
    )
    r = judged(stage)
    assert r["phase"] == "Successful" and r["failed"] == 0
    assert r["judgeResult"]["elapsedSeconds"] >= 40  # maxDuration: no early pass either
    assert stage.cluster.status("shop").get("phase") != "Degraded"
    wait_for(
        "Completed",
        lambda: stage.cluster.condition("Completed", "shop").get("status") == "True",
        timeout=90,
    )
    assert "JudgePassed" in stage.cluster.reasons("shop")
    assert "JudgeFailed" not in stage.cluster.reasons("shop")


@pytest.fixture
def baseline_stage(stage: Stage) -> Iterator[Stage]:
    """The judge compares with a baseline Deployment; a third demo app plays its pods."""
    stage.templates[0]["spec"]["metrics"][0]["judge"].update(baseline="baseline", tolerance=0.2)
    baseline = DemoApp("baseline")
    stable_rev = stage.revisions[0]
    targets = list(stage.prometheus.targets)
    targets.append(
        (
            "demo",
            f"127.0.0.1:{baseline.port}",
            {"sluice_dev_revision": stable_rev, "sluice_dev_baseline": "true"},
        )
    )
    stage.prometheus.set_targets(targets)
    try:
        yield stage
    finally:
        baseline.stop()


def baseline_deployment(stage: Stage) -> dict[str, Any] | None:
    return stage.cluster.get("deployment", "shop-baseline")


def baseline_created_with_the_canary(stage: Stage) -> dict[str, Any]:
    made = wait_for("the baseline Deployment", lambda: baseline_deployment(stage), timeout=60)
    canary_slot = stage.cluster.status("shop")["canary"]["slot"]
    canary = stage.cluster.get("deployment", f"shop-{canary_slot}")
    assert canary is not None
    assert made["spec"]["replicas"] == canary["spec"]["replicas"] == 2  # 50 % of 4
    pod = made["spec"]["template"]["metadata"]["labels"]
    assert pod["sluice.dev/baseline"] == "true"
    assert pod["sluice.dev/revision"] == stage.revisions[0]  # the stable's version
    for service in ("shop", "shop-stable", "shop-canary"):  # no Service selects its pods
        selector = stage.cluster.selector(service)
        assert any(pod.get(k) != v for k, v in selector.items()), (service, selector)
    wait_for(
        "two baseline pods",
        lambda: (
            len(
                stage.cluster.kubectl(
                    "get", "pods", "-l", "sluice.dev/baseline=true", "-o", "name"
                ).split()
            )
            == 2
        ),
    )
    return made


def test_a_baseline_deployment_runs_with_the_canary_and_goes_at_promotion(
    baseline_stage: Stage,
) -> None:
    stage = baseline_stage
    stage.start_canary()
    baseline_created_with_the_canary(stage)
    wait_for(
        "Completed",
        lambda: stage.cluster.condition("Completed", "shop").get("status") == "True",
        timeout=150,
        every=1,
    )
    r = judged(stage)
    assert r["judgeResult"]["verdict"] == "Pass" and r["judgeResult"]["baselineN"] >= 100
    assert 'sluice_dev_baseline=\\"true\\"' in r["measurements"][-1]["query"] or (
        'sluice_dev_baseline="true"' in r["measurements"][-1]["query"]
    )
    wait_for("the baseline removed", lambda: baseline_deployment(stage) is None, timeout=30)


def test_a_baseline_deployment_goes_at_abort(baseline_stage: Stage) -> None:
    stage = baseline_stage
    stage.start_canary()
    baseline_created_with_the_canary(stage)
    stage.cluster.action("abort", "shop")
    wait_for("aborted", lambda: stage.cluster.status("shop").get("phase") == "Degraded")
    wait_for("the baseline removed", lambda: baseline_deployment(stage) is None, timeout=30)


def test_a_baseline_deployment_goes_with_the_rollout(baseline_stage: Stage) -> None:
    stage = baseline_stage
    stage.start_canary()
    made = baseline_created_with_the_canary(stage)
    owners = made["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("Rollout", "shop")]
    assert owners[0]["uid"] == stage.cluster.rollout("shop")["metadata"]["uid"]
    stage.cluster.kubectl("delete", "rollouts.sluice.dev", "shop", "--wait=false")
    wait_for("the baseline removed", lambda: baseline_deployment(stage) is None, timeout=60)
    wait_for(
        "its pods gone",
        lambda: (
            not stage.cluster.kubectl(
                "get", "pods", "-l", "sluice.dev/baseline=true", "-o", "name"
            ).split()
        ),
        timeout=60,
    )


def test_a_heavier_latency_tail_with_the_same_p50_is_failed_by_the_judge_live(
    stage: Stage,
) -> None:
    """The live demo apps: the canary answers 15 % of requests in 0.3 s, the rest as fast
    as the stable. A p50 threshold passes it; the latency judge fails it."""
    provider = {"prometheus": {"address": stage.prometheus.url, "timeout": "5s"}}
    stage.templates = [
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": "http-health"},
            "spec": {
                "metrics": [
                    {
                        "name": "latency-vs-stable",
                        "provider": provider,
                        "interval": "5s",
                        "judge": {"latency": {}, "maxDuration": "50s", "minSample": 100},
                    },
                    {
                        "name": "p50",
                        "provider": provider,
                        "interval": "5s",
                        "latency": {"quantile": 0.5, "maxSeconds": 0.05, "window": "30s"},
                        # rate() needs two scrapes of the canary: no data before that
                        "initialDelay": "5s",
                        "inconclusiveLimit": 5,
                    },
                ]
            },
        }
    ]
    stage.canary.set(tail_rate=0.15, tail_latency=0.3)
    stage.start_canary()
    wait_for(
        "aborted by the judge",
        lambda: stage.cluster.status("shop").get("phase") == "Degraded",
        timeout=120,
        every=1,
    )
    st = stage.cluster.status("shop")
    assert st["abort"]["reason"] == "AnalysisFailed", st["abort"]
    assert "latency-vs-stable" in st["abort"]["message"]
    results = {m["name"]: m for m in stage.run("bg")["status"]["metricResults"]}
    verdict = results["latency-vs-stable"]["judgeResult"]
    assert verdict["verdict"] == "Fail" and verdict["canaryN"] >= 100
    p50 = results["p50"]
    assert p50["measurements"] and all(m["phase"] == "Successful" for m in p50["measurements"])
