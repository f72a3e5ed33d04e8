"""Anomalies and health of one run: clocks per call, flagged orderings, invisible TTFTs, stutter, errors, telemetry.

Everything here is agent- or run-provided text that the page shows escaped; nothing is dropped — long lists are
cut to `limit` entries with the number left out said.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.report.load import Run
from harness.results.schema import status_kind
from harness.results.stats import percentile

CLOCK_COLS = ["clock_offset_ms", "clock_drift_ppm", "clock_uncertainty_ms", "rtt_ms"]


def clocks(run: Run) -> list[dict]:
    """Per call: the clock reconciliation (from the turns; run.json "clock" is shown beside it)."""
    t = run.turns
    if t.empty:
        return []
    calls = t["call"].to_numpy()
    g = t[CLOCK_COLS].groupby(calls, sort=True)
    last = g.last().to_dict("index")  # last non-null value per call
    amax = t[CLOCK_COLS].abs().groupby(calls).max().to_dict("index")
    varies = (g.nunique() > 1).any(axis=1).to_dict()
    sizes = g.size().to_dict()
    out = []
    for call in sorted(last):
        row = {"call": int(call), "turns": int(sizes[call]), "varies": bool(varies[call])}
        for c in CLOCK_COLS:
            row[c] = _f(last[call][c])
            row[c + "_max"] = _f(amax[call][c])
        out.append(row)
    return out


def anomalies(run: Run, limit: int = 200) -> dict:
    t = run.turns
    items = []
    for call, turn, text in zip(t["call"].tolist(), t["turn"].tolist(), t["anomalies"].tolist()):
        for a in str(text).split(";"):
            if a.strip():
                items.append({"call": int(call), "turn": int(turn), "text": a.strip()})
    return {"count": len(items), "turns": len({(i["call"], i["turn"]) for i in items}), "rows": items[:limit],
            "left_off": max(0, len(items) - limit)}


def negative_spans(run: Run, limit: int = 200) -> dict:
    """Spans with a negative duration (a residual where the durations an agent reported add up to more than the
    time between the boundaries around them): never drawn as a bar; listed as anomaly rows with their value."""
    sp, t = run.spans, run.turns
    if sp is None or sp.empty:
        return {"count": 0, "rows": [], "left_off": 0}
    neg = sp[sp["ms"].to_numpy(dtype=float) < 0]
    items = [{"call": int(t.at[r, "call"]), "turn": int(t.at[r, "turn"]), "name": str(key), "ms": float(ms),
              "text": f"{key}: {ms:.1f} ms — the durations placed in this span add up to more than it; a negative "
                      "duration is not drawn as a bar"}
             for r, key, ms in zip(neg["row"].tolist(), neg["key"].tolist(), neg["ms"].tolist())]
    return {"count": len(items), "rows": items[:limit], "left_off": max(0, len(items) - limit)}


def invisible_ttft(run: Run, limit: int = 200) -> dict:
    t = run.turns
    flagged = t[t["provider_ttft_invisible"]]
    items = [{"call": int(r.call), "turn": int(r.turn), "provider_ttft_ms": _f(r.provider_ttft_ms),
              "reasoning_ms": _f(r.reasoning_ms)} for r in flagged.itertuples()]
    return {"count": len(items), "rows": items[:limit], "left_off": max(0, len(items) - limit)}


def stutter(run: Run, limit: int = 200) -> dict:
    t = run.turns[run.turns["status"] == "ok"]
    gaps = t["stutter_gaps"].fillna(0)
    under = t["underruns"].fillna(0)
    conc = t["concealed_ms"].fillna(0)
    hit = t[(gaps > 0) | (under > 0) | (conc > 0)]
    reply_min = t["reply_duration_ms"].sum(skipna=True) / 60000.0
    items = [{"call": int(r.call), "turn": int(r.turn), "stutter_gaps": _f(r.stutter_gaps),
              "stutter_gap_ms": _f(r.stutter_gap_ms), "underruns": _f(r.underruns), "concealed_ms": _f(r.concealed_ms)}
             for r in hit.itertuples()]
    return {"turns": int(len(hit)), "gaps": int(gaps.sum()), "underruns": int(under.sum()),
            "concealed_ms": float(conc.sum()), "gap_ms_max": _f(t["stutter_gap_ms"].max()),
            "gaps_per_min": (float(gaps.sum()) / reply_min) if reply_min > 0 else None,
            "rows": items[:limit], "left_off": max(0, len(items) - limit)}


def failures(run: Run, limit: int = 200) -> dict:
    t = run.turns
    bad = t[t["status"].map(status_kind) != "ok"]
    items = [{"call": c, "turn": n, "status": s, "error": e} for c, n, s, e in
             zip(bad["call"].tolist(), bad["turn"].tolist(), bad["status"].tolist(), bad["error"].tolist())]
    return {"count": len(items), "rows": items[:limit], "left_off": max(0, len(items) - limit)}


def harness(run: Run) -> dict:
    """Was the harness itself healthy? Late mic frames and event-loop stalls (≈0 on a healthy machine), the
    longest playout stall, and where each turn's provider TTFT came from. Columns a run lacks are left out."""
    t = run.turns
    out: dict = {"figures": [], "ttft_sources": {}}
    for col, what in (("mic_late_ms", "mic frames late"), ("harness_stall_ms", "harness event-loop stall"),
                      ("playout_stall_ms", "playout stall inside a reply")):
        if col in t.columns:
            v = pd.to_numeric(t[col], errors="coerce").dropna()
            if len(v):
                out["figures"].append({"what": what, "column": col, "max": float(v.max()),
                                       "p95": percentile(v, 95), "n": int(len(v))})
    if "provider_ttft_source" in t.columns:
        ok = t[t["status"] == "ok"]
        out["ttft_sources"] = {str(k) or "(empty)": int(c) for k, c in
                               ok["provider_ttft_source"].fillna("").value_counts().items()}
    return out


def telemetry(run: Run) -> list[tuple[str, str]]:
    """run.json "telemetry" flattened to (key, value) rows, e.g. ("unparsed", "3")."""
    return _flatten(run.meta.get("telemetry"))


def clock_meta(run: Run) -> list[tuple[str, str]]:
    return _flatten(run.meta.get("clock"))


def _flatten(obj, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        out = []
        for i, v in enumerate(obj):
            out.extend(_flatten(v, f"{prefix}[{i}]"))
        return out
    if obj is None:
        return [] if not prefix else [(prefix, "")]
    return [(prefix or "value", _text(obj))]


def _text(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _f(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None

