"""Pipecat RTVI messages (`{"label": "rtvi-ai", "type": ...}`) → vlh events and durations.

RTVI carries no clock: speaking/LLM/TTS events are known only by their arrival, and `metrics.ttfb` entries are
durations in seconds per processor (e.g. `{"processor": "OpenAILLMService#0", "value": 0.31}`).

Meaning, from pipecat 1.14's source (processors/frameworks/rtvi/observer.py, observers/user_bot_latency_observer.py,
metrics/metrics.py):
- `vad-user-stopped-speaking` = VADUserStoppedSpeakingFrame: the VAD heard `stop_secs` of silence (the VAD end).
  Sent only with `RTVIObserverParams(vad_user_speaking_enabled=True)` (off by default); without it vlh estimates
  the VAD end as the final transcript minus the STT's ttfb (harness/measure/attribution.py).
- `user-stopped-speaking` = UserStoppedSpeakingFrame: the turn-stop strategy decided the turn is over (turn end).
- `user-transcription` with `final: true` = TranscriptionFrame (STT done; may precede the turn end).
- `bot-llm-started` = LLMFullResponseStartFrame (LLM request); the first `bot-llm-text` = first LLMTextFrame (the
  first answer text; reasoning travels in other frames); `bot-tts-started` = TTSStartedFrame;
  `bot-started-speaking` = BotStartedSpeakingFrame (the output transport sent the first audio).
- `metrics.ttfb[]`: per-processor TTFB (STT: VAD stop → final transcript; LLM: request → first token; TTS: request
  → first audio). The first `metrics` message of a call is all zeros (pipecat's initial empty metrics): ignored.
- `metrics.ttfat[]` (LLM): `thinking_time` = first output → first answer token, vlh's `reasoning`.
- `metrics.ttfa[]` (TTS): `ttfa` = ttfb + `leading_silence` (first *audible* sample); understood, not a stage.
"""

from __future__ import annotations

from harness.telemetry.events import Duration, Event

# RTVI server message type → vlh event name
EVENT_MAP = {
    "vad-user-stopped-speaking": "user_vad_end",
    "user-stopped-speaking": "user_speech_end_detected",
    "bot-llm-started": "llm_request",
    "bot-tts-started": "tts_request",
    "bot-started-speaking": "audio_first_sent",
    "bot-llm-text": "llm_first_visible_token",  # every chunk; the turn keeps the first
}
INFO_TYPES = {"user-started-speaking", "bot-interrupted", "bot-stopped-speaking", "bot-llm-stopped", "bot-tts-stopped", "bot-ready",
              "vad-user-started-speaking", "bot-tts-text", "user-input", "bot-llm-marker", "bot-transcription", "user-transcription", "server-message",
              "bot-output", "user-llm-text", "error", "bot-llm-search-response", "llm-function-call"}


def processor_stage(processor: str, overrides: dict[str, str] | None = None) -> str | None:
    """Which stage a pipecat processor's ttfb measures: by override, else by its name (…STT…, …LLM…, …TTS…)."""
    if overrides:
        for key, stage in overrides.items():
            if key.lower() in processor.lower():
                return stage
    name = processor.lower()
    if "stt" in name or "transcri" in name or "whisper" in name:
        return "stt"
    if "llm" in name:
        return "llm_ttft"
    if "tts" in name:
        return "tts_ttfb"
    return None


def is_rtvi(msg: dict) -> bool:
    return msg.get("label") == "rtvi-ai"


def parse(msg: dict, arrival: float, overrides: dict[str, str] | None = None) -> tuple[list, bool]:
    """Returns ([Event | Duration …], understood)."""
    kind = msg.get("type")
    if kind in EVENT_MAP:
        return [Event(EVENT_MAP[kind], arrival, origin=f"rtvi:{kind}", raw=msg)], True
    if kind == "user-transcription":
        data = msg.get("data") or {}
        if data.get("final"):
            return [Event("stt_final", arrival, origin="rtvi:user-transcription", raw=msg)], True
        return [], True
    if kind == "metrics":
        out = []
        data = msg.get("data") or {}
        entries = data.get("ttfb") or []
        if not isinstance(entries, list):
            return [], False
        for e in data.get("ttfat") or []:
            try:
                thinking = float(e.get("thinking_time"))
            except (TypeError, ValueError, AttributeError):
                continue
            if thinking > 0:
                out.append(Duration("reasoning", thinking, arrival, str(e.get("processor", ""))))
        for e in entries:
            if not isinstance(e, dict):
                continue
            try:
                value = float(e.get("value"))
            except (TypeError, ValueError):
                continue
            proc = str(e.get("processor", ""))
            stage = processor_stage(proc, overrides)
            if stage and value > 0:  # pipecat's first metrics message is all zeros
                out.append(Duration(stage, value, arrival, proc))
        return out, True
    return [], kind in INFO_TYPES
