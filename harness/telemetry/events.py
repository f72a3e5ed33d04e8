"""What telemetry turns into: events (instants) and durations, in vlh's own vocabulary (design.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field

# The pipeline's boundaries, in order (design.md §4); one list, in the result schema. Adapters map onto these names.
from harness.results.schema import EVENT_NAMES  # noqa: E402,F401

# Durations an agent may report without a clock (RTVI metrics.ttfb): the stage each one measures.
DURATION_STAGES = ("stt", "llm_ttft", "reasoning", "tts_ttfb")


@dataclass(slots=True)
class Event:
    name: str
    arrival: float  # host monotonic instant the message arrived
    agent_t: float | None = None  # the agent's own stamp (its telemetry clock), when given
    turn_hint: int | None = None  # the agent's turn number, when given
    origin: str = "vlh"  # vlh | rtvi:<type>
    # filled in by reconciliation:
    t_host: float | None = None
    uncertainty_s: float = 0.0
    source: str = "missing"  # reconciled | estimated
    raw: dict = field(default_factory=dict)  # the message it came from (a SpilledRaw mapping, read from disk)


@dataclass(slots=True)
class Duration:
    stage: str  # one of DURATION_STAGES
    value_s: float
    arrival: float
    processor: str = ""
    origin: str = "rtvi:metrics"
