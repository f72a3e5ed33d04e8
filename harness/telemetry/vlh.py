"""vlh's own telemetry protocol (design.md §3): `vlh.event` instants on the agent's clock, `vlh.ping`/`vlh.pong`."""

from __future__ import annotations

import sys

from harness.telemetry.clock import PingSample
from harness.telemetry.events import Event


def ping(ping_id: int, t0: float) -> dict:
    return {"type": "vlh.ping", "id": ping_id, "t0": t0}


def parse(msg: dict, arrival: float, pending: dict[int, float]) -> tuple[list, bool]:
    """Returns ([Event | PingSample], understood). `pending` maps ping id → t0 (host) of pings in flight."""
    kind = msg.get("type")
    if kind == "vlh.event":
        name, t = msg.get("name"), msg.get("t")
        if not isinstance(name, str) or not isinstance(t, (int, float)):
            return [], False
        turn = msg.get("turn")
        ev = Event(sys.intern(name), arrival, agent_t=float(t), turn_hint=turn if isinstance(turn, int) else None,
                   origin="vlh", raw=msg)
        return [ev], True  # well-formed; names outside EVENT_NAMES are kept but not attributed
    if kind == "vlh.pong":
        try:
            pid = int(msg["id"])
            t0 = pending.pop(pid)
            return [PingSample(t0, float(msg["t1"]), float(msg["t2"]), arrival)], True
        except (KeyError, TypeError, ValueError):
            return [], False
    return [], False
