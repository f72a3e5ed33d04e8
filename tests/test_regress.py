"""Regression statistics: a real shift is flagged and named, no change is not, every gate does its job."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from harness.results.stats import holm
from harness.suite.regress import METRICS, Policy, compare, compare_metric, night_noise
from harness.results.schema import STAGES

# (mean, sd) ms per stage; llm_ttft log-normal with a 2 % tail (like harness/testing/synthetic.py)
STAGE = {"endpointing": (180.0, 30.0), "stt": (60.0, 15.0), "turn_detection": (0.0, 0.0), "llm_dispatch": (4.0, 1.0), "llm_ttft": (280.0, 0.25),
         "reasoning": (0.0, 0.0), "aggregation": (35.0, 10.0), "tts_ttfb": (140.0, 25.0), "agent_output": (8.0, 2.0),
         "transport": (30.0, 6.0), "jitter_buffer": (60.0, 15.0), "codec": (6.5, 0.0), "playout": (3.0, 1.0)}


def night(rng, n: int, shift: dict | None = None, offset: float = 0.0, label: str = "tonight") -> pd.DataFrame:
    shift = shift or {}
    cols = {}
    for s, (m, sd) in STAGE.items():
        if s == "llm_ttft":
            v = m * np.exp(rng.normal(0, sd, n))
            v = np.where(rng.random(n) < 0.02, v * 4, v) + offset
        elif sd == 0:
            v = np.full(n, m)
        else:
            v = np.maximum(0.2, rng.normal(m, sd, n))
        cols[f"{s}_ms"] = v + shift.get(s, 0.0)
    df = pd.DataFrame(cols)
    df["residual_ms"] = rng.normal(0, 1.5, n)
    df["unattributed_ms"] = 0.0
    df["ttfa_ms"] = df[[f"{s}_ms" for s in STAGES] + ["residual_ms", "unattributed_ms"]].sum(axis=1)
    df["status"] = "ok"
    df["night"] = label
    return df


def baseline(rng, nights: int = 7, n: int = 6, offsets: list[float] | None = None) -> pd.DataFrame:
    offsets = offsets or [0.0] * nights
    return pd.concat([night(rng, n, offset=offsets[i], label=f"2024-05-{i + 1:02d}") for i in range(nights)],
                     ignore_index=True)


FAST = Policy(n_boot=200)


def by_metric(c):
    return {m.metric: m for m in c.metrics}


def test_tts_shift_is_flagged_and_tts_is_named():
    rng = np.random.default_rng(1)
    c = compare(night(rng, 6, {"tts_ttfb": 150}), baseline(rng), scenario="short", night="2024-05-08", policy=FAST)
    m = by_metric(c)
    assert c.regressed and m["ttfa_ms"].status == "regression" and m["tts_ttfb_ms"].status == "regression"
    assert c.moved_stage.metric == "tts_ttfb_ms" and c.moved_stage.label == "TTS"
    assert [r.metric for r in c.regressions if r.is_stage] == ["tts_ttfb_ms"]  # no other stage blamed
    assert 100 < m["tts_ttfb_ms"].p50_shift_ms < 200
    assert "stage that moved: TTS" in c.headline()
    d = c.to_dict()
    assert d["regressed"] and d["moved_stage"] == "tts_ttfb" and d["moved_stage_label"] == "TTS"


def test_no_change_is_green():
    rng = np.random.default_rng(2)
    c = compare(night(rng, 6), baseline(rng), scenario="short", night="2024-05-08", policy=FAST)
    assert c.compared and not c.regressed and c.moved_stage is None
    assert "no regression vs 7 nights" in c.headline()


def test_reported_numbers_are_the_plain_statistics():
    rng = np.random.default_rng(3)
    t, b = night(rng, 8, {"tts_ttfb": 100}), baseline(rng)
    m = by_metric(compare(t, b, policy=FAST))["tts_ttfb_ms"]
    x, y = t["tts_ttfb_ms"].to_numpy(), b["tts_ttfb_ms"].to_numpy()
    assert m.p50_shift_ms == pytest.approx(np.median(x) - np.median(y))
    assert m.p95_shift_ms == pytest.approx(np.percentile(x, 95) - np.percentile(y, 95))
    assert m.p_value == pytest.approx(mannwhitneyu(x, y, alternative="greater").pvalue)
    assert m.n_tonight == 8 and m.n_baseline == 42
    lo, hi = m.p50_shift_ci
    assert lo <= m.p50_shift_ms <= hi and lo > 50  # the CI is about the shift, and excludes small ones


def test_bootstrap_ci_covers_the_true_shift_and_is_reproducible():
    rng = np.random.default_rng(4)
    cover = 0
    for _ in range(40):
        x, y = rng.normal(600 + 80, 40, 12), rng.normal(600, 40, 60)
        r = compare_metric(x, y, "ttfa_ms", FAST)
        cover += r.p50_shift_ci[0] <= 80 <= r.p50_shift_ci[1]
    assert cover >= 34  # nominal 95 %: at least 85 % of 40 (a percentile bootstrap of a median undercovers a bit)
    x, y = rng.normal(600, 40, 12), rng.normal(600, 40, 60)
    assert compare_metric(x, y, "ttfa_ms", FAST).p50_shift_ci == compare_metric(x, y, "ttfa_ms", FAST).p50_shift_ci


def test_significant_but_small_is_not_a_regression_until_the_threshold_allows():
    rng = np.random.default_rng(5)
    t, b = night(rng, 10, {"tts_ttfb": 30}), baseline(rng, n=10)
    m = by_metric(compare(t, b, policy=FAST))["tts_ttfb_ms"]
    assert m.p_adjusted < 0.01 and not m.large_enough and m.status == "ok"  # significant, under 50 ms
    loose = Policy(n_boot=200, min_effect_ms=10, min_effect_pct=0)
    assert by_metric(compare(t, b, policy=loose))["tts_ttfb_ms"].status == "regression"
    pct_only = Policy(n_boot=200, min_effect_ms=0, min_effect_pct=50)  # 30 ms of 140 ms is ~21 %
    assert by_metric(compare(t, b, policy=pct_only))["tts_ttfb_ms"].status == "ok"


def test_percent_threshold_protects_long_stages():
    rng = np.random.default_rng(6)
    # +60 ms on a ~2 s reasoning phase: over 50 ms but only 3 % of it
    base = baseline(rng, n=10)
    base["reasoning_ms"] = rng.normal(2000, 10, len(base))
    t = night(rng, 10)
    t["reasoning_ms"] = rng.normal(2060, 10, len(t))
    m = by_metric(compare(t, base, policy=FAST))["reasoning_ms"]
    assert m.p_adjusted < 0.01 and m.p50_shift_ms > 50 and m.status == "ok"


def test_improvement_is_reported_not_failed():
    rng = np.random.default_rng(7)
    c = compare(night(rng, 8, {"tts_ttfb": -100}), baseline(rng), policy=FAST)
    m = by_metric(c)
    assert m["tts_ttfb_ms"].status == "improved" and not c.regressed


def test_too_few_nights_or_turns_is_skipped_with_the_reason():
    rng = np.random.default_rng(8)
    c = compare(night(rng, 6, {"tts_ttfb": 300}), baseline(rng, nights=2), policy=FAST)
    assert not c.compared and not c.regressed
    assert all(m.status == "skipped" and "2 earlier night(s)" in m.note for m in c.metrics)
    c = compare(night(rng, 6), pd.DataFrame(), policy=FAST)
    assert "no earlier nights" in c.headline()
    c = compare(night(rng, 3, {"tts_ttfb": 300}), baseline(rng), policy=FAST)
    assert all(m.status == "skipped" and "3 turns tonight" in m.note for m in c.metrics)


def test_only_answered_turns_count_and_missing_stages_are_skipped_or_left_out():
    rng = np.random.default_rng(9)
    t = night(rng, 8)
    t.loc[:2, "status"] = "no_response"
    t.loc[:2, "ttfa_ms"] = 99999.0  # a no_response row must never enter the statistics
    b = baseline(rng)
    b["interruption_ms"] = np.nan  # no barge-in here: not a metric
    c = compare(t, b.drop(columns=["playout_ms"]), policy=FAST)
    m = by_metric(c)
    assert m["ttfa_ms"].n_tonight == 5 and m["ttfa_ms"].status == "ok"
    assert m["playout_ms"].status == "skipped" and "baseline" in m["playout_ms"].note
    assert "interruption_ms" not in m


def test_constant_metric_never_regresses_and_does_not_inflate_holm():
    rng = np.random.default_rng(10)
    c = compare(night(rng, 6), baseline(rng), policy=FAST)
    codec = by_metric(c)["codec_ms"]
    assert codec.p_value == 1.0 and codec.status == "ok" and codec.note == "constant"


def test_turns_timed_by_a_starved_harness_are_left_out():
    rng = np.random.default_rng(13)
    t, b = night(rng, 8), baseline(rng)
    t["harness_stall_ms"] = 0.0
    t["mic_late_ms"] = 0.0
    # three turns where vlh itself stalled: their stamps (and so their jitter buffer, TTFA) are off by ~a second
    for i, col in ((0, "harness_stall_ms"), (1, "mic_late_ms"), (2, "harness_stall_ms")):
        t.loc[i, col] = 900.0
        t.loc[i, "jitter_buffer_ms"] += 900.0
        t.loc[i, "ttfa_ms"] += 900.0
    t.loc[3, "ttfa_ms"] = -300.0  # an impossible ordering
    c = compare(t, b, policy=FAST)
    m = by_metric(c)
    assert not c.regressed and m["ttfa_ms"].n_tonight == 4
    assert any("starved of CPU" in n and "4 of 8 answered turns tonight" in n for n in c.notes)
    worse = compare(t, b, policy=Policy(n_boot=200, max_harness_stall_ms=1000))  # the gate is what keeps it out
    assert by_metric(worse)["ttfa_ms"].n_tonight == 7


def test_holm_adjustment():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == []


def test_night_noise_guard():
    rng = np.random.default_rng(11)
    # one baseline night was 80 ms slower (host busy that night); tonight is 60 ms slower in llm_ttft
    b = baseline(rng, n=10, offsets=[0, 0, 80, 0, 0, 0, 0])
    assert night_noise(b, "llm_ttft_ms") == pytest.approx(80, abs=40)
    t = night(rng, 10, offset=60)
    guarded = by_metric(compare(t, b, policy=FAST))["llm_ttft_ms"]
    assert guarded.status == "ok" and "night-to-night spread" in guarded.note
    free = by_metric(compare(t, b, policy=Policy(n_boot=200, night_guard=False)))["llm_ttft_ms"]
    assert free.p50_shift_ms == guarded.p50_shift_ms
    assert night_noise(b.assign(night="one"), "llm_ttft_ms") != night_noise(b, "llm_ttft_ms")
    assert math.isnan(night_noise(b.assign(night="one"), "llm_ttft_ms"))


def test_false_alarms_and_power_on_synthetic_nights():
    """Unchanged nights: (almost) never flagged; +150 ms TTS: always flagged, TTS named. Seeded: deterministic."""
    rng = np.random.default_rng(12)
    pol = Policy(n_boot=20)  # the verdict does not depend on the bootstrap; keep the test quick
    alarms = sum(compare(night(rng, 6), baseline(rng), policy=pol).regressed for _ in range(40))
    assert alarms <= 1
    hits = 0
    for _ in range(10):
        c = compare(night(rng, 6, {"tts_ttfb": 150}), baseline(rng), policy=pol)
        hits += c.regressed and c.moved_stage is not None and c.moved_stage.metric == "tts_ttfb_ms"
    assert hits == 10


def test_policy_checks_and_metric_list():
    with pytest.raises(ValueError):
        Policy(alpha=0)
    with pytest.raises(ValueError):
        Policy(min_effect_ms=-1)
    assert METRICS[0] == "ttfa_ms" and "tts_ttfb_ms" in METRICS and "interruption_ms" in METRICS
    assert "Mann–Whitney" in Policy().describe() and "50 ms" in Policy().describe()


# ---- the false-alarm / power table of the README ("vlh suite": measured on synthetic nights) ---------------------
# python tests/test_regress.py [TRIALS]   (about a minute per 200 trials and row on a quiet 2-core machine)

def _draw(rng, nights: int, n: int, night_sd: float, shift: dict | None = None) -> pd.DataFrame:
    """nights × n turns; a per-night offset N(0, night_sd) on llm_ttft stands for a slower host/provider that night."""
    shift = shift or {}
    total = nights * n
    off = np.repeat(rng.normal(0, night_sd, nights) if night_sd else np.zeros(nights), n)
    cols = {}
    for s, (m, sd) in STAGE.items():
        if s == "llm_ttft":
            v = m * np.exp(rng.normal(0, sd, total))
            v = np.where(rng.random(total) < 0.02, v * 4, v) + off
        elif sd == 0:
            v = np.full(total, m)
        else:
            v = np.maximum(0.2, rng.normal(m, sd, total))
        cols[f"{s}_ms"] = v + shift.get(s, 0.0)
    cols["residual_ms"] = rng.normal(0, 1.5, total)
    cols["unattributed_ms"] = np.zeros(total)
    cols["ttfa_ms"] = sum(cols[f"{s}_ms"] for s in STAGES) + cols["residual_ms"]
    df = pd.DataFrame(cols)
    df["status"] = "ok"
    df["night"] = np.repeat([f"d{i}" for i in range(nights)], n)
    return df


def simulate(trials: int, turns: int, night_sd: float, tts_shift: float = 0.0, nights: int = 7,
             policy: Policy | None = None, seed: int = 2024) -> tuple[int, int]:
    """(flagged, TTS named) over `trials` comparisons of a fresh tonight against fresh baseline nights."""
    policy = policy or Policy(n_boot=10)  # the verdict does not use the bootstrap
    rng = np.random.default_rng(seed)
    labels = [f"d{i}" for i in range(nights)]
    flagged = named = 0
    for _ in range(trials):
        base = _draw(rng, nights, turns, night_sd)
        tonight = _draw(rng, 1, turns, night_sd, {"tts_ttfb": tts_shift} if tts_shift else None)
        c = compare(tonight, base, baseline_nights=labels, policy=policy)
        flagged += c.regressed
        named += bool(c.moved_stage and c.moved_stage.metric == "tts_ttfb_ms")
    return flagged, named


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    k = max(1, n * 3 // 10)
    rows = [(n, 6, 0, 0, {}), (n, 10, 0, 0, {}), (n, 6, 30, 0, {}), (n, 10, 30, 0, {}),
            (n, 10, 30, 0, {"min_effect_ms": 100}), (k, 6, 0, 150, {}), (k, 6, 30, 150, {}),
            (k, 6, 0, 60, {}), (k, 6, 0, 40, {})]
    for trials, turns, sd, shift, kw in rows:
        f, named = simulate(trials, turns, sd, shift, policy=Policy(n_boot=10, **kw))
        print(f"{turns} turns/night, night-to-night sd {sd} ms, TTS +{shift} ms, {kw or 'defaults'}: "
              f"flagged {f}/{trials}, TTS named {named}", flush=True)
