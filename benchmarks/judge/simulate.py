"""Synthetic canaries whose truth is known: requests, errors and latency buckets per interval.

Every stream is an independent canary/baseline pair observed every `INTERVAL` seconds for
`INTERVALS` intervals (10 minutes). Requests are Poisson, errors binomial, latencies
log-normal (median 100 ms) counted into histogram buckets as a Prometheus client would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

INTERVAL = 10.0  # seconds
INTERVALS = 60  # 10 minutes
BOUNDS = np.array(
    [0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.75, 1, 2.5, 5]
)
MEDIAN, SIGMA = 0.1, 0.5  # baseline latency: p99 = 0.1 * e^(0.5 * 2.326) = 0.32 s
ERROR_RATE = 0.01
Z99 = float(norm.ppf(0.99))


def sigma_for_p99(increase: float) -> float:
    """Log-normal spread whose p99 is `increase` higher, median unchanged."""
    return SIGMA + float(np.log1p(increase)) / Z99


def sigma_for_variance(factor: float) -> float:
    """Log-normal spread with `factor` times the variance, median unchanged."""
    v = np.exp(SIGMA**2) * (np.exp(SIGMA**2) - 1) * factor
    return float(np.sqrt(np.log((1 + np.sqrt(1 + 4 * v)) / 2)))


def bucket_probabilities(sigma: float) -> npt.NDArray[np.float64]:
    cdf = norm.cdf((np.log(BOUNDS) - np.log(MEDIAN)) / sigma)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


@dataclass(frozen=True)
class Scenario:
    name: str
    metric: str  # errors | latency
    regression: bool  # the truth
    canary_rps: float = 10.0
    baseline_rps: float = 10.0
    canary_error_rate: float = ERROR_RATE
    baseline_error_rate: float = ERROR_RATE
    canary_sigma: float = SIGMA
    baseline_noise: float = (
        0.0  # coefficient of variation of the baseline's error rate per interval
    )


@dataclass(frozen=True)
class Streams:
    """(runs, intervals) requests and errors; (runs, intervals, buckets) latency counts."""

    n_c: npt.NDArray[np.int64]
    x_c: npt.NDArray[np.int64]
    n_b: npt.NDArray[np.int64]
    x_b: npt.NDArray[np.int64]
    h_c: npt.NDArray[np.int64] | None
    h_b: npt.NDArray[np.int64] | None


def generate(s: Scenario, runs: int, rng: np.random.Generator) -> Streams:
    shape = (runs, INTERVALS)
    n_c = rng.poisson(s.canary_rps * INTERVAL, shape)
    n_b = rng.poisson(s.baseline_rps * INTERVAL, shape)
    p_b = np.full(shape, s.baseline_error_rate)
    if s.baseline_noise > 0:  # overdispersed: a gamma-distributed rate per interval, same mean
        k = 1.0 / s.baseline_noise**2
        p_b = np.clip(s.baseline_error_rate * rng.gamma(k, 1.0 / k, shape), 0.0, 1.0)
    x_c = rng.binomial(n_c, s.canary_error_rate)
    x_b = rng.binomial(n_b, p_b)
    h_c = h_b = None
    if s.metric == "latency":
        h_c = rng.multinomial(n_c, bucket_probabilities(s.canary_sigma))
        h_b = rng.multinomial(n_b, bucket_probabilities(SIGMA))
    return Streams(n_c, x_c, n_b, x_b, h_c, h_b)


def scenarios() -> list[Scenario]:
    return [
        Scenario("no change", "errors", False),
        Scenario("no change", "latency", False),
        Scenario("errors +0.5 points", "errors", True, canary_error_rate=0.015),
        Scenario("errors +1 point", "errors", True, canary_error_rate=0.02),
        Scenario("errors +5 points", "errors", True, canary_error_rate=0.06),
        Scenario("p99 +10 %", "latency", True, canary_sigma=sigma_for_p99(0.10)),
        Scenario("p99 +20 %", "latency", True, canary_sigma=sigma_for_p99(0.20)),
        Scenario("p99 +50 %", "latency", True, canary_sigma=sigma_for_p99(0.50)),
        Scenario("variance x2, same median", "latency", True, canary_sigma=sigma_for_variance(2)),
        # The stable as the baseline at a 10 % canary weight: 1 rps against 9.
        Scenario("1 rps canary, no change", "errors", False, canary_rps=1.0, baseline_rps=9.0),
        Scenario(
            "1 rps canary, errors +5 points",
            "errors",
            True,
            canary_rps=1.0,
            baseline_rps=9.0,
            canary_error_rate=0.06,
        ),
        Scenario("noisy baseline, no change", "errors", False, baseline_noise=0.7),
        # A bad day for both versions (a dependency fails): no regression of the canary's.
        Scenario(
            "both at 3 % errors, no change",
            "errors",
            False,
            canary_error_rate=0.03,
            baseline_error_rate=0.03,
        ),
    ]
