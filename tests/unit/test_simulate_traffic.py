"""`sluice simulate` with a traffic router: the plan, setCanaryScale and header routes play
as in the operator (the in-memory router carries a plan as soon as it is applied)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "routers"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_router_examples_play_their_steps_with_a_small_canary(
    example: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", str(EXAMPLES / example), "--instant", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 2 and result["verdict"] == "paused", result["message"]  # the final pause
    frames = result["timeline"]
    replicas = frames[0]["stable"]
    # With a router the stable keeps every pod unless dynamicStableScale says otherwise.
    assert all(f["stable"] == replicas for f in frames), [f["stable"] for f in frames]
    weights = [f["weight"] for f in frames]
    assert weights == sorted(weights) and weights[-1] > 0
    # The canary is sized apart from its weight (setCanaryScale 1): when 5 % is reached it
    # is one pod; matchTrafficWeight grows it only later, for the next weight.
    first_5 = next(f for f in frames if f["weight"] == 5)
    assert first_5["canary"] == 1
