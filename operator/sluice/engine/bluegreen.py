"""Blue-green: the decisions of `spec.strategy.blueGreen`, called by the decider.

A blue-green rollout reuses the canary's state (status.canaryRevision, the two slots,
abort, previous, postPromotionRun) with two stages in `currentStepIndex`:

- 0, preview: the new version is deployed at previewReplicaCount (or replicas) behind the
  preview Service, the active one untouched. Once every preview pod is Ready its
  prePromotionAnalysis runs; then it waits for a promote (autoPromotionEnabled: false),
  for autoPromotionSeconds, or for nothing.
- 1, promoting: the new version is scaled to replicas; when all of them are Ready the
  active Service is switched to it in one write (the stable slot changes), and the
  previous version stays warm for scaleDownDelaySeconds and its post-promotion analysis.

A promote action moves 0 to 1 (the decider's own promote); an abort, a failed analysis or
the progress deadline aborts as a canary does: the active Service never moved, the
preview Service goes back to the active version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice.api.rollout import RolloutSpec
from sluice.engine.gates import Gate, alert_gate, alert_run_prefix, run_name
from sluice.engine.timefmt import fmt, since
from sluice.engine.types import TrafficPlan

if TYPE_CHECKING:
    from sluice.engine.decide import _Decider

PREVIEW, PROMOTING = 0, 1
STAGES = 1  # the decider's step count: promote moves from PREVIEW to PROMOTING


def describe(spec: RolloutSpec, index: int) -> str:
    bg = spec.strategy.blue_green
    assert bg is not None
    if index >= PROMOTING:
        return f"blue-green: scaling to {spec.replicas}, then switching {bg.active_service}"
    size = bg.preview_replica_count or spec.replicas
    behind = f" behind {bg.preview_service}" if bg.preview_service else ""
    return f"blue-green: previewing at {size} pods{behind}"


def advance(d: _Decider) -> None:
    """The running blue-green rollout: size the slots, judge, promote."""
    s, spec, replicas = d.s, d.spec, d.replicas
    bg = spec.strategy.blue_green
    assert bg is not None
    verdict = alert_gate(d.obs.runs, alert_run_prefix(d.inp.name, d.revision, s.attempt))
    if verdict.verdict == "abort":
        _abort(d, verdict)
        return
    index = min(s.current_step_index or 0, PROMOTING)
    want = replicas if index >= PROMOTING else (bg.preview_replica_count or replicas)
    paused = spec.paused or s.user_paused
    _size(d, want)
    ready = d._ready(d.canary_slot, d.revision)
    if ready < want:
        d.waiting_for = f"{want - ready} more Ready pods of {d.revision}"
        d._wait_for_canary(want, ready, paused, index)
        return
    if index == PREVIEW:
        if not _judged(d) or paused:
            return
        if not _promotion_due(d):
            return
        s.current_step_index = index = PROMOTING
        s.pause_start_time = None
        s.step_start_time = fmt(d.now)
        d._event("StepReached", describe(spec, PROMOTING))
        want = replicas
        _size(d, want)
        if ready < want:
            d.waiting_for = f"{want - ready} more Ready pods of {d.revision}"
            d._wait_for_canary(want, ready, paused, index)
            return
    if paused:
        return
    if d.obs.traffic.problem is not None:
        return  # the Services cannot be written: the switch waits (Paused, named)
    d._promote()  # the stable slot changes: the active Service is switched in one write
    d._steady()


def _size(d: _Decider, want: int) -> None:
    d.targets[d.canary_slot] = (want, True)
    d.targets[d.stable_slot] = (d.replicas, False)  # the active version stays at full size
    d.wanted_plan = TrafficPlan(stable_slot=d.stable_slot, canary_slot=d.canary_slot)


def _abort(d: _Decider, verdict: Gate) -> None:
    d._abort(verdict.reason, verdict.message)
    d._aborted()


def _judged(d: _Decider) -> bool:
    """The pre-promotion analysis allows the switch (True), or holds or aborts it."""
    s, bg = d.s, d.spec.strategy.blue_green
    assert bg is not None
    if bg.pre_promotion_analysis is None:
        return True
    name = run_name(d.inp.name, d.revision, s.attempt, "prePromotion")
    verdict = d._run_gate(name, "prePromotion")
    if verdict.verdict == "abort":
        _abort(d, verdict)
        return False
    if verdict.verdict == "pause":
        d.held = verdict
        return False
    if verdict.verdict == "wait":
        d.waiting_for = f"pre-promotion analysis {name}"
        return False
    return True


def _promotion_due(d: _Decider) -> bool:
    """autoPromotionEnabled: false holds for a human; autoPromotionSeconds for a while."""
    s, bg = d.s, d.spec.strategy.blue_green
    assert bg is not None
    if bg.auto_promotion_enabled and bg.auto_promotion_seconds is None:
        return True
    if not s.pause_start_time:
        s.pause_start_time = fmt(d.now)
    if not bg.auto_promotion_enabled:
        d.held = Gate(
            "pause",
            "PausedForPromotion",
            f"{d.revision} is Ready behind the preview; promote to switch {bg.active_service}",
        )
        return False
    left = (bg.auto_promotion_seconds or 0) - since(s.pause_start_time, d.now)
    if left > 0:
        d._due_in(left)
        d.waiting_for = f"autoPromotionSeconds ({left:.0f}s left)"
        return False
    return True


def check(spec: RolloutSpec, name: str | None) -> list[str]:
    """What the schema cannot say about a blue-green spec; each message names the field."""
    bg = spec.strategy.blue_green
    if bg is None:
        return []
    where = "spec.strategy.blueGreen"
    problems = []
    if "canary" in spec.strategy.model_fields_set:
        problems.append("spec.strategy: canary and blueGreen are exclusive; set one of them")
    if bg.preview_service is not None and bg.preview_service == bg.active_service:
        problems.append(f"{where}.previewService: must differ from activeService")
    if not bg.auto_promotion_enabled and bg.auto_promotion_seconds is not None:
        problems.append(
            f"{where}.autoPromotionSeconds: has no effect with autoPromotionEnabled: false "
            "(the rollout waits for a promote); remove one of them"
        )
    if name is not None:
        owned = {f"{name}-stable", f"{name}-canary"}
        for field, service in (
            ("activeService", bg.active_service),
            ("previewService", bg.preview_service),
        ):
            if service in owned:
                problems.append(
                    f"{where}.{field}: {service} is a Service Sluice makes for this Rollout; "
                    "name your own Service"
                )
    return problems
