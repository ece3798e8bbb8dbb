"""`sluice simulate`: the real engine on the in-memory cluster, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
