"""The validation study's helpers: exact against scipy/sluice, and peeking inflates alpha."""

from __future__ import annotations

import numpy as np
from benchmarks.judge import methods
from benchmarks.judge.simulate import Scenario, generate, sigma_for_p99, sigma_for_variance
from scipy.stats import mannwhitneyu

from sluice.stats import histogram


def test_vectorised_mann_whitney_is_scipys_row_by_row() -> None:
    rng = np.random.default_rng(31)
    c, b = rng.poisson(3, (40, 12)).astype(float), rng.poisson(2, (40, 12)).astype(float)
    got = methods.mann_whitney_p(c, b)
    want = [mannwhitneyu(c[i], b[i], alternative="greater").pvalue for i in range(40)]
    assert np.array_equal(got, np.asarray(want))
    u = sum((x > y) + 0.5 * (x == y) for x in c[0] for y in b[0])
    assert mannwhitneyu(c[0], b[0], alternative="greater").statistic == u


def test_vectorised_quantiles_are_the_judges() -> None:
    rng = np.random.default_rng(32)
    counts = rng.poisson(5, (50, 18)) * (rng.random((50, 18)) < 0.7)
    for q in (0.5, 0.9, 0.99):
        got = methods.quantiles(counts, q)
        want = [histogram.quantile(methods.BOUNDS, row, q) for row in counts]
        assert np.allclose(got, want, equal_nan=True)


def test_spreads_keep_the_median_and_move_p99_or_variance() -> None:
    assert sigma_for_p99(0.5) > sigma_for_p99(0.1) > 0.5
    s = sigma_for_variance(2.0)
    var = lambda sig: np.exp(sig**2) * (np.exp(sig**2) - 1)  # noqa: E731 (median 1)
    assert np.isclose(var(s), 2 * var(0.5))


def test_peeking_at_a_fixed_window_test_inflates_false_alarms_the_judge_does_not() -> None:
    null = generate(Scenario("no change", "errors", False), 400, np.random.default_rng(33))
    peeked, _ = methods.mann_whitney_peeked(null, "errors")
    once, _ = methods.mann_whitney_once(null, "errors")
    judged, _ = methods.sequential(null, "errors")
    assert peeked.mean() > 2 * methods.ALPHA
    assert once.mean() <= methods.ALPHA + 0.03
    assert judged.mean() <= methods.ALPHA + 0.01


def test_streams_are_reproducible_for_a_seed() -> None:
    sc = Scenario("p99", "latency", True, canary_sigma=sigma_for_p99(0.2))
    a = generate(sc, 5, np.random.default_rng(7))
    b = generate(sc, 5, np.random.default_rng(7))
    assert a.h_c is not None and b.h_c is not None
    assert np.array_equal(a.h_c, b.h_c) and np.array_equal(a.x_b, b.x_b)
