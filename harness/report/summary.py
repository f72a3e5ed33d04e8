"""Numbers of one run: headline percentiles, the stage table, the seed sentence, the turns worth a close look.

`run_summary(turns)` is the block `vlh run` can store as run.json "summary" so that the report and run.json agree
by construction; `headline(run)` prefers run.json's numbers and `check_summary` says where they disagree with the
turns table. Percentiles are numpy's linear interpolation over the `ok` turns.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.results.schema import HEADLINE_METRICS, PERCENTILES, STAGES, stage_label, status_kind
from harness.results.stats import describe, number_or_none as _num, percentile

EXTRA_SPANS = ["unattributed", "residual"]
SUMMARY_TOLERANCE_MS = 0.05  # run.json vs recomputed from turns: rounding only


def percentiles(values) -> dict:
    """p50/p90/p95/p99/max/mean/n of the finite values (None for each figure when there are none)."""
    x = np.asarray(pd.to_numeric(pd.Series(values, dtype="float64"), errors="coerce"), dtype=float)
    return describe(x, PERCENTILES)


def ok_turns(turns: pd.DataFrame) -> pd.DataFrame:
    return turns[(turns["status"] == "ok") & turns["ttfa_ms"].notna()]


def status_counts(turns: pd.DataFrame) -> dict:
    kinds = turns["status"].map(status_kind) if len(turns) else pd.Series(dtype=str)
    counts = {k: int((kinds == k).sum()) for k in ("ok", "no_response", "error")}
    counts["total"] = int(len(turns))
    return counts


def stage_values(ok: pd.DataFrame, name: str) -> np.ndarray:
    """The stage's durations over ok turns where it was measured/reconciled/estimated (not `missing`)."""
    col = f"{name}_ms"
    if col not in ok.columns:
        return np.array([])
    v = ok[col]
    if name in STAGES:
        v = v[ok[f"{name}_source"] != "missing"]
    v = pd.to_numeric(v, errors="coerce").to_numpy(dtype=float)
    return v[np.isfinite(v)]


def run_summary(turns: pd.DataFrame) -> dict:
    """The run.json "summary" block: percentiles of ttfa/provider_ttft/gap, median of every stage, status counts."""
    ok = ok_turns(turns)
    out = {m: percentiles(ok[m]) for m in HEADLINE_METRICS}
    out["stages_p50_ms"] = {}
    for s in STAGES + EXTRA_SPANS:
        v = stage_values(ok, s)
        out["stages_p50_ms"][s] = percentile(v, 50)
    out["status"] = status_counts(turns)
    return out


def headline(meta: dict, turns: pd.DataFrame) -> dict:
    """Headline figures: run.json "summary" where it has them, else recomputed. Notes which was used."""
    computed = run_summary(turns)
    stored = meta.get("summary") if isinstance(meta.get("summary"), dict) else {}
    out: dict = {"source": "run.json" if stored else "turns", "metrics": {}}
    for m in HEADLINE_METRICS:
        s = stored.get(m) if isinstance(stored.get(m), dict) else None
        if s:
            out["metrics"][m] = {k: _num(s.get(k)) for k in list(PERCENTILES) + ["max"]}
            out["metrics"][m]["n"] = int(_num(s.get("n")) or 0)
        else:
            out["metrics"][m] = computed[m]
    st = stored_status(stored)
    out["status"] = dict(st) if st else computed["status"]
    out["status"].setdefault("total", computed["status"]["total"])
    return out


def stored_status(stored: dict) -> dict | None:
    """Status counts of a run.json summary as {ok, no_response, error}: from "status" (already grouped) or from
    "status_counts" (raw statuses such as error:disconnected, as `vlh run` writes them)."""
    if isinstance(stored.get("status"), dict):
        return {k: int(stored["status"].get(k, 0) or 0) for k in ("ok", "no_response", "error")}
    if isinstance(stored.get("status_counts"), dict):
        out = {"ok": 0, "no_response": 0, "error": 0}
        for k, v in stored["status_counts"].items():
            kind = status_kind(k)
            if kind in out:
                out[kind] += int(v or 0)
        return out
    return None


def check_summary(meta: dict, turns: pd.DataFrame) -> list[str]:
    """Where run.json's summary disagrees with the turns table (beyond rounding)."""
    stored = meta.get("summary")
    if not isinstance(stored, dict):
        return []  # nothing to disagree with: the headline says it was computed from the turns table
    computed = run_summary(turns)
    out = []
    for m in HEADLINE_METRICS:
        s = stored.get(m)
        if not isinstance(s, dict):
            if computed[m]["n"]:
                out.append(f"run.json summary lacks {m}; computed from the turns table instead")
            continue
        for k in list(PERCENTILES) + ["max"]:
            a, b = _num(s.get(k)), computed[m][k]
            if (a is None) != (b is None) or (a is not None and abs(a - b) > SUMMARY_TOLERANCE_MS):
                out.append(f"run.json summary {m} {k} = {_fmt(a)} but the turns table gives {_fmt(b)}")
    st = stored_status(stored)
    if st:
        for k in ("ok", "no_response", "error"):
            if st[k] != computed["status"][k]:
                out.append(f"run.json summary counts {st[k]} {k} turn(s) but the turns table has "
                           f"{computed['status'][k]}")
    return out


def stage_table(turns: pd.DataFrame, ttfa_p50: float | None) -> list[dict]:
    """One row per stage (pipeline order) + unattributed + residual: p50, p95, mean, n, share, sources."""
    ok = ok_turns(turns)
    rows = []
    for s in STAGES + EXTRA_SPANS:
        v = stage_values(ok, s)
        row = {"stage": s, "label": stage_label(s), "n": int(len(v)),
               "p50": percentile(v, 50),
               "p95": percentile(v, 95),
               "mean": float(v.mean()) if len(v) else None}
        row["share"] = (row["p50"] / ttfa_p50) if (row["p50"] is not None and ttfa_p50) else None
        if s in STAGES and len(ok):
            counts = ok[f"{s}_source"].value_counts()
            row["sources"] = {str(k): int(c) for k, c in counts.items()}
            row["source"] = str(counts.index[0])
        else:
            row["sources"] = {}
            row["source"] = "derived" if len(v) else "missing"
        row.update(_overlapped(ok, s))
        rows.append(row)
    return rows


def _overlapped(ok: pd.DataFrame, stage: str) -> dict:
    """For a parallel stage (stt, turn_detection): over the turns where it was placed second on the critical path,
    the p50 of how long it ran beside the other (`overlapped_ms`, not part of the sum) and which stage that was."""
    out = {"overlapped_p50": None, "overlapped_n": 0, "overlapped_beside": None}
    if "overlapped_stage" not in ok.columns or "overlapped_ms" not in ok.columns:
        return out
    sel = ok["overlapped_stage"].astype(object) == stage
    v = pd.to_numeric(ok.loc[sel, "overlapped_ms"], errors="coerce").dropna().to_numpy(dtype=float)
    if len(v):
        out.update(overlapped_p50=percentile(v, 50), overlapped_n=int(len(v)),
                   overlapped_beside=stage_label("stt" if stage == "turn_detection" else "turn_detection"))
    return out


def seed_sentence(head: dict, table: list[dict]) -> dict:
    """'dashboard 280 ms; ear 630 ms; the 350 ms are TTS 140, transport 60, …' with its parts.

    The parts are per-stage medians of the stages other than the LLM's own TTFT. Medians do not add up exactly;
    what the parts do not cover is said, never hidden."""
    ttfa = head["metrics"]["ttfa_ms"]["p50"]
    ttft = head["metrics"]["provider_ttft_ms"]["p50"]
    if ttfa is None:
        return {"text": "no turn got an answer: there is no time to first audio to attribute", "parts": [],
                "dashboard_ms": ttft, "ear_ms": None, "gap_ms": None, "rest_ms": None}
    skip = {"llm_ttft"} if ttft is not None else set()
    # a negative median (a residual whose reported durations do not fit) is never a part: it stays in "not split"
    parts = [(r["label"], r["p50"]) for r in table
             if r["stage"] not in skip and r["p50"] is not None and round(r["p50"]) > 0]
    listed = ", ".join(f"{lbl} {p:.0f}" for lbl, p in parts)
    if ttft is None:
        target, head_txt = ttfa, f"ear {ttfa:.0f} ms (the agent reported no TTFT); the {ttfa:.0f} ms are "
    else:
        target = ttfa - ttft
        head_txt = f"dashboard {ttft:.0f} ms; ear {ttfa:.0f} ms; the {target:.0f} ms are "
    rest = target - sum(p for _, p in parts)
    text = head_txt + (listed or "not split (no stage telemetry)")
    if parts and abs(rest) >= 1:
        text += f"; {rest:+.0f} ms are not split (medians of stages do not add up exactly)"
    return {"text": text, "parts": [{"label": lbl, "ms": p} for lbl, p in parts], "dashboard_ms": ttft,
            "ear_ms": ttfa, "gap_ms": target, "rest_ms": rest}


def featured_turns(turns: pd.DataFrame) -> list[tuple[str, int]]:
    """(why, row index) of the turns that get waveforms and audio: worst, 2nd worst, p90, median, best."""
    ok = ok_turns(turns)
    if ok.empty:
        return []
    order = ok.sort_values(["ttfa_ms", "call", "turn"], kind="stable").index.to_list()
    n = len(order)
    picks = [("worst", order[-1]), ("2nd worst", order[-2] if n > 1 else None),
             ("p90", order[min(n - 1, int(math.floor(0.9 * (n - 1))))]),
             ("median", order[(n - 1) // 2]), ("best", order[0])]
    seen, out = set(), []
    for why, idx in picks:
        if idx is not None and idx not in seen:
            seen.add(idx)
            out.append((why, int(idx)))
    return out


def _fmt(v) -> str:
    return "none" if v is None else f"{v:.2f}"
