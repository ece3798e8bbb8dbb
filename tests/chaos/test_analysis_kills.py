"""SIGKILL the operator while Rollouts wait on step analyses and post-promotion analyses.

M Rollouts cycle through fleet.ANALYSIS_SCENARIOS: a step analysis that passes (then a
promote) or fails (aborted, AnalysisFailed), a postPromotionAnalysis that passes
(Healthy) or fails (switched back to the previous version: Degraded, AnalysisFailed);
finite runs (1 s apart, a few seconds each) on a real Prometheus. The operator is killed N
times at random (seeded) moments and restarted at once. From the watch history, beside
the kill test's invariants: no step after a step analysis is reached unless that run
succeeded; one post-promotion run per promotion, none before it; a failed one puts the
traffic back on the previous version, which keeps it; no AnalysisRun orphaned or
duplicated.

SLUICE_CHAOS_ANALYSIS_KILLS (N, default 10), SLUICE_CHAOS_ANALYSIS_ROLLOUTS (M, default
4), SLUICE_CHAOS_SEED (default 1).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.analysis_bench import AnalysisBench
from tests.chaos.conftest import env_int, lost_events, run_with_kills, violations
from tests.chaos.fleet import ANALYSIS_SCENARIOS, Fleet, mix
from tests.chaos.invariants import LIVE_RUN
from tests.chaos.recording import ChaosRecorder
from tests.e2e.conftest import Cluster, Operator
from tests.e2e.history import Seen

pytestmark = pytest.mark.e2e


def kills_while_measuring(history: list[Seen], killed: list[float]) -> int:
    """Kills that landed while some AnalysisRun was still measuring (what this test is for),
    by the times the watch saw each version."""
    hits = 0
    for at in killed:
        phases: dict[str, str | None] = {}
        for seen in history:
            if seen.kind == "AnalysisRun" and seen.at <= at:
                phase = (seen.body.get("status") or {}).get("phase") or "Pending"
                phases[str(seen.body["metadata"].get("uid"))] = (
                    None if seen.type == "DELETED" else phase
                )
        hits += any(p in LIVE_RUN for p in phases.values())
    return hits


def test_operator_killed_across_step_and_post_promotion_analyses_loses_nothing(
    cluster: Cluster,
    router_crds: str,
    recorder: ChaosRecorder,
    operators: list[Operator],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    kills = env_int("SLUICE_CHAOS_ANALYSIS_KILLS", 10)
    size = env_int("SLUICE_CHAOS_ANALYSIS_ROLLOUTS", 4)
    rng = random.Random(env_int("SLUICE_CHAOS_SEED", 1))
    scenarios = [ANALYSIS_SCENARIOS[i % len(ANALYSIS_SCENARIOS)] for i in range(size)]
    print(f"\nscenario mix ({size} Rollouts): {mix(scenarios)}")
    bench = AnalysisBench(tmp_path / "prometheus")
    request.addfinalizer(bench.close)
    fleet = Fleet(cluster, scenarios)
    op = Operator(cluster.kubeconfig, cluster.namespace, tmp_path / "operator.log")
    operators.append(op)
    op.start()
    fleet.create(bench.templates())
    fleet.wait_healthy()

    run = run_with_kills(op, fleet, recorder, tmp_path, kills, rng)
    killed, elapsed, settle = run.killed, run.elapsed, run.settle
    assert not run.problems, run.problems
    assert len(killed) == kills

    rounds = sum(m.round for m in fleet.members)
    runs = fleet.analysis_runs()
    kinds = Counter(str((r.get("spec") or {}).get("kind")) for r in runs)
    verdicts = Counter(
        f"{(r.get('spec') or {}).get('kind')} {(r.get('status') or {}).get('phase')}" for r in runs
    )
    bad = violations(fleet, recorder, kills=0)
    print(
        f"\nchaos analysis kills: {kills} SIGKILLs across {size} Rollouts, {rounds} rounds, "
        f"{sum(len(m.applied) for m in fleet.members)} actions, {elapsed:.0f}s, "
        f"{len(bad)} wrong outcomes; Events lost to a kill: {lost_events(fleet)}; "
        f"{len(runs)} AnalysisRuns ({dict(sorted(kinds.items()))}; "
        f"{dict(sorted(verdicts.items()))}), {fleet.analysis_aborts_total()} analysis aborts, "
        f"live {settle:.1f}s after the last round; "
        f"{kills_while_measuring(recorder.history(), killed)} kills while a run measured"
    )
    assert not recorder.gaps, recorder.gaps
    assert not bad, "\n".join(bad)
    assert lost_events(fleet) == {}
    assert all(m.round >= 1 for m in fleet.members)
    # Each kind of run measured and reached its verdict at least once.
    assert kinds["step"] >= 1 and kinds["postPromotion"] >= 1, kinds
    assert op.proc is not None and op.proc.poll() is None, "the operator died by itself"
