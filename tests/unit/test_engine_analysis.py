"""Analysis as a user sees it: step, background and post-promotion runs, alerts, verdicts.

decide() is driven on a simulated clock over MemoryCluster; the Driver plays the
AnalysisRun controller (CreateRun adds a Running run, TerminateRun ends it) and each
test hands out verdicts with `set_run`, then looks at the status, the conditions, the
events, the replicas per slot, the traffic target and the runs created or terminated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from driver import Driver, make_spec, revision, with_image, workload_actions
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from sluice.engine.gates import alert_run_prefix
from sluice.engine.timefmt import fmt
from sluice.engine.types import CreateRun, Decision, SetTraffic, TerminateRun, TrafficPlan

V1, V2, V3 = revision("web:1"), revision("web:2"), revision("web:3")

ANALYSIS: dict[str, Any] = {
    "templates": [{"templateName": "error-rate"}],
    "args": [{"name": "service", "value": "web"}],
}
INLINE: dict[str, Any] = {
    "metrics": [
        {
            "name": "errors",
            "provider": {"prometheus": {"address": "http://prometheus:9090", "query": "q"}},
            "successCondition": "result < 0.02",
        }
    ]
}
STEPS = [{"setWeight": 25}, {"analysis": ANALYSIS}, {"setWeight": 50}, {"pause": {}}]
BG_STEPS = [{"setWeight": 25}, {"pause": {"duration": 10}}, {"setWeight": 50}, {"pause": {}}]


def run(suffix: str, attempt: int = 1, rev: str = V2) -> str:
    return f"web-{rev}-{attempt}-{suffix}"


STEP1, BG, POST = run("step1"), run("bg"), run("post")


def healthy(spec: dict[str, Any], **kw: Any) -> Driver:
    d = Driver(spec, **kw)
    d.step(0)
    d.step(d.cluster.ready_delay)
    assert d.status.phase == "Healthy"
    return d


def canary(steps: list[dict[str, Any]] = STEPS, replicas: int = 4, **extra: Any) -> Driver:
    """web:1 Healthy in slot a, then web:2 started and its first setWeight reached."""
    spec = make_spec(steps, replicas=replicas, **extra)
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    d.step(2)
    assert d.status.canary_revision == V2 and d.status.current_step_index == 1
    return d


def at_analysis_step() -> Driver:
    d = canary()
    assert d.running_runs() == {STEP1}
    return d


def events(decision: Decision) -> list[tuple[str, str]]:
    return [(e.reason, e.type) for e in decision.events]


def created(decision: Decision) -> list[str]:
    return [a.name for a in decision.actions if isinstance(a, CreateRun)]


def terminated(decision: Decision) -> list[str]:
    return sorted(a.name for a in decision.actions if isinstance(a, TerminateRun))


def traffic_set(decision: Decision) -> list[TrafficPlan]:
    return [a.plan for a in decision.actions if isinstance(a, SetTraffic)]


def assert_aborted(d: Driver, reason: str, *words: str) -> None:
    """Degraded with all traffic on the stable slot a (web:1 at full scale)."""
    assert d.status.phase == "Degraded"
    assert d.status.abort is not None
    assert d.status.abort.reason == reason and d.status.abort.revision == V2
    for word in words:
        assert word in d.status.abort.message, d.status.abort.message
    assert d.condition("Degraded").reason == reason
    assert d.true_conditions() == {"Degraded"}
    assert d.status.canary_weight == 0
    assert d.traffic == TrafficPlan(stable_slot="a")
    assert d.replicas("a") == 4 and d.revision_of("a") == V1


# ---------------------------------------------------------------- step analysis


def test_analysis_step_creates_a_run_and_waits_for_its_verdict() -> None:
    spec = make_spec(STEPS, replicas=4)
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    reached = d.step(2)

    assert created(reached) == [STEP1]
    assert ("AnalysisStarted", "Normal") in events(reached)
    assert any(STEP1 in e.message for e in reached.events if e.reason == "AnalysisStarted")
    assert d.runs[STEP1].kind == "step" and d.runs[STEP1].revision == V2
    assert d.runs[STEP1].step == 1
    assert d.status.current_step_index == 1 and d.status.canary_weight == 25
    assert d.status.phase == "Progressing"
    assert d.condition("Progressing").reason == "StepInProgress"
    assert "step 1/4: analysis" in d.status.message
    assert (d.replicas("a"), d.replicas("b")) == (3, 1)
    assert d.traffic == TrafficPlan(stable_slot="a", canary_slot="b", canary_weight=25)

    # A run may take longer than the progress deadline (600 s): the step just waits.
    for decision in d.run(900, tick=30):
        assert decision.actions == []
    assert d.status.current_step_index == 1 and d.status.abort is None
    assert d.created == [STEP1]


def test_successful_run_moves_on_to_the_next_step() -> None:
    d = at_analysis_step()
    d.set_run(STEP1, "Successful")
    moved = d.step(1)
    assert d.status.current_step_index == 2
    assert "StepReached" in d.reasons([moved])
    assert d.replicas("b") == 2  # setWeight 50 of 4 needs 2 canary pods
    d.step(2)
    assert d.status.canary_weight == 50 and d.status.current_step_index == 3
    done = d.step(1, action="promote")
    d.step(2)
    assert "Completed" in d.reasons([done, d.last])
    assert d.status.stable_revision == V2 and d.status.phase == "Healthy"
    assert d.created == [STEP1] and d.terminated == []  # it ended by itself


@pytest.mark.parametrize("analysis", [ANALYSIS, INLINE])
def test_failed_run_aborts_naming_the_run_and_its_message(analysis: dict[str, Any]) -> None:
    d = canary([{"setWeight": 25}, {"analysis": analysis}, {"setWeight": 50}])
    d.set_run(STEP1, "Failed", "errors: 0.31 is not < 0.02 (query q)")
    aborted = d.step(1)

    assert_aborted(d, "AnalysisFailed", STEP1, "errors: 0.31 is not < 0.02 (query q)")
    assert d.status.message.startswith("aborted: ")
    assert events(aborted) == [("Aborted", "Warning")]
    assert traffic_set(aborted) == [TrafficPlan(stable_slot="a")]
    assert d.replicas("b") == 1  # kept for scaleDownDelaySeconds (30)
    d.step(29)
    assert d.replicas("b") == 1
    d.step(1)
    assert d.replicas("b") == 0
    assert d.created == [STEP1]


@pytest.mark.parametrize("on_error", [None, "abort"])
def test_error_run_aborts_by_default(on_error: str | None) -> None:
    d = at_analysis_step()
    d.set_run(STEP1, "Error", "prometheus: connection refused", on_error=on_error)
    aborted = d.step(1)
    assert_aborted(d, "AnalysisError", STEP1, "could not measure", "connection refused")
    assert events(aborted) == [("Aborted", "Warning")]


def test_error_run_with_on_error_pause_pauses_until_promoted() -> None:
    d = at_analysis_step()
    d.set_run(STEP1, "Error", "prometheus: connection refused", on_error="pause")
    d.step(1)
    assert d.status.phase == "Paused" and d.status.abort is None
    assert d.condition("Paused").reason == "AnalysisError"
    assert STEP1 in d.status.message and "onProviderError: pause" in d.status.message
    assert d.traffic == TrafficPlan(stable_slot="a", canary_slot="b", canary_weight=25)
    d.run(700, tick=100)  # past the progress deadline: still paused, not aborted
    assert d.status.phase == "Paused" and d.status.current_step_index == 1

    promoted = d.step(1, action="promote")
    assert d.status.acknowledged_runs == [STEP1]
    assert d.status.current_step_index == 2 and d.status.phase == "Progressing"
    assert "Promoted" in d.reasons([promoted])
    assert d.created == [STEP1]


def test_error_run_with_on_error_ignore_goes_on() -> None:
    d = at_analysis_step()
    d.set_run(STEP1, "Error", "prometheus: connection refused", on_error="ignore")
    d.step(1)
    assert d.status.current_step_index == 2 and d.status.abort is None
    assert d.status.phase == "Progressing"


def test_inconclusive_run_pauses_until_promoted() -> None:
    d = at_analysis_step()
    d.set_run(STEP1, "Inconclusive", "errors: no data")
    d.step(1)
    assert d.status.phase == "Paused"
    assert d.condition("Paused").reason == "AnalysisInconclusive"
    assert d.true_conditions() == {"Paused"}
    assert STEP1 in d.status.message and "no data" in d.status.message
    assert "promote to go on or abort" in d.status.message
    d.run(700, tick=100)
    assert d.status.phase == "Paused" and d.status.abort is None
    assert d.status.current_step_index == 1 and d.status.canary_weight == 25

    d.step(1, action="promote")
    assert d.status.acknowledged_runs == [STEP1]
    assert d.status.current_step_index == 2 and d.status.phase == "Progressing"
    d.step(2)
    assert d.status.canary_weight == 50
    assert d.created == [STEP1]


def test_inconclusive_run_then_abort() -> None:
    d = at_analysis_step()
    d.set_run(STEP1, "Inconclusive", "errors: no data")
    d.step(1)
    d.step(1, action="abort")
    assert_aborted(d, "UserAbort")


def test_a_run_the_handler_cannot_create_is_invalid_spec() -> None:
    spec = make_spec(STEPS, replicas=4)
    d = healthy(spec)
    d.refuse["step1"] = (
        "spec.strategy.canary.steps[1].analysis: AnalysisTemplate error-rate not found"
    )
    d.step(1, spec=with_image(spec, "web:2"))
    d.step(2)  # reaches the analysis step: the run is refused
    assert d.rejected == {STEP1: d.refuse["step1"]} and d.runs == {}
    replicas, traffic = (d.replicas("a"), d.replicas("b")), d.traffic

    invalid = d.step(1)
    assert workload_actions(invalid) == [] and invalid.actions == []
    assert d.status.phase == "Degraded"
    assert d.condition("InvalidSpec").status == "True"
    assert d.condition("InvalidSpec").message == d.refuse["step1"]
    assert d.status.message == f"invalid spec: {d.refuse['step1']}"
    assert events(invalid) == [("InvalidSpec", "Warning")]
    assert (d.replicas("a"), d.replicas("b")) == replicas and d.traffic == traffic
    assert d.step(10).events == []  # said once


# ---------------------------------------------------------------- background analysis


def bg_canary(starting_step: int = 1) -> Driver:
    return canary(BG_STEPS, analysis={**ANALYSIS, "startingStep": starting_step})


def test_background_run_starts_at_its_starting_step() -> None:
    spec = make_spec(BG_STEPS, replicas=4, analysis={**ANALYSIS, "startingStep": 1})
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    assert d.created == []  # step 0 comes before startingStep
    reached = d.step(2)
    assert d.status.current_step_index == 1
    assert created(reached) == [BG]
    assert d.runs[BG].kind == "background" and d.runs[BG].revision == V2
    assert d.runs[BG].step is None
    d.step(10)
    assert d.status.current_step_index == 2  # a Running background run holds nothing
    assert d.created == [BG]


@pytest.mark.parametrize("at_step", [1, 3])
def test_background_failure_aborts_at_once_at_any_step(at_step: int) -> None:
    d = bg_canary()
    if at_step == 3:
        d.step(10)
        d.step(2)
        assert d.status.current_step_index == 3 and d.status.canary_weight == 50
    d.set_run(BG, "Failed", "errors: 0.2 is not < 0.02")
    aborted = d.step(1)
    assert_aborted(d, "AnalysisFailed", BG, "0.2 is not < 0.02")
    assert traffic_set(aborted) == [TrafficPlan(stable_slot="a")]
    assert events(aborted) == [("Aborted", "Warning")]


def test_background_inconclusive_pauses_until_promoted() -> None:
    d = bg_canary()
    d.set_run(BG, "Inconclusive", "errors: no data")
    d.step(1)
    assert d.status.phase == "Paused"
    assert d.condition("Paused").reason == "AnalysisInconclusive"
    assert BG in d.status.message
    d.step(30)  # the 10 s pause is long over, the rollout holds
    assert d.status.current_step_index == 1 and d.status.phase == "Paused"
    d.step(1, action="promote")
    assert BG in d.status.acknowledged_runs
    assert d.status.current_step_index == 2 and d.status.phase == "Progressing"


def test_promotion_terminates_the_background_run() -> None:
    d = bg_canary()
    d.step(10)
    d.step(2)
    assert d.status.current_step_index == 3
    d.step(1, action="promote")
    promoted = d.step(2)
    assert "Completed" in d.reasons([promoted])
    assert terminated(promoted) == [BG]
    assert d.terminated == [BG] and d.runs[BG].terminating
    assert d.status.stable_revision == V2 and d.status.phase == "Healthy"


def test_a_background_run_is_not_started_by_the_reconcile_that_promotes() -> None:
    """promote onto startingStep, and the canary is promoted in the same reconcile: no run
    is created only to be stopped (nor is AnalysisStarted said)."""
    steps = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 50}]
    d = canary(steps, replicas=1, analysis={**ANALYSIS, "startingStep": 2})
    promoted = d.step(1, action="promote")
    assert "Completed" in d.reasons([promoted])
    assert "AnalysisStarted" not in d.reasons([promoted])
    assert created(promoted) == [] and d.runs == {}
    assert d.status.stable_revision == V2 and d.status.phase == "Healthy"


# ---------------------------------------------------------------- abort stops the runs


def both_running() -> Driver:
    d = canary(STEPS, analysis={**ANALYSIS, "startingStep": 0})
    assert d.running_runs() == {STEP1, BG}
    return d


def test_user_abort_terminates_every_running_run() -> None:
    d = both_running()
    aborted = d.step(1, action="abort")
    assert_aborted(d, "UserAbort")
    assert terminated(aborted) == sorted([BG, STEP1])
    assert d.running_runs() == set()


def test_a_failed_step_run_terminates_the_background_run_in_the_same_reconcile() -> None:
    d = both_running()
    d.set_run(STEP1, "Failed", "errors: 0.5")
    aborted = d.step(1)
    assert_aborted(d, "AnalysisFailed", STEP1)
    assert terminated(aborted) == [BG]
    assert d.running_runs() == set()


def test_a_failed_background_run_terminates_the_step_run() -> None:
    d = both_running()
    d.set_run(BG, "Failed", "errors: 0.5")
    aborted = d.step(1)
    assert_aborted(d, "AnalysisFailed", BG)
    assert terminated(aborted) == [STEP1]


def test_progress_deadline_abort_terminates_the_background_run() -> None:
    spec = make_spec(
        [{"setWeight": 25}, {"setWeight": 75}],
        replicas=4,
        progressDeadlineSeconds=60,
        analysis={**ANALYSIS, "startingStep": 0},
    )
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    d.cluster.broken_revisions.add(V2)  # canary pods made from now on never get Ready
    d.step(2)
    assert d.running_runs() == {BG} and d.status.current_step_index == 1
    d.step(59)
    assert d.status.abort is None
    aborted = d.step(1)
    assert_aborted(d, "ProgressDeadlineExceeded")
    assert terminated(aborted) == [BG]


# ---------------------------------------------------------------- alerts


def test_a_firing_alert_for_the_canary_aborts() -> None:
    d = both_running()
    alert = d.add_alert(V2, "alert HighErrorRate firing: 5xx above 5%")
    aborted = d.step(1)
    assert_aborted(d, "AlertFired", "HighErrorRate firing: 5xx above 5%", alert)
    assert traffic_set(aborted) == [TrafficPlan(stable_slot="a")]
    assert terminated(aborted) == sorted([BG, STEP1])  # never the alert run itself
    assert d.runs[alert].phase == "Failed"


@pytest.mark.parametrize("rev", [V1, V3])
def test_an_alert_for_another_revision_changes_nothing(rev: str) -> None:
    d = at_analysis_step()
    d.add_alert(rev)
    assert d.step(1).actions == []
    assert d.status.abort is None and d.status.phase == "Progressing"


# ---------------------------------------------------------------- retry


def test_retry_after_a_failed_analysis_uses_new_run_names() -> None:
    d = at_analysis_step()
    assert d.status.attempt == 1
    d.set_run(STEP1, "Failed", "errors: 0.5")
    d.step(1)
    retried = d.step(1, action="retry")
    second = run("step1", attempt=2)
    assert d.status.attempt == 2 and d.status.abort is None
    assert "Retried" in d.reasons([retried])
    assert created(retried) == [second]  # step 0 is Ready already: on to the analysis
    assert d.status.current_step_index == 1 and d.status.phase == "Progressing"
    assert d.traffic == TrafficPlan(stable_slot="a", canary_slot="b", canary_weight=25)
    d.set_run(second, "Successful")
    d.step(1)
    assert d.status.current_step_index == 2
    assert d.created == [STEP1, second]


# ---------------------------------------------------------------- post-promotion analysis


def promoted_under_bake(
    delay: int = 10, steps: list[dict[str, Any]] | None = None
) -> tuple[Driver, Decision]:
    spec = make_spec(
        steps or [{"setWeight": 50}],
        replicas=4,
        scaleDownDelaySeconds=delay,
        postPromotionAnalysis=ANALYSIS,
    )
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    d.step(2)
    promoted = d.step(2)
    assert "Completed" in d.reasons([promoted])
    d.step(2)  # the stable slot a is back to 4 Ready
    return d, promoted


def test_post_promotion_run_starts_after_the_swap_and_keeps_the_previous_warm() -> None:
    d, promoted = promoted_under_bake(delay=10)
    assert created(promoted) == [POST]
    assert d.runs[POST].kind == "postPromotion" and d.runs[POST].revision == V2
    assert traffic_set(promoted) == [TrafficPlan(stable_slot="b")]
    assert d.status.stable_revision == V2 and d.status.stable_slot == "b"
    assert d.status.canary_revision == "" and d.status.post_promotion_run == POST
    assert d.status.phase == "Progressing"
    assert d.condition("Progressing").reason == "PostPromotionAnalysis"
    assert d.condition("Completed").status == "False"
    assert d.condition("Healthy").status == "False"
    assert POST in d.status.message
    # Warm keeps the 2 pods web:1 still ran at 50 %: it is never scaled back up for the bake.
    assert (d.replicas("a"), d.replicas("b")) == (2, 4)
    assert d.status.previous is not None and d.status.previous.slot == "a"

    d.run(120, tick=10)  # far beyond scaleDownDelaySeconds: web:1 keeps its 2 pods
    assert (d.replicas("a"), d.replicas("b")) == (2, 4) and d.revision_of("a") == V1

    d.set_run(POST, "Successful")
    passed = d.step(1)
    assert ("AnalysisPassed", "Normal") in events(passed)
    assert d.status.phase == "Healthy" and d.status.post_promotion_run is None
    assert d.true_conditions() == {"Healthy", "Completed"}
    assert d.replicas("a") == 2  # now the usual scaleDownDelaySeconds
    d.step(9)
    assert d.replicas("a") == 2
    gone = d.step(1)
    assert d.replicas("a") == 0 and "ScaledDown" in d.reasons([gone])
    assert d.terminated == []


def test_post_promotion_failure_switches_traffic_back_at_once() -> None:
    d, _ = promoted_under_bake(delay=10)
    d.set_run(POST, "Failed", "errors: 0.4 is not < 0.02")
    reverted = d.step(1)
    assert traffic_set(reverted) == [TrafficPlan(stable_slot="a")]
    assert d.traffic == TrafficPlan(stable_slot="a")
    assert d.status.stable_slot == "a" and d.status.stable_revision == V1
    assert d.status.phase == "Degraded" and d.status.post_promotion_run is None
    assert d.status.abort is not None and d.status.abort.reason == "AnalysisFailed"
    assert POST in d.status.abort.message and "0.4 is not < 0.02" in d.status.abort.message
    assert f"reverted to {V1}" in d.status.abort.message
    assert d.condition("Degraded").reason == "AnalysisFailed"
    assert ("Aborted", "Warning") in events(reverted)
    assert (d.replicas("a"), d.replicas("b")) == (4, 4)  # web:2 kept for the delay
    d.step(9)
    assert d.replicas("b") == 4
    d.step(1)
    assert (d.replicas("a"), d.replicas("b")) == (4, 0)
    assert d.traffic == TrafficPlan(stable_slot="a")


def test_alert_during_post_promotion_reverts_and_stops_the_bake() -> None:
    d, _ = promoted_under_bake()
    alert = d.add_alert(V2, "alert HighLatency firing")
    reverted = d.step(1)
    assert traffic_set(reverted) == [TrafficPlan(stable_slot="a")]
    assert d.status.stable_revision == V1 and d.status.phase == "Degraded"
    assert d.status.abort is not None and d.status.abort.reason == "AlertFired"
    assert alert in d.status.abort.message and "HighLatency" in d.status.abort.message
    assert terminated(reverted) == [POST]


def test_retry_after_a_failed_bake_runs_a_new_canary_with_new_names() -> None:
    d, _ = promoted_under_bake()
    d.set_run(POST, "Failed", "bad")
    d.step(1)
    d.step(10)
    retried = d.step(1, action="retry")
    assert d.status.attempt == 2 and d.status.abort is None
    assert d.status.canary_revision == V2 and d.status.stable_revision == V1
    d.run(6, tick=2)
    assert d.status.stable_revision == V2 and d.status.post_promotion_run == run("post", 2)
    assert d.created == [POST, run("post", 2)]
    assert "Retried" in d.reasons([retried])


# ---------------------------------------------------------------- rollback / new template in a bake


def test_template_back_to_previous_during_the_bake_rolls_back_and_ends_it() -> None:
    # A canary that took no traffic leaves web:1 at its 4 pods: warm enough to switch back.
    d, _ = promoted_under_bake(delay=10, steps=[{"pause": {"duration": 1}}])
    back = d.step(1, spec=with_image(d.spec, "web:1"))
    assert "RolledBack" in d.reasons([back])
    assert d.status.stable_revision == V1 and d.traffic == TrafficPlan(stable_slot="a")
    assert d.status.post_promotion_run is None and d.status.phase == "Healthy"
    assert terminated(back) == [POST]
    # A verdict on web:2 arriving now must not switch traffic back to web:2.
    d.set_run(POST, "Failed", "late verdict")
    d.step(1)
    assert d.status.stable_revision == V1 and d.traffic == TrafficPlan(stable_slot="a")
    assert d.status.abort is None and d.status.phase == "Healthy"


def test_new_template_during_the_bake_ends_it() -> None:
    d, _ = promoted_under_bake(delay=10)
    started = d.step(1, spec=with_image(d.spec, "web:3"))
    assert "RolloutStarted" in d.reasons([started])
    assert d.status.post_promotion_run is None and terminated(started) == [POST]
    # Its verdict, landed before the terminate did, is of no concern to web:3 anymore.
    d.set_run(POST, "Failed", "late verdict")
    spec = {**d.spec}
    spec["strategy"] = {"canary": {"steps": [{"setWeight": 50}], "scaleDownDelaySeconds": 10}}
    d.step(0, spec=spec)  # postPromotionAnalysis removed from the spec
    d.run(10, tick=2)
    assert d.status.stable_revision == V3 and d.status.phase == "Healthy"
    assert d.status.abort is None and d.traffic == TrafficPlan(stable_slot="a")


# ---------------------------------------------------------------- pauses and the deadline


@pytest.mark.parametrize("by", ["spec", "annotation"])
def test_progress_deadline_does_not_count_while_paused(by: str) -> None:
    spec = make_spec([{"setWeight": 50}], replicas=4, progressDeadlineSeconds=60)
    d = healthy(spec, broken={V2})
    d.step(1, spec=with_image(spec, "web:2"))
    if by == "spec":
        d.step(10, spec={**d.spec, "paused": True})
    else:
        d.step(10, action="pause")
    paused_at = fmt(d.now)
    assert d.status.paused_at == paused_at
    d.run(300, tick=50)
    assert d.status.abort is None and d.status.phase == "Paused"
    assert d.condition("Paused").reason == "PausedByUser"
    assert d.status.paused_at == paused_at

    if by == "spec":
        d.step(1, spec={**d.spec, "paused": False})
    else:
        d.step(1, action="resume")
    assert d.status.paused_at is None
    resumed_at = d.t
    assert d.status.step_start_time == fmt(d.now)  # the step starts over
    d.step(59)
    assert d.status.abort is None
    d.step(1)
    assert d.t - resumed_at == 60
    assert d.status.abort is not None
    assert d.status.abort.reason == "ProgressDeadlineExceeded"


# ---------------------------------------------------------------- properties

PHASES = ("Successful", "Failed", "Error", "Inconclusive", "Running")
ACTIONS = ("promote", "promote-full", "abort", "retry", "pause", "resume")
GATE_ABORTS = {"AnalysisFailed", "AnalysisError", "AlertFired"}


@st.composite
def analysis_steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid steps mixing setWeight (never going down), pauses and analyses."""
    weight, steps = 0, []
    if draw(st.booleans()):  # traffic first, so that background analysis has something
        weight = draw(st.integers(1, 100))
        steps.append({"setWeight": weight})
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["setWeight", "setWeight", "pause", "analysis", "analysis"]))
        if kind == "setWeight":
            weight = draw(st.integers(weight, 100))
            steps.append({"setWeight": weight})
        elif kind == "pause":
            duration = draw(st.one_of(st.none(), st.integers(0, 60)))
            steps.append({"pause": {} if duration is None else {"duration": duration}})
        else:
            steps.append({"analysis": ANALYSIS})
    return steps


@dataclass(frozen=True)
class Op:
    advance: float | None  # None: to when the engine asked to be called or a pod gets Ready
    # (which run, phase, onProviderError); `late`: on a run already told to terminate,
    # a verdict its executor wrote before the terminate landed.
    verdict: tuple[int, str, str | None, bool] | None
    alert: bool
    action: str | None
    image: str | None
    toggle_post: bool  # add or remove postPromotionAnalysis


ops = st.builds(
    Op,
    advance=st.one_of(
        st.none(), st.none(), st.sampled_from([0.0, 1.0]), st.integers(0, 120).map(float)
    ),
    verdict=st.one_of(
        st.none(),
        st.tuples(
            st.integers(0, 5),
            st.sampled_from((*PHASES, "Successful", "Successful")),
            st.sampled_from([None, "abort", "pause", "ignore"]),
            st.integers(0, 4).map(lambda n: n == 0),
        ),
    ),
    alert=st.integers(0, 29).map(lambda n: n == 0),
    action=st.one_of(st.none(), st.none(), st.sampled_from(ACTIONS)),
    image=st.one_of(
        st.none(), st.none(), st.none(), st.none(), st.sampled_from(["web:1", "web:2", "web:3"])
    ),
    toggle_post=st.integers(0, 19).map(lambda n: n == 0),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Driver, list[Op]]:
    extra: dict[str, Any] = {}
    if draw(st.integers(0, 2)):
        extra["analysis"] = {**ANALYSIS, "startingStep": draw(st.sampled_from([0, 0, 1, 2, 3]))}
    if draw(st.booleans()):
        extra["postPromotionAnalysis"] = ANALYSIS
    spec = make_spec(
        draw(analysis_steps()),
        replicas=draw(st.integers(1, 6)),
        scaleDownDelaySeconds=draw(st.sampled_from([0, 10, 60])),
        progressDeadlineSeconds=draw(st.sampled_from([5, 60, 600])),
        **extra,
    )
    driver = Driver(spec, ready_delay=draw(st.sampled_from([0.5, 2.0, 15.0])))
    return driver, draw(st.lists(ops, min_size=5, max_size=30))


def _spec_revision(d: Driver) -> str:
    return revision(d.spec["template"]["spec"]["containers"][0]["image"])


def gated_failure(d: Driver) -> bool:
    """A run the engine judges now failed: the current step's, the background one, an
    alert for the canary, or the post-promotion run (not one a human promoted past)."""
    s = d.status
    if s.abort is not None:
        return False
    if not s.canary_revision:
        post = d.runs.get(s.post_promotion_run or "")
        prefix = alert_run_prefix(d.name, s.stable_revision, s.attempt)
        alert = any(
            r.kind == "alert" and n.startswith(prefix) and r.phase == "Failed"
            for n, r in d.runs.items()
        )
        return bool(s.post_promotion_run) and (
            alert or (post is not None and post.phase == "Failed")
        )
    if s.canary_revision != _spec_revision(d):
        return False
    names = {run("bg", s.attempt, s.canary_revision)}
    names.add(run(f"step{s.current_step_index}", s.attempt, s.canary_revision))
    return any(
        (name in names or name.startswith(alert_run_prefix(d.name, s.canary_revision, s.attempt)))
        and r.phase == "Failed"
        and name not in s.acknowledged_runs
        for name, r in d.runs.items()
    )


def give_verdict(d: Driver, op: Op) -> None:
    """The verdict (on a running run, or late on one told to stop) and the alert of `op`."""
    if op.verdict is not None:
        which, phase, on_error, late = op.verdict
        told_to_stop = {n for n, r in d.runs.items() if r.kind != "alert" and r.terminating}
        runs = sorted(told_to_stop if late else d.running_runs())
        if runs:
            d.set_run(runs[which % len(runs)], phase, f"{phase} verdict", on_error)
    s = d.status
    if op.alert and (s.canary_revision or s.post_promotion_run):
        d.add_alert(s.canary_revision or s.stable_revision)


def next_due(d: Driver) -> float:
    due = [] if d.last is None or d.last.requeue_after is None else [d.last.requeue_after]
    ready_at = d.cluster.next_ready(d.t)
    if ready_at is not None:
        due.append(ready_at - d.t)
    return min(due, default=1.0)


def play(d: Driver, script: list[Op]) -> None:
    note(f"spec={d.spec}")
    ever_created: list[str] = []
    d.step(0)
    d.step(d.cluster.ready_delay)
    d.step(1, spec=with_image(d.spec, "web:2"))  # a canary from the start
    for op in script:
        d.t += next_due(d) if op.advance is None else op.advance
        give_verdict(d, op)
        spec = d.spec if op.image is None else with_image(d.spec, op.image)
        if op.toggle_post:
            canary = {**spec["strategy"]["canary"]}
            if canary.pop("postPromotionAnalysis", None) is None:
                canary["postPromotionAnalysis"] = ANALYSIS
            spec = {**spec, "strategy": {"canary": canary}}
        quiet = op.action is None and op.image is None and not op.toggle_post
        must_abort = quiet and gated_failure(d)
        before, failed_before = d.status, {n for n, r in d.runs.items() if r.phase == "Failed"}
        decision = d.step(0, action=op.action, spec=spec)
        s = decision.status
        reasons = [e.reason for e in decision.events]
        note(f"t={d.t} {op} -> {decision.actions} {reasons} {s.phase}/{s.message}")

        # canaryWeight is a percentage, in the status and in every traffic target.
        assert 0 <= s.canary_weight <= 100
        assert all(0 <= t.canary_weight <= 100 for t in traffic_set(decision))
        assert d.traffic is not None and 0 <= d.traffic.canary_weight <= 100

        # A failed gate: all traffic goes to the stable, in this very reconcile.
        if must_abort:
            assert s.abort is not None, "a failed run was not acted upon"
        if (s.abort is not None and s.abort.reason in GATE_ABORTS) or must_abort:
            assert d.traffic.canary_weight == 0 and d.traffic.canary_slot is None
            assert all(t.canary_weight == 0 for t in traffic_set(decision))
        # Traffic follows the stable, except while the version reverted to has no Ready pod
        # (a warm previous keeps only what it ran, maybe none): sending it there would be
        # an outage, so it waits, saying so, and moves once a pod of it is Ready.
        not_ready = s.stable_slot is not None and (
            d.cluster.observe(d.t).slots[s.stable_slot].ready == 0
        )
        held = not_ready and "Ready before traffic returns" in s.message
        if s.abort is not None and not held:
            assert d.traffic.stable_slot == s.stable_slot
        # A failed bake sends traffic back to the previous version, never to the failed one.
        if must_abort and before.post_promotion_run and before.previous is not None:
            assert s.stable_revision == before.previous.revision
            assert held or d.traffic.stable_slot == before.previous.slot
        bake = before.post_promotion_run
        if bake in failed_before and s.abort is not None and before.abort is None:
            assert s.stable_revision != d.runs[bake].revision, f"reverted to {s.stable_revision}"

        # No run is created twice under one name.
        for name in created(decision):
            assert name not in ever_created, f"{name} created again"
            ever_created.append(name)

        # Only the runs of the current canary attempt, or of the bake, keep running: a
        # terminal decision (promotion, abort) or a settled rollout leaves none else.
        current = f"web-{s.canary_revision}-{s.attempt}-"
        for name in d.running_runs():
            ongoing = s.canary_revision and not s.abort and name.startswith(current)
            assert ongoing or name == s.post_promotion_run, f"{name} still running ({reasons})"
        if "Completed" in reasons or (s.abort is not None and before.abort is None):
            assert d.running_runs() <= {s.post_promotion_run}, reasons
        if s.phase == "Healthy":
            assert not d.running_runs()


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_analysis_invariants_hold_on_every_reconcile(scenario: tuple[Driver, list[Op]]) -> None:
    """Random steps, verdicts arriving at random times, random actions and templates."""
    driver, script = scenario
    play(driver, script)


# ---------------------------------------------------------------- humans during the bake


def test_promote_accepts_an_inconclusive_bake_and_abort_reverts_one() -> None:
    d, _ = promoted_under_bake(delay=10)
    d.set_run(POST, "Inconclusive", "no data")
    d.step(1)
    assert d.status.phase == "Paused" and d.condition("Paused").reason == "AnalysisInconclusive"
    d.step(1, action="promote")
    d.step(1)
    assert d.status.phase == "Healthy" and d.status.post_promotion_run is None
    assert d.status.stable_revision == V2

    d, _ = promoted_under_bake(delay=10)
    d.set_run(POST, "Inconclusive", "no data")
    d.step(1)
    d.step(1, action="abort")
    assert d.status.stable_revision == V1 and d.status.phase == "Degraded"
    assert d.status.abort is not None and d.status.abort.reason == "UserAbort"
    assert d.traffic == TrafficPlan(stable_slot="a")


def test_retry_after_an_alert_is_not_aborted_by_the_same_alert() -> None:
    d = both_running()
    d.add_alert(V2, "alert HighErrorRate firing")
    d.step(1)
    assert d.status.abort is not None and d.status.abort.reason == "AlertFired"
    d.step(1, action="retry")
    d.step(1)
    assert d.status.abort is None and d.status.phase != "Degraded"
    d.add_alert(V2, "alert HighErrorRate firing again")  # a new alert on the new attempt
    d.step(1)
    assert d.status.abort is not None and d.status.abort.reason == "AlertFired"


def test_a_failed_bake_arriving_with_a_new_template_still_reverts_first() -> None:
    d, _ = promoted_under_bake(delay=10)
    d.set_run(POST, "Failed", "errors: 0.4 is not < 0.02")
    d.step(1, spec=with_image(d.spec, "web:3"))
    assert d.status.stable_revision == V1, "the failed bake must not stay stable"
    assert d.status.canary_revision == V3


def test_runs_of_attempts_older_than_the_history_limit_are_deleted() -> None:
    d = canary(STEPS, analysis={**ANALYSIS, "startingStep": 0}, revisionHistoryLimit=2)
    first = sorted(d.runs)
    for _ in range(4):  # fail, retry: four more attempts
        d.set_run(BG.replace("-1-", f"-{d.status.attempt}-"), "Failed", "errors")
        d.step(1)
        assert d.status.abort is not None
        d.step(1, action="retry")
        d.step(3)
    assert set(first) <= set(d.deleted), "the first attempt's runs are gone"
    kept = {r.attempt for r in d.runs.values()}
    assert min(a for a in kept if a is not None) >= d.status.attempt - 2
    assert all(r.phase in ("Pending", "Running") or r.attempt is not None for r in d.runs.values())


def test_a_background_run_holding_for_its_provider_holds_the_steps_and_resumes_by_itself() -> None:
    d = bg_canary()  # at step 1 (a 10 s pause), the background run Running
    d.set_run(BG, "Holding", "errors: 3 provider errors in a row for 20s: holding")
    held = d.step(20)  # the pause is over, but the provider is down: no step is taken
    assert d.status.phase == "Paused" and d.condition("Paused").reason == "AnalysisProviderDown"
    assert d.status.current_step_index == 1 and d.status.abort is None
    assert d.traffic == TrafficPlan(stable_slot="a", canary_slot="b", canary_weight=25)
    assert ("Paused", "Warning") in events(held)
    d.run(700, tick=100)  # a held rollout is not past its progress deadline either
    assert d.status.phase == "Paused" and d.status.abort is None

    d.set_run(BG, "Running", "errors: 0.001 < 0.02")  # the provider answers again
    d.step(1)
    assert d.status.current_step_index == 2 and d.status.phase != "Paused"
    assert d.status.acknowledged_runs == []  # no human was needed
