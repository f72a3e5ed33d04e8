"""Plotly figures of the report as plain dicts ({"data", "layout"}) that the page hands to the inline plotly.js.

Plain dicts keep 10 000-turn reports fast and small (values rounded to 0.1 ms); tests validate them against
plotly's schema with `plotly.graph_objects.Figure`. Agent-provided names shown by plotly (span names) are
HTML-escaped first: plotly renders a subset of HTML in labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.results.schema import STAGES, stage_label
from harness.results.stats import percentiles
from harness.report.summary import ok_turns

MAX_BARS = 600  # above this the waterfall shows groups of neighbouring turns (means add up exactly); 600 bars are
# ≈ 2 px each at the report's plot width (1 500 were < 1 px) and the chart on the first screen draws in ⅓ the time
AREA_FROM = 200  # from this many bars on, each stage is one filled outline (the same bars, gapless) instead of one
# SVG rectangle per bar and stage: 1 500 bars × 15 stages were ≈ 22 000 nodes and most of the report's draw time
STAGE_COLORS = {
    "endpointing": "#4e79a7", "stt": "#f28e2b", "turn_detection": "#bab0ac", "llm_dispatch": "#edc948", "llm_ttft": "#e15759",
    "reasoning": "#b07aa1", "aggregation": "#76b7b2", "tts_ttfb": "#59a14f", "agent_output": "#9c755f",
    "transport": "#ff9da7", "jitter_buffer": "#17becf", "codec": "#8cd17d", "playout": "#d4a6c8",
}
UNATTRIBUTED_COLOR, RESIDUAL_COLOR = "#8c8c8c", "#c7c7c7"
EXTRA_COLORS = ["#1f77b4", "#bcbd22", "#7f7f7f", "#aec7e8", "#98df8a"]
RUN_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
CONFIG = {"displaylogo": False, "responsive": True}


def span_style(key: str, kind: str, extra: dict) -> dict:
    if kind == "residual":
        return {"color": RESIDUAL_COLOR, "pattern": {"shape": "x", "fgcolor": "#707070", "size": 6}}
    if kind == "unattributed":
        return {"color": UNATTRIBUTED_COLOR, "pattern": {"shape": "/", "fgcolor": "#555555", "size": 6}}
    if key in STAGE_COLORS:
        return {"color": STAGE_COLORS[key]}
    c = extra.setdefault(key, EXTRA_COLORS[len(extra) % len(EXTRA_COLORS)])
    return {"color": c}


def waterfall(turns: pd.DataFrame, spans: pd.DataFrame) -> dict | None:
    """Stacked bar per turn (sorted by TTFA), spans in pipeline order, residual and unattributed visible.

    `turns` is indexed 0..n-1 and `spans.row` refers to that index (harness.report.load).
    Returns {"data", "layout", "groups"}: groups[i] = row indices of the turns bar i+1 shows."""
    ok = ok_turns(turns).sort_values(["ttfa_ms", "call", "turn"], kind="stable")
    if ok.empty:
        return None
    n = len(ok)
    size = int(np.ceil(n / MAX_BARS))
    nb = int(np.ceil(n / size))
    rows = ok.index.to_numpy()
    groups = [rows[i:i + size].tolist() for i in range(0, n, size)]
    rank = np.full(len(turns), -1)
    rank[rows] = np.arange(n)
    sp = spans[rank[spans["row"].to_numpy()] >= 0] if len(spans) else spans
    # a negative span (a residual where the reported durations do not fit) is never drawn as a bar: the page lists
    # it as an anomaly row with its value (health.negative_spans), and the bar's top then exceeds the TTFA marker
    sp = sp[sp["ms"].to_numpy(dtype=float) >= 0] if len(sp) else sp
    r = rank[sp["row"].to_numpy()]
    bar = r // size
    ms = sp["ms"].to_numpy(dtype=float)
    pos_ms = np.clip(ms, 0.0, None)
    before = pd.Series(pos_ms).groupby(sp["row"].to_numpy()).cumsum().to_numpy() - pos_ms
    ttfa_row = turns["ttfa_ms"].to_numpy(dtype=float)[sp["row"].to_numpy()]
    rel = before / np.where(ttfa_row > 0, ttfa_row, 1.0)
    codes, keys = pd.factorize(sp["key"], sort=False)
    nk = len(keys)
    first = pd.Series(sp["kind"].to_numpy()).groupby(codes).first() if nk else pd.Series(dtype=object)
    pos = np.bincount(codes, weights=rel, minlength=nk) / np.maximum(np.bincount(codes, minlength=nk), 1)
    group_len = np.array([len(g) for g in groups], dtype=float)
    values = np.zeros((nk, nb))
    np.add.at(values, (codes, bar), ms / group_len[bar])
    if size == 1:
        present = np.zeros((nk, nb), dtype=bool)
        present[codes, bar] = True
        values[~present] = np.nan  # per turn: no bar where the turn has no such span
    order = sorted(range(nk), key=lambda k: (pos[k], STAGES.index(keys[k]) if keys[k] in STAGES else 99))
    x = list(range(1, nb + 1))
    extra: dict = {}
    data = []
    bar_of = np.arange(n) // size
    overlap = _overlapped(ok, bar_of, nb)
    for k in order:
        style = span_style(keys[k], first[k], extra)
        if nb < AREA_FROM:
            trace = {"type": "bar", "name": esc(stage_label(keys[k])), "x": x, "y": _round(values[k]),
                     "marker": style, "hovertemplate": "%{y:.1f} ms"}
            traces = [trace]
        else:
            traces = _stage_area(esc(stage_label(keys[k])), values[k], style)
        if keys[k] in overlap:  # the parallel stage placed second: how long it ran beside the first, not summed
            ov, beside = overlap[keys[k]]
            hover = ("%{y:.1f} ms on the path; + %{customdata:.1f} ms overlapped beside "
                     f"{esc(stage_label(beside))} (not summed)")
            for t in traces:  # areas have two points per bar
                t["customdata"] = _round(ov) if t["type"] == "bar" else _round(np.repeat(ov, 2))
                t["hovertemplate"] = hover
        data.extend(traces)
    ttfa = ok["ttfa_ms"].groupby(bar_of).mean().to_numpy()
    ttft = ok["provider_ttft_ms"].groupby(bar_of).mean().to_numpy()  # NaN where no turn reported one
    calls, tns, tt = ok["call"].tolist(), ok["turn"].tolist(), ok["ttfa_ms"].tolist()
    if size == 1:
        who = [f"call {c} turn {t}" for c, t in zip(calls, tns)]
    else:
        who = [f"{min(size, n - i)} turns, TTFA {tt[i]:.0f}–{tt[min(n, i + size) - 1]:.0f} ms"
               for i in range(0, n, size)]
    data.append({"type": "scatter", "mode": "markers", "name": "TTFA at the ear", "x": x, "y": _round(ttfa),
                 "text": who, "marker": {"color": "#222222", "size": 3, "symbol": "line-ew-open"},
                 "hovertemplate": "%{text}: TTFA %{y:.1f} ms<extra></extra>"})
    if np.isfinite(ttft).any():
        data.append({"type": "scatter", "mode": "markers", "name": "provider TTFT (dashboard)", "x": x,
                     "y": _round(ttft), "marker": {"color": "#e15759", "size": 4, "symbol": "diamond"},
                     "hovertemplate": "provider TTFT %{y:.1f} ms<extra></extra>"})
    what = "one bar per turn" if size == 1 else f"each bar = mean of {size} turns with neighbouring TTFA"
    if nb >= AREA_FROM:
        for t in data:
            if t["type"] == "scatter" and t.get("mode") == "markers":  # one outline marks TTFA over all bars
                t.update(mode="lines", line={"color": t["marker"]["color"], "width": 1, "shape": "hvh"})
                t.pop("marker")
    layout = {
        "barmode": "relative", "bargap": 0.05 if nb < 200 else 0, "hovermode": "x unified",
        "height": 440, "margin": {"l": 60, "r": 10, "t": 10, "b": 50},
        "xaxis": {"title": {"text": f"turns sorted by TTFA ({what}; click for the detail)"}},
        "yaxis": {"title": {"text": "ms after the end of user speech"}},
        "legend": {"orientation": "v", "x": 1.01, "y": 1, "traceorder": "reversed", "font": {"size": 11}},
    }
    return {"data": data, "layout": layout, "groups": groups}


PARALLEL = ("stt", "turn_detection")  # the stages that run side by side after the agent's VAD end


def _overlapped(ok: pd.DataFrame, bar_of: np.ndarray, nb: int) -> dict[str, tuple[np.ndarray, str]]:
    """stage → (per bar: mean overlapped_ms of its turns where that stage was the overlapped one, the other
    parallel stage it ran beside)."""
    if "overlapped_stage" not in ok.columns or "overlapped_ms" not in ok.columns:
        return {}
    st = ok["overlapped_stage"].to_numpy(dtype=object)
    ms = pd.to_numeric(ok["overlapped_ms"], errors="coerce").to_numpy(dtype=float)
    out = {}
    for stage in PARALLEL:
        sel = (st == stage) & np.isfinite(ms)
        if not sel.any():
            continue
        tot = np.bincount(bar_of[sel], weights=ms[sel], minlength=nb)
        cnt = np.bincount(bar_of[sel], minlength=nb)
        mean = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
        out[stage] = (mean, PARALLEL[1 - PARALLEL.index(stage)])
    return out


def _stage_area(name: str, v: np.ndarray, style: dict) -> list[dict]:
    """One stage of the waterfall as filled outlines stacked like relative bars: bar i spans x ∈ [i − ½, i + ½]
    (two points, a hair inside so neighbours do not share an x), positive values stacked up from 0 in trace order
    ("pos" stack), negative ones down from 0 ("neg" stack) — what barmode "relative" does with the same values.
    No span: 0 (nothing drawn). Hover and click read the bar's index as round(x)."""
    v = np.nan_to_num(np.asarray(v, float), nan=0.0)
    i = np.arange(1, len(v) + 1, dtype=float)
    xs = np.round(np.column_stack([i - 0.4999, i + 0.4999]).ravel(), 4).tolist()
    color = style.get("color")
    out = []
    for part, stack in ((np.clip(v, 0, None), "pos"), (np.clip(v, None, 0), "neg")):
        if stack == "neg" and not (part < 0).any():
            continue
        ys = _round(np.repeat(part, 2))
        t = {"type": "scatter", "mode": "lines", "name": name, "x": xs, "y": ys, "stackgroup": stack,
             "legendgroup": name, "showlegend": stack == "pos", "fillcolor": color,
             "line": {"width": 0, "color": color}, "hovertemplate": "%{y:.1f} ms"}
        if "pattern" in style:
            t["fillpattern"] = style["pattern"]
        out.append(t)
    return out


def ecdf(series: list[dict], title: str = "ms") -> dict | None:
    """ECDF lines from all values (exact, no buckets) with p50/p95/p99 marked. series: {name, values, color, dash}."""
    data = []
    for s in series:
        v = np.sort(np.asarray(pd.to_numeric(pd.Series(s["values"], dtype="float64")), dtype=float))
        v = v[np.isfinite(v)]
        if len(v) == 0:
            continue
        y = np.arange(1, len(v) + 1) / len(v)
        name = esc(s["name"])
        data.append({"type": "scatter", "mode": "lines", "name": name, "x": _round(v), "y": _round(y, 5),
                     "line": {"shape": "hv", "color": s.get("color"), "dash": s.get("dash", "solid")},
                     "hovertemplate": "%{x:.1f} ms: %{y:.2%} of turns<extra>" + name + "</extra>"})
        qs = percentiles(v, [50, 95, 99])
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
        data.append({"type": "bar", "name": esc(name), "x": [esc(r["label"]) for r in rows],
                     "y": _round([r["p50"] for r in rows]), "customdata": _round([r["p95"] for r in rows]),
                     "marker": {"color": RUN_COLORS[i % len(RUN_COLORS)]},
                     "hovertemplate": "p50 %{y:.1f} ms, p95 %{customdata:.1f} ms"})
    layout = {"barmode": "group", "height": 360, "margin": {"l": 60, "r": 10, "t": 10, "b": 80},
              "yaxis": {"title": {"text": "stage p50, ms"}}, "legend": {"orientation": "h", "y": -0.3}}
    return {"data": data, "layout": layout}


def esc(s: str) -> str:
    """Text for plotly labels: &, < and > escaped (plotly renders a subset of HTML tags; quotes are harmless)."""
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _round(v, nd: int = 1) -> list:
    """Rounded floats with None for missing values (JSON null)."""
    a = np.round(np.asarray(v, dtype=float), nd)
    out = a.tolist()
    bad = np.flatnonzero(~np.isfinite(a))
    for i in bad.tolist():
        out[i] = None
    return out
