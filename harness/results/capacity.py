"""Capacity verdicts: one load step's turns against SLOs, with distribution-free confidence bounds.

- A percentile SLO (`ttfa_p95_ms`…): the point value as harness.results.slo computes it, and a one-sided upper
  confidence bound from order statistics (no distribution assumed): the smallest order statistic x(k) with
  P(Binomial(n, q) < k) ≥ confidence. With too few turns (e.g. fewer than 59 for p95 at 95 %) there is none.
- `no_response_rate`: the point rate and its Clopper–Pearson upper bound.
A step *meets* the SLOs when every point value is within its limit; the capacity is *confident* when every upper
bound is within its limit too.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from harness.results.slo import evaluate

CONFIDENCE = 0.95
PERCENTILE_SLOS = {"ttfa_p50_ms": ("ttfa_ms", 50), "ttfa_p95_ms": ("ttfa_ms", 95),
                   "interruption_p50_ms": ("interruption_ms", 50), "interruption_p95_ms": ("interruption_ms", 95)}


def quantile_upper_bound(values, q: float, confidence: float = CONFIDENCE) -> float | None:
    """Upper bound of the q-th percentile at `confidence` (order statistics), or None if n is too small."""
    v = np.sort(np.asarray([x for x in values if x is not None and np.isfinite(x)], float))
    n = len(v)
    if not n:
        return None
    k = int(stats.binom.ppf(confidence, n, q / 100.0)) + 1  # 1-based order statistic
    while k <= n and stats.binom.cdf(k - 1, n, q / 100.0) < confidence:
        k += 1
    return float(v[k - 1]) if k <= n else None


def rate_upper_bound(failures: int, n: int, confidence: float = CONFIDENCE) -> float | None:
    """Clopper–Pearson one-sided upper bound of a rate."""
    if n <= 0:
        return None
    if failures >= n:
        return 1.0
    return float(stats.beta.ppf(confidence, failures + 1, n - failures))


def step_verdict(turns: pd.DataFrame, thresholds: dict[str, float], level: int) -> dict:
    """One step: point values (slo.evaluate), their upper bounds, met / confidently met."""
    results = evaluate(turns, thresholds)
    out = {"level": level, "turns": int(len(turns)), "slos": []}
    ok = turns[turns["status"] == "ok"] if len(turns) else turns
    for r in results:
        bound = None
        if r.name in PERCENTILE_SLOS:
            col, q = PERCENTILE_SLOS[r.name]
            if col in ok:
                bound = quantile_upper_bound(ok[col].tolist(), q)
        elif r.name == "no_response_rate":
            bound = rate_upper_bound(int((turns["status"] == "no_response").sum()), len(turns))
        out["slos"].append({**r.to_dict(), "upper_bound": bound,
                            "confident": bool(r.passed and bound is not None and bound <= r.threshold)})
    out["met"] = bool(results) and all(r.passed for r in results)
    out["confident"] = out["met"] and all(s["confident"] for s in out["slos"])
    if len(ok):
        out["ttfa_p50_ms"] = float(np.percentile(ok["ttfa_ms"].dropna(), 50))
        out["ttfa_p95_ms"] = float(np.percentile(ok["ttfa_ms"].dropna(), 95))
    return out


def capacity_statement(steps: list[dict], confidence: float = CONFIDENCE) -> dict:
    """The largest level before the first step that broke an SLO, and a sentence a reader can act on."""
    best, broke = None, None
    for s in steps:
        if s["met"]:
            best = s
        else:
            broke = s
            break
    pct = f"{confidence * 100:.0f} %"
    if best is None:
        first = steps[0] if steps else None
        text = ("no level met the SLOs" + (f": at {first['level']} concurrent calls " + _broken(first)
                                           if first else ""))
        return {"capacity": None, "confident": False, "statement": text}
    bounds = "; ".join(f"{s['name']} {_v(s['value'])}" + (f" (upper {pct} bound {_v(s['upper_bound'])})"
                                                         if s["upper_bound"] is not None else
                                                         " (too few turns for a bound)")
                       for s in best["slos"])
    text = f"capacity: {best['level']} concurrent calls meet every SLO over {best['turns']} turns — {bounds}"
    if broke is not None:
        text += f"; at {broke['level']} calls " + _broken(broke)
    else:
        text += "; no step broke an SLO: the capacity is at least this (raise --max-users)"
    if best["confident"]:
        text += f". Confident at {pct}: every upper bound is within its limit."
    else:
        text += (f". Not confident at {pct}: an upper bound exceeds its limit or is missing — hold each step longer "
                 "(--step-time) for more turns.")
    return {"capacity": best["level"], "confident": best["confident"], "broke_at": broke["level"] if broke else None,
            "statement": text}


def _broken(step: dict) -> str:
    bad = [s for s in step["slos"] if not s["passed"]]
    return "broke " + ", ".join(s["detail"] for s in bad) if bad else "failed"


def _v(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.0f} ms" if abs(x) >= 10 else f"{x:.3g}"
