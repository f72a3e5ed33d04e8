"""Every turn as compact columns for the page's JavaScript: the turn table, the stage bar and the events of any
turn on click, and the waveforms + audio of the featured turns.

Times are ms relative to the turn's user_speech_end. Strings repeated across turns (span names, sources, event
names) go into one `names` list and are referred to by index. Agent-provided text stays raw here: the page puts it
into the DOM with textContent and escapes it before plotly sees it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.report.clips import recording_link, turn_clip
from harness.report.load import Run

RAW_LIMIT = 2000  # characters of an event's raw message kept for the featured turns


class _Names:
    def __init__(self) -> None:
        self.items: list[str] = []
        self._idx: dict[str, int] = {}

    def __call__(self, s: str) -> int:
        if s not in self._idx:
            self._idx[s] = len(self.items)
            self.items.append(s)
        return self._idx[s]


def turn_data(run: Run, featured: list[tuple[str, int]], report_dir: Path) -> dict:
    t = run.turns
    names = _Names()
    ref = t["user_speech_end_mono"].to_numpy(dtype=float)
    rel = lambda c: (t[c].to_numpy(dtype=float) - ref) * 1e3  # noqa: E731
    cols = {
        "call": t["call"].astype(int).tolist(), "turn": t["turn"].astype(int).tolist(),
        "status": t["status"].tolist(), "error": t["error"].tolist(), "text": t["text"].tolist(),
        "anomalies": t["anomalies"].tolist(), "invisible": t["provider_ttft_invisible"].astype(bool).tolist(),
        "ttfa": _r(t["ttfa_ms"]), "ttft": _r(t["provider_ttft_ms"]), "gap": _r(t["gap_ms"]),
        "residual": _r(t["residual_ms"]), "unattributed": _r(t["unattributed_ms"]),
        "stutter": _r(t["stutter_gaps"], 0), "underruns": _r(t["underruns"], 0),
        "us_start": _r(rel("user_speech_start_mono")), "a_end": _r(rel("agent_audio_end_mono")),
        "clock_unc": _r(t["clock_uncertainty_ms"], 2), "us_end_s": _r(t["user_speech_end_s"], 3),
    }
    spans = []
    get, add, isfinite = names._idx.get, names, math.isfinite
    for r0, ss in zip(ref.tolist(), t["spans"].tolist()):
        row, cum = [], 0.0
        for sp in ss:
            ms = sp["ms"]
            start = (sp["start_mono"] - r0) * 1e3
            if not isfinite(start):
                start = cum
            k, src, kind = sp["key"], sp["source"], sp["kind"]
            ki, si, kk = get(k), get(src), get(kind)
            row.append([add(k) if ki is None else ki, round(start, 1), round(ms, 1),
                        add(src) if si is None else si, add(kind) if kk is None else kk])
            cum += ms
        spans.append(row)
    featured_rows = {i for _, i in featured}
    events = _events(run, t, ref, names, featured_rows)
    waves = {}
    for why, i in featured:
        clip = turn_clip(run.recording(int(t.at[i, "call"])), t.loc[i].to_dict(), report_dir)
        clip["why"] = why
        waves[str(i)] = clip
    calls = sorted(set(cols["call"]))
    paths = [recording_link(run.recording(c), report_dir) for c in calls]
    where = {c: k for k, c in enumerate(calls)}
    return {"cols": cols, "spans": spans, "events": events, "names": names.items, "waves": waves,
            "recordings": {"paths": paths, "idx": [where[c] for c in cols["call"]]},
            "featured": [[why, i] for why, i in featured]}


def _events(run: Run, t: pd.DataFrame, ref, names: _Names, featured_rows: set[int]) -> list:
    out: list[list] = [[] for _ in range(len(t))]
    ev = run.events
    if ev is None or ev.empty or t.empty:
        return out
    rows = pd.Series(np.arange(len(t)), index=pd.MultiIndex.from_arrays([t["call"], t["turn"]]))
    key = pd.MultiIndex.from_arrays([ev["call"], ev["turn"]])
    row = rows.reindex(key).to_numpy()
    keep = ~np.isnan(row)
    if not keep.any():
        return out
    ev = ev[keep]
    row = row[keep].astype(int)
    t_rel = np.round((ev["t_mono"].to_numpy(dtype=float) - ref[row]) * 1e3, 2)
    unc = _r(ev["uncertainty_ms"], 2)
    name_idx = [names(s) for s in ev["name"].tolist()]
    src_idx = [names(s) for s in ev["source"].tolist()]
    raws = ev["raw"].tolist()
    for k, (i, tr) in enumerate(zip(row.tolist(), t_rel.tolist())):
        if tr != tr:  # NaN: the turn has no user_speech_end to place the event against
            continue
        item = [name_idx[k], tr, unc[k], src_idx[k]]
        if i in featured_rows:
            item.append(raws[k][:RAW_LIMIT])
        out[i].append(item)
    return out


def _r(s, nd: int = 1) -> list:
    a = np.round(pd.to_numeric(pd.Series(s), errors="coerce").to_numpy(dtype=float), nd)
    out = a.tolist()
    for i in np.flatnonzero(~np.isfinite(a)).tolist():
        out[i] = None
    return out
