"""Synthetic run folders that follow docs/schema.md exactly, for the report's tests and benchmarks.

`make_run(out, ...)` writes, through the same `harness.results.store.RunStore` that `vlh run` uses, run.json,
turns.parquet, turns.csv, events.parquet and real stereo WAV captures
(`harness.audio.capture.Capture`, ch0 mic / ch1 ear on one host clock) whose sound sits exactly where the turns
table says: user speech on ch0 between user_speech_start and user_speech_end, the reply on ch1 from
agent_audio_start to agent_audio_end (with real silent gaps where a turn stutters). Stage durations are drawn from
a seeded generator; stages + unattributed + residual = ttfa_ms exactly; `shift_ms={"tts_ttfb": 150}` moves a stage.
This is a test fixture, not a measurement: nothing here is presented as a result of a real agent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.audio.capture import SAMPLE_RATE, Capture
from harness.errors import VlhError
from harness.results.schema import EXTRA_COLUMNS, STAGES, TURN_COLUMNS
from harness.report.summary import featured_turns
from harness.results.slo import evaluate as evaluate_slo
from harness.results.store import RunStore

# (mean, sd) in ms; llm_ttft is log-normal around its mean with a long tail.
STAGE_MS = {
    "endpointing": (180.0, 30.0), "stt": (60.0, 15.0), "turn_detection": (0.0, 0.0),
    "llm_dispatch": (4.0, 1.0), "llm_ttft": (280.0, 0.25),
    "reasoning": (0.0, 0.0), "aggregation": (35.0, 10.0), "tts_ttfb": (140.0, 25.0), "agent_output": (8.0, 2.0),
    "transport": (30.0, 6.0), "jitter_buffer": (60.0, 15.0), "codec": (6.5, 0.0), "playout": (3.0, 1.0),
}
STAGE_SOURCE = {
    "endpointing": "reconciled", "stt": "reconciled", "turn_detection": "reconciled", "llm_dispatch": "reconciled", "llm_ttft": "reconciled",
    "reasoning": "reconciled", "aggregation": "reconciled", "tts_ttfb": "reconciled", "agent_output": "reconciled",
    "transport": "estimated", "jitter_buffer": "measured", "codec": "measured", "playout": "measured",
}
# The event that ends each stage (vlh event names, design.md §3); stages after audio_first_sent are harness-side.
STAGE_END_EVENT = {
    "endpointing": "user_vad_end", "stt": "stt_final", "turn_detection": "user_speech_end_detected",
    "llm_dispatch": "llm_request",
    "llm_ttft": "llm_first_token", "reasoning": "llm_first_visible_token", "aggregation": "tts_request",
    "tts_ttfb": "tts_first_audio", "agent_output": "audio_first_sent",
}
XSS = ["<script>alert(1)</script>", "<img src=x onerror=\"window.__xss_img=1;alert(2)\">"]


def make_run(out: str | Path, turns: int = 12, calls: int = 2, seed: int = 0, shift_ms: dict | None = None,
             recordings: str = "all", payload: bool = False, partial: bool = False, no_response_every: int = 0,
             error_every: int = 0, unattributed_every: int = 0, anomaly_every: int = 0, reasoning_every: int = 0,
             stutter_every: int = 0, slo: dict | None = None, zero_ok: bool = False, force: bool = False,
             overlap_every: int = 0) -> Path:
    """Write a synthetic run folder at `out` and return it. `recordings`: all | featured | none.
    `anomaly_every`: those turns' reported durations do not fit (a negative residual, flagged as attribution does);
    `overlap_every`: those turns wait for turn detection after STT (STT ran beside it: overlapped_ms)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise VlhError(f"{out}: exists and is not empty; use force=True")
    slo = dict(slo or {})
    if recordings not in ("all", "featured", "none"):
        raise ValueError("recordings must be all, featured or none")
    rng = np.random.default_rng(seed)
    shift_ms = dict(shift_ms or {})
    run_id = f"synthetic-{seed}"
    per_call = max(1, math.ceil(turns / max(1, calls)))
    rows, events, layouts = [], [], {}
    n = 0
    for call in range(1, calls + 1):
        t0 = 1000.0 + 5000.0 * call
        clock = {"offset_ms": 1500.0 + 3.0 * call, "drift_ppm": 100.0, "uncertainty_ms": 1.2, "rtt_ms": 2.4}
        cursor = t0 + 0.5
        layout = []
        for turn in range(1, per_call + 1):
            if n >= turns:
                break
            n += 1
            kw = dict(n=n, zero_ok=zero_ok, no_response_every=no_response_every, error_every=error_every)
            row, evs, lay, cursor = _turn(rng, run_id, call, turn, cursor, t0, clock, shift_ms, payload, kw,
                                          unattributed=_every(unattributed_every, n),
                                          anomaly=_every(anomaly_every, n), reasoning=_every(reasoning_every, n),
                                          stutter=_every(stutter_every, n), overlap=_every(overlap_every, n))
            rows.append(row)
            events.extend(evs)
            layout.append(lay)
        layouts[call] = (t0, cursor + 0.5, layout)
    df = pd.DataFrame(rows)[TURN_COLUMNS + [c for c in EXTRA_COLUMNS if c != "recording"]]
    want = set(layouts) if recordings == "all" else set()
    if recordings == "featured":
        want = {int(df.loc[i, "call"]) for _, i in featured_turns(df)}
    store = RunStore(out, _meta(run_id, calls, payload, len(df)), force=force)
    by_call = {c: g for c, g in df.groupby("call")}
    for call in sorted(layouts):
        t0, end, layout = layouts[call]
        cap = _capture(t0, end, layout, seed * 1000 + call) if call in want else None
        evs = [dict(zip(("call", "turn", "name", "t_mono", "uncertainty_ms", "source", "origin", "raw"), e))
               for e in events if e[0] == call]
        turns_of_call = by_call[call].to_dict("records") if call in by_call else []
        clock = {"offset_ms": 1500.0 + 3.0 * call, "drift_ppm": 100.0, "uncertainty_ms": 1.2, "rtt_ms": 2.4,
                 "samples": 100, "samples_used": 30}
        counts = {"messages": len(evs), "vlh": len(evs), "unparsed": 3 if payload else 0}
        if payload:
            counts[XSS[1]] = 1
        store.add_call(call, cap, turns_of_call, evs, clock, counts)
    verdicts = [r.to_dict() for r in evaluate_slo(df, slo)] if slo else []
    store.flush(partial=partial, extra={"slo": verdicts})
    return out


def _every(k: int, n: int) -> bool:
    return k > 0 and n % k == 0


def _turn(rng, run_id, call, turn, cursor, t0, clock, shift_ms, payload, kw, unattributed, anomaly, reasoning,
          stutter, overlap=False):
    n = kw["n"]
    us_start = cursor
    us_end = us_start + float(rng.uniform(0.6, 1.4))
    text = f"question {n}: what time does the shop open?"
    if payload:
        text = f"{XSS[n % 2]} question {n}"
    row = {c: None for c in TURN_COLUMNS + EXTRA_COLUMNS if c != "recording"}
    row.update({"run_id": run_id, "scenario": f"synthetic {XSS[0]}" if payload else "synthetic", "call": call,
                "turn": turn, "text": text, "error": "", "anomalies": "",
                "user_speech_start_mono": us_start, "user_speech_end_mono": us_end,
                "user_speech_end_s": us_end - t0, "clock_offset_ms": clock["offset_ms"],
                "clock_drift_ppm": clock["drift_ppm"], "clock_uncertainty_ms": clock["uncertainty_ms"],
                "rtt_ms": clock["rtt_ms"], "provider_ttft_invisible": False, "stages_json": "[]",
                "interruption_ms": None, "agent_call_id": f"pc-{call}", "mic_start_mono": us_start,
                "mic_end_mono": us_end, "mic_late_ms": 0.0, "harness_stall_ms": 0.0, "provider_ttft_source": "missing"})
    for s in STAGES:
        row[f"{s}_source"] = "missing"
    status = "ok"
    if kw["zero_ok"] or _every(kw["no_response_every"], n):
        status = "no_response"
    elif _every(kw["error_every"], n):
        status = "error:disconnected"
        row["error"] = "data channel closed" + (f" {XSS[1]}" if payload else "")
    row["status"] = status
    if status != "ok":
        return row, [], {"mic": (us_start, us_end), "ear": None, "gaps": []}, us_end + 2.0
    ms = _draw(rng, shift_ms, reasoning)
    residual = abs(float(rng.normal(0.0, 1.5)))
    if overlap:  # a turn-stop strategy's wait after the transcript: STT ran beside its first part
        ms["turn_detection"] = max(1.0, float(rng.normal(300.0, 40.0)))
        row["overlapped_stage"], row["overlapped_ms"] = "turn_detection", ms["stt"]
    if anomaly:  # what attribution writes when the durations an agent reported do not fit their span
        residual = -12.0
        row["anomalies"] = ("reported durations (stt, llm_ttft) exceed the 310.5 ms between user_vad_end and "
                            "llm_first_visible_token")
        if payload:
            row["anomalies"] += f"; odd label {XSS[1]}"
    spans, t, unatt = [], us_end, 0.0
    merged = ["stt", "turn_detection", "llm_dispatch"] if unattributed else []
    for s in STAGES:
        if s in merged:
            continue
        if merged and s == "llm_ttft":  # the merged span sits before llm_ttft
            u = ms["stt"] + ms["turn_detection"] + ms["llm_dispatch"]
            name = ("stt…llm_dispatch (unattributed)" if not payload
                    else f"stt…llm_dispatch {XSS[1]} (unattributed)")
            spans.append({"name": name, "start_mono": t, "ms": u, "source": "reconciled", "covers": merged,
                          "kind": "unattributed"})
            t += u / 1e3
            unatt = u
        spans.append({"name": s, "start_mono": t, "ms": ms[s], "source": STAGE_SOURCE[s], "covers": [s],
                      "kind": "stage"})
        row[f"{s}_ms"], row[f"{s}_source"] = ms[s], STAGE_SOURCE[s]
        t += ms[s] / 1e3
    spans.append({"name": "residual", "start_mono": t, "ms": residual, "source": "measured", "covers": [],
                  "kind": "residual"})
    ttfa = sum(sp["ms"] for sp in spans)
    a_start = us_end + ttfa / 1e3
    reply = float(rng.uniform(0.8, 1.8))
    gaps = []
    if stutter:
        g0 = a_start + 0.4
        gaps = [(g0, g0 + 0.12)]
    row.update({"status": "ok", "agent_audio_start_mono": a_start, "agent_audio_end_mono": a_start + reply,
                "agent_audio_start_s": a_start - t0, "ttfa_ms": ttfa, "provider_ttft_ms": ms["llm_ttft"],
                "provider_ttft_invisible": bool(reasoning), "gap_ms": ttfa - ms["llm_ttft"],
                "unattributed_ms": unatt, "residual_ms": residual, "stages_json": json.dumps(spans),
                "reply_duration_ms": reply * 1e3, "stutter_gaps": len(gaps),
                "stutter_gap_ms": 120.0 if gaps else 0.0, "underruns": 1 if gaps else 0,
                "concealed_ms": 40.0 if gaps else 0.0, "playout_stall_ms": 40.0 if gaps else 0.0,
                "provider_ttft_source": "vlh-events", "reasoning_hidden_ms": ms["reasoning"],
                "first_audio_seq": 1000 * turn})
    arrival = next(sp["start_mono"] for sp in spans if sp["name"] == "jitter_buffer")
    row["first_audio_arrival_mono"] = arrival
    row["first_audio_playout_mono"] = arrival + ms["jitter_buffer"] / 1e3
    evs = []
    for sp in spans:
        ev = STAGE_END_EVENT.get(sp["name"])
        if ev is None:
            continue
        t_end = sp["start_mono"] + sp["ms"] / 1e3
        agent_t = t_end + clock["offset_ms"] / 1e3
        raw = {"type": "vlh.event", "name": ev, "t": round(agent_t, 6), "turn": turn}
        name = ev
        if payload and ev == "tts_first_audio":
            name = f"tts_first_audio {XSS[0]}"
            raw["processor"] = XSS[1]
        evs.append((call, turn, name, t_end, clock["uncertainty_ms"], "reconciled", "vlh", json.dumps(raw)))
        row[f"{ev}_mono"] = t_end
    return row, evs, {"mic": (us_start, us_end), "ear": (a_start, a_start + reply), "gaps": gaps}, \
        a_start + reply + 0.6


def _draw(rng, shift_ms, reasoning) -> dict:
    ms = {}
    for s, (mean, sd) in STAGE_MS.items():
        if s == "llm_ttft":
            v = mean * float(np.exp(rng.normal(0.0, sd)))
            if rng.random() < 0.02:
                v *= 4.0  # the long tail a histogram capped at a few seconds would hide
        elif s == "reasoning":
            v = float(rng.normal(400.0, 40.0)) if reasoning else 0.0
        elif sd == 0:
            v = mean
        else:
            v = max(0.2, float(rng.normal(mean, sd)))
        ms[s] = v + float(shift_ms.get(s, 0.0))
    return ms


def _capture(t0: float, end: float, layout: list[dict], seed: int) -> Capture:
    rng = np.random.default_rng(seed)
    n = int(math.ceil((end - t0) * SAMPLE_RATE))
    mic = (rng.standard_normal(n) * 3e-4).astype(np.float32)
    ear = (rng.standard_normal(n) * 3e-4).astype(np.float32)
    for lay in layout:
        _voice(mic, t0, *lay["mic"], f0=120.0)
        if lay["ear"]:
            _voice(ear, t0, *lay["ear"], f0=210.0)
            for g0, g1 in lay["gaps"]:
                a, b = _idx(t0, g0), _idx(t0, g1)
                ear[a:b] = 0.0
    return Capture(mic, ear, t0, SAMPLE_RATE, {"synthetic": True})


def _idx(t0: float, t: float) -> int:
    return int(round((t - t0) * SAMPLE_RATE))


def _voice(buf: np.ndarray, t0: float, start: float, end: float, f0: float) -> None:
    """A voiced, syllabic signal that starts and ends exactly at `start`/`end` (2 ms fades)."""
    a, b = _idx(t0, start), min(len(buf), _idx(t0, end))
    if b <= a:
        return
    t = np.arange(b - a) / SAMPLE_RATE
    sig = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    syll = 0.55 + 0.45 * np.abs(np.sin(np.pi * 4.0 * t))
    env = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.002)
    buf[a:b] += (0.25 * sig * syll * env).astype(np.float32)


def _meta(run_id: str, calls: int, payload: bool, turns: int) -> dict:
    """What `vlh run` puts into run.json before the store adds host, versions, clock, telemetry and summary."""
    x = XSS[0] if payload else ""
    return {
        "run_id": run_id, "transport": "webrtc", "scenario": f"synthetic {x}".strip(), "scenario_file": None,
        "agent_url": "http://127.0.0.1:7860/api/offer" + (f"?label={x}" if payload else ""),
        "agent": "synthetic", "profile": f"typical {x}".strip(),
        "config": {"calls": calls, "turns": turns, "jitter_buffer": "adaptive", "timeout_s": 2.0,
                   "synthetic": True},
        "calls": calls, "codec_delay_ms": 6.5,
    }
