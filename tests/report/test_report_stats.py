"""Student-t quantiles and confidence intervals against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradasym.report.stats import geometric_mean_ci, mean_ci, t_cdf, t_quantile


@pytest.mark.parametrize("df, expected", [
    (1, 12.706204736), (2, 4.302652730), (4, 2.776445105), (9, 2.262157163), (29, 2.045229642),
    (1000, 1.962339081),
])
def test_t_quantile_975_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, rel=1e-8)


def test_t_quantile_other_levels_and_symmetry():
    assert t_quantile(0.995, 5) == pytest.approx(4.032142984, rel=1e-8)
    assert t_quantile(0.5, 7) == 0.0
    assert t_quantile(0.025, 9) == pytest.approx(-t_quantile(0.975, 9))
    assert t_cdf(t_quantile(0.9, 3), 3) == pytest.approx(0.9, abs=1e-10)
    assert t_cdf(0.0, 5) == pytest.approx(0.5)


def test_mean_ci_known_sample():
    ci = mean_ci([1, 2, 3, 4])
    # s = 1.2909944, t(0.975, 3) = 3.1824463, half = t * s / 2
    assert ci.mean == 2.5 and ci.n == 4
    assert ci.half == pytest.approx(3.182446305 * 1.290994449 / 2, rel=1e-8)
    assert (ci.lo, ci.hi) == pytest.approx((2.5 - ci.half, 2.5 + ci.half))


def test_mean_ci_seed_offsets_of_the_synthetic_sweep():
    ci = mean_ci([21, 23, 25])  # stop episodes of one synthetic configuration
    assert ci.mean == 23
    assert ci.half == pytest.approx(4.302652730 * 2 / math.sqrt(3), rel=1e-8)


def test_mean_ci_edge_cases():
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    one = mean_ci([7.0])
    assert (one.mean, one.lo, one.hi, one.half, one.n) == (7.0, 7.0, 7.0, 0.0, 1)
    assert mean_ci([1.0, np.nan, None, 3.0, np.inf]).n == 2
    assert mean_ci([5, 5, 5]).half == 0.0
    assert mean_ci([1, 2, 3], level=0.99).half > mean_ci([1, 2, 3], level=0.95).half


def test_geometric_mean_ci_is_computed_on_log10():
    ci = geometric_mean_ci([1.0, 10.0, 100.0, 0.0, -5.0])  # non-positive values are dropped
    assert ci.n == 3
    assert ci.mean == pytest.approx(10.0)
    half = 4.302652730 * 1.0 / math.sqrt(3)
    assert ci.half == pytest.approx(half, rel=1e-8)
    assert ci.lo == pytest.approx(10 ** (1 - half)) and ci.hi == pytest.approx(10 ** (1 + half))
    assert ci.lo > 0


# ------------------------------------------------------------------ intervals of fractions
from gradasym.report.stats import fraction_mean_ci, logit, normal_quantile, wilson_interval  # noqa: E402


def test_normal_quantile_known_values():
    assert normal_quantile(0.975) == pytest.approx(1.959963985, rel=1e-9)
    assert normal_quantile(0.5) == pytest.approx(0.0, abs=1e-12)
    assert normal_quantile(0.995) == pytest.approx(2.575829304, rel=1e-9)


@pytest.mark.parametrize("k, n, lo, hi", [
    (2, 3, 0.2076596, 0.9385081),    # Wilson (1927); e.g. Newcombe (1998) method 3
    (5, 10, 0.2365931, 0.7634069),
    (0, 10, 0.0, 0.2775328),         # upper = z^2 / (n + z^2)
    (10, 10, 0.7224672, 1.0),
    (1, 1, 0.2065493, 1.0),
])
def test_wilson_interval_known_values(k, n, lo, hi):
    ci = wilson_interval(k, n)
    assert ci.mean == pytest.approx(k / n) and ci.n == n
    assert (ci.lo, ci.hi) == pytest.approx((lo, hi), abs=1e-6)
    assert 0.0 <= ci.lo <= ci.mean <= ci.hi <= 1.0


def test_wilson_interval_edge_cases():
    assert wilson_interval(0, 0).n == 0 and math.isnan(wilson_interval(0, 0).lo)
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


def test_fraction_mean_ci_is_a_t_interval_on_the_logit_scale():
    vals = [0.2, 0.4, 0.6]
    ci = fraction_mean_ci(vals)
    z = np.log(np.array(vals) / (1 - np.array(vals)))
    half = 4.302652730 * z.std(ddof=1) / math.sqrt(3)
    expit = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert ci.mean == pytest.approx(0.4)
    assert ci.lo == pytest.approx(expit(z.mean() - half), rel=1e-9)
    assert ci.hi == pytest.approx(expit(z.mean() + half), rel=1e-9)


def test_fraction_mean_ci_stays_inside_0_1_where_the_t_interval_does_not():
    for vals in ([1.0, 1.0, 0.5], [0.0, 0.0, 0.3], [1.0, 0.97, 1.0], [0.0, 1.0]):
        assert mean_ci(vals).lo < 0 or mean_ci(vals).hi > 1
        ci = fraction_mean_ci(vals)
        assert 0.0 <= ci.lo <= ci.mean <= ci.hi <= 1.0, vals
    assert logit(1.0) == pytest.approx(math.log(0.999 / 0.001))  # exact 1 enters as 1 - 1e-3


def test_fraction_mean_ci_edge_cases():
    assert fraction_mean_ci([]).n == 0
    same = fraction_mean_ci([1.0, 1.0, 1.0])
    assert (same.mean, same.lo, same.hi) == (1.0, 1.0, 1.0)
    one = fraction_mean_ci([0.3])
    assert (one.lo, one.hi, one.n) == (0.3, 0.3, 1)
    with pytest.raises(ValueError, match="fractions"):
        fraction_mean_ci([0.5, 1.2])
