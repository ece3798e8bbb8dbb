"""spec.workloadRef: the user's Deployment gives its pods up only as the Rollout's are Ready."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from driver import Driver, make_spec, template

from sluice.engine.types import Decision, Observed, ScaleWorkload, WorkloadObserved
from sluice.engine.validate import InvalidSpec, parse_spec


class AdoptingDriver(Driver):
    """The Driver with the user's Deployment beside it (its replicas, all Ready)."""

    def __init__(self, scale_down: str, replicas: int = 4, **kw: Any) -> None:
        super().__init__(make_spec(replicas=replicas), ready_delay=2.0, **kw)
        self.workload = WorkloadObserved("web", scale_down, replicas, replicas)
        self.capacity: list[int] = []  # Ready pods of the user's Deployment plus the stable's

    def observe(self) -> Observed:
        return dataclasses.replace(super().observe(), workload=self.workload)

    def _reconcile(self, remove_annotation: bool) -> Decision:
        decision = super()._reconcile(remove_annotation)
        for act in decision.actions:
            if isinstance(act, ScaleWorkload):
                assert act.name == "web"
                self.workload = WorkloadObserved("web", self.workload.scale_down, act.replicas, 0)
                self.workload = dataclasses.replace(self.workload, ready=act.replicas)
        stable = self.observe().slots[self.status.stable_slot or "a"]
        self.capacity.append(self.workload.ready + stable.ready)
        return decision


def test_progressively_the_deployment_shrinks_by_the_rollouts_ready_pods() -> None:
    d = AdoptingDriver("progressively")
    sizes = []
    for _ in range(10):
        d.step(1)
        sizes.append(d.workload.replicas)
    assert sizes[0] == 4 and sizes[-1] == 0  # given up only as the stable's pods came up
    assert sizes == sorted(sizes, reverse=True)
    assert min(d.capacity) >= 4, d.capacity  # never below the replicas asked for
    assert d.status.phase == "Healthy"


def test_onsuccess_waits_for_healthy_then_scales_to_zero_at_once() -> None:
    d = AdoptingDriver("onsuccess")
    d.step(0)
    assert d.workload.replicas == 4  # nothing Ready of the Rollout's yet
    for _ in range(10):
        d.step(1)
    assert d.status.phase == "Healthy" and d.workload.replicas == 0
    assert min(d.capacity) >= 4, d.capacity


def test_never_leaves_the_deployment_as_it_is() -> None:
    d = AdoptingDriver("never")
    for _ in range(10):
        d.step(1)
    assert d.status.phase == "Healthy" and d.workload.replicas == 4
    assert not any(isinstance(a, ScaleWorkload) for h in d.history for a in h.actions)


def test_a_deployment_scaled_down_is_never_scaled_up_by_a_later_canary() -> None:
    d = AdoptingDriver("progressively")
    for _ in range(10):
        d.step(1)
    assert d.workload.replicas == 0
    spec = make_spec(replicas=4, image="web:2")
    d.step(1, spec=spec)
    for _ in range(5):
        d.step(1)
    assert d.workload.replicas == 0


def test_the_missing_deployment_is_invalid_and_nothing_is_touched() -> None:
    spec = make_spec()
    spec.pop("template")
    spec["workloadRef"] = {"kind": "Deployment", "name": "web"}
    d = Driver(spec)
    d.rejected["child:workload"] = "spec.workloadRef: Deployment web not found in default"
    decision = d.step(0)
    assert decision.actions == []
    invalid = [c for c in decision.status.conditions if c.type == "InvalidSpec"]
    assert invalid and invalid[0].status == "True" and "not found" in invalid[0].message


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"workloadRef": {"kind": "Deployment", "name": "web"}}, "exactly one of"),
        ({"template": None}, "exactly one of"),
        ({"template": None, "workloadRef": {"kind": "StatefulSet", "name": "web"}}, "kind"),
        (
            {
                "template": None,
                "workloadRef": {"kind": "Deployment", "name": "web", "scaleDown": "x"},
            },
            "scaleDown",
        ),
    ],
)
def test_template_or_workload_ref_exactly_one_and_well_formed(
    change: dict[str, Any], says: str
) -> None:
    spec = make_spec()
    spec.update(change)
    if spec.get("template") is None:
        spec.pop("template")
    with pytest.raises(InvalidSpec, match=says):
        parse_spec(spec)


def test_a_workload_ref_alone_parses_with_argo_defaults() -> None:
    spec = make_spec()
    spec.pop("template")
    spec["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    parsed = parse_spec(spec)
    assert parsed.workload_ref is not None and parsed.workload_ref.scale_down == "never"
    assert parsed.template is None
    with pytest.raises(ValueError, match="workloadRef"):
        parsed.pod_template()
    assert template()  # the driver's template is what a resolved spec carries
