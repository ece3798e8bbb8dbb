"""`sluice simulate`: the real engine on the in-memory cluster, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sluice.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["simulate", *args])
    return code, capsys.readouterr().out


def test_basic_example_is_promoted_with_the_expected_steps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = run(
        capsys,
        str(EXAMPLES / "rollout-basic.yaml"),
        "--scenario",
        str(EXAMPLES / "scenario-basic.yaml"),
        "--instant",
        "--json",
    )
    result = json.loads(out)
    assert code == 0 and result["verdict"] == "promoted"
    reasons = [e["reason"] for f in result["timeline"] for e in f["events"]]
    assert reasons == [
        "RolloutStarted",
        "StepReached",
        "StepReached",
        "StepReached",
        "Promoted",
        "Completed",
    ]
    by_reason = {e["reason"]: f for f in result["timeline"] for e in f["events"]}
    # pods Ready after 3 s; the 5 s pause; promote at 2 min; 3 s to scale the canary up
    assert by_reason["Promoted"]["t"] == 120
    assert result["seconds"] == pytest.approx(123, abs=0.1)
    weights = [f["weight"] for f in result["timeline"]]
    assert max(weights) == 50 and weights == [*sorted(weights[:-1]), 0]


def test_without_a_promote_it_stays_paused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, str(EXAMPLES / "rollout-basic.yaml"), "--instant", "--json")
    assert code == 2 and json.loads(out)["verdict"] == "paused"


def test_a_canary_that_never_gets_ready_is_aborted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scenario = tmp_path / "broken.yaml"
    scenario.write_text("canaryReady: false\n")
    code, out = run(
        capsys,
        str(EXAMPLES / "rollout-basic.yaml"),
        "--scenario",
        str(scenario),
        "--instant",
        "--json",
    )
    result = json.loads(out)
    assert code == 1 and result["reason"] == "ProgressDeadlineExceeded"
    assert result["seconds"] == pytest.approx(600, abs=1)


def test_bad_input_exits_3_naming_the_file_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Rollout\nspec: [\n")
    assert run(capsys, str(broken), "--instant")[0] == 3

    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("actions:\n  - at: 1m\n    action: yolo\n")
    code, out = run(capsys, str(EXAMPLES / "rollout-basic.yaml"), "--scenario", str(scenario))
    assert code == 3 and "scenario.actions[0]" in out and str(scenario) in out.replace("\n", "")

    text = (EXAMPLES / "rollout-basic.yaml").read_text().replace("setWeight: 50", "setWeight: 10")
    bad = tmp_path / "weights.yaml"
    bad.write_text(text)
    code, out = run(capsys, str(bad), "--instant")
    assert code == 3 and "steps[2].setWeight" in out


# ---------------------------------------------------------------- the shipped examples (golden)

SIM = EXAMPLES / "simulate"


def example(capsys: pytest.CaptureFixture[str], name: str, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code, out = run(
        capsys,
        str(SIM / f"{name}.yaml"),
        "--scenario",
        str(SIM / f"{name}-scenario.yaml"),
        "--instant",
        "--json",
        *extra,
    )
    return code, json.loads(out)


def test_healthy_example_is_promoted_through_5_10_25_50_100(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, result = example(capsys, "healthy")
    assert code == 0 and result["verdict"] == "promoted" and result["exitCode"] == 0
    # pods Ready 20 s after they are asked for; pauses 2m, 2m, 3m, 3m, 1m
    assert result["seconds"] == 760
    assert [(s["t"], s["step"], s["weight"]) for s in result["steps"]] == [
        (20, 1, 5),
        (140, 2, 5),
        (160, 3, 10),
        (280, 4, 10),
        (300, 5, 25),
        (480, 6, 25),
        (500, 7, 50),
        (680, 8, 50),
        (700, 9, 100),
        (760, 10, 0),
    ]
    shares = [f["share"] for f in result["timeline"]]
    assert sorted(set(shares)) == [0, 5, 10, 25, 50, 100] and shares == sorted(shares)
    measured = [m for f in result["timeline"] for m in f["measurements"]]
    assert {m["metric"] for m in measured} == {"error-rate", "p99-latency"}
    assert {m["phase"] for m in measured} == {"Successful"}
    # the background analysis from the first weight (0:20) every 30 s until the promotion
    times = sorted({m["t"] for m in measured})
    assert times == [20 + 30 * i for i in range(25)]
    first = next(m for m in measured if m["metric"] == "error-rate")
    assert first["value"] == 0.003 and first["threshold"] == 0.02
    assert first["condition"] == "result <= 0.02"
    assert 'sluice_dev_revision="' + result["revision"] + '"' in first["query"]
    (run_,) = result["runs"]
    assert run_["kind"] == "background" and run_["phase"] == "Running"
    assert result["warnings"] == []


def test_errors_example_is_rolled_back_by_the_consecutive_failure_trigger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, result = example(capsys, "errors")
    assert code == 1 and result["verdict"] == "aborted"
    assert result["seconds"] == 350
    assert result["reason"] == "AnalysisFailed"
    assert result["message"].startswith(
        f"analysis run checkout-{result['revision']}-1-bg failed: error-rate: 3 failed in a "
        "row (consecutiveFailureLimit 3): result=0.08 did not meet successCondition "
        "`result <= 0.02`"
    )
    assert [(s["t"], s["weight"]) for s in result["steps"]] == [
        (20, 5),
        (140, 5),
        (160, 10),
        (280, 10),
        (300, 25),
    ]
    errors = [
        (m["t"], m["value"], m["phase"])
        for f in result["timeline"]
        for m in f["measurements"]
        if m["metric"] == "error-rate"
    ]
    assert errors[-5:] == [
        (230, 0.003, "Successful"),
        (260, 0.01, "Successful"),
        (290, 0.03, "Failed"),
        (320, 0.08, "Failed"),
        (350, 0.08, "Failed"),
    ]
    last = result["timeline"][-1]
    assert last["phase"] == "Degraded" and last["weight"] == 0 and last["stable"] == 20
    assert [e["reason"] for e in last["events"]] == ["Aborted"]


def test_examples_on_the_terminal_and_as_charts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    chart = tmp_path / "errors.png"
    code, out = run(
        capsys,
        str(SIM / "errors.yaml"),
        "--scenario",
        str(SIM / "errors-scenario.yaml"),
        "--speed",
        "1e9",
        "--plot",
        str(chart),
    )
    assert code == 1
    flat = " ".join(out.split())
    assert "✗ error-rate 8% (≤ 2%)" in flat and "✓ p99-latency 200 ms (≤ 500 ms)" in flat
    assert "aborted after 5:50 (350 s simulated): AnalysisFailed" in flat
    assert chart.read_bytes().startswith(b"\x89PNG")
    svg = tmp_path / "healthy.svg"
    code, out = run(
        capsys,
        str(SIM / "healthy.yaml"),
        "--scenario",
        str(SIM / "healthy-scenario.yaml"),
        "--instant",
        "--measurements",
        "failed",
        "--plot",
        str(svg),
    )
    assert code == 0 and "promoted after 12:40 (760 s simulated)" in " ".join(out.split())
    assert "error-rate" not in out  # only failed measurements are shown: none
    assert "<svg" in svg.read_text()[:500]


def test_invalid_rollout_messages_are_the_operators(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from sluice.engine.validate import InvalidSpec, parse_spec

    text = (SIM / "healthy.yaml").read_text().replace("scaleDownDelaySeconds", "scaleDownDelay")
    bad = tmp_path / "unknown.yaml"
    bad.write_text(text)
    code, out = run(capsys, str(bad), "--instant")
    spec = next(d for d in yaml.safe_load_all(text) if d["kind"] == "Rollout")
    with pytest.raises(InvalidSpec) as operator:
        parse_spec(spec["spec"])
    flat = out.replace("\n", "")
    assert code == 3 and f"{bad}: Rollout checkout: {operator.value}" in flat
    assert "spec.strategy.canary.scaleDownDelay: not supported by Sluice (unknown field)" in flat


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("templateName: http-health", "templateName: nope"), "AnalysisTemplate 'nope' not found"),
        (("errorRate: {max: 0.02}", "errorRate: {max: 0.02, windw: 1m}"), "errorRate.windw"),
        (("consecutiveFailureLimit: 3", "consecutiveFailureLimit: 0"), "consecutiveFailureLimit"),
        (("kind: Rollout\n", "kind: Rollout\nextra: 1\n"), "Rollout checkout: extra: unknown"),
        (
            ("apiVersion: sluice.dev/v1alpha1\nkind: Rollout", "apiVersion: v1\nkind: Rollout"),
            "apiVersion",
        ),
    ],
)
def test_invalid_files_exit_3_naming_file_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, change: tuple[str, str], field: str
) -> None:
    text = (SIM / "healthy.yaml").read_text()
    assert change[0] in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(change[0], change[1], 1))
    code, out = run(capsys, str(bad), "--instant")
    flat = out.replace("\n", "")
    assert code == 3 and str(bad) in flat and field in flat, out


def test_template_errors_name_the_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = (
        (SIM / "healthy.yaml").read_text().replace("errorRate: {max: 0.02}", "errorRate: {max: 2}")
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    code, out = run(capsys, str(bad), "--instant")
    flat = out.replace("\n", "")
    assert code == 3
    assert f"{bad}: AnalysisTemplate http-health: spec.metrics[0].errorRate.max:" in flat


@pytest.mark.parametrize(
    ("scenario", "field"),
    [
        ("canary: {errorRat: 0.1}\n", "scenario.canary.errorRat: Extra inputs are not permitted"),
        ("canary: {errorRate: [{at: 1q, value: 0.1}]}\n", "scenario.canary.errorRate[0].at"),
        ("canary: {errorRate: [{at: 1m}]}\n", "scenario.canary.errorRate[0].value: Field required"),
        ("canary: {errorRate: high}\n", "scenario.canary.errorRate: 'high' is not a series"),
        ("canary: {latency: {p99x: 0.1}}\n", "scenario.canary.latency: latency quantile 'p99x'"),
        ("interpolation: cubic\n", "scenario.interpolation"),
        ("readyAfter: soon\n", "scenario.readyAfter: invalid duration 'soon'"),
        ("- 1\n- 2\n", "scenario: expected a mapping"),
        ("canary: [\n", "not valid YAML (line 2"),
    ],
)
def test_bad_scenarios_exit_3_naming_file_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, scenario: str, field: str
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(scenario)
    code, out = run(capsys, str(SIM / "healthy.yaml"), "--scenario", str(path), "--instant")
    flat = out.replace("\n", "")
    assert code == 3 and str(path) in flat and field in flat, out


def test_missing_files_and_bad_flags_exit_3(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.yaml"
    code, out = run(capsys, str(missing), "--instant")
    assert code == 3 and f"{missing}: cannot read" in out.replace("\n", "")
    code, out = run(capsys, str(SIM / "healthy.yaml"), "--scenario", str(missing))
    assert code == 3 and str(missing) in out.replace("\n", "")
    code, out = run(capsys, str(SIM / "healthy.yaml"), "--plot", str(tmp_path / "x.jpg"))
    assert code == 3 and "--plot" in out
    code, out = run(capsys, str(SIM / "healthy.yaml"), "--canary-labels", "=x")
    assert code == 3 and "--canary-labels" in out
