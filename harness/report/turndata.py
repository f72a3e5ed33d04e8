"""Every turn as compact columns for the page's JavaScript: the turn table, the stage bar and the events of any
turn on click, and the waveforms + audio of the featured turns.

Times are ms relative to the turn's user_speech_end. Strings repeated across turns (span names, sources, event
names) go into one `names` list and are referred to by index. Agent-provided text stays raw here: the page puts it
into the DOM with textContent and escapes it before plotly sees it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.report.clips import recording_link, turn_clip
from harness.report.figures import span_key
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
    cols = {
        "call": t["call"].astype(int).tolist(), "turn": t["turn"].astype(int).tolist(),
        "status": t["status"].tolist(), "error": t["error"].tolist(), "text": t["text"].tolist(),
        "anomalies": t["anomalies"].tolist(), "invisible": t["provider_ttft_invisible"].astype(bool).tolist(),
        "ttfa": _r(t["ttfa_ms"]), "ttft": _r(t["provider_ttft_ms"]), "gap": _r(t["gap_ms"]),
        "residual": _r(t["residual_ms"]), "unattributed": _r(t["unattributed_ms"]),
        "stutter": _r(t["stutter_gaps"], 0), "underruns": _r(t["underruns"], 0),
        "us_start": _r((t["user_speech_start_mono"] - t["user_speech_end_mono"]) * 1e3),
        "a_end": _r((t["agent_audio_end_mono"] - t["user_speech_end_mono"]) * 1e3),
        "clock_unc": _r(t["clock_uncertainty_ms"], 2), "us_end_s": _r(t["user_speech_end_s"], 3),
    }
    spans = []
    for i, ss in enumerate(t["spans"]):
        row, cum = [], 0.0
        for sp in ss:
            start = (sp["start_mono"] - ref[i]) * 1e3 if math.isfinite(sp["start_mono"] - ref[i]) else cum
            row.append([names(span_key(sp)), round(start, 1), round(sp["ms"], 1), names(sp["source"]),
                        names(sp.get("kind", "stage"))])
            cum += sp["ms"]
        spans.append(row)
    featured_rows = {i for _, i in featured}
    events = _events(run, t, ref, names, featured_rows)
    waves = {}
    for why, i in featured:
        clip = turn_clip(run.recording(int(t.at[i, "call"])), t.loc[i].to_dict(), report_dir)
        clip["why"] = why
        waves[str(i)] = clip
    recordings = [recording_link(run.recording(c), report_dir) for c in cols["call"]]
    return {"cols": cols, "spans": spans, "events": events, "names": names.items, "waves": waves,
            "recordings": _dedupe(recordings), "featured": [[why, i] for why, i in featured]}


def _events(run: Run, t: pd.DataFrame, ref, names: _Names, featured_rows: set[int]) -> list:
    out: list[list] = [[] for _ in range(len(t))]
    ev = run.events
    if ev is None or ev.empty or t.empty:
        return out
    pos = {(c, n): i for i, (c, n) in enumerate(zip(t["call"], t["turn"]))}
    for c, n, name, tm, unc, src, raw in zip(ev["call"], ev["turn"], ev["name"], ev["t_mono"],
                                            ev["uncertainty_ms"], ev["source"], ev["raw"]):
        i = pos.get((c, n))
        if i is None or not math.isfinite(ref[i]):
            continue
        item = [names(name), round((tm - ref[i]) * 1e3, 2), None if not math.isfinite(unc) else round(unc, 2),
                names(src)]
        if i in featured_rows:
            item.append(raw[:RAW_LIMIT])
        out[i].append(item)
    return out


def _dedupe(links: list[str]) -> dict:
    """Per-turn recording links as {"paths": [...], "idx": [...]} (most calls share a few paths)."""
    paths: list[str] = []
    seen: dict[str, int] = {}
    idx = []
    for s in links:
        if s not in seen:
            seen[s] = len(paths)
            paths.append(s)
        idx.append(seen[s])
    return {"paths": paths, "idx": idx}


def _r(s, nd: int = 1) -> list:
    return [None if not math.isfinite(v) else round(float(v), nd) for v in pd.to_numeric(s, errors="coerce")]
