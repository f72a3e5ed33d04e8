"""The suite report: one self-contained HTML page for a `vlh suite` folder (the one holding verdicts.json).

`write_suite_report(suite_dir, out=None)` reads `verdicts.json` (the numbers, verdicts and comparisons the suite
judged on) and, for the trend, the suite's history (`History.trend()`, nights up to the suite's night). It shows,
per scenario: the headline of tonight (TTFA p50/p95 at the ear, provider TTFT, turns, status), a trend chart of
TTFA p50/p95 over the nights in the history (with the scenario's TTFA SLOs), the SLO verdicts with their numbers,
the regressions naming the stage that moved with its shift and CI, and a relative link to the run's own report.

Rendering reuses the run report's pieces (harness.report.render: templates, inline plotly.js and report.js, the
Content-Security-Policy, escaping); every number that `verdicts.json` holds is in the DOM as `data-metric`
attributes, so a browser test can compare them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from harness.errors import VlhError
from harness.report import figures
from harness.report.render import _json_block, _render, _slo, write_page

NUMBER_KEYS = ["n_turns", "n_ok", "n_no_response", "n_error"] + [
    f"{m}_{k}" for m in ("ttfa", "provider_ttft", "interruption") for k in ("n", "p50_ms", "p95_ms")]
SLO_LINES = {"ttfa_p50_ms": ("SLO p50", "dash"), "ttfa_p95_ms": ("SLO p95", "dot")}


def is_suite_dir(path: str | Path) -> bool:
    return (Path(path) / "verdicts.json").is_file()


def load_verdicts(suite_dir: Path) -> dict:
    f = suite_dir / "verdicts.json"
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except OSError as exc:
        raise VlhError(f"{f}: cannot be read ({exc}); give a suite folder written by `vlh suite`") from None
    except ValueError as exc:
        raise VlhError(f"{f}: not valid JSON ({exc}); re-run the suite or restore the file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("scenarios"), list):
        raise VlhError(f"{f}: not a vlh suite verdicts file (no list of scenarios)")
    return doc


def write_suite_report(suite_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the suite report of `suite_dir` to `out` (default: <suite_dir>/report.html)."""
    suite_dir = Path(suite_dir)
    doc = load_verdicts(suite_dir)
    out = Path(out) if out else suite_dir / "report.html"
    if out.is_dir():
        raise VlhError(f"{out}: is a folder; give a file name such as {out / 'report.html'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_page(out, render_suite(doc, suite_dir, out.parent))


def render_suite(doc: dict, suite_dir: Path, report_dir: Path) -> str:
    trends, trend_note = _trends(doc)
    cards, figs = [], {}
    for i, sc in enumerate(doc["scenarios"]):
        card = _card(sc, doc, suite_dir, report_dir, trends.get(sc.get("scenario")))
        card["index"] = i
        if card["trend_fig"]:
            figs[f"trend-{i}"] = card["trend_fig"]
        cards.append(card)
    counts = {k: sum(c["status"] == k for c in cards) for k in ("green", "red", "error")}
    ctx = {
        "title": f"vlh suite — night {doc.get('night', '?')}",
        "suite": {
            "id": doc.get("suite_id"), "night": doc.get("night"), "partial": bool(doc.get("partial")),
            "exit_code": doc.get("exit_code"), "not_run": list(doc.get("not_run") or []),
            "agent": doc.get("agent") or "the reference agent (per scenario profile)",
            "history": doc.get("history"), "baseline_nights": doc.get("baseline_nights"),
            "policy": doc.get("policy"), "started": doc.get("started_utc"), "finished": doc.get("finished_utc"),
            "vlh_version": doc.get("vlh_version"), "counts": counts, "dir": str(suite_dir),
        },
        "verdict_word": {0: "green", 1: "red", 2: "error", 3: "error"}.get(doc.get("exit_code"), "unknown"),
        "trend_note": trend_note,
        "scenarios": cards,
        "data_json": _json_block({"figures": figs}),
    }
    return _render("suite.html.j2", ctx, figs)


# ---------------------------------------------------------------- pieces

def _trends(doc: dict) -> tuple[dict[str, pd.DataFrame], str | None]:
    """History.trend() of every scenario, nights up to the suite's; (trends, a note when the history is not there)."""
    from harness.results.history import History

    path = doc.get("history")
    if not path:
        return {}, "verdicts.json names no history: no trend"
    try:
        hist = History(path, create=False)
    except VlhError as exc:
        return {}, f"no trend: {exc}"
    night = str(doc.get("night") or "9999-99-99")
    out = {}
    for sc in doc["scenarios"]:
        name = sc.get("scenario")
        try:
            tr = hist.trend(name)
        except VlhError as exc:
            return {}, f"no trend: {exc}"
        out[name] = tr[tr["night"].astype(str) <= night].reset_index(drop=True)
    return out, None


def _card(sc: dict, doc: dict, suite_dir: Path, report_dir: Path, trend: pd.DataFrame | None) -> dict:
    name = str(sc.get("scenario"))
    numbers = dict.fromkeys(NUMBER_KEYS) | (sc.get("numbers") or _numbers_from_run(sc.get("run_dir")))
    slo = _slo(sc.get("slo"))
    for row, raw in zip(slo, sc.get("slo") or []):
        row["unit"] = raw.get("unit", "") if isinstance(raw, dict) else ""
        row["n"] = raw.get("n") if isinstance(raw, dict) else None
    comp = sc.get("comparison") or {}
    metrics = [m for m in comp.get("metrics") or []]
    entry = f"{doc.get('suite_id')}.{name}"
    limits = {r["name"]: r["limit"] for r in slo if r["name"] in SLO_LINES}
    return {
        "name": name, "file": sc.get("file") or "", "status": sc.get("status", "error"), "error": sc.get("error"),
        "headline": sc.get("headline") or "", "numbers": numbers, "slo": slo,
        "regressed": bool(comp.get("regressed")), "compared": any(m.get("status") != "skipped" for m in metrics),
        "moved_stage": comp.get("moved_stage"), "moved_stage_label": comp.get("moved_stage_label"),
        "comparison_headline": comp.get("headline") or "", "notes": [
            n for n in comp.get("notes") or [] if n != "no earlier nights in the history"],  # said once, above
        "baseline_nights": list(comp.get("baseline_nights") or []),
        "regressions": [_metric_row(m) for m in metrics if m.get("status") == "regression"],
        "metrics": [_metric_row(m) for m in metrics],
        "skipped_why": next((m.get("note") for m in metrics if m.get("status") == "skipped" and m.get("note")), None)
        if metrics and all(m.get("status") == "skipped" for m in metrics) else None,
        "links": _links(sc.get("run_dir"), name, suite_dir, report_dir),
        "trend_rows": _trend_rows(trend, entry),
        "trend_fig": _trend_figure(trend, entry, limits) if trend is not None and len(trend) else None,
    }


def _metric_row(m: dict) -> dict:
    def ci(v):
        return list(v) if isinstance(v, (list, tuple)) and len(v) == 2 else [None, None]
    return {"metric": m.get("metric"), "label": m.get("label") or m.get("metric"), "status": m.get("status"),
            "n_tonight": m.get("n_tonight"), "n_baseline": m.get("n_baseline"),
            "p50_baseline": _num(m.get("p50_baseline")), "p50_tonight": _num(m.get("p50_tonight")),
            "p95_baseline": _num(m.get("p95_baseline")), "p95_tonight": _num(m.get("p95_tonight")),
            "p50_shift_ms": _num(m.get("p50_shift_ms")), "p50_shift_ci": [_num(x) for x in ci(m.get("p50_shift_ci"))],
            "p50_shift_pct": _num(m.get("p50_shift_pct")),
            "p95_shift_ms": _num(m.get("p95_shift_ms")), "p95_shift_ci": [_num(x) for x in ci(m.get("p95_shift_ci"))],
            "p_value": _num(m.get("p_value")), "p_adjusted": _num(m.get("p_adjusted")), "note": m.get("note") or ""}


def _links(run_dir: str | None, name: str, suite_dir: Path, report_dir: Path) -> dict:
    """Relative links (from the report's folder) to the run's report and folder; the run folder is looked up where
    verdicts.json says, else at its usual place inside the suite folder (a suite folder that was moved)."""
    candidates = [Path(run_dir)] if run_dir else []
    candidates.append(suite_dir / "runs" / name)
    for d in candidates:
        if (d / "run.json").is_file():
            rel = os.path.relpath(d.resolve(), report_dir.resolve())
            report = d / "report.html"
            return {"report": os.path.relpath(report.resolve(), report_dir.resolve()) if report.is_file() else None,
                    "folder": rel.replace(os.sep, "/") + "/"}
    return {"report": None, "folder": None}


def _trend_rows(trend: pd.DataFrame | None, entry: str) -> list[dict]:
    if trend is None:
        return []
    return [{"night": str(r["night"]), "p50": _num(r["ttfa_p50_ms"]), "p95": _num(r["ttfa_p95_ms"]),
             "n_ok": int(r["n_ok"]) if pd.notna(r["n_ok"]) else None, "slo_ok": bool(r["slo_ok"]),
             "tonight": str(r["entry"]) == entry} for _, r in trend.iterrows()]


def _trend_figure(trend: pd.DataFrame, entry: str, limits: dict) -> dict:
    nights = [str(n) for n in trend["night"]]
    p50, p95 = trend["ttfa_p50_ms"].astype(float), trend["ttfa_p95_ms"].astype(float)
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": "TTFA p50", "x": nights, "y": figures._round(p50),
         "line": {"color": "#1f77b4"}, "hovertemplate": "%{x}: p50 %{y:.0f} ms<extra></extra>"},
        {"type": "scatter", "mode": "lines+markers", "name": "TTFA p95", "x": nights, "y": figures._round(p95),
         "line": {"color": "#d62728"}, "hovertemplate": "%{x}: p95 %{y:.0f} ms<extra></extra>"},
    ]
    hit = trend["entry"].astype(str) == entry
    if hit.any():
        i = int(hit.to_numpy().nonzero()[0][-1])
        data.append({"type": "scatter", "mode": "markers", "name": "this suite", "x": [nights[i], nights[i]],
                     "y": figures._round([p50.iloc[i], p95.iloc[i]]),
                     "marker": {"size": 13, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#111"}},
                     "hoverinfo": "skip"})
    shapes, notes = [], []
    for key, (label, dash) in SLO_LINES.items():  # across the whole width, also with a single night
        if limits.get(key) is not None:
            y = float(limits[key])
            shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": y, "y1": y,
                           "line": {"color": "#888", "dash": dash, "width": 1}})
            notes.append({"xref": "paper", "x": 0, "xanchor": "left", "yref": "y", "y": y, "yanchor": "bottom",
                          "text": f"{label} {y:.0f} ms", "showarrow": False, "font": {"size": 11, "color": "#666"}})
    top = max([float(v) for v in limits.values() if v is not None and math.isfinite(float(v))] + [0.0])
    layout = {"height": 260, "margin": {"l": 60, "r": 10, "t": 10, "b": 40}, "hovermode": "closest",
              "xaxis": {"type": "category", "title": {"text": "night"}},
              "yaxis": {"title": {"text": "TTFA at the ear, ms"}, "rangemode": "tozero"},
              "legend": {"orientation": "h", "y": -0.3}, "shapes": shapes, "annotations": notes}
    data_hi = float(p95.max()) if p95.notna().any() else 0.0
    hi = max(data_hi, top if top <= 2 * data_hi else 0.0)  # an SLO far above the data stays in the table only
    if hi > 0:
        layout["yaxis"]["range"] = [0, hi * 1.12]
    return {"data": data, "layout": layout}


def _numbers_from_run(run_dir: str | None) -> dict:
    """verdicts.json from before `numbers` existed: the same figures from the run folder, when it is still there."""
    if not run_dir or not (Path(run_dir) / "turns.parquet").is_file():
        return {}
    from harness.results.headline import headline_numbers

    try:
        return headline_numbers(pd.read_parquet(Path(run_dir) / "turns.parquet"))
    except (OSError, ValueError):
        return {}


def _num(v):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
