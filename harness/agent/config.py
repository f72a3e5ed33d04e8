"""The reference agent's configuration: every knob, its unit and its bounds, in one pydantic model.

`AgentConfig` is what a call runs with; `build_config(profile, overrides)` merges a profile (built-in name or
YAML file, see `profiles.py`) with overrides and turns any validation problem into one `VlhError` naming the key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import VlhError

TELEMETRY_DIALECTS = ("vlh", "rtvi")

DEFAULT_RESPONSES = [
    "Sure, I can help with that. Let me look at the details for you.",
    "Okay, that is done. Is there anything else you need today?",
]


class AgentConfig(BaseModel):
    """All knobs of `vlh agent`. Field names are the YAML keys; `--flag-name` is the key with dashes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # -- endpointing (on the received audio)
    vad_aggressiveness: int = Field(2, ge=0, le=3, description="webrtcvad aggressiveness, 0 (lenient) … 3 (strict)")
    vad_frame_ms: Literal[10, 20, 30] = Field(20, description="webrtcvad frame length in ms (10, 20 or 30)")
    speech_start_ms: float = Field(
        60.0, ge=0, le=2000,
        description="ms of voiced audio (counted in VAD frames) before the user counts as speaking",
    )
    endpoint_hangover_ms: float = Field(
        300.0, ge=0, le=10000,
        description="ms of silence after the arrival of the last voiced packet before the turn ends",
    )
    # -- STT (simulated)
    stt_delay_ms: float = Field(150.0, ge=0, le=60000, description="ms from endpoint to the final transcript")
    transcripts: list[str] = Field(
        default_factory=lambda: ["(user speech)"],
        description="transcript text per turn (cycled); the STT is simulated",
    )
    # -- LLM (simulated)
    llm_dispatch_ms: float = Field(0.0, ge=0, le=60000, description="ms from final transcript to the LLM request")
    workers_per_agent: int = Field(
        0, ge=0, le=10000,
        description="workers the whole agent process has for each turn's CPU work (turn_cpu_ms); a turn waits for "
                    "a free one (queueing) — 0 = unlimited",
    )
    turn_cpu_ms: float = Field(
        0.0, ge=0, le=60000,
        description="ms of modelled CPU work per turn on one of workers_per_agent, after the final transcript and "
                    "before the LLM request (its wait + work show in llm_dispatch); 0 = off",
    )
    llm_ttft_ms: float = Field(350.0, ge=0, le=60000, description="ms from LLM request to its first token (any kind)")
    reasoning_ms: float = Field(
        0.0, ge=0, le=60000,
        description="ms of invisible reasoning chunks after the first token, before the first visible token",
    )
    token_interval_ms: float = Field(10.0, ge=0, le=10000, description="ms between LLM chunks")
    tokens_per_chunk: int = Field(1, ge=1, le=1000, description="words per LLM chunk")
    responses: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RESPONSES),
        description="reply text per turn (cycled); sentences end with . ! or ?",
    )
    # -- TTS (real synthesised speech: espeak-ng, flite, festival; or recorded WAV files)
    tts_ttfb_ms: float = Field(
        150.0, ge=0, le=60000, description="ms from a TTS request to its first audio (synthesis is done ahead)"
    )
    tts_engine: str = Field(
        "espeak", description="who speaks the replies: espeak, flite, festival, or wav-dir:PATH (recorded WAV files; "
                              "see docs/synthesis.md)",
    )
    tts_voice: str | None = Field(None, description="voice of the TTS engine, e.g. en-us (espeak), slt (flite, "
                                                    "festival) (default: the engine's)")
    tts_rate: int | None = Field(None, ge=50, le=500, description="speech rate in words per minute")
    reply_leading_silence_ms: float = Field(
        0.0, ge=0, le=5000, description="ms of silence at the start of each reply, before its first voiced sample"
    )
    stutter_gap_ms: float = Field(0.0, ge=0, le=5000, description="ms of silence inserted into the reply (0 = off)")
    stutter_every_ms: float = Field(
        0.0, ge=0, le=60000, description="ms of reply audio between inserted stutter gaps (0 = off)"
    )
    barge_in: bool = Field(True, description="user speech during a reply stops the reply")
    # -- network impairment (in-process; outgoing = agent→client RTP, incoming = client→agent RTP)
    net_delay_ms: float = Field(0.0, ge=0, le=10000, description="ms of base delay added to outgoing RTP")
    net_jitter_ms: float = Field(
        0.0, ge=0, le=10000,
        description="ms of jitter on outgoing RTP: half-width (uniform) or standard deviation (normal)",
    )
    net_jitter_dist: Literal["uniform", "normal"] = Field("uniform", description="jitter distribution")
    net_loss: float = Field(0.0, ge=0, le=1, description="fraction (0…1) of outgoing RTP packets dropped")
    net_stall_ms: float = Field(
        0.0, ge=0, le=10000,
        description="ws-telephony: ms the outgoing stream stalls (TCP head-of-line blocking: nothing leaves, then the "
                    "backlog leaves at once, in order; 0 = off)",
    )
    net_stall_every_ms: float = Field(
        0.0, ge=0, le=600000,
        description="ws-telephony: ms from one stall's start to the next, the first one this long after the call "
                    "starts (0 = off)",
    )
    in_delay_ms: float = Field(0.0, ge=0, le=10000, description="ms of base delay added to incoming RTP")
    in_jitter_ms: float = Field(0.0, ge=0, le=10000, description="ms of jitter on incoming RTP")
    in_loss: float = Field(0.0, ge=0, le=1, description="fraction (0…1) of incoming RTP packets dropped")
    seed: int = Field(0, description="seed of the impairment random generator (each call derives its own)")
    # -- telemetry
    telemetry: list[Literal["vlh", "rtvi"]] = Field(
        default_factory=lambda: ["vlh", "rtvi"], description="data-channel dialects: vlh, rtvi, both or none"
    )
    clock_offset_ms: float = Field(
        0.0, ge=-1e9, le=1e9, description="ms added to the telemetry clock (host monotonic) in every stamp"
    )
    clock_drift_ppm: float = Field(
        0.0, ge=-1e5, le=1e5, description="telemetry clock drift in ppm, relative to the agent's start"
    )
    # -- calls
    idle_timeout_s: float = Field(
        30.0, gt=0, le=86400, description="s without incoming audio before a call is closed"
    )

    @field_validator("transcripts", "responses")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v or not all(isinstance(s, str) and s.strip() for s in v):
            raise ValueError("needs at least one non-empty text")
        return v

    @field_validator("tts_engine")
    @classmethod
    def _engine(cls, v: str) -> str:
        from harness.agent.tts import check_engine

        return check_engine(v)

    @field_validator("telemetry", mode="before")
    @classmethod
    def _split(cls, v):
        if isinstance(v, str):
            v = [] if v.strip() in ("", "none") else [p.strip() for p in v.split(",") if p.strip()]
        return v


def knob_names() -> list[str]:
    return list(AgentConfig.model_fields)


def _key_of(err: dict) -> str:
    return ".".join(str(p) for p in err.get("loc", ())) or "(config)"


def validate_config(data: dict, where: str = "agent config") -> AgentConfig:
    """`AgentConfig` from a plain dict; one clear `VlhError` naming the key on any problem."""
    if not isinstance(data, dict):
        raise VlhError(f"{where}: expected a mapping of knob: value, got {type(data).__name__}")
    try:
        return AgentConfig(**data)
    except ValidationError as exc:
        errs = exc.errors()
        parts = []
        for e in errs[:3]:
            key = _key_of(e)
            msg = e.get("msg", "invalid")
            if e.get("type") == "extra_forbidden":
                msg = "unknown key (see `vlh agent --help` for the knobs)"
            parts.append(f"{key}: {msg} (got {e.get('input')!r})")
        more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
        raise VlhError(f"{where}: " + "; ".join(parts) + more) from None


def build_config(profile: str | None = None, overrides: dict | None = None) -> AgentConfig:
    """Defaults ← profile (built-in name or YAML path) ← overrides (None values ignored).

    A bad value in the profile is reported against the profile; a bad override against "agent options".
    """
    from harness.agent.profiles import load_profile

    data: dict = {}
    if profile:
        data.update(load_profile(profile))
        validate_config(data, f"profile {profile!r}")
    clean = {k: v for k, v in (overrides or {}).items() if v is not None}
    validate_config(clean, "agent options")
    data.update(clean)
    return validate_config(data, "agent options")
