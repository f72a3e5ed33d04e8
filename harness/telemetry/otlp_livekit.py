"""LiveKit agents' OpenTelemetry spans → vlh events.

Read from LiveKit agents' source (livekit/agents at da6af86a, Aug 2026; names in
livekit-agents/livekit/agents/telemetry/trace_types.py). LiveKit stamps spans with `time.time()`: epoch ns on the
agent's wall clock. A LiveKit server cannot run on vlh's test machines: the adapter is tested with spans the
OpenTelemetry SDK emits under these names and attributes (tests/test_otlp_livekit.py), not a live LiveKit agent.

- `user_speaking` (voice/agent_session.py `_update_user_state`): ends at `last_speaking_time`, LiveKit's VAD
  estimate of when the user stopped speaking — vlh's `user_vad_end` (as for pipecat: the instant the agent believes
  speech ended; what it cannot see falls into `endpointing`).
- `user_turn` (voice/audio_recognition.py `_bounce_eou_task`): `lk.transcription_delay` runs from that end of speech
  to the final transcript (`stt_final`); `lk.end_of_utterance_delay` from it to the moment the turn is committed
  (after the EOU model, `eou_detection`, and its endpointing delay: `time.time()` at `on_end_of_turn`), which is
  also when the span ends — vlh's `user_speech_end_detected`, the turn end. So LiveKit's end-of-utterance wait is
  vlh's `turn_detection`, STT beside it on the critical path, as for pipecat's turn strategies.
- `llm_node` (voice/generation.py `_llm_inference_task`): its start is the request; `lk.response.ttft` is measured
  from that start (time.perf_counter at the task's start) to the first generated token.
- `tts_request` (tts/tts.py): its start is the text sent to the provider, which is the anchor of `tts_node`'s
  `lk.response.ttfb` (generation.py: USERDATA_TTS_STARTED_TIME); without a `tts_request` span the `tts_node` start.
- `agent_speaking` (agent_session.py `_update_agent_state`): starts at `started_speaking_at`, the first audio
  frame out — `audio_first_sent`.
- `agent_turn` `lk.e2e_latency` (voice/agent_activity.py): started_speaking_at − the user's stopped_speaking_at,
  LiveKit's voice-to-voice figure (`framework_v2v_ms`).
"""

from __future__ import annotations

from harness.telemetry.otlp_decode import OtlpSpan
from harness.telemetry.otlp_map import AgentInstant, TurnFact, seconds_ns

FRAMEWORK = "livekit"
TABLE = [
    ("user_speaking", "end (last_speaking_time)", "user_vad_end"),
    ("user_turn", "user_speaking end + lk.transcription_delay", "stt_final"),
    ("user_turn", "user_speaking end + lk.end_of_utterance_delay (else the span's end)", "user_speech_end_detected"),
    ("llm_node", "start", "llm_request"),
    ("llm_node", "start + lk.response.ttft", "llm_first_token"),
    ("tts_request (else tts_node)", "start", "tts_request"),
    ("tts_node", "tts_request + lk.response.ttfb", "tts_first_audio"),
    ("agent_speaking", "start", "audio_first_sent"),
    ("agent_turn", "lk.e2e_latency × 1000", "framework_v2v_ms (column)"),
]


def read(trace: list[OtlpSpan]) -> tuple[list[AgentInstant], list[TurnFact]]:
    """LiveKit's spans are not all under one turn span: each kind is read on its own and the runner assigns the
    instants to vlh's turns by time window. `user_turn` and `agent_turn` pair through the speaking spans."""
    instants: list[AgentInstant] = []
    facts: list[TurnFact] = []
    by_name: dict[str, list[OtlpSpan]] = {}
    for s in sorted(trace, key=lambda s: s.start_ns):
        by_name.setdefault(s.name, []).append(s)

    def add(name, t_ns, span, what):
        if t_ns is not None:
            instants.append(AgentInstant(name, int(t_ns), f"otlp:{FRAMEWORK}:{span.name}", None,
                                         {"span": span.name, "read": what}))

    speech_ends = []
    for s in by_name.get("user_speaking", []):
        add("user_vad_end", s.end_ns, s, "end")
        speech_ends.append(s.end_ns)
    for s in by_name.get("user_turn", []):
        delay = seconds_ns(s.number("lk.transcription_delay"))
        ends = [e for e in speech_ends if s.start_ns <= e <= s.end_ns]
        if delay is not None and ends:
            add("stt_final", ends[-1] + delay, s, "user_speaking end + lk.transcription_delay")
        eou = seconds_ns(s.number("lk.end_of_utterance_delay"))
        if eou is not None and ends:
            add("user_speech_end_detected", ends[-1] + eou, s, "user_speaking end + lk.end_of_utterance_delay")
        else:  # the span ends when the turn is committed
            add("user_speech_end_detected", s.end_ns, s, "end (the turn committed)")
    for s in by_name.get("llm_node", []):
        add("llm_request", s.start_ns, s, "start")
        ttft = seconds_ns(s.number("lk.response.ttft"))
        if ttft is not None:
            add("llm_first_token", s.start_ns + ttft, s, "start + lk.response.ttft")
    requests = by_name.get("tts_request", [])
    for node in by_name.get("tts_node", []):
        req = next((r for r in requests if r.start_ns >= node.start_ns and r.start_ns <= node.end_ns), None)
        start = (req or node).start_ns
        add("tts_request", start, req or node, "start")
        ttfb = seconds_ns(node.number("lk.response.ttfb"))
        if ttfb is not None:
            add("tts_first_audio", start + ttfb, node, "tts_request start + lk.response.ttfb")
    for s in by_name.get("agent_speaking", []):
        add("audio_first_sent", s.start_ns, s, "start")
    speaking = [s.start_ns for s in by_name.get("agent_speaking", [])]
    for s in by_name.get("agent_turn", []):
        e2e = s.number("lk.e2e_latency")
        if e2e is None:
            continue
        starts = [t for t in speaking if s.start_ns <= t <= s.end_ns]
        facts.append(TurnFact(FRAMEWORK, e2e * 1e3, starts[0] if starts else s.start_ns, None,
                              f"otlp:{FRAMEWORK}:agent_turn"))
    return instants, facts
