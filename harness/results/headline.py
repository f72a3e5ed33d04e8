"""A run's headline figures: TTFA, provider TTFT and (barge-in) interruption p50/p95 over the answered turns, and
the turn counts. One definition for the suite's verdicts and the suite report."""

from __future__ import annotations

import pandas as pd

from harness.results.stats import percentile


def headline_numbers(turns: pd.DataFrame) -> dict:
    """Tonight's figures of one run for the suite report: TTFA, provider TTFT and (barge-in) interruption p50/p95
    over the answered turns (numpy linear percentiles, like the run report and the SLOs), and the turn counts."""
    status = turns["status"].astype(str) if "status" in turns.columns else pd.Series([], dtype=str)
    ok = turns[status == "ok"]
    out: dict = {"n_turns": int(len(turns)), "n_ok": int(len(ok)),
                 "n_no_response": int((status == "no_response").sum()),
                 "n_error": int(status.str.startswith("error").sum())}
    for col, rows in (("ttfa_ms", ok), ("provider_ttft_ms", ok), ("interruption_ms", turns)):
        v = pd.to_numeric(rows[col], errors="coerce").dropna().to_numpy(float) if col in rows.columns else []
        base = col.removesuffix("_ms")
        out[f"{base}_n"] = int(len(v))
        for q in (50, 95):
            out[f"{base}_p{q}_ms"] = percentile(v, q)
    return out
