"""The self-contained HTML report: one run, or several compared with the first.

`write_report(run_dirs, out)` loads the run folder(s), renders templates/*.html.j2 (jinja2, autoescape on) with
plotly.js inline (the basic bundle in vendor/ when it draws every trace, see plotly_bundle.py), and writes `out`
(atomically). Everything the page needs is in the file: it opens from disk with no network. Data for the scripts travels as JSON in a <script type="application/json">
block with <, > and & escaped, so no text inside it can end the block.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import tempfile
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import jinja2
from markupsafe import Markup

from harness import __version__
from harness.errors import VlhError
from harness.report import capacity, figures, health, plotly_bundle
from harness.report.compare import compare_runs
from harness.report.load import Run, load_run
from harness.results.redact import redact_config, redact_url
from harness.results.schema import HEADLINE_METRICS, PERCENTILES, SOURCES, STAGE_LABELS, STAGES, stage_label
from harness.report.framework import framework_sentence
from harness.report.summary import check_summary, featured_turns, headline, seed_sentence, stage_table
from harness.report.turndata import turn_data

METRIC_IDS = {"ttfa_ms": "ttfa", "provider_ttft_ms": "provider_ttft", "gap_ms": "gap"}
METRIC_NAMES = {"ttfa_ms": "TTFA at the ear", "provider_ttft_ms": "provider TTFT (dashboard)",
                "gap_ms": "gap (per turn: TTFA − provider TTFT)"}


def write_report(run_dirs: list[Path], out: Path) -> Path:
    """Write the report of one run (or a comparison of several, the first being the baseline) to `out`."""
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise VlhError("no run folder given; pass at least one folder written by `vlh run`")
    out = Path(out)
    if out.is_dir():
        raise VlhError(f"{out}: is a folder; give a file name such as {out / 'report.html'}")
    runs = [load_run(d) for d in run_dirs]
    out.parent.mkdir(parents=True, exist_ok=True)
    page = render_single(runs[0], out.parent) if len(runs) == 1 else render_compare(runs, out.parent)
    return write_page(out, page)


def write_page(out: Path, page: str) -> Path:
    """Write `page` to `out` atomically (a reader never sees half a report), with the umask's permissions."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".report-", suffix=".html")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def render_single(run: Run, report_dir: Path) -> str:
    head = headline(run.meta, run.turns)
    table = stage_table(run.turns, head["metrics"]["ttfa_ms"]["p50"])
    featured = featured_turns(run.turns)
    wf = figures.waterfall(run.turns, run.spans)
    ok = run.ok
    ecdf = figures.ecdf([
        {"name": "TTFA at the ear", "values": ok["ttfa_ms"], "color": "#1f77b4"},
        {"name": "provider TTFT (dashboard)", "values": ok["provider_ttft_ms"], "color": "#e15759", "dash": "dot"},
    ])
    data = {
        "figures": {k: v for k, v in (("waterfall", wf), ("ecdf", ecdf)) if v},
        "groups": wf["groups"] if wf else [],
        "turns": turn_data(run, featured, report_dir),
        "colors": _colors(),
    }
    if wf:
        del data["figures"]["waterfall"]["groups"]
    load = capacity.load_context(run.turns, run.meta)  # `vlh load` runs: TTFA vs concurrent calls
    if load is not None:
        fig = capacity.load_figure(run.turns, run.meta)
        if fig:
            data["figures"]["load"] = fig
    ctx = {
        "title": report_title(run.meta, run.run_id),
        "run": _run_ctx(run, head, report_dir),
        "seed": seed_sentence(head, table),
        "framework": framework_sentence(run.meta, run.turns),  # OTLP: the framework's own figure vs the ear
        "stages": table,
        "featured": [{"why": why, "row": i, "call": int(run.turns.at[i, "call"]), "turn": int(run.turns.at[i, "turn"]),
                      "ttfa": float(run.turns.at[i, "ttfa_ms"])} for why, i in featured],
        "health": _health_ctx(run),
        "quantiles": _quantile_rows(ok),
        "data_json": _json_block(data),
        "load": load,
    }
    return _render("single.html.j2", ctx, data["figures"])


def render_compare(runs: list[Run], report_dir: Path) -> str:
    base = runs[0]
    heads = [headline(r.meta, r.turns) for r in runs]
    tables = [stage_table(r.turns, h["metrics"]["ttfa_ms"]["p50"]) for r, h in zip(runs, heads)]
    comps = [compare_runs(base, r) for r in runs[1:]]
    labels = [_run_label(r, i) for i, r in enumerate(runs)]
    series = []
    for i, (r, lbl) in enumerate(zip(runs, labels)):
        c = figures.RUN_COLORS[i % len(figures.RUN_COLORS)]
        series.append({"name": f"{lbl}: TTFA", "values": r.ok["ttfa_ms"], "color": c})
        series.append({"name": f"{lbl}: provider TTFT", "values": r.ok["provider_ttft_ms"], "color": c, "dash": "dot"})
    figs = {"ecdf": figures.ecdf(series), "stages": figures.stage_compare(list(zip(labels, tables)))}
    data = {"figures": {k: v for k, v in figs.items() if v}}
    ctx = {
        "title": f"vlh comparison — {len(runs)} runs",
        "runs": [_run_ctx(r, h, report_dir) | {"label": lbl, "color": figures.RUN_COLORS[i % len(figures.RUN_COLORS)],
                                               "seed": seed_sentence(h, t)["text"]}
                 for i, (r, h, lbl, t) in enumerate(zip(runs, heads, labels, tables))],
        "comparisons": [_comparison_ctx(c, labels[0], labels[i + 1], i + 1) for i, c in enumerate(comps)],
        "data_json": _json_block(data),
    }
    return _render("compare.html.j2", ctx, data["figures"])


# ---------------------------------------------------------------- context pieces

def report_title(m: dict, run_id: str) -> str:
    """'vlh report — <agent> · <scenario> · <date>': what was measured, when."""
    if m.get("agent") == "reference":
        agent = f"reference agent ({m.get('profile') or 'typical'})"
    else:
        agent = redact_url(str(m.get("agent_url"))) if m.get("agent_url") else "external agent"
    bits = [agent]
    if m.get("scenario") and m.get("scenario") != "builtin":
        bits.append(str(m["scenario"]))
    bits.append(str(m.get("created_utc") or "")[:10] or run_id)
    return "vlh report — " + " · ".join(bits)


def _run_ctx(run: Run, head: dict, report_dir: Path) -> dict:
    m = run.meta
    rows = []
    for k, v in head["metrics"].items():
        cells = [{"id": f"{METRIC_IDS[k]}_{p}_ms", "value": v.get(p)} for p in list(PERCENTILES) + ["max"]]
        rows.append({"metric": k, "name": METRIC_NAMES[k], "cells": cells, "n": v.get("n")})
    problems = list(run.problems)
    mismatch = check_summary(m, run.turns)
    own_report = run.path / "report.html"
    return {
        "id": run.run_id, "path": str(run.path), "partial": run.partial and m.get("state") != "failed",
        "failed": m.get("state") == "failed", "error": m.get("error"), "headline": rows,
        "head_source": head["source"], "status": head["status"], "ok": int(len(run.ok)),
        "total": int(len(run.turns)), "mismatch": mismatch, "problems": problems,
        "slo": _slo(m.get("slo")),
        "meta": _meta_rows(m),
        "report_link": (os.path.relpath(own_report.resolve(), report_dir.resolve())
                        if own_report.is_file() and own_report.resolve().parent != report_dir.resolve() else None),
    }


def _meta_rows(m: dict) -> list[tuple[str, str]]:
    def show(v):
        if v is None:
            return "—"
        if isinstance(v, (dict, list)):
            return json.dumps(v, indent=None, sort_keys=True, default=str)
        return str(v)
    rows = [("vlh version (run)", show(m.get("vlh_version"))), ("vlh version (report)", __version__),
            ("run id", show(m.get("run_id"))), ("date (UTC)", show(m.get("created_utc"))),
            ("host", show(m.get("host"))), ("agent URL", redact_url(m.get("agent_url")) or "—"),
            ("transport", _transport_label(m)), ("scenario", show(m.get("scenario"))),
            ("profile", show(m.get("profile"))), ("calls", show(m.get("calls"))),
            ("partial", show(m.get("partial", False))), ("codec delay (ms)", show(m.get("codec_delay_ms"))),
            ("configuration", show(redact_config(m.get("config"))))]
    return rows


def _transport_label(m: dict) -> str:
    """The run's transport; a phone call says whose protocol and that the ear heard 8 kHz audio."""
    t = m.get("transport")
    if not t:
        return "—"
    if m.get("provider") or m.get("ear_sample_rate"):
        rate = m.get("ear_sample_rate")
        bits = [str(m["provider"])] if m.get("provider") else []
        if rate:
            bits.append(f"ear heard at {rate} Hz (the capture's ear channel is that audio upsampled to 48 kHz)")
        if m.get("pstn_ms"):
            bits.append(f"+{m['pstn_ms']:g} ms PSTN each way, estimated")
        return f"{t} ({'; '.join(bits)})"
    return str(t)


def _slo(slo) -> list[dict]:
    """run.json "slo" in any of: list of {slo|name|metric, limit|threshold|target, value, ok|pass|verdict},
    or {name: {...}} / {name: bool}. Returns rows {name, limit, value, ok (True/False/None)}."""
    if not slo:
        return []
    items = []
    if isinstance(slo, dict):
        if isinstance(slo.get("verdicts"), list):
            return _slo(slo["verdicts"])
        for k, v in slo.items():
            items.append(({"slo": k} | v) if isinstance(v, dict) else {"slo": k, "ok": v})
    elif isinstance(slo, list):
        items = [x if isinstance(x, dict) else {"slo": str(x)} for x in slo]
    else:
        return [{"name": str(slo), "limit": None, "value": None, "ok": None, "detail": ""}]
    rows = []
    for x in items:
        name = x.get("slo", x.get("name", x.get("metric", "?")))
        limit = x.get("limit", x.get("threshold", x.get("target")))
        ok = x.get("ok", x.get("pass", x.get("passed")))
        if ok is None and isinstance(x.get("verdict"), str):
            ok = {"pass": True, "ok": True, "fail": False, "breach": False}.get(x["verdict"].lower())
        rows.append({"name": str(name), "limit": limit, "value": x.get("value", x.get("actual")),
                     "ok": None if ok is None else bool(ok), "detail": str(x.get("detail") or "")})
    return rows


def _health_ctx(run: Run) -> dict:
    return {"clocks": health.clocks(run), "clock_meta": health.clock_meta(run), "anomalies": health.anomalies(run),
            "negative": health.negative_spans(run), "invisible": health.invisible_ttft(run), "stutter": health.stutter(run),
            "failures": health.failures(run), "telemetry": health.telemetry(run), "harness": health.harness(run)}


def _quantile_rows(ok) -> list[dict]:
    import numpy as np
    rows = []
    for m in ("ttfa_ms", "provider_ttft_ms"):
        v = ok[m].dropna().to_numpy(dtype=float)
        qs = [50, 75, 90, 95, 99, 99.9]
        rows.append({"name": METRIC_NAMES[m], "n": len(v),
                     "vals": [float(np.percentile(v, q)) if len(v) else None for q in qs] +
                               [float(v.min()) if len(v) else None, float(v.max()) if len(v) else None],
                     "heads": [f"p{q:g}" for q in qs] + ["min", "max"]})
    return rows


def _comparison_ctx(c: dict, la: str, lb: str, index: int) -> dict:
    rows = []
    for m in HEADLINE_METRICS:
        r = c["metrics"][m]
        rows.append({"name": r["label"], "id": METRIC_IDS[m], **r})
    return {"a": la, "b": lb, "index": index, "metrics": rows, "stages": c["stages"], "moved": c["moved"],
            "moved_labels": [stage_label(s) for s in c["moved"]], "sentence": c["sentence"],
            "significant": c["metrics"]["ttfa_ms"]["significant"], "alpha": c["alpha"],
            "min_effect_ms": c["min_effect_ms"]}


def _run_label(run: Run, i: int) -> str:
    """'#1 <run id> · webrtc (baseline)': runs side by side are told apart by their transport too."""
    transport = run.meta.get("transport")
    return f"#{i + 1} {run.run_id}" + (f" · {transport}" if transport else "") + (" (baseline)" if i == 0 else "")


def _colors() -> dict:
    return {"stages": figures.STAGE_COLORS, "unattributed": figures.UNATTRIBUTED_COLOR,
            "residual": figures.RESIDUAL_COLOR, "extra": figures.EXTRA_COLORS, "sources": SOURCES,
            "order": STAGES, "labels": STAGE_LABELS}


# ---------------------------------------------------------------- rendering

def _json_block(data) -> Markup:
    s = json.dumps(data, separators=(",", ":"), allow_nan=False, default=_json_default)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    s = s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(s)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["ms"] = _fmt_ms
    env.filters["ms1"] = lambda v: _fmt_ms(v, 1)
    env.filters["pct"] = lambda v: "—" if v is None else f"{_fmt_ms(100 * v)}%"
    env.filters["num"] = _fmt_num
    env.filters["pval"] = lambda p: "—" if p is None else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")
    env.filters["exact"] = lambda v: "" if v is None else repr(float(v))
    return env


@lru_cache(maxsize=1)
def _page_assets() -> tuple[str, str]:
    tdir = files("harness.report") / "templates"
    return (tdir / "report.js").read_text(encoding="utf-8"), (tdir / "report.css").read_text(encoding="utf-8")


@lru_cache(maxsize=4)
def _assets(bundle: str) -> dict:
    plotly_js = plotly_bundle.basic_js() if bundle == "basic" else plotly_bundle.full_js()
    js, css = _page_assets()
    for name, text in (("plotly.js", plotly_js), ("report.js", js), ("report.css", css)):
        if "</script" in text.lower() or "</style" in text.lower():
            raise VlhError(f"{name} contains a closing tag and cannot be inlined; reinstall vlh")
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(t.encode()).digest()).decode()}'"
                      for t in (plotly_js, js))
    return {"plotly_js": Markup(plotly_js), "report_js": Markup(js), "report_css": Markup(css),
            "script_hashes": Markup(hashes)}


def plotly_bundle_for(figs: dict) -> str:
    """"basic" if the plotly.js basic bundle draws every trace of `figs` and of report.js, else "full"."""
    return plotly_bundle.choose(plotly_bundle.figure_trace_types(figs)
                                | plotly_bundle.page_trace_types(_page_assets()[0]))[0]


def _render(template: str, ctx: dict, figs: dict) -> str:
    return _env().get_template(template).render(**ctx, **_assets(plotly_bundle_for(figs)), version=__version__)


def _fmt_ms(v, nd: int = 0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v + 0.0:.{nd}f}" if round(v, nd) != 0 else f"{0:.{nd}f}"  # no "-0"


def _fmt_num(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)
