"""A LiveKit-shaped agent: spans built with the OpenTelemetry SDK under the names and attributes LiveKit agents
use (livekit/agents telemetry/trace_types.py; see harness/telemetry/otlp_livekit.py), exported over OTLP/HTTP by
the SDK's exporter to vlh's receiver, then measured by vlh's own measure_call against a capture whose sound sits
at known instants. (A LiveKit server cannot run here: this is the closest real thing — the real SDK, the real
wire format, the real receiver and measurement.)

Truth: the stage durations the fake agent was built with. Agent-internal stages (STT, LLM TTFT, TTS…) are
differences of two span instants: exact to 0.01 ms. Stages that meet an ear instant (endpointing, transport)
carry the clock placement and the VAD's edge: within 3 ms. With the agent's wall clock 250 ms ahead or 200 ms
behind, vlh must say so
and keep the truth inside the uncertainty it shows.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from harness.audio.capture import SAMPLE_RATE, Capture
from harness.measure import otlp_run
from harness.measure.measure_call import MeasureOptions, TurnPlan, measure_call
from harness.telemetry.otlp_calls import OtlpCallTelemetry

# seconds: the agent's view of the end of speech comes `uplink` after the real end
# EOU: the end-of-utterance wait after the transcript (LiveKit's EOU model + endpointing delay) until the turn is
# committed; DISPATCH: commit → LLM request
UPLINK, TRANSCRIPTION, EOU, DISPATCH, TTFT, AGG, TTFB, OUT, TO_EAR = (0.030, 0.210, 0.055, 0.003, 0.320, 0.040, 0.150,
                                                                     0.012, 0.060)


class _Store:
    def __init__(self):
        self.telemetry_counts, self.meta = {}, {}


def _voice(buf, t0, start, end, f0):
    a, b = int(round((start - t0) * SAMPLE_RATE)), int(round((end - t0) * SAMPLE_RATE))
    t = np.arange(b - a) / SAMPLE_RATE
    sig = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    env = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.002)
    buf[a:b] += (0.25 * sig * (0.55 + 0.45 * np.abs(np.sin(np.pi * 4 * t))) * env).astype(np.float32)


def _scene(n_turns=3):
    """Host-monotonic truth of a finished call that started 40 s ago."""
    t0 = time.monotonic() - 40.0
    turns, t = [], t0 + 1.0
    for k in range(n_turns):
        user_end = t + 1.1
        seen_end = user_end + UPLINK
        stt_final = seen_end + TRANSCRIPTION
        committed = stt_final + EOU
        llm_request = committed + DISPATCH
        first_token = llm_request + TTFT
        tts_request = first_token + AGG
        first_audio = tts_request + TTFB
        sent = first_audio + OUT
        ear = sent + TO_EAR
        turns.append(dict(mic_start=t, user_end=user_end, seen_end=seen_end, stt_final=stt_final,
                          committed=committed, llm_request=llm_request, first_token=first_token, tts_request=tts_request,
                          first_audio=first_audio, sent=sent, ear=ear, ear_end=ear + 1.2))
        t = ear + 2.0
    n = int((t - t0) * SAMPLE_RATE)
    rng = np.random.default_rng(1)
    mic = (rng.standard_normal(n) * 3e-4).astype(np.float32)
    ear = (rng.standard_normal(n) * 3e-4).astype(np.float32)
    for tr in turns:
        _voice(mic, t0, tr["mic_start"], tr["user_end"], 120.0)
        _voice(ear, t0, tr["ear"], tr["ear_end"], 210.0)
    cap = Capture(mic, ear, t0, SAMPLE_RATE, {"pc_id": "pc-livekit-test"})
    plans = [TurnPlan(k + 1, f"turn {k + 1}", tr["mic_start"], tr["user_end"]) for k, tr in enumerate(turns)]
    for a, b in zip(plans, plans[1:]):
        a.next_start = b.mic_start
    return cap, plans, turns


def _emit_livekit(url: str, turns: list[dict], skew_s: float = 0.0, eou_attribute: bool = True) -> None:
    """The spans a LiveKit agent session emits, on an agent wall clock `skew_s` ahead of the host's (the `user_turn`
    attributes as audio_recognition.py sets them at commit; without `lk.end_of_utterance_delay` when not
    `eou_attribute`: older agents)."""
    wall_minus_mono = time.time_ns() - int(time.monotonic() * 1e9)
    ns = lambda t: int(round(t * 1e9)) + wall_minus_mono + int(round(skew_s * 1e9))  # noqa: E731
    provider = TracerProvider(resource=Resource.create({"service.name": "livekit-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url)))
    tracer = provider.get_tracer("livekit-agents")
    session = tracer.start_span("agent_session", start_time=ns(turns[0]["mic_start"] - 0.5))
    sctx = trace.set_span_in_context(session)
    for tr in turns:
        us = tracer.start_span("user_speaking", context=sctx, start_time=ns(tr["mic_start"] + UPLINK))
        us.end(end_time=ns(tr["seen_end"]))
        ut = tracer.start_span("user_turn", context=sctx, start_time=ns(tr["mic_start"] + UPLINK))
        eou = tracer.start_span("eou_detection", context=trace.set_span_in_context(ut),
                                start_time=ns(tr["stt_final"]), attributes={"lk.eou.endpointing_delay": 0.5,
                                                                            "lk.eou.probability": 0.93})
        eou.end(end_time=ns(tr["stt_final"] + 0.004))  # the EOU model's inference; its delay is slept after it
        ut.set_attributes({"lk.transcription_delay": TRANSCRIPTION, "lk.user_transcript": "hello",
                           **({"lk.end_of_utterance_delay": TRANSCRIPTION + EOU} if eou_attribute else {})})
        ut.end(end_time=ns(tr["committed"]))
        at = tracer.start_span("agent_turn", context=sctx, start_time=ns(tr["llm_request"]),
                               attributes={"lk.generation_id": f"gen-{tr['mic_start']:.0f}"})
        actx = trace.set_span_in_context(at)
        llm = tracer.start_span("llm_node", context=actx, start_time=ns(tr["llm_request"]))
        req = tracer.start_span("llm_request", context=trace.set_span_in_context(llm),
                                start_time=ns(tr["llm_request"] + 0.001),
                                attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"})
        req.end(end_time=ns(tr["first_token"] + 0.4))
        llm.set_attribute("lk.response.ttft", TTFT)
        llm.end(end_time=ns(tr["first_token"] + 0.4))
        tts = tracer.start_span("tts_node", context=actx, start_time=ns(tr["first_token"]))
        treq = tracer.start_span("tts_request", context=trace.set_span_in_context(tts),
                                 start_time=ns(tr["tts_request"]))
        treq.end(end_time=ns(tr["first_audio"] + 0.8))
        tts.set_attribute("lk.response.ttfb", TTFB)
        tts.end(end_time=ns(tr["first_audio"] + 0.8))
        sp = tracer.start_span("agent_speaking", context=actx, start_time=ns(tr["sent"]))
        sp.end(end_time=ns(tr["ear_end"] - TO_EAR))
        at.set_attribute("lk.e2e_latency", tr["sent"] - tr["seen_end"])
        at.set_attribute("lk.interrupted", False)
        at.end(end_time=ns(tr["ear_end"] - TO_EAR))
    session.end(end_time=ns(turns[-1]["ear_end"]))
    provider.shutdown()


async def _measure(skew_s: float, eou_attribute: bool = True):
    cap, plans, turns = _scene()
    intake = otlp_run.start("127.0.0.1:0", 1, 16)
    store = _Store()
    try:
        _emit_livekit(intake.receiver.url, turns, skew_s, eou_attribute)
        tel = await otlp_run.attach(None, cap, plans, wait_s=3.0)
        assert isinstance(tel, OtlpCallTelemetry), "the LiveKit conversation was not matched to the call"
        rows, events = otlp_run.measure(
            lambda t: measure_call(cap, plans, t, None, MeasureOptions(), 1, device_path=True), tel, plans, 1)
    finally:
        otlp_run.stop(intake, store)
    return rows, turns, tel, store


INTERNAL = {"stt": TRANSCRIPTION, "turn_detection": EOU, "llm_dispatch": DISPATCH, "llm_ttft": TTFT, "tts_ttfb": TTFB,
            "agent_output": OUT}


@pytest.mark.parametrize("eou_attribute", [True, False], ids=["end_of_utterance_delay", "user_turn-end"])
async def test_livekit_spans_become_stages(eou_attribute):
    """LiveKit's end-of-utterance wait is vlh's turn_detection (the transcript came first: STT on the critical path
    before it), whether read from `lk.end_of_utterance_delay` or from the end of the committed `user_turn` span."""
    rows, turns, tel, store = await _measure(0.0, eou_attribute)
    assert tel.summary()["frameworks"] == ["livekit"]
    assert store.meta["otlp"]["same_host"] is True
    assert store.telemetry_counts["otlp_rejected"] == 0 and store.telemetry_counts["otlp_spans"] > 0
    for r, tr in zip(rows, turns):
        assert r["status"] == "ok"
        for stage, truth in INTERNAL.items():
            assert r[f"{stage}_source"] == "reconciled", (stage, r[f"{stage}_source"])
            assert r[f"{stage}_ms"] == pytest.approx(truth * 1e3, abs=0.01), stage
        # LiveKit does not say when the first *visible* token came: reasoning and aggregation stay one span
        assert r["unattributed_ms"] == pytest.approx(AGG * 1e3, abs=0.01)
        assert r["endpointing_ms"] == pytest.approx(UPLINK * 1e3, abs=3.0)
        assert r["transport_ms"] == pytest.approx(TO_EAR * 1e3, abs=3.0)
        assert r["ttfa_ms"] == pytest.approx((tr["ear"] - tr["user_end"]) * 1e3, abs=3.0)
        assert r["framework_v2v_ms"] == pytest.approx((tr["sent"] - tr["seen_end"]) * 1e3, abs=1e-6)
        assert r["provider_ttft_ms"] == pytest.approx(TTFT * 1e3, abs=0.01)
        assert "OTLP" not in r["anomalies"]
    assert tel.summary()["uncertainty_ms"] < 1.0


@pytest.mark.parametrize("skew", [0.250, -0.200])
async def test_agent_clock_off_is_found_and_shown(skew):
    rows, turns, tel, store = await _measure(skew)
    s = tel.summary()
    assert s["method"].startswith("causality")
    # the truth lies inside what vlh shows
    assert abs(s["offset_ms"] - skew * 1e3) <= s["uncertainty_ms"] + 0.01
    assert s["uncertainty_ms"] < 250  # bounded by the turns, not a shrug
    for r in rows:
        for stage, truth in INTERNAL.items():  # differences on the agent's own clock: unaffected
            assert r[f"{stage}_ms"] == pytest.approx(truth * 1e3, abs=0.01), stage
        assert r["framework_v2v_ms"] is not None
    # the runner appends the call's telemetry anomalies to every turn of it
    assert any("wall clock is off by" in a for a in tel.anomalies)
