"""The agent's OTLP spans, matched to vlh's calls and merged into each call's telemetry on the host clock.

`OtlpIntake` wraps the run's receiver. When a call ends, `claim()` picks the conversations (traces; traces that
share a `conversation.id` are one) that belong to it: one whose `conversation.id` is the call's WebRTC id, else
those whose agent-side speech-end instants fall nearest this call's utterance ends (within 1.5 s, placed with the
host wall clock) and that no other call took. Concurrent calls whose utterances end at the same instants cannot be
told apart this way: give the agent's conversation id the call's id (SmallWebRTC pc_id) for those.

`OtlpCallTelemetry` is the call's own telemetry (RTVI/vlh data channel, or the loopback file) plus the adapters'
instants as `reconciled` events; measure_call reads it like any TelemetryLog. Its `settle()` checks the clock
against what vlh measured (otlp_clock.causal_bounds) and re-places the instants when the agent's clock is off.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace

from harness.telemetry.events import Event
from harness.telemetry.otlp_clock import Bounds, HostWallClock, causal_bounds
from harness.telemetry.otlp_decode import OtlpSpan
from harness.telemetry.otlp_adapters import map_trace
from harness.telemetry.otlp_map import AgentInstant, TurnFact, by_trace

MATCH_S = 1.5


class OtlpIntake:
    def __init__(self, receiver):
        self.receiver = receiver
        self.claimed: set[str] = set()
        self.frameworks: set[str] = set()
        self.calls: list[dict] = []  # per call: clock, matching (run.json "otlp")
        self._lock = threading.Lock()

    def clock(self) -> HostWallClock:
        return HostWallClock(self.receiver.clock_pairs)

    def claim(self, t_from: float, t_to: float, utterance_ends: list[float], call_id: str | None):
        """The conversations of one call (host-monotonic window t_from…t_to): [(key, framework, instants, facts)]."""
        clock = self.clock()
        out = []
        with self._lock:
            groups = by_trace(self.receiver.spans())
            for key, trace in sorted(groups.items()):
                if key in self.claimed:
                    continue
                cid = next((s.attributes.get("conversation.id") for s in trace
                            if isinstance(s.attributes.get("conversation.id"), str)), None)
                kind, instants, facts = map_trace(trace)
                if call_id and cid == call_id:
                    score = 0.0
                else:
                    lo, hi = _extent(trace, clock)
                    if hi < t_from or lo > t_to:
                        continue
                    score = _score(instants, clock, utterance_ends)
                    if score is None and not instants:
                        continue  # a trace with nothing vlh can use (e.g. set-up spans)
                    if score is not None and score > MATCH_S:
                        continue
                self.claimed.add(key)
                self.frameworks.add(kind)
                out.append((key, kind, instants, facts))
        return out


def _extent(trace: list[OtlpSpan], clock: HostWallClock) -> tuple[float, float]:
    return clock.to_mono(min(s.start_ns for s in trace)), clock.to_mono(max(s.end_ns for s in trace))


def _score(instants: list[AgentInstant], clock: HostWallClock, ends: list[float]) -> float | None:
    """Median distance from the agent's speech-end (else first) instants to the nearest utterance end."""
    marks = [i for i in instants if i.name in ("user_vad_end", "user_speech_end_detected")] or instants
    if not marks or not ends:
        return None
    d = sorted(min(abs(clock.to_mono(i.t_ns) - e) for e in ends) for i in marks)
    return d[len(d) // 2]


NEAR_S = 0.05


def align_arrivals(own: list[Event], stamped: list[Event]) -> list[Event]:
    """The call's arrival-only (`estimated`: RTVI) instants that OTLP does not stamp, moved back by the transit of
    the agent's message sent just before or after them: a message OTLP also stamps (same name), within NEAR_S,
    transit = its arrival − its stamp. Messages sent back to back on one data channel travel alike; unmoved, an
    arrival time is late by that transit (pipecat: RTVI `user-stopped-speaking` arrives ~3 ms after the `llm`
    span's start though pipecat sends it first). Stays `estimated`; moved events keep `raw['transit_ms']`."""
    names = {e.name for e in stamped}
    transits = []  # (arrival, transit) of messages both report
    for e in own:
        if e.source != "estimated" or e.name not in names or e.t_host is None:
            continue
        cands = [s.t_host for s in stamped if s.name == e.name and 0 <= e.t_host - s.t_host <= 0.5]
        if cands:
            transits.append((e.t_host, e.t_host - max(cands)))
    out = []
    for e in own:
        if e.source == "estimated" and e.name not in names and e.t_host is not None and transits:
            at, d = min(transits, key=lambda p: abs(p[0] - e.t_host))
            if abs(at - e.t_host) <= NEAR_S:
                e = replace(e, t_host=e.t_host - d, raw={**e.raw, "transit_ms": round(d * 1e3, 3)})
        out.append(e)
    return out


class OtlpCallTelemetry:
    """A call's telemetry (may be None) + the agent's OTLP instants, reconciled onto the host clock."""

    def __init__(self, inner, convs: list, clock: HostWallClock, same_host: bool):
        self.inner = inner
        self.convs = convs
        self.clock = clock
        self.same_host = same_host
        self.shift_s = 0.0  # extra agent-minus-host offset found by causality (settle)
        self.bounds: Bounds | None = None
        self.method = "host wall clock (same host)" if same_host else "wall clocks assumed in sync (remote agent)"
        self.anomalies_otlp: list[str] = []
        self.events: list[Event] = []
        self.durations = list(getattr(inner, "durations", []) or [])
        self.pings = getattr(inner, "pings", [])
        self.counts = getattr(inner, "counts", {}) if inner is not None else {}
        self.fit = None
        self._uncertainty = self._base_uncertainty()

    @property
    def anomalies(self) -> list[str]:
        return list(getattr(self.inner, "anomalies", []) or []) + self.anomalies_otlp

    @property
    def instants(self) -> list[AgentInstant]:
        return [i for _, _, inst, _ in self.convs for i in inst]

    @property
    def facts(self) -> list[TurnFact]:
        return [f for _, _, _, facts in self.convs for f in facts]

    def _base_uncertainty(self) -> float:
        slews = [self.clock.slew_s(i.t_ns) for i in self.instants] or [0.0]
        return max(slews) / 2 + 1e-5  # + the pairs' read (µs) and ns rounding

    def to_host(self, t_ns: int) -> float:
        return self.clock.to_mono(t_ns) - self.shift_s

    def reconcile(self):
        """measure_call's entry: the inner telemetry as it reconciles itself, plus the OTLP instants."""
        self.fit = self.inner.reconcile() if self.inner is not None else None
        own = list(self.inner.events) if self.inner is not None else []
        stamped = [Event(i.name, self.to_host(i.t_ns), turn_hint=i.turn_number, origin=i.origin,
                         t_host=self.to_host(i.t_ns), uncertainty_s=self._uncertainty,
                         source="reconciled", raw=i.raw) for i in self.instants]
        self.events = align_arrivals(own, stamped) + stamped
        return self.fit

    def settle(self, rows: list[dict], events: list[dict]) -> bool:
        """Check the placement against the ear; True when the instants were moved (measure again)."""
        b = causal_bounds(rows, events)
        self.bounds = b
        slack = self._uncertainty
        if b.contains(0.0, slack) or (b.n_lower == 0 and b.n_upper == 0):
            if not self.same_host and math.isfinite(b.lower_s) and math.isfinite(b.upper_s):
                self._uncertainty = max(self._uncertainty, -b.lower_s, b.upper_s)
            return False
        if b.lower_s > b.upper_s:
            self.anomalies_otlp.append(
                f"OTLP: the agent's spans contradict the ear whatever its clock (first audio sent ≥ "
                f"{b.lower_s * 1e3:.1f} ms after it arrived vs ≤ {b.upper_s * 1e3:.1f} ms): placed by its wall clock")
            return False
        if math.isfinite(b.lower_s) and math.isfinite(b.upper_s):
            x, unc = (b.lower_s + b.upper_s) / 2, (b.upper_s - b.lower_s) / 2
        else:
            x = b.lower_s if math.isfinite(b.lower_s) else b.upper_s
            unc = abs(x)
        self.shift_s, self._uncertainty = x, max(unc, self._uncertainty)
        self.method = "causality bounds (the agent's wall clock is off)"
        self.anomalies_otlp.append(
            f"OTLP: the agent's wall clock is off by {x * 1e3:+.1f} ms against the host's (from what the ear "
            f"measured: between {b.lower_s * 1e3:+.1f} and {b.upper_s * 1e3:+.1f} ms); its instants are placed "
            f"±{unc * 1e3:.1f} ms")
        return True

    def annotate(self, rows: list[dict], windows: list[tuple[float, float]]) -> None:
        """framework_v2v_ms per turn: the first fact whose instant falls in the turn's window."""
        for r, (lo, hi) in zip(rows, windows):
            for f in sorted(self.facts, key=lambda f: f.t_ns):
                if lo <= self.to_host(f.t_ns) < hi:
                    r["framework_v2v_ms"] = f.v2v_ms
                    break

    def summary(self) -> dict:
        return {"conversations": [k for k, _, _, _ in self.convs],
                "frameworks": sorted({kind for _, kind, _, _ in self.convs}),
                "instants": len(self.instants), "method": self.method,
                "offset_ms": round(self.shift_s * 1e3, 3), "uncertainty_ms": round(self._uncertainty * 1e3, 3),
                "bounds": self.bounds.as_dict() if self.bounds else None}
