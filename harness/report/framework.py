"""The framework's own voice-to-voice figure beside the ear (OTLP: pipecat `turn.user_bot_latency_seconds`,
LiveKit `lk.e2e_latency` → `framework_v2v_ms`).

"pipecat says 1539 ms; the ear heard 1732 ms; the 193 ms it cannot see are uplink 31, transport 42, jitter
buffer 80, codec 7, playout 3". A framework measures from its own estimate of the end of speech (after the uplink)
to the moment it sends its first audio (before the network, the jitter buffer, the decoder and the playout): per
turn, ear TTFA − framework figure = endpointing (its uplink and VAD error) + transport + jitter buffer + codec +
playout. The sentence gives medians over the turns that have both numbers; medians do not add up exactly, and
what the parts do not cover is said.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# the stages outside a framework's own figure, and what a reader calls them
UNSEEN = [("endpointing", "uplink"), ("transport", "transport"), ("jitter_buffer", "jitter buffer"),
          ("codec", "codec"), ("playout", "playout")]


def framework_name(meta: dict) -> str:
    names = ((meta.get("otlp") or {}).get("frameworks") or [])
    names = [n for n in names if n != "genai"]
    return {"pipecat": "pipecat", "livekit": "LiveKit"}.get(names[0], names[0]) if len(names) == 1 else "the agent"


def framework_sentence(meta: dict, turns: pd.DataFrame) -> dict | None:
    """None when no turn has the framework's own figure."""
    if "framework_v2v_ms" not in turns.columns or not len(turns):
        return None
    ok = turns[(turns["status"].astype(str) == "ok")]
    fw = pd.to_numeric(ok["framework_v2v_ms"], errors="coerce")
    ear = pd.to_numeric(ok["ttfa_ms"], errors="coerce")
    both = ok[fw.notna() & ear.notna()]
    if both.empty:
        return None
    fw, ear = fw[both.index], ear[both.index]
    says, heard = float(np.median(fw)), float(np.median(ear))
    unseen = float(np.median(ear - fw))
    parts = []
    for stage, label in UNSEEN:
        col = f"{stage}_ms"
        v = pd.to_numeric(both[col], errors="coerce").dropna() if col in both.columns else pd.Series([], dtype=float)
        if len(v):
            parts.append((label, float(np.median(v))))
    name = framework_name(meta)
    text = f"{name} says {says:.0f} ms; the ear heard {heard:.0f} ms; the {unseen:.0f} ms it cannot see are "
    text += ", ".join(f"{lbl} {ms:.0f}" for lbl, ms in parts) if parts else "not split (no stage telemetry)"
    rest = unseen - sum(ms for _, ms in parts)
    if parts and abs(rest) >= 1:
        text += f"; {rest:+.0f} ms are not split (medians do not add up exactly)"
    if len(both) < len(ok):
        text += f" ({len(both)} of {len(ok)} answered turns carry {name}'s figure)"
    return {"text": text, "framework": name, "says_ms": says, "heard_ms": heard, "unseen_ms": unseen,
            "parts": [{"label": lbl, "ms": ms} for lbl, ms in parts], "n": int(len(both))}
