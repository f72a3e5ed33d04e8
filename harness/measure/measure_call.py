"""One finished call → one row per turn: ear-level instants found in the capture, telemetry placed on the host
clock, and the attribution of the gap (design.md §2–4)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from harness.measure.attribution import STAGES, Boundary, attribute
from harness.audio import SAMPLE_RATE
from harness.audio import boundaries as bnd
from harness.audio.capture import Capture
from harness.telemetry.collector import TelemetryLog
from harness.telemetry.events import EVENT_NAMES

PAUSE_IN_REPLY_S = 0.6  # ear audio after a shorter pause continues the reply (as for reply_duration_ms)
SNAP_S = 0.002  # an onset this close to the next packet's start is credited to that packet (see first_packet)


@dataclass
class TurnPlan:
    """What the harness did in one turn, on the host clock."""

    turn: int
    text: str
    mic_start: float  # first sample of the utterance left the harness
    mic_end: float  # last sample left
    next_start: float | None = None  # where this turn's window ends (next utterance, or end of call)
    status: str = "ok"  # a runner-level failure overrides: error:disconnected, error:...
    error: str = ""
    barge_in_at: float | None = None  # barge-in turns: when the interrupting speech started
    extra: dict = field(default_factory=dict)


@dataclass
class MeasureOptions:
    vad_mode: int = 2
    min_pause_ms: float = 300.0
    min_speech_ms: float = 80.0
    stutter_gap_ms: float = 250.0
    codec_delay_s: float = 312 / SAMPLE_RATE


def _regions(x: np.ndarray, sr: int, opts: MeasureOptions, floor: float, min_pause_ms: float | None = None):
    """Speech regions of a slice, judged against its whole channel's noise floor (a slice that is mostly speech
    would put the floor too high)."""
    return bnd.speech_regions(x, sr, vad_mode=opts.vad_mode,
                              min_pause_ms=opts.min_pause_ms if min_pause_ms is None else min_pause_ms,
                              min_speech_ms=opts.min_speech_ms, floor=floor)


EDGE_CONTEXT_S = bnd.ISOLATED_REACH_S + bnd.ISOLATED_REF_S  # what the edge rules look at beyond an edge (0.75 s)
FLOOR_CHUNK_S = 60  # the whole-channel noise floor is computed a minute at a time (a long capture is on disk)


def channel_floor(x: np.ndarray, sr: int) -> float:
    """`bnd.noise_floor(x, sr)` with its frame levels computed a chunk at a time: the same 10 ms frames, so the
    same floor, without an 8 kHz copy of the whole call in RAM. Rates that are not multiples of 8 kHz (resampled
    with a filter that spans chunk edges) take the whole channel, as before."""
    step = FLOOR_CHUNK_S * sr
    if len(x) <= step or sr % bnd.VAD_RATE:
        return bnd.noise_floor(x, sr)
    rms = np.concatenate([bnd.frame_rms(bnd.to_vad_rate(x[a:a + step], sr)) for a in range(0, len(x), step)])
    return bnd.noise_floor(x[:0], sr, rms=rms)


def first_packet(playout, t_onset: float, codec_s: float):
    """The played packet whose audio holds the ear onset (codec delay removed), or None."""
    if playout is None:
        return None
    tick = playout.tick_at(t_onset - codec_s + SNAP_S)
    if tick is None or tick.kind != "play":
        return None
    return tick


def _mic_frame_of(sample: int, mic_lateness: list[float] | None, sr: int) -> int | None:
    """The mic frame (960 samples, written at n·960 + its lateness) that holds capture sample `sample`.

    After a stall the mic track sends its backlog in a burst: those frames all left at about the same instant, so
    their places overlap (they are not in order of n) and each one written over the one before — the frame that
    holds the sample is the last one (highest n) whose place covers it."""
    if not mic_lateness or sample < 0:
        return None
    starts = np.arange(len(mic_lateness)) * 960 + np.round(np.asarray(mic_lateness) * sr).astype(np.int64)
    covering = np.flatnonzero((starts <= sample) & (sample < starts + 960))
    return int(covering[-1]) if len(covering) else None


def measure_call(capture: Capture, plans: list[TurnPlan], telemetry: TelemetryLog | None = None, playout=None,
                 opts: MeasureOptions | None = None, call: int = 1,
                 mic_lateness: list[float] | None = None,
                 stalls: list[tuple[float, float]] | None = None,
                 device_path: bool = False) -> tuple[list[dict], list[dict]]:
    """Returns (turn rows, event rows). `mic_lateness[n]`: how late (s) mic frame n (samples n·960…) really left
    the harness compared with where the capture places it. `device_path` (the loopback transport): the ear is a
    recording of the agent's sound device — no network, jitter buffer or codec — so the first audio "arrives" and
    plays at the ear onset: `transport` spans audio_first_sent → agent_audio_start, and jitter_buffer, codec and
    playout are 0 (measured)."""
    opts = opts or MeasureOptions()
    sr = capture.sample_rate
    fit = telemetry.reconcile() if telemetry is not None else None
    events = [e for e in (telemetry.events if telemetry else []) if e.t_host is not None]
    durations = list(telemetry.durations) if telemetry else []
    rows, event_rows = [], []
    n = len(capture)
    mic_floor, ear_floor = channel_floor(capture.mic, sr), channel_floor(capture.ear, sr)
    ctx = int(round(EDGE_CONTEXT_S * sr))  # noise in view around each utterance (below)
    for k, plan in enumerate(plans):
        row = _base_row(plan, call, fit, capture)
        lo = max(0, capture.sample_of(plan.mic_start) - int(0.05 * sr))
        hi = min(n, capture.sample_of(plan.mic_end) + int(0.1 * sr))
        win_end = min(n, capture.sample_of(plan.next_start)) if plan.next_start else n
        # the utterance's regions are found with the noise around it in view: the edge rules judge a final release
        # or hiss against the noise up to 0.75 s beyond the edge (`_isolated_edge`), and a slice ending 100 ms
        # after the utterance cut a real /t/ release off (user end 49 ms early in pink noise). The context stops at
        # the previous utterance's end and the next one's start; only regions overlapping the planned span count
        prev_end = min(n, capture.sample_of(plans[k - 1].mic_end) + int(0.1 * sr)) if k else 0
        c_lo, c_hi = min(lo, max(prev_end, lo - ctx)), max(hi, min(win_end, hi + ctx))
        regions = [g for g in (_regions(capture.mic[c_lo:c_hi], sr, opts, mic_floor) if hi > lo else [])
                   if c_lo + g.end > lo and c_lo + g.start < hi]  # sample positions from c_lo
        if not regions:
            row["status"] = row["status"] if row["status"] != "ok" else "error:no_user_speech"
            row["error"] = row["error"] or "no speech found on the mic channel for this turn"
            rows.append(row)
            continue
        u_start, u_end = c_lo + regions[0].start, c_lo + regions[-1].end
        # the capture holds each mic frame where it really left (its nominal place + its lateness): one time base
        t_user_end = capture.time_of(u_end)
        f_end = _mic_frame_of(u_end - 1, mic_lateness, sr)
        if f_end is not None:
            row["mic_end_late_ms"] = mic_lateness[f_end] * 1e3
        row.update(user_speech_start_mono=capture.time_of(u_start), user_speech_end_mono=t_user_end,
                   user_speech_end_s=u_end / sr)
        if mic_lateness is not None:
            # the frames of this utterance must have left on time, or the capture's mic channel is not the truth
            f0 = _mic_frame_of(u_start, mic_lateness, sr) or 0
            f1 = min(len(mic_lateness), (f_end if f_end is not None else u_end // 960) + 1)
            late = max(mic_lateness[f0:f1], default=0.0)
            row["mic_late_ms"] = late * 1e3
            if late > 0.020:  # a hiccup this long in the middle of speech can change what the agent hears
                row["anomalies"] = (f"mic frames left up to {late * 1e3:.1f} ms late: the harness was starved of "
                                    "CPU while speaking")
        if plan.barge_in_at is not None:
            prev = rows[-1] if rows and rows[-1].get("agent_audio_start_s") is not None else None
            bi = _interruption(capture, u_start, u_end, sr, opts, ear_floor,
                               int(round(prev["agent_audio_start_s"] * sr)) if prev else None)
            note = bi.pop("note", None)
            row.update(bi)
            if note:
                row["anomalies"] = ";".join(filter(None, [row["anomalies"], note]))
        # the agent's reply: first speech on the ear after the user's end, before the next utterance
        reply = bnd.first_speech_after(capture.ear[:win_end], sr, u_end, vad_mode=opts.vad_mode,
                                       min_pause_ms=opts.min_pause_ms, min_speech_ms=opts.min_speech_ms,
                                       floor=ear_floor)
        if reply is None:
            if row["status"] == "ok":
                row["status"] = "no_response"
            rows.append(row)
            _add_events(event_rows, events, plan, call, k, plans)
            continue
        t_on = capture.time_of(reply.start)
        # the whole reply: ear speech regions (pauses up to 600 ms joined) from its onset to the window's end
        reply_regions = _regions(capture.ear[reply.start:win_end], sr, opts, ear_floor, min_pause_ms=600.0)
        r_end = reply.start + (reply_regions[0].end if reply_regions else reply.end - reply.start)
        row.update(agent_audio_start_mono=t_on, agent_audio_end_mono=capture.time_of(r_end),
                   agent_audio_start_s=reply.start / sr, reply_duration_ms=(r_end - reply.start) / sr * 1e3)
        row.update(_stutter(capture, reply.start, r_end, opts, playout, ear_floor))
        stall = _worst_stall(stalls, [(t_user_end - 0.1, t_user_end + 0.05), (t_on - 0.2, t_on + 0.05)])
        row["harness_stall_ms"] = stall * 1e3
        if stall > 0.005:
            row["anomalies"] = ";".join(filter(None, [row["anomalies"], (
                f"the harness's event loop stalled {stall * 1e3:.0f} ms near this turn's instants: arrival "
                "stamps may be late by as much")]))
        # telemetry of this turn
        turn_events = _add_events(event_rows, events, plan, call, k, plans)
        b = {"user_speech_end": Boundary(t_user_end, "measured"),
             "agent_audio_start": Boundary(t_on, "measured")}
        for name, ev in turn_events.items():
            # an arrival stamp taken just after a recorded stall of the harness's loop may be late by all of it
            late = _stall_at(stalls, ev.arrival) if ev.source == "estimated" else 0.0
            b[name] = Boundary(ev.t_host, ev.source, ev.uncertainty_s + late)
        tick = first_packet(playout, t_on, opts.codec_delay_s)
        if device_path:
            for name in ("first_audio_arrival", "first_audio_playout", "first_audio_decoded"):
                b[name] = Boundary(t_on, "measured")
        elif tick is not None:
            b["first_audio_arrival"] = Boundary(tick.arrival, "measured")
            b["first_audio_playout"] = Boundary(tick.t, "measured")
            # Opus's overlap window lets a sharp onset ring up to SNAP_S before its packet's nominal decoded start
            # (seen: 1.0 ms with espeak's "It is done."): within that, the onset before it is no anomaly
            b["first_audio_decoded"] = Boundary(tick.t + opts.codec_delay_s, "measured", SNAP_S)
            row["first_audio_seq"] = tick.seq
            if "audio_first_sent" not in b and fit is not None:
                b["audio_first_sent"] = Boundary(tick.arrival - fit.one_way_s, "estimated", fit.one_way_s)
        turn_durs = _turn_durations(durations, t_user_end, plan, plans, k, capture)
        attr = attribute(b, {s: d.value_s for s, d in turn_durs.items()})
        row.update(attr.columns())
        row["stages_json"] = json.dumps([s.as_dict() for s in attr.spans])
        for name in EVENT_NAMES:
            row[f"{name}_mono"] = b[name].t if name in b else None
        row["first_audio_arrival_mono"] = b["first_audio_arrival"].t if "first_audio_arrival" in b else None
        row["first_audio_playout_mono"] = b["first_audio_playout"].t if "first_audio_playout" in b else None
        # provider TTFT as the provider reports it (RTVI metrics), else from vlh events
        if "llm_ttft" in turn_durs:
            row["provider_ttft_ms"] = turn_durs["llm_ttft"].value_s * 1e3
            row["provider_ttft_source"] = "rtvi-metrics"
        elif "llm_request" in turn_events and "llm_first_token" in turn_events:
            row["provider_ttft_ms"] = (turn_events["llm_first_token"].t_host
                                       - turn_events["llm_request"].t_host) * 1e3
            row["provider_ttft_source"] = "vlh-events"
        if row.get("provider_ttft_ms") is not None:
            row["gap_ms"] = row["ttfa_ms"] - row["provider_ttft_ms"]
        if "llm_first_token" in turn_events and "llm_first_visible_token" in turn_events:
            invisible = (turn_events["llm_first_visible_token"].t_host
                         - turn_events["llm_first_token"].t_host) * 1e3
            row["reasoning_hidden_ms"] = invisible
            row["provider_ttft_invisible"] = bool(invisible > 1.0)
        anomalies = list(attr.anomalies)
        if row.get("provider_ttft_invisible"):
            anomalies.append(f"provider TTFT measured at an invisible (reasoning) token; the first audible token "
                             f"came {row['reasoning_hidden_ms']:.0f} ms later")
        row["anomalies"] = ";".join(filter(None, [row.get("anomalies", "")] + anomalies))
        rows.append(row)
    return rows, event_rows


def _interruption(capture: Capture, u_start: int, u_end: int, sr: int, opts: MeasureOptions,
                  floor: float, reply_start: int | None = None) -> dict:
    """Barge-in: from the start of the user's interrupting speech to the moment the agent's audio stops at the ear.

    The agent was speaking: an ear speech region is under way when the user starts, or starts while the user
    speaks, or the user started in a pause (< 600 ms) of the reply and its audio goes on after it. From there the
    agent's sound is followed until it is no longer audible (`boundaries.audible_end`: the last sample within 45 dB of the reply's loudest 10 ms and out of
    the ear's noise, across pauses < 600 ms, the decoder's tail and a last short fragment included), searched
    before the user's speech ends. The reply's loudest 10 ms is taken from `reply_start` (the reply's onset at the
    ear, when known) on."""
    a = max(0, u_start - 3 * sr)
    regs = _regions(capture.ear[a:u_end], sr, opts, floor, min_pause_ms=150.0)
    live = [r for r in regs if r.end + a > u_start]
    not_speaking = {"interruption_ms": None, "note": "barge-in: the agent was not speaking when the user started"}
    if live:
        r0 = live[0].start + a
    elif regs and u_start - (regs[-1].end + a) < PAUSE_IN_REPLY_S * sr:
        r0 = regs[-1].start + a  # the user started in a pause of the reply: does it go on (even briefly)?
    else:
        return not_speaking
    ref_lo = reply_start if reply_start is not None and reply_start <= r0 else r0
    ref = bnd.loudest_10ms(capture.ear, sr, ref_lo, u_end)
    stop = bnd.audible_end(capture.ear, sr, r0, u_end, ref=ref, floor=floor, max_pause_ms=PAUSE_IN_REPLY_S * 1e3)
    if stop is None:
        stop = regs[-1].end + a
    if stop <= u_start:
        return not_speaking  # its audio had already stopped: the reply ended, or was cut, in that pause
    out = {"interruption_ms": (stop - u_start) / sr * 1e3, "agent_audio_stop_mono": capture.time_of(stop)}
    if stop >= u_end - int(0.02 * sr):
        out["note"] = ("barge-in: the agent's audio had not stopped when the user's speech ended; the interruption "
                       "latency is at least this")
    return out


def _stall_at(stalls, t: float, interval: float = 0.01) -> float:
    """How late an arrival stamped at `t` may be: the longest recorded loop stall that ended just before it."""
    return max((d for s, d in stalls or [] if s <= t <= s + d + interval), default=0.0)


def _worst_stall(stalls, windows) -> float:
    worst = 0.0
    for t, d in stalls or []:
        for a, b in windows:
            if t < b and t + d > a:
                worst = max(worst, d)
    return worst


def _base_row(plan: TurnPlan, call: int, fit, capture: Capture) -> dict:
    row = {"call": call, "turn": plan.turn, "status": plan.status, "error": plan.error, "text": plan.text,
           "user_speech_start_mono": None, "user_speech_end_mono": None, "agent_audio_start_mono": None,
           "agent_audio_end_mono": None, "user_speech_end_s": None, "agent_audio_start_s": None,
           "ttfa_ms": None, "provider_ttft_ms": None, "provider_ttft_source": "missing",
           "provider_ttft_invisible": False, "gap_ms": None, "unattributed_ms": None, "residual_ms": None,
           "stages_json": "[]", "mic_start_mono": plan.mic_start, "mic_end_mono": plan.mic_end,
           "reply_duration_ms": None, "stutter_gaps": 0, "stutter_gap_ms": 0.0, "underruns": 0,
           "concealed_ms": 0.0, "interruption_ms": None, "mic_late_ms": None, "mic_end_late_ms": 0.0, "agent_audio_stop_mono": None,
           "harness_stall_ms": None,
           "anomalies": ""}
    for s in STAGES:
        row[f"{s}_ms"] = None
        row[f"{s}_source"] = "missing"
    if fit is not None:
        row.update({"clock_offset_ms": fit.offset_at(capture.t0_mono) * 1e3, "clock_drift_ppm": fit.drift * 1e6,
                    "clock_uncertainty_ms": fit.uncertainty_s * 1e3, "rtt_ms": fit.rtt_s * 1e3})
    else:
        row.update({"clock_offset_ms": None, "clock_drift_ppm": None, "clock_uncertainty_ms": None, "rtt_ms": None})
    row["agent_call_id"] = capture.meta.get("pc_id")
    row.update(plan.extra)
    return row


def _window(plan: TurnPlan, plans: list[TurnPlan], k: int) -> tuple[float, float]:
    lo = plan.mic_start
    hi = plans[k + 1].mic_start if k + 1 < len(plans) else math.inf
    return lo, hi


def _add_events(event_rows: list, events, plan: TurnPlan, call: int, k: int, plans) -> dict:
    """The first event of each name inside this turn's window (its utterance start → the next one's)."""
    lo, hi = _window(plan, plans, k)
    chosen = {}
    for ev in sorted(events, key=lambda e: e.t_host):
        if lo <= ev.t_host < hi:
            event_rows.append({"call": call, "turn": plan.turn, "name": ev.name, "t_mono": ev.t_host,
                               "uncertainty_ms": ev.uncertainty_s * 1e3, "source": ev.source,
                               "origin": ev.origin, "raw": json.dumps(dict(ev.raw))[:500]})
            if ev.name in EVENT_NAMES:
                # one instant per name: a stamped (reconciled) event beats an arrival-only (estimated) one, then
                # the earliest — an agent speaking both dialects reports most instants twice
                best = chosen.get(ev.name)
                if best is None or (best.source == "estimated" and ev.source == "reconciled"):
                    chosen[ev.name] = ev
    return chosen


def _turn_durations(durations, t_user_end: float, plan, plans, k, capture) -> dict:
    lo, hi = t_user_end, (plans[k + 1].mic_start if k + 1 < len(plans) else math.inf)
    out = {}
    for d in durations:
        if lo <= d.arrival < hi and d.stage not in out:
            out[d.stage] = d
    return out


def _stutter(capture: Capture, start: int, end: int, opts: MeasureOptions, playout, floor: float) -> dict:
    """Gaps inside the reply longer than the threshold, and the playout's underruns/concealment in it."""
    sr = capture.sample_rate
    seg = capture.ear[start:end]
    regs = bnd.speech_regions(seg, sr, vad_mode=opts.vad_mode, min_pause_ms=30.0, min_speech_ms=20.0, floor=floor) \
        if len(seg) > sr // 50 else []
    gaps = [(b.start - a.end) / sr * 1e3 for a, b in zip(regs, regs[1:])]
    big = [g for g in gaps if g >= opts.stutter_gap_ms]
    out = {"stutter_gaps": len(big), "stutter_gap_ms": float(sum(big))}
    if playout is not None:
        st = playout.stats_between(capture.time_of(start), capture.time_of(end))
        out["underruns"] = st["expand"]
        out["concealed_ms"] = 20.0 * st["conceal"]
        out["playout_stall_ms"] = 20.0 * st["longest_gap"]
    return out
