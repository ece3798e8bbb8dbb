"""What a user sees, step by step: decide() driven on a simulated clock over MemoryCluster.

Each test reads like a session with kubectl: change the spec or annotate the Rollout,
let time pass, then look at the child Deployments (replicas per slot), the traffic
target, the status and the events.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from driver import Driver, make_spec, revision, serving_ready, with_image, workload_actions

from sluice.engine.decide import CONDITION_TYPES
from sluice.engine.types import DeploySlot, RemoveAction, SetTraffic, TrafficPlan

V1, V2, V3 = revision("web:1"), revision("web:2"), revision("web:3")

STEPS = [
    {"setWeight": 25},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {"duration": "30s"}},
]


def healthy(spec: dict[str, Any], **kw: Any) -> Driver:
    """A Rollout whose first template (web:1) runs Healthy in slot a."""
    d = Driver(spec, **kw)
    d.step(0)
    d.step(d.cluster.ready_delay)
    assert d.status.phase == "Healthy"
    return d


def canary_at_25(replicas: int = 8, **kw: Any) -> Driver:
    """web:2 rolled out to setWeight 25, now on the untimed pause (step 1)."""
    spec = make_spec(STEPS, replicas=replicas, **kw)
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    d.step(2)
    assert (d.status.current_step_index, d.status.canary_weight) == (1, 25)
    return d


def assert_conditions(d: Driver) -> None:
    assert [c.type for c in d.status.conditions] == list(CONDITION_TYPES)
    assert all(c.status in ("True", "False") for c in d.status.conditions)
    assert all(c.last_transition_time for c in d.status.conditions)


# ---------------------------------------------------------------- first template


def test_first_template_becomes_stable_directly() -> None:
    d = Driver(make_spec(STEPS, replicas=3))
    first = d.step(0)

    assert d.replicas("a") == 3 and d.revision_of("a") == V1
    assert d.revision_of("b") is None  # no canary slot at all
    assert d.traffic == TrafficPlan(stable_slot="a")
    assert d.status.stable_revision == V1 and d.status.stable_slot == "a"
    assert d.status.canary_revision == "" and d.status.current_step_index is None
    assert d.status.phase == "Progressing"
    assert [e.reason for e in first.events] == ["Deployed"]
    assert first.requeue_after == 600  # the progress deadline of the stable
    assert d.status.observed_generation == 1
    assert d.status.selector == "app=web"
    assert_conditions(d)

    d.step(2)
    assert d.status.phase == "Healthy"
    assert d.true_conditions() == {"Healthy", "Completed"}
    assert d.status.ready_replicas == 3 and d.status.replicas == 3
    assert d.last.requeue_after is None
    assert d.settle().actions == []


def test_stable_that_never_gets_ready_is_degraded_after_the_deadline() -> None:
    spec = make_spec(replicas=2, progressDeadlineSeconds=30)
    d = Driver(spec, broken={V1})
    d.step(0)
    assert d.step(29).requeue_after == pytest.approx(1)
    assert d.status.phase == "Progressing"
    d.step(1)
    assert d.status.phase == "Degraded"
    assert d.condition("Degraded").reason == "ProgressDeadlineExceeded"
    assert [(e.reason, e.type) for e in d.last.events] == [("Degraded", "Warning")]


# ---------------------------------------------------------------- the canary steps


def test_new_template_starts_a_canary_at_step_0_in_the_other_slot() -> None:
    spec = make_spec(STEPS, replicas=8)
    d = healthy(spec)
    started = d.step(1, spec=with_image(spec, "web:2"))

    assert d.status.canary_revision == V2 and d.status.stable_revision == V1
    assert d.status.current_step_index == 0
    assert d.revision_of("b") == V2 and d.replicas("b") == 2  # ceil(8 * 25 / 100)
    assert d.replicas("a") == 8  # nothing Ready on the canary yet: the stable keeps all
    assert d.status.canary_weight == 0
    assert d.traffic == TrafficPlan(stable_slot="a")
    assert [e.reason for e in started.events] == ["RolloutStarted"]
    assert d.status.phase == "Progressing"
    assert d.condition("Progressing").reason == "StepInProgress"
    assert d.status.observed_generation == 2
    assert_conditions(d)


def test_set_weight_25_on_8_replicas_gives_canary_2_stable_6_once_ready() -> None:
    spec = make_spec(STEPS, replicas=8)
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))

    d.step(1)  # 1 s later: the canary pods are not Ready yet
    assert (d.replicas("a"), d.replicas("b")) == (8, 2)
    assert d.status.canary_weight == 0 and d.status.current_step_index == 0

    reached = d.step(1)  # now they are
    assert (d.replicas("a"), d.replicas("b")) == (6, 2)
    assert d.status.canary_weight == 25
    assert d.traffic == TrafficPlan(stable_slot="a", canary_slot="b", canary_weight=25)
    assert d.status.current_step_index == 1  # on to the untimed pause
    assert [e.reason for e in reached.events] == ["StepReached"]
    assert d.status.phase == "Paused" and d.condition("Paused").reason == "PauseStep"
    assert reached.requeue_after is None  # an untimed pause waits for a human
    assert d.status.canary is not None and d.status.canary.ready_replicas == 2
    assert d.status.stable is not None and d.status.stable.replicas == 6


def test_weight_never_moves_toward_a_canary_that_is_not_ready() -> None:
    spec = make_spec(STEPS, replicas=4)
    d = healthy(spec, ready_delay=2.0)
    d.cluster.ready_delay = 20.0  # the canary is slow to start
    d.step(1, spec=with_image(spec, "web:2"))
    for _ in range(19):
        d.step(1)
        assert d.status.canary_weight == 0 and d.status.current_step_index == 0
        assert d.traffic == TrafficPlan(stable_slot="a")
        assert d.replicas("a") == 4
    d.step(1)
    assert d.status.canary_weight == 25 and d.replicas("a") == 3


def test_stable_shrinks_only_as_canary_pods_become_ready() -> None:
    d = canary_at_25(replicas=8)
    d.step(1, action="promote")  # to setWeight 50: the canary needs 4 pods, has 2
    assert (d.replicas("a"), d.replicas("b")) == (6, 4)
    assert d.status.canary_weight == 25  # not 50 before 4 canary pods are Ready
    assert serving_ready(d.observe(), d.traffic) == 8
    d.step(2)
    assert (d.replicas("a"), d.replicas("b")) == (4, 4)
    assert d.status.canary_weight == 50


def test_a_ready_canary_without_traffic_replaces_no_stable_pod() -> None:
    """Canary pods that take no traffic (weight 0) are no capacity: the stable stays at R."""
    spec = make_spec([{"setWeight": 13}], replicas=8)
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    d.step(1, action="promote")  # past the only step before any canary pod is Ready
    assert d.status.current_step_index == 1 and d.status.canary_weight == 0
    d.step(1)  # the first 2 canary pods are Ready, the 6 others not yet
    assert d.ready("b") == 2
    assert d.replicas("a") == 8
    assert serving_ready(d.observe(), d.traffic) == 8


def test_timed_pause_requeues_for_what_is_left() -> None:
    d = canary_at_25(replicas=4)
    d.step(1, action="promote")
    d.step(2)  # setWeight 50 reached, then the 30 s pause
    assert d.status.current_step_index == 3
    assert d.last.requeue_after == pytest.approx(30)
    assert d.status.phase == "Paused"
    assert d.step(10).requeue_after == pytest.approx(20)
    assert d.status.current_step_index == 3
    d.step(19.5)
    assert d.status.current_step_index == 3
    assert d.last.requeue_after == pytest.approx(0.5)
    d.step(0.5)
    assert d.status.current_step_index == 4  # promoting
    assert d.status.phase == "Progressing"


@pytest.mark.parametrize(
    ("duration", "seconds"), [(45, 45), ("45s", 45), ("1m", 60), ("1m30s", 90), ("500ms", 0.5)]
)
def test_pause_durations(duration: int | str, seconds: float) -> None:
    spec = make_spec([{"pause": {"duration": duration}}, {"setWeight": 50}], replicas=2)
    d = healthy(spec)
    assert d.step(1, spec=with_image(spec, "web:2")).requeue_after == pytest.approx(seconds)
    d.step(seconds - 0.25 if seconds > 0.25 else 0)
    assert d.status.current_step_index == 0
    d.step(0.25 if seconds > 0.25 else seconds)
    assert d.status.current_step_index == 1


# ---------------------------------------------------------------- promotion


def test_promotion_flips_slots_without_rerolling_and_keeps_the_old_stable_warm() -> None:
    spec = make_spec([{"setWeight": 50}], replicas=4, scaleDownDelaySeconds=30)
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    d.step(2)  # weight 50, then "promoting": the canary goes to R
    assert d.status.current_step_index == 1
    assert (d.replicas("a"), d.replicas("b")) == (2, 4)
    assert d.status.canary_weight == 50

    promoted = d.step(2)
    assert not [a for a in promoted.actions if isinstance(a, DeploySlot)]  # no re-roll
    assert d.status.stable_slot == "b" and d.status.stable_revision == V2
    assert d.status.canary_revision == "" and d.status.current_step_index is None
    assert d.status.canary_weight == 0
    assert d.traffic == TrafficPlan(stable_slot="b")
    # Warm keeps what was running (the stable had shrunk to 2 for the 50 % canary):
    # promotion never scales the retiring version back up.
    assert (d.replicas("a"), d.replicas("b")) == (2, 4)
    assert d.revision_of("a") == V1
    assert d.status.previous is not None and d.status.previous.slot == "a"
    assert "Completed" in d.reasons([promoted])
    assert promoted.requeue_after == pytest.approx(30)
    assert d.status.phase == "Healthy"
    assert d.true_conditions() == {"Healthy", "Completed"}

    d.step(29)
    assert d.replicas("a") == 2
    scaled = d.step(1)
    assert d.replicas("a") == 0 and d.replicas("b") == 4
    assert d.status.previous is None
    assert [e.reason for e in scaled.events] == ["ScaledDown"]
    assert scaled.requeue_after is None


def test_slots_ping_pong() -> None:
    spec = make_spec([{"setWeight": 50}], replicas=2, scaleDownDelaySeconds=0)
    d = healthy(spec)
    for image, stable, canary in [("web:2", "b", "a"), ("web:3", "a", "b"), ("web:4", "b", "a")]:
        d.step(1, spec=with_image(spec, image))
        assert d.revision_of(stable) == revision(image)  # the canary's slot...
        d.run(10)
        assert d.status.stable_slot == stable  # ...is the stable slot after promotion
        assert d.status.stable_revision == revision(image)
        assert (d.replicas(stable), d.replicas(canary)) == (2, 0)
        assert d.status.phase == "Healthy"


def test_template_back_to_previous_while_warm_switches_at_once() -> None:
    # 10 % of 2 replicas is 1 canary pod beside a stable that keeps both of its pods, so
    # the previous version is still at full size after the promotion.
    spec = make_spec([{"setWeight": 10}], replicas=2, scaleDownDelaySeconds=60)
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    d.run(6)
    assert d.status.stable_revision == V2 and d.replicas("a") == 2  # web:1 warm
    back = d.step(1, spec=spec)
    assert "RolledBack" in d.reasons([back])
    assert d.status.stable_slot == "a" and d.status.stable_revision == V1
    assert d.status.canary_revision == ""
    assert d.traffic == TrafficPlan(stable_slot="a")
    assert serving_ready(d.observe(), d.traffic) == 2


def test_ready_capacity_never_drops_below_replicas_during_a_rollout() -> None:
    spec = make_spec(
        [{"setWeight": 10}, {"setWeight": 30}, {"pause": {"duration": 5}}, {"setWeight": 80}],
        replicas=10,
    )
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    while d.status.canary_revision:
        d.step(0.5)
        assert serving_ready(d.observe(), d.traffic) >= 10
        assert d.t < 120
    assert d.status.stable_revision == V2 and d.status.phase == "Healthy"


# ---------------------------------------------------------------- actions


def test_promote_moves_one_step() -> None:
    d = canary_at_25()
    promoted = d.step(1, action="promote")
    assert d.status.current_step_index == 2
    assert [e.reason for e in promoted.events] == ["Promoted"]
    assert RemoveAction() in promoted.actions
    assert d.status.consumed_action == "promote"
    assert d.annotation is None
    d.step(1)
    assert d.status.consumed_action is None  # the annotation is gone


def test_promote_full_skips_all_steps() -> None:
    d = canary_at_25(replicas=4)
    d.step(1, action="promote-full")
    assert d.status.current_step_index == len(STEPS)
    assert d.replicas("b") == 4
    d.step(2)
    assert d.status.stable_revision == V2 and d.status.stable_slot == "b"
    assert d.status.phase == "Healthy"


def test_pause_and_resume_by_annotation() -> None:
    spec = make_spec([{"setWeight": 50}, {"pause": {"duration": 10}}], replicas=2)
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    d.step(2)
    assert d.status.current_step_index == 1 and d.last.requeue_after == pytest.approx(10)

    paused = d.step(1, action="pause")
    assert [e.reason for e in paused.events] == ["Paused"]
    assert d.status.user_paused and d.status.phase == "Paused"
    assert d.condition("Paused").reason == "PausedByUser"
    assert paused.requeue_after is None  # the timer does not fire while paused
    d.step(60)
    assert d.status.current_step_index == 1 and d.status.stable_revision == V1

    resumed = d.step(1, action="resume")
    assert "Resumed" in d.reasons([resumed])
    assert not d.status.user_paused
    d.run(4)
    assert d.status.stable_revision == V2 and d.status.phase == "Healthy"


def test_spec_paused_holds_the_rollout() -> None:
    spec = make_spec([{"setWeight": 50}, {"pause": {"duration": 5}}], replicas=2)
    d = healthy(spec)
    d.step(1, spec={**with_image(spec, "web:2"), "paused": True})
    d.run(30)
    assert d.status.phase == "Paused" and d.condition("Paused").reason == "PausedByUser"
    assert d.status.current_step_index == 0
    assert d.status.canary_weight == 50  # the step's weight is held, not exceeded
    d.step(0, spec=with_image(spec, "web:2"))
    d.run(10)
    assert d.status.stable_revision == V2


def test_actions_without_a_canary_are_ignored_with_a_warning() -> None:
    d = healthy(make_spec(replicas=2))
    for action in ("promote", "promote-full", "abort", "retry"):
        decision = d.step(1, action=action)
        assert [(e.reason, e.type) for e in decision.events] == [("ActionIgnored", "Warning")]
        assert workload_actions(decision) == []
        assert decision.actions == [RemoveAction()]
        assert d.status.phase == "Healthy"


def test_an_action_is_applied_once_even_if_the_annotation_survives_a_crash() -> None:
    d = canary_at_25()
    first = d.step(1, action="promote", remove_annotation=False)
    assert d.status.current_step_index == 2 and d.status.consumed_action == "promote"
    assert d.annotation == "promote"  # the operator died before deleting it

    again = d.step(1)  # restarted: the same annotation, already consumed
    assert d.status.current_step_index == 2  # not promoted a second time
    assert again.actions == [RemoveAction()]
    assert again.events == [] and "Promoted" in d.reasons([first])
    assert d.annotation is None

    d.step(1)
    assert d.status.consumed_action is None
    index = d.status.current_step_index
    d.step(0, action="promote")  # a new promote by the user is a new action
    assert d.status.current_step_index == index + 1


def test_unknown_action_is_invalid_spec_and_touches_nothing() -> None:
    d = canary_at_25()
    before = d.status
    decision = d.step(1, action="promote-now")
    assert decision.actions == []  # not even the annotation's removal
    assert d.condition("InvalidSpec").status == "True"
    assert "metadata.annotations[sluice.dev/action]" in d.condition("InvalidSpec").message
    assert "promote-now" in d.condition("InvalidSpec").message
    assert [(e.reason, e.type) for e in decision.events] == [("InvalidSpec", "Warning")]
    assert d.status.current_step_index == before.current_step_index
    assert d.annotation == "promote-now"
    d.annotation = None
    d.step(1)
    assert d.condition("InvalidSpec").status == "False"
    assert d.status.phase == "Paused"


# ---------------------------------------------------------------- abort and retry


def test_abort_sends_all_traffic_to_stable_and_keeps_the_canary_for_the_delay() -> None:
    d = canary_at_25(replicas=8, scaleDownDelaySeconds=30)
    aborted = d.step(1, action="abort")

    traffic = [a for a in aborted.actions if isinstance(a, SetTraffic)]
    assert traffic == [SetTraffic(TrafficPlan(stable_slot="a", canary_slot=None))]
    assert d.status.canary_weight == 0
    assert (d.replicas("a"), d.replicas("b")) == (8, 2)  # canary kept, stable back to R
    assert d.status.phase == "Degraded"
    assert d.status.abort is not None and d.status.abort.reason == "UserAbort"
    assert d.status.abort.revision == V2
    assert d.condition("Degraded").status == "True"
    assert d.condition("Degraded").reason == "UserAbort"
    assert [(e.reason, e.type) for e in aborted.events] == [("Aborted", "Warning")]
    assert aborted.requeue_after == pytest.approx(30)

    d.step(29)
    assert d.replicas("b") == 2
    d.step(1)
    assert d.replicas("b") == 0 and d.replicas("a") == 8
    assert d.status.phase == "Degraded" and d.status.canary_revision == V2
    assert d.settle().actions == []


def test_abort_with_no_delay_scales_the_canary_down_at_once() -> None:
    d = canary_at_25(replicas=4, scaleDownDelaySeconds=0)
    d.step(1, action="abort")
    assert (d.replicas("a"), d.replicas("b")) == (4, 0)
    assert d.traffic == TrafficPlan(stable_slot="a")


def test_retry_restarts_from_step_0() -> None:
    d = canary_at_25(replicas=8, scaleDownDelaySeconds=5)
    d.step(1, action="promote")
    d.step(2)
    assert d.status.canary_weight == 50
    d.step(1, action="abort")
    d.step(10)
    assert d.replicas("b") == 0

    retried = d.step(1, action="retry")
    assert [e.reason for e in retried.events] == ["Retried"]
    assert d.status.abort is None and d.status.current_step_index == 0
    assert d.status.canary_weight == 0
    assert d.replicas("b") == 2 and d.status.phase == "Progressing"
    d.step(2)
    assert d.status.canary_weight == 25 and d.status.current_step_index == 1


def test_other_actions_on_an_aborted_canary_are_ignored() -> None:
    d = canary_at_25()
    d.step(1, action="abort")
    decision = d.step(1, action="promote")
    assert [e.reason for e in decision.events] == ["ActionIgnored"]
    assert "retry" in decision.events[0].message
    assert d.status.abort is not None


def test_progress_deadline_aborts_a_canary_that_never_gets_ready() -> None:
    spec = make_spec(STEPS, replicas=4, progressDeadlineSeconds=60)
    d = healthy(spec, broken={V2})
    d.step(1, spec=with_image(spec, "web:2"))
    assert d.last.requeue_after == pytest.approx(60)
    assert d.step(59).requeue_after == pytest.approx(1)
    assert d.status.abort is None and d.status.phase == "Progressing"

    aborted = d.step(1)
    assert d.status.abort is not None
    assert d.status.abort.reason == "ProgressDeadlineExceeded"
    assert "0/1" in d.status.abort.message
    assert d.status.phase == "Degraded"
    assert d.condition("Degraded").reason == "ProgressDeadlineExceeded"
    assert [(e.reason, e.type) for e in aborted.events] == [("Aborted", "Warning")]
    assert d.traffic == TrafficPlan(stable_slot="a")
    assert d.replicas("a") == 4
    # The deciding reconcile already holds the abort's targets: nothing left to do.
    assert d.peek().actions == []


def test_progress_deadline_abort_restores_the_stable_in_the_same_reconcile() -> None:
    d = canary_at_25(replicas=8, scaleDownDelaySeconds=0, progressDeadlineSeconds=60)
    d.cluster.broken_revisions.add(V2)  # the pods added for setWeight 50 never get Ready
    d.step(1, action="promote")
    assert (d.replicas("a"), d.replicas("b")) == (6, 4)
    aborted = d.step(60)
    assert d.status.abort is not None
    assert d.status.abort.reason == "ProgressDeadlineExceeded"
    assert "2/4" in d.status.abort.message
    assert "Aborted" in d.reasons([aborted])
    assert (d.replicas("a"), d.replicas("b")) == (8, 0)  # not one reconcile later
    assert d.traffic == TrafficPlan(stable_slot="a")
    assert d.peek().actions == []


def test_progress_deadline_counts_from_the_step_start() -> None:
    spec = make_spec([{"pause": {"duration": 100}}, {"setWeight": 50}], replicas=2)
    spec["progressDeadlineSeconds"] = 30
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    d.step(100)  # the pause is longer than the deadline: not an abort
    assert d.status.current_step_index == 1 and d.status.abort is None
    d.step(2)
    assert d.status.canary_weight == 50


def test_new_template_after_an_abort_starts_a_fresh_canary() -> None:
    d = canary_at_25(replicas=4)
    d.step(1, action="abort")
    started = d.step(1, spec=with_image(d.spec, "web:3"))
    assert "CanaryReplaced" in d.reasons([started])
    assert d.status.abort is None and d.status.canary_revision == V3
    assert d.status.current_step_index == 0 and d.status.phase == "Progressing"
    assert d.revision_of("b") == V3


# ---------------------------------------------------------------- template changes


def test_template_set_back_to_stable_reverts_at_once() -> None:
    d = canary_at_25(replicas=8)
    d.step(1, action="promote")
    d.step(2)
    assert d.status.canary_weight == 50
    spec_v1 = with_image(d.spec, "web:1")
    reverted = d.step(1, spec=spec_v1)

    assert [(e.reason, e.type) for e in reverted.events] == [("Reverted", "Warning")]
    assert d.status.canary_revision == "" and d.status.current_step_index is None
    assert d.status.canary_weight == 0 and d.status.abort is None
    assert d.traffic == TrafficPlan(stable_slot="a")
    assert (d.replicas("a"), d.replicas("b")) == (8, 0)
    assert not [a for a in reverted.actions if isinstance(a, DeploySlot)]
    d.step(2)
    assert d.status.phase == "Healthy" and d.status.stable_revision == V1


def test_template_set_back_after_an_abort_resolves_it() -> None:
    d = canary_at_25(replicas=4)
    d.step(1, action="abort")
    resolved = d.step(3, spec=with_image(d.spec, "web:1"))
    assert [e.reason for e in resolved.events] == ["AbortResolved"]
    assert d.status.abort is None and d.status.canary_revision == ""
    assert d.status.phase == "Healthy" and d.replicas("b") == 0


def test_new_template_mid_canary_refills_the_stable_before_replacing_it() -> None:
    d = canary_at_25(replicas=8)
    waiting = d.step(1, spec=with_image(d.spec, "web:3"))
    # The old canary keeps serving its 2 pods while the stable goes back to 8.
    assert [e.reason for e in waiting.events] == ["Progressing"]
    assert V3 in waiting.events[0].message
    assert (d.replicas("a"), d.replicas("b")) == (8, 2) and d.revision_of("b") == V2
    assert d.traffic == TrafficPlan(stable_slot="a", canary_slot="b", canary_weight=25)
    assert d.status.canary_revision == V2
    assert d.condition("Progressing").reason == "CanaryReplacing"
    assert serving_ready(d.observe(), d.traffic) == 8

    replaced = d.step(2)  # the stable is at 8 Ready: now the new canary
    assert [e.reason for e in replaced.events] == ["CanaryReplaced"]
    assert d.status.canary_revision == V3 and d.status.current_step_index == 0
    assert d.revision_of("b") == V3 and d.replicas("b") == 2
    assert d.traffic == TrafficPlan(stable_slot="a")
    assert serving_ready(d.observe(), d.traffic) == 8
    d.step(2)
    assert d.status.canary_weight == 25


def test_abort_while_the_stable_is_refilled_aborts_the_new_template() -> None:
    d = canary_at_25(replicas=8)
    d.step(1, spec=with_image(d.spec, "web:3"))
    aborted = d.step(0.5, action="abort")
    assert [e.reason for e in aborted.events] == ["CanaryReplaced", "Aborted"]
    assert d.status.abort is not None and d.status.abort.revision == V3
    assert d.status.canary_revision == V3
    assert d.traffic == TrafficPlan(stable_slot="a")
    assert d.replicas("a") == 8
    assert d.peek().actions == []


def test_promote_while_the_stable_is_refilled_is_ignored() -> None:
    d = canary_at_25(replicas=8)
    d.step(1, spec=with_image(d.spec, "web:3"))
    ignored = d.step(0.5, action="promote")
    assert [(e.reason, e.type) for e in ignored.events] == [("ActionIgnored", "Warning")]
    assert V3 in ignored.events[0].message
    assert d.status.canary_revision == V2 and d.status.current_step_index == 1
    d.step(1.5)
    assert d.status.canary_revision == V3 and d.status.current_step_index == 0


def test_new_template_before_the_canary_takes_traffic_replaces_it_at_once() -> None:
    spec = make_spec(STEPS, replicas=4)
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    replaced = d.step(1, spec=with_image(spec, "web:3"))
    assert [e.reason for e in replaced.events] == ["CanaryReplaced"]
    assert d.status.canary_revision == V3 and d.revision_of("b") == V3


# ---------------------------------------------------------------- invalid spec


def _steps(steps: list[dict[str, Any]]) -> Any:
    def change(spec: dict[str, Any]) -> None:
        spec["strategy"]["canary"]["steps"] = steps

    return change


def _selector(spec: dict[str, Any]) -> None:
    spec["selector"] = {"matchLabels": {"app": "api"}}


BREAKS = {
    "weights-go-down": (
        _steps([{"setWeight": 50}, {"pause": {}}, {"setWeight": 20}]),
        "spec.strategy.canary.steps[2].setWeight",
    ),
    "step-with-both-kinds": (
        _steps([{"setWeight": 10}, {"setWeight": 20, "pause": {}}]),
        "spec.strategy.canary.steps[1]",
    ),
    "step-with-neither-kind": (
        _steps([{"setWeight": 10}, {}]),
        "spec.strategy.canary.steps[1]",
    ),
    "bad-duration": (
        _steps([{"setWeight": 10}, {"pause": {"duration": "soon"}}]),
        "spec.strategy.canary.steps[1].pause.duration",
    ),
    "weight-over-100": (
        _steps([{"setWeight": 101}]),
        "spec.strategy.canary.steps[0].setWeight",
    ),
    "selector-does-not-match": (_selector, "spec.selector"),
}


@pytest.mark.parametrize("how", sorted(BREAKS))
def test_invalid_spec_on_a_running_canary_changes_nothing(how: str) -> None:
    change, field = BREAKS[how]
    d = canary_at_25(replicas=4)
    deployments, traffic = dict(d.cluster.slots), d.traffic
    spec = copy.deepcopy(d.spec)
    change(spec)
    invalid = d.step(1, spec=spec)

    assert invalid.actions == []
    assert d.cluster.slots == deployments and d.traffic == traffic
    assert d.condition("InvalidSpec").status == "True"
    assert field in d.condition("InvalidSpec").message
    assert d.status.phase == "Degraded" and field in d.status.message
    assert d.true_conditions() == {"InvalidSpec", "Degraded"}
    assert [(e.reason, e.type) for e in invalid.events] == [("InvalidSpec", "Warning")]
    assert field in invalid.events[0].message
    assert_conditions(d)

    again = d.step(5)  # the same problem: no new event, still nothing done
    assert again.actions == [] and again.events == []
    assert d.status.current_step_index == 1  # the canary is where it was
    assert d.status.canary_weight == 25


def test_invalid_first_spec_deploys_nothing() -> None:
    spec = make_spec(replicas=2)
    spec["selector"] = {"matchLabels": {"app": "other"}}
    d = Driver(spec)
    decision = d.step(0)
    assert decision.actions == []
    assert d.revision_of("a") is None and d.revision_of("b") is None and d.traffic is None
    assert d.true_conditions() == {"InvalidSpec", "Degraded"}
    message = d.condition("InvalidSpec").message
    assert "spec.selector" in message and "app=other vs app=web" in message
    assert_conditions(d)

    d.step(1, spec=make_spec(replicas=2))  # fixed: now it deploys
    assert d.replicas("a") == 2
    assert d.condition("InvalidSpec").status == "False"


def test_conditions_are_always_all_present() -> None:
    spec = make_spec(STEPS, replicas=4, scaleDownDelaySeconds=3)
    d = Driver(spec)
    script: list[tuple[float, str | None, dict[str, Any] | None]] = [
        (0, None, None),
        (2, None, None),
        (1, None, with_image(spec, "web:2")),
        (2, None, None),
        (1, "pause", None),
        (1, "resume", None),
        (1, "abort", None),
        (1, "retry", None),
        (2, "promote-full", None),
        (2, None, None),
        (5, None, None),
        (1, "bogus", None),
    ]
    for seconds, action, new_spec in script:
        d.step(seconds, action=action, spec=new_spec)
        assert_conditions(d)
        true = d.true_conditions()
        assert len(true - {"Completed", "InvalidSpec"}) == 1, true  # exactly one phase
        assert d.condition(d.status.phase or "").status == "True"
