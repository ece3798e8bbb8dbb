"""The ratio-of-error-rates test: calibrated when checked every interval, powerful, exact."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from sluice.stats import counts

ALPHA = 0.05
LEVEL = np.log(1 / ALPHA)


def _streams(runs: int, looks: int, p_c: float, p_b: float, seed: int, rps: float = 10.0):
    rng = np.random.default_rng(seed)
    n_c = rng.poisson(rps * 10, (runs, looks))
    n_b = rng.poisson(rps * 10, (runs, looks))
    return n_c, rng.binomial(n_c, p_c), n_b, rng.binomial(n_b, p_b)


def _first_rejection(runs: int, looks: int, p_c: float, p_b: float, seed: int, tol: float = 0.0):
    n_c, x_c, n_b, x_b = _streams(runs, looks, p_c, p_b, seed)
    ll = counts.empty((runs,))
    first = np.full(runs, -1)
    for t in range(looks):
        ll = counts.update(ll, x_c[:, t], n_c[:, t], x_b[:, t], n_b[:, t])
        hit = (counts.log_e(ll, tol, "increase") >= LEVEL) & (first < 0)
        first[hit] = t + 1
    return first


def test_false_alarms_stay_below_alpha_when_checked_after_every_interval() -> None:
    first = _first_rejection(runs=1000, looks=60, p_c=0.01, p_b=0.01, seed=11)
    assert (first > 0).mean() <= ALPHA + 0.01


def test_a_regression_within_the_tolerance_is_not_flagged() -> None:
    # 50 % more errors, 60 % tolerated: the composite null rho <= 1.6 holds (without the
    # tolerance about half of these would fail).
    first = _first_rejection(runs=500, looks=60, p_c=0.015, p_b=0.01, seed=12, tol=0.6)
    assert (first > 0).mean() <= ALPHA
    assert (_first_rejection(runs=200, looks=60, p_c=0.015, p_b=0.01, seed=12) > 0).mean() > 0.3


def test_five_points_more_errors_are_caught_within_a_minute_at_10_rps() -> None:
    first = _first_rejection(runs=400, looks=30, p_c=0.06, p_b=0.01, seed=13)
    assert (first > 0).all()
    assert np.median(first) * 10 <= 60


def test_one_point_more_errors_are_caught_mostly() -> None:
    first = _first_rejection(runs=300, looks=60, p_c=0.02, p_b=0.01, seed=14)
    assert (first > 0).mean() >= 0.9


def test_same_seed_same_evidence() -> None:
    a = _first_rejection(runs=50, looks=20, p_c=0.03, p_b=0.01, seed=15)
    b = _first_rejection(runs=50, looks=20, p_c=0.03, p_b=0.01, seed=15)
    assert np.array_equal(a, b)


def test_likelihood_agrees_with_scipy_binomial() -> None:
    # The grid log-likelihood differences are the conditional binomial's, exactly.
    x_c, n_c, x_b, n_b = 7, 120, 3, 80
    ll = counts.update(counts.empty(), x_c, n_c, x_b, n_b)
    rho = np.exp(counts.GRID)
    p = rho * n_c / (rho * n_c + n_b)
    expected = binom.logpmf(x_c, x_c + x_b, p)
    assert np.allclose(ll - ll[counts.GRID_HALF], expected - expected[counts.GRID_HALF])


def test_confidence_sequence_covers_the_true_ratio() -> None:
    n_c, x_c, n_b, x_b = _streams(400, 30, 0.02, 0.01, seed=16)
    missed = 0
    for r in range(400):
        ll = counts.empty()
        for t in range(30):
            ll = counts.update(ll, x_c[r, t], n_c[r, t], x_b[r, t], n_b[r, t])
        _, lower, upper = counts.confidence_sequence(ll, ALPHA)
        missed += not lower <= 2.0 <= upper
    assert missed / 400 <= 2 * ALPHA  # each side holds with 1 - alpha


def test_bounds_narrow_with_data_and_agree_with_a_failure() -> None:
    n_c, x_c, n_b, x_b = _streams(1, 60, 0.06, 0.01, seed=17)
    ll, widths = counts.empty(), []
    for t in range(60):
        ll = counts.update(ll, x_c[0, t], n_c[0, t], x_b[0, t], n_b[0, t])
        widths.append(np.log(counts.confidence_sequence(ll, ALPHA)[2] + 1e-9))
    _, lower, _ = counts.confidence_sequence(ll, ALPHA)
    assert counts.log_e(ll, 0.0, "increase") >= LEVEL and lower > 1.0
    assert widths[-1] < widths[5]


def test_no_traffic_or_no_errors_is_no_evidence() -> None:
    ll = counts.update(counts.empty(), 0, 0, 5, 100)
    ll = counts.update(ll, 0, 100, 0, 100)
    assert not ll.any()
    _, lower, upper = counts.confidence_sequence(ll, ALPHA)
    assert (lower, upper) == (0.0, float("inf"))


intervals = st.lists(
    st.tuples(st.integers(0, 50), st.integers(1, 500), st.integers(0, 50), st.integers(1, 500)),
    min_size=1,
    max_size=20,
)


def _run(data: list[tuple[int, int, int, int]]) -> np.ndarray:
    ll = counts.empty()
    for x_c, n_c, x_b, n_b in data:
        ll = counts.update(ll, min(x_c, n_c), n_c, min(x_b, n_b), n_b)
    return ll


@settings(max_examples=60, deadline=None)
@given(intervals)
def test_e_values_are_nonnegative_and_finite(data: list[tuple[int, int, int, int]]) -> None:
    ll = _run(data)
    for direction in ("increase", "decrease", "either"):
        log_e = float(counts.log_e(ll, 0.0, direction))
        assert np.isfinite(log_e) and np.exp(log_e) >= 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(30, 500)), min_size=1, max_size=30))
def test_identical_streams_give_no_evidence(data: list[tuple[int, int]]) -> None:
    ll = _run([(x, n, x, n) for x, n in data])
    assert float(counts.log_e(ll, 0.0, "either")) < np.log(1 / ALPHA)
    assert float(counts.log_e(ll, 0.0, "increase")) <= 0.0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(1, 40), st.integers(200, 2000))
def test_evidence_grows_with_the_canarys_errors(base: int, extra: int, n: int) -> None:
    low = counts.log_e(_run([(base, n, base, n)]), 0.0, "increase")
    high = counts.log_e(_run([(base + extra, n, base, n)]), 0.0, "increase")
    assert high > low
