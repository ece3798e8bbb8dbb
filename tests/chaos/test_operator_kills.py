"""SIGKILL the operator at random (seeded) moments while concurrent Rollouts progress.

M Rollouts in one namespace (replica mode, an Istio VirtualService and a Gateway API
HTTPRoute; timed and untimed pauses; promote, promote-full and abort set by annotation; a
background analysis on a real Prometheus that passes, or fails and aborts) run round after
round (a new image each round) while the operator is killed N times and restarted right
away; it must resume from `.status` and the children. From the watch history: every round
ends in the phase (and abort reason) its scenario dictates, no step is repeated or
skipped, traffic never reaches a slot without a Ready pod, Ready capacity never drops
below `replicas` (except right after an abort), every action is applied exactly once, no
AnalysisRun is orphaned or duplicated.

SLUICE_CHAOS_KILLS (N, default 20), SLUICE_CHAOS_ROLLOUTS (M, default 6),
SLUICE_CHAOS_SEED (default 1) make a longer run.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.chaos.analysis_bench import AnalysisBench
from tests.chaos.conftest import env_int, lost_events, run_with_kills, violations
from tests.chaos.fleet import SCENARIOS, Fleet, mix
from tests.chaos.recording import ChaosRecorder
from tests.e2e.conftest import Cluster, Operator

pytestmark = pytest.mark.e2e


def test_operator_killed_n_times_across_concurrent_rollouts_loses_nothing(
    cluster: Cluster,
    router_crds: str,
    recorder: ChaosRecorder,
    operators: list[Operator],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    kills, size = env_int("SLUICE_CHAOS_KILLS", 20), env_int("SLUICE_CHAOS_ROLLOUTS", 6)
    rng = random.Random(env_int("SLUICE_CHAOS_SEED", 1))
    scenarios = [SCENARIOS[i % len(SCENARIOS)] for i in range(size)]
    print(f"\nscenario mix ({size} Rollouts): {mix(scenarios)}")
    bench = AnalysisBench(tmp_path / "prometheus") if any(s.analysis for s in scenarios) else None
    if bench is not None:
        request.addfinalizer(bench.close)
    fleet = Fleet(cluster, scenarios)
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "operator.log")
    operators.append(op)
    op.start()
    fleet.create(bench.templates() if bench else [])
    fleet.wait_healthy()

    run = run_with_kills(op, fleet, recorder, tmp_path, kills, rng)
    killed, elapsed, settle = run.killed, run.elapsed, run.settle
    assert not run.problems, run.problems
    assert len(killed) == kills

    rounds = sum(m.round for m in fleet.members)
    runs = fleet.analysis_runs()
    # Events are named after the decision and posted before the status write: a kill
    # loses none of them (before that, 14 of 95 action Events were lost in 50 kills).
    bad = violations(fleet, recorder, kills=0)
    print(
        f"\nchaos kills: {kills} SIGKILLs across {size} Rollouts, {rounds} rounds, "
        f"{sum(len(m.applied) for m in fleet.members)} actions, {elapsed:.0f}s, "
        f"{len(bad)} wrong outcomes; Events lost to a kill: {lost_events(fleet)}; "
        f"{len(runs)} AnalysisRuns ({fleet.analysis_aborts_total()} analysis aborts), "
        f"live {settle:.1f}s after the last round"
    )
    assert not recorder.gaps, recorder.gaps
    assert not bad, "\n".join(bad)
    assert lost_events(fleet) == {}
    assert all(m.round >= 1 for m in fleet.members)
    assert op.proc is not None and op.proc.poll() is None, "the operator died by itself"
