"""Which adapter reads which trace: pipecat, LiveKit, or the generic GenAI mapping (each a table in its module)."""

from __future__ import annotations

from harness.telemetry import otlp_genai, otlp_livekit, otlp_pipecat
from harness.telemetry.otlp_decode import OtlpSpan
from harness.telemetry.otlp_map import AgentInstant, TurnFact, span_event_instants

ADAPTERS = {"pipecat": otlp_pipecat, "livekit": otlp_livekit, "genai": otlp_genai}


def detect(trace: list[OtlpSpan]) -> str:
    """pipecat | livekit | genai — by the instrumentation scope and the span names each framework uses."""
    names = {s.name for s in trace}
    scopes = {s.scope for s in trace}
    if any(sc.startswith("pipecat") for sc in scopes) or ("turn" in names and any(
            "turn.number" in s.attributes for s in trace)):
        return "pipecat"
    if names & {"agent_session", "agent_turn", "user_turn", "agent_speaking"} or any(
            sc.startswith("livekit") for sc in scopes):
        return "livekit"
    return "genai"


def map_trace(trace: list[OtlpSpan]) -> tuple[str, list[AgentInstant], list[TurnFact]]:
    kind = detect(trace)
    adapter = ADAPTERS[kind]
    instants, facts = adapter.read(trace)
    return kind, instants + span_event_instants(trace, kind), facts
