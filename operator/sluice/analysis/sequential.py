"""Glue between Prometheus and the judge: PromQL per interval, answers -> judge inputs.

Each measurement of a judge metric asks what happened during the last interval only,
with `increase(...[<interval>])`: errors and requests of each side (counts), or the
cumulative bucket counts per `le` of each side (latency; one query per bound, because a
provider answers with bare values and Prometheus does not promise an order of series).
The answers become non-negative integers, the persisted `JudgeState` advances by one
interval, and the verdict is returned with it. Prometheus' extrapolation makes
`increase()` fractional and per-series bucket answers may be slightly non-monotone: both
are rounded and repaired here, not in the statistics.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from sluice.analysis.template import render
from sluice.api.judge import DEFAULT_BUCKETS, JudgeMetric, JudgeResult, JudgeState, Preset
from sluice.metrics.base import MetricProvider
from sluice.stats import judge as stats_judge

Ask = Callable[[str], Awaitable[Sequence[float]]]  # a query template -> the answer's values

# Istio's default buckets of istio_request_duration_milliseconds.
ISTIO_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
_SELECTORS: dict[Preset, dict[str, str]] = {
    "prometheus-client": {
        "canary": 'sluice_dev_revision="{{canary.revision}}"',
        # The baseline Deployment runs the stable's revision; its pods carry
        # sluice.dev/baseline=true, which tells them apart from the stable's.
        "stable": 'sluice_dev_revision="{{stable.revision}}", sluice_dev_baseline!="true"',
        "baseline": 'sluice_dev_revision="{{stable.revision}}", sluice_dev_baseline="true"',
    },
    "istio": {
        "canary": 'destination_workload="{{canary.deployment}}", '
        'destination_workload_namespace="{{rollout.namespace}}"',
        "stable": 'destination_workload="{{stable.deployment}}", '
        'destination_workload_namespace="{{rollout.namespace}}"',
        "baseline": 'destination_workload="{{baseline.deployment}}", '
        'destination_workload_namespace="{{rollout.namespace}}"',
    },
}
_INTERVAL = re.compile(r"\{\{\s*interval\s*\}\}")


@dataclass(frozen=True)
class JudgeQueries:
    """Query templates of one measurement ({{...}} placeholders left for the caller)."""

    counts: tuple[str, str, str, str] | None  # canary bad, canary total, baseline bad, total
    bounds: tuple[float, ...]  # latency: finite le bounds
    canary_buckets: tuple[str, ...]  # latency: one per bound, then +Inf
    baseline_buckets: tuple[str, ...]


def _seconds(interval_seconds: float) -> str:
    return f"{max(1, round(interval_seconds))}s"


def le_matcher(bound: float) -> str:
    """`le=~"..."` matching how clients write the bound: 1, 1.0, 0.005, 5e-03 ..."""
    forms = {f"{bound:g}", repr(float(bound))}
    if float(bound).is_integer():
        forms |= {str(int(bound)), f"{bound:.1f}"}
    # In a PromQL string a regex's `\.` is written `\\.`.
    return 'le=~"' + "|".join(sorted(f.replace(".", "\\\\.") for f in forms)) + '"'


def bounds_of(judge: JudgeMetric) -> tuple[float, ...]:
    assert judge.latency is not None
    lat = judge.latency
    if lat.preset == "istio" and tuple(lat.buckets) == DEFAULT_BUCKETS:
        return tuple(float(b) for b in ISTIO_BUCKETS)
    return tuple(lat.buckets)


def queries(judge: JudgeMetric, interval_seconds: float) -> JudgeQueries:
    """What one measurement asks, templated for `sluice.analysis.template.render`."""
    w = _seconds(interval_seconds)
    side = judge.baseline  # stable or baseline
    if judge.counts is not None:
        c = judge.counts
        four = (
            _INTERVAL.sub(w, c.canary_bad),
            _INTERVAL.sub(w, c.canary_total),
            _INTERVAL.sub(w, c.baseline_bad),
            _INTERVAL.sub(w, c.baseline_total),
        )
        return JudgeQueries(four, (), (), ())
    if judge.errors is not None:
        e = judge.errors
        istio = e.preset == "istio"
        metric = e.metric or ("istio_requests_total" if istio else "http_requests_total")
        code = e.code_label or ("response_code" if istio else "code")
        sel_c = e.canary_selector or _SELECTORS[e.preset]["canary"]
        sel_b = e.baseline_selector or _SELECTORS[e.preset][side]
        # No error series at all is 0 errors, not "no data".
        bad = 'sum(increase({m}{{{s}, {code}=~"{codes}"}}[{w}])) or vector(0)'
        total = "sum(increase({m}{{{s}}}[{w}]))"
        fill = {"m": metric, "code": code, "codes": e.error_codes, "w": w}
        return JudgeQueries(
            (
                bad.format(s=sel_c, **fill),
                total.format(s=sel_c, **fill),
                bad.format(s=sel_b, **fill),
                total.format(s=sel_b, **fill),
            ),
            (),
            (),
            (),
        )
    assert judge.latency is not None
    lat = judge.latency
    istio = lat.preset == "istio"
    metric = lat.metric or (
        "istio_request_duration_milliseconds" if istio else "http_request_duration_seconds"
    )
    bounds = bounds_of(judge)
    sel_c = lat.canary_selector or _SELECTORS[lat.preset]["canary"]
    sel_b = lat.baseline_selector or _SELECTORS[lat.preset][side]
    les = [le_matcher(b) for b in bounds] + ['le="+Inf"']

    def per_le(sel: str) -> tuple[str, ...]:
        return tuple(
            f"sum(increase({metric}_bucket{{{sel}, {le}}}[{w}])) or vector(0)" for le in les
        )

    return JudgeQueries(None, bounds, per_le(sel_c), per_le(sel_b))


def count_of(values: Sequence[float]) -> float:
    """An answer as a count: summed, NaN and negatives as 0, rounded to a whole number."""
    total = sum(v for v in values if not math.isnan(v) and v > 0 and not math.isinf(v))
    return float(round(total))


def buckets_of(cumulative: Sequence[float]) -> list[float]:
    """Cumulative counts per le (ending with +Inf) -> whole counts per bucket."""
    c = np.maximum.accumulate(np.rint(np.nan_to_num(np.asarray(cumulative, float), nan=0.0)))
    c = np.clip(c, 0.0, None)
    return [float(v) for v in np.diff(c, prepend=0.0)]


@dataclass(frozen=True)
class Observation:
    """What one interval's answers said, before it is added to the evidence."""

    seconds: float
    counts: tuple[float, float, float, float] | None  # errors/requests, canary then baseline
    canary_buckets: tuple[float, ...] = ()
    baseline_buckets: tuple[float, ...] = ()


async def ask_interval(judge: JudgeMetric, interval_seconds: float, ask: Ask) -> Observation:
    """Ask about the last interval (the I/O half of `observe`). `ask` raises the
    provider's error, which the caller counts as a measurement error."""
    q = queries(judge, interval_seconds)
    if q.counts is not None:
        answers = await asyncio.gather(*(ask(x) for x in q.counts))
        xc, nc, xb, nb = (count_of(a) for a in answers)
        # A provider can count more errors than requests across two extrapolations.
        return Observation(interval_seconds, (min(xc, nc), nc, min(xb, nb), nb))
    got = await asyncio.gather(*(ask(x) for x in (*q.canary_buckets, *q.baseline_buckets)))
    k = len(q.canary_buckets)
    canary = buckets_of([count_of(a) for a in got[:k]])
    baseline = buckets_of([count_of(a) for a in got[k:]])
    return Observation(interval_seconds, None, tuple(canary), tuple(baseline))


def advance(
    judge: JudgeMetric, state: JudgeState | None, seen: Observation
) -> tuple[JudgeState, JudgeResult]:
    """The evidence after one more interval, and the verdict it supports (pure)."""
    st = state or stats_judge.start(judge)
    if seen.counts is not None:
        st = stats_judge.add_counts(st, seen.seconds, *seen.counts)
    else:
        st = stats_judge.add_buckets(
            st, seen.seconds, seen.canary_buckets, seen.baseline_buckets, judge.tolerance
        )
    return st, stats_judge.result(judge, st)


async def observe(
    judge: JudgeMetric, state: JudgeState | None, interval_seconds: float, ask: Ask
) -> tuple[JudgeState, JudgeResult]:
    """One measurement: ask about the last interval, advance the evidence, judge it.

    `state` None starts a new judge. A provider error raises before anything changes.
    """
    return advance(judge, state, await ask_interval(judge, interval_seconds, ask))


def ask_with(provider: MetricProvider, values: Mapping[str, str], at: datetime | None) -> Ask:
    """An `Ask` for `observe`: render a template with `values`, query it at `at`."""

    async def ask(template: str) -> Sequence[float]:
        return (await provider.query(render(template, values), at)).values

    return ask


def metric_phase(result: JudgeResult) -> str:
    """The metric's phase a verdict stands for: a hold keeps it Running."""
    if result.verdict == "Fail":
        return "Failed"
    if result.verdict == "Pass":
        return "Successful"
    return "Inconclusive" if result.final else "Running"
