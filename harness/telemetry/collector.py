"""Collects one call's data-channel messages with their arrival instants, then reconciles them onto the host clock."""

from __future__ import annotations

import json
from collections import Counter

from harness.telemetry import rtvi, vlh
from harness.telemetry.clock import ClockFit, PingLog, PingSample, fit_clock
from harness.telemetry.events import Duration, Event
from harness.telemetry.spill import RawSpill

# How late an arrival stamp can be without a trace: the harness's loop monitor (transports/webrtc/client.py
# LoopMonitor) records every event-loop lag above this, so a message callback delayed by less goes unrecorded.
ARRIVAL_STAMP_S = 0.004


class TelemetryLog:
    def __init__(self, processor_map: dict[str, str] | None = None):
        self.processor_map = processor_map or {}
        self.events: list[Event] = []
        self.durations: list[Duration] = []
        self.pings = PingLog()  # compact columns: the clock fit uses every exchange of the call
        self.pending: dict[int, float] = {}
        self.counts: Counter = Counter()
        self._next_id = 0
        self.fit: ClockFit | None = None
        self.anomalies: list[str] = []
        self.raw_spill = RawSpill()  # each event's message text, on disk (read back by `ev.raw`)

    def make_ping(self, t0: float) -> str:
        self._next_id += 1
        self.pending[self._next_id] = t0
        if len(self.pending) > 256:  # forget pings that never came back
            for k in sorted(self.pending)[:-256]:
                self.pending.pop(k)
        return json.dumps(vlh.ping(self._next_id, t0))

    def feed(self, message, arrival: float) -> None:
        self.counts["messages"] += 1
        if isinstance(message, bytes):
            self.counts["unparsed"] += 1
            return
        if message.startswith("ping") or message.startswith("pong"):  # pipecat keep-alives
            self.counts["keepalive"] += 1
            return
        try:
            msg = json.loads(message)
        except ValueError:
            self.counts["unparsed"] += 1
            return
        if not isinstance(msg, dict):
            self.counts["unparsed"] += 1
            return
        if rtvi.is_rtvi(msg):
            items, ok = rtvi.parse(msg, arrival, self.processor_map)
            self.counts["rtvi"] += 1
        elif str(msg.get("type", "")).startswith("vlh."):
            items, ok = vlh.parse(msg, arrival, self.pending)
            self.counts["vlh"] += 1
        else:
            items, ok = [], False
        if not ok:
            self.counts["unparsed"] += 1
        spilled = None
        for it in items:
            if isinstance(it, Event):
                if it.raw is msg:  # keep the message on disk, not its parsed dict in RAM
                    spilled = spilled or self.raw_spill.put(message)
                    it.raw = spilled
                self.events.append(it)
            elif isinstance(it, Duration):
                self.durations.append(it)
            elif isinstance(it, PingSample):
                self.pings.append(it)

    def reconcile(self) -> ClockFit | None:
        """Place every event on the host clock. Stamped events: through the ping/pong clock fit ('reconciled'), with
        the fit's uncertainty. Arrival-only events (RTVI): arrival − one-way delay (RTT/2), 'estimated', with
        uncertainty = one-way delay (the message took between 0 and a round trip to arrive) + ARRIVAL_STAMP_S (the
        arrival stamp's own lateness). Without a fit (pipecat answers no vlh.ping) the one-way delay is unknown:
        the event sits at its arrival and only the stamp term is counted; the unknown delay is common to every
        message of the call's ordered data channel, so it shifts them together and does not change their order."""
        self.fit = fit = fit_clock(self.pings)
        one_way = fit.one_way_s if fit else 0.0
        for ev in self.events:
            if ev.agent_t is not None and fit is not None:
                ev.t_host = fit.to_host(ev.agent_t)
                ev.uncertainty_s = fit.uncertainty_s
                ev.source = "reconciled"
                # an event cannot have happened after its message arrived
                late = ev.t_host - ev.arrival
                if late > fit.uncertainty_s + 1e-4:
                    self.anomalies.append(
                        f"{ev.name}: stamped {late * 1e3:.1f} ms after its message arrived (clock uncertainty "
                        f"{fit.uncertainty_s * 1e3:.1f} ms)")
            else:
                ev.t_host = ev.arrival - one_way
                ev.uncertainty_s = one_way + ARRIVAL_STAMP_S
                ev.source = "estimated"
        if fit is None and any(ev.agent_t is not None for ev in self.events):
            self.anomalies.append("agent sent stamped events but never answered vlh.ping: placed by arrival")
        return fit
