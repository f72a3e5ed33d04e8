"""The transports `vlh run` knows, by name. A new transport adds one line here (and its name to the CLI's choice
list); the runner asks `transport_for(cfg)` and nothing else."""

from __future__ import annotations

import importlib

from harness.errors import VlhError
from harness.transports.base import Transport

TRANSPORTS = {
    "webrtc": "harness.transports.webrtc.transport:WebRTCTransport",
    "loopback": "harness.transports.loopback.session:LoopbackSession",
    "ws-telephony": "harness.transports.telephony.transport:TelephonyTransport",
}


def transport_for(cfg) -> Transport:
    """A fresh transport for the run's `cfg.transport` (one per run, and one per call where the run's isn't at
    hand: its per-call methods depend on `cfg` only)."""
    name = getattr(cfg, "transport", cfg)
    try:
        target = TRANSPORTS[name]
    except KeyError:
        known = ", ".join(repr(k) for k in TRANSPORTS)
        raise VlhError(f"transport {name!r}: vlh knows {known}") from None
    mod, cls = target.split(":")
    return getattr(importlib.import_module(mod), cls)()
