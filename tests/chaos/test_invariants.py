"""The history checks themselves, on small hand-made histories: each one fires on the
fault it exists for and stays quiet on a clean history (a check that cannot fail is a
defect). No cluster needed."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.chaos.invariants import action_events, actions, step_events, steps, traffic
from tests.e2e.history import Seen

STEPS = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": 2}}]


class History:
    def __init__(self) -> None:
        self.rv = 0
        self.seen: list[Seen] = []

    def add(self, kind: str, name: str, body: dict[str, Any]) -> None:
        self.rv += 1
        body = {**body, "metadata": {"name": name, "generation": 1, **body.get("metadata", {})}}
        self.seen.append(Seen(0.0, self.rv, "MODIFIED", kind, name, body))

    def rollout(self, **status: Any) -> None:
        spec = {"strategy": {"canary": {"steps": STEPS}}}
        self.add("Rollout", "web", {"spec": spec, "status": status})

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
