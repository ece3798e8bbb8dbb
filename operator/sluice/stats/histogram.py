"""Sequential tests of latency distributions from Prometheus histogram buckets.

A histogram's bucket increments over an interval are multinomial counts. Two tests:

* **Stochastic order (tails)**, the one verdicts use. At every bucket bound `le` the share
  of requests slower than `le` is a count, like errors: the canary's slow requests given
  all slow requests of the interval are Binomial with the ratio of the two tail fractions
  (see `sluice.stats.counts`). Each bound gets a predictable plug-in likelihood ratio (the
  alternative is estimated from earlier intervals only, so each factor has expectation
  <= 1 under the null). A
  heavier tail with the same median shows at the upper bounds and is caught; conditioning
  per interval keeps the test valid under drift that hits both versions alike. The
  bounds' evidence is combined by predictable weights (each bound's wealth so far, among
  the bounds in the informative tail band), which is an e-value again.
* **Equality in distribution**: a Dirichlet-multinomial mixture over canary and baseline
  bucket probabilities against the pooled maximum likelihood (Lindon & Malek, "Anytime-
  valid inference for multinomial count data", NeurIPS 2022; the maximum-likelihood
  denominator is at least the true null's likelihood, so the ratio is bounded by a
  martingale). It assumes stationary traffic and is reported, not used for verdicts.

Quantiles are interpolated within buckets (as PromQL's histogram_quantile does); their
interval comes from time-uniform beta-binomial confidence sequences for the cumulative
distribution at each bound (Howard & Ramdas, "Sequential estimation of quantiles with
applications to A/B-testing and best-arm identification", Bernoulli 2022), so it holds at
every look and needs no bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, gammaln, logsumexp

from sluice.stats.counts import Array, Direction

MAX_LOG_RATIO = 3.0  # plug-in alternatives are clipped to tail ratios of e^3 = 20
TAIL_BAND = (0.002, 0.5)  # bounds between the median and p99.8 carry the evidence
_F_GRID = 1.0 / (1.0 + np.exp(-np.linspace(-14.0, 14.0, 4001)))  # F values, logit-spaced


def tails(counts: Array) -> Array:
    """Requests above each finite bound: (..., K) bucket counts -> (..., K-1)."""
    c = np.asarray(counts, dtype=np.float64)
    above = np.cumsum(c[..., ::-1], axis=-1)[..., ::-1]
    return np.asarray(above[..., 1:], dtype=np.float64)


def _plug_in_log_ratio(
    tail_c: Array, n_c: Array, tail_b: Array, n_b: Array, g0: float, side: str
) -> Array:
    """A predictable alternative log tail-ratio from cumulative counts, clipped to H1."""
    est = np.log((tail_c + 0.5) / (n_c[..., None] + 1.0)) - np.log(
        (tail_b + 0.5) / (n_b[..., None] + 1.0)
    )
    if side == "increase":
        return np.asarray(np.clip(est, g0, g0 + MAX_LOG_RATIO), dtype=np.float64)
    return np.asarray(np.clip(est, g0 - MAX_LOG_RATIO, g0), dtype=np.float64)


@dataclass(frozen=True)
class TailState:
    """Cumulative bucket counts (..., K), log e-values per bound (..., K-1) per side, and
    the combined log e-value per side (...)."""

    canary: Array
    baseline: Array
    log_e_up: Array
    log_e_down: Array
    log_m_up: Array
    log_m_down: Array

    @staticmethod
    def empty(buckets: int, shape: tuple[int, ...] = ()) -> TailState:
        z = np.zeros((*shape, buckets))
        b = np.zeros((*shape, buckets - 1))
        m = np.zeros(shape)
        return TailState(z, z.copy(), b, b.copy(), m, m.copy())


def _weights(prev: Array, pooled_tail: Array, pooled_n: Array) -> Array:
    """Predictable log weights of the bounds for the next interval.

    Each bound's share of the combined wealth is its own wealth so far (as an average of
    e-processes), restricted to the bounds whose pooled tail share, from earlier intervals
    only, lies in TAIL_BAND: bounds that (nearly) nobody exceeds, or nearly everybody,
    carry no evidence and would only dilute it. Any predictable weights summing to 1 keep
    the combination a supermartingale.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        q = pooled_tail / pooled_n[..., None]
    band = (q >= TAIL_BAND[0]) & (q <= TAIL_BAND[1])
    band = np.where(band.any(axis=-1, keepdims=True), band, True)
    logv = np.where(band, prev, -np.inf)
    return np.asarray(logv - logsumexp(logv, axis=-1, keepdims=True), dtype=np.float64)


def update(
    state: TailState, canary: npt.ArrayLike, baseline: npt.ArrayLike, tolerance: float
) -> TailState:
    """The state after one interval's bucket increments (non-cumulative, (..., K))."""
    c = np.asarray(canary, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    nc, nb = c.sum(axis=-1), b.sum(axis=-1)
    xc, xb = tails(c), tails(b)
    cum_nc, cum_nb = state.canary.sum(axis=-1), state.baseline.sum(axis=-1)
    cum_tc, cum_tb = tails(state.canary), tails(state.baseline)
    informative = (nc[..., None] > 0) & (nb[..., None] > 0) & (xc + xb > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((nc > 0) & (nb > 0), np.log(nc) - np.log(nb), 0.0)
    offset = ratio[..., None]
    out, combined = [], []
    for side, g0, prev, prev_m in (
        ("increase", float(np.log1p(tolerance)), state.log_e_up, state.log_m_up),
        ("decrease", -float(np.log1p(tolerance)), state.log_e_down, state.log_m_down),
    ):
        g = _plug_in_log_ratio(cum_tc, cum_nc, cum_tb, cum_nb, g0, side)
        step = xc * (g - g0) - (xc + xb) * (
            np.logaddexp(0.0, g + offset) - np.logaddexp(0.0, g0 + offset)
        )
        step = np.where(informative, step, 0.0)
        logv = _weights(prev, cum_tc + cum_tb, cum_nc + cum_nb)
        combined.append(prev_m + logsumexp(logv + step, axis=-1))
        out.append(prev + step)
    return TailState(state.canary + c, state.baseline + b, out[0], out[1], combined[0], combined[1])


def log_e(state: TailState, direction: Direction) -> Array:
    """log e-value that the canary is slower (increase), faster (decrease) or either."""
    up, down = state.log_m_up, state.log_m_down
    if direction == "increase":
        return up
    if direction == "decrease":
        return down
    return np.asarray(np.logaddexp(up, down) - np.log(2.0), dtype=np.float64)


def _log_multibeta(a: Array) -> Array:
    return np.asarray(gammaln(a).sum(axis=-1) - gammaln(a.sum(axis=-1)), dtype=np.float64)


def log_e_equal(canary: Array, baseline: Array, concentration: float = 0.5) -> Array:
    """log e-value against "same distribution" from cumulative bucket counts (..., K)."""
    c = np.asarray(canary, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    a = np.full(c.shape[-1], concentration)
    mixture = (_log_multibeta(a + c) - _log_multibeta(a)) + (
        _log_multibeta(a + b) - _log_multibeta(a)
    )
    pooled = c + b
    total = pooled.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(pooled > 0, np.log(pooled) - np.log(total), 0.0)
    return np.asarray(mixture - (pooled * logp).sum(axis=-1), dtype=np.float64)


def quantile(bounds: npt.ArrayLike, counts: npt.ArrayLike, q: float) -> float:
    """The q-quantile by linear interpolation within buckets (histogram_quantile's rule).

    `bounds` are the K-1 finite upper bounds, `counts` the K bucket counts (the last one
    above the highest bound). Below the first bound the lower edge is 0; a quantile in the
    +Inf bucket is the highest finite bound. NaN without observations.
    """
    le = np.asarray(bounds, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    total = float(c.sum())
    if total <= 0:
        return float("nan")
    cum = np.cumsum(c)
    rank = q * total
    j = int(np.searchsorted(cum, rank, side="left"))
    if j >= le.size:
        return float(le[-1])
    lower = 0.0 if j == 0 else float(le[j - 1])
    below = 0.0 if j == 0 else float(cum[j - 1])
    inside = float(c[j])
    return lower + (float(le[j]) - lower) * ((rank - below) / inside if inside > 0 else 1.0)


def cdf_bounds(counts: npt.ArrayLike, alpha: float) -> tuple[Array, Array]:
    """Time-uniform (lower, upper) bounds of F at every finite bound, jointly at `alpha`.

    Per bound a beta(1/2, 1/2)-binomial mixture martingale; the set of F values it does
    not reject at alpha / (K-1) (a union bound over the bounds).
    """
    c = np.asarray(counts, dtype=np.float64)
    n = float(c.sum())
    below = np.cumsum(c)[:-1]
    level = np.log((below.size) / alpha)
    f = _F_GRID[None, :]
    s = below[:, None]
    log_e = betaln(s + 0.5, n - s + 0.5) - betaln(0.5, 0.5) - s * np.log(f) - (n - s) * np.log1p(-f)
    ok = log_e < level
    lo = np.where(ok.any(axis=1), _F_GRID[np.argmax(ok, axis=1)], 0.0)
    hi = np.where(ok.any(axis=1), _F_GRID[::-1][np.argmax(ok[:, ::-1], axis=1)], 1.0)
    return np.asarray(lo), np.asarray(hi)


def quantile_bounds(
    bounds: npt.ArrayLike, counts: npt.ArrayLike, q: float, alpha: float
) -> tuple[float, float]:
    """An interval for the q-quantile that holds at all times with probability 1 - alpha.

    Q(q) <= le wherever F(le) >= q surely (lower bound of F >= q), and Q(q) > le wherever
    the upper bound of F is < q; the result is between bucket bounds (0 and +inf at ends).
    """
    le = np.asarray(bounds, dtype=np.float64)
    lo, hi = cdf_bounds(counts, alpha)
    above = le[hi < q]
    below = le[lo >= q]
    return (
        float(above.max()) if above.size else 0.0,
        float(below.min()) if below.size else float("inf"),
    )
