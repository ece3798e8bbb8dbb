"""Property-based tests of decide(): random specs, random clusters, random user actions.

Each example builds a valid Rollout (non-decreasing weights), a MemoryCluster whose pods
become Ready after a fixed delay (or never, for broken templates), and then plays a
random sequence of operations: advance the clock, set an action annotation, switch the
template among three, pause or unpause the spec. After every reconcile (which must not
raise) the invariants a user relies on are checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from driver import Driver, make_spec, revision, serving_ready, with_image
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from sluice.api.rollout import ACTIONS, RolloutStatus
from sluice.engine.decide import CONDITION_TYPES, decide
from sluice.engine.types import Decision, Observed, SetTraffic, Slot, other

IMAGES = ("web:1", "web:2", "web:3")
EXEMPT = {"Aborted", "Reverted"}  # the only events allowed to cut Ready capacity

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------- strategies


@st.composite
def step_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid steps: setWeight never goes down; pauses timed (int or string) or untimed."""
    count = draw(st.integers(0, 6))
    weight = 0
    steps: list[dict[str, Any]] = []
    for _ in range(count):
        if draw(st.booleans()):
            weight = draw(st.integers(weight, 100))
            steps.append({"setWeight": weight})
        else:
            duration = draw(
                st.one_of(
                    st.none(),
                    st.integers(0, 90),
                    st.integers(0, 90).map(lambda n: f"{n}s"),
                    st.sampled_from(["1m", "1m30s", "500ms"]),
                )
            )
            steps.append({"pause": {} if duration is None else {"duration": duration}})
    return steps


@dataclass(frozen=True)
class Op:
    advance: float | None  # None: to the next due time (requeue or a pod getting Ready)
    action: str | None
    image: str | None  # new template, or None to leave it
    toggle_paused: bool


ops = st.builds(
    Op,
    advance=st.one_of(
        st.none(),
        st.integers(0, 5).map(float),
        st.integers(0, 700).map(float),
        st.sampled_from([0.5, 1.5]),
    ),
    action=st.one_of(st.none(), st.none(), st.sampled_from(ACTIONS)),
    image=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(IMAGES)),
    toggle_paused=st.integers(0, 9).map(lambda n: n == 0),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Driver, list[Op]]:
    replicas = draw(st.integers(0, 20))
    spec = make_spec(
        draw(step_lists()),
        replicas=replicas,
        scaleDownDelaySeconds=draw(st.sampled_from([0, 5, 30, 120])),
        progressDeadlineSeconds=draw(st.sampled_from([1, 10, 60, 600])),
    )
    broken = draw(st.sets(st.sampled_from(IMAGES[1:]), max_size=2))
    driver = Driver(
        spec,
        # > 0: a pod created now is not Ready now (the idempotence check relies on it)
        ready_delay=draw(st.sampled_from([0.5, 2.0, 15.0, 90.0])),
        broken={revision(image) for image in broken},
    )
    return driver, draw(st.lists(ops, min_size=1, max_size=30))


# ---------------------------------------------------------------- invariants


def _ready_of(observed: Observed, slot: Slot, rev: str) -> int:
    seen = observed.slots[slot]
    return seen.ready if seen.exists and seen.revision == rev else 0


STATE_FIELDS = (
    "phase",
    "current_step_index",
    "canary_weight",
    "stable_revision",
    "canary_revision",
    "stable_slot",
    "previous",
    "abort",
    "pause_start_time",
    "user_paused",
    "step_start_time",
)


def _state(status: RolloutStatus) -> dict[str, Any]:
    return {name: getattr(status, name) for name in STATE_FIELDS}


def check_reconcile(driver: Driver, before: Observed, old_weight: int, d: Decision) -> None:
    st_ = d.status
    replicas = driver.spec["replicas"]
    reasons = {e.reason for e in d.events}

    # Conditions: every type, exactly once.
    assert sorted(c.type for c in st_.conditions) == sorted(CONDITION_TYPES)

    # The weight is a percentage.
    assert 0 <= st_.canary_weight <= 100
    for act in d.actions:
        if isinstance(act, SetTraffic):
            assert 0 <= act.plan.canary_weight <= 100
            assert (act.plan.canary_slot is None) == (act.plan.canary_weight == 0)
            assert act.plan.canary_slot != act.plan.stable_slot

    # The weight never moves toward a canary that is not Ready.
    if st_.canary_weight > old_weight:
        assert st_.canary_revision
        canary_slot = other(st_.stable_slot or "a")
        need = math.ceil(replicas * st_.canary_weight / 100)
        have = _ready_of(before, canary_slot, st_.canary_revision)
        assert have >= need, (
            f"weight {old_weight}->{st_.canary_weight} with {have}/{need} canary pods Ready"
        )
    for act in d.actions:
        if isinstance(act, SetTraffic) and act.plan.canary_slot is not None:
            w = act.plan.canary_weight
            before_w = before.traffic.plan.canary_weight if before.traffic.plan else 0
            if w > before_w:
                # A promotion later in the same moment makes the canary the stable.
                canary_rev = st_.canary_revision or st_.stable_revision
                have = _ready_of(before, act.plan.canary_slot, canary_rev)
                assert have >= math.ceil(replicas * w / 100)

    # Ready capacity behind the traffic never drops below min(R, before), but for an
    # abort or a revert (which move traffic back to the stable at once, by design).
    after = driver.observe()
    if not reasons & EXEMPT:
        had = serving_ready(before, before.traffic.plan)
        has = serving_ready(after, driver.traffic)
        assert has >= min(replicas, had), (
            f"Ready capacity {had} -> {has} (replicas {replicas}); events {sorted(reasons)}; "
            f"actions {d.actions}"
        )

    # Aborted: all traffic on the stable slot, which is asked for R pods.
    if st_.abort is not None:
        assert st_.phase == "Degraded"
        assert driver.traffic is not None
        assert driver.traffic.canary_weight == 0 and driver.traffic.canary_slot is None
        assert driver.traffic.stable_slot == st_.stable_slot
        assert driver.replicas(st_.stable_slot or "a") == replicas
        for act in d.actions:
            if isinstance(act, SetTraffic):
                assert act.plan.canary_weight == 0 and act.plan.canary_slot is None

    # The status' traffic view matches what was applied.
    assert driver.traffic is not None
    assert driver.traffic.canary_weight == (0 if st_.abort else st_.canary_weight)

    # Idempotence: the same moment, the state the actions produced -> nothing more to do.
    again = decide(driver.input(), after, driver.now)
    assert again.actions == [], f"second decide at the same time wants {again.actions}"
    assert again.events == [], f"second decide at the same time posts {again.events}"
    # ... and the same state (counts of pods aside: the actions changed those).
    assert _state(again.status) == _state(st_)


def next_due(driver: Driver) -> float:
    """Seconds until the engine asked to be called again or a pod gets Ready."""
    due = []
    if driver.last is not None and driver.last.requeue_after is not None:
        due.append(driver.last.requeue_after)
    ready_at = driver.cluster.next_ready(driver.t)
    if ready_at is not None:
        due.append(ready_at - driver.t)
    return min(due, default=1.0)


def play(driver: Driver, script: list[Op]) -> None:
    note(f"spec={driver.spec} ready_delay={driver.cluster.ready_delay}")
    note(f"broken={driver.cluster.broken_revisions}")
    driver.step(0)
    for op in script:
        seconds = next_due(driver) if op.advance is None else op.advance
        spec = driver.spec
        if op.image is not None:
            spec = with_image(spec, op.image)
        if op.toggle_paused:
            spec = {**spec, "paused": not spec.get("paused", False)}
        before = driver.cluster.copy().observe(driver.t + seconds)
        old_weight = driver.status.canary_weight
        d = driver.step(seconds, action=op.action, spec=spec)
        note(f"t={driver.t} {op} -> {d.actions} {[e.reason for e in d.events]}")
        check_reconcile(driver, before, old_weight, d)


# ---------------------------------------------------------------- tests


@SETTINGS
@given(scenarios())
def test_invariants_hold_on_every_reconcile(scenario: tuple[Driver, list[Op]]) -> None:
    driver, script = scenario
    play(driver, script)


@SETTINGS
@given(scenarios())
def test_once_the_user_stops_the_rollout_settles(
    scenario: tuple[Driver, list[Op]],
) -> None:
    """Whatever happened before, once the user stops acting and nothing is broken, the
    Rollout ends Healthy on the last template, or Paused / Degraded waiting for a human."""
    driver, script = scenario
    driver.cluster.broken_revisions.clear()
    play(driver, script)
    if driver.spec.get("paused"):
        driver.step(0, spec={**driver.spec, "paused": False})
    for _ in range(40):
        d = driver.step(next_due(driver))
        if (
            d.requeue_after is None
            and not d.actions
            and driver.cluster.next_ready(driver.t) is None
        ):
            break
    else:
        raise AssertionError(f"still busy after 40 reconciles: {driver.status}")
    st_ = driver.status
    if st_.canary_revision:
        # Only a human can move it on: an untimed pause, a user pause, or an abort.
        assert st_.phase in ("Paused", "Degraded"), st_
        assert st_.abort is not None or st_.user_paused or driver.last.requeue_after is None
    else:
        assert st_.phase == "Healthy", st_
        assert st_.stable_revision == revision_of_spec(driver.spec)
        assert driver.replicas(st_.stable_slot or "a") == driver.spec["replicas"]
        assert driver.traffic is not None and driver.traffic.canary_weight == 0


def revision_of_spec(spec: dict[str, Any]) -> str:
    return revision(spec["template"]["spec"]["containers"][0]["image"])
