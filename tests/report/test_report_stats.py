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
