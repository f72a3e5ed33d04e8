"""SLO evaluation against hand-computed values; undefined values fail; boundaries are inclusive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.testing.synthetic import make_run
from harness.results.slo import SLOS, evaluate


def turns(ttfa, status=None, reply_ms=None, gaps=None, interruption=None) -> pd.DataFrame:
    n = len(ttfa)
    return pd.DataFrame({
        "status": status or ["ok"] * n,
        "ttfa_ms": ttfa,
        "reply_duration_ms": reply_ms if reply_ms is not None else [3000.0] * n,
        "stutter_gaps": gaps if gaps is not None else [0] * n,
        "interruption_ms": interruption if interruption is not None else [np.nan] * n,
    })


def one(df, name, limit):
    (r,) = evaluate(df, {name: limit})
    return r


def test_ttfa_percentiles_over_answered_turns_only():
    df = turns([500.0, 600.0, 700.0, 800.0, 99999.0], status=["ok", "ok", "ok", "ok", "no_response"])
    r = one(df, "ttfa_p50_ms", 650)
    assert r.value == pytest.approx(650.0) and r.passed and r.n == 4  # boundary: equal passes
    r = one(df, "ttfa_p95_ms", 750)
    assert r.value == pytest.approx(np.percentile([500, 600, 700, 800], 95)) and not r.passed
    assert "ttfa_p95_ms = 785 ms > 750 ms" in r.detail and "over 4 turns" in r.detail


def test_no_response_rate_counts_no_response_not_errors():
    df = turns([500.0] * 10, status=["ok"] * 7 + ["no_response"] * 2 + ["error:disconnected"])
    r = one(df, "no_response_rate", 0)
    assert r.value == pytest.approx(0.2) and not r.passed and "2 of 10 turns unanswered" in r.detail
    assert one(df, "no_response_rate", 0.2).passed


def test_stutter_gaps_per_minute_of_reply():
    df = turns([500.0] * 4, reply_ms=[15000.0] * 4, gaps=[1, 0, 2, 0])  # 3 gaps in 60 s
    r = one(df, "stutter_gaps_per_min", 1)
    assert r.value == pytest.approx(3.0) and not r.passed
    assert one(df, "stutter_gaps_per_min", 3).passed


def test_interruption_percentiles_over_barge_in_turns():
    df = turns([500.0] * 4, interruption=[np.nan, 120.0, np.nan, 180.0])
    r = one(df, "interruption_p95_ms", 200)
    assert r.value == pytest.approx(np.percentile([120, 180], 95)) and r.passed and r.n == 2
    assert one(df, "interruption_p50_ms", 149).passed is False


def test_undefined_values_fail_with_the_reason():
    df = turns([np.nan, np.nan], status=["no_response", "no_response"], reply_ms=[np.nan, np.nan])
    for name in ("ttfa_p50_ms", "ttfa_p95_ms", "stutter_gaps_per_min", "interruption_p95_ms"):
        r = one(df, name, 1e9)
        assert r.value is None and not r.passed and "undefined" in r.detail, name
    assert evaluate(df.iloc[0:0], {"no_response_rate": 0})[0].passed is False


def test_order_and_unset_thresholds():
    df = turns([500.0, 600.0])
    res = evaluate(df, {"ttfa_p95_ms": 900, "ttfa_p50_ms": None, "no_response_rate": 0})
    assert [r.name for r in res] == ["ttfa_p95_ms", "no_response_rate"] and all(r.passed for r in res)
    with pytest.raises(KeyError):
        evaluate(df, {"ttfa_p99_ms": 1})


def test_on_a_schema_true_run_folder(tmp_path):
    d = make_run(tmp_path / "r", turns=12, calls=1, seed=3, recordings="none", no_response_every=4, stutter_every=3)
    df = pd.read_parquet(d / "turns.parquet")
    res = {r.name: r for r in evaluate(df, {k: 1e9 for k in SLOS})}
    ok = df[df.status == "ok"]
    assert res["ttfa_p50_ms"].value == pytest.approx(float(np.median(ok.ttfa_ms)))
    assert res["no_response_rate"].value == pytest.approx((df.status == "no_response").mean())
    assert res["stutter_gaps_per_min"].value == pytest.approx(ok.stutter_gaps.sum() / (ok.reply_duration_ms.sum() / 60000))
    assert res["interruption_p95_ms"].value is None  # no barge-in turns in this run
