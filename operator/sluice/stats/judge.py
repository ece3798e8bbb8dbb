"""The judge: a `JudgeState` advanced by one interval, and the verdict it supports.

Fail as soon as the e-value of a regression reaches 1/alpha (and minSample canary
requests were judged); pass when maxDuration went by without that; otherwise hold.
Too little data by maxDuration is Inconclusive, never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sluice.api.duration import parse_duration
from sluice.api.judge import (
    JudgeMetric,
    JudgeResult,
    JudgeState,
    QuantileShift,
    Verdict,
    finite,
)
from sluice.stats import counts, histogram

_DIGITS = 6  # persisted log-likelihoods: enough for e-values, small in the status


def start(spec: JudgeMetric) -> JudgeState:
    """The state before any interval."""
    if spec.latency is None:
        return JudgeState(kind="counts", loglik=[0.0] * counts.GRID.size)
    k = len(spec.latency.buckets) + 1
    zeros = [0.0] * k
    return JudgeState(
        kind="latency",
        canary_buckets=zeros,
        baseline_buckets=zeros,
        log_e_up=zeros[1:],
        log_e_down=zeros[1:],
    )


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), _DIGITS) for v in values]


def add_counts(
    state: JudgeState, seconds: float, x_c: float, n_c: float, x_b: float, n_b: float
) -> JudgeState:
    """One interval's errors and requests of each side (already non-negative integers)."""
    ll = counts.update(np.asarray(state.loglik), x_c, n_c, x_b, n_b)
    has_data = n_c > 0 or n_b > 0
    return state.model_copy(
        update={
            "loglik": _rounded(ll),
            "intervals": state.intervals + int(has_data),
            "elapsed_seconds": state.elapsed_seconds + seconds,
            "canary_bad": state.canary_bad + x_c,
            "canary_total": state.canary_total + n_c,
            "baseline_bad": state.baseline_bad + x_b,
            "baseline_total": state.baseline_total + n_b,
        }
    )


def add_buckets(
    state: JudgeState,
    seconds: float,
    canary: Sequence[float],
    baseline: Sequence[float],
    tolerance: float,
) -> JudgeState:
    """One interval's per-bucket (non-cumulative) request counts of each side."""
    new = histogram.update(_tail(state), canary, baseline, tolerance)
    n_c, n_b = float(sum(canary)), float(sum(baseline))
    return state.model_copy(
        update={
            "canary_buckets": [float(v) for v in new.canary],
            "baseline_buckets": [float(v) for v in new.baseline],
            "log_e_up": _rounded(new.log_e_up),
            "log_e_down": _rounded(new.log_e_down),
            "log_m_up": round(float(new.log_m_up), _DIGITS),
            "log_m_down": round(float(new.log_m_down), _DIGITS),
            "intervals": state.intervals + int(n_c > 0 or n_b > 0),
            "elapsed_seconds": state.elapsed_seconds + seconds,
            "canary_total": state.canary_total + n_c,
            "baseline_total": state.baseline_total + n_b,
        }
    )


def _tail(state: JudgeState) -> histogram.TailState:
    return histogram.TailState(
        np.asarray(state.canary_buckets),
        np.asarray(state.baseline_buckets),
        np.asarray(state.log_e_up),
        np.asarray(state.log_e_down),
        np.asarray(state.log_m_up),
        np.asarray(state.log_m_down),
    )


def _decide(spec: JudgeMetric, state: JudgeState, log_e: float) -> tuple[Verdict, bool, str]:
    enough = state.canary_total >= spec.min_sample and state.baseline_total > 0
    over = state.elapsed_seconds >= parse_duration(spec.max_duration)
    level = math.log(1.0 / spec.alpha)
    if enough and log_e >= level:
        return "Fail", True, f"evidence of a regression reached 1/alpha = {1 / spec.alpha:g}"
    if over and enough:
        return "Pass", True, f"no evidence of a regression in {spec.max_duration}"
    short = (
        f"{state.canary_total:.0f} canary requests of minSample {spec.min_sample}"
        if state.canary_total < spec.min_sample
        else "no baseline requests"
        if not enough
        else f"e below 1/alpha = {1 / spec.alpha:g}"
    )
    if over:
        return "Inconclusive", True, f"not enough data in {spec.max_duration}: {short}"
    return "Inconclusive", False, short


def result(spec: JudgeMetric, state: JudgeState) -> JudgeResult:
    """The verdict the evidence in `state` supports, explained."""
    if state.kind == "counts":
        ll = np.asarray(state.loglik)
        log_e = float(counts.log_e(ll, spec.tolerance, spec.direction))
        estimate, lower, upper = counts.confidence_sequence(ll, spec.alpha)
        extra: dict[str, object] = {
            "canary_rate": state.canary_bad / state.canary_total if state.canary_total else None,
            "baseline_rate": state.baseline_bad / state.baseline_total
            if state.baseline_total
            else None,
        }
    else:
        log_e, estimate, lower, upper, extra = _latency(spec, state)
    verdict, final, reason = _decide(spec, state, log_e)
    e = math.exp(min(log_e, 700.0))
    return JudgeResult(
        verdict=verdict,
        final=final,
        reason=reason,
        kind=state.kind,
        canary_n=state.canary_total,
        baseline_n=state.baseline_total,
        estimate=estimate,
        lower=lower,
        upper=finite(upper),
        e_value=e,
        p_value=min(1.0, 1.0 / e) if e > 0 else 1.0,
        tolerance=spec.tolerance,
        direction=spec.direction,
        alpha=spec.alpha,
        elapsed_seconds=state.elapsed_seconds,
        **extra,
    )


def _latency(
    spec: JudgeMetric, state: JudgeState
) -> tuple[float, float, float, float, dict[str, object]]:
    assert spec.latency is not None
    bounds = np.asarray(spec.latency.buckets)
    c, b = np.asarray(state.canary_buckets), np.asarray(state.baseline_buckets)
    log_e = float(histogram.log_e(_tail(state), spec.direction))
    side = np.asarray(state.log_e_down if spec.direction == "decrease" else state.log_e_up)
    if spec.direction == "either":
        side = np.maximum(np.asarray(state.log_e_up), np.asarray(state.log_e_down))
    k = int(np.argmax(side))
    # The tail ratio at the most telling bound, from cumulative counts (stationary model).
    tc, tb = histogram.tails(c)[k], histogram.tails(b)[k]
    ll = counts.update(counts.empty(), tc, c.sum(), tb, b.sum())
    estimate, lower, upper = counts.confidence_sequence(ll, spec.alpha)
    shifts = []
    for q in spec.latency.quantiles:
        qc, qb = histogram.quantile(bounds, c, q), histogram.quantile(bounds, b, q)
        lo_c, hi_c = histogram.quantile_bounds(bounds, c, q, spec.alpha / 2)
        lo_b, hi_b = histogram.quantile_bounds(bounds, b, q, spec.alpha / 2)
        shifts.append(
            QuantileShift(
                quantile=q,
                canary=finite(qc),
                baseline=finite(qb),
                lower=finite(lo_c - hi_b),
                upper=finite(hi_c - lo_b),
            )
        )
    e_equal = math.exp(min(float(histogram.log_e_equal(c, b)), 700.0))
    return (
        log_e,
        estimate,
        lower,
        upper,
        {"quantiles": shifts, "bound": float(bounds[k]), "e_value_equal": e_equal},
    )
