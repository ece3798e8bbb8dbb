"""Latency from histogram buckets: tail test calibrated and powerful, quantiles, equality."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import dirichlet_multinomial, multinomial, norm

from sluice.stats import histogram

ALPHA = 0.05
LEVEL = np.log(1 / ALPHA)
BOUNDS = np.array([0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5])


def _shares(sigma: float, median: float = 0.1) -> np.ndarray:
    cdf = norm.cdf((np.log(BOUNDS) - np.log(median)) / sigma)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def _first_rejection(
    runs: int, looks: int, sigma_c: float, seed: int, direction="increase", median_c=0.1
):
    rng = np.random.default_rng(seed)
    state = histogram.TailState.empty(BOUNDS.size + 1, (runs,))
    first = np.full(runs, -1)
    for t in range(looks):
        c = rng.multinomial(rng.poisson(100, runs), _shares(sigma_c, median_c))
        b = rng.multinomial(rng.poisson(100, runs), _shares(0.5))
        state = histogram.update(state, c, b, 0.0)
        hit = (histogram.log_e(state, direction) >= LEVEL) & (first < 0)
        first[hit] = t + 1
    return first, state


def test_false_alarms_stay_below_alpha_when_checked_after_every_interval() -> None:
    first, _ = _first_rejection(runs=1000, looks=60, sigma_c=0.5, seed=21, direction="either")
    assert (first > 0).mean() <= ALPHA + 0.01


def test_a_heavier_tail_with_the_same_median_is_caught() -> None:
    # p99 +50 %, p50 unchanged: a p50 threshold cannot see it.
    first, state = _first_rejection(runs=200, looks=30, sigma_c=0.5 + np.log(1.5) / 2.326, seed=22)
    assert (first > 0).mean() >= 0.95
    p50_c = histogram.quantile(BOUNDS, state.canary[0], 0.5)
    p50_b = histogram.quantile(BOUNDS, state.baseline[0], 0.5)
    assert abs(p50_c - p50_b) < 0.01


def test_a_faster_canary_is_no_regression_but_a_difference() -> None:
    # Every request 20 % faster: stochastically smaller, so no `increase`; `either` sees it.
    first, _ = _first_rejection(200, 30, 0.5, seed=23, direction="increase", median_c=0.08)
    either, _ = _first_rejection(200, 30, 0.5, seed=23, direction="either", median_c=0.08)
    assert (first > 0).mean() < 0.5 < (either > 0).mean()


def test_same_seed_same_evidence() -> None:
    a, _ = _first_rejection(runs=20, looks=10, sigma_c=0.6, seed=24)
    b, _ = _first_rejection(runs=20, looks=10, sigma_c=0.6, seed=24)
    assert np.array_equal(a, b)


def test_quantile_from_buckets_matches_numpy_on_evenly_spread_data() -> None:
    # Values spread evenly inside each bucket: interpolation within buckets is then exact.
    edges = np.concatenate([[0.0], BOUNDS])
    per_bucket = [400, 900, 1200, 1500, 800, 500, 300, 200, 100, 60, 30, 10, 0]
    data = np.concatenate(
        [
            lo + (hi - lo) * (np.arange(n) + 1) / n
            for lo, hi, n in zip(edges[:-1], edges[1:], per_bucket, strict=True)
        ]
    )
    counts = np.asarray([*per_bucket, 0], dtype=float)
    for q in (0.1, 0.5, 0.9, 0.99, 0.999):
        want = float(np.quantile(data, q, method="inverted_cdf"))
        got = histogram.quantile(BOUNDS, counts, q)
        width = float(np.diff(edges)[np.searchsorted(BOUNDS, want)])
        assert abs(got - want) <= width / min(per_bucket[:12]) + 1e-12


def test_quantile_bounds_cover_numpy_quantiles_of_random_data() -> None:
    rng = np.random.default_rng(25)
    missed = 0
    for _ in range(200):
        data = np.exp(np.log(0.1) + 0.5 * rng.standard_normal(2000))
        counts = np.bincount(np.searchsorted(BOUNDS, data), minlength=BOUNDS.size + 1)
        true_p99 = float(np.exp(np.log(0.1) + 0.5 * norm.ppf(0.99)))
        lo, hi = histogram.quantile_bounds(BOUNDS, counts, 0.99, ALPHA)
        missed += not lo <= true_p99 <= hi
        assert lo <= float(np.quantile(data, 0.99)) <= hi or not lo <= true_p99 <= hi
    assert missed / 200 <= ALPHA


def test_quantile_in_the_open_bucket_and_without_data() -> None:
    assert histogram.quantile(BOUNDS, [0] * BOUNDS.size + [5], 0.5) == BOUNDS[-1]
    assert np.isnan(histogram.quantile(BOUNDS, [0] * (BOUNDS.size + 1), 0.5))


def test_equality_e_value_agrees_with_scipy() -> None:
    c = np.array([5, 9, 14, 3, 0, 1])
    b = np.array([7, 6, 10, 5, 2, 0])
    a = np.full(6, 0.5)
    pooled = (c + b) / (c + b).sum()
    want = (
        dirichlet_multinomial.logpmf(c, a, c.sum())
        + dirichlet_multinomial.logpmf(b, a, b.sum())
        - multinomial.logpmf(c, c.sum(), pooled)
        - multinomial.logpmf(b, b.sum(), pooled)
    )
    assert np.isclose(histogram.log_e_equal(c, b), want)


def test_equality_e_value_small_for_equal_and_large_for_different() -> None:
    rng = np.random.default_rng(26)
    same = rng.multinomial(5000, _shares(0.5)), rng.multinomial(5000, _shares(0.5))
    wider = rng.multinomial(5000, _shares(0.8)), rng.multinomial(5000, _shares(0.5))
    assert histogram.log_e_equal(*same) < LEVEL < histogram.log_e_equal(*wider)


bucket_counts = st.lists(st.integers(0, 200), min_size=BOUNDS.size + 1, max_size=BOUNDS.size + 1)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(bucket_counts, bucket_counts), min_size=1, max_size=10))
def test_e_values_are_nonnegative_and_identical_streams_give_none(data) -> None:
    state = histogram.TailState.empty(BOUNDS.size + 1)
    same = histogram.TailState.empty(BOUNDS.size + 1)
    for c, b in data:
        state = histogram.update(state, c, b, 0.0)
        same = histogram.update(same, c, c, 0.0)
    for direction in ("increase", "decrease", "either"):
        assert np.isfinite(histogram.log_e(state, direction))
        assert histogram.log_e(same, direction) <= 0.0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50), st.integers(100, 1000))
def test_evidence_grows_with_slow_canary_requests(extra: int, n: int) -> None:
    base = np.array([n, n, n // 2, n // 10, 0], dtype=float)
    bounds_state = histogram.TailState.empty(5)
    low = high = bounds_state
    for _ in range(3):  # the plug-in bets from the second interval on
        low = histogram.update(low, base, base, 0.0)
        high = histogram.update(high, base + np.array([0, 0, 0, extra, extra]), base, 0.0)
    assert histogram.log_e(high, "increase") > histogram.log_e(low, "increase")
