"""Every turn as compact columns for the page's JavaScript: the turn table, the stage bar and the events of any
turn on click, and the waveforms + audio of the featured turns.

Times are ms relative to the turn's user_speech_end. Spans and events are flat arrays with per-turn offsets;
strings repeated across turns (span names, sources, event names) go into one `names` list, referred to by index.
Agent-provided text stays raw here: the page puts it into the DOM with textContent and escapes it before plotly
sees it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.report.clips import recording_link, turn_clip
from harness.report.load import Run

RAW_LIMIT = 2000  # characters of an event's raw message kept for the featured turns


def turn_data(run: Run, featured: list[tuple[str, int]], report_dir: Path) -> dict:
    t = run.turns
    ref = t["user_speech_end_mono"].to_numpy(dtype=float)
    rel = lambda c: (t[c].to_numpy(dtype=float) - ref) * 1e3  # noqa: E731
    cols = {
        "call": t["call"].astype(int).tolist(), "turn": t["turn"].astype(int).tolist(),
        "status": t["status"].tolist(), "error": t["error"].tolist(), "text": t["text"].tolist(),
        "anomalies": t["anomalies"].tolist(), "invisible": t["provider_ttft_invisible"].astype(int).tolist(),
        "ttfa": _r(t["ttfa_ms"]), "ttft": _r(t["provider_ttft_ms"]), "gap": _r(t["gap_ms"]),
        "residual": _r(t["residual_ms"]), "unattributed": _r(t["unattributed_ms"]),
        "ovl_stage": [str(x) if x else "" for x in t["overlapped_stage"].tolist()],
        "ovl_ms": _r(t["overlapped_ms"]),
        "stutter": _r(t["stutter_gaps"], 0), "underruns": _r(t["underruns"], 0),
        "us_start": _r(rel("user_speech_start_mono")), "a_end": _r(rel("agent_audio_end_mono")),
        "clock_unc": _r(t["clock_uncertainty_ms"], 2), "us_end_s": _r(t["user_speech_end_s"], 3),
    }
    ev = _events_table(run, t)
    names = pd.unique(np.concatenate([run.spans["key"].to_numpy(object), run.spans["source"].to_numpy(object),
                                      run.spans["kind"].to_numpy(object), ev["name"].to_numpy(object),
                                      ev["source"].to_numpy(object)])).tolist()
    index = pd.Index(names)
    featured_rows = {i for _, i in featured}
    waves = {}
    for why, i in featured:
        clip = turn_clip(run.recording(int(t.at[i, "call"])), t.loc[i].to_dict(), report_dir)
        clip["why"] = why
        waves[str(i)] = clip
    calls = sorted(set(cols["call"]))
    paths = [recording_link(run.recording(c), report_dir) for c in calls]
    exists = [run.recording(c).is_file() for c in calls]
    where = {c: k for k, c in enumerate(calls)}
    return {"cols": cols, "spans": _spans(run.spans, ref, len(t), index), "events": _events(ev, ref, len(t), index,
                                                                                            featured_rows),
            "names": names, "waves": waves,
            "recordings": {"paths": paths, "exists": exists, "idx": [where[c] for c in cols["call"]]},
            "featured": [[why, i] for why, i in featured]}


def _offsets(row: np.ndarray, n: int) -> list[int]:
    """Start of each turn's items in arrays sorted by turn row (n + 1 entries)."""
    return np.searchsorted(row, np.arange(n + 1)).tolist()


def _spans(sp: pd.DataFrame, ref: np.ndarray, n: int, index: pd.Index) -> dict:
    """Flat arrays; turn i's spans are [off[i], off[i+1]). A span starts at the sum of the (rounded) spans
    before it in its turn + `ds` ms after the turn's user_speech_end (ds = 0 when the spans are contiguous, as they
    should be: small numbers keep 10 000 turns small). `kinds`: key → kind (first seen)."""
    row = sp["row"].to_numpy()
    ms = sp["ms"].to_numpy(dtype=float)
    start = (sp["start_mono"].to_numpy(dtype=float) - ref[row]) * 1e3
    ms_r = np.round(ms, 1)
    cum = pd.Series(ms_r).groupby(row).cumsum().to_numpy() - ms_r  # where the span starts if spans are contiguous
    delta = np.where(np.isfinite(start), np.round(start - cum, 1), 0.0)
    keys = sp["key"].to_numpy(dtype=object)
    kinds = dict(zip(_codes(pd.Series(keys), index), sp["kind"].tolist()))
    return {"off": _offsets(row, n), "k": _codes(sp["key"], index), "ds": _r(delta), "ms": _r(ms_r),
            "src": _codes(sp["source"], index), "kinds": {str(k): v for k, v in kinds.items()}}


def _events_table(run: Run, t: pd.DataFrame) -> pd.DataFrame:
    """Events with the row of their turn, sorted by row (file order within a turn); events of unknown turns left out."""
    cols = ["row", "name", "t_mono", "uncertainty_ms", "source", "raw"]
    ev = run.events
    if ev is None or ev.empty or t.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    rows = pd.Series(np.arange(len(t)), index=pd.MultiIndex.from_arrays([t["call"], t["turn"]]))
    row = rows.reindex(pd.MultiIndex.from_arrays([ev["call"], ev["turn"]])).to_numpy()
    keep = ~np.isnan(row)
    out = ev.loc[keep, cols[1:]].copy()
    out.insert(0, "row", row[keep].astype(int))
    return out.sort_values("row", kind="stable").reset_index(drop=True)


def _events(ev: pd.DataFrame, ref: np.ndarray, n: int, index: pd.Index, featured_rows: set[int]) -> dict:
    """Flat arrays like _spans; `raw` only for the featured turns ({row: [raw, …]} in the same order)."""
    row = ev["row"].to_numpy(dtype=int)
    t_rel = (ev["t_mono"].to_numpy(dtype=float) - ref[row]) * 1e3 if len(ev) else np.array([])
    raw: dict[str, list[str]] = {}
    if len(ev) and featured_rows:
        sel = ev[ev["row"].isin(featured_rows)]
        for r, text in zip(sel["row"].tolist(), sel["raw"].tolist()):
            raw.setdefault(str(r), []).append(text[:RAW_LIMIT])
    return {"off": _offsets(row, n), "n": _codes(ev["name"], index), "t": _r(t_rel, 2),
            "u": _r(ev["uncertainty_ms"], 2), "src": _codes(ev["source"], index), "raw": raw}


def _codes(values: pd.Series, index: pd.Index) -> list[int]:
    return index.get_indexer(values.to_numpy(dtype=object)).tolist()


def _r(s, nd: int = 1) -> list:
    a = np.round(pd.to_numeric(pd.Series(s, dtype="float64"), errors="coerce").to_numpy(dtype=float), nd)
    out = a.tolist()
    for i in np.flatnonzero(~np.isfinite(a)).tolist():
        out[i] = None
    return out
