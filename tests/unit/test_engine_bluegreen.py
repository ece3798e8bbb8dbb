"""The blue-green state machine through decide(), on the simulated cluster of driver.py.

What a user sees: which slot the active Service selects (the plan's stable slot), which
the preview one selects (its canary slot, else the stable), the Deployments' sizes, the
status and the Events.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from driver import Driver, revision, template, with_image, workload_actions

from sluice.engine.types import SetTraffic, TrafficPlan
from sluice.engine.validate import InvalidSpec, parse_spec

R = 4


def bg_spec(replicas: int = R, image: str = "web:1", **blue_green: Any) -> dict[str, Any]:
    extra = {k: blue_green.pop(k) for k in ("progressDeadlineSeconds",) if k in blue_green}
    return {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template(image),
        "strategy": {
            "blueGreen": {
                "activeService": "web-active",
                "previewService": "web-preview",
                **blue_green,
            }
        },
        **extra,
    }


def healthy(spec: dict[str, Any]) -> Driver:
    d = Driver(spec)
    d.step(0)
    d.step(3)
    d.settle()
    assert d.status.phase == "Healthy"
    return d


def active(d: Driver) -> str:
    assert d.traffic is not None
    return d.traffic.stable_slot


def preview(d: Driver) -> str:
    assert d.traffic is not None
    return d.traffic.canary_slot or d.traffic.stable_slot


def test_first_revision_is_active_directly() -> None:
    d = healthy(bg_spec())
    assert active(d) == "a" and preview(d) == "a"
    assert d.replicas("a") == R and d.revision_of("b") is None


def test_manual_promotion_waits_then_switches_once_when_all_ready() -> None:
    spec = bg_spec(autoPromotionEnabled=False, scaleDownDelaySeconds=30)
    d = healthy(spec)
    d.step(1, spec=with_image(spec, "web:2"))
    assert "RolloutStarted" in d.reasons()
    assert d.replicas("b") == R, "the new version comes up at full size"
    assert active(d) == "a" and preview(d) == "b"
    assert d.status.phase == "Progressing"
    d.run(5)
    assert d.status.phase == "Paused"
    assert d.condition("Paused").reason == "PausedForPromotion"
    d.run(600)
    assert active(d) == "a", "autoPromotionEnabled: false waits for a human"
    d.step(1, action="promote")
    switches = [a for a in d.last.actions if isinstance(a, SetTraffic)] if d.last else []
    assert [a.plan.stable_slot for a in switches] == ["b"], "one switch"
    assert active(d) == "b" and preview(d) == "b"
    assert d.status.stable_revision == revision("web:2") and not d.status.canary_revision
    assert d.status.phase == "Healthy" and {"Promoted", "Completed"} <= set(d.reasons())
    assert d.replicas("a") == R, "the previous version stays warm"
    d.run(31)
    assert d.replicas("a") == 0 and "ScaledDown" in d.reasons()


def test_auto_promotion_switches_as_soon_as_all_are_ready() -> None:
    spec = bg_spec()
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    assert active(d) == "a"
    d.step(1)
    assert active(d) == "a", "not Ready yet: the active Service does not move"
    d.step(1.5)
    assert active(d) == "b" and d.status.phase == "Healthy"


def test_auto_promotion_seconds_hold_after_ready() -> None:
    spec = bg_spec(autoPromotionSeconds=10)
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    d.step(3)  # all Ready: the 10 s start
    assert active(d) == "a" and d.last is not None and d.last.requeue_after == pytest.approx(10)
    d.step(9)
    assert active(d) == "a"
    d.step(1)
    assert active(d) == "b"


def test_preview_replica_count_is_scaled_up_and_ready_before_the_switch() -> None:
    spec = bg_spec(previewReplicaCount=1, autoPromotionEnabled=False)
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    assert d.replicas("b") == 1
    d.run(5)
    assert d.status.phase == "Paused" and d.replicas("b") == 1 and active(d) == "a"
    d.step(0, action="promote")
    assert d.replicas("b") == R and active(d) == "a", "scaled up first, not switched"
    assert d.status.current_step_index == 1
    d.step(1)
    assert active(d) == "a"
    d.step(1.5)
    assert active(d) == "b" and d.ready("b") == R


def test_abort_keeps_the_active_service_and_scales_down_after_the_abort_delay() -> None:
    spec = bg_spec(autoPromotionEnabled=False, abortScaleDownDelaySeconds=7)
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    d.run(5)
    d.step(0, action="abort")
    assert d.status.phase == "Degraded" and d.status.abort is not None
    assert d.status.abort.reason == "UserAbort"
    assert active(d) == "a" and preview(d) == "a"
    assert d.replicas("b") == R
    d.run(6)
    assert d.replicas("b") == R
    d.run(2)
    assert d.replicas("b") == 0
    d.step(0, action="retry")
    d.run(5)
    assert d.status.phase == "Paused" and preview(d) == "b" and active(d) == "a"


def test_a_version_never_ready_aborts_at_the_progress_deadline_without_a_switch() -> None:
    spec = bg_spec(progressDeadlineSeconds=30)
    d = healthy(spec)
    d.cluster.broken_revisions.add(revision("web:2"))
    d.step(0, spec=with_image(spec, "web:2"))
    d.run(40)
    assert d.status.abort is not None and d.status.abort.reason == "ProgressDeadlineExceeded"
    assert all(a == "a" for a in [active(d), preview(d)])


def test_pre_promotion_analysis_gates_the_switch() -> None:
    analysis = {"templates": [{"templateName": "smoke"}]}
    spec = bg_spec(prePromotionAnalysis=analysis)
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    assert not d.runs, "no analysis before the preview is Ready"
    d.run(3)
    name = d.run_name("-pre")
    assert active(d) == "a" and "pre-promotion analysis" in d.status.message
    d.set_run(name, "Successful")
    d.step(1)
    assert active(d) == "b"


def test_pre_promotion_failure_aborts_and_inconclusive_pauses() -> None:
    analysis = {"templates": [{"templateName": "smoke"}]}
    spec = bg_spec(prePromotionAnalysis=analysis)
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    d.run(3)
    d.set_run("-pre", "Inconclusive", "no data")
    d.step(1)
    assert d.status.phase == "Paused" and d.condition("Paused").reason == "AnalysisInconclusive"
    d.step(0, action="abort")
    assert d.status.phase == "Degraded" and active(d) == "a"
    d.step(0, action="retry")
    d.run(3)
    d.set_run(f"-{d.status.attempt}-pre", "Failed", "error rate 0.2 > 0.01")
    d.step(1)
    assert d.status.abort is not None and d.status.abort.reason == "AnalysisFailed"
    assert active(d) == "a" and preview(d) == "a"


def test_failed_post_promotion_analysis_switches_back_at_once() -> None:
    analysis = {"templates": [{"templateName": "health"}]}
    spec = bg_spec(postPromotionAnalysis=analysis, scaleDownDelaySeconds=5)
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    d.run(3)
    assert active(d) == "b"
    name = d.run_name("-post")
    d.run(60)
    assert d.replicas("a") == R, "the previous version stays warm while the analysis runs"
    d.set_run(name, "Failed", "error rate 0.3 > 0.01")
    d.step(1)
    assert active(d) == "a" and preview(d) == "a", "switched back in the same decision"
    assert d.status.stable_revision == revision("web:1")
    assert d.status.abort is not None and d.status.phase == "Degraded"


def test_passed_post_promotion_analysis_lets_the_previous_go() -> None:
    analysis = {"templates": [{"templateName": "health"}]}
    spec = bg_spec(postPromotionAnalysis=analysis, scaleDownDelaySeconds=5)
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    d.run(3)
    d.set_run("-post", "Successful")
    d.step(1)
    d.run(6)
    assert d.replicas("a") == 0 and active(d) == "b"


def test_template_set_back_during_preview_reverts_without_a_switch() -> None:
    spec = bg_spec(autoPromotionEnabled=False)
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    d.run(5)
    d.step(0, spec=spec)
    assert "Reverted" in d.reasons() and not d.status.canary_revision
    assert active(d) == "a" and preview(d) == "a"


def test_an_alert_aborts_the_preview() -> None:
    spec = bg_spec(autoPromotionEnabled=False)
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    d.run(5)
    d.add_alert(revision("web:2"))
    d.step(1)
    assert d.status.abort is not None and d.status.abort.reason == "AlertFired"
    assert active(d) == "a"


def test_the_switch_waits_for_a_service_problem() -> None:
    spec = bg_spec()
    d = healthy(spec)
    d.step(0, spec=with_image(spec, "web:2"))
    observe = d.observe

    def broken() -> Any:
        import dataclasses

        seen = observe()
        return dataclasses.replace(
            seen, traffic=dataclasses.replace(seen.traffic, problem="Service web-active gone")
        )

    d.observe = broken  # type: ignore[method-assign]
    d.run(5)
    assert active(d) == "a" and d.status.phase == "Paused"
    assert d.condition("Paused").reason == "TrafficRouterProblem"
    d.observe = observe  # type: ignore[method-assign]
    d.step(1)
    assert active(d) == "b"


# ---------------------------------------------------------------- validation


def test_canary_and_blue_green_together_are_refused() -> None:
    spec = bg_spec()
    spec["strategy"]["canary"] = {"steps": [{"setWeight": 10}]}
    with pytest.raises(InvalidSpec, match="canary and blueGreen are exclusive"):
        parse_spec(spec, "web")


@pytest.mark.parametrize(
    "field", ["antiAffinity", "previewMetadata", "activeMetadata", "maxUnavailable"]
)
def test_argo_blue_green_fields_sluice_does_not_do_are_refused_by_name(field: str) -> None:
    spec = bg_spec(**{field: {"x": "y"}})
    with pytest.raises(InvalidSpec, match=rf"blueGreen\.{field}: not supported by Sluice"):
        parse_spec(spec, "web")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"previewService": "web-active"}, "previewService: must differ"),
        (
            {"autoPromotionEnabled": False, "autoPromotionSeconds": 5},
            "autoPromotionSeconds: has no effect",
        ),
        ({"activeService": "web-stable"}, "activeService: web-stable is a Service Sluice makes"),
        ({"previewService": "web-canary"}, "previewService: web-canary is a Service Sluice"),
    ],
)
def test_blue_green_mistakes_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_spec(bg_spec(**change), "web")


def test_an_invalid_blue_green_spec_touches_nothing() -> None:
    spec = bg_spec()
    d = healthy(spec)
    bad = copy.deepcopy(with_image(spec, "web:2"))
    bad["strategy"]["blueGreen"]["antiAffinity"] = {}
    before = d.traffic
    decision = d.step(1, spec=bad)
    assert workload_actions(decision) == []
    assert d.traffic == before == TrafficPlan(stable_slot="a")
    assert d.replicas("b") == 0 and "InvalidSpec" in d.true_conditions()
