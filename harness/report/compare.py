"""Is run B slower than run A, and which stage moved? Mann–Whitney U + bootstrap CIs of the p50/p95 shift.

`compare_samples(a, b)` tests one metric: the two-sided Mann–Whitney U p-value and percentile bootstrap
95 % CIs of p50(b) − p50(a) and p95(b) − p95(a) (the exact quantile bootstrap of `harness/results/stats.py`).

`compare_runs(a, b)` does that for TTFA, provider TTFT, the gap and every stage; stage p-values are Holm-corrected;
"the stage that moved" is the one with the largest significant p50 shift of at least `min_effect_ms`.
"""

from __future__ import annotations


import numpy as np

from harness.report.load import Run
from harness.results.stats import finite, holm, mann_whitney, percentile, shift_ci
from harness.results.schema import HEADLINE_METRICS, STAGES, stage_label
from harness.report.summary import EXTRA_SPANS, ok_turns, stage_values

ALPHA = 0.05
N_BOOT = 4000
MIN_EFFECT_MS = 5.0
METRIC_LABELS = {"ttfa_ms": "TTFA at the ear", "provider_ttft_ms": "provider TTFT", "gap_ms": "gap"}


def compare_samples(a, b, n_boot: int = N_BOOT, seed: int = 0, alpha: float = ALPHA) -> dict:
    a = _finite(a)
    b = _finite(b)
    out = {"n_a": int(len(a)), "n_b": int(len(b))}
    if len(a) < 2 or len(b) < 2:
        out.update({"p_value": None, "significant": False, "enough": False})
        for k in ("p50", "p95"):
            out.update({f"{k}_a": _q(a, k), f"{k}_b": _q(b, k), f"d_{k}": None, f"ci_{k}": None})
        return out
    rng = np.random.default_rng(seed)
    p = mann_whitney(b, a, "two-sided")[1]
    out.update({"p_value": p, "significant": p < alpha, "enough": True})
    for k, q in (("p50", 0.5), ("p95", 0.95)):
        qa, qb = _q(a, k), _q(b, k)
        lo, hi = shift_ci(b, a, q, n_boot, 1 - alpha, rng)
        out.update({f"{k}_a": qa, f"{k}_b": qb, f"d_{k}": qb - qa, f"ci_{k}": (float(lo), float(hi))})
    return out


def compare_runs(a: Run, b: Run, n_boot: int = N_BOOT, alpha: float = ALPHA,
                 min_effect_ms: float = MIN_EFFECT_MS) -> dict:
    """Run b against baseline a: headline metrics, every stage, the stage that moved and a sentence."""
    oa, ob = ok_turns(a.turns), ok_turns(b.turns)
    metrics = {}
    for i, m in enumerate(HEADLINE_METRICS):
        r = compare_samples(oa[m], ob[m], n_boot, seed=i, alpha=alpha)
        r["label"] = METRIC_LABELS[m]
        metrics[m] = r
    stages = []
    for i, s in enumerate(STAGES + EXTRA_SPANS):
        r = compare_samples(stage_values(oa, s), stage_values(ob, s), n_boot, seed=100 + i, alpha=alpha)
        r.update({"stage": s, "label": stage_label(s)})
        stages.append(r)
    for r, p in zip(stages, holm([r["p_value"] for r in stages])):
        r["p_holm"] = p
        r["significant"] = p is not None and p < alpha
        r["moved"] = (r["significant"] and r["d_p50"] is not None and abs(r["d_p50"]) >= min_effect_ms
                      and r["ci_p50"] is not None and (r["ci_p50"][0] > 0 or r["ci_p50"][1] < 0))
    moved = sorted([r for r in stages if r["moved"]], key=lambda r: -abs(r["d_p50"]))
    out = {"a": a.run_id, "b": b.run_id, "metrics": metrics, "stages": stages,
           "moved": [r["stage"] for r in moved], "alpha": alpha, "min_effect_ms": min_effect_ms}
    out["sentence"] = sentence(out)
    return out


def sentence(c: dict) -> str:
    t = c["metrics"]["ttfa_ms"]
    if not t["enough"]:
        return "too few answered turns to compare (need at least 2 in each run)"
    lo, hi = t["ci_p50"]
    head = (f"TTFA p50 {t['p50_a']:.0f} → {t['p50_b']:.0f} ms ({t['d_p50']:+.0f} ms, "
            f"95% CI {lo:+.0f} … {hi:+.0f}), Mann–Whitney p = {_p(t['p_value'])}: ")
    head += "significant." if t["significant"] else "not significant."
    moved = [r for r in c["stages"] if r["moved"]]
    moved.sort(key=lambda r: -abs(r["d_p50"]))
    if moved:
        top = moved[0]
        head += (f" The stage that moved: {top['label']} ({top['d_p50']:+.0f} ms p50, "
                 f"Holm-corrected p = {_p(top['p_holm'])})")
        if len(moved) > 1:
            head += "; also " + ", ".join(f"{r['label']} {r['d_p50']:+.0f} ms" for r in moved[1:])
        head += "."
    elif t["significant"]:
        head += " No single stage moved significantly; see unattributed and residual."
    else:
        head += " No stage moved significantly."
    return head


def _finite(x) -> np.ndarray:
    return finite(x)


def _q(x: np.ndarray, k: str) -> float | None:
    return percentile(x, {"p50": 50, "p95": 95}[k])


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"
