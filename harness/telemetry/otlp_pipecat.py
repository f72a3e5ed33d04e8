"""pipecat's OpenTelemetry spans (`pipecat-ai[tracing]`, `enable_tracing=True`) → vlh events.

Read from pipecat's source (src/pipecat/utils/tracing/, pipecat-ai/pipecat at acead050, Aug 2026): a
`conversation` span holds one `turn` span per turn (turn_trace_observer.py: `turn.number`, `conversation.id`,
`turn.user_bot_latency_seconds`, `turn.was_interrupted`); `stt`, `llm` and `tts` spans are the turn's children
(service_decorators.py). pipecat stamps with `time.time()` (frame_processor_metrics.py): epoch seconds on the
agent's wall clock.

- `stt`: opened at the start of speech, ended at the finalized transcript; its `metrics.ttfb` runs from pipecat's
  estimate of the end of speech (VAD stop − `stop_secs`, stt_service.py `_handle_vad_user_stopped_speaking`) to
  that transcript. vlh puts `user_vad_end` at end − ttfb: the instant pipecat believes the user stopped, where
  its STT and user→bot clocks start. So, against pipecat, vlh's `endpointing` is what pipecat cannot see (uplink,
  its VAD's error) and `stt` is pipecat's STT TTFB (the VAD's `stop_secs` wait included), exactly. Not
  `user_speech_end_detected`: that is the end of the user's turn (pipecat's turn strategy, RTVI
  `user-stopped-speaking`, ~stop_secs + the turn wait later), which no pipecat span marks — with RTVI on it comes
  from RTVI; from spans alone turn_detection and llm_dispatch stay one span (measured live: the bot of
  tests/test_pipecat_tracing.py).
- `llm`: wraps `_process_context`, which starts its TTFB at once (openai/base_llm.py) — request = span start,
  first token = start + `metrics.ttfb`.
- `tts`: opened at `create_audio_context`, followed at once by `start_ttfb_metrics` (tts_service.py) — request =
  span start, first audio = start + `metrics.ttfb`.
- `turn.user_bot_latency_seconds` (user_bot_latency_observer.py): BotStartedSpeakingFrame − (VAD stop −
  stop_secs), the same anchor as the STT TTFB — so the bot started sending audio at user_speech_end_detected +
  latency (`audio_first_sent`), and this latency is pipecat's voice-to-voice figure (`framework_v2v_ms`).
"""

from __future__ import annotations

from harness.telemetry.otlp_decode import OtlpSpan
from harness.telemetry.otlp_map import AgentInstant, TurnFact, children, seconds_ns

FRAMEWORK = "pipecat"
TABLE = [
    ("stt", "end − metrics.ttfb", "user_vad_end"),
    ("stt", "end (finalized transcript)", "stt_final"),
    ("llm", "start", "llm_request"),
    ("llm", "start + metrics.ttfb", "llm_first_token"),
    ("tts", "start", "tts_request"),
    ("tts", "start + metrics.ttfb", "tts_first_audio"),
    ("turn", "user_vad_end + turn.user_bot_latency_seconds", "audio_first_sent"),
    ("turn", "turn.user_bot_latency_seconds × 1000", "framework_v2v_ms (column)"),
]


def read(trace: list[OtlpSpan]) -> tuple[list[AgentInstant], list[TurnFact]]:
    kids = children(trace)
    instants: list[AgentInstant] = []
    facts: list[TurnFact] = []
    for turn in (s for s in trace if s.name == "turn"):
        n = turn.attributes.get("turn.number")
        n = n if isinstance(n, int) else None
        sub = kids.get(turn.span_id, [])
        llm = next((s for s in sub if s.name == "llm"), None)
        tts = next((s for s in sub if s.name == "tts"), None)
        stts = [s for s in sub if s.name == "stt" and not s.attributes.get("stt.incomplete")]
        if llm is not None:  # the transcript the LLM answered: the last one final before it started
            before = [s for s in stts if s.end_ns <= llm.start_ns]
            stts = before or stts
        stt = max(stts, key=lambda s: s.end_ns) if stts else None

        def add(name, t_ns, span, what):
            if t_ns is not None:
                instants.append(AgentInstant(name, int(t_ns), f"otlp:{FRAMEWORK}:{span.name}", n,
                                             {"span": span.name, "read": what, "turn": n}))

        speech_end = None
        if stt is not None:
            add("stt_final", stt.end_ns, stt, "end")
            ttfb = seconds_ns(stt.number("metrics.ttfb"))
            if ttfb is not None:
                speech_end = stt.end_ns - ttfb
                add("user_vad_end", speech_end, stt, "end - metrics.ttfb")
        if llm is not None:
            add("llm_request", llm.start_ns, llm, "start")
            ttfb = seconds_ns(llm.number("metrics.ttfb"))
            if ttfb is not None:
                add("llm_first_token", llm.start_ns + ttfb, llm, "start + metrics.ttfb")
        if tts is not None:
            add("tts_request", tts.start_ns, tts, "start")
            ttfb = seconds_ns(tts.number("metrics.ttfb"))
            if ttfb is not None:
                add("tts_first_audio", tts.start_ns + ttfb, tts, "start + metrics.ttfb")
        latency = turn.number("turn.user_bot_latency_seconds")
        if latency is not None:
            anchor = speech_end + seconds_ns(latency) if speech_end is not None else turn.start_ns
            if speech_end is not None:
                add("audio_first_sent", anchor, turn, "user_vad_end + turn.user_bot_latency_seconds")
            facts.append(TurnFact(FRAMEWORK, latency * 1e3, anchor, n, f"otlp:{FRAMEWORK}:turn"))
    return instants, facts
