"""Ear timestamps + telemetry → the stages of one turn, summing exactly to the ear TTFA (design.md §4).

The pipeline's boundaries, in order, on the host clock:

    user_speech_end ─endpointing─▶ user_speech_end_detected ─stt─▶ stt_final ─llm_dispatch─▶ llm_request
    ─llm_ttft─▶ llm_first_token ─reasoning─▶ llm_first_visible_token ─aggregation─▶ tts_request
    ─tts_ttfb─▶ tts_first_audio ─agent_output─▶ audio_first_sent ─transport─▶ first_audio_arrival
    ─jitter_buffer─▶ first_audio_playout ─codec─▶ (+ Opus delay) ─playout─▶ agent_audio_start

Rules: a stage between two known boundaries is that boundary pair's difference. A missing boundary merges its two
neighbours into one span that names the stages it covers. Inside such a span, durations the agent reported (RTVI
`metrics.ttfb`: STT, LLM, TTS) are placed as `estimated` stages; the rest of the span is `residual` (what no stage
explains; negative = the durations do not fit, flagged). A span with nothing to place stays `unattributed`.
Spans always sum to agent_audio_start − user_speech_end exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.telemetry.events import EVENT_NAMES

BOUNDARIES = ("user_speech_end",) + EVENT_NAMES + (
    "first_audio_arrival",
    "first_audio_playout",
    "first_audio_decoded",
    "agent_audio_start",
)
STAGES = (
    "endpointing",
    "stt",
    "llm_dispatch",
    "llm_ttft",
    "reasoning",
    "aggregation",
    "tts_ttfb",
    "agent_output",
    "transport",
    "jitter_buffer",
    "codec",
    "playout",
)
SOURCE_RANK = {"measured": 0, "reconciled": 1, "estimated": 2}


@dataclass
class Boundary:
    t: float  # host monotonic seconds
    source: str  # measured | reconciled | estimated
    uncertainty_s: float = 0.0


@dataclass
class Span:
    name: str
    start: float
    ms: float
    source: str
    covers: list[str]
    kind: str = "stage"  # stage | unattributed | residual

    def as_dict(self) -> dict:
        return {"name": self.name, "start_mono": self.start, "ms": round(self.ms, 3), "source": self.source,
                "covers": self.covers, "kind": self.kind}


@dataclass
class Attribution:
    ttfa_ms: float
    spans: list[Span]
    stage_ms: dict[str, float | None]
    stage_source: dict[str, str]
    unattributed_ms: float
    residual_ms: float
    anomalies: list[str] = field(default_factory=list)

    def columns(self) -> dict:
        out = {"ttfa_ms": self.ttfa_ms}
        for s in STAGES:
            out[f"{s}_ms"] = self.stage_ms.get(s)
            out[f"{s}_source"] = self.stage_source.get(s, "missing")
        out["unattributed_ms"] = self.unattributed_ms
        out["residual_ms"] = self.residual_ms
        return out


def _weakest(*sources: str) -> str:
    return max(sources, key=lambda s: SOURCE_RANK.get(s, 3))


def derive_from_durations(b: dict[str, Boundary], durations: dict[str, float]) -> None:
    """A reported duration pins its end boundary when its start boundary is known and the end is not."""
    for stage, start, end in (("stt", "user_speech_end_detected", "stt_final"),
                              ("llm_ttft", "llm_request", "llm_first_token"),
                              ("tts_ttfb", "tts_request", "tts_first_audio")):
        if stage in durations and start in b and end not in b:
            s = b[start]
            b[end] = Boundary(s.t + durations[stage], "estimated", s.uncertainty_s)


def attribute(boundaries: dict[str, Boundary], durations: dict[str, float] | None = None) -> Attribution:
    """`boundaries` must hold user_speech_end and agent_audio_start; any other may be missing.
    `durations`: stage → seconds, as reported by the agent (used only where boundaries are missing)."""
    durations = dict(durations or {})
    b = dict(boundaries)
    derive_from_durations(b, durations)
    t0, t1 = b["user_speech_end"].t, b["agent_audio_start"].t
    ttfa_ms = (t1 - t0) * 1e3
    known = [i for i, name in enumerate(BOUNDARIES) if name in b]
    spans: list[Span] = []
    stage_ms: dict[str, float | None] = {s: None for s in STAGES}
    stage_src: dict[str, str] = {s: "missing" for s in STAGES}
    anomalies: list[str] = []
    unattributed = residual = 0.0
    for i, j in zip(known, known[1:]):
        bi, bj = b[BOUNDARIES[i]], b[BOUNDARIES[j]]
        ms = (bj.t - bi.t) * 1e3
        covers = list(STAGES[i:j])
        src = _weakest(bi.source, bj.source)
        unc_ms = (bi.uncertainty_s + bj.uncertainty_s) * 1e3
        if ms < -unc_ms - 0.5:
            anomalies.append(f"{BOUNDARIES[j]} comes {-ms:.1f} ms before {BOUNDARIES[i]} "
                             f"(beyond the {unc_ms:.1f} ms uncertainty)")
        if len(covers) == 1:
            stage = covers[0]
            spans.append(Span(stage, bi.t, ms, src, covers))
            stage_ms[stage], stage_src[stage] = ms, src
            continue
        placed = [(s, durations[s] * 1e3) for s in covers if s in durations]
        start = bi.t
        if placed:
            for s, d in placed:
                spans.append(Span(s, start, d, "estimated", [s]))
                stage_ms[s], stage_src[s] = d, "estimated"
                start += d / 1e3
            rest = ms - sum(d for _, d in placed)
            rest_covers = [s for s in covers if s not in durations]
            spans.append(Span("residual", start, rest, src, rest_covers, kind="residual"))
            residual += rest
            if rest < -unc_ms - 0.5:
                anomalies.append(f"reported durations ({', '.join(s for s, _ in placed)}) exceed the "
                                 f"{ms:.1f} ms between {BOUNDARIES[i]} and {BOUNDARIES[j]}")
        else:
            name = f"{covers[0]}…{covers[-1]} (unattributed)"
            spans.append(Span(name, bi.t, ms, src, covers, kind="unattributed"))
            unattributed += ms
    return Attribution(ttfa_ms, spans, stage_ms, stage_src, unattributed, residual, anomalies)
