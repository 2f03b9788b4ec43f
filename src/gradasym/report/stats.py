"""Means and Student-t confidence intervals, with no dependency beyond numpy.

The report summarises several seeds per configuration as a mean with a 95 %
confidence interval from the Student t distribution (the thesis' convention).
The t quantile is computed here from the regularised incomplete beta function
(continued fraction, Numerical Recipes ``betacf``) and bisection, so the package
needs no scipy.

Quantities that the paper plots on log axes (gradient norms, rho, |z|) are
summarised on the log10 scale (:func:`geometric_mean_ci`): their geometric mean
with a t interval computed on log10 values, which is always positive and therefore
drawable on a log axis.

Differences of two means (a remedy's final reward against the baseline's) get
Welch's interval (:func:`welch_diff_ci`); an aggregate over a whole grid of
configurations is the interquartile mean (:func:`iqm`) with a stratified bootstrap
interval (:func:`stratified_bootstrap_ci`), as the ``rliable`` library computes it.

Medians of values that may be right-censored (a run whose actors never stopped is
"at least the episodes it ran") get the distribution-free order-statistic interval
(:func:`median_ci`), and correlations over runs a Fisher-z interval
(:func:`correlation`).

Fractions never get an interval outside [0, 1]:

* a proportion of seeds (k of n seeds stopped): the Wilson score interval
  (:func:`wilson_interval`);
* a mean of per-seed fractions (saturation ratios): the Student-t interval computed
  on the logit scale and transformed back (:func:`fraction_mean_ci`); fractions at
  exactly 0 or 1 enter the logit as :data:`LOGIT_EPS` / ``1 - LOGIT_EPS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "MeanCI", "mean_ci", "geometric_mean_ci", "fraction_mean_ci", "wilson_interval", "normal_quantile",
    "t_quantile", "t_cdf", "logit", "LOGIT_EPS", "FRACTION_CI_METHOD", "SEED_FRACTION_CI_METHOD",
    "MedianCI", "median_ci", "median_ci_ranks", "MEDIAN_CI_METHOD", "MEDIAN_DEFINITION", "Correlation", "correlation",
    "CORRELATION_CI_METHOD", "welch_diff_ci", "WELCH_CI_METHOD", "iqm", "BootstrapCI", "stratified_bootstrap_ci",
    "BOOTSTRAP_REPS", "BOOTSTRAP_SEED", "IQM_DEFINITION", "BOOTSTRAP_CI_METHOD",
]


@dataclass(frozen=True)
class MeanCI:
    """A sample mean with its two-sided confidence interval.

    ``lo``/``hi`` equal ``mean`` when ``n == 1`` (no interval can be computed)
    and are NaN when ``n == 0``. ``half`` is the half width (``hi - mean`` for the
    arithmetic case; for geometric summaries it is the half width on log10, for
    means of fractions on the logit scale, for Wilson intervals the score half
    width around the Wilson centre): intervals that are not symmetric around
    ``mean`` are shown as ``[lo, hi]``.
    """

    mean: float
    lo: float
    hi: float
    half: float
    n: int
    level: float = 0.95

    @property
    def has_interval(self) -> bool:
        """True when at least two values went into the interval."""
        return self.n >= 2


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Cumulative distribution function of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t >= 0 else tail


@lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """Quantile (inverse CDF) of Student's t: the ``t`` with ``t_cdf(t, df) == p``.

    Bisection to 1e-12 relative precision; ``t_quantile(0.975, 9) == 2.2622...``.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def _finite_values(values: Iterable[float]) -> np.ndarray:
    """Values as a float array with NaN/inf/None dropped."""
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def mean_ci(values: Iterable[float], level: float = 0.95) -> MeanCI:
    """Mean and two-sided Student-t confidence interval of ``values`` (non-finite dropped).

    ``half = t_{(1+level)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard
    deviation (``ddof=1``).
    """
    arr = _finite_values(values)
    n = int(arr.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, math.nan, 0, level)
    mean = float(arr.mean())
    if n == 1:
        return MeanCI(mean, mean, mean, 0.0, 1, level)
    half = t_quantile(0.5 + level / 2.0, n - 1) * float(arr.std(ddof=1)) / math.sqrt(n)
    return MeanCI(mean, mean - half, mean + half, half, n, level)


def geometric_mean_ci(values: Iterable[float], level: float = 0.95) -> MeanCI:
    """Geometric mean with a t interval computed on log10 of the positive ``values``.

    Non-positive and non-finite values are dropped (they cannot be drawn on a log
    axis). ``half`` is the half width in log10 units.
    """
    arr = _finite_values(values)
    arr = arr[arr > 0]
    ci = mean_ci(np.log10(arr), level)
    if ci.n == 0:
        return ci
    return MeanCI(10.0 ** ci.mean, 10.0 ** ci.lo, 10.0 ** ci.hi, ci.half, ci.n, level)


#: Fractions at exactly 0 or 1 enter the logit as this distance from the boundary.
LOGIT_EPS: float = 1e-3

#: How intervals of means of per-seed fractions are computed (stated on the page).
FRACTION_CI_METHOD = ("95% Student-t interval of the per-seed fractions on the logit scale, transformed back "
                      f"(fractions of exactly 0 or 1 taken as {LOGIT_EPS:g} / {1 - LOGIT_EPS:g}), so it stays "
                      "inside [0, 1]")

#: How intervals of proportions of seeds are computed (stated on the page).
SEED_FRACTION_CI_METHOD = "95% Wilson score interval of the fraction k/n (inside [0, 1] by construction)"


def normal_quantile(p: float) -> float:
    """Quantile of the standard normal distribution (``normal_quantile(0.975) == 1.95996...``).

    Bisection on the normal CDF ``0.5 * erfc(-x / sqrt(2))`` (no scipy needed).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14:
            break
    return 0.5 * (lo + hi)


def wilson_interval(k: int, n: int, level: float = 0.95) -> MeanCI:
    """Wilson score interval of a proportion ``k / n`` (e.g. seeds that stopped).

    ``center = (p + z^2 / 2n) / (1 + z^2 / n)``, ``half = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)``
    with ``z`` the normal quantile; the bounds lie inside [0, 1] for every ``k``,
    including 0 and ``n``. ``mean`` is ``k / n`` (not the Wilson centre), ``half``
    the Wilson half width. ``n == 0`` gives NaNs.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, math.nan, 0, level)
    p = k / n
    z = normal_quantile(0.5 + level / 2.0)
    denom = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    # The score interval always contains p; min/max only remove rounding (k = 0 or n gives exactly 0 / 1).
    return MeanCI(p, max(0.0, min(p, center - half)), min(1.0, max(p, center + half)), half, n, level)


def logit(p: np.ndarray | float, eps: float = LOGIT_EPS) -> np.ndarray:
    """``log(p / (1 - p))`` of fractions clamped to ``[eps, 1 - eps]``."""
    q = np.clip(np.asarray(p, dtype=float), eps, 1.0 - eps)
    return np.log(q / (1.0 - q))


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def fraction_mean_ci(values: Iterable[float], level: float = 0.95) -> MeanCI:
    """Mean of per-seed fractions with a t interval on the logit scale (inside [0, 1]).

    ``mean`` is the arithmetic mean of the fractions (what the tables print). The
    interval is ``expit(mean(logit x) -+ t s_logit / sqrt n)`` with fractions of
    exactly 0 or 1 clamped to :data:`LOGIT_EPS` from the boundary, widened if needed
    so that it contains ``mean``; identical values give a zero-width interval.
    Values outside [0, 1] are rejected: they are not fractions.
    """
    arr = _finite_values(values)
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(f"fractions must lie in [0, 1], got {arr.min():g} … {arr.max():g}")
    n = int(arr.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, math.nan, 0, level)
    mean = float(arr.mean())
    if n == 1 or float(arr.max() - arr.min()) == 0.0:
        return MeanCI(mean, mean, mean, 0.0, n, level)
    z = logit(arr)
    half = t_quantile(0.5 + level / 2.0, n - 1) * float(z.std(ddof=1)) / math.sqrt(n)
    lo, hi = _expit(float(z.mean()) - half), _expit(float(z.mean()) + half)
    lo, hi = min(lo, mean), max(hi, mean)
    return MeanCI(mean, lo, hi, half, n, level)


# ------------------------------------------------------------------ medians of censored values
#: Which order statistic the median is (stated on the page).
MEDIAN_DEFINITION = ("X_(ceil(n/2)), the smallest value with at least half of the seeds at or below it (for "
                     "stopping episodes: the episode by which half of the seeds had stopped; the lower middle value "
                     "for an even n)")

#: How the interval of a median is computed (stated on the page).
MEDIAN_CI_METHOD = ("distribution-free order-statistic interval of the median [X_(k), X_(n+1-k)] with the largest k "
                    "whose binomial coverage 1 - 2 P(Bin(n, 1/2) < k) is at least 95% (actual coverage stated; "
                    "needs n >= 6)")


@dataclass(frozen=True)
class MedianCI:
    """Median of values some of which are right-censored (``>= value``), with its order-statistic CI.

    Every quantity is a pair of bounds (``*_lo <= true value <= *_hi``): a censored value
    ``c`` is only known to be ``>= c``, so an order statistic is bracketed by the same
    order statistic with the censored values taken at ``c`` (low) and at +inf (high).
    When every censored value is at least every uncensored one (runs that ran the full
    training and never stopped, against runs that stopped before) the low and high
    bounds agree wherever they are finite. ``ci_k`` is the rank of the interval's lower
    end (0 when ``n`` is too small for ``level``), ``coverage`` the exact binomial
    coverage of ``[X_(k), X_(n+1-k)]`` (NaN without an interval); ``n_censored`` counts the
    censored values.
    """

    median_lo: float
    median_hi: float
    ci_lo_lo: float
    ci_lo_hi: float
    ci_hi_lo: float
    ci_hi_hi: float
    min_lo: float
    min_hi: float
    max_lo: float
    max_hi: float
    n: int
    n_censored: int
    ci_k: int
    coverage: float
    level: float = 0.95

    @property
    def has_interval(self) -> bool:
        """True when ``n`` is large enough for an order-statistic interval at ``level``."""
        return self.ci_k >= 1


def median_ci_ranks(n: int, level: float = 0.95) -> tuple[int, float]:
    """``(k, coverage)``: the largest ``k`` with ``1 - 2 P(Bin(n, 1/2) <= k - 1) >= level``.

    ``[X_(k), X_(n+1-k)]`` then covers the median with probability ``coverage`` for any
    continuous distribution; ``(0, nan)`` when even ``[X_(1), X_(n)]`` falls short
    (``n < 6`` at 95 %). ``median_ci_ranks(10) == (2, 0.978515625)``.
    """
    best = (0, math.nan)
    cdf = 0.0  # P(B <= k - 1)
    for k in range(1, n // 2 + 1):
        cdf += math.comb(n, k - 1) / 2.0 ** n
        coverage = 1.0 - 2.0 * cdf
        if coverage >= level - 1e-12:
            best = (k, coverage)
        else:
            break
    return best


def _order_stat_bounds(values: np.ndarray, censored: np.ndarray, k: int) -> tuple[float, float]:
    """Bounds of the k-th smallest (1-based) true value; censored values are ``>= value``."""
    low = np.sort(values)[k - 1]
    high = np.sort(np.where(censored, math.inf, values))[k - 1]
    return float(low), float(high)


def median_ci(values: Iterable[float], censored: Iterable[bool] | None = None, level: float = 0.95) -> MedianCI:
    """Median, range and order-statistic interval of ``values`` with right-censored entries.

    ``censored[i]`` means the true value is ``>= values[i]`` (a run that never stopped,
    counted at the episodes it ran). Non-finite values are dropped with their flags.
    The median is the order statistic ``X_(ceil(n/2))``: the smallest value that at least
    half of the values are at or below (for stopping episodes: the episode by which half
    of the seeds had stopped; with these censored values it is the Kaplan-Meier median).
    For an even count it is the lower of the two middle values, not their mean, which
    would mix a stop with a never-stopped seed's lower bound. See :class:`MedianCI` for
    the bounds and :data:`MEDIAN_CI_METHOD` for the interval.
    """
    vals = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    cens = np.zeros(len(vals), bool) if censored is None else np.asarray(list(censored), dtype=bool)
    if len(cens) != len(vals):
        raise ValueError(f"values and censored flags differ in length ({len(vals)} vs {len(cens)})")
    keep = np.isfinite(vals)
    vals, cens = vals[keep], cens[keep]
    n = int(vals.size)
    nan = math.nan
    if n == 0:
        return MedianCI(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0, 0, 0, nan, level)
    med = _order_stat_bounds(vals, cens, (n + 1) // 2)
    k, coverage = median_ci_ranks(n, level)
    lo = _order_stat_bounds(vals, cens, k) if k else (nan, nan)
    hi = _order_stat_bounds(vals, cens, n + 1 - k) if k else (nan, nan)
    bottom, top = _order_stat_bounds(vals, cens, 1), _order_stat_bounds(vals, cens, n)
    return MedianCI(med[0], med[1], lo[0], lo[1], hi[0], hi[1], bottom[0], bottom[1], top[0], top[1],
                    n, int(cens.sum()), k, coverage, level)


# ------------------------------------------------------------------ correlations
#: How correlation intervals are computed (stated on the page).
CORRELATION_CI_METHOD = ("95% Fisher-z interval: tanh(atanh r -+ z_0.975 se) with se = 1/sqrt(n-3) for Pearson's r "
                         "and sqrt(1.06/(n-3)) for Spearman's rank correlation (Fieller, Hartley & Pearson 1957); "
                         "needs n >= 4")


@dataclass(frozen=True)
class Correlation:
    """A correlation coefficient with its Fisher-z interval (NaN when undefined)."""

    method: str        # "pearson" | "spearman"
    r: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    @property
    def defined(self) -> bool:
        """False when fewer than 3 pairs or a constant variable leave r undefined."""
        return bool(np.isfinite(self.r))


def correlation(x: Iterable[float], y: Iterable[float], method: str = "pearson",
                level: float = 0.95) -> Correlation:
    """Pearson's or Spearman's correlation of the finite pairs of ``x`` and ``y``, with a Fisher-z CI.

    Spearman's coefficient is Pearson's of the average ranks (ties share their mean
    rank). ``r`` is NaN with fewer than 3 pairs or when a variable is constant; the
    interval is NaN with fewer than 4 pairs (Fisher's se needs n > 3) and equal to
    ``[r, r]`` when ``|r| == 1``.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    xs = np.asarray([np.nan if v is None else v for v in x], dtype=float)
    ys = np.asarray([np.nan if v is None else v for v in y], dtype=float)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y differ in length ({xs.size} vs {ys.size})")
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    n = int(xs.size)
    nan = math.nan
    if method == "spearman":
        import pandas as pd  # ranks with ties averaged (pandas is a dependency of the report)

        xs = pd.Series(xs).rank(method="average").to_numpy()
        ys = pd.Series(ys).rank(method="average").to_numpy()
    if n < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return Correlation(method, nan, nan, nan, n, level)
    dx, dy = xs - xs.mean(), ys - ys.mean()
    r = float(np.clip((dx @ dy) / math.sqrt((dx @ dx) * (dy @ dy)), -1.0, 1.0))
    if n < 4:
        return Correlation(method, r, nan, nan, n, level)
    if abs(r) == 1.0:
        return Correlation(method, r, r, r, n, level)
    se = math.sqrt((1.06 if method == "spearman" else 1.0) / (n - 3))
    z, q = math.atanh(r), normal_quantile(0.5 + level / 2.0)
    return Correlation(method, r, math.tanh(z - q * se), math.tanh(z + q * se), n, level)


# ------------------------------------------------------------------ differences of means (Welch)
#: How the interval of a difference of two means is computed (stated on the page).
WELCH_CI_METHOD = ("95% Welch interval: d -+ t_{0.975, nu} sqrt(s_a^2/n_a + s_b^2/n_b), nu the Welch-Satterthwaite "
                   "degrees of freedom (the two sets of seeds may differ in size and spread); needs 2 seeds on each "
                   "side")


def welch_diff_ci(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> MeanCI:
    """Difference of means ``mean(a) - mean(b)`` with Welch's two-sided ``level`` interval.

    Non-finite values are dropped. ``half = t_{(1+level)/2, nu} * se`` with
    ``se = sqrt(s_a^2/n_a + s_b^2/n_b)`` and the Welch-Satterthwaite
    ``nu = se^4 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1))``; ``se == 0``
    (both samples constant) gives a zero-width interval. ``n`` is ``min(n_a, n_b)``:
    below 2 the interval is ``[d, d]`` (``n == 1``, no interval can be computed) or
    NaN (``n == 0``, an empty side), as :func:`mean_ci` does.
    """
    xa, xb = _finite_values(a), _finite_values(b)
    n = int(min(xa.size, xb.size))
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, math.nan, 0, level)
    d = float(xa.mean() - xb.mean())
    if n == 1:
        return MeanCI(d, d, d, 0.0, 1, level)
    va, vb = float(xa.var(ddof=1)) / xa.size, float(xb.var(ddof=1)) / xb.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return MeanCI(d, d, d, 0.0, n, level)
    nu = se ** 4 / (va * va / (xa.size - 1) + vb * vb / (xb.size - 1))
    half = t_quantile(0.5 + level / 2.0, nu) * se
    return MeanCI(d, d - half, d + half, half, n, level)


# ------------------------------------------------------------------ IQM with a stratified bootstrap (rliable)
#: Bootstrap replications of :func:`stratified_bootstrap_ci` in the report (Monte-Carlo error of a 95% percentile
#: bound well below the precision the tables print).
BOOTSTRAP_REPS: int = 10_000

#: Seed of the report's bootstrap generator: the same runs give the same intervals in every build.
BOOTSTRAP_SEED: int = 0

#: What the IQM is (stated on the page).
IQM_DEFINITION = ("interquartile mean (IQM): the mean of the values left after removing floor(n/4) values from each "
                  "end of the sorted runs (scipy.stats.trim_mean(x, 0.25), as rliable's aggregate_iqm)")

#: How the IQM's interval is computed (stated on the page).
BOOTSTRAP_CI_METHOD = (f"95% stratified bootstrap percentile interval ({BOOTSTRAP_REPS:,} replications, generator "
                       f"seed {BOOTSTRAP_SEED}): each replication resamples the seeds of every configuration with "
                       "replacement within that configuration (strata = configurations), as the rliable library "
                       "does, and the interval runs from the 2.5th to the 97.5th percentile of the replicated IQMs")


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """IQM of each row of a 2-D array of finite values (sorted, floor(n/4) cut from each end)."""
    n = x.shape[1]
    cut = n // 4
    return np.sort(x, axis=1)[:, cut:n - cut].mean(axis=1)


def iqm(values: Iterable[float]) -> float:
    """Interquartile mean of ``values`` (non-finite dropped): ``scipy.stats.trim_mean(x, 0.25)``.

    The values are sorted and ``floor(n / 4)`` are removed from each end before
    averaging, exactly as ``rliable.metrics.aggregate_iqm`` does over all runs and
    tasks; for ``n < 4`` nothing is removed (the plain mean). NaN when empty. Robust to
    a quarter of the runs being outliers on either side, yet using half of them.
    """
    arr = _finite_values(values)
    if arr.size == 0:
        return math.nan
    return float(_iqm_rows(arr[None, :])[0])


@dataclass(frozen=True)
class BootstrapCI:
    """A statistic over stratified runs with its bootstrap percentile interval.

    ``n``: values that entered (finite), ``strata``: non-empty strata; ``lo``/``hi``
    equal ``estimate`` when every stratum has one value (nothing to resample) and are
    NaN when there are no values.
    """

    estimate: float
    lo: float
    hi: float
    n: int
    strata: int
    reps: int
    level: float = 0.95
    seed: int = BOOTSTRAP_SEED


def stratified_bootstrap_ci(strata: Sequence[Iterable[float]], reps: int = BOOTSTRAP_REPS, level: float = 0.95,
                            seed: int = BOOTSTRAP_SEED) -> BootstrapCI:
    """IQM over all values of all ``strata`` with a stratified bootstrap percentile interval.

    ``strata`` are the values of each configuration (its seeds); non-finite values
    are dropped and empty strata ignored. Each of ``reps`` replications draws, for
    every stratum of ``m`` values, ``m`` of its values with replacement (the strata
    keep their sizes, so a configuration with fewer seeds keeps its weight), and
    computes the IQM of the pooled draw; the interval is the ``(1 -+ level) / 2``
    quantiles of the replications (linear interpolation, ``numpy.quantile``), i.e.
    rliable's ``get_interval_estimates(..., method="percentile")`` with its default
    run-only stratified bootstrap, which needs equal strata sizes, generalised to
    unequal ones. ``numpy.random.default_rng(seed)`` makes it deterministic.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    groups = [g for g in (_finite_values(s) for s in strata) if g.size]
    n = int(sum(g.size for g in groups))
    if n == 0:
        return BootstrapCI(math.nan, math.nan, math.nan, 0, 0, reps, level, seed)
    estimate = iqm(np.concatenate(groups))
    if all(g.size == 1 for g in groups):
        return BootstrapCI(estimate, estimate, estimate, n, len(groups), reps, level, seed)
    rng = np.random.default_rng(seed)
    draws = np.concatenate([g[rng.integers(0, g.size, size=(reps, g.size))] for g in groups], axis=1)
    stats = _iqm_rows(draws)
    lo, hi = np.quantile(stats, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return BootstrapCI(estimate, float(lo), float(hi), n, len(groups), reps, level, seed)
