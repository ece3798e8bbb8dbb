"""Analysis as the engine sees it: run names, and what a run's verdict means for the rollout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sluice.engine.types import RunObserved

Verdict = Literal["pass", "wait", "abort", "pause"]
LIVE = ("Pending", "Running", "Holding")  # phases of a run still measuring
KIND_SUFFIX = {"background": "bg", "prePromotion": "pre", "postPromotion": "post"}


@dataclass(frozen=True)
class Gate:
    verdict: Verdict
    reason: str = ""
    message: str = ""
    run: str = ""


WAIT = Gate("wait")
PASS = Gate("pass")


def run_name(rollout: str, revision: str, attempt: int, kind: str, step: int | None = None) -> str:
    """Unique per canary revision and attempt, so a retry never reuses a failed run."""
    suffix = f"step{step}" if kind == "step" else KIND_SUFFIX[kind]
    return f"{rollout}-{revision}-{attempt}-{suffix}"


def gate(name: str, run: RunObserved | None, acknowledged: list[str]) -> Gate:
    """What the run `name` lets the rollout do now."""
    if run is None or run.phase in ("Pending", "Running"):
        return WAIT
    if run.phase == "Successful" or name in acknowledged:
        return PASS
    if run.phase == "Holding":
        return Gate(
            "pause",
            "AnalysisProviderDown",
            f"analysis run {name} is holding: {run.message}",
            name,
        )
    if run.phase == "Failed":
        return Gate("abort", "AnalysisFailed", f"analysis run {name} failed: {run.message}", name)
    if run.phase == "Error":
        what = f"analysis run {name} could not measure: {run.message}"
        if run.on_error == "ignore":
            return PASS
        if run.on_error == "pause":
            return Gate("pause", "AnalysisError", f"{what}; paused (onProviderError: pause)", name)
        return Gate("abort", "AnalysisError", what, name)
    return Gate(
        "pause",
        "AnalysisInconclusive",
        f"analysis run {name} was inconclusive: {run.message}; promote to go on or abort",
        name,
    )


def alert_run_prefix(rollout: str, revision: str, attempt: int) -> str:
    """Alert runs carry the attempt too: a retry is not aborted again by the old alert."""
    return f"{rollout}-{revision}-{attempt}-alert-"


def alert_gate(runs: dict[str, RunObserved], prefix: str) -> Gate:
    """A failed alert run of this revision and attempt aborts it, like a failed metric."""
    for name, run in sorted(runs.items()):
        if run.kind == "alert" and name.startswith(prefix) and run.phase == "Failed":
            return Gate("abort", "AlertFired", f"{run.message} (analysis run {name})", name)
    return PASS
