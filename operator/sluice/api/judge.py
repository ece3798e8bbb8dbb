"""The `judge` metric kind: canary vs baseline with anytime-valid sequential tests.

A judge metric asks Prometheus, every `interval`, how many errors and requests (or which
latency buckets) the canary and its baseline saw during that interval, and keeps compact
evidence in the AnalysisRun's status (`JudgeState`). It fails as soon as the evidence of
a regression beyond `tolerance` reaches 1/alpha, passes after `maxDuration` without such
evidence, and otherwise holds: too little data is never a pass. `JudgeResult` explains
each verdict. The statistics are in `sluice.stats`; PromQL and glue in
`sluice.analysis.sequential`.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic.config import JsonDict

from sluice.api.base import Model
from sluice.api.duration import parse_duration

Duration = int | str
_DURATION: JsonDict = {"x-kubernetes-int-or-string": True}
Preset = Literal["istio", "prometheus-client"]
Direction = Literal["increase", "decrease", "either"]
Verdict = Literal["Pass", "Fail", "Inconclusive"]

# The Python prometheus_client's default histogram buckets (seconds).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_SELECTOR = "Label matchers without braces, templated like queries."


class JudgeErrors(Model):
    """Errors vs requests from a request counter (the errorRate trigger's names)."""

    preset: Preset = Field(
        default="prometheus-client",
        description="Metric and label names: prometheus-client (http_requests_total, code) "
        "or istio (istio_requests_total, response_code). Default prometheus-client.",
    )
    metric: str | None = Field(
        default=None, max_length=200, description="Override the request counter name."
    )
    code_label: str | None = Field(
        default=None, max_length=100, description="Override the status code label."
    )
    error_codes: str = Field(
        default="5..", max_length=100, description="Regex of error status codes. Default 5.."
    )
    canary_selector: str | None = Field(default=None, max_length=1000, description=_SELECTOR)
    baseline_selector: str | None = Field(default=None, max_length=1000, description=_SELECTOR)


class JudgeCounts(Model):
    """Any counter ratio: four queries, each templated with {{interval}} (e.g. 30s)."""

    canary_bad: str = Field(max_length=4000, description="Bad events of the canary, e.g. errors.")
    canary_total: str = Field(max_length=4000, description="All events of the canary.")
    baseline_bad: str = Field(max_length=4000, description="Bad events of the baseline.")
    baseline_total: str = Field(max_length=4000, description="All events of the baseline.")


class JudgeLatency(Model):
    """A latency histogram (the latency trigger's names), compared bucket by bucket."""

    preset: Preset = Field(
        default="prometheus-client",
        description="prometheus-client (http_request_duration_seconds) or istio "
        "(istio_request_duration_milliseconds). Default prometheus-client.",
    )
    metric: str | None = Field(
        default=None, max_length=200, description="Override the histogram name (no _bucket)."
    )
    buckets: list[float] = Field(
        default_factory=lambda: list(DEFAULT_BUCKETS),
        min_length=1,
        max_length=64,
        description="The histogram's finite bucket bounds (le), in its unit. Default the "
        "Python prometheus_client's (0.005 ... 10).",
    )
    quantiles: list[float] = Field(
        default_factory=lambda: [0.5, 0.99],
        max_length=8,
        description="Quantiles whose shift (canary - baseline) is reported. Default 0.5, 0.99.",
    )
    canary_selector: str | None = Field(default=None, max_length=1000, description=_SELECTOR)
    baseline_selector: str | None = Field(default=None, max_length=1000, description=_SELECTOR)

    @field_validator("buckets")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(not 0 < b <= 1e9 for b in value):  # also refuses NaN and inf
            raise ValueError("bucket bounds must be > 0 and <= 1e9 (+Inf is implied)")
        if any(a >= b for a, b in pairwise(value)):
            raise ValueError("bucket bounds must increase")
        return value

    @field_validator("quantiles")
    @classmethod
    def _quantiles(cls, value: list[float]) -> list[float]:
        if any(not 0 < q < 1 for q in value):
            raise ValueError("quantiles must be between 0 and 1")
        return value


class JudgeMetric(Model):
    """Compare the canary with a baseline; fail on evidence of a regression (anytime-valid)."""

    errors: JudgeErrors | None = Field(default=None, description="Built-in: error rate.")
    counts: JudgeCounts | None = Field(default=None, description="A query pair: any ratio.")
    latency: JudgeLatency | None = Field(default=None, description="Built-in: latency.")
    baseline: Literal["stable", "baseline"] = Field(
        default="stable",
        description="Compare with the stable version, or with a baseline Deployment "
        "(the stable's template at the canary's size, started with it). Default stable.",
    )
    direction: Direction = Field(
        default="increase",
        description="What is a regression: increase (more errors, slower), decrease, or "
        "either. Default increase.",
    )
    tolerance: float = Field(
        default=0.0,
        ge=0,
        le=10,
        description="Tolerated relative effect: 0.1 lets the canary's error rate (or share "
        "of requests above any bucket bound) be 10 % worse. Rounded outwards to 5 %. Default 0.",
    )
    alpha: float = Field(
        default=0.05,
        gt=0,
        le=0.5,
        description="False-alarm probability, however often it is checked. Default 0.05.",
    )
    min_sample: int = Field(
        default=100,
        ge=1,
        le=1_000_000_000,
        description="Canary requests needed before any verdict. Default 100.",
    )
    max_duration: Duration = Field(
        default="10m",
        description="Without evidence of a regression by then (and minSample reached), "
        "pass. Default 10m.",
        json_schema_extra=_DURATION,
    )
    critical: bool = Field(
        default=False, description="A failure fails the analysis at once. Default false."
    )
    weight: float = Field(
        default=1.0, ge=0, le=1000, description="Weight in the analysis' score. Default 1."
    )

    @model_validator(mode="after")
    def _one(self) -> JudgeMetric:
        asked = [n for n in ("errors", "counts", "latency") if getattr(self, n) is not None]
        if len(asked) != 1:
            raise ValueError(
                "a judge needs exactly one of errors, counts, latency "
                f"(found {', '.join(asked) or 'none'})"
            )
        seconds = parse_duration(self.max_duration)
        if not 0 < seconds <= 7 * 86400:
            raise ValueError("maxDuration must be > 0 and at most 7 days")
        return self

    @property
    def kind(self) -> Literal["counts", "latency"]:
        return "latency" if self.latency is not None else "counts"


# ---------------------------------------------------------------- persisted and reported


class JudgeState(Model):
    """Evidence so far, kept in the AnalysisRun status between measurements (no samples).

    counts: the log-likelihood of the error-rate ratio on a fixed grid of log-ratios;
    latency: cumulative bucket counts and a log e-value per bucket bound and side.
    """

    kind: Literal["counts", "latency"] = Field(description="counts or latency.")
    intervals: int = Field(default=0, ge=0, description="Intervals with data so far.")
    elapsed_seconds: float = Field(default=0, ge=0, description="Time judged so far.")
    canary_bad: float = Field(default=0, ge=0, description="Canary errors so far.")
    canary_total: float = Field(default=0, ge=0, description="Canary requests so far.")
    baseline_bad: float = Field(default=0, ge=0, description="Baseline errors so far.")
    baseline_total: float = Field(default=0, ge=0, description="Baseline requests so far.")
    loglik: list[float] = Field(
        default_factory=list, description="counts: log-likelihood per grid ratio."
    )
    canary_buckets: list[float] = Field(
        default_factory=list, description="latency: canary requests per bucket so far."
    )
    baseline_buckets: list[float] = Field(
        default_factory=list, description="latency: baseline requests per bucket so far."
    )
    log_e_up: list[float] = Field(
        default_factory=list, description="latency: log e-value 'slower' per bucket bound."
    )
    log_e_down: list[float] = Field(
        default_factory=list, description="latency: log e-value 'faster' per bucket bound."
    )
    log_m_up: float = Field(default=0, description="latency: combined log e-value 'slower'.")
    log_m_down: float = Field(default=0, description="latency: combined log e-value 'faster'.")


class QuantileShift(Model):
    """A quantile of each version and the shift, with an anytime-valid interval."""

    quantile: float = Field(description="E.g. 0.99.")
    canary: float | None = Field(
        default=None, description="The canary's, interpolated within buckets."
    )
    baseline: float | None = Field(default=None, description="The baseline's (absent: no data).")
    lower: float | None = Field(
        default=None, description="Lower bound of canary - baseline (absent: none)."
    )
    upper: float | None = Field(
        default=None, description="Upper bound of canary - baseline (absent: none)."
    )


class JudgeResult(Model):
    """One verdict with everything needed to believe it."""

    verdict: Verdict = Field(description="Pass, Fail or Inconclusive.")
    final: bool = Field(description="False: Inconclusive for now, keep measuring (hold).")
    reason: str = Field(description="Why, in words.")
    kind: Literal["counts", "latency"] = Field(description="counts or latency.")
    canary_n: float = Field(description="Canary requests judged.")
    baseline_n: float = Field(description="Baseline requests judged.")
    canary_rate: float | None = Field(default=None, description="counts: canary error rate.")
    baseline_rate: float | None = Field(default=None, description="counts: baseline error rate.")
    estimate: float = Field(description="Ratio of rates (counts) or of tail shares (latency).")
    lower: float = Field(description="Lower bound of the estimate's confidence sequence.")
    upper: float | None = Field(default=None, description="Upper bound (absent: unbounded).")
    e_value: float = Field(description="Evidence of a regression; fails at >= 1/alpha.")
    p_value: float = Field(description="Anytime-valid p-value, min(1, 1/e).")
    bound: float | None = Field(
        default=None, description="latency: the bucket bound (le) with the most evidence."
    )
    e_value_equal: float | None = Field(
        default=None, description="latency: e-value against equal distributions (reported)."
    )
    quantiles: list[QuantileShift] = Field(default_factory=list, description="latency shifts.")
    tolerance: float = Field(description="Tolerated relative effect.")
    direction: Direction = Field(description="What counts as a regression.")
    alpha: float = Field(description="False-alarm probability.")
    elapsed_seconds: float = Field(description="Time judged.")

    def message(self) -> str:
        """One line for an AnalysisRun message or an Event."""
        worse = f"{self.direction} beyond {self.tolerance:.0%}"
        if self.kind == "counts":
            what = (
                f"errors canary {_pct(self.canary_rate)} of {self.canary_n:.0f} vs baseline "
                f"{_pct(self.baseline_rate)} of {self.baseline_n:.0f}; ratio {self.estimate:.3g} "
                f"[{self.lower:.3g}, {_num(self.upper, none='inf')}]"
            )
        else:
            shifts = ", ".join(
                f"p{q.quantile * 100:g} {_num(q.canary, 4)} vs {_num(q.baseline, 4)} "
                f"(shift [{_num(q.lower, none='-inf')}, {_num(q.upper, none='inf')}])"
                for q in self.quantiles
            )
            what = (
                f"latency n={self.canary_n:.0f}/{self.baseline_n:.0f}: {shifts}; tail ratio "
                f"{self.estimate:.3g} [{self.lower:.3g}, {_num(self.upper, none='inf')}]"
            )
        return (
            f"{self.verdict}{'' if self.final else ' (hold)'}: {what}; e={self.e_value:.3g} "
            f"p={self.p_value:.3g} (alpha {self.alpha:g}, {worse}) after "
            f"{self.elapsed_seconds:.0f}s: {self.reason}"
        )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _num(value: float | None, digits: int = 3, none: str = "n/a") -> str:
    return none if value is None else f"{value:.{digits}g}"


def finite(value: float) -> float | None:
    """A number for the status (JSON has no infinity or NaN): None when unbounded or none."""
    return value if math.isfinite(value) else None


class JudgeScore(Model):
    """A Kayenta-like scorecard over an analysis' judge metrics (by their weights)."""

    pass_score: float = Field(
        default=100,
        ge=0,
        le=100,
        description="Score (percent of the weight that passed) at or above which the "
        "analysis passes. Default 100: every judge metric must pass.",
    )
    marginal_score: float = Field(
        default=75,
        ge=0,
        le=100,
        description="At or above this, and below passScore, the analysis is Inconclusive "
        "(held for a human); below it, it fails. Default 75.",
    )

    @model_validator(mode="after")
    def _order(self) -> JudgeScore:
        if self.marginal_score > self.pass_score:
            raise ValueError("marginalScore must not exceed passScore")
        return self
