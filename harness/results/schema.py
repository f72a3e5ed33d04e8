"""The run-folder schema the report reads (docs/schema.md): names, stage order, labels.

One place for the column names so the loader, the summary, the generator of synthetic runs and the tests agree.
"""

from __future__ import annotations

# The stages of a turn, in pipeline order (design.md §4). `stt` and `turn_detection` run side by side after the
# agent's VAD end: on the critical path the one that finished first comes first (see harness/measure/attribution.py).
STAGES = [
    "endpointing", "stt", "turn_detection", "llm_dispatch", "llm_ttft", "reasoning", "aggregation",
    "tts_ttfb", "agent_output", "transport", "jitter_buffer", "codec", "playout",
]
# Words a person reads in the report and in the sentence "the 350 ms are TTS 140, transport 60, …".
STAGE_LABELS = {
    "endpointing": "endpointing", "stt": "STT", "turn_detection": "turn detection", "llm_dispatch": "LLM dispatch", "llm_ttft": "LLM TTFT",
    "reasoning": "reasoning", "aggregation": "aggregation", "tts_ttfb": "TTS", "agent_output": "agent output",
    "transport": "transport", "jitter_buffer": "jitter buffer", "codec": "codec", "playout": "playout",
    "unattributed": "unattributed", "residual": "residual",
}
SOURCES = ["measured", "reconciled", "estimated", "missing"]

IDENTITY = ["run_id", "scenario", "call", "turn"]
# Without these a folder cannot be reported at all.
CORE_COLUMNS = IDENTITY + ["status", "ttfa_ms"]
# Every column of turns.parquet, in docs/schema.md order.
TURN_COLUMNS = (
    IDENTITY
    + ["status", "error", "text",
       "user_speech_start_mono", "user_speech_end_mono", "agent_audio_start_mono", "agent_audio_end_mono",
       "user_speech_end_s", "agent_audio_start_s",
       "ttfa_ms", "provider_ttft_ms", "provider_ttft_invisible", "gap_ms"]
    + [c for s in STAGES for c in (f"{s}_ms", f"{s}_source")]
    + ["unattributed_ms", "residual_ms", "stages_json",
       "clock_offset_ms", "clock_drift_ppm", "clock_uncertainty_ms", "rtt_ms",
       "reply_duration_ms", "stutter_gaps", "stutter_gap_ms", "underruns", "concealed_ms",
       "interruption_ms", "anomalies", "overlapped_stage", "overlapped_ms"]
)
# The agent-side boundaries vlh events and adapters (RTVI) map onto, in pipeline order (design.md §3-4):
# user_vad_end = the agent's VAD heard the end of speech; user_speech_end_detected = the end-of-turn decision
# (turn strategy / end-of-utterance model); stt_final = the final transcript (may come before the turn end).
# Also written by `vlh run` as <name>_mono columns.
EVENT_NAMES = ("user_vad_end", "user_speech_end_detected", "stt_final", "llm_request", "llm_first_token",
               "llm_first_visible_token", "tts_request", "tts_first_audio", "audio_first_sent")
EXTRA_COLUMNS = (
    ["recording", "agent_call_id", "mic_start_mono", "mic_end_mono", "mic_late_ms", "harness_stall_ms"]
    + [f"{e}_mono" for e in EVENT_NAMES] + ["first_audio_arrival_mono", "first_audio_playout_mono"]
    + ["first_audio_seq", "provider_ttft_source", "reasoning_hidden_ms", "playout_stall_ms"]
    + ["framework_v2v_ms"]  # the agent framework's own voice-to-voice figure (OTLP: pipecat, LiveKit)
    + ["vad_end_basis"]  # how the agent's VAD end was found (attribution.VAD_END_BASES): reported | stt_ttfb | …
)
EVENT_COLUMNS = ["call", "turn", "name", "t_mono", "uncertainty_ms", "source", "raw"]
RUN_KEYS = [
    "run_id", "vlh_version", "created_utc", "host", "agent_url", "transport", "scenario", "profile", "config",
    "calls", "partial", "codec_delay_ms", "clock", "telemetry", "summary", "slo",
]
# Headline percentiles, as keys of run.json "summary"[metric] and as data-metric ids in the HTML.
PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}
HEADLINE_METRICS = ["ttfa_ms", "provider_ttft_ms", "gap_ms"]


def stage_label(name: str) -> str:
    """Readable name of a stage or span; unknown names (agent-provided, merged spans) are shown as they are."""
    return STAGE_LABELS.get(name, name)


def span_key(span: dict) -> str:
    """The waterfall trace a span of stages_json belongs to: its stage, an unattributed span by its name, a
    residual by its place (the stages it sits among)."""
    kind, name, covers = span.get("kind"), span["name"], span.get("covers") or []
    if kind == "residual" or name == "residual":
        return "residual" if not covers else f"residual ({covers[0]}…{covers[-1]})"
    return name


def status_kind(status: str) -> str:
    """`ok`, `no_response` or `error` (from `error:<kind>`); anything else is `other`."""
    s = str(status)
    if s in ("ok", "no_response"):
        return s
    if s.startswith("error"):
        return "error"
    return "other"
