"""TelemetryLog: RTVI messages placed on the host clock with an honest uncertainty (issue #14)."""

import json

import pytest

from harness.telemetry.clock import PingSample
from harness.telemetry.collector import ARRIVAL_STAMP_S, TelemetryLog


def _rtvi(kind: str, **data) -> str:
    return json.dumps({"label": "rtvi-ai", "type": kind, "data": data})


def test_arrival_only_events_without_a_clock_fit_carry_the_arrival_stamps_uncertainty():
    tel = TelemetryLog()
    tel.feed(_rtvi("bot-llm-started"), 10.000)
    tel.feed(_rtvi("bot-llm-text", text="Sure"), 10.3)
    assert tel.reconcile() is None
    for ev in tel.events:
        assert ev.source == "estimated" and ev.t_host == ev.arrival
        assert ev.uncertainty_s == pytest.approx(ARRIVAL_STAMP_S)


def test_arrival_only_events_with_a_clock_fit_add_the_one_way_delay():
    tel = TelemetryLog()
    # four exchanges, 6 ms round trip, agent clock 2 s ahead
    for k in range(4):
        t0 = 1.0 + k
        tel.pings.append(PingSample(t0, t0 + 2.003, t0 + 2.003, t0 + 0.006))
    tel.feed(_rtvi("user-stopped-speaking"), 5.0)
    fit = tel.reconcile()
    ev = tel.events[0]
    assert fit.one_way_s == pytest.approx(0.003)
    assert ev.t_host == pytest.approx(5.0 - 0.003)
    assert ev.uncertainty_s == pytest.approx(0.003 + ARRIVAL_STAMP_S)


def _turns_of_real_agent_telemetry(tel: TelemetryLog, turns: int, t: float = 100.0) -> float:
    """Feed `tel` what the reference agent's telemetry sender (harness.agent.self_report) sends in `turns` turns of
    ≈ 2.7 s: both dialects (vlh events + RTVI, as agent/call.py emits them per turn) and a ping/pong every 0.2 s."""
    from harness.agent.self_report import LLM_PROCESSOR, STT_PROCESSOR, TTS_PROCESSOR, CallTelemetry, TelemetryClock

    clock = {"t": t}
    agent = CallTelemetry(TelemetryClock(offset_ms=1500.0, drift_ppm=20.0, t_ref=100.0), ["vlh", "rtvi"])
    agent.attach(lambda text: tel.feed(text, clock["t"] + 0.003))
    agent.clock.now = lambda: agent.clock.at(clock["t"])
    for n in range(turns):
        for k in range(14):  # 2.8 s of pings
            clock["t"] += 0.2
            agent.handle(tel.make_ping(clock["t"]), clock["t"] + 0.003)
        t0 = clock["t"]
        agent.rtvi_msg("user-started-speaking")
        agent.event("user_speech_end_detected", t0 + 0.2, n)
        agent.rtvi_msg("user-stopped-speaking")
        for name, dt in (("stt_final", 0.3), ("llm_request", 0.31), ("llm_first_token", 0.66), ("tts_request", 0.67),
                         ("tts_first_audio", 0.79), ("agent_audio_sent", 0.8)):
            agent.event(name, t0 + dt, n)
        agent.rtvi_transcription("Is it open?")
        agent.rtvi_ttfb(STT_PROCESSOR, 0.1)
        agent.rtvi_msg("bot-llm-started")
        agent.rtvi_ttfb(LLM_PROCESSOR, 0.35, "vlh-simulated")
        agent.rtvi_msg("bot-llm-text", {"text": "Okay."})
        agent.rtvi_msg("bot-llm-stopped")
        agent.rtvi_msg("bot-tts-started")
        agent.rtvi_msg("bot-tts-text", {"text": "Okay."})
        agent.rtvi_ttfb(TTS_PROCESSOR, 0.12)
        agent.rtvi_msg("bot-tts-stopped")
        agent.rtvi_msg("bot-started-speaking")
        agent.rtvi_msg("bot-stopped-speaking")
    return clock["t"]


def test_a_long_calls_telemetry_grows_under_6_kb_a_turn_in_ram_and_keeps_every_message():
    """Issue 19.3: the raw messages are on disk (read back when asked), the pings in typed columns, events slotted.
    Measured with this very feed: 13.3 KB a turn before (parsed message dicts, PingSample and Event objects), ≈ 4.5 KB
    after (13 Event objects a turn, their spill references, 14 pings × 32 bytes)."""
    import gc
    import tracemalloc

    tel = TelemetryLog()
    _turns_of_real_agent_telemetry(tel, 20)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _turns_of_real_agent_telemetry(tel, 200, t=1000.0)
        gc.collect()
        per_turn = (tracemalloc.get_traced_memory()[0] - before) / 200
        print(f"telemetry kept in RAM: {per_turn:.0f} bytes a turn")
    finally:
        tracemalloc.stop()
    assert per_turn < 6 * 1024, f"{per_turn:.0f} bytes a turn"
    # nothing lost: every message that made an event reads back whole, and the clock fit uses every exchange
    assert len(tel.pings) == 220 * 14 and tel.raw_spill.count == len(tel.events) == 220 * 13
    ev = tel.events[-1]
    assert dict(ev.raw) == {"label": "rtvi-ai", "type": "bot-started-speaking"}
    vlh_ev = next(e for e in reversed(tel.events) if e.origin == "vlh")
    assert vlh_ev.raw["type"] == "vlh.event" and vlh_ev.raw["turn"] == 199 and vlh_ev.raw["t"] == vlh_ev.agent_t
    fit = tel.reconcile()
    assert fit.n_samples == 220 * 14
    # the agent's clock: +1500 ms at t=100 s, +20 ppm (symmetric 3 ms legs, so the fit is exact to rounding)
    assert fit.drift * 1e6 == pytest.approx(20.0, abs=0.01)
    assert fit.offset_at(1000.0) == pytest.approx(1.5 + 20e-6 * 900.0, abs=1e-6)
