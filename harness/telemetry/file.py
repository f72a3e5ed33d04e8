"""Telemetry from a file on the same host (the loopback path: `vlh agent --audio-in … --telemetry-file F`).

The file holds one JSON message a line — the same vlh events and RTVI messages an agent sends on a WebRTC data
channel — each with `"_t_host"`, the host-monotonic instant it was written (its "arrival"). A first line
`{"type": "vlh.telemetry_file", "clock": "host-monotonic" | …}` may describe the file.

There is no ping/pong on a file: the agent and the harness share the host's `time.monotonic()`, so a vlh event's
`t` *is* a host instant. Those events are placed at `t` exactly, through an identity clock fit (offset 0, drift 0,
uncertainty 0), and marked `reconciled` — they are the agent's own claims, put on the host clock, not instants vlh
measured itself (`measured` is kept for what vlh finds in the sound). RTVI messages carry no instant: they are
placed at their `_t_host` (one-way delay 0), `estimated` as on WebRTC. An agent whose file says its clock is not
the host's (an injected skew) is flagged as an anomaly: nothing can reconcile it.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import VlhError
from harness.telemetry.clock import ClockFit
from harness.telemetry.collector import TelemetryLog

HOST_CLOCK = "host-monotonic"


class FileTelemetry(TelemetryLog):
    def __init__(self, processor_map: dict[str, str] | None = None):
        super().__init__(processor_map)
        self.header: dict | None = None

    def load(self, path: str | Path, t_from: float | None = None, t_to: float | None = None,
             call: str | None = None) -> "FileTelemetry":
        """Read every message written between host instants t_from and t_to (all when None). `call`: only the lines
        of that call (a line's `_call`; a file shared by concurrent calls tags each line with its call's id —
        lines without one belong to every call)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise VlhError(f"telemetry file {path} does not exist; the agent must write it "
                           "(`vlh agent … --telemetry-file FILE`)") from None
        except OSError as exc:
            raise VlhError(f"telemetry file {path}: cannot read it ({exc.strerror})") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                if n == len(text.splitlines()):  # a line still being written
                    break
                self.counts["unparsed"] += 1
                continue
            if not isinstance(msg, dict):
                self.counts["unparsed"] += 1
                continue
            if msg.get("type") == "vlh.telemetry_file":
                if call is None or msg.get("call") in (None, call):
                    self.header = msg
                continue
            line_call = msg.pop("_call", None)
            if call is not None and line_call is not None and line_call != call:
                continue
            t = msg.pop("_t_host", None)
            if not isinstance(t, (int, float)):
                t = msg.get("t") if msg.get("type") == "vlh.event" else None
            if not isinstance(t, (int, float)):
                self.counts["unparsed"] += 1
                continue
            if (t_from is not None and t < t_from) or (t_to is not None and t > t_to):
                continue
            self.feed(json.dumps(msg), float(t))
        if self.header and self.header.get("clock") not in (None, HOST_CLOCK):
            self.anomalies.append(f"telemetry file {path.name}: the agent's clock is {self.header.get('clock')!r}, "
                                  "not the host clock, and a file has no ping/pong to reconcile it: its events are "
                                  "placed as stamped")
        return self

    def reconcile(self) -> ClockFit | None:
        """The identity fit: the file's clock is the host clock."""
        self.pings = []
        super().reconcile()  # arrival-only events: at their arrival (no fit: one-way 0)
        fit = ClockFit(offset_s=0.0, drift=0.0, t_ref=0.0, uncertainty_s=0.0, rtt_s=0.0, n_samples=0, n_used=0)
        for ev in self.events:
            if ev.agent_t is not None:
                ev.t_host, ev.uncertainty_s, ev.source = ev.agent_t, 0.0, "reconciled"
        self.anomalies = [a for a in self.anomalies if "never answered vlh.ping" not in a]
        self.fit = fit
        return fit
