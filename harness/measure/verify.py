"""Check a run against the reference agent's ground-truth log (`agent-truth.jsonl` in the run folder).

Used by the tests and the accuracy benchmark, and by `vlh run` users who want to see vlh's own error bars on their
machine: each measured instant and stage beside the truth, as signed errors in ms.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.errors import VlhError

TRUTH_STAGES = {
    "stt": ("user_speech_end_detected", "stt_final"),
    "llm_dispatch": ("stt_final", "llm_request"),
    "llm_ttft": ("llm_request", "llm_first_token"),
    "reasoning": ("llm_first_token", "llm_first_visible_token"),
    "aggregation": ("llm_first_visible_token", "tts_request"),
    "tts_ttfb": ("tts_request", "tts_first_audio"),
    "agent_output": ("tts_first_audio", "audio_first_sent"),
}


def load_truth(path: str | Path) -> tuple[dict[tuple[str, int], dict], dict[str, dict]]:
    """(turn records by (call id, turn), call-start records by call id)."""
    turns, calls = {}, {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            raise VlhError(f"{path}:{n}: not JSON; is this a reference-agent truth log?") from None
        if rec.get("kind") == "turn":
            turns[(rec["call"], rec["turn"])] = rec
        elif rec.get("kind") == "call" and rec.get("event") == "start":
            calls[rec["call"]] = rec
    return turns, calls


def true_arrival(t: dict) -> float:
    """When the first voiced reply packet really left the agent (after any injected delay): its arrival at the
    harness, give or take the loopback interface (~0.1 ms)."""
    return t.get("audio_first_wire") or (t["audio_first_sent"] + t["audio_first_injected_delay_ms"] / 1e3)


def true_arrival_span(t: dict) -> tuple[float, float]:
    """The instants between which the first voiced reply packet left the agent: the agent stamps the send's start
    (`audio_first_wire_start`) and its return (`audio_first_wire`); the datagram left in between. Usually some tens
    of µs apart; milliseconds when the agent was preempted inside the send. A point when only one is known."""
    hi = true_arrival(t)
    lo = t.get("audio_first_wire_start")
    return (lo, hi) if lo is not None and lo <= hi else (hi, hi)


def off_span(x: float, lo: float, hi: float) -> float:
    """Signed distance of `x` from [lo, hi]: 0 inside, negative before it, positive after it."""
    return x - lo if x < lo else (x - hi if x > hi else 0.0)


def sent_speech_end(r: dict) -> float:
    """When the utterance's last sample really left the harness (host monotonic clock), from a turns row: the crisp
    speech's end (an utterance with added noise goes on after it) as scheduled + the lateness of its frame, stamped
    by the mic itself (~0 on a healthy machine). The truth every user-speech-end and endpointing check starts from."""
    said_end = r.get("speech_sent_end_mono")
    said_end = r["mic_end_mono"] if said_end is None or said_end != said_end else said_end
    return said_end + (r.get("mic_end_late_ms") or 0.0) / 1e3


def _truth_for(row: dict, rows: list[dict], truth: dict) -> dict | None:
    """The agent's turn for a harness turn: the first whose endpoint falls between this utterance's start and the
    next one's (the agent's own turn numbers drift when its endpointing splits an utterance)."""
    nxt = [r["mic_start_mono"] for r in rows
           if r["call"] == row["call"] and r["mic_start_mono"] > row["mic_start_mono"]]
    hi = min(nxt) if nxt else float("inf")
    cands = [t for (call, _), t in truth.items() if call == row.get("agent_call_id")
             and t.get("user_speech_end_detected") is not None
             and row["mic_start_mono"] <= t["user_speech_end_detected"] < hi]
    return min(cands, key=lambda t: t["user_speech_end_detected"]) if cands else None


def errors(run_dir: str | Path) -> pd.DataFrame:
    """One row per ok turn: signed errors (measured − truth) in ms."""
    run_dir = Path(run_dir)
    df = pd.read_parquet(run_dir / "turns.parquet")
    truth, _ = load_truth(run_dir / "agent-truth.jsonl")
    meta = json.loads((run_dir / "run.json").read_text())
    clock = {c["call"]: c for c in meta.get("clock", [])}
    rows = []
    records = df.to_dict("records")
    for r in records:
        t = _truth_for(r, records, truth)
        if t is None or r["status"] != "ok":
            continue
        device = t.get("transport") == "device"  # the agent on sound devices (the loopback path)
        lost = bool(t.get("audio_first_dropped")) or t.get("audio_first_sent") is None or (
            not device and t.get("audio_first_wire") is None and t.get("audio_first_injected_delay_ms") is None)
        e = {"call": r["call"], "turn": r["turn"], "first_packet_lost": lost}
        sent_end = sent_speech_end(r)
        e["user_speech_end_ms"] = (r["user_speech_end_mono"] - sent_end) * 1e3
        if device and not lost:
            # the truth: the agent's first voiced sample handed to the ear device (its output stream's clock); the
            # capture places the ear at the typical write instant, so that is where the onset belongs and the
            # device path's transport stage is 0
            e["agent_audio_start_ms"] = (r["agent_audio_start_mono"] - t["audio_first_sent"]) * 1e3
            e["ttfa_ms"] = r["ttfa_ms"] - (t["audio_first_sent"] - sent_end) * 1e3
            e["transport_ms"] = r["transport_ms"]
        elif not e["first_packet_lost"] and r.get("first_audio_arrival_mono") is not None:
            # the truth is the span the send took (see true_arrival_span): an arrival inside it is exact
            lo, hi = true_arrival_span(t)
            e["first_audio_arrival_ms"] = off_span(r["first_audio_arrival_mono"], lo, hi) * 1e3
            e["first_audio_truth_span_ms"] = (hi - lo) * 1e3
            e["first_voiced_offset_ms"] = r["playout_ms"] - t["first_voiced_offset_samples"] / 48.0
            sent = t["audio_first_sent"]
            e["transport_ms"] = off_span(r["transport_ms"] / 1e3, lo - sent, hi - sent) * 1e3
        e["endpointing_ms"] = r["endpointing_ms"] - (t["user_speech_end_detected"] - sent_end) * 1e3 \
            if r.get("endpointing_ms") is not None else None
        for stage, (a, b) in TRUTH_STAGES.items():
            if r.get(f"{stage}_ms") is not None and t.get(a) is not None and t.get(b) is not None:
                e[f"{stage}_ms"] = r[f"{stage}_ms"] - (t[b] - t[a]) * 1e3
        tc = t.get("telemetry_clock")
        c = clock.get(r["call"])
        if tc and c and "offset_ms" in c:
            t0 = r["mic_start_mono"]  # compare the offset at a common instant
            fit_at_t0 = c["offset_ms"] + c.get("drift_ppm", 0) * 1e-6 * (t0 - c.get("at_mono", t0)) * 1e3
            true_off = tc["offset_ms"] + tc["drift_ppm"] * 1e-6 * (t0 - tc["t_ref"]) * 1e3
            e["clock_offset_ms"] = fit_at_t0 - true_off
        rows.append(e)
    return pd.DataFrame(rows)
