"""Chaos fixtures: the e2e cluster and operator, a gap-free recorder, the fleet's checks."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chaos.fleet import Fleet, router_of
from tests.chaos.invariants import (
    action_events,
    actions,
    analysis_runs,
    post_promotion,
    step_analyses,
    step_events,
    steps,
    traffic,
)
from tests.chaos.recording import ChaosRecorder
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Cluster, Operator
from tests.e2e.traffic_cases import GATEWAY, ISTIO

# The e2e fixtures and report hook, shared (a conftest cannot be a plugin below the root).
kubeconfig = e2e.kubeconfig
router_crds = e2e.router_crds
cluster = e2e.cluster
pytest_runtest_makereport = e2e.pytest_runtest_makereport


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@pytest.fixture
def recorder(cluster: Cluster) -> Iterator[ChaosRecorder]:
    rec = ChaosRecorder(cluster.kubeconfig, cluster.namespace)
    rec.watch_all([(c.group, c.version, c.plural, c.kind) for c in (ISTIO, GATEWAY)])
    yield rec
    rec.stop()


@pytest.fixture
def operators(
    cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[list[Operator]]:
    """Operators a test starts (each stopped at the end); their logs shown on failure."""
    started: list[Operator] = []
    yield started
    for op in started:
        op.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for op in started[-1:]:
            sys.stderr.write(f"\n--- operator log ({op.log}) ---\n")
            sys.stderr.write(op.log.read_text()[-20000:])


def violations(fleet: Fleet, recorder: ChaosRecorder, kills: int) -> list[str]:
    """Every invariant, for every member of the fleet, from the watch history."""
    history = recorder.history()
    bad = list(fleet.wrong_outcomes())
    for m in fleet.members:
        events = fleet.cluster.events(m.name)
        step_bad, reached = steps(history, m.name)
        bad += step_bad
        bad += step_events(events, reached, kills)
        bad += actions(history, m.name, m.applied)
        bad += action_events(events, m.applied, kills, fleet.analysis_aborts(m))
        router = router_of(m.name, m.scenario)
        bad += traffic(history, m.name, fleet.replicas, router)
        bad += analysis_runs(history, m.name)
        bad += step_analyses(history, m.name)
        bad += post_promotion(history, m.name, router)
        live = fleet.cluster.rollout(m.name)
        if (live["metadata"].get("annotations") or {}).get("sluice.dev/action"):
            bad.append(f"{m.name}: an action annotation was never removed")
    return bad


def lost_events(fleet: Fleet) -> dict[str, int]:
    """Promoted/Aborted Events missing for actions that were applied (status says so): an
    operator killed between its status write and its Event post loses the Event."""
    lost: dict[str, int] = {}
    for m in fleet.members:
        reasons = [e["reason"] for e in fleet.cluster.events(m.name)]
        promoted = sum(a in ("promote", "promote-full") for a in m.applied)
        aborted = m.applied.count("abort") + fleet.analysis_aborts(m)
        for reason, want in (("Promoted", promoted), ("Aborted", aborted)):
            missing = want - reasons.count(reason)
            if missing > 0:
                lost[reason] = lost.get(reason, 0) + missing
    return lost


@dataclass
class KillRun:
    killed: list[float] = field(default_factory=list)  # monotonic time of each SIGKILL
    problems: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    settle: float = 0.0  # the last rounds' runs live this long after the rounds ended


def run_with_kills(
    op: Operator,
    fleet: Fleet,
    recorder: ChaosRecorder,
    tmp_path: Path,
    kills: int,
    rng: random.Random,
) -> KillRun:
    """Drive the fleet round after round while the operator is SIGKILLed `kills` times at
    random moments and restarted right away (it must resume from .status, the children and
    the runs). Each restart waits for /readyz (up to 30 s) after a sleep of at most 4 s; the
    rounds in flight then have 180 s to end."""
    done = threading.Event()
    result = KillRun()

    def killer() -> None:
        try:
            for _ in range(kills):
                time.sleep(rng.uniform(0.5, 4.0))
                op.kill()
                result.killed.append(time.monotonic())
                op.start()
        except BaseException as exc:  # reported by the test thread
            result.problems.append(f"restart failed: {exc}")
        finally:
            done.set()

    started = time.monotonic()
    threading.Thread(target=killer, daemon=True).start()
    try:
        fleet.run(until=done.is_set, timeout=120 + 40 * kills, finish=180)
        result.settle = fleet.runs_settled(timeout=30)  # the last rounds' runs get a verdict
    finally:
        done.wait(timeout=60)
        fleet.close()
        recorder.dump(tmp_path / "history.jsonl")  # for a post-mortem, pass or fail
    result.elapsed = time.monotonic() - started
    return result
