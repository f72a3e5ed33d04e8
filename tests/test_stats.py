"""harness.results.stats: the one statistics engine (percentiles, Holm, Mann–Whitney U, exact quantile bootstrap),
checked against independent computations (numpy/scipy called directly, brute-force resampling, Holm by hand)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.results import stats


def test_percentile_is_numpy_linear_over_finite_values_only():
    v = [10.0, None, 30.0, float("nan"), 20.0, float("inf"), 40.0]
    assert stats.percentile(v, 50) == pytest.approx(25.0)
    assert stats.percentile(v, 95) == pytest.approx(np.percentile([10, 20, 30, 40], 95))
    assert stats.percentile([], 50) is None and stats.percentile([None, float("nan")], 50) is None
    assert stats.percentile(pd.Series([1.0, pd.NA, 3.0], dtype="Float64"), 50) == pytest.approx(2.0)
    assert stats.percentiles([1, 2, 3, 4, 5], [50, 90]) == pytest.approx([3.0, 4.6])
    assert stats.percentiles([], [50, 90]) == [None, None]


def test_describe_names_each_figure():
    d = stats.describe([3.0, 1.0, 2.0, None], {"p50": 50, "p90": 90})
    assert d == {"p50": 2.0, "p90": pytest.approx(2.8), "max": 3.0, "min": 1.0, "mean": 2.0, "n": 3}
    assert stats.describe([], {"p50": 50}) == {"p50": None, "max": None, "min": None, "mean": None, "n": 0}


def test_holm_by_hand():
    adj = stats.holm([0.01, 0.04, None, 0.03])  # sorted 0.01, 0.03, 0.04 → ×3, ×2, ×1, kept monotone
    assert adj[2] is None
    assert adj[0] == pytest.approx(0.03) and adj[3] == pytest.approx(0.06) and adj[1] == pytest.approx(0.06)
    # sorted 0.005×4, 0.01×3, 0.02×2, 0.03×1 → 0.02, 0.03, 0.04, max(0.04, 0.03)
    assert stats.holm([0.01, 0.02, 0.03, 0.005]) == pytest.approx([0.03, 0.04, 0.04, 0.02])
    assert stats.holm([0.6, 0.9]) == [1.0, 1.0] and stats.holm([]) == []


def test_mann_whitney_is_scipy():
    rng = np.random.default_rng(3)
    x, y = rng.normal(10, 1, 40), rng.normal(10.5, 1, 50)
    for alt in ("two-sided", "greater", "less"):
        ref = sps.mannwhitneyu(x, y, alternative=alt)
        assert stats.mann_whitney(x, y, alt) == pytest.approx((ref.statistic, ref.pvalue))


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_exact_bootstrap_matches_brute_force_resampling(q):
    rng = np.random.default_rng(11)
    x = np.round(rng.lognormal(6, 0.5, 250))  # with ties
    exact = stats.bootstrap_quantiles(x, q, 100000, np.random.default_rng(1))
    idx = rng.integers(0, len(x), size=(20000, len(x)))
    brute = np.quantile(x[idx], q, axis=1, method="inverted_cdf")
    for p in (0.025, 0.25, 0.5, 0.75, 0.975):
        a, b = np.quantile(exact, p), np.quantile(brute, p)
        # the same order statistic, or a neighbour (Monte-Carlo noise of the brute force)
        assert abs(np.searchsorted(np.sort(x), a) - np.searchsorted(np.sort(x), b)) <= 2, (p, a, b)


def test_shift_ci_agrees_with_brute_force_and_is_reproducible():
    rng = np.random.default_rng(7)
    x, y = rng.normal(680, 60, 120), rng.normal(600, 60, 150)
    lo, hi = stats.shift_ci(x, y, 0.5, 20000, 0.95, np.random.default_rng(2))
    bx = np.quantile(x[rng.integers(0, len(x), (20000, len(x)))], 0.5, axis=1, method="inverted_cdf")
    by = np.quantile(y[rng.integers(0, len(y), (20000, len(y)))], 0.5, axis=1, method="inverted_cdf")
    blo, bhi = np.quantile(bx - by, [0.025, 0.975])
    assert lo == pytest.approx(blo, abs=4) and hi == pytest.approx(bhi, abs=4)
    assert lo < 80 < hi
    assert stats.shift_ci(x, y, 0.5, 500, 0.95, np.random.default_rng(9)) == \
        stats.shift_ci(x, y, 0.5, 500, 0.95, np.random.default_rng(9))


def test_number_or_none_keeps_finite_numbers_only():
    assert stats.number_or_none("1.5") == 1.5
    assert stats.number_or_none(3) == 3.0
    for bad in (None, "x", float("nan"), float("inf"), -float("inf"), object()):
        assert stats.number_or_none(bad) is None
