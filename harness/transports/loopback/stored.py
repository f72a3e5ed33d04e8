"""A stored loopback calibration (`loopback-calibration.json` in the state directory): what it holds, reading it,
and whether it was made for the devices and latency of this call. The calibration itself is made by
`harness.transports.loopback.calibrate`; the transport only reads it.
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness.devices import pulse
from harness.devices.stamped import SAMPLE_RATE
from harness.errors import VlhError

log = logging.getLogger(__name__)

CAL_FILE = "loopback-calibration.json"
FORMAT = 1


@dataclass
class PathStats:
    mean_ms: float
    stdev_ms: float
    min_ms: float
    max_ms: float
    n: int
    values_ms: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values_ms: list[float]) -> "PathStats | None":
        if not values_ms:
            return None
        return cls(float(np.mean(values_ms)), float(statistics.stdev(values_ms)) if len(values_ms) > 1 else 0.0,
                   float(min(values_ms)), float(max(values_ms)), len(values_ms), [float(v) for v in values_ms])


@dataclass
class Calibration:
    devices: dict
    ear_play: str | None
    latency_s: float
    mode: str  # "null-sink" | "cable"
    mic_path: PathStats | None
    ear_path: PathStats | None
    repetitions: int
    left_out: list = field(default_factory=list)  # disturbed sessions: attempt, why, values
    created_utc: str = ""
    host: str = ""
    sample_rate: int = SAMPLE_RATE
    format: int = FORMAT

    def brief(self) -> dict:
        def b(p):
            return None if p is None else {"mean_ms": round(p.mean_ms, 4), "stdev_ms": round(p.stdev_ms, 4), "n": p.n}
        return {"created_utc": self.created_utc, "mode": self.mode, "latency_s": self.latency_s,
                "mic_path": b(self.mic_path), "ear_path": b(self.ear_path), "left_out": len(self.left_out)}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        d = dict(d)
        for k in ("mic_path", "ear_path"):
            d[k] = PathStats(**d[k]) if d.get(k) else None
        return cls(**d)


def default_path(state_dir=None) -> Path:
    return pulse.state_dir(state_dir) / CAL_FILE


def load(path=None, state_dir=None) -> Calibration | None:
    p = Path(path) if path else default_path(state_dir)
    if not p.exists():
        return None
    try:
        cal = Calibration.from_dict(json.loads(p.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise VlhError(f"{p}: not a vlh loopback calibration ({exc}); delete it and run "
                       "`vlh loopback calibrate`") from None
    if cal.format != FORMAT:
        raise VlhError(f"{p}: calibration format {cal.format}, this vlh reads {FORMAT}; run `vlh loopback calibrate`")
    return cal


def load_matching(devices, latency: float, state_dir=None) -> Calibration | None:
    """The stored calibration if it was made for these devices (a `LoopbackDevices`) at this latency, else None (logged)."""
    cal = load(state_dir=state_dir)
    if cal is None:
        log.info("loopback: no calibration (%s); ch1 uses the session's mic path latency", default_path(state_dir))
        return None
    if cal.devices != asdict(devices) or abs(cal.latency_s - latency) > 1e-9:
        log.warning("loopback: the calibration in %s was made for %s at %.3f s, not %s at %.3f s; ignoring it "
                    "(run `vlh loopback calibrate`)", default_path(state_dir), cal.devices, cal.latency_s,
                    asdict(devices), latency)
        return None
    return cal
