"""Analysis in `sluice simulate`: the operator's engine and executor code on a simulated clock.

Runs are created from CreateRun (templates merged as the reconciler does), measured when
due by the executor's code against the scenario's series, and judged by the engine; the
clock jumps from one due measurement to the next.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from sluice.sim.load import Loaded, load
from sluice.sim.run import Result, short, simulate
from sluice.sim.scenario import Scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROVIDER = {"prometheus": {"address": "http://prometheus:9090"}}


def metric(name: str, **wire: Any) -> dict[str, Any]:
    return {"name": name, "provider": PROVIDER, "interval": "30s", **wire}


def rollout(
    tmp_path: Path,
    steps: list[dict[str, Any]],
    *,
    docs: tuple[dict[str, Any], ...] = (),
    extra: tuple[Path, ...] = (),
    **canary: Any,
) -> Loaded:
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
            "strategy": {"canary": {"steps": steps, **canary}},
        },
    }
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump_all([*docs, body]))
    return load(path, list(extra))


def sim(loaded: Loaded, scenario: dict[str, Any] | None = None) -> Result:
    return simulate(loaded, Scenario.parse(scenario))


def errors(result: Result, name: str = "err") -> list[tuple[float, float | None, str]]:
    return [(m.t, m.value, m.phase) for m in result.measurements if m.metric == name]


def test_a_step_analysis_holds_the_step_until_its_count_is_measured(tmp_path: Path) -> None:
    loaded = rollout(
        tmp_path,
        [
            {"setWeight": 50},
            {"analysis": {"metrics": [metric("err", errorRate={"max": 0.02}, count=3)]}},
        ],
    )
    result = sim(loaded, {"canary": {"errorRate": 0.01}})
    assert result.verdict == "promoted"
    # Ready at 2 s; the run measures at 2, 32, 62; the canary is scaled to 4 and promoted at 64
    assert errors(result) == [
        (2, 0.01, "Successful"),
        (32, 0.01, "Successful"),
        (62, 0.01, "Successful"),
    ]
    assert result.seconds == 64
    (run,) = result.runs
    assert (run.kind, run.step, run.phase) == ("step", 1, "Successful")
    assert short(run.message) == "err: 3/3 successful: result=0.01 met `result <= 0.02`"


def test_a_failed_step_analysis_aborts(tmp_path: Path) -> None:
    loaded = rollout(
        tmp_path,
        [
            {"setWeight": 50},
            {"analysis": {"metrics": [metric("err", errorRate={"max": 0.02}, count=3)]}},
        ],
    )
    result = sim(
        loaded, {"canary": {"errorRate": [{"at": 0, "value": 0.01}, {"at": 30, "value": 0.05}]}}
    )
    assert result.verdict == "aborted" and result.exit_code == 1 and result.seconds == 32
    assert result.reason == "AnalysisFailed"
    assert "err: 1 failed (failureLimit 0): result=0.05" in result.message


def test_no_data_is_inconclusive_and_pauses(tmp_path: Path) -> None:
    """No errorRate series for the canary: every answer is empty, as for a version that
    takes no traffic; the run is Inconclusive and the rollout pauses for a human."""
    loaded = rollout(
        tmp_path,
        [{"setWeight": 20}, {"pause": {"duration": "10m"}}],
        analysis={"metrics": [metric("err", errorRate={"max": 0.02}, inconclusiveLimit=1)]},
    )
    result = sim(loaded, {"maxDuration": "1h"})
    assert result.verdict == "inconclusive" and result.exit_code == 2
    assert result.reason == "AnalysisInconclusive"
    assert result.seconds == 32  # the second empty answer
    assert errors(result) == [(2, None, "Inconclusive"), (32, None, "Inconclusive")]
    assert result.warnings == [
        "metric err: the scenario has no canary.errorRate: every answer is 'no data'"
    ]
    # A promote past the inconclusive run acknowledges it: the rollout goes on.
    again = sim(loaded, {"maxDuration": "1h", "actions": [{"at": "1m", "action": "promote"}]})
    assert again.verdict == "promoted" and again.seconds == 62


def test_background_analysis_runs_from_the_first_weight_and_ends_with_the_promotion(
    tmp_path: Path,
) -> None:
    loaded = rollout(
        tmp_path,
        [{"setWeight": 25}, {"pause": {"duration": "2m"}}],
        analysis={"metrics": [metric("err", errorRate={"max": 0.02})]},
    )
    result = sim(loaded, {"readyAfter": "10s", "canary": {"errorRate": 0.001}})
    assert result.verdict == "promoted" and result.seconds == 140
    assert [t for t, _, _ in errors(result)] == [10, 40, 70, 100, 130]


def test_circuit_breaker_latency_and_named_series_against_their_thresholds(
    tmp_path: Path,
) -> None:
    loaded = rollout(
        tmp_path,
        [{"setWeight": 10}, {"pause": {"duration": "30m"}}],
        analysis={
            "metrics": [
                metric("breakers", circuitBreaker={"max": 0}, consecutiveFailureLimit=2),
                metric("p95", latency={"quantile": 0.95, "maxSeconds": 0.25}),
                metric(
                    "queue",
                    provider={"prometheus": {"address": "http://p", "query": "max(queue_depth)"}},
                    failureCondition="result > 100",
                    failureLimit=3,
                ),
            ]
        },
    )
    scenario: dict[str, Any] = {
        "canary": {
            "latency": {"p95": 0.1},
            "circuitBreaker": [{"at": "5m", "value": 1}],
            "series": {"queue": 5},
        }
    }
    result = sim(loaded, scenario)
    assert result.verdict == "aborted" and result.seconds == 332  # 2nd open breaker in a row
    assert "breakers: 2 failed in a row (consecutiveFailureLimit 2): result=1" in result.message
    assert errors(result, "breakers")[0] == (2, 0.0, "Successful")  # absent series: 0
    assert {p for _, _, p in errors(result, "p95")} == {"Successful"}
    assert errors(result, "queue")[0][1] == 5 and result.warnings == []
    scenario["canary"]["latency"] = {"p95": [{"at": "2m", "value": 0.5}]}
    slow = sim(loaded, scenario)
    assert slow.verdict == "inconclusive"  # before 2m no data: p95 has inconclusiveLimit 0
    scenario["canary"]["latency"] = {"p95": [{"at": 0, "value": 0.1}, {"at": "2m", "value": 0.5}]}
    slow = sim(loaded, scenario)
    assert slow.verdict == "aborted" and slow.seconds == 122 and "p95: 1 failed" in slow.message


def test_a_baseline_template_from_another_file_compares_canary_and_stable(
    tmp_path: Path,
) -> None:
    loaded = rollout(
        tmp_path,
        [{"setWeight": 50}, {"pause": {"duration": "10m"}}],
        analysis={"templates": [{"templateName": "error-ratio-vs-stable"}]},
        extra=(EXAMPLES / "analysis" / "baseline-template.yaml",),
    )
    scenario = {
        "canary": {
            "series": {
                "error-ratio-vs-stable": [{"at": 0, "value": 0.01}, {"at": "3m", "value": 0.03}]
            }
        },
        "stable": {"series": {"error-ratio-vs-stable": 0.01}},
    }
    result = sim(loaded, scenario)
    assert result.verdict == "aborted"
    # 0.01 <= 0.01*1.5+0.005 holds; 0.03 does not, from 3m on: 4 in a row at 182..272
    assert result.seconds == 272
    assert [m.baseline for m in result.measurements][:2] == [0.01, 0.01]
    assert "4 failed in a row (consecutiveFailureLimit 4)" in result.message


def test_scenario_actions_abort_and_pause(tmp_path: Path) -> None:
    loaded = rollout(tmp_path, [{"setWeight": 50}, {"pause": {"duration": "10m"}}])
    aborted = sim(loaded, {"actions": [{"at": "3m", "action": "abort"}]})
    assert (aborted.verdict, aborted.reason, aborted.seconds) == ("aborted", "UserAbort", 180)
    paused = sim(loaded, {"actions": [{"at": "3m", "action": "pause"}]})
    assert (paused.verdict, paused.reason, paused.exit_code) == ("paused", "PausedByUser", 2)
    assert paused.seconds == 180
    resumed = sim(
        loaded,
        {"actions": [{"at": "3m", "action": "pause"}, {"at": "20m", "action": "resume"}]},
    )
    assert resumed.verdict == "promoted" and resumed.seconds == 20 * 60 + 2


def test_post_promotion_analysis_keeps_the_verdict_open_until_it_passes(tmp_path: Path) -> None:
    post = {"metrics": [metric("err", errorRate={"max": 0.02}, count=2)]}
    loaded = rollout(tmp_path, [{"setWeight": 50}], postPromotionAnalysis=post)
    result = sim(loaded, {"canary": {"errorRate": 0.001}, "stable": {"errorRate": 0.5}})
    assert result.verdict == "promoted" and result.seconds == 34  # promoted at 4, 2 measurements
    bad = sim(
        loaded, {"canary": {"errorRate": [{"at": 0, "value": 0.0}, {"at": 30, "value": 0.5}]}}
    )
    assert bad.verdict == "aborted" and bad.seconds == 34
    assert bad.message.endswith(f"reverted to {bad.previous}")


def test_post_promotion_analysis_by_deployment_measures_the_new_version(tmp_path: Path) -> None:
    post = {"metrics": [metric("err", errorRate={"max": 0.02, "preset": "istio"}, count=2)]}
    loaded = rollout(tmp_path, [{"setWeight": 50}], postPromotionAnalysis=post)
    result = sim(loaded, {"canary": {"errorRate": 0.001}, "stable": {"errorRate": 0.5}})
    assert result.verdict == "promoted"


def test_a_run_the_reconciler_could_not_create_is_invalid_spec(tmp_path: Path) -> None:
    """Without the template the loader would refuse; simulate() itself feeds the merge
    error back as Observed.rejected, and the engine reports the operator's InvalidSpec."""
    template = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "health"},
        "spec": {"metrics": [metric("err", errorRate={"max": 0.02})]},
    }
    loaded = rollout(
        tmp_path,
        [{"setWeight": 50}, {"pause": {"duration": "1m"}}],
        docs=(template,),
        analysis={"templates": [{"templateName": "health"}]},
    )
    loaded.templates.clear()
    result = sim(loaded, {"canary": {"errorRate": 0.0}})
    assert result.verdict == "invalid" and result.exit_code == 3
    assert result.message == (
        "spec.strategy.canary.analysis.templates[0]: AnalysisTemplate 'health' not found"
    )


def test_args_and_secrets(tmp_path: Path) -> None:
    query = 'sum(rate(errors{team="{{args.team}}", token="{{args.token}}"}[1m]))'
    loaded = rollout(
        tmp_path,
        [{"setWeight": 50}, {"pause": {"duration": "5m"}}],
        analysis={
            "metrics": [
                metric(
                    "team-errors",
                    provider={"prometheus": {"address": "http://p", "query": query}},
                    successCondition="result < 1",
                )
            ],
            "args": [
                {"name": "team", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "token", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
        },
    )
    scenario = {"canary": {"series": {"team-errors": 0}}, "secrets": {"s": {"k": 'x"y'}}}
    result = sim(loaded, scenario)
    assert result.verdict == "promoted"
    # The query sent had the Secret's value; the one recorded names the Secret instead.
    recorded = result.measurements[0]
    assert recorded.query == 'sum(rate(errors{team="shop", token="<secret:s/k>"}[1m]))'
    assert 'x\\"y' not in recorded.message and 'x"y' not in recorded.message
    missing = sim(loaded, {"canary": {"series": {"team-errors": 0}}})
    assert missing.verdict == "aborted" and missing.reason == "AnalysisError"
    # the default consecutiveErrorLimit 4: the 5th error in a row, 2 minutes in
    assert missing.seconds == 122
    assert "Secret shop/s is not in the scenario's secrets" in missing.message


def test_twenty_steps_three_metrics_four_hours_is_fast(tmp_path: Path) -> None:
    """The figure is benchmarks/simulate_speed.py's (about 1 s on a busy 2-CPU machine); this
    only guards against the clock stepping through idle time or a quadratic slip."""
    steps: list[dict[str, Any]] = []
    for weight in (5, 10, 20, 30, 40, 50, 60, 70, 85, 100):
        steps += [{"setWeight": weight}, {"pause": {"duration": "24m"}}]
    metrics = [
        metric("err", errorRate={"max": 0.02}),
        metric("p99", latency={"maxSeconds": 0.5}),
        metric("breakers", circuitBreaker={"max": 0}),
    ]
    loaded = rollout(tmp_path, steps, analysis={"metrics": metrics})
    scenario = Scenario.parse(
        {"readyAfter": "15s", "maxDuration": "5h", "canary": {"errorRate": 0.001, "latency": 0.2}}
    )
    began = time.perf_counter()
    result = simulate(loaded, scenario)
    took = time.perf_counter() - began
    assert result.verdict == "promoted" and result.seconds >= 4 * 3600
    assert len(result.measurements) >= 1400 and result.decisions < 600
    assert took < 10, f"{took:.1f} s"
