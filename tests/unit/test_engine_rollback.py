"""Gradual rollback: `rollback-gradually` walks the canary's weight back to 0 with pauses,
capacity first, still judged by the background analysis (a failure: 0 at once)."""

from __future__ import annotations

import itertools
from typing import Any

from driver import Driver, make_spec, with_image

ANALYSIS: dict[str, Any] = {"templates": [{"templateName": "error-rate"}], "startingStep": 0}
STEPS: list[dict[str, Any]] = [{"setWeight": 75}, {"pause": {}}]


def with_walk(spec: dict[str, Any], walk: dict[str, Any] | None) -> dict[str, Any]:
    if walk is not None:
        spec["strategy"]["canary"]["gradualRollback"] = walk
    return spec


def at_75(walk: dict[str, Any] | None = None, **extra: Any) -> Driver:
    return at_weight(75, walk, **extra)


def at_weight(weight: int, walk: dict[str, Any] | None = None, **extra: Any) -> Driver:
    """A canary paused at `weight` (its first step), its pods all Ready."""
    steps = [{"setWeight": weight}, {"pause": {}}]
    spec = with_walk(make_spec(steps, replicas=4, **extra), walk)
    d = Driver(spec)
    d.step(0)
    d.step(d.cluster.ready_delay)
    d.step(0, spec=with_image(spec, "web:2"))
    for _ in range(4):
        d.step(d.cluster.ready_delay)
    assert d.status.current_step_index == 1 and d.status.canary_weight == weight
    return d


def ready_capacity(d: Driver) -> int:
    seen = d.cluster.observe(d.t).slots
    return seen["a"].ready + seen["b"].ready


def test_the_default_walk_goes_down_with_pauses_and_never_below_capacity() -> None:
    d = at_75()
    d.step(0, action="rollback-gradually")
    assert d.status.gradual_rollback is not None
    assert any(e.reason == "RollbackStarted" for e in d.last.events)  # type: ignore[union-attr]
    weights, times = [], []
    for _ in range(200):
        d.step(1)
        assert ready_capacity(d) >= 4, "Ready capacity dropped below replicas"
        if not weights or weights[-1] != d.status.canary_weight:
            weights.append(d.status.canary_weight)
            times.append(d.t)
        if d.status.abort:
            break
    assert weights == [75, 50, 25, 10, 0]
    assert all(b - a >= 30 for a, b in itertools.pairwise(times[1:])), times
    assert d.status.abort is not None and d.status.abort.reason == "GradualRollback"
    assert d.status.phase == "Degraded" and d.status.gradual_rollback is None
    seen = d.cluster.observe(d.t).slots
    assert seen["a"].ready == 4


def test_an_analysis_failure_halfway_goes_to_zero_at_once() -> None:
    walk = {"steps": [{"setWeight": 50}, {"pause": {"duration": 60}}, {"setWeight": 20}]}
    d = at_75(walk, analysis=ANALYSIS)
    d.step(0, action="rollback-gradually")
    for _ in range(10):
        d.step(1)
    assert d.status.canary_weight == 50 and d.status.gradual_rollback is not None
    bg = next(name for name in d.runs if name.endswith("-bg"))
    d.set_run(bg, "Failed", "errors: 0.2 is not < 0.02")
    d.step(0)
    abort = d.status.abort
    assert abort is not None and abort.reason == "AnalysisFailed"
    assert d.status.canary_weight == 0 and d.status.gradual_rollback is None
    assert d.cluster.traffic is not None and d.cluster.traffic.canary_weight == 0


def test_abort_stays_instant_during_a_walk_and_promote_is_refused() -> None:
    d = at_75()
    d.step(0, action="rollback-gradually")
    d.step(1)
    d.step(0, action="promote")
    assert any(e.reason == "ActionIgnored" for e in d.last.events)  # type: ignore[union-attr]
    assert d.status.current_step_index == 1 and d.status.gradual_rollback is not None
    d.step(0, action="abort")
    assert d.status.abort is not None and d.status.abort.reason == "UserAbort"
    assert d.status.canary_weight == 0


def test_a_walk_whose_weights_go_up_is_invalid() -> None:
    walk = {"steps": [{"setWeight": 20}, {"setWeight": 50}]}
    d = Driver(with_walk(make_spec(STEPS), walk))
    d.step(0)
    assert "gradualRollback.steps: weights may not go up" in d.status.message


def test_a_canary_at_100_walks_back_100_75_50_25_10_0() -> None:
    """The issue's seed: a canary already taking all traffic, not yet promoted."""
    d = at_weight(100)
    d.step(0, action="rollback-gradually")
    weights = [100]
    for _ in range(300):
        d.step(1)
        assert ready_capacity(d) >= 4, "Ready capacity dropped below replicas"
        if weights[-1] != d.status.canary_weight:
            weights.append(d.status.canary_weight)
        if d.status.abort:
            break
    assert weights == [100, 75, 50, 25, 10, 0]
    assert d.status.abort is not None and d.status.abort.reason == "GradualRollback"
