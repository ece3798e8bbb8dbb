"""`sluice simulate` plays blue-green: the preview, the pause, the switch, an abort, and a
failed pre- or post-promotion analysis, through the real engine and analysis code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.cli.main import main
from sluice.sim.load import Loaded, load
from sluice.sim.run import Result, simulate
from sluice.sim.scenario import Scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROVIDER = {"prometheus": {"address": "http://prometheus:9090"}}
ERRORS = {"metrics": [{"name": "err", "provider": PROVIDER, "interval": "30s", "count": 2,
                       "errorRate": {"max": 0.02}}]}  # fmt: skip


def rollout(tmp_path: Path, **blue_green: Any) -> Loaded:
    body = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:2"}]},
            },
            "strategy": {"blueGreen": {"activeService": "web-active", **blue_green}},
        },
    }
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(body))
    return load(path)


def sim(loaded: Loaded, scenario: dict[str, Any] | None = None) -> Result:
    return simulate(loaded, Scenario.parse(scenario))


def reasons(result: Result) -> list[str]:
    return [reason for f in result.frames for _, reason, _ in f.events]


def test_the_example_previews_pauses_and_switches_on_promote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "simulate",
            str(EXAMPLES / "rollout-bluegreen.yaml"),
            "--scenario",
            str(EXAMPLES / "scenario-basic.yaml"),
            "--instant",
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["verdict"] == "promoted"
    events = [(f["t"], e["reason"]) for f in result["timeline"] for e in f["events"]]
    assert events == [(0, "RolloutStarted"), (3, "Paused"), (120, "Promoted"), (120, "Completed")]
    paused = [f for f in result["timeline"] if f["phase"] == "Paused"]
    assert paused and paused[0]["stable"] == 4 and paused[0]["canary"] == 4, "full-size preview"


def test_the_table_names_the_stages(capsys: pytest.CaptureFixture[str]) -> None:
    main(["simulate", str(EXAMPLES / "rollout-bluegreen.yaml"), "--instant"])
    out = capsys.readouterr().out
    assert "│ preview │" in out, "the stage, not a step count"
    assert [line for line in out.splitlines() if line.startswith("paused")], out


def test_auto_promotion_switches_once_the_preview_is_ready(tmp_path: Path) -> None:
    result = sim(rollout(tmp_path, autoPromotionSeconds=30), {"readyAfter": "5s"})
    assert result.verdict == "promoted" and result.seconds == 35


def test_a_smaller_preview_is_scaled_up_before_the_switch(tmp_path: Path) -> None:
    result = sim(rollout(tmp_path, previewReplicaCount=1), {"readyAfter": "5s"})
    assert result.verdict == "promoted" and result.seconds == 10
    sizes = [f.canary for f in result.frames if f.step is not None]
    assert sizes[0] == 1 and max(sizes) == 4


def test_an_abort_during_the_preview(tmp_path: Path) -> None:
    loaded = rollout(tmp_path, autoPromotionEnabled=False)
    result = sim(loaded, {"actions": [{"at": "1m", "action": "abort"}]})
    assert (result.verdict, result.reason, result.exit_code) == ("aborted", "UserAbort", 1)


def test_a_failing_pre_promotion_analysis_aborts_before_the_switch(tmp_path: Path) -> None:
    loaded = rollout(tmp_path, prePromotionAnalysis=ERRORS)
    result = sim(loaded, {"canary": {"errorRate": 0.3}})
    assert (result.verdict, result.reason) == ("aborted", "AnalysisFailed")
    assert "Completed" not in reasons(result)


def test_a_failing_post_promotion_analysis_switches_back(tmp_path: Path) -> None:
    loaded = rollout(tmp_path, postPromotionAnalysis=ERRORS)
    good = sim(loaded, {"canary": {"errorRate": 0.001}})
    assert good.verdict == "promoted"
    bad = sim(
        loaded, {"canary": {"errorRate": [{"at": 0, "value": 0.0}, {"at": 20, "value": 0.5}]}}
    )
    assert bad.verdict == "aborted" and "Completed" in reasons(bad)
    assert bad.message.endswith(f"reverted to {bad.previous}")


def test_through_a_traffic_router_it_switches_the_same_way(tmp_path: Path) -> None:
    routing = {"smi": {"trafficSplitName": "web"}}
    plain = sim(rollout(tmp_path, autoPromotionSeconds=30), {"readyAfter": "5s"})
    routed = sim(
        rollout(tmp_path, autoPromotionSeconds=30, trafficRouting=routing), {"readyAfter": "5s"}
    )
    assert routed.verdict == plain.verdict == "promoted"
    assert routed.seconds == plain.seconds
    assert reasons(routed) == reasons(plain)
