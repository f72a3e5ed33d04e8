"""Any agent's spans by the OpenTelemetry GenAI semantic conventions → vlh events (the generic mapping).

GenAI client spans (semantic-conventions gen-ai-spans.md) cover one call to a model "starting when it is initiated";
`gen_ai.operation.name` says what kind; `gen_ai.response.time_to_first_chunk` (seconds, experimental) is the time
from the request to the first chunk of a streaming response. vlh reads a text-generation span as the LLM request
and, with that attribute, its first token; a span whose `gen_ai.output.type` is `speech` as the TTS request.
A custom agent can also name an instant outright: a span event called like a vlh event (`tts_first_audio` or
`vlh.tts_first_audio`, otlp_map.span_event_instants) is that event.
"""

from __future__ import annotations

from harness.telemetry.otlp_decode import OtlpSpan
from harness.telemetry.otlp_map import AgentInstant, TurnFact, seconds_ns

FRAMEWORK = "genai"
LLM_OPERATIONS = ("chat", "text_completion", "generate_content")
TABLE = [
    ("gen_ai.operation.name ∈ chat, text_completion, generate_content", "start", "llm_request"),
    ("(same span)", "start + gen_ai.response.time_to_first_chunk", "llm_first_token"),
    ("gen_ai.output.type = speech", "start", "tts_request"),
    ("any span event named <vlh event> or vlh.<vlh event>", "event time", "that event"),
]


def read(trace: list[OtlpSpan]) -> tuple[list[AgentInstant], list[TurnFact]]:
    out: list[AgentInstant] = []
    for s in sorted(trace, key=lambda s: s.start_ns):
        op = s.attributes.get("gen_ai.operation.name")
        if s.attributes.get("gen_ai.output.type") == "speech":
            out.append(AgentInstant("tts_request", s.start_ns, f"otlp:{FRAMEWORK}:{s.name}", None,
                                    {"span": s.name, "read": "start"}))
        elif op in LLM_OPERATIONS:
            out.append(AgentInstant("llm_request", s.start_ns, f"otlp:{FRAMEWORK}:{s.name}", None,
                                    {"span": s.name, "read": "start"}))
            ttfc = seconds_ns(s.number("gen_ai.response.time_to_first_chunk"))
            if ttfc is not None:
                out.append(AgentInstant("llm_first_token", s.start_ns + ttfc, f"otlp:{FRAMEWORK}:{s.name}", None,
                                        {"span": s.name, "read": "start + gen_ai.response.time_to_first_chunk"}))
    return out, []
