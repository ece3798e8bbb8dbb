"""Backtest a Rollout's analysis against what Prometheus recorded: `sluice replay`.

Each analysis of the Rollout (background, step, post-promotion) becomes the run the
reconciler would create (`merge`, `manifest`), started at `--from`; the clock then
jumps from one due measurement to the next, and each measurement is taken, judged
and recorded by the executor's own code (`analysis.measure.advance`), asking
Prometheus at that instant. A run's verdict is read as the engine reads it
(`engine.gates.gate`): the first `abort` ends the replay (the rollout would have been
rolled back then); a `pause` is noted and the run starts over, as if a human had
promoted past it; a step analysis that passed starts over too (one interval later),
so that every analysis covers the whole window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sluice.analysis import runstate
from sluice.analysis.measure import advance, measure, run_values
from sluice.api.analysis import AnalysisRunSpec, AnalysisRunStatus, Measurement, Metric
from sluice.api.duration import parse_duration
from sluice.cluster.analysis_runs import manifest
from sluice.cluster.observe import run_observed
from sluice.engine.gates import gate, run_name
from sluice.engine.hashing import template_hash
from sluice.metrics.base import MetricProvider
from sluice.sim.load import Loaded
from sluice.sim.relabel import Relabel
from sluice.sim.run import Taken, taken

RESTART_WITHOUT_INTERVAL = 60.0  # seconds between runs of an analysis without intervals


@dataclass
class Verdict:
    at: datetime
    offset: float  # seconds from --from
    analysis: str  # e.g. spec.strategy.canary.analysis
    run: str
    verdict: str  # abort | pause
    reason: str
    message: str


@dataclass
class ReplayResult:
    start: datetime
    end: datetime
    revision: str
    analyses: list[str]
    measurements: list[tuple[datetime, str, Taken]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def abort(self) -> Verdict | None:
        return next((v for v in self.verdicts if v.verdict == "abort"), None)

    @property
    def exit_code(self) -> int:
        if self.abort is not None:
            return 1
        return 2 if self.verdicts else 0


@dataclass
class _Run:
    where: str
    kind: str
    step: int | None
    spec: AnalysisRunSpec
    attempt: int
    status: AnalysisRunStatus = field(default_factory=AnalysisRunStatus)
    not_before: datetime | None = None  # a restarted run starts here


class Replay:
    def __init__(
        self,
        loaded: Loaded,
        provider: Callable[[Metric], MetricProvider],
        start: datetime,
        end: datetime,
        *,
        relabel: Relabel | None = None,
        only: set[str] | None = None,
        stable_revision: str = "",
        on_measure: Callable[[datetime, str, Taken], None] | None = None,
    ) -> None:
        self.loaded = loaded
        self.provider = provider
        self.start, self.end = start, end
        self.relabel = relabel or Relabel()
        self.revision = template_hash(loaded.spec.pod_template())
        self.stable_revision = stable_revision
        self.on_measure = on_measure
        self.now = start
        self.body = self._rollout_body()
        self.runs: list[_Run] = []
        for kind, step, _, where in loaded.analyses():
            if only and not {kind, where, f"step:{step}"} & only:
                continue
            self.runs.append(_Run(where, kind, step, self._spec(kind, step), 1))
        self.result = ReplayResult(start, end, self.revision, [r.where for r in self.runs])

    def _rollout_body(self) -> dict[str, Any]:
        meta = dict(self.loaded.rollout.get("metadata") or {})
        meta.update(name=self.loaded.name, namespace=self.loaded.namespace, uid="replay")
        status = {
            "stableRevision": self.stable_revision,
            "stableSlot": "a",
            "canaryRevision": self.revision,
            "canary": {"slot": "b", "revision": self.revision},
        }
        return {**self.loaded.rollout, "metadata": meta, "status": status}

    def _spec(self, kind: str, step: int | None) -> AnalysisRunSpec:
        metrics, args, retention = self.loaded.merged(kind, step)
        metrics, args = self.relabel.apply(metrics, args)
        card = self.loaded.judge_score(kind, step)
        body = manifest(
            self.body, "replay", kind, self.revision, step, metrics, args, retention, card
        )
        return AnalysisRunSpec.model_validate(body["spec"])

    def _name(self, run: _Run) -> str:
        return run_name(self.loaded.name, self.revision, run.attempt, run.kind, run.step)

    def clock(self) -> datetime:
        return self.now

    async def _secret(self, namespace: str, name: str, key: str) -> str:
        raise KeyError(f"Secret {namespace}/{name}: replay reads no Secrets; give the value")

    async def _pass(self, run: _Run) -> None:
        spec, name = run.spec, self._name(run)

        async def take(metric: Metric) -> Measurement:
            async def values() -> dict[str, str]:
                return await run_values(spec, self.body, self._secret)

            async def source() -> MetricProvider:
                return self.provider(metric)

            return await measure(metric, values, source, self.clock)

        run.status, done = await advance(spec, run.status, self.clock, take)
        offset = (self.now - self.start).total_seconds()
        for metric, m in done:
            item = taken(offset, name, spec, metric, m, run.status)
            self.result.measurements.append((self.now, run.where, item))
            if self.on_measure is not None:
                self.on_measure(self.now, run.where, item)

    def _judge(self, run: _Run) -> bool:
        """After a verdict: True when the replay ends (an abort)."""
        name = self._name(run)
        body = {
            "spec": {"kind": run.kind, "revision": self.revision, "step": run.step},
            "status": {
                "phase": run.status.phase,
                "message": run.status.message,
                "onError": run.status.on_error,
            },
        }
        verdict = gate(name, run_observed(body), [])
        if verdict.verdict in ("abort", "pause"):
            self.result.verdicts.append(
                Verdict(
                    at=self.now,
                    offset=(self.now - self.start).total_seconds(),
                    analysis=run.where,
                    run=name,
                    verdict=verdict.verdict,
                    reason=verdict.reason,
                    message=verdict.message,
                )
            )
            if verdict.verdict == "abort":
                return True
        # Over (passed, or paused and promoted past): the analysis starts over.
        intervals = [parse_duration(m.interval) for m in run.spec.metrics if m.interval]
        pause = min(intervals) if intervals else RESTART_WITHOUT_INTERVAL
        run.attempt += 1
        run.status = AnalysisRunStatus()
        run.not_before = self.now + timedelta(seconds=pause)
        return False

    async def run(self) -> ReplayResult:
        while self.now <= self.end:
            for run in self.runs:
                if run.not_before is not None and run.not_before > self.now:
                    continue
                run.not_before = None
                await self._pass(run)
                if run.status.phase in runstate.TERMINAL and self._judge(run):
                    return self.result
            following = self._next()
            if following is None:
                break
            self.now = following
        return self.result

    def _next(self) -> datetime | None:
        times = []
        for run in self.runs:
            if run.not_before is not None:
                times.append(run.not_before)
                continue
            _, wait = runstate.due(run.spec, run.status, self.now)
            if wait is not None:
                times.append(self.now + timedelta(seconds=wait))
        following = min(times, default=None)
        return following if following is not None and following <= self.end else None
