"""The history checks themselves, on small hand-made histories: each one fires on the
fault it exists for and stays quiet on a clean history (a check that cannot fail is a
defect). No cluster needed."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.chaos.fleet import SCENARIOS, router_of
from tests.chaos.invariants import (
    action_events,
    actions,
    analysis_runs,
    post_promotion,
    step_analyses,
    step_events,
    steps,
    traffic,
)
from tests.e2e.history import Seen

STEPS = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": 2}}]


class History:
    def __init__(self, canary: dict[str, Any] | None = None) -> None:
        self.rv = 0
        self.seen: list[Seen] = []
        self.canary = canary or {"steps": STEPS}

    def add(self, kind: str, name: str, body: dict[str, Any], type_: str = "MODIFIED") -> None:
        self.rv += 1
        body = {**body, "metadata": {"name": name, "generation": 1, **body.get("metadata", {})}}
        self.seen.append(Seen(0.0, self.rv, type_, kind, name, body))

    def rollout(self, **status: Any) -> None:
        spec = {"strategy": {"canary": self.canary}}
        meta = {"uid": "u1"}  # the owner of the runs (OWNER)
        self.add("Rollout", "web", {"metadata": meta, "spec": spec, "status": status})

    def deployment(self, slot: str, replicas: int, ready: int) -> None:
        status = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas}
        status["readyReplicas"] = ready
        self.add(
            "Deployment",
            f"web-{slot}",
            {"spec": {"replicas": replicas, "template": {"v": slot}}, "status": status},
        )

    def root(self, slot: str | None) -> None:
        selector = {"app": "web", **({"sluice.dev/slot": slot} if slot else {})}
        self.add("Service", "web", {"spec": {"selector": selector}})


def canary(h: History, index: int | None, **more: Any) -> None:
    h.rollout(
        phase="Progressing",
        canaryRevision="c2",
        stableRevision="c1",
        currentStepIndex=index,
        **more,
    )


def test_a_clean_step_history_passes_and_counts_the_steps_reached() -> None:
    h = History()
    h.rollout(phase="Healthy", stableRevision="c1")
    for index in (0, 1):
        canary(h, index)
    canary(h, 2, consumedAction="promote")
    canary(h, 3)
    h.rollout(phase="Healthy", stableRevision="c2")
    bad, reached = steps(h.seen, "web")
    assert bad == []
    assert dict(reached) == {1: 1, 3: 1, 4: 1}  # 2 came from the promote, 4 is "promoting"


def test_a_skipped_or_repeated_step_is_named() -> None:
    h = History()
    h.rollout(phase="Healthy", stableRevision="c1")
    canary(h, 0)
    canary(h, 2)  # skipped 1
    canary(h, 1)  # went back
    bad, _ = steps(h.seen, "web")
    assert len(bad) == 2 and "untimed pause 1 passed" in bad[0] and "went back" in bad[1]


def test_steps_that_already_hold_may_pass_in_one_write_but_never_an_untimed_pause() -> None:
    h = History()
    h.rollout(phase="Healthy", stableRevision="c1")
    canary(h, 1)  # setWeight 25 held at once (a killed predecessor had made the pods)
    canary(h, 3, consumedAction="promote")  # promoted past 1, setWeight 50 held at once
    bad, reached = steps(h.seen, "web")
    assert bad == [] and dict(reached) == {1: 1, 3: 1}
    h.rollout(phase="Healthy", stableRevision="c2")
    h.rollout(phase="Progressing", canaryRevision="c3", stableRevision="c2", currentStepIndex=2)
    bad, _ = steps(h.seen, "web")
    assert bad and "past untimed pause 1" in bad[0]


def test_events_beyond_the_status_or_lost_beyond_the_kills_are_named() -> None:
    reached = Counter({1: 1, 3: 1})
    twice = [{"reason": "StepReached", "message": "step 1/4: pause"}] * 2
    assert step_events(twice, reached, kills=5)  # repeated
    assert step_events([], reached, kills=1)  # two lost, one kill
    assert step_events([], reached, kills=2) == []


def test_an_action_consumed_twice_or_never_is_named() -> None:
    h = History()
    canary(h, 1)
    canary(h, 2, consumedAction="promote")
    canary(h, 2)
    assert actions(h.seen, "web", ["promote"]) == []
    assert actions(h.seen, "web", ["promote", "abort"])  # abort never consumed
    canary(h, 3, consumedAction="promote")
    assert actions(h.seen, "web", ["promote"])  # applied twice
    promoted = [{"reason": "Promoted", "message": ""}] * 2
    assert action_events(promoted, ["promote"], kills=0)


def test_traffic_to_an_unready_canary_and_a_capacity_dip_are_named() -> None:
    h = History()
    h.deployment("a", 4, 4)
    h.root("a")
    h.add("Service", "web-stable", {"spec": {"selector": {"sluice.dev/slot": "a"}}})
    h.rollout(phase="Healthy", stableRevision="c1")
    assert traffic(h.seen, "web", 4, None) == []
    canary(h, 0)
    h.deployment("b", 1, 0)
    h.root(None)  # both slots selected while the canary has no Ready pod
    h.deployment("a", 3, 2)  # and the stable shrank before the canary was Ready
    bad = traffic(h.seen, "web", 4, None)
    assert any("no Ready pod" in b for b in bad)
    assert any("capacity" in b for b in bad)


def test_an_abort_may_dip_until_the_stable_is_whole_again() -> None:
    h = History()
    h.deployment("a", 4, 4)
    h.root("a")
    h.rollout(phase="Healthy", stableRevision="c1")
    canary(h, 0)
    h.deployment("b", 2, 2)
    h.deployment("a", 2, 2)
    h.root(None)
    h.root("a")  # the abort: traffic back to the stable at once, its status comes after
    canary(h, 2, abort={"reason": "UserAbort"})
    h.deployment("a", 4, 4)
    assert traffic(h.seen, "web", 4, None) == []
    h.deployment("a", 4, 3)  # whole again once: a later dip is not excused
    assert traffic(h.seen, "web", 4, None)


GATEWAY = next(s for s in SCENARIOS if s.router == "gateway")


def http_route(h: History, stable: int, canary: int) -> None:
    """The fleet's HTTPRoute (traffic_cases.GATEWAY renamed): Sluice weighs the unnamed rule."""
    refs = [
        {"name": "web-stable", "port": 80, "weight": stable},
        {"name": "web-canary", "port": 80, "weight": canary},
    ]
    rules = [{"name": "admin", "backendRefs": [{"name": "admin"}]}, {"backendRefs": refs}]
    h.add("HTTPRoute", "web", {"spec": {"rules": rules}})


def test_an_http_route_weighing_an_unready_canary_is_named() -> None:
    router = router_of("web", GATEWAY)
    assert router is not None and router.kind == "HTTPRoute"
    h = History()
    h.deployment("a", 4, 4)
    h.add("Service", "web-stable", {"spec": {"selector": {"sluice.dev/slot": "a"}}})
    h.add("Service", "web-canary", {"spec": {"selector": {"sluice.dev/slot": "b"}}})
    http_route(h, 1000, 0)
    h.rollout(phase="Healthy", stableRevision="c1")
    canary(h, 0)
    h.deployment("b", 1, 1)
    http_route(h, 750, 250)  # the canary has its Ready pod first: fine
    assert traffic(h.seen, "web", 4, router) == []
    h.deployment("b", 2, 0)  # its pods replaced by a new template, none Ready yet
    h.seen[-1].body["spec"]["template"] = {"v": "b2"}
    bad = traffic(h.seen, "web", 4, router)
    assert len(bad) == 1 and "traffic to web-b with no Ready pod" in bad[0], bad
    http_route(h, 1000, 0)  # weight back to the stable alone: nothing more to say
    assert len(traffic(h.seen, "web", 4, router)) == 1


OWNER = [{"kind": "Rollout", "name": "web", "uid": "u1"}]


def run(h: History, name: str, phase: str | None, uid: str = "r1", **meta: Any) -> None:
    """An AnalysisRun version: background, of canary c2 at attempt 0 unless named so."""
    revision, attempt = name.split("-")[1:3]
    body = {
        "metadata": {
            "uid": uid,
            "labels": {"sluice.dev/rollout": "web"},
            "ownerReferences": OWNER,
            **meta,
        },
        "spec": {"kind": "background", "revision": revision},
        "status": {"phase": phase} if phase else {},
    }
    assert attempt.isdigit()
    h.add("AnalysisRun", name, body)


def promoted_round(h: History, revision: str = "c2") -> None:
    h.rollout(phase="Progressing", canaryRevision=revision, stableRevision="c1")
    h.rollout(phase="Healthy", stableRevision=revision)


def analysed() -> History:
    h = History()
    h.rollout(phase="Healthy", stableRevision="c1")
    h.seen[-1].body["metadata"]["uid"] = "u1"
    h.rollout(phase="Progressing", canaryRevision="c2", stableRevision="c1")
    run(h, "web-c2-0-bg", None)
    run(h, "web-c2-0-bg", "Running")
    return h


def test_a_clean_analysis_run_history_passes() -> None:
    h = analysed()
    h.rollout(phase="Healthy", stableRevision="c2")  # promoted: the round is over
    run(h, "web-c2-0-bg", "Successful")  # the operator's next write: terminated
    h.rollout(phase="Progressing", canaryRevision="c3", stableRevision="c2")
    run(h, "web-c3-1-bg", "Running", uid="r2")  # the next round's own run
    h.rollout(phase="Healthy", stableRevision="c3")
    run(h, "web-c3-1-bg", "Successful", uid="r2")
    assert analysis_runs(h.seen, "web") == []


def test_a_duplicated_analysis_run_is_named() -> None:
    h = analysed()
    h.add("AnalysisRun", "web-c2-0-bg", h.seen[-1].body, type_="DELETED")
    run(h, "web-c2-0-bg", "Running", uid="r9")  # created again after a kill: a second run
    h.rollout(phase="Healthy", stableRevision="c2")
    run(h, "web-c2-0-bg", "Successful", uid="r9")
    bad = analysis_runs(h.seen, "web")
    assert len(bad) == 1 and "2 AnalysisRuns for ('c2', '0', 'background', None)" in bad[0], bad


def test_an_analysis_run_left_running_after_its_round_is_named() -> None:
    h = analysed()
    h.rollout(phase="Healthy", stableRevision="c2")
    promoted_round(h, "c3")  # a whole round later, the old run still measures
    bad = analysis_runs(h.seen, "web")
    assert any("still Running when the next round ended" in b for b in bad), bad
    run(h, "web-c2-0-bg", "Successful")  # terminated only at the very end: still named
    assert any("still Running when the next round ended" in b for b in analysis_runs(h.seen, "web"))


def test_an_analysis_run_still_live_at_the_end_is_named() -> None:
    h = analysed()
    h.rollout(phase="Degraded", canaryRevision="c2", stableRevision="c1", abort={"reason": "x"})
    bad = analysis_runs(h.seen, "web")
    assert len(bad) == 1 and "still Running at the end" in bad[0], bad
    run(h, "web-c2-0-bg", "Failed")
    assert analysis_runs(h.seen, "web") == []


def test_an_orphaned_or_late_analysis_run_is_named() -> None:
    h = analysed()
    h.rollout(phase="Healthy", stableRevision="c2")
    run(h, "web-c2-0-bg", "Successful")
    other = [{"kind": "Rollout", "name": "web", "uid": "u-gone"}]  # a Rollout of that name before
    run(h, "web-c9-0-bg", "Running", uid="r3", ownerReferences=other)
    bad = analysis_runs(h.seen, "web")
    assert len(bad) == 1 and "orphaned" in bad[0], bad

    late = analysed()
    late.rollout(phase="Healthy", stableRevision="c2")
    run(late, "web-c2-0-bg", "Successful")
    run(late, "web-c2-1-bg", "Successful", uid="r4")  # a retry's run, after the promotion
    bad = analysis_runs(late.seen, "web")
    assert len(bad) == 1 and "its round over at" in bad[0], bad

    gone = analysed()
    gone.rollout(phase="Healthy", stableRevision="c2")
    run(gone, "web-c2-0-bg", "Successful")
    gone.add("Rollout", "web", gone.seen[0].body, type_="DELETED")
    bad = analysis_runs(gone.seen, "web")  # the run outlived its owner
    assert len(bad) == 1 and "outlived Rollout web" in bad[0], bad


def test_an_abort_dip_waits_for_a_scale_down_still_under_way() -> None:
    """The stable scaled 4 -> 3 for the canary and back to 4 by the abort still said 4/4
    Ready; the pod of the 4 -> 3 went only after: whole again is not before that."""
    h = History()
    h.deployment("a", 4, 4)
    h.root("a")
    h.rollout(phase="Healthy", stableRevision="c1")
    canary(h, 0)
    h.deployment("b", 1, 1)
    h.root(None)
    h.add(
        "Deployment", "web-a", {**h.seen[0].body, "spec": {"replicas": 3, "template": {"v": "a"}}}
    )
    h.deployment("a", 4, 4)  # back to 4 before its controller removed a pod
    h.root("a")
    canary(h, 1, abort={"reason": "AnalysisFailed"})
    h.deployment("a", 4, 4)
    h.deployment("a", 4, 3)
    h.seen[-1].body["status"]["replicas"] = 3  # a pod of the scale-down removed at last
    h.deployment("a", 4, 3)  # its replacement made, not Ready yet
    assert traffic(h.seen, "web", 4, None) == []
    h.deployment("a", 4, 4)
    h.deployment("a", 4, 3)  # whole again after the shrink was done: a dip now is named
    assert len(traffic(h.seen, "web", 4, None)) == 1


ANALYSED = [{"setWeight": 25}, {"analysis": {"templates": []}}, {"setWeight": 50}, {"pause": {}}]


def step_run(h: History, phase: str, uid: str = "s1", revision: str = "c2", **spec: Any) -> None:
    """A step analysis run of step 1, attempt 0."""
    body = {
        "metadata": {"uid": uid, "labels": {"sluice.dev/rollout": "web"}, "ownerReferences": OWNER},
        "spec": {"kind": "step", "step": 1, "revision": revision, **spec},
        "status": {"phase": phase},
    }
    h.add("AnalysisRun", f"web-{revision}-0-step1", body)


def step_analysed() -> History:
    h = History({"steps": ANALYSED})
    h.rollout(phase="Healthy", stableRevision="c1")
    canary(h, 0)
    canary(h, 1)
    step_run(h, "Running")
    return h


def test_a_step_passed_only_after_its_analysis_succeeded_is_clean() -> None:
    h = step_analysed()
    step_run(h, "Successful")
    canary(h, 2)
    canary(h, 3)
    canary(h, 4, consumedAction="promote")
    h.rollout(phase="Healthy", stableRevision="c2")
    assert step_analyses(h.seen, "web") == []
    assert analysis_runs(h.seen, "web") == []


def test_a_step_past_a_failed_stopped_or_missing_step_analysis_is_named() -> None:
    failed = step_analysed()
    step_run(failed, "Failed")
    canary(failed, 2)  # went on after the analysis failed
    bad = step_analyses(failed.seen, "web")
    assert len(bad) == 1 and "past analysis step 1 without its run succeeding" in bad[0], bad

    stopped = step_analysed()
    step_run(stopped, "Successful", terminate=True)  # stopped by the operator: no verdict
    canary(stopped, 2)
    assert step_analyses(stopped.seen, "web")

    other = step_analysed()
    step_run(other, "Successful", uid="s2", revision="c9")  # another canary's run
    canary(other, 2)
    assert step_analyses(other.seen, "web")

    promoted = step_analysed()  # promoted in one write from the analysis step
    promoted.rollout(phase="Healthy", stableRevision="c2")
    assert step_analyses(promoted.seen, "web")

    aborted = step_analysed()
    step_run(aborted, "Failed")
    canary(aborted, 1, abort={"reason": "AnalysisFailed"})
    assert step_analyses(aborted.seen, "web") == []

    by_hand = step_analysed()  # a human's promote passes the step: that is no fault
    canary(by_hand, 2, consumedAction="promote")
    assert step_analyses(by_hand.seen, "web") == []


POST = {"steps": STEPS, "postPromotionAnalysis": {"templates": []}}


def post_run(h: History, phase: str, uid: str = "p1", revision: str = "c2") -> None:
    body = {
        "metadata": {"uid": uid, "labels": {"sluice.dev/rollout": "web"}, "ownerReferences": OWNER},
        "spec": {"kind": "postPromotion", "revision": revision},
        "status": {"phase": phase},
    }
    h.add("AnalysisRun", f"web-{revision}-0-post", body)


def labelled(h: History, slot: str, revision: str) -> None:
    h.deployment(slot, 4, 4)
    h.seen[-1].body["metadata"]["labels"] = {"sluice.dev/revision": revision}


def baked() -> History:
    """c1 stable in slot a, c2 promoted into slot b, its post-promotion run started."""
    h = History(POST)
    labelled(h, "a", "c1")
    labelled(h, "b", "c2")
    h.root("a")
    h.rollout(phase="Healthy", stableRevision="c1", stableSlot="a")
    h.rollout(phase="Progressing", canaryRevision="c2", stableRevision="c1", stableSlot="a")
    h.root("b")
    h.rollout(
        phase="Progressing", stableRevision="c2", stableSlot="b", postPromotionRun="web-c2-0-post"
    )
    post_run(h, "Running")
    return h


def revert(h: History) -> None:
    h.rollout(
        phase="Degraded",
        canaryRevision="c2",
        stableRevision="c1",
        stableSlot="a",
        currentStepIndex=4,
        abort={"reason": "AnalysisFailed"},
    )


def test_a_passed_post_promotion_run_once_per_round_is_clean() -> None:
    h = baked()
    post_run(h, "Successful")
    h.rollout(phase="Healthy", stableRevision="c2", stableSlot="b")
    assert post_promotion(h.seen, "web", None) == []
    assert analysis_runs(h.seen, "web") == []  # started after the promotion: its round's


def test_a_missing_duplicated_early_or_stray_post_promotion_run_is_named() -> None:
    h = baked()
    post_run(h, "Running", uid="p2")  # a second object for the same round
    bad = post_promotion(h.seen, "web", None)
    assert len(bad) == 1 and "2 post-promotion runs for c2" in bad[0], bad

    missing = baked()
    missing.seen = [s for s in missing.seen if s.kind != "AnalysisRun"]
    assert "0 post-promotion runs for c2" in post_promotion(missing.seen, "web", None)[0]

    early = History(POST)
    early.rollout(phase="Healthy", stableRevision="c1", stableSlot="a")
    canary(early, 2, stableSlot="a")
    post_run(early, "Running")  # while the canary was still at step 2
    assert post_promotion(early.seen, "web", None) == [
        "Rollout web: post-promotion run of c2, never promoted"
    ]
    canary(early, 4, stableSlot="a")
    early.rollout(phase="Progressing", stableRevision="c2", stableSlot="b", postPromotionRun="x")
    bad = post_promotion(early.seen, "web", None)
    assert len(bad) == 1 and "before the status" in bad[0], bad

    decided = History(POST)  # the decision that promotes creates the run, then writes
    decided.rollout(phase="Healthy", stableRevision="c1", stableSlot="a")
    canary(decided, 4, stableSlot="a")
    post_run(decided, "Running")
    decided.rollout(phase="Progressing", stableRevision="c2", stableSlot="b", postPromotionRun="x")
    assert post_promotion(decided.seen, "web", None) == []

    late = baked()
    post_run(late, "Successful")
    late.rollout(phase="Healthy", stableRevision="c2", stableSlot="b")
    post_run(late, "Running", uid="p3")  # after its analysis ended
    bad = analysis_runs(late.seen, "web")
    assert any("its round over at" in b for b in bad), bad


def test_a_failed_post_promotion_run_must_switch_back_to_the_previous_version() -> None:
    h = baked()
    post_run(h, "Failed")
    revert(h)
    h.root("a")  # traffic back on c1's slot
    assert post_promotion(h.seen, "web", None) == []
    assert steps(h.seen, "web")[0] == []  # the revert is no new canary past its pause
    assert analysis_runs(h.seen, "web") == []

    stuck = baked()
    post_run(stuck, "Failed")
    revert(stuck)  # the status says reverted, the Service still selects c2's slot
    bad = post_promotion(stuck.seen, "web", None)
    assert len(bad) == 1 and "never back on previous c1 (slot a)" in bad[0], bad

    relabelled = baked()
    post_run(relabelled, "Failed")
    revert(relabelled)
    relabelled.root("a")
    labelled(relabelled, "a", "c2")  # slot a's Deployment no longer the previous version
    bad = post_promotion(relabelled.seen, "web", None)
    assert len(bad) == 1 and "traffic left previous c1" in bad[0], bad

    flapped = baked()
    post_run(flapped, "Failed")
    revert(flapped)
    flapped.root("a")
    flapped.root("b")  # back to the failed version before any next canary
    bad = post_promotion(flapped.seen, "web", None)
    assert len(bad) == 1 and "traffic left previous c1" in bad[0], bad
    flapped.rollout(phase="Progressing", canaryRevision="c3", stableRevision="c1")
    assert len(post_promotion(flapped.seen, "web", None)) == 1


def at_once() -> History:
    """c2 at its last step, its post-promotion run created and failed before any status
    write said promoted."""
    h = History(POST)
    labelled(h, "a", "c1")
    labelled(h, "b", "c2")
    h.root("a")
    h.rollout(phase="Healthy", stableRevision="c1", stableSlot="a")
    canary(h, 4, stableSlot="a")
    post_run(h, "Running")
    post_run(h, "Failed")
    return h


def test_a_promotion_reverted_in_the_same_write_still_switches_back() -> None:
    """Seen in the kill run: the run failed before the promoting status write (or a killed
    operator's successor decided again), so the status went from the last step to the
    revert in one write."""
    h = at_once()
    revert(h)
    h.root("a")
    assert post_promotion(h.seen, "web", None) == []
    assert analysis_runs(h.seen, "web") == []  # its round ends with the revert

    flapped = at_once()
    revert(flapped)
    flapped.root(None)  # back on c1 (it never left), then on both slots
    bad = post_promotion(flapped.seen, "web", None)
    assert len(bad) == 1 and "traffic left previous c1" in bad[0], bad

    stuck = at_once()
    stuck.root("b")  # the new version took the traffic instead
    revert(stuck)
    bad = post_promotion(stuck.seen, "web", None)
    assert len(bad) == 1 and "never back on previous c1" in bad[0], bad

    aborted = History(POST)  # aborted at an earlier step: no post-promotion run at all
    aborted.rollout(phase="Healthy", stableRevision="c1", stableSlot="a")
    canary(aborted, 2, stableSlot="a")
    post_run(aborted, "Running")
    canary(aborted, 2, stableSlot="a", abort={"reason": "UserAbort"})
    assert post_promotion(aborted.seen, "web", None) == [
        "Rollout web: post-promotion run of c2, never promoted"
    ]


def test_the_switch_back_to_a_smaller_warm_previous_may_dip_only_off_the_baked_slot() -> None:
    """The previous version kept the pods it ran (2 at the last step's 50 %): traffic goes
    back to it at once, before the status says reverted; it then refills, like an abort."""
    h = baked()
    h.deployment("a", 4, 2)
    h.seen[-1].body["metadata"]["labels"] = {"sluice.dev/revision": "c1"}
    post_run(h, "Failed")
    h.root("a")  # 2 Ready behind the traffic: the abort's dip
    revert(h)
    labelled(h, "a", "c1")  # whole again
    assert traffic(h.seen, "web", 4, None) == []
    assert post_promotion(h.seen, "web", None) == []

    own = baked()
    own.deployment("b", 4, 2)  # the baked version itself lost pods while it served
    post_run(own, "Failed")
    own.root("a")
    revert(own)
    bad = traffic(own.seen, "web", 4, None)
    assert len(bad) == 1 and "Ready capacity 2 < 4 (slots ['b'])" in bad[0], bad
