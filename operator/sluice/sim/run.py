"""Run a Rollout through the real engine and analysis on an in-memory cluster, simulated clock.

The Rollout's template is the new version; the simulation first makes a previous
version stable, then applies the file's template, exactly as a user's `kubectl apply`
of a changed manifest would.

Everything is the operator's own code: `decide()` takes every decision; a CreateRun
is merged from templates and inline metrics by `cluster.analysis_runs.merge` and made
into a manifest (a merge error is fed back as `Observed.rejected`, as the reconciler
does); runs are advanced, measured, judged and recorded by `analysis.measure`
(`runstate`, `triggers.question`, `judge`) as the executor does. Only the cluster
(`MemoryCluster`), the metric source (`EmbeddedProvider`, or a real Prometheus) and the
clock are stand-ins. The clock jumps from one event to the next: a timer the engine
asked for, a pod becoming Ready, a measurement falling due, a scenario action.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.analysis import runstate
from sluice.analysis.measure import advance, measure, run_values
from sluice.analysis.triggers import question
from sluice.api.analysis import AnalysisRunSpec, AnalysisRunStatus, Measurement, Metric
from sluice.api.duration import parse_duration
from sluice.api.rollout import RolloutStatus
from sluice.cluster.analysis_runs import AnalysisInvalid, manifest
from sluice.cluster.labels import ROLLOUT as ROLLOUT_LABEL
from sluice.cluster.observe import run_observed
from sluice.cluster.wire import strip_empty
from sluice.engine import Decision, RemoveAction, RolloutInput, decide
from sluice.engine.hashing import template_hash
from sluice.engine.types import CreateRun, DeleteRun, RunObserved, SetTraffic, TerminateRun
from sluice.engine.validate import InvalidSpec, parse_spec
from sluice.metrics.base import MetricProvider
from sluice.sim.load import Loaded
from sluice.sim.memory import MemoryCluster
from sluice.sim.metrics import Cast, EmbeddedProvider
from sluice.sim.relabel import Relabel
from sluice.sim.scenario import Scenario

__all__ = [
    "EPOCH",
    "Frame",
    "Result",
    "Scenario",
    "Taken",
    "short",
    "simulate",
    "simulate_async",
]

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PREVIOUS = "sluice.dev/simulated-previous"
MAX_DECISIONS = 1_000_000
SAME_INSTANT = 200  # decisions at one instant before the simulation is called stuck
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_THRESHOLD = re.compile(rf"^\s*result\s*(<=|<|>=|>)\s*({_NUMBER})\s*$")

ProviderFactory = Callable[[Metric, Cast], MetricProvider]


@dataclass(frozen=True)
class Taken:
    """One measurement, as the timeline and the chart show it."""

    t: float
    run: str
    kind: str  # step | background | postPromotion
    step: int | None
    metric: str
    trigger: str  # errorRate | latency | circuitBreaker | query
    phase: str  # Successful | Failed | Inconclusive | Error
    value: float | None
    baseline: float | None
    shown: str  # the value as recorded in the run ("" when there was none)
    condition: str  # what had to hold
    threshold: float | None  # the number in `result <= N`-style conditions
    message: str  # the judgement, without the query
    query: str
    # A judge's estimate (ratio of rates or of tail shares) and its confidence sequence, as
    # of this measurement: the band that narrows as evidence comes in. None: not a judge.
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    tolerance: float | None = None  # the tolerated relative effect: the band's line


@dataclass(frozen=True)
class Frame:
    """One moment of the timeline: a decision that changed something, or measurements."""

    t: float
    phase: str
    step: int | None
    weight: int
    stable: int
    canary: int
    events: list[tuple[str, str, str]]  # (type, reason, message)
    share: int = 0  # percent of traffic on the new version (100 once promoted)
    measurements: list[Taken] = field(default_factory=list)
    reason: str = ""  # of the phase's condition, e.g. PauseStep, AnalysisInconclusive
    message: str = ""  # the status message


@dataclass
class RunSummary:
    name: str
    kind: str
    step: int | None
    phase: str
    message: str
    started: float | None
    finished: float | None


@dataclass(repr=False)  # asyncio may repr a finished task's result: keep that cheap
class Result:
    verdict: str  # promoted | aborted | paused | inconclusive | invalid
    seconds: float
    frames: list[Frame]
    status: RolloutStatus
    reason: str = ""
    message: str = ""
    measurements: list[Taken] = field(default_factory=list)
    runs: list[RunSummary] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    revision: str = ""  # the new version's template hash
    previous: str = ""  # the previous (stable) version's
    decisions: int = 0

    def __repr__(self) -> str:
        return f"Result({self.verdict!r}, {self.seconds}, reason={self.reason!r})"

    @property
    def exit_code(self) -> int:
        return {"promoted": 0, "aborted": 1, "paused": 2, "inconclusive": 2, "invalid": 3}[
            self.verdict
        ]


@dataclass
class _Run:
    spec: AnalysisRunSpec
    status: AnalysisRunStatus
    created: float
    observed: RunObserved | None = None
    seen: tuple[AnalysisRunSpec, AnalysisRunStatus] | None = None  # what `observed` is of


def _previous_template(template: dict[str, Any]) -> dict[str, Any]:
    older = copy.deepcopy(template)
    meta = older.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), PREVIOUS: "true"}
    return older


def threshold(condition: str) -> float | None:
    """N of `result <= N` (and <, >=, >): the line a chart draws; None for other conditions."""
    found = _THRESHOLD.match(condition)
    return float(found.group(2)) if found else None


def trigger_of(metric: Metric) -> str:
    if metric.judge is not None:
        return "judge"
    for name in ("error_rate", "latency", "circuit_breaker"):
        if getattr(metric, name) is not None:
            return {"error_rate": "errorRate", "circuit_breaker": "circuitBreaker"}.get(name, name)
    return "query"


def short(message: str) -> str:
    """A message without the query it quotes (long, and in the JSON anyway)."""
    return re.sub(r"; query `.*?` (at [^\s;]+|[^\s;]+ step [^\s;]+)", "", message, flags=re.S)


def _number(text: str | None) -> float | None:
    if not text or text.startswith("["):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def taken(
    t: float,
    run: str,
    spec: AnalysisRunSpec,
    metric: Metric,
    m: Measurement,
    status: AnalysisRunStatus | None = None,
) -> Taken:
    judged = next(
        (
            r.judge_result
            for r in (status.metric_results if status else [])
            if r.name == metric.name
        ),
        None,
    )
    if metric.judge is not None:  # the value is the e-value; it fails at 1/alpha
        bound: float | None = 1 / metric.judge.alpha
        condition = f"judge: e < {bound:g}"
    else:
        q = question(metric)
        condition = q.success or (f"not ({q.failure})" if q.failure else "")
        bound = threshold(q.success or q.failure or "")
    return Taken(
        t=t,
        run=run,
        kind=spec.kind,
        step=spec.step,
        metric=metric.name,
        trigger=trigger_of(metric),
        phase=m.phase,
        value=_number(m.value),
        baseline=_number(m.baseline),
        shown=m.value,
        condition=condition,
        threshold=bound,
        message=m.message.split("; query `", 1)[0],
        query=m.query,
        estimate=judged.estimate if judged else None,
        lower=judged.lower if judged else None,
        upper=judged.upper if judged else None,
        tolerance=judged.tolerance if judged else None,
    )


def unanswered(loaded: Loaded, scenario: Scenario) -> list[str]:
    """The metrics the scenario has no series for: every answer would be 'no data'."""
    out: list[str] = []
    seen: set[str] = set()
    for kind, step, _, _ in loaded.analyses():
        try:
            metrics = loaded.merged(kind, step)[0]
        except AnalysisInvalid:
            continue  # the engine reports it
        for metric in metrics:
            if metric.name in seen or scenario.curve("canary", "series", metric.name):
                continue
            seen.add(metric.name)
            trigger = trigger_of(metric)
            if trigger == "judge":
                judge = metric.judge
                assert judge is not None
                if judge.latency is not None:
                    if not any(
                        who == "canary" and kind == "latency" for who, kind, _ in scenario.curves
                    ):
                        out.append(
                            f"metric {metric.name}: the scenario has no canary.latency: every "
                            "answer is 'no data'"
                        )
                elif judge.errors is None:
                    out.append(
                        f"metric {metric.name}: simulate answers judge errors and latency, "
                        "not counts of your own queries: every answer is 'no data' (use "
                        "--prometheus)"
                    )
                elif scenario.curve("canary", "errorRate") is None:
                    out.append(
                        f"metric {metric.name}: the scenario has no canary.errorRate: every "
                        "answer is 'no data'"
                    )
            elif trigger == "query":
                out.append(
                    f"metric {metric.name}: its own PromQL, and the scenario has no "
                    f"canary.series.{metric.name}: every answer is 'no data'"
                )
            elif trigger != "circuitBreaker":  # an absent breaker series is 0, as in life
                key = repr(metric.latency.quantile) if metric.latency else ""
                if scenario.curve("canary", trigger, key) is None:
                    want = f"latency.p{key[2:]}" if metric.latency else trigger
                    out.append(
                        f"metric {metric.name}: the scenario has no canary.{want}: every "
                        "answer is 'no data'"
                    )
    return out


class _Simulation:
    def __init__(
        self,
        loaded: Loaded,
        scenario: Scenario,
        on_frame: Callable[[Frame], None] | None,
        provider: ProviderFactory | None,
        epoch: datetime,
        relabel: Relabel | None,
    ) -> None:
        self.loaded = loaded
        self.scenario = scenario
        self.on_frame = on_frame
        self.epoch = epoch
        self.relabel = relabel or Relabel()
        self.embedded = provider is None
        self.provider_factory = provider or self._embedded
        self.name, self.namespace = loaded.name, loaded.namespace
        self.spec_new: dict[str, Any] = loaded.rollout["spec"]
        self.spec_old = {
            **self.spec_new,
            "template": _previous_template(self.spec_new["template"]),
        }
        self.new = template_hash(loaded.spec.pod_template())
        self.old = template_hash(self.spec_old["template"])
        self.cluster = MemoryCluster(
            ready_delay=scenario.delays["stable"],
            ready_delays={self.new: scenario.delays["canary"]},
        )
        if not scenario.canary_ready:
            self.cluster.broken_revisions.add(self.new)
        self.status = RolloutStatus()
        self.runs: dict[str, _Run] = {}
        self.rejected: dict[str, str] = {}
        self.t = 0.0
        self.measured: list[Taken] = []
        self.fresh: list[Taken] = []
        self.warnings = unanswered(loaded, scenario) if self.embedded else []
        self.body: tuple[RolloutStatus, dict[str, Any]] | None = None
        self.decisions = 0

    # ------------------------------------------------------------ clock and cluster

    def clock(self) -> datetime:
        return self.epoch + timedelta(seconds=self.t)

    def _rollout_body(self) -> dict[str, Any]:
        """The Rollout as the operator's cache holds it: the file's, with the last status."""
        if self.body is None or self.body[0] is not self.status:
            meta = dict(self.loaded.rollout.get("metadata") or {})
            meta.update(name=self.name, namespace=self.namespace, uid="simulated")
            body = {
                **self.loaded.rollout,
                "metadata": meta,
                "spec": self.spec_new,
                "status": strip_empty(self.status.model_dump(by_alias=True)),
            }
            self.body = (self.status, body)
        return self.body[1]

    def _observed_runs(self) -> dict[str, RunObserved]:
        out = {}
        for name, run in self.runs.items():
            seen = run.seen
            if (
                run.observed is None
                or seen is None
                or seen[0] is not run.spec
                or seen[1] is not run.status
            ):
                body = {
                    "metadata": {"name": name, "labels": {ROLLOUT_LABEL: self.name}},
                    "spec": {
                        "kind": run.spec.kind,
                        "revision": run.spec.revision,
                        "step": run.spec.step,
                        "terminate": run.spec.terminate,
                    },
                    "status": {
                        "phase": run.status.phase,
                        "message": run.status.message,
                        "onError": run.status.on_error,
                    },
                }
                run.observed, run.seen = run_observed(body), (run.spec, run.status)
            out[name] = run.observed
        return out

    def _decide(self, spec: dict[str, Any], action: str | None) -> Decision:
        inp = RolloutInput(self.name, self.namespace, 1, spec, self.status, action)
        observed = dataclasses.replace(
            self.cluster.observe(self.t), runs=self._observed_runs(), rejected=dict(self.rejected)
        )
        decision = decide(inp, observed, self.clock())
        self.decisions += 1
        runs = [a for a in decision.actions if isinstance(a, CreateRun | TerminateRun | DeleteRun)]
        self.cluster.apply([a for a in decision.actions if a not in runs], self.t)
        self.status = decision.status
        for act in runs:
            if isinstance(act, CreateRun):
                self._create(act)
            elif isinstance(act, DeleteRun):
                self.runs.pop(act.name, None)
            else:
                run = self.runs.get(act.name)
                if run is not None:  # as the reconciler's patch: spec.terminate
                    run.spec = run.spec.model_copy(update={"terminate": True})
        return decision

    # ------------------------------------------------------------ analysis runs

    def _create(self, act: CreateRun) -> None:
        """As the reconciler's _create_run: merge, or refuse with the message it would."""
        try:
            metrics, args, retention = self.loaded.merged(act.kind, act.step)
        except AnalysisInvalid as exc:
            self.rejected[act.name] = str(exc)
            return
        metrics, args = self.relabel.apply(metrics, args)
        owner = self._rollout_body()
        card = self.loaded.judge_score(act.kind, act.step)
        body = manifest(
            owner, act.name, act.kind, act.revision, act.step, metrics, args, retention, card
        )
        if act.name in self.runs:
            return  # AlreadyExists
        spec = AnalysisRunSpec.model_validate(body["spec"])
        self.runs[act.name] = _Run(spec, AnalysisRunStatus(), self.t)

    def _cast(self) -> Cast:
        version = {self.new: "canary", self.old: "stable"}
        names: dict[str, str] = {self.new: "canary", self.old: "stable"}
        slots: dict[str, str] = {}
        for slot, held in self.cluster.slots.items():
            if held is None or held[0] not in version:
                continue
            who = version[held[0]]
            names[f"{self.name}-{slot}"] = who
            slots[slot] = who
            role = "stable" if slot == (self.status.stable_slot or "a") else "canary"
            names[f"{self.name}-{role}"] = who
        return Cast(names, slots)

    def _embedded(self, metric: Metric, cast: Cast) -> MetricProvider:
        return EmbeddedProvider(self.scenario, metric.name, cast, self.epoch)

    async def _secret(self, namespace: str, name: str, key: str) -> str:
        found = self.scenario.secrets.get(name)
        if found is None:
            raise KeyError(f"Secret {namespace}/{name} is not in the scenario's secrets")
        if key not in found:
            raise KeyError(f"Secret {namespace}/{name} has no key {key!r}")
        return found[key]

    async def _executor(self) -> None:
        """The analysis executor's pass over every run at this instant."""
        moment: list[tuple[dict[str, Any], Cast]] = []  # the Rollout as it is now, once

        def now() -> tuple[dict[str, Any], Cast]:
            if not moment:
                moment.append((self._rollout_body(), self._cast()))
            return moment[0]

        for name, run in self.runs.items():
            if run.spec.kind == "alert" or (
                run.status.phase in runstate.TERMINAL and run.status.started_at is not None
            ):
                continue
            spec = run.spec

            async def take(metric: Metric, spec: AnalysisRunSpec = spec) -> Measurement:
                body, cast = now()
                provider = self.provider_factory(metric, cast)

                async def values() -> dict[str, str]:
                    return await run_values(spec, body, self._secret)

                async def source() -> MetricProvider:
                    return provider

                return await measure(metric, values, source, self.clock)

            run.status, done = await advance(run.spec, run.status, self.clock, take)
            for metric, m in done:
                self.fresh.append(taken(self.t, name, run.spec, metric, m, run.status))

    def _run_wakeups(self) -> list[float]:
        out = []
        now = self.clock()
        for run in self.runs.values():
            if run.spec.kind == "alert":
                continue
            if run.status.started_at is None or (
                run.spec.terminate and run.status.phase not in runstate.TERMINAL
            ):
                out.append(self.t)
                continue
            _, wait = runstate.due(run.spec, run.status, now)
            if wait is not None:
                out.append(self.t + wait)
        return out

    # ------------------------------------------------------------ the loop

    async def run(self) -> Result:
        scenario = self.scenario
        # The previous version becomes stable first (before t=0, not shown).
        delay = scenario.delays["stable"]
        self.t = -delay - 1
        for _ in range(4):
            self._decide(self.spec_old, None)
            self.t += delay + 0.001

        frames: list[Frame] = []
        pending = list(scenario.actions)
        t, action, same, last_change = 0.0, None, 0, 0.0
        for _ in range(MAX_DECISIONS):
            self.t = t
            await self._executor()
            decision = self._decide(self.spec_new, action)
            if any(isinstance(a, RemoveAction) for a in decision.actions):
                action = None
            frame = self._frame(decision)
            if frame.events or not frames or moved(frames[-1], frame):
                last_change = t
            if frame.events or frame.measurements or not frames or moved(frames[-1], frame):
                frames.append(frame)
                if self.on_frame:
                    self.on_frame(frame)
            st = self.status
            invalid = next(
                (c for c in st.conditions if c.type == "InvalidSpec" and c.status == "True"), None
            )
            if invalid is not None:
                return self._result("invalid", t, frames, "InvalidSpec", invalid.message)
            promoted = st.stable_revision == self.new and not st.canary_revision
            if promoted and not st.post_promotion_run:
                return self._result("promoted", t, frames)
            if st.abort is not None and not any(at >= t for at, _ in pending):
                at = self._seconds(st.abort.time)  # before later actions were tried
                when = t if at is None else at
                return self._result("aborted", when, frames, st.abort.reason, st.abort.message)
            wakeups = [
                x
                for x in (
                    t + decision.requeue_after if decision.requeue_after is not None else None,
                    self.cluster.next_ready(t),
                    pending[0][0] if pending else None,
                    *self._run_wakeups(),
                )
                if x is not None
            ]
            if action is not None:
                wakeups.append(t)  # the annotation is consumed on the next pass
            if any(isinstance(a, SetTraffic) for a in decision.actions):
                wakeups.append(t)  # the routers' write comes back as a watch event at once
            if not wakeups or min(wakeups) > scenario.max_seconds:
                return self._stalled(last_change, frames, "")
            following = max(t, min(wakeups))
            same = same + 1 if following == t else 0
            if same > SAME_INSTANT:
                return self._stalled(t, frames, "the simulation did not settle")
            t = following
            while pending and pending[0][0] <= t and action is None:
                action = pending.pop(0)[1]
        return self._stalled(t, frames, "the simulation did not settle")

    def _stalled(self, t: float, frames: list[Frame], why: str) -> Result:
        paused = next((c for c in self.status.conditions if c.type == "Paused"), None)
        reason = paused.reason if paused is not None and paused.status == "True" else ""
        verdict = (
            "inconclusive" if reason in ("AnalysisInconclusive", "AnalysisError") else "paused"
        )
        return self._result(verdict, t, frames, reason or "Stalled", why or self.status.message)

    def _frame(self, decision: Decision) -> Frame:
        st = self.status
        if st.stable_revision == self.new and not st.canary_revision:
            share = 100
        elif st.canary_revision == self.new and not st.abort:
            share = st.canary_weight
        else:
            share = 0
        fresh, self.fresh = self.fresh, []
        self.measured += fresh
        return Frame(
            t=self.t,
            phase=st.phase or "",
            step=st.current_step_index,
            weight=st.canary_weight,
            stable=st.stable.replicas if st.stable else 0,
            canary=st.canary.replicas if st.canary else 0,
            events=[(e.type, e.reason, e.message) for e in decision.events],
            share=share,
            measurements=fresh,
            reason=next(
                (c.reason for c in st.conditions if c.status == "True" and c.type == st.phase),
                "",
            ),
            message=st.message,
        )

    def _result(
        self, verdict: str, t: float, frames: list[Frame], reason: str = "", message: str = ""
    ) -> Result:
        runs = []
        for name, run in self.runs.items():
            st = run.status
            runs.append(
                RunSummary(
                    name=name,
                    kind=run.spec.kind,
                    step=run.spec.step,
                    phase=st.phase,
                    message=st.message,
                    started=self._seconds(st.started_at),
                    finished=self._seconds(st.finished_at),
                )
            )
        return Result(
            verdict=verdict,
            seconds=t,
            frames=frames,
            status=self.status,
            reason=reason,
            message=message,
            measurements=self.measured,
            runs=runs,
            warnings=self.warnings,
            revision=self.new,
            previous=self.old,
            decisions=self.decisions,
        )

    def _seconds(self, stamp: str | None) -> float | None:
        if not stamp:
            return None
        return (datetime.fromisoformat(stamp.replace("Z", "+00:00")) - self.epoch).total_seconds()


def moved(a: Frame, b: Frame) -> bool:
    """Something a timeline shows changed: phase (or why), step, weight, replicas."""
    return (a.phase, a.reason, a.step, a.weight, a.stable, a.canary) != (
        b.phase,
        b.reason,
        b.step,
        b.weight,
        b.stable,
        b.canary,
    )


def as_loaded(rollout: Loaded | dict[str, Any]) -> Loaded:
    """A Rollout document (no templates) as if loaded from a file; InvalidSpec if invalid."""
    if isinstance(rollout, Loaded):
        return rollout
    from pathlib import Path

    spec = parse_spec(rollout.get("spec") or {})
    return Loaded(Path("<rollout>"), rollout, spec, {})


async def simulate_async(
    rollout: Loaded | dict[str, Any],
    scenario: Scenario,
    on_frame: Callable[[Frame], None] | None = None,
    *,
    provider: ProviderFactory | None = None,
    epoch: datetime = EPOCH,
    relabel: Relabel | None = None,
) -> Result:
    try:
        loaded = as_loaded(rollout)
    except InvalidSpec as exc:
        return Result("invalid", 0.0, [], RolloutStatus(), "InvalidSpec", str(exc))
    sim = _Simulation(loaded, scenario, on_frame, provider, epoch, relabel)
    return await sim.run()


def simulate(
    rollout: Loaded | dict[str, Any],
    scenario: Scenario,
    on_frame: Callable[[Frame], None] | None = None,
    *,
    provider: ProviderFactory | None = None,
    epoch: datetime = EPOCH,
    relabel: Relabel | None = None,
) -> Result:
    """The whole simulation; `provider` replaces the scenario's metrics (e.g. Prometheus)."""
    return asyncio.run(
        simulate_async(rollout, scenario, on_frame, provider=provider, epoch=epoch, relabel=relabel)
    )


def prometheus_factory(url: str) -> ProviderFactory:
    """Every query to one real Prometheus, with each metric's own timeout."""
    from sluice.metrics.prometheus import PrometheusProvider

    made: dict[float, PrometheusProvider] = {}

    def factory(metric: Metric, cast: Cast) -> MetricProvider:
        timeout = parse_duration(metric.provider.prometheus.timeout)
        if timeout not in made:
            made[timeout] = PrometheusProvider(url, timeout=timeout)
        return made[timeout]

    return factory
