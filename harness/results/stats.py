"""The statistics of vlh, defined once: percentiles, Holm, Mann–Whitney U and bootstrap CIs of a quantile shift.

Used by the run summary (`results/store.py`, `report/summary.py`), the headline and SLO figures, the history, the
report's figures and comparison (`report/compare.py`) and the nightly regression check (`suite/regress.py`), so a
p95 is the same number wherever vlh prints it.

- **Percentiles** are numpy's default (linear interpolation between order statistics) over the finite values.
- **Holm–Bonferroni**: step-down adjusted p-values, monotone, capped at 1; `None` (not tested) stays `None`.
- **Mann–Whitney U**: scipy's, with the alternative spelled out (`greater`: `x` tends to be larger than `y`).
- **Bootstrap of a quantile shift**: the bootstrap distribution of a sample quantile is drawn *exactly* instead of
  by resampling. For the quantile defined as the smallest x with F(x) ≥ q (numpy's `inverted_cdf`), a resample's
  quantile is ≤ x_(j) exactly when at least ⌈qn⌉ of its n draws are ≤ x_(j), which is Binomial(n, j/n) — so drawing
  from that distribution *is* drawing bootstrap quantiles, at O(n) cost for any number of replicates
  (tests/test_stats.py checks it against brute-force resampling). The CI of q(x) − q(y) is the percentile interval
  of the difference of independent draws.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import stats as _scipy_stats


def finite(values) -> np.ndarray:
    """The finite values of any sequence (None, NaN, ±inf and non-numbers dropped) as a float array."""
    if values is None:
        return np.array([], dtype=float)
    try:
        v = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        v = np.asarray([_to_float(x) for x in values], dtype=float)
    v = v.ravel()
    return v[np.isfinite(v)]


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0–100, linear interpolation) of the finite values; None when there are none."""
    v = finite(values)
    return float(np.percentile(v, q)) if len(v) else None


def percentiles(values, qs: Iterable[float]) -> list[float | None]:
    """Several percentiles of the finite values at once (None for each when there are none)."""
    qs = list(qs)
    v = finite(values)
    if not len(v):
        return [None] * len(qs)
    return [float(x) for x in np.percentile(v, qs)]


def describe(values, qs: dict[str, float]) -> dict:
    """{name: percentile for each of `qs` ({"p50": 50, …}), "max", "min", "mean", "n"} of the finite values."""
    v = finite(values)
    out: dict = dict(zip(qs, percentiles(v, qs.values())))
    if len(v):
        out.update(max=float(v.max()), min=float(v.min()), mean=float(v.mean()))
    else:
        out.update(max=None, min=None, mean=None)
    out["n"] = int(len(v))
    return out


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (ties in input order; None stays None and is not counted)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        out[i] = running
    return out


def mann_whitney(x, y, alternative: str = "two-sided") -> tuple[float, float]:
    """(U statistic of x, p-value) of scipy's Mann–Whitney U test; `greater`: x tends to be larger than y."""
    res = _scipy_stats.mannwhitneyu(np.asarray(x, float), np.asarray(y, float), alternative=alternative)
    return float(res.statistic), float(res.pvalue)


def bootstrap_quantiles(x, q: float, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`n_boot` draws of the bootstrap distribution of the `inverted_cdf` q-quantile (0–1) of `x` (exact)."""
    xs = np.sort(np.asarray(x, dtype=float))
    n = len(xs)
    m = max(1, math.ceil(q * n - 1e-9))
    j = np.arange(1, n + 1)
    cdf = _scipy_stats.binom.sf(m - 1, n, j / n)  # P(quantile of a resample <= x_(j))
    cdf[-1] = 1.0
    idx = np.searchsorted(cdf, rng.random(n_boot), side="left")
    return xs[np.minimum(idx, n - 1)]


def shift_ci(x, y, q: float, n_boot: int, ci: float, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile-bootstrap `ci` interval of quantile_q(x) − quantile_q(y), x and y resampled independently."""
    d = bootstrap_quantiles(x, q, n_boot, rng) - bootstrap_quantiles(y, q, n_boot, rng)
    lo, hi = np.quantile(d, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def number_or_none(v) -> float | None:
    """``v`` as a finite float, or None (missing, NaN, infinite, not a number): for JSON and span attributes."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _to_float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan
