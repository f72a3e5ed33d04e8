"""Agent spans → vlh events: the shared types and which adapter reads which trace.

An adapter (otlp_pipecat.py, otlp_livekit.py, otlp_genai.py) reads one trace (the spans of one conversation) and
returns `AgentInstant`s — a vlh event name at an instant in epoch ns on the agent's wall clock — and `TurnFact`s
(the framework's own voice-to-voice figure per turn). Each adapter keeps its rules in a small `TABLE` of
(span, what is read, vlh event), printed in docs/opentelemetry.md. Placing the instants on the host clock is
otlp_clock.py's job; assigning them to vlh's turns is the runner's (by time window, as for every event).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from harness.telemetry.events import EVENT_NAMES
from harness.telemetry.otlp_decode import OtlpSpan


@dataclass
class AgentInstant:
    name: str  # a vlh event name (events.EVENT_NAMES)
    t_ns: int  # epoch ns, agent wall clock
    origin: str  # otlp:<framework>:<span>
    turn_number: int | None = None  # the agent's own turn number, when it gives one
    raw: dict = field(default_factory=dict)


@dataclass
class TurnFact:
    """The framework's own voice-to-voice latency of one turn, placed at `t_ns` (the instant it ends at)."""

    framework: str
    v2v_ms: float
    t_ns: int
    turn_number: int | None = None
    origin: str = ""


def by_trace(spans: list[OtlpSpan]) -> dict[str, list[OtlpSpan]]:
    """Spans grouped per conversation: by trace id, traces that share a `conversation.id` merged."""
    groups: dict[str, list[OtlpSpan]] = defaultdict(list)
    conv_of_trace: dict[str, str] = {}
    for s in spans:
        cid = s.attributes.get("conversation.id")
        if isinstance(cid, str) and cid:
            conv_of_trace.setdefault(s.trace_id, f"conversation:{cid}")
    for s in spans:
        groups[conv_of_trace.get(s.trace_id, s.trace_id)].append(s)
    return dict(groups)


def children(trace: list[OtlpSpan]) -> dict[str, list[OtlpSpan]]:
    out: dict[str, list[OtlpSpan]] = defaultdict(list)
    for s in trace:
        out[s.parent_id].append(s)
    for v in out.values():
        v.sort(key=lambda s: s.start_ns)
    return out


def seconds_ns(v: float | None) -> int | None:
    return None if v is None else int(round(v * 1e9))


def span_event_instants(trace: list[OtlpSpan], framework: str) -> list[AgentInstant]:
    """Any span event named as a vlh event (`tts_first_audio` or `vlh.tts_first_audio`) is that event."""
    out = []
    for s in trace:
        for name, t_ns, attrs in s.events:
            base = name[4:] if name.startswith("vlh.") else name
            if base in EVENT_NAMES:
                turn = attrs.get("turn") if isinstance(attrs.get("turn"), int) else None
                out.append(AgentInstant(base, t_ns, f"otlp:{framework}:{s.name}:event", turn, {"span": s.name}))
    return out
