"""Sequential test of the ratio of two error rates, canary vs baseline, anytime-valid.

Method: the count-data variant of Lindon, Sanden & Shirikian, "Rapid Regression Detection
in Software Deployments through Sequential Testing" (KDD 2022). Within one interval the
canary served `n_c` requests with `x_c` errors and the baseline `n_b` with `x_b`. Given the
`m = x_c + x_b` errors of the interval, the canary's share is Binomial(m, p) with
p = rho*n_c / (rho*n_c + n_b), where rho is the ratio of error rates per request: the
baseline's own rate cancels, so drift that hits both versions alike (load, time of day,
a noisy dependency) does not bias the test. The likelihood of rho is kept on a fixed grid
of log-ratios, summed over intervals. A mixture over that grid (a discretized normal prior
on log rho) of likelihood ratios is a nonnegative martingale under the null, so it may be
inspected after every interval: P(ever e >= 1/alpha) <= alpha (Ville's inequality).

* One-sided nulls (rho <= rho0 for `increase`) are composite; the binomial family has
  monotone likelihood ratios, so the mixture over alternatives rho > rho0 stays a
  supermartingale for every rho <= rho0.
* The confidence sequence (Howard, Ramdas, McAuliffe, Sekhon, "Time-uniform, nonparametric,
  nonasymptotic confidence sequences", 2021) is the set of grid ratios a two-sided mixture
  test does not reject: it covers the true ratio at all times at once with probability
  >= 1 - alpha.
* With binomial (not Poisson) sampling the point null rho = 1 stays valid: the conditional
  count is then hypergeometric, which is smaller than the binomial in convex order
  (Hoeffding, 1963), so the likelihood ratio's expectation stays <= 1.

Everything broadcasts: leading axes are independent streams (the benchmark runs thousands
at once), the last axis of a log-likelihood is the grid.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp

Array = npt.NDArray[np.float64]
Direction = Literal["increase", "decrease", "either"]

GRID_STEP = 0.05  # log-ratio resolution: 5 %; tolerances round outwards to it
GRID_HALF = 60  # +-3 in log: ratios 0.05 .. 20; beyond, the edge point takes the evidence
GRID: Array = np.arange(-GRID_HALF, GRID_HALF + 1, dtype=np.float64) * GRID_STEP
PRIOR_SD = 0.7  # of log rho under the alternative: ratios ~1.3-4 get most weight


def empty(shape: tuple[int, ...] = ()) -> Array:
    """A log-likelihood over the grid before any data (all zeros)."""
    return np.zeros((*shape, GRID.size))


def update(
    loglik: Array,
    x_c: npt.ArrayLike,
    n_c: npt.ArrayLike,
    x_b: npt.ArrayLike,
    n_b: npt.ArrayLike,
) -> Array:
    """The log-likelihood after one more interval (terms constant in rho dropped).

    An interval where either side had no traffic, or nobody had an error, says nothing
    about the ratio and leaves it unchanged.
    """
    xc = np.asarray(x_c, dtype=np.float64)[..., None]
    xb = np.asarray(x_b, dtype=np.float64)[..., None]
    nc = np.asarray(n_c, dtype=np.float64)[..., None]
    nb = np.asarray(n_b, dtype=np.float64)[..., None]
    informative = (nc > 0) & (nb > 0) & (xc + xb > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(informative, np.log(nc) - np.log(nb), 0.0)
    # log p = g + offset - log(1 + e^(g + offset)); log(1 - p) = -log(1 + e^(g + offset))
    step = xc * GRID - (xc + xb) * np.logaddexp(0.0, GRID + offset)
    return np.asarray(loglik + np.where(informative, step, 0.0), dtype=np.float64)


def null_index(ratio: float, side: Literal["increase", "decrease"]) -> int:
    """Grid index of the null boundary, rounded outwards (a larger null: conservative)."""
    g = float(np.log(ratio))
    if side == "increase":
        return int(np.clip(np.ceil(g / GRID_STEP - 1e-9) + GRID_HALF, 0, GRID.size - 1))
    return int(np.clip(np.floor(g / GRID_STEP + 1e-9) + GRID_HALF, 0, GRID.size - 1))


def _prior(center: int, mask: npt.NDArray[np.bool_]) -> Array:
    w = np.where(mask, -0.5 * ((GRID - GRID[center]) / PRIOR_SD) ** 2, -np.inf)
    return np.asarray(w - logsumexp(w), dtype=np.float64)


def log_e_one_sided(loglik: Array, index: int, side: Literal["increase", "decrease"]) -> Array:
    """log e-value against `rho <= GRID[index]` (increase) or `rho >= GRID[index]` (decrease)."""
    idx = np.arange(GRID.size)
    mask = idx > index if side == "increase" else idx < index
    if not mask.any():
        return np.zeros(loglik.shape[:-1])
    lw = _prior(index, mask)
    return np.asarray(logsumexp(loglik + lw, axis=-1) - loglik[..., index], dtype=np.float64)


def log_e(loglik: Array, tolerance: float, direction: Direction) -> Array:
    """log e-value of "the canary's error rate is worse than tolerated".

    increase: null rho <= 1 + tolerance; decrease: rho >= 1 / (1 + tolerance);
    either: the average of both e-values (an average of e-values is one).
    """
    up = log_e_one_sided(loglik, null_index(1.0 + tolerance, "increase"), "increase")
    down = log_e_one_sided(loglik, null_index(1.0 / (1.0 + tolerance), "decrease"), "decrease")
    if direction == "increase":
        return up
    if direction == "decrease":
        return down
    return np.asarray(np.logaddexp(up, down) - np.log(2.0), dtype=np.float64)


def _one_sided_weights(side: Literal["increase", "decrease"]) -> Array:
    """(GRID, GRID) log prior weights: row j is the mixture against the null at GRID[j]."""
    idx = np.arange(GRID.size)
    rows = [
        _prior(j, idx > j if side == "increase" else idx < j)
        if (j < GRID.size - 1 if side == "increase" else j > 0)
        else np.full(GRID.size, -np.inf)
        for j in range(GRID.size)
    ]
    return np.stack(rows)


_UP, _DOWN = _one_sided_weights("increase"), _one_sided_weights("decrease")


def confidence_sequence(loglik: Array, alpha: float) -> tuple[float, float, float]:
    """(estimate, lower, upper) of the ratio of error rates for one stream.

    The lower bound is the smallest grid ratio that the one-sided test `rho <= r` does not
    reject at `alpha`, the upper bound likewise from `rho >= r`: each holds at all times
    with probability >= 1 - alpha (both: 1 - 2 alpha), and "lower > 1 + tolerance" agrees
    with an `increase` failure. A bound at the grid's edge is reported as 0 or infinity
    (a baseline without errors gives no upper bound). The estimate is the grid's maximum
    likelihood ratio (1 before any evidence).
    """
    ll = np.asarray(loglik, dtype=np.float64)
    if not np.any(ll):
        return 1.0, 0.0, float("inf")
    level = np.log(1.0 / alpha)
    up = logsumexp(ll[None, :] + _UP, axis=-1) - ll  # -inf at the top edge: never rejected
    down = logsumexp(ll[None, :] + _DOWN, axis=-1) - ll
    best = int(np.argmax(ll))
    kept_up = np.flatnonzero(up < level)
    kept_down = np.flatnonzero(down < level)
    lo = int(kept_up[0]) if kept_up.size else best
    hi = int(kept_down[-1]) if kept_down.size else best
    lower = 0.0 if lo == 0 else float(np.exp(GRID[lo]))
    upper = float("inf") if hi == GRID.size - 1 else float(np.exp(GRID[hi]))
    return float(np.exp(GRID[best])), lower, upper
