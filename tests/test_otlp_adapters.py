"""Which adapter reads which trace, the pipecat table's rules on a turn with two transcripts, and docs in step."""

from __future__ import annotations

from pathlib import Path

from harness.telemetry import otlp_genai, otlp_livekit, otlp_pipecat
from harness.telemetry.otlp_adapters import ADAPTERS, detect, map_trace
from harness.telemetry.otlp_decode import OtlpSpan

S = 1_000_000_000
T0 = 1_780_000_000 * S


def span(name, start_s, end_s, sid, parent="", scope="", **attrs):
    return OtlpSpan("t1", sid, parent, name, T0 + int(start_s * S), T0 + int(end_s * S), attrs, [], {}, scope)


def test_detect():
    assert detect([span("turn", 0, 1, "a", **{"turn.number": 1})]) == "pipecat"
    assert detect([span("llm", 0, 1, "a", scope="pipecat")]) == "pipecat"
    assert detect([span("agent_turn", 0, 1, "a")]) == "livekit"
    assert detect([span("whatever", 0, 1, "a", scope="livekit-agents")]) == "livekit"
    assert detect([span("chat gpt-4o", 0, 1, "a", **{"gen_ai.operation.name": "chat"})]) == "genai"


def test_pipecat_turn_with_two_transcripts():
    """The transcript the LLM answered is the last final one before the LLM started; an incomplete one is not."""
    trace = [
        span("conversation", 0, 10, "c", **{"conversation.id": "pc-1"}),
        span("turn", 1, 6, "t", "c", **{"turn.number": 2, "turn.user_bot_latency_seconds": 1.2}),
        span("stt", 1.0, 1.9, "s1", "t", **{"metrics.ttfb": 0.2}),
        span("stt", 2.0, 2.6, "s2", "t", **{"metrics.ttfb": 0.25}),
        span("stt", 2.7, 3.9, "s3", "t", **{"metrics.ttfb": 0.1, "stt.incomplete": True}),
        span("llm", 2.7, 3.5, "l", "t", **{"metrics.ttfb": 0.3}),
        span("tts", 3.1, 4.5, "x", "t", **{"metrics.ttfb": 0.12}),
    ]
    kind, inst, facts = map_trace(trace)
    assert kind == "pipecat"
    at = {i.name: (i.t_ns - T0) / S for i in inst}
    assert at["stt_final"] == 2.6 and abs(at["user_vad_end"] - 2.35) < 1e-9
    assert at["llm_request"] == 2.7 and abs(at["llm_first_token"] - 3.0) < 1e-9
    assert at["tts_request"] == 3.1 and abs(at["tts_first_audio"] - 3.22) < 1e-9
    assert abs(at["audio_first_sent"] - 3.55) < 1e-9  # speech end 2.35 + user_bot_latency 1.2
    assert all(i.turn_number == 2 for i in inst)
    assert [(f.framework, f.v2v_ms) for f in facts] == [("pipecat", 1200.0)]


def test_span_events_named_like_vlh_events():
    s = span("my_agent_step", 0, 1, "a")
    s.events = [("vlh.tts_first_audio", T0 + S // 2, {}), ("audio_first_sent", T0 + S, {"turn": 3}),
                ("something else", T0, {})]
    _, inst, _ = map_trace([s])
    assert sorted((i.name, i.t_ns - T0, i.turn_number) for i in inst) == [
        ("audio_first_sent", S, 3), ("tts_first_audio", S // 2, None)]


def test_docs_hold_every_table_row():
    doc = (Path(__file__).parents[1] / "docs" / "opentelemetry.md").read_text()
    for mod in (otlp_pipecat, otlp_livekit, otlp_genai):
        for a, b, c in mod.TABLE:
            assert f"| `{a}` | {b} | `{c}` |" in doc, (mod.__name__, a, b, c)
    assert set(ADAPTERS) == {"pipecat", "livekit", "genai"}
