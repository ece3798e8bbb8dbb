"""Operator metrics: Event-based durations, per-metric analysis series and their cleanup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest

from sluice import telemetry as M
from sluice.api.analysis import AnalysisRunStatus
from sluice.engine.types import EventNote

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
BODY = {"metadata": {"namespace": "tele", "name": "web"}}


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return M.REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_durations_aborts_and_time_to_detect() -> None:
    count = sample("sluice_rollout_duration_seconds_count", {"result": "aborted"})
    total = sample("sluice_rollout_duration_seconds_sum", {"result": "aborted"})
    detect = sample("sluice_time_to_detect_seconds_sum")
    aborts = sample("sluice_aborts_total", {"cause": "AnalysisFailed"})
    run = {
        "status": {
            "phase": "Failed",
            "finishedAt": "2026-12-01T10:01:30Z",
            "metricResults": [
                {
                    "name": "error-rate",
                    "phase": "Failed",
                    "measurements": [
                        {"phase": "Failed", "startedAt": "2026-12-01T10:01:00Z"},
                        {"phase": "Successful", "startedAt": "2026-12-01T10:01:10Z"},
                        {"phase": "Failed", "startedAt": "2026-12-01T10:01:20Z"},
                        {"phase": "Failed", "startedAt": "2026-12-01T10:01:25Z"},
                    ],
                }
            ],
        }
    }
    M.on_event(BODY, EventNote("RolloutStarted", "canary"), T0, [])
    M.on_event(BODY, EventNote("StepReached", "step 1"), T0 + timedelta(seconds=10), [])
    aborted = EventNote("Aborted", "AnalysisFailed: error-rate 0.08; traffic back to stable")
    M.on_event(BODY, aborted, T0 + timedelta(seconds=90), [run])
    assert sample("sluice_rollout_duration_seconds_count", {"result": "aborted"}) == count + 1
    assert sample("sluice_rollout_duration_seconds_sum", {"result": "aborted"}) == total + 90
    # from the first of the failures in a row (10:01:20), not the earlier lone one
    assert sample("sluice_time_to_detect_seconds_sum") == detect + 10
    assert sample("sluice_aborts_total", {"cause": "AnalysisFailed"}) == aborts + 1
    reverts = sample("sluice_time_to_revert_seconds_count")
    M.set_rollout("tele", "web", "Degraded", 0, 1)
    assert sample("sluice_time_to_revert_seconds_count") == reverts + 1


def test_analysis_series_per_metric_go_with_the_rollout() -> None:
    status = AnalysisRunStatus.model_validate(
        {
            "phase": "Running",
            "metricResults": [
                {
                    "name": "p99",
                    "phase": "Running",
                    "measurements": [{"phase": "Successful", "value": "0.21", "startedAt": "x"}],
                }
            ],
        }
    )
    M.record_analysis("tele", "api", status, [("p99", object())])
    labels = {"namespace": "tele", "rollout": "api", "metric": "p99"}
    assert sample("sluice_analysis_metric_value", labels) == 0.21
    assert sample("sluice_analysis_metric_phase", {**labels, "phase": "Running"}) == 1
    assert sample("sluice_analysis_metric_phase", {**labels, "phase": "Failed"}) == 0
    M.count_event("tele", "api", "StepReached", "Normal")
    M.set_rollout("tele", "api", "Progressing", 20, 0)
    M.forget_rollout("tele", "api")
    assert 'rollout="api"' not in generate_latest(M.REGISTRY).decode()


def series(family_name: str, **labels: str) -> dict[tuple[str, ...], float]:
    """The samples of one family whose labels include `labels`, by their other labels."""
    family = next(f for f in M.REGISTRY.collect() if f.name == family_name)
    return {
        tuple(v for k, v in sorted(s.labels.items()) if k not in labels): s.value
        for s in family.samples
        if labels.items() <= s.labels.items()
    }


def test_a_rollout_has_one_phase_series_its_current_phase() -> None:
    M.set_rollout("tele", "ph", "Progressing", 20, 0)
    assert series("sluice_rollout_phase", namespace="tele", rollout="ph") == {("Progressing",): 1}
    M.set_rollout("tele", "ph", "Progressing", 50, 1)
    M.set_rollout("tele", "ph", "Healthy", 0, None)  # the old phase's series goes
    assert series("sluice_rollout_phase", namespace="tele", rollout="ph") == {("Healthy",): 1}
    M.set_rollout("tele", "other", "Healthy", 0, None)
    M.set_rollout("tele", "ph", None, 0, None)  # no phase yet: no series
    assert series("sluice_rollout_phase", namespace="tele", rollout="ph") == {}
    M.set_rollout("tele", "ph", "Degraded", 0, 1)
    M.forget_rollout("tele", "ph")
    assert series("sluice_rollout_phase", namespace="tele", rollout="ph") == {}
    assert series("sluice_rollout_phase", namespace="tele", rollout="other") == {("Healthy",): 1}
    M.forget_rollout("tele", "other")


def test_events_are_counted_by_reason_and_type_not_per_rollout() -> None:
    labels = {"reason": "Aborted", "type": "Warning"}
    before = sample("sluice_rollout_events_total", labels)
    M.count_event("tele", "ev1", "Aborted", "Warning")
    M.count_event("tele", "ev2", "Aborted", "Warning")
    M.count_event("tele", "ev2", "StepReached", "Normal")
    assert sample("sluice_rollout_events_total", labels) == before + 2
    family = next(f for f in M.REGISTRY.collect() if f.name == "sluice_rollout_events")
    assert {tuple(sorted(s.labels)) for s in family.samples} == {("reason", "type")}
    M.forget_rollout("tele", "ev2")  # the fleet's count stays
    assert sample("sluice_rollout_events_total", labels) == before + 2


def test_an_analysis_metric_has_one_verdict_series_its_current_one() -> None:
    def status(phase: str) -> AnalysisRunStatus:
        taken = [{"phase": "Successful", "value": "0.5", "startedAt": "x"}]
        result = {"name": "err", "phase": phase, "measurements": taken}
        return AnalysisRunStatus.model_validate({"phase": phase, "metricResults": [result]})

    of = {"namespace": "tele", "rollout": "verdict", "metric": "err"}
    M.record_analysis("tele", "verdict", status("Running"), [("err", object())])
    assert series("sluice_analysis_metric_phase", **of) == {("Running",): 1}
    M.record_analysis("tele", "verdict", status("Running"), [("err", object())])
    M.record_analysis("tele", "verdict", status("Failed"), [("err", object())])
    assert series("sluice_analysis_metric_phase", **of) == {("Failed",): 1}
    M.forget_rollout("tele", "verdict")
    assert series("sluice_analysis_metric_phase", **of) == {}
    assert series("sluice_analysis_metric_value", **of) == {}


def test_build_info_and_process_metrics() -> None:
    text = generate_latest(M.REGISTRY).decode()
    assert 'sluice_build_info{python="' in text and 'version="0.1.0"' in text
    assert "process_cpu_seconds_total" in text and "python_gc_objects_collected_total" in text
