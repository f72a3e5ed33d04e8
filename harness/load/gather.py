"""Many workers' calls → one run folder: number the calls 1…N in the order they started, move their recordings to
those numbers, and tag every turn with the number of calls under way when the user finished speaking.

Input: `<run>/parts/call-<engine number>.json` (harness.results.store.PartStore, plus the call's wall-clock span
from engine.py) and `<run>/recordings/call-<engine number>.*`. Output: the same parts, renumbered, ready for
`RunStore.merge_parts()`. New turn columns: `load_worker` (Locust worker index), `concurrent_calls`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

CALLS_PER_WORKER = 100000  # as harness/load/locustfile.py numbers the engines' calls


def _turn_wall(row: dict, mono_to_wall: float | None) -> float | None:
    t = row.get("user_speech_end_mono")
    if t is None or (isinstance(t, float) and math.isnan(t)):
        t = row.get("mic_end_mono")
    if t is None or mono_to_wall is None:
        return None
    return float(t) + mono_to_wall


def concurrent_at(t: float, spans: list[tuple[float, float]]) -> int:
    """How many calls were under way (connected … hung up) at wall time t."""
    return sum(1 for a, b in spans if a <= t <= b)


def renumber(run_dir: str | Path, first: int = 1, level: int | None = None) -> int:
    """Renumber the parts of a load run in place (first, first+1, …); returns the number of calls. `level` (the
    capacity search): the step's number of users, written into every turn as `load_level`."""
    run_dir = Path(run_dir)
    parts = run_dir / "parts"
    if not parts.is_dir():
        return 0
    calls = []
    for f in parts.glob("call-*.json"):
        d = json.loads(f.read_text())
        d["_file"] = f
        calls.append(d)
    calls.sort(key=lambda d: (d.get("t_start_wall") or math.inf, d["call"]))
    spans = [(d["t_start_wall"], d["t_end_wall"]) for d in calls if d.get("t_start_wall") is not None]
    rec = run_dir / "recordings"
    staged = []
    for new, d in enumerate(calls, first):
        old = int(d["call"])
        worker = old // CALLS_PER_WORKER - 1 if old >= CALLS_PER_WORKER else None
        for suffix in (".wav", ".wav.json", ".playout.parquet"):
            src = rec / f"call-{old}{suffix}"
            if src.exists() and old != new:
                os.replace(src, rec / f"call-{new}{suffix}")
        side = rec / f"call-{new}.wav.json"  # the capture's sidecar names its call too
        if side.exists() and old != new:
            meta = json.loads(side.read_text())
            meta.setdefault("meta", {}).update(call=new, load_call=old)
            side.write_text(json.dumps(meta, indent=1))
        if d.get("recording"):
            d["recording"] = f"recordings/call-{new}.wav"
        for r in d.get("rows", []):
            r["call"] = new
            r["load_worker"] = worker
            if level is not None:
                r["load_level"] = level
            t = _turn_wall(r, d.get("mono_to_wall"))
            r["concurrent_calls"] = concurrent_at(t, spans) if t is not None else None
        for e in d.get("events", []):
            e["call"] = new
        d["call"] = new
        d.pop("_file").unlink()
        tmp = parts / f".new-call-{new}.json"
        tmp.write_text(json.dumps(d, default=float))
        staged.append((tmp, parts / f"call-{new}.json"))
    for tmp, final in staged:
        os.replace(tmp, final)
    return len(calls)
