"""The load section of a report: "TTFA p50/p95 vs concurrent calls" with the SLO lines, the capacity statement of
`vlh load --find-capacity`, and the stage whose mean grew most from the lowest to the highest load.

x = the step's number of callers (`load_level`, capacity search) or, for a plain load run, the calls under way when
the user finished speaking (`concurrent_calls`). Exact percentiles of the answered turns at each x."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.report.figures import STAGE_COLORS
from harness.results.schema import STAGES


def load_x(turns: pd.DataFrame) -> pd.Series | None:
    for col in ("load_level", "concurrent_calls"):
        if col in turns and turns[col].notna().any():
            return turns[col]
    return None


def slo_limits(meta: dict) -> dict[str, float]:
    cap = meta.get("capacity") or {}
    limits = dict(cap.get("slo") or {})
    for s in meta.get("slo") or []:
        limits.setdefault(s.get("name"), s.get("threshold"))
    return {k: float(v) for k, v in limits.items() if k in ("ttfa_p50_ms", "ttfa_p95_ms") and v is not None}


def levels_table(turns: pd.DataFrame) -> list[dict]:
    x = load_x(turns)
    if x is None:
        return []
    out = []
    for level, g in turns.groupby(x):
        ok = g[(g["status"] == "ok") & g["ttfa_ms"].notna()]
        row = {"level": int(level), "turns": int(len(g)), "answered": int(len(ok))}
        if len(ok):
            row.update(p50=float(np.percentile(ok["ttfa_ms"], 50)), p95=float(np.percentile(ok["ttfa_ms"], 95)))
        out.append(row)
    return out


def stage_that_grew(turns: pd.DataFrame) -> dict | None:
    """The stage whose mean (answered turns) grew most from the lowest to the highest level — means, because stage
    means add up to the mean TTFA, and a queue shows in the tail before the median."""
    x = load_x(turns)
    if x is None or x.nunique() < 2:
        return None
    ok = turns[(turns["status"] == "ok")]
    lo, hi = ok[x[ok.index] == x.min()], ok[x[ok.index] == x.max()]
    best = None
    for s in STAGES:
        c = f"{s}_ms"
        if c in ok and lo[c].notna().any() and hi[c].notna().any():
            d = float(hi[c].mean() - lo[c].mean())
            if best is None or d > best["grew_ms"]:
                best = {"stage": s, "grew_ms": d, "from": int(x.min()), "to": int(x.max()),
                        "low_ms": float(lo[c].mean()), "high_ms": float(hi[c].mean())}
    return best


def load_figure(turns: pd.DataFrame, meta: dict) -> dict | None:
    rows = [r for r in levels_table(turns) if "p50" in r]
    if not rows:
        return None
    xs = [r["level"] for r in rows]
    data = [{"type": "scatter", "mode": "lines+markers", "name": name, "x": xs, "y": [round(r[key], 1) for r in rows],
             "line": {"color": color}, "customdata": [r["answered"] for r in rows],
             "hovertemplate": "%{x} calls: " + name + " %{y:.0f} ms (%{customdata} turns)<extra></extra>"}
            for name, key, color in (("TTFA p50", "p50", "#1f77b4"), ("TTFA p95", "p95", "#d62728"))]
    shapes, notes = [], []
    for name, limit in slo_limits(meta).items():
        color = "#1f77b4" if "p50" in name else "#d62728"
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": limit, "y1": limit,
                       "line": {"color": color, "dash": "dash", "width": 1}})
        notes.append({"xref": "paper", "x": 1, "y": limit, "xanchor": "right", "yanchor": "bottom",
                      "showarrow": False, "text": f"SLO {name} ≤ {limit:.0f} ms", "font": {"color": color}})
    cap = (meta.get("capacity") or {}).get("capacity")
    if cap is not None:
        shapes.append({"type": "line", "yref": "paper", "x0": cap, "x1": cap, "y0": 0, "y1": 1,
                       "line": {"color": "#2ca02c", "width": 2}})
        notes.append({"yref": "paper", "x": cap, "y": 1, "yanchor": "bottom", "showarrow": False,
                      "text": f"capacity {cap}", "font": {"color": "#2ca02c"}})
    x_title = "concurrent calls (step)" if "load_level" in turns and turns["load_level"].notna().any() \
        else "calls under way when the user stopped speaking"
    layout = {"height": 380, "margin": {"l": 60, "r": 10, "t": 30, "b": 50}, "hovermode": "closest",
              "xaxis": {"title": {"text": x_title}, "dtick": 1 if max(xs) <= 20 else None},
              "yaxis": {"title": {"text": "TTFA at the ear, ms"}, "rangemode": "tozero"},
              "shapes": shapes, "annotations": notes, "legend": {"orientation": "h", "y": -0.2}}
    return {"data": data, "layout": layout}


def load_context(turns: pd.DataFrame, meta: dict) -> dict | None:
    """What the template shows, or None for a run that is not a load run."""
    if not meta.get("load") or load_x(turns) is None:
        return None
    grew = stage_that_grew(turns)
    return {"levels": levels_table(turns), "statement": (meta.get("capacity") or {}).get("statement"),
            "grew": grew, "grew_color": STAGE_COLORS.get(grew["stage"]) if grew else None,
            "engine": meta["load"].get("engine", "locust"), "workers": meta["load"].get("workers")}
