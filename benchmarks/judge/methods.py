"""The judges compared, each run on whole batches of streams: (failed, seconds to verdict).

* threshold: the canary alone, over the last minute, checked every interval (as Sluice's
  errorRate / latency triggers): error rate > 2 %, or p99 > 0.4 s (1.25 x the baseline's).
* threshold, calibrated: the same statistic with the limit set, from separate no-change
  runs, so that exactly alpha of them ever cross it (the best a threshold can do at alpha).
* Mann-Whitney (Kayenta-style): one value per interval and version (error rate, or p99 of
  the interval's histogram), canary vs baseline, one-sided `mannwhitneyu` at alpha; once
  at the end of the 10-minute window, or peeked after every interval (also with the
  per-look level calibrated, from no-change runs, to alpha false alarms overall).
* sequential: Sluice's judge (`sluice.stats`), checked after every interval; also with
  its level calibrated like the others', to compare misses at exactly alpha false alarms.
A run that never fails passes at the end of the window (600 s).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from benchmarks.judge.simulate import BOUNDS, INTERVAL, INTERVALS, Streams
from scipy.stats import mannwhitneyu

from sluice.stats import counts, histogram

ALPHA = 0.05
WINDOW = 6  # intervals: one minute
ERROR_LIMIT, P99_LIMIT = 0.02, 0.4
MIN_SAMPLE = 100
Outcome = tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]


def quantiles(counts_: npt.ArrayLike, q: float) -> npt.NDArray[np.float64]:
    """`histogram.quantile` over the last axis of (..., K) bucket counts; NaN when empty."""
    c = np.asarray(counts_, dtype=np.float64)
    total = c.sum(axis=-1)
    cum = np.cumsum(c, axis=-1)
    rank = q * total
    j = (cum < rank[..., None]).sum(axis=-1)
    top = j >= BOUNDS.size
    jj = np.minimum(j, BOUNDS.size - 1)
    lower = np.where(jj == 0, 0.0, BOUNDS[np.maximum(jj - 1, 0)])
    below = np.where(
        jj == 0, 0.0, np.take_along_axis(cum, np.maximum(jj - 1, 0)[..., None], -1)[..., 0]
    )
    inside = np.take_along_axis(c, jj[..., None], -1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(inside > 0, (rank - below) / inside, 1.0)
    value = lower + (BOUNDS[jj] - lower) * frac
    value = np.where(top, BOUNDS[-1], value)
    return np.asarray(np.where(total > 0, value, np.nan), dtype=np.float64)


def _first(hit: npt.NDArray[np.bool_]) -> Outcome:
    """(runs, intervals) looks that fail -> (failed, seconds to verdict)."""
    failed = hit.any(axis=1)
    t = np.where(failed, hit.argmax(axis=1) + 1, INTERVALS) * INTERVAL
    return failed, t.astype(np.float64)


def _window_sum(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    c = np.cumsum(a, axis=1)
    out = c.copy()
    out[:, WINDOW:] = c[:, WINDOW:] - c[:, :-WINDOW]
    return out


def threshold_statistic(s: Streams, metric: str) -> npt.NDArray[np.float64]:
    """(runs, intervals) the canary's one-minute error rate or p99; NaN until a full window."""
    if metric == "errors":
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = _window_sum(s.x_c.astype(float)) / _window_sum(s.n_c.astype(float))
    else:
        assert s.h_c is not None
        c = np.cumsum(s.h_c, axis=1).astype(float)
        w = c.copy()
        w[:, WINDOW:] = c[:, WINDOW:] - c[:, :-WINDOW]
        stat = quantiles(w, 0.99)
    stat[:, : WINDOW - 1] = np.nan
    return stat


def threshold(s: Streams, metric: str, limit: float | None = None) -> Outcome:
    stat = threshold_statistic(s, metric)
    if limit is None:
        limit = ERROR_LIMIT if metric == "errors" else P99_LIMIT
    return _first(np.nan_to_num(stat, nan=-np.inf) > limit)


def calibrated_limit(null: Streams, metric: str) -> float:
    """The limit that exactly alpha of the no-change runs ever cross (checked every interval)."""
    worst = np.nanmax(np.nan_to_num(threshold_statistic(null, metric), nan=-np.inf), axis=1)
    return float(np.quantile(worst, 1 - ALPHA, method="higher"))


def per_interval(
    s: Streams, metric: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The values a Kayenta-style judge compares: one per interval and version."""
    if metric == "errors":
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(s.n_c > 0, s.x_c / np.maximum(s.n_c, 1), 0.0)
            b = np.where(s.n_b > 0, s.x_b / np.maximum(s.n_b, 1), 0.0)
        return c, b
    assert s.h_c is not None and s.h_b is not None
    return np.nan_to_num(quantiles(s.h_c, 0.99)), np.nan_to_num(quantiles(s.h_b, 0.99))


def mann_whitney_p(
    c: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """One-sided (canary greater) p-values per run, over the last axis."""
    return np.asarray(mannwhitneyu(c, b, alternative="greater", axis=-1).pvalue, dtype=np.float64)


def mann_whitney_once(s: Streams, metric: str) -> Outcome:
    c, b = per_interval(s, metric)
    failed = mann_whitney_p(c, b) < ALPHA
    return failed, np.full(failed.shape, INTERVALS * INTERVAL)


def peeked_p(s: Streams, metric: str, first: int = 3) -> npt.NDArray[np.float64]:
    """(runs, intervals) p-values of the test on all intervals so far (1 before `first`)."""
    c, b = per_interval(s, metric)
    p = np.ones(c.shape)
    for t in range(first, INTERVALS + 1):
        p[:, t - 1] = mann_whitney_p(c[:, :t], b[:, :t])
    return p


def mann_whitney_peeked(s: Streams, metric: str, level: float = ALPHA) -> Outcome:
    return _first(peeked_p(s, metric) < level)


def calibrated_level(null: Streams, metric: str) -> float:
    """The per-look level at which exactly alpha of the no-change runs ever reject."""
    return float(np.quantile(peeked_p(null, metric).min(axis=1), ALPHA, method="lower"))


def evidence(s: Streams, metric: str, tolerance: float = 0.0) -> npt.NDArray[np.float64]:
    """(runs, intervals) the judge's log e-value after each interval; -inf before minSample."""
    runs = s.n_c.shape[0]
    log_e = np.zeros((runs, INTERVALS))
    if metric == "errors":
        ll = counts.empty((runs,))
        for t in range(INTERVALS):
            ll = counts.update(ll, s.x_c[:, t], s.n_c[:, t], s.x_b[:, t], s.n_b[:, t])
            log_e[:, t] = counts.log_e(ll, tolerance, "increase")
    else:
        assert s.h_c is not None and s.h_b is not None
        st = histogram.TailState.empty(BOUNDS.size + 1, (runs,))
        for t in range(INTERVALS):
            st = histogram.update(st, s.h_c[:, t], s.h_b[:, t], tolerance)
            log_e[:, t] = histogram.log_e(st, "increase")
    enough = (np.cumsum(s.n_c, axis=1) >= MIN_SAMPLE) & (np.cumsum(s.n_b, axis=1) > 0)
    return np.where(enough, log_e, -np.inf)


def sequential(s: Streams, metric: str, level: float = float(np.log(1 / ALPHA))) -> Outcome:
    """Fail at the first interval whose log e-value reaches `level` (log 1/alpha)."""
    return _first(evidence(s, metric) >= level)


def calibrated_evidence_level(null: Streams, metric: str) -> float:
    """The log e-value level that exactly alpha of the no-change runs ever reach: only to
    compare misses at equal false alarms (the judge itself needs no calibration)."""
    return float(np.quantile(evidence(null, metric).max(axis=1), 1 - ALPHA, method="higher"))
