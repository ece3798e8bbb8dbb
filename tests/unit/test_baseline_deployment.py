"""The baseline Deployment of a judge metric: wanted while a canary runs, sized like it,
built from the stable's Deployment outside every Service, removed when the canary goes."""

from __future__ import annotations

from typing import Any

from sluice.api.rollout import AbortInfo, RolloutStatus, SlotStatus
from sluice.cluster import children as C
from sluice.cluster import labels as L
from sluice.cluster.observe import observe
from sluice.engine.baseline import baseline_actions
from sluice.engine.types import Observed, RemoveBaseline, SetBaseline, SlotObserved, TrafficObserved

CANARY = RolloutStatus(
    stable_revision="s1",
    canary_revision="c1",
    stable_slot="a",
    canary=SlotStatus(slot="b", revision="c1", replicas=2),
)
ROLLOUT: dict[str, Any] = {
    "apiVersion": "sluice.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
}


def seen(wanted: bool, baseline: SlotObserved | None = None) -> Observed:
    return Observed(baseline=baseline or SlotObserved(), baseline_wanted=wanted)


def test_created_with_the_canary_at_its_size_and_resized_with_it() -> None:
    assert baseline_actions(CANARY, seen(True)) == [SetBaseline("a", "s1", 2)]
    same = SlotObserved(exists=True, revision="s1", replicas=2)
    assert baseline_actions(CANARY, seen(True, same)) == []
    grown = CANARY.model_copy(update={"canary": SlotStatus(slot="b", revision="c1", replicas=5)})
    assert baseline_actions(grown, seen(True, same)) == [SetBaseline("a", "s1", 5)]


def test_not_made_unless_a_judge_wants_it() -> None:
    assert baseline_actions(CANARY, seen(False)) == []


def test_removed_after_promotion_on_abort_and_when_no_longer_wanted() -> None:
    there = SlotObserved(exists=True, revision="s1", replicas=2)
    promoted = RolloutStatus(stable_revision="c1", stable_slot="b")
    aborted = CANARY.model_copy(
        update={"abort": AbortInfo(reason="AnalysisFailed", time="t", revision="c1")}
    )
    for status, wanted in ((promoted, True), (aborted, True), (CANARY, False)):
        assert baseline_actions(status, seen(wanted, there)) == [RemoveBaseline()]
    assert baseline_actions(promoted, seen(True)) == []  # gone already: nothing to do


def _deployment(name: str, revision: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": {L.REVISION: revision, **annotations}},
        "spec": {"replicas": 2},
        "status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2},
    }


def test_the_canary_deployment_says_whether_a_baseline_is_wanted() -> None:
    kids = {
        "Deployment/web-a": _deployment("web-a", "s1", {}),
        "Deployment/web-b": _deployment("web-b", "c1", {L.BASELINE: "wanted"}),
        "Deployment/web-baseline": _deployment("web-baseline", "s1", {}),
    }
    got = observe("web", kids, TrafficObserved(), revision="c1")
    assert got.baseline_wanted and got.baseline.exists and got.baseline.replicas == 2
    kids["Deployment/web-b"] = _deployment("web-b", "c1", {L.BASELINE: "no"})
    assert not observe("web", kids, TrafficObserved(), revision="c1").baseline_wanted


def test_the_manifest_is_the_stables_template_outside_every_service() -> None:
    labels = {"app": "web", L.ROLLOUT: "web", L.SLOT: "a", L.REVISION: "s1"}
    stable = {
        "spec": {
            "selector": {"matchLabels": {"app": "web", L.ROLLOUT: "web", L.SLOT: "a"}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "w"}]}},
        }
    }
    body = C.baseline_deployment(ROLLOUT, stable, "s1", 3)
    pod = body["spec"]["template"]["metadata"]["labels"]
    assert body["metadata"]["name"] == "web-baseline" and body["spec"]["replicas"] == 3
    assert pod[L.BASELINE] == "true" and pod[L.REVISION] == "s1"
    assert L.SLOT not in pod and L.ROLLOUT not in pod  # what every Service selects by
    assert body["metadata"]["labels"][L.ROLLOUT] == "web"  # the object is the Rollout's
    assert L.SLOT not in body["spec"]["selector"]["matchLabels"]
    assert body["spec"]["selector"]["matchLabels"][L.BASELINE] == "true"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert body["spec"]["template"]["spec"] == stable["spec"]["template"]["spec"]
