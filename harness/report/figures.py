"""Plotly figures of the report as plain dicts ({"data", "layout"}) that the page hands to the inline plotly.js.

Plain dicts keep 10 000-turn reports fast and small (values rounded to 0.1 ms); tests validate them against
plotly's schema with `plotly.graph_objects.Figure`. Agent-provided names shown by plotly (span names) are
HTML-escaped first: plotly renders a subset of HTML in labels.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from harness.report.schema import STAGES, stage_label
from harness.report.summary import ok_turns

MAX_BARS = 1500  # above this the waterfall shows groups of neighbouring turns (means add up exactly)
STAGE_COLORS = {
    "endpointing": "#4e79a7", "stt": "#f28e2b", "llm_dispatch": "#edc948", "llm_ttft": "#e15759",
    "reasoning": "#b07aa1", "aggregation": "#76b7b2", "tts_ttfb": "#59a14f", "agent_output": "#9c755f",
    "transport": "#ff9da7", "jitter_buffer": "#17becf", "codec": "#8cd17d", "playout": "#d4a6c8",
}
UNATTRIBUTED_COLOR, RESIDUAL_COLOR = "#8c8c8c", "#c7c7c7"
EXTRA_COLORS = ["#1f77b4", "#bcbd22", "#7f7f7f", "#aec7e8", "#98df8a"]
RUN_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
CONFIG = {"displaylogo": False, "responsive": True}


def span_key(span: dict) -> str:
    """The waterfall trace a span belongs to: its stage, an unattributed span by name, a residual by place."""
    kind, name, covers = span.get("kind"), span["name"], span.get("covers") or []
    if kind == "residual" or name == "residual":
        return "residual" if not covers else f"residual ({covers[0]}…{covers[-1]})"
    return name


def span_style(key: str, kind: str, extra: dict) -> dict:
    if kind == "residual":
        return {"color": RESIDUAL_COLOR, "pattern": {"shape": "x", "fgcolor": "#707070", "size": 6}}
    if kind == "unattributed":
        return {"color": UNATTRIBUTED_COLOR, "pattern": {"shape": "/", "fgcolor": "#555555", "size": 6}}
    if key in STAGE_COLORS:
        return {"color": STAGE_COLORS[key]}
    c = extra.setdefault(key, EXTRA_COLORS[len(extra) % len(EXTRA_COLORS)])
    return {"color": c}


def waterfall(turns: pd.DataFrame) -> dict | None:
    """Stacked bar per turn (sorted by TTFA), spans in pipeline order, residual and unattributed visible.

    Returns {"data", "layout", "groups"}: groups[i] = row indices of the turns bar i+1 shows."""
    ok = ok_turns(turns).sort_values(["ttfa_ms", "call", "turn"], kind="stable")
    if ok.empty:
        return None
    n = len(ok)
    size = int(np.ceil(n / MAX_BARS))
    groups = [ok.index[i:i + size].to_list() for i in range(0, n, size)]
    nb = len(groups)
    values: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    pos: dict[str, list[float]] = {}
    for bar, rows in enumerate(groups):
        for r in rows:
            spans = turns.at[r, "spans"]
            ttfa = turns.at[r, "ttfa_ms"] or 1.0
            before = 0.0
            for sp in spans:
                k = span_key(sp)
                if k not in values:
                    values[k] = np.zeros(nb) if size > 1 else np.full(nb, np.nan)
                    kinds[k] = sp.get("kind", "stage")
                    pos[k] = []
                if size > 1:
                    values[k][bar] += sp["ms"] / len(rows)
                else:
                    values[k][bar] = (0.0 if np.isnan(values[k][bar]) else values[k][bar]) + sp["ms"]
                pos[k].append(before / ttfa)
                before += max(sp["ms"], 0.0)
    order = sorted(values, key=lambda k: (float(np.mean(pos[k])), STAGES.index(k) if k in STAGES else 99))
    x = list(range(1, nb + 1))
    extra: dict = {}
    data = []
    for k in order:
        label = html.escape(stage_label(k))
        data.append({"type": "bar", "name": label, "x": x, "y": _round(values[k]),
                     "marker": span_style(k, kinds[k], extra), "hovertemplate": "%{y:.1f} ms"})
    ttfa = [float(np.mean(ok.loc[g, "ttfa_ms"])) for g in groups]
    ttft = [float(np.nanmean(ok.loc[g, "provider_ttft_ms"])) if ok.loc[g, "provider_ttft_ms"].notna().any()
            else None for g in groups]
    who = [f"call {ok.at[g[0], 'call']} turn {ok.at[g[0], 'turn']}" if len(g) == 1 else
           f"{len(g)} turns, TTFA {ok.at[g[0], 'ttfa_ms']:.0f}–{ok.at[g[-1], 'ttfa_ms']:.0f} ms" for g in groups]
    data.append({"type": "scatter", "mode": "markers", "name": "TTFA at the ear", "x": x, "y": _round(ttfa),
                 "text": who, "marker": {"color": "#222222", "size": 3, "symbol": "line-ew-open"},
                 "hovertemplate": "%{text}: TTFA %{y:.1f} ms<extra></extra>"})
    if any(v is not None for v in ttft):
        data.append({"type": "scatter", "mode": "markers", "name": "provider TTFT (dashboard)", "x": x,
                     "y": _round(ttft), "marker": {"color": "#e15759", "size": 4, "symbol": "diamond"},
                     "hovertemplate": "provider TTFT %{y:.1f} ms<extra></extra>"})
    what = "one bar per turn" if size == 1 else f"each bar = mean of {size} turns with neighbouring TTFA"
    layout = {
        "barmode": "relative", "bargap": 0.05 if nb < 200 else 0, "hovermode": "x unified",
        "height": 420, "margin": {"l": 60, "r": 10, "t": 10, "b": 50},
        "xaxis": {"title": {"text": f"turns sorted by TTFA ({what}; click for the detail)"}},
        "yaxis": {"title": {"text": "ms after the end of user speech"}},
        "legend": {"orientation": "h", "y": -0.18, "traceorder": "normal"},
    }
    return {"data": data, "layout": layout, "groups": [[int(i) for i in g] for g in groups]}


def ecdf(series: list[dict], title: str = "ms") -> dict | None:
    """ECDF lines from all values (exact, no buckets) with p50/p95/p99 marked. series: {name, values, color, dash}."""
    data = []
    for s in series:
        v = np.sort(np.asarray(pd.to_numeric(pd.Series(s["values"], dtype="float64")), dtype=float))
        v = v[np.isfinite(v)]
        if len(v) == 0:
            continue
        y = np.arange(1, len(v) + 1) / len(v)
        name = html.escape(s["name"])
        data.append({"type": "scatter", "mode": "lines", "name": name, "x": _round(v), "y": _round(y, 5),
                     "line": {"shape": "hv", "color": s.get("color"), "dash": s.get("dash", "solid")},
                     "hovertemplate": "%{x:.1f} ms: %{y:.2%} of turns<extra>" + name + "</extra>"})
        qs = np.percentile(v, [50, 95, 99])
        data.append({"type": "scatter", "mode": "markers+text", "showlegend": False, "name": name + " quantiles",
                     "x": _round(qs), "y": [0.5, 0.95, 0.99], "text": [f"p50 {qs[0]:.0f}", f"p95 {qs[1]:.0f}",
                                                                    f"p99 {qs[2]:.0f}"],
                     "textposition": "middle right", "marker": {"color": s.get("color"), "size": 7},
                     "hovertemplate": "%{text} ms<extra>" + name + "</extra>"})
    if not data:
        return None
    layout = {
        "height": 400, "margin": {"l": 60, "r": 10, "t": 48, "b": 50}, "hovermode": "closest",
        "xaxis": {"title": {"text": title}, "type": "linear", "rangemode": "tozero"},
        "yaxis": {"title": {"text": "share of answered turns ≤ x"}, "range": [0, 1.02], "tickformat": ".0%"},
        "legend": {"orientation": "h", "y": -0.2},
        "updatemenus": [{"type": "buttons", "direction": "right", "x": 1, "xanchor": "right", "y": 1.02,
                         "yanchor": "bottom",
                         "buttons": [{"label": "linear x", "method": "relayout", "args": [{"xaxis.type": "linear"}]},
                                     {"label": "log x", "method": "relayout", "args": [{"xaxis.type": "log"}]}]}],
    }
    return {"data": data, "layout": layout}


def stage_compare(tables: list[tuple[str, list[dict]]]) -> dict:
    """Grouped bars: p50 of each stage per run (hover shows p95)."""
    data = []
    for i, (name, table) in enumerate(tables):
        rows = [r for r in table if r["p50"] is not None]
        data.append({"type": "bar", "name": html.escape(name), "x": [html.escape(r["label"]) for r in rows],
                     "y": _round([r["p50"] for r in rows]), "customdata": _round([r["p95"] for r in rows]),
                     "marker": {"color": RUN_COLORS[i % len(RUN_COLORS)]},
                     "hovertemplate": "p50 %{y:.1f} ms, p95 %{customdata:.1f} ms"})
    layout = {"barmode": "group", "height": 360, "margin": {"l": 60, "r": 10, "t": 10, "b": 80},
              "yaxis": {"title": {"text": "stage p50, ms"}}, "legend": {"orientation": "h", "y": -0.3}}
    return {"data": data, "layout": layout}


def _round(v, nd: int = 1) -> list:
    a = np.asarray(v, dtype=float)
    return [None if not np.isfinite(x) else round(float(x), nd) for x in a]
