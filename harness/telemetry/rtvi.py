"""Pipecat RTVI messages (`{"label": "rtvi-ai", "type": ...}`) → vlh events and durations.

RTVI carries no clock: speaking/LLM/TTS events are known only by their arrival, and `metrics.ttfb` entries are
durations in seconds per processor (e.g. `{"processor": "OpenAILLMService#0", "value": 0.31}`).
"""

from __future__ import annotations

from harness.telemetry.events import Duration, Event

# RTVI server message type → vlh event name
EVENT_MAP = {
    "user-stopped-speaking": "user_speech_end_detected",
    "bot-llm-started": "llm_request",
    "bot-tts-started": "tts_request",
    "bot-started-speaking": "audio_first_sent",
}
INFO_TYPES = {"user-started-speaking", "bot-interrupted", "bot-stopped-speaking", "bot-llm-stopped", "bot-tts-stopped", "bot-ready",
              "bot-llm-text", "bot-tts-text", "bot-transcription", "user-transcription", "server-message",
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
        for e in entries:
            if not isinstance(e, dict):
                continue
            try:
                value = float(e.get("value"))
            except (TypeError, ValueError):
                continue
            proc = str(e.get("processor", ""))
            stage = processor_stage(proc, overrides)
            if stage:
                out.append(Duration(stage, value, arrival, proc))
        return out, True
    return [], kind in INFO_TYPES
