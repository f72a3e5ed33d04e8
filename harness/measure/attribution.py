"""Ear timestamps + telemetry → the stages of one turn, summing exactly to the ear TTFA (design.md §4).

The pipeline's boundaries, on the host clock (the critical path: what the reply waited for):

    user_speech_end ─endpointing─▶ user_vad_end ─┬─stt──────────▶ stt_final ─────────────────┐
                                                 └─turn_detection─▶ user_speech_end_detected ─┴─llm_dispatch─▶
    llm_request ─llm_ttft─▶ llm_first_token ─reasoning─▶ llm_first_visible_token ─aggregation─▶ tts_request
    ─tts_ttfb─▶ tts_first_audio ─agent_output─▶ audio_first_sent ─transport─▶ first_audio_arrival
    ─jitter_buffer─▶ first_audio_playout ─codec─▶ (+ Opus delay) ─playout─▶ agent_audio_start

Parallel stages: STT and turn detection both start at the agent's VAD end. The one that finishes first is placed
from the VAD end to its end; the other from there to its own end, and the part of it that ran beside the first is
reported as `overlapped_ms` (with `overlapped_stage`), which is not summed (pipecat's UserBotLatencyObserver tiles
the same way: transcription, then turn detection). No VAD end known (pipecat without `vad-user-*` RTVI messages):
it is estimated as stt_final − the STT's reported duration (pipecat's STT TTFB runs from the VAD stop); failing
that, when no transcript came before the turn end, the VAD end is taken as the turn end, so turn_detection is 0 and
endpointing holds the agent's whole end-of-turn wait (the reference agent's case: it reports one end-of-speech
instant, its VAD end with its hangover); a transcript before the turn end with no STT duration leaves the VAD end
unknown (endpointing…stt merged, turn_detection from the transcript). `vad_end_basis` says which (VAD_END_BASES).

Rules: a stage between two known boundaries is that boundary pair's difference. A missing boundary merges its two
neighbours into one span that names the stages it covers. Inside such a span, durations the agent reported (RTVI
`metrics.ttfb`: STT, LLM, TTS) are placed as `estimated` stages; the rest of the span is `residual` (what no stage
explains; negative = the durations do not fit, flagged). A span with nothing to place stays `unattributed`.
Every boundary carries an uncertainty (`Boundary.uncertainty_s`, from how it was derived: the clock fit for a
stamped event; the one-way delay and the arrival stamp's lateness for an arrival-only RTVI event, see
telemetry/collector.py; a boundary pinned by a reported duration inherits its start's). A boundary that comes
before the one kept before it on the path (or after agent_audio_start) by no more than their joint uncertainty is
coincident with it: it is placed at that instant, a zero-length stage, no anomaly (e.g. pipecat's first text
arriving 0.6 ms before request + LLM ttfb). Beyond that, the ordering cannot be true: the boundary is left off
the path (its stage merges with the next, as if missing) and reported as an anomaly, so no span is ever negative.
Spans always sum to agent_audio_start − user_speech_end exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.results.schema import EVENT_NAMES, STAGES as _SCHEMA_STAGES

BOUNDARIES = ("user_speech_end",) + tuple(EVENT_NAMES) + (
    "first_audio_arrival",
    "first_audio_playout",
    "first_audio_decoded",
    "agent_audio_start",
)
STAGES = tuple(_SCHEMA_STAGES)
# The stage that ends at each boundary, in path order; stt and turn_detection are reordered per turn.
_PATH = (
    ("user_vad_end", "endpointing"),
    ("stt_final", "stt"),
    ("user_speech_end_detected", "turn_detection"),
    ("llm_request", "llm_dispatch"),
    ("llm_first_token", "llm_ttft"),
    ("llm_first_visible_token", "reasoning"),
    ("tts_request", "aggregation"),
    ("tts_first_audio", "tts_ttfb"),
    ("audio_first_sent", "agent_output"),
    ("first_audio_arrival", "transport"),
    ("first_audio_playout", "jitter_buffer"),
    ("first_audio_decoded", "codec"),
    ("agent_audio_start", "playout"),
)
SOURCE_RANK = {"measured": 0, "reconciled": 1, "estimated": 2}
EPS_MS = 0.5  # float slack on top of the boundaries' own uncertainty (sub-sample rounding)


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
    overlapped_stage: str | None = None  # the parallel stage placed second on the path
    overlapped_ms: float | None = None  # how long it ran beside the first (not part of the sum)
    vad_end_basis: str | None = None  # how the agent's VAD end was found (VAD_END_BASES); None: no turn end either

    def columns(self) -> dict:
        out = {"ttfa_ms": self.ttfa_ms}
        for s in STAGES:
            out[f"{s}_ms"] = self.stage_ms.get(s)
            out[f"{s}_source"] = self.stage_source.get(s, "missing")
        out["unattributed_ms"] = self.unattributed_ms
        out["residual_ms"] = self.residual_ms
        out["overlapped_stage"] = self.overlapped_stage
        out["overlapped_ms"] = self.overlapped_ms
        out["vad_end_basis"] = self.vad_end_basis
        return out


def _weakest(*sources: str) -> str:
    return max(sources, key=lambda s: SOURCE_RANK.get(s, 3))


# How the agent's VAD end (the start of stt and turn_detection) was found; the `vad_end_basis` column.
VAD_END_BASES = {
    "reported": "the agent reported it (RTVI vad-user-stopped-speaking, vlh event user_vad_end)",
    "stt_ttfb": "estimated: the final transcript minus the STT's reported ttfb (which runs from the VAD stop)",
    "turn_end": "taken at the turn end (no VAD end, no STT duration, no transcript before the turn end): "
                "turn_detection is 0 and endpointing holds the whole end-of-turn wait",
    "unknown": "not known (no VAD end, no STT duration, the transcript came before the turn end): endpointing and "
               "stt merge into one span up to the transcript; turn_detection runs from the transcript",
}


def derive_from_durations(b: dict[str, Boundary], durations: dict[str, float]) -> str | None:
    """A reported duration pins its end boundary when its start boundary is known and the end is not. The VAD end,
    when not reported, is pinned back from the final transcript by the STT's duration, else set at the turn end
    when nothing says it came earlier (turn_detection 0). Returns how the VAD end was found (VAD_END_BASES)."""
    basis = "reported" if "user_vad_end" in b else None
    if basis is None:
        stt, turn = b.get("stt_final"), b.get("user_speech_end_detected")
        if "stt" in durations and stt is not None:
            b["user_vad_end"] = Boundary(stt.t - durations["stt"], "estimated", stt.uncertainty_s)
            basis = "stt_ttfb"
        elif turn is not None and (stt is None or stt.t >= turn.t - turn.uncertainty_s - stt.uncertainty_s):
            # one end-of-speech instant (vlh's reference agent: its VAD end, hangover included, then the transcript)
            b["user_vad_end"] = Boundary(turn.t, turn.source, turn.uncertainty_s)
            basis = "turn_end"
        elif turn is not None:
            basis = "unknown"  # a transcript before the turn end: the VAD end was earlier, by an unknown amount
    for stage, start, end in (("stt", "user_vad_end", "stt_final"),
                              ("llm_ttft", "llm_request", "llm_first_token"),
                              ("tts_ttfb", "tts_request", "tts_first_audio")):
        if stage in durations and start in b and end not in b:
            s = b[start]
            b[end] = Boundary(s.t + durations[stage], "estimated", s.uncertainty_s)
    return basis


def path(b: dict[str, Boundary]) -> list[tuple[str, str]]:
    """(boundary, the stage that ends at it) in critical-path order for this turn: of stt and turn_detection, the
    one that finished first comes first (pipecat: the transcript, then the turn stop; the reference agent: its
    end of speech, then the transcript); a missing one comes second."""
    p = list(_PATH)
    stt, turn = "stt_final", "user_speech_end_detected"
    if (turn in b and stt not in b) or (stt in b and turn in b and b[turn].t < b[stt].t):
        p[1], p[2] = p[2], p[1]  # a missing one goes second: it merges with the span after the known one
    return p


def attribute(boundaries: dict[str, Boundary], durations: dict[str, float] | None = None) -> Attribution:
    """`boundaries` must hold user_speech_end and agent_audio_start; any other may be missing.
    `durations`: stage → seconds, as reported by the agent (used only where boundaries are missing)."""
    durations = dict(durations or {})
    b = dict(boundaries)
    vad_end_basis = derive_from_durations(b, durations)
    t0, t1 = b["user_speech_end"].t, b["agent_audio_start"].t
    ttfa_ms = (t1 - t0) * 1e3
    order = path(b)
    stage_ms: dict[str, float | None] = {s: None for s in STAGES}
    stage_src: dict[str, str] = {s: "missing" for s in STAGES}
    anomalies: list[str] = []
    # the known boundaries on the path; one earlier than the last kept is an impossible ordering: left off
    kept: list[tuple[int, str]] = [(-1, "user_speech_end")]
    for i, (name, _stage) in enumerate(order):
        if name not in b:
            continue
        prev = b[kept[-1][1]]
        bj = b[name]
        if name != "agent_audio_start" and (bj.t < prev.t or bj.t > t1):
            if bj.t < prev.t:
                off_ms, rel, where, at = (prev.t - bj.t) * 1e3, "before", kept[-1][1], prev
            else:
                off_ms, rel, where, at = (bj.t - t1) * 1e3, "after", "agent_audio_start", b["agent_audio_start"]
            unc_ms = (at.uncertainty_s + bj.uncertainty_s) * 1e3
            if off_ms > unc_ms + EPS_MS:
                anomalies.append(f"{name} comes {off_ms:.1f} ms {rel} {where} (beyond the {unc_ms:.1f} ms "
                                 f"uncertainty); left off the stage path")
                continue
            # inside the joint uncertainty the two instants are indistinguishable: coincident, a zero-length stage
            b[name] = bj = Boundary(at.t, _weakest(bj.source, at.source), max(bj.uncertainty_s, at.uncertainty_s))
        kept.append((i, name))
    spans: list[Span] = []
    unattributed = residual = 0.0
    for (i, ni), (j, nj) in zip(kept, kept[1:]):
        bi, bj = b[ni], b[nj]
        ms = (bj.t - bi.t) * 1e3
        covers = [stage for _, stage in order[i + 1:j + 1]]
        src = _weakest(bi.source, bj.source)
        unc_ms = (bi.uncertainty_s + bj.uncertainty_s) * 1e3
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
                                 f"{ms:.1f} ms between {ni} and {nj}")
        else:
            name = f"{covers[0]}…{covers[-1]} (unattributed)"
            spans.append(Span(name, bi.t, ms, src, covers, kind="unattributed"))
            unattributed += ms
    overlapped_stage = overlapped_ms = None
    second = order[2]
    if "user_vad_end" in b and order[1][0] in b and second[0] in b \
            and stage_ms.get(second[1]) is not None and stage_ms.get(order[1][1]) is not None:
        overlapped_stage, overlapped_ms = second[1], (b[order[1][0]].t - b["user_vad_end"].t) * 1e3
    return Attribution(ttfa_ms, spans, stage_ms, stage_src, unattributed, residual, anomalies,
                       overlapped_stage, overlapped_ms, vad_end_basis)
