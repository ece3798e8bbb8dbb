"""Property-based tests of blue-green: random specs, user actions, templates, and kills.

A kill is the operator dying in the middle of a reconcile: a prefix of the decision's
actions applied, no status written, the action annotation left in place (the
reconciler applies actions, then posts Events, writes the status, removes the
annotation). After every reconcile, killed or not:

- the active Service (the plan's stable slot) only ever switches, in one SetTraffic,
  to a slot whose every pod (replicas of them) of its revision is Ready;
- after a whole reconcile, an aborted rollout has the active Service on its stable slot,
  asked for R pods.

After the script the operator runs without kills and a human promotes: the rollout
settles, Healthy on the spec's template or Degraded, with the active Service on the
stable slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from driver import Driver, revision, template, with_image
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from sluice.engine.decide import decide
from sluice.engine.types import (
    CreateRun,
    DeleteRun,
    Observed,
    RemoveAction,
    SetTraffic,
    Slot,
    TerminateRun,
)

IMAGES = ("web:1", "web:2", "web:3")
ACTIONS = ("promote", "abort", "retry", "pause", "resume")
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    replicas = draw(st.integers(1, 6))
    auto = draw(st.booleans())
    bg: dict[str, Any] = {
        "activeService": "web-active",
        "previewService": "web-preview",
        "autoPromotionEnabled": auto,
        "scaleDownDelaySeconds": draw(st.sampled_from([0, 5, 30])),
        "abortScaleDownDelaySeconds": draw(st.sampled_from([0, 5])),
    }
    if auto and draw(st.booleans()):
        bg["autoPromotionSeconds"] = draw(st.integers(0, 20))
    if draw(st.booleans()):
        bg["previewReplicaCount"] = draw(st.integers(1, replicas))
    if draw(st.booleans()):
        bg["postPromotionAnalysis"] = {"templates": [{"templateName": "health"}]}
    return {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template("web:1"),
        "progressDeadlineSeconds": draw(st.sampled_from([10, 60, 600])),
        "strategy": {"blueGreen": bg},
    }


@dataclass(frozen=True)
class Op:
    advance: float
    action: str | None
    image: str | None
    kill: int | None  # None: a whole reconcile; n: killed after n actions
    verdict: str | None  # the verdict a running analysis reaches now


ops = st.builds(
    Op,
    advance=st.sampled_from([0.0, 0.5, 1.0, 2.0, 6.0, 30.0, 120.0]),
    action=st.one_of(st.none(), st.none(), st.sampled_from(ACTIONS)),
    image=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(IMAGES)),
    kill=st.one_of(st.none(), st.none(), st.integers(0, 4)),
    verdict=st.one_of(st.none(), st.none(), st.sampled_from(["Successful", "Failed"])),
)


def ready_of(seen: Observed, slot: Slot, rev: str) -> int:
    o = seen.slots[slot]
    return o.ready if o.exists and o.revision == rev else 0


def killed_reconcile(d: Driver, keep: int) -> None:
    """The operator dies after applying `keep` actions: no status, annotation kept."""
    decision = decide(d.input(), d.observe(), d.now)
    done = [a for a in decision.actions if not isinstance(a, RemoveAction)][:keep]
    runs = [a for a in done if isinstance(a, CreateRun | TerminateRun | DeleteRun)]
    d.cluster.apply([a for a in done if a not in runs], d.t)
    d._apply_runs(runs)


def check_switch(
    d: Driver, active_before: Slot | None, replicas: int, complete: bool = True
) -> None:
    traffic = d.traffic
    assert traffic is not None
    if active_before is not None and traffic.stable_slot != active_before:
        slot = traffic.stable_slot
        seen = d.observe()
        rev = seen.slots[slot].revision
        assert ready_of(seen, slot, rev) >= replicas, (
            f"active switched to {slot} ({rev}) with {ready_of(seen, slot, rev)}/{replicas} Ready"
        )
    if d.last is not None:
        writes = [a for a in d.last.actions if isinstance(a, SetTraffic)]
        slots = [a.plan.stable_slot for a in writes]
        assert len(set(slots)) <= 1, f"the active Service moved twice in one decision: {slots}"
    if complete and d.status.abort is not None:
        # (A killed reconcile may have switched without writing the status that says so.)
        assert traffic.stable_slot == d.status.stable_slot
        assert d.replicas(traffic.stable_slot) == replicas


def set_verdicts(d: Driver, verdict: str | None) -> None:
    if verdict is None:
        return
    for name in sorted(d.running_runs()):
        d.set_run(name, verdict, "scripted")


@SETTINGS
@given(specs(), st.lists(ops, min_size=1, max_size=25), st.sampled_from([0.5, 2.0, 15.0]))
def test_active_switches_only_to_ready_and_kills_resume(
    spec: dict[str, Any], script: list[Op], ready_delay: float
) -> None:
    d = Driver(spec, ready_delay=ready_delay, broken={revision("web:3")})
    replicas = spec["replicas"]
    note(f"spec={spec} ready_delay={ready_delay}")
    d.step(0)
    for op in script:
        before = d.traffic.stable_slot if d.traffic else None
        spec_now = with_image(d.spec, op.image) if op.image else d.spec
        set_verdicts(d, op.verdict)
        if op.kill is None:
            d.step(op.advance, action=op.action, spec=spec_now)
        else:
            d.t += op.advance
            if spec_now != d.spec:
                d.generation += 1
                d.spec = spec_now
            d.annotation = op.action or d.annotation
            d.last = None
            killed_reconcile(d, op.kill)
        note(f"t={d.t} {op} -> {d.status.phase} {d.status.message} {d.traffic}")
        check_switch(d, before, replicas, complete=op.kill is None)

    # Resume: no more kills; a human promotes, analyses pass, time goes on.
    for _ in range(12):
        before = d.traffic.stable_slot if d.traffic else None
        set_verdicts(d, "Successful")
        d.step(60, action="promote" if d.status.phase == "Paused" else None)
        check_switch(d, before, replicas)
    if d.status.user_paused:
        d.step(1, action="resume")
        for _ in range(6):
            set_verdicts(d, "Successful")
            d.step(60, action="promote" if d.status.phase == "Paused" else None)
    st_ = d.status
    note(f"final {st_.phase} {st_.message}")
    assert st_.phase in ("Healthy", "Degraded"), st_.message
    assert d.traffic is not None and d.traffic.stable_slot == st_.stable_slot
    if st_.phase == "Healthy":
        assert st_.stable_revision == revision(d.spec["template"]["spec"]["containers"][0]["image"])
        assert not st_.canary_revision
        assert d.ready(d.traffic.stable_slot) >= replicas
