"""harness.report.summary: percentiles, the stage table, the seed sentence, featured turns."""

import json

import numpy as np
import pandas as pd
import pytest

from harness.report.load import load_run
from harness.results.schema import STAGES, TURN_COLUMNS
from harness.report.summary import (check_summary, featured_turns, headline, percentiles, run_summary, seed_sentence,
                                    stage_table)
from harness.testing.synthetic import make_run


def hand_turns(stage_sets: list[dict], ttft: list[float] | None = None) -> pd.DataFrame:
    """Turns whose stages are given exactly (sequential spans from user_speech_end, no residual)."""
    rows = []
    for i, st in enumerate(stage_sets):
        r = {c: None for c in TURN_COLUMNS}
        us_end = 100.0 + 10 * i
        spans, t = [], us_end
        for s in STAGES:
            v = st.get(s, 0.0)
            spans.append({"name": s, "start_mono": t, "ms": v, "source": "measured", "covers": [s], "kind": "stage"})
            r[f"{s}_ms"], r[f"{s}_source"] = v, "measured"
            t += v / 1e3
        ttfa = sum(st.values())
        r.update({"run_id": "h", "scenario": "hand", "call": 1, "turn": i + 1, "status": "ok", "ttfa_ms": ttfa,
                  "provider_ttft_ms": (ttft[i] if ttft else st.get("llm_ttft")), "unattributed_ms": 0.0,
                  "residual_ms": 0.0, "stages_json": json.dumps(spans), "anomalies": "", "text": "", "error": ""})
        r["gap_ms"] = ttfa - r["provider_ttft_ms"]
        rows.append(r)
    return pd.DataFrame(rows)


def test_percentiles_are_numpy_linear():
    x = np.random.default_rng(3).lognormal(6, 0.5, 1001)
    p = percentiles(list(x) + [float("nan"), None])
    assert p["n"] == 1001
    for k, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert p[k] == pytest.approx(np.percentile(x, q), rel=1e-12)
    assert p["max"] == x.max()
    assert percentiles([])["p50"] is None


def test_seed_sentence_from_exact_stages():
    st = {"endpointing": 60.0, "llm_ttft": 280.0, "tts_ttfb": 140.0, "transport": 60.0, "jitter_buffer": 90.0}
    turns = hand_turns([st, st, st])
    head = headline({}, turns)
    assert head["source"] == "turns"
    assert head["metrics"]["ttfa_ms"]["p50"] == pytest.approx(630.0)
    table = stage_table(turns, head["metrics"]["ttfa_ms"]["p50"])
    s = seed_sentence(head, table)
    assert s["text"] == ("dashboard 280 ms; ear 630 ms; the 350 ms are endpointing 60, TTS 140, transport 60, "
                         "jitter buffer 90")
    assert s["rest_ms"] == pytest.approx(0.0)
    tts = next(r for r in table if r["stage"] == "tts_ttfb")
    assert tts["share"] == pytest.approx(140 / 630) and tts["source"] == "measured" and tts["n"] == 3


def test_seed_sentence_says_what_medians_do_not_cover():
    a = {"endpointing": 100.0, "llm_ttft": 200.0, "tts_ttfb": 100.0}
    b = {"endpointing": 300.0, "llm_ttft": 200.0, "tts_ttfb": 100.0}
    c = {"endpointing": 100.0, "llm_ttft": 200.0, "tts_ttfb": 300.0}
    turns = hand_turns([a, b, c])  # ttfa 400, 600, 600: median 600; stage medians 100 + 100 = 200 of 400
    head = headline({}, turns)
    s = seed_sentence(head, stage_table(turns, head["metrics"]["ttfa_ms"]["p50"]))
    assert s["text"].startswith("dashboard 200 ms; ear 600 ms; the 400 ms are endpointing 100, TTS 100")
    assert "+200 ms are not split" in s["text"]


def test_run_summary_matches_turns_and_check_summary_catches_tampering(tmp_path):
    d = make_run(tmp_path / "r", turns=20, calls=2, recordings="none", no_response_every=6, error_every=9)
    run = load_run(d)
    meta = json.loads((d / "run.json").read_text())  # written by harness.results.store, as `vlh run` does
    mine = run_summary(run.turns)
    for m in ("ttfa_ms", "provider_ttft_ms", "gap_ms"):
        for k in ("p50", "p90", "p95", "p99", "max", "n"):
            assert meta["summary"][m][k] == pytest.approx(mine[m][k], rel=1e-12)
    assert check_summary(meta, run.turns) == []
    assert mine["status"] == {"ok": 16, "no_response": 3, "error": 1, "total": 20}
    assert headline(meta, run.turns)["status"] == {"ok": 16, "no_response": 3, "error": 1, "total": 20}
    meta["summary"]["ttfa_ms"]["p95"] += 3.0
    meta["summary"]["status_counts"]["ok"] = 15
    problems = check_summary(meta, run.turns)
    assert any("ttfa_ms p95" in p for p in problems) and any("15 ok" in p for p in problems)
    assert headline(meta, run.turns)["metrics"]["ttfa_ms"]["p95"] == meta["summary"]["ttfa_ms"]["p95"]


def test_featured_turns_are_worst_median_best():
    turns = hand_turns([{"llm_ttft": float(v)} for v in (500, 100, 300, 900, 700)])
    f = dict(featured_turns(turns))
    assert turns.loc[f["worst"], "ttfa_ms"] == 900 and turns.loc[f["best"], "ttfa_ms"] == 100
    assert turns.loc[f["median"], "ttfa_ms"] == 500 and turns.loc[f["2nd worst"], "ttfa_ms"] == 700
    assert len(set(f.values())) == len(f)
    assert featured_turns(turns.iloc[:0]) == []


def test_stage_table_shows_overlapped_beside_its_stage(tmp_path):
    from harness.report.load import load_run
    from harness.testing.synthetic import make_run

    run = load_run(make_run(tmp_path / "r", turns=10, calls=1, recordings="none", seed=4, overlap_every=2))
    ok = run.ok
    table = {r["stage"]: r for r in stage_table(run.turns, float(ok["ttfa_ms"].median()))}
    sel = ok[ok["overlapped_stage"] == "turn_detection"]
    assert len(sel) == 5
    td = table["turn_detection"]
    assert td["overlapped_n"] == 5 and td["overlapped_beside"] == "STT"
    assert td["overlapped_p50"] == pytest.approx(float(np.median(sel["overlapped_ms"])))
    assert table["stt"]["overlapped_p50"] is None and table["llm_ttft"]["overlapped_n"] == 0


def test_seed_sentence_never_lists_a_negative_median():
    head = {"metrics": {"ttfa_ms": {"p50": 700.0}, "provider_ttft_ms": {"p50": 300.0}}}
    table = [{"stage": "tts_ttfb", "label": "TTS", "p50": 140.0}, {"stage": "residual", "label": "residual",
                                                                    "p50": -12.0}]
    s = seed_sentence(head, table)
    assert [p["label"] for p in s["parts"]] == ["TTS"] and "residual" not in s["text"]
    assert s["rest_ms"] == 400.0 - 140.0
