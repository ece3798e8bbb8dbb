"""The models' deep copy (the engine copies the status once per decision): what it shares
cannot change, what can change is its own."""

from __future__ import annotations

import copy

import pytest

from sluice.api.analysis import AnalysisRunStatus
from sluice.api.rollout import RolloutStatus

STATUS = {
    "phase": "Paused",
    "stableRevision": "s1",
    "canaryRevision": "c1",
    "stable": {"slot": "a", "revision": "s1", "replicas": 3},
    "previous": {"slot": "b", "revision": "p0", "scaleDownAt": "2026-01-01T00:00:00Z"},
    "acknowledgedRuns": ["web-c1-1"],
    "conditions": [{"type": "Paused", "status": "True", "reason": "PauseStep"}],
}


def test_a_deep_copy_equals_the_original_and_is_independent() -> None:
    status = RolloutStatus.model_validate(STATUS)
    copied = status.model_copy(deep=True)
    assert copied == status and copied is not status
    assert copied.model_dump() == status.model_dump()
    assert copied.model_fields_set == status.model_fields_set
    copied.acknowledged_runs.append("another")
    copied.conditions.append(copied.conditions[0])
    copied.phase = "Healthy"
    assert status.acknowledged_runs == ["web-c1-1"]
    assert len(status.conditions) == 1
    assert status.phase == "Paused"


def test_frozen_parts_of_plain_values_are_shared_and_cannot_change() -> None:
    status = RolloutStatus.model_validate(STATUS)
    copied = copy.deepcopy(status)
    assert copied.stable is status.stable  # frozen, strings and numbers only
    assert copied.conditions is not status.conditions
    with pytest.raises(Exception, match="frozen"):
        copied.stable.replicas = 9  # type: ignore[misc,union-attr]


def test_nested_mutable_values_are_copied() -> None:
    status = AnalysisRunStatus.model_validate(
        {
            "phase": "Running",
            "metricResults": [
                {
                    "name": "m",
                    "phase": "Running",
                    "measurements": [{"phase": "Successful", "value": "1", "startedAt": "t"}],
                }
            ],
        }
    )
    copied = status.model_copy(deep=True)
    assert copied == status
    assert copied.metric_results is not status.metric_results
    assert copied.metric_results[0].measurements is not status.metric_results[0].measurements
