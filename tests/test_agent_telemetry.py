"""Telemetry: the skewable clock, vlh ping/pong and events, RTVI messages — unit level and over WebRTC."""

from __future__ import annotations

import json

import pytest

from agent_testclient import converse, realtime, speech, wait_for  # noqa: F401 (realtime: autouse fixture)
from harness.agent.config import AgentConfig
from harness.agent.server import AgentServer
from harness.agent.self_report import (LLM_PROCESSOR, STT_PROCESSOR, TTS_PROCESSOR, CallTelemetry,
                                     TelemetryClock)


def test_clock_offset_and_drift():
    c = TelemetryClock(offset_ms=1500, drift_ppm=100, t_ref=1000.0)
    assert c.at(1000.0) == pytest.approx(1001.5)
    assert c.at(1100.0) == pytest.approx(1100.0 + 1.5 + 100e-6 * 100)
    for t in (0.0, 1000.0, 12345.678):
        assert c.to_host(c.at(t)) == pytest.approx(t, abs=1e-9)


def make(dialects=("vlh", "rtvi"), clock=None):
    sent = []
    tel = CallTelemetry(clock or TelemetryClock(0, 0, 0.0), list(dialects))
    tel.attach(lambda s: sent.append(json.loads(s)))
    return tel, sent


def test_ping_gets_a_pong_on_the_telemetry_clock():
    tel, sent = make(clock=TelemetryClock(250, 0, 0.0))
    tel.handle(json.dumps({"type": "vlh.ping", "id": 9, "t0": 5.0}), t_receipt=100.0)
    pong = sent[0]
    assert pong["type"] == "vlh.pong" and pong["id"] == 9 and pong["t0"] == 5.0
    assert pong["t1"] == pytest.approx(100.25) and pong["t2"] >= pong["t1"] - 100.0  # t2 stamped at send


def test_events_carry_the_telemetry_clock():
    tel, sent = make(clock=TelemetryClock(-2000, 0, 0.0))
    tel.event("stt_final", 50.0, 3)
    assert sent == [{"type": "vlh.event", "name": "stt_final", "t": pytest.approx(48.0), "turn": 3}]


def test_rtvi_client_ready_gets_bot_ready_and_unknown_types_an_error():
    tel, sent = make()
    tel.handle(json.dumps({"label": "rtvi-ai", "type": "client-ready", "id": "abc",
                           "data": {"version": "1.0.0", "about": {"library": "x"}}}), 1.0)
    assert sent[0]["type"] == "bot-ready" and sent[0]["id"] == "abc" and sent[0]["label"] == "rtvi-ai"
    assert sent[0]["data"]["version"].split(".")[0] == "1"
    tel.handle(json.dumps({"label": "rtvi-ai", "type": "update-config", "id": "q"}), 1.0)
    assert sent[1]["type"] == "error-response" and sent[1]["id"] == "q"
    tel.rtvi_ttfb("SimulatedLLMService#0", 0.35, "m")
    assert sent[2] == {"label": "rtvi-ai", "type": "metrics",
                       "data": {"ttfb": [{"processor": "SimulatedLLMService#0", "value": 0.35, "model": "m"}]}}


def test_dialects_can_be_switched_off_and_junk_is_counted():
    tel, sent = make(dialects=["vlh"])
    tel.rtvi_msg("bot-started-speaking")
    tel.handle(json.dumps({"label": "rtvi-ai", "type": "client-ready", "id": "1"}), 1.0)
    assert sent == []
    tel2, sent2 = make(dialects=["rtvi"])
    tel2.event("stt_final", 1.0, 1)
    tel2.handle(json.dumps({"type": "vlh.ping", "id": 1, "t0": 0}), 1.0)
    assert sent2 == []
    tel.handle("not json", 1.0)
    tel.handle("[1, 2]", 1.0)
    tel.handle("ping: 1700000000000", 1.0)  # SmallWebRTC keep-alive: known, not junk
    assert tel.counts()["unparsed"] == 2 and tel.counts()["keepalives"] == 1


def test_messages_before_the_channel_opens_are_counted_as_dropped():
    tel = CallTelemetry(TelemetryClock(), ["vlh"])
    tel.event("stt_final", 1.0, 1)
    assert tel.counts()["dropped"] == 1


async def test_clock_offset_drift_events_and_rtvi_over_webrtc():
    """+1500 ms offset and a large drift (+20000 ppm, so that it shows within seconds) in the pongs;
    vlh events are the truth instants on that clock; RTVI TTFB of the LLM = the configured TTFT."""
    cfg = AgentConfig(endpoint_hangover_ms=200, stt_delay_ms=40, llm_ttft_ms=230, reasoning_ms=100,
                      token_interval_ms=5, tts_ttfb_ms=30, clock_offset_ms=1500, clock_drift_ppm=20000,
                      responses=["Fine, thanks."])
    async with AgentServer(cfg, port=0) as srv:
        await srv.warm()
        clock = srv.clock
        c, turns, _ = await converse(srv.url, srv.truth, [speech("Hello there")], keep_open=True)
        try:
            c.send({"label": "rtvi-ai", "type": "client-ready", "id": "r1",
                    "data": {"version": "1.0.0", "about": {"library": "test"}}})
            samples = []
            for i in range(12):
                pong, t0, t3 = await c.ping(i)
                samples.append((pong, t0, t3))
                import asyncio

                await asyncio.sleep(0.15)
            await wait_for(lambda: c.rtvi("bot-ready"), 5)
        finally:
            await c.close()
    # pongs: t1, t2 lie on the agent clock between send and receipt of the ping
    est = []  # (mid, NTP offset estimate, its bound RTT/2)
    for pong, t0, t3 in samples:
        assert pong["t0"] == t0
        assert t0 <= clock.to_host(pong["t1"]) <= clock.to_host(pong["t2"]) <= t3
        offset = ((pong["t1"] - t0) + (pong["t2"] - t3)) / 2
        rtt = (t3 - t0) - (pong["t2"] - pong["t1"])
        mid = (t0 + t3) / 2
        est.append((mid, offset, rtt / 2))
        # the offset is +1.5 s plus the drift since the agent started, to within RTT/2 (the NTP bound)
        assert abs(offset - (1.5 + 0.02 * (mid - clock.t_ref))) <= rtt / 2 + 1e-6
    # the drift, from the lowest-RTT exchange at each end of the run (bound: their RTT/2 over the span)
    a = min(est[:4], key=lambda e: e[2])
    b = min(est[-4:], key=lambda e: e[2])
    drift = (b[1] - a[1]) / (b[0] - a[0])
    bound = (a[2] + b[2]) / (b[0] - a[0])
    assert abs(drift - 0.02) <= bound + 1e-9
    assert bound < 0.01  # … and the measurement was sharp enough to see a 20000 ppm drift at all
    # vlh events: exactly the truth's host instants on the telemetry clock
    t = turns[0]
    for e in c.events():
        assert e["turn"] == 1
        assert e["t"] == pytest.approx(clock.at(t[e["name"]]), abs=1e-9)
    # RTVI: metrics ttfb in seconds, LLM = TTFT to the first (reasoning) token
    ttfb = {m["data"]["ttfb"][0]["processor"]: m["data"]["ttfb"][0]["value"] for m in c.rtvi("metrics")}
    assert set(ttfb) == {STT_PROCESSOR, LLM_PROCESSOR, TTS_PROCESSOR}
    llm = ttfb[LLM_PROCESSOR]
    # the configured delays, plus how late the agent's own loop fired each instant (recorded in its truth: a
    # starved agent reports the TTFB that really happened; seen: the first token 141 ms late on a loaded host)
    late = {k: (v or 0.0) / 1e3 for k, v in t["lateness_ms"].items()}
    assert llm == pytest.approx(0.230 + late.get("llm_first_token", 0.0), abs=0.005), t["lateness_ms"]
    assert llm == pytest.approx(t["llm_first_token"] - t["llm_request"], abs=1e-9)
    assert ttfb[STT_PROCESSOR] == pytest.approx(0.040 + late.get("stt_final", 0.0), abs=0.005), t["lateness_ms"]
    assert ttfb[TTS_PROCESSOR] == pytest.approx(0.030 + late.get("tts_first_audio", 0.0), abs=0.005), t["lateness_ms"]
    types = [m["type"] for m in c.rtvi()]
    for needed in ("user-started-speaking", "user-stopped-speaking", "bot-llm-started", "bot-tts-started",
                   "bot-started-speaking", "bot-stopped-speaking", "user-transcription", "bot-ready"):
        assert needed in types, needed
    assert types.index("user-stopped-speaking") < types.index("bot-llm-started") < types.index("bot-tts-started") \
        < types.index("bot-started-speaking") < types.index("bot-stopped-speaking")
    assert c.rtvi("bot-ready")[0]["id"] == "r1"
