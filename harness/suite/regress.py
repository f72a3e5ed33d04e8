"""Regression checks: tonight's turns of a scenario against the pooled turns of its last N nights.

For TTFA and every stage (and interruption latency on barge-in scenarios), on the turns that got a reply:

1. **Significance**: one-sided Mann–Whitney U (tonight slower than baseline), Holm-adjusted across the metrics of
   the scenario, at ``alpha`` (default 0.01).
2. **Size**: the shift of the median (tonight p50 − baseline p50) must reach ``min_effect_ms`` (default 50 ms) and
   ``min_effect_pct`` of the baseline median (default 10 %). Either threshold can be switched off with 0.
3. **Beyond the night-to-night spread** (``night_guard``): the p50 shift must exceed how far any single baseline
   night's median sat above the other baseline nights' (turns of one night share that night's host load and
   network, so pooled turns overstate the evidence when nights differ; see ``night_noise``).
4. A metric **regressed** when all hold. The shifts of p50 and p95 come with percentile-bootstrap confidence
   intervals (tonight and baseline resampled independently, the exact quantile bootstrap of
   ``harness/results/stats.py``; fixed seed, so a verdict is reproducible).

The scenario regressed when any metric did; the stage that moved is the regressed stage with the largest p50 shift.
Comparisons that cannot be made (too few turns or nights) are *skipped* with the reason, never counted as green
evidence nor as red. Turns timed while the harness itself was starved of CPU (``unreliable``) are left out, with a
note: their stamps may be off by the length of the stall.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from harness.results.schema import STAGES, stage_label
from harness.results.stats import holm, mann_whitney, percentile, shift_ci

#: metrics compared, in report order: the headline, the pipeline stages, the unexplained, barge-in latency
METRICS = ["ttfa_ms"] + [f"{s}_ms" for s in STAGES] + ["unattributed_ms", "residual_ms", "interruption_ms"]


@dataclass(frozen=True)
class Policy:
    alpha: float = 0.01
    min_effect_ms: float = 50.0
    min_effect_pct: float = 10.0
    ci: float = 0.95
    n_boot: int = 2000
    min_turns_tonight: int = 5
    min_turns_baseline: int = 15
    min_nights: int = 3
    night_guard: bool = True
    max_harness_stall_ms: float = 50.0
    seed: int = 20240501

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be between 0 and 1")
        if self.min_effect_ms < 0 or self.min_effect_pct < 0:
            raise ValueError("minimum effects are ≥ 0")

    def describe(self) -> str:
        size = [f"≥ {self.min_effect_ms:g} ms" if self.min_effect_ms > 0 else "",
                f"≥ {self.min_effect_pct:g} % of the baseline median" if self.min_effect_pct > 0 else ""]
        size_txt = " and ".join(s for s in size if s) or "any size"
        guard = "; and beyond every baseline night's own shift from the others" if self.night_guard else ""
        return (f"one-sided Mann–Whitney U, Holm-adjusted, alpha {self.alpha:g}; p50 shift {size_txt}{guard}; "
                f"{self.ci:.0%} bootstrap CI ({self.n_boot} replicates)")


@dataclass
class MetricResult:
    metric: str
    status: str  # regression | ok | improved | skipped
    n_tonight: int = 0
    n_baseline: int = 0
    p50_tonight: float = math.nan
    p50_baseline: float = math.nan
    p95_tonight: float = math.nan
    p95_baseline: float = math.nan
    p50_shift_ms: float = math.nan
    p50_shift_ci: tuple[float, float] = (math.nan, math.nan)
    p50_shift_pct: float = math.nan
    p95_shift_ms: float = math.nan
    p95_shift_ci: tuple[float, float] = (math.nan, math.nan)
    u: float = math.nan
    p_value: float = math.nan
    p_adjusted: float = math.nan
    p_value_less: float = math.nan
    night_noise_ms: float = math.nan
    large_enough: bool = False
    note: str = ""

    @property
    def label(self) -> str:
        base = self.metric.removesuffix("_ms")
        return {"ttfa": "TTFA", "interruption": "interruption latency"}.get(base, stage_label(base))

    @property
    def is_stage(self) -> bool:
        return self.metric not in ("ttfa_ms", "interruption_ms")

    def describe(self) -> str:
        if self.status == "skipped":
            return f"{self.label}: not compared ({self.note})"
        lo, hi = self.p50_shift_ci
        lo95, hi95 = self.p95_shift_ci
        pct = f", {self.p50_shift_pct:+.0f} %" if math.isfinite(self.p50_shift_pct) else ""
        spread = f", nightly spread {self.night_noise_ms:.0f} ms" if math.isfinite(self.night_noise_ms) else ""
        return (f"{self.label}: p50 {self.p50_baseline:.0f} → {self.p50_tonight:.0f} ms "
                f"({self.p50_shift_ms:+.0f} ms{pct}, CI {lo:+.0f}…{hi:+.0f}{spread}); "
                f"p95 {self.p95_baseline:.0f} → {self.p95_tonight:.0f} ms ({self.p95_shift_ms:+.0f} ms, CI {lo95:+.0f}…{hi95:+.0f}); "
                f"Mann–Whitney p = {self.p_value:.2g} (Holm {self.p_adjusted:.2g}); "
                f"n = {self.n_tonight} tonight vs {self.n_baseline}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["label"] = self.label
        return d


@dataclass
class Comparison:
    scenario: str
    night: str
    baseline_nights: list[str]
    policy: Policy
    metrics: list[MetricResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricResult]:
        return [m for m in self.metrics if m.status == "regression"]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @property
    def compared(self) -> bool:
        return any(m.status != "skipped" for m in self.metrics)

    @property
    def moved_stage(self) -> MetricResult | None:
        """The regressed stage with the largest p50 shift (None when no stage regressed)."""
        stages = [m for m in self.regressions if m.is_stage]
        return max(stages, key=lambda m: m.p50_shift_ms) if stages else None

    def headline(self) -> str:
        if not self.compared:
            why = next((m.note for m in self.metrics if m.note), "nothing to compare")
            return f"{self.scenario}: not compared — {why}"
        if not self.regressed:
            return f"{self.scenario}: no regression vs {len(self.baseline_nights)} nights"
        parts = [m.describe() for m in self.regressions if not m.is_stage]
        if not parts:  # a stage regressed but TTFA did not (significantly): still show what TTFA did
            parts = [m.describe() + " — not flagged" for m in self.metrics if m.metric == "ttfa_ms" and m.status != "skipped"]
        moved = self.moved_stage
        if moved is not None:
            txt = f"stage that moved: {moved.label} ({moved.metric} {moved.p50_shift_ms:+.0f} ms at p50)"
        else:
            txt = "no single stage moved enough to flag; " + _largest_shift(self.metrics)
        return f"{self.scenario}: REGRESSION — " + "; ".join(parts + [txt])

    def to_dict(self) -> dict:
        moved = self.moved_stage
        return {"scenario": self.scenario, "night": self.night, "baseline_nights": self.baseline_nights,
                "policy": asdict(self.policy), "regressed": self.regressed,
                "moved_stage": moved.metric.removesuffix("_ms") if moved else None,
                "moved_stage_label": moved.label if moved else None,
                "headline": self.headline(), "notes": self.notes, "metrics": [m.to_dict() for m in self.metrics]}


def compare(tonight: pd.DataFrame, baseline: pd.DataFrame, *, scenario: str = "", night: str = "",
            baseline_nights: list[str] | None = None, policy: Policy | None = None,
            notes: list[str] | None = None) -> Comparison:
    """Compare tonight's turn rows with the baseline's (docs/schema.md turn columns; only ``status == ok`` rows count)."""
    policy = policy or Policy()
    nights = list(baseline_nights or [])
    if not nights and "night" in baseline.columns:
        nights = sorted(set(baseline["night"].astype(str)))
    comp = Comparison(scenario, night, nights, policy, notes=list(notes or []))
    t_ok, b_ok = _ok(tonight), _ok(baseline)
    t_bad, b_bad = unreliable(t_ok, policy.max_harness_stall_ms), unreliable(b_ok, policy.max_harness_stall_ms)
    if t_bad.any() or b_bad.any():
        comp.notes.append(
            f"left out, timed while the harness itself was starved of CPU (event-loop stall or mic lateness over "
            f"{policy.max_harness_stall_ms:g} ms, or a negative TTFA): {int(t_bad.sum())} of {len(t_ok)} answered "
            f"turns tonight, {int(b_bad.sum())} of {len(b_ok)} in the baseline")
        t_ok, b_ok = t_ok[~t_bad], b_ok[~b_bad]
    few_nights = len(nights) < policy.min_nights
    for metric in METRICS:
        x, y = _values(t_ok, metric), _values(b_ok, metric)
        if len(x) == 0 and len(y) == 0:
            continue  # a stage this agent does not have (e.g. reasoning, interruption without barge-in)
        if few_nights:
            note = (f"{len(nights)} earlier night(s) in the history, {policy.min_nights} needed" if nights
                    else "no earlier nights in the history")
            comp.metrics.append(MetricResult(metric, "skipped", len(x), len(y), note=note))
            continue
        if len(y) == 0:
            comp.metrics.append(MetricResult(metric, "skipped", len(x), 0, note="not measured in the baseline nights"))
            continue
        if len(x) == 0:
            comp.metrics.append(MetricResult(metric, "skipped", 0, len(y), note="not measured tonight"))
            continue
        r = compare_metric(x, y, metric, policy)
        if policy.night_guard and r.large_enough:  # only needed (and only computed) where it can decide
            r.night_noise_ms = night_noise(b_ok, metric)
            if math.isfinite(r.night_noise_ms) and r.large_enough and r.p50_shift_ms <= r.night_noise_ms:
                r.large_enough = False
                r.note = (f"p50 shift {r.p50_shift_ms:+.0f} ms is within the night-to-night spread of the baseline "
                          f"(a baseline night was {r.night_noise_ms:+.0f} ms above the others)")
        comp.metrics.append(r)
    _holm(comp.metrics, policy)
    return comp


def compare_metric(x: np.ndarray, y: np.ndarray, metric: str, policy: Policy) -> MetricResult:
    """One metric: `x` tonight, `y` baseline (ms). Status is set after the Holm step (`compare`)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    r = MetricResult(metric, "ok", len(x), len(y))
    if len(x) < policy.min_turns_tonight or len(y) < policy.min_turns_baseline:
        r.status = "skipped"
        r.note = (f"{len(x)} turns tonight and {len(y)} in the baseline; at least {policy.min_turns_tonight} "
                  f"and {policy.min_turns_baseline} needed")
        return r
    r.p50_tonight, r.p50_baseline = percentile(x, 50), percentile(y, 50)
    r.p95_tonight, r.p95_baseline = percentile(x, 95), percentile(y, 95)
    r.p50_shift_ms = r.p50_tonight - r.p50_baseline
    r.p95_shift_ms = r.p95_tonight - r.p95_baseline
    if r.p50_baseline > 0:
        r.p50_shift_pct = 100.0 * r.p50_shift_ms / r.p50_baseline
    elif r.p50_shift_ms > 0:
        r.p50_shift_pct = math.inf
    else:
        r.p50_shift_pct = 0.0
    if np.ptp(np.concatenate([x, y])) == 0:  # identical constants: nothing can have moved
        r.p_value = r.p_value_less = 1.0
        r.u = len(x) * len(y) / 2
        r.p50_shift_ci = r.p95_shift_ci = (0.0, 0.0)
        r.note = "constant"
        return r
    r.u, r.p_value = mann_whitney(x, y, "greater")
    # the other direction only matters when tonight's median is lower (an improvement); else it is > 0.5 anyway
    r.p_value_less = mann_whitney(x, y, "less")[1] if r.p50_shift_ms < 0 else 1.0
    r.p50_shift_ci, r.p95_shift_ci = _bootstrap(x, y, policy, metric)
    r.large_enough = _large_enough(r.p50_shift_ms, r.p50_shift_pct, policy)
    return r


def unreliable(turns: pd.DataFrame, max_stall_ms: float) -> pd.Series:
    """Turns vlh could not time: its own event loop stalled (``harness_stall_ms``) or its mic frames left late
    (``mic_late_ms``) by more than `max_stall_ms` near the turn — its stamps may be off by as much — or a TTFA below
    zero (an impossible ordering). Columns a run does not have count as healthy."""
    bad = pd.Series(False, index=turns.index)
    for col in ("harness_stall_ms", "mic_late_ms"):
        if col in turns.columns:
            bad |= pd.to_numeric(turns[col], errors="coerce").fillna(0.0) > max_stall_ms
    if "ttfa_ms" in turns.columns:
        bad |= pd.to_numeric(turns["ttfa_ms"], errors="coerce") < 0
    return bad


def night_noise(baseline: pd.DataFrame, metric: str) -> float:
    """How far the slowest baseline night's median sat above the median of the other baseline nights (ms, ≥ 0).

    Turns of one night are not independent of each other (same host load, same network that night), so a pooled
    turn-level test overstates the evidence when nights differ. A regression must therefore also shift the median
    by more than any baseline night did against the rest: under no change, tonight beats all N leave-one-out shifts
    with probability about 1/(N+1). NaN when the baseline has fewer than 2 nights with data.
    """
    if "night" not in baseline.columns or metric not in baseline.columns:
        return math.nan
    v = pd.to_numeric(baseline[metric], errors="coerce")
    keep = np.isfinite(v.to_numpy(dtype=float))
    nights = baseline["night"].astype(str).to_numpy()[keep]
    vals = v.to_numpy(dtype=float)[keep]
    labels = sorted(set(nights))
    if len(labels) < 2:
        return math.nan
    worst = 0.0
    for n in labels:
        mine, rest = vals[nights == n], vals[nights != n]
        worst = max(worst, float(np.median(mine) - np.median(rest)))
    return worst


def _large_enough(shift_ms: float, shift_pct: float, policy: Policy) -> bool:
    if not math.isfinite(shift_ms) or shift_ms <= 0:
        return False
    return shift_ms >= policy.min_effect_ms and (policy.min_effect_pct <= 0 or shift_pct >= policy.min_effect_pct)


def _holm(results: list[MetricResult], policy: Policy) -> None:
    """Holm step-down over the tested (non-skipped, non-constant) metrics, for both directions."""
    tested = [r for r in results if r.status != "skipped" and r.note != "constant"]
    for r in results:
        if r.note == "constant":
            r.p_adjusted = 1.0
    for attr, out in (("p_value", "p_adjusted"), ("p_value_less", None)):
        adj = holm([getattr(r, attr) for r in tested])
        for r, a in zip(tested, adj):
            if out:
                setattr(r, out, a)
            elif a < policy.alpha and _large_enough(-r.p50_shift_ms, -r.p50_shift_pct, policy) and r.status == "ok":
                r.status = "improved"
    for r in tested:
        if r.p_adjusted < policy.alpha and r.large_enough:
            r.status = "regression"


def _bootstrap(x: np.ndarray, y: np.ndarray, policy: Policy, metric: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """CIs of the p50 and p95 shift (harness/results/stats.py's exact quantile bootstrap; fixed seed per metric)."""
    rng = np.random.default_rng([policy.seed, zlib.crc32(metric.encode())])
    return (shift_ci(x, y, 0.5, policy.n_boot, policy.ci, rng), shift_ci(x, y, 0.95, policy.n_boot, policy.ci, rng))


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    if df is None or df.empty or "status" not in df.columns:
        return pd.DataFrame()
    return df[df["status"].astype(str) == "ok"]


def _values(df: pd.DataFrame, metric: str) -> np.ndarray:
    if df.empty or metric not in df.columns:
        return np.array([], dtype=float)
    col = df[metric]
    if not pd.api.types.is_numeric_dtype(col):
        col = pd.to_numeric(col, errors="coerce")
    v = col.to_numpy(dtype=float, na_value=np.nan)
    return v[np.isfinite(v)]


def _largest_shift(metrics: list[MetricResult]) -> str:
    stages = [m for m in metrics if m.is_stage and m.status != "skipped" and math.isfinite(m.p50_shift_ms)]
    if not stages:
        return "no stage data"
    m = max(stages, key=lambda m: m.p50_shift_ms)
    return f"largest stage shift: {m.label} ({m.p50_shift_ms:+.0f} ms at p50, Holm p = {m.p_adjusted:.2g})"
