"""Clock reconciliation between the agent's telemetry clock and the harness host clock (design.md §3).

Each `vlh.ping`/`vlh.pong` exchange gives four stamps: t0 (host, sent), t1 (agent, received), t2 (agent, sent),
t3 (host, received). NTP-style: offset θ = ((t1 − t0) + (t2 − t3)) / 2 (agent − host), round trip
δ = (t3 − t0) − (t2 − t1); the true offset lies within θ ± δ/2. vlh keeps the exchanges with the smallest RTT and
fits offset + drift over the call:  agent(t) = t + a + b·(t − t_ref).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np


@dataclass
class PingSample:
    t0: float
    t1: float
    t2: float
    t3: float

    @property
    def rtt(self) -> float:
        return (self.t3 - self.t0) - (self.t2 - self.t1)

    @property
    def offset(self) -> float:
        return ((self.t1 - self.t0) + (self.t2 - self.t3)) / 2.0

    @property
    def t_mid(self) -> float:
        return (self.t0 + self.t3) / 2.0


class PingLog:
    """A call's ping/pong exchanges as four typed columns (32 bytes an exchange; a list of PingSample objects took
    ≈ 200, ≈ 1 KB per second of call at 5 pings a second). `append` takes a PingSample; len, indexing and
    iteration give PingSamples, as the list it replaces did; `columns()` gives the four stamps as numpy arrays."""

    def __init__(self, samples=()):
        self.t0, self.t1, self.t2, self.t3 = (array("d") for _ in range(4))
        for s in samples:
            self.append(s)

    def append(self, s: PingSample) -> None:
        self.t0.append(s.t0)
        self.t1.append(s.t1)
        self.t2.append(s.t2)
        self.t3.append(s.t3)

    def __len__(self) -> int:
        return len(self.t0)

    def __getitem__(self, i: int) -> PingSample:
        return PingSample(self.t0[i], self.t1[i], self.t2[i], self.t3[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.array(a, float) for a in (self.t0, self.t1, self.t2, self.t3))


def _stamps(samples) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(samples, PingLog):
        return samples.columns()
    if not len(samples):
        return tuple(np.zeros(0) for _ in range(4))
    return tuple(np.array(c, float) for c in zip(*((s.t0, s.t1, s.t2, s.t3) for s in samples)))


@dataclass
class ClockFit:
    """agent_time = host_time + offset_s + drift · (host_time − t_ref)."""

    offset_s: float
    drift: float  # dimensionless (ppm · 1e-6)
    t_ref: float
    uncertainty_s: float  # half the best round trip plus the fit's residual spread
    rtt_s: float  # median round trip of the data channel
    n_samples: int
    n_used: int

    def to_host(self, agent_t: float) -> float:
        """Host-monotonic time of an instant stamped `agent_t` on the agent's clock."""
        return (agent_t - self.offset_s + self.drift * self.t_ref) / (1.0 + self.drift)

    def offset_at(self, host_t: float) -> float:
        return self.offset_s + self.drift * (host_t - self.t_ref)

    @property
    def one_way_s(self) -> float:
        return self.rtt_s / 2.0

    def as_dict(self, t_at: float | None = None) -> dict:
        t_at = self.t_ref if t_at is None else t_at
        return {
            "offset_ms": self.offset_at(t_at) * 1e3,  # agent clock − host clock at host time `at_mono`
            "at_mono": t_at,
            "drift_ppm": self.drift * 1e6,
            "uncertainty_ms": self.uncertainty_s * 1e3,
            "rtt_ms": self.rtt_s * 1e3,
            "samples": self.n_samples,
            "samples_used": self.n_used,
        }


def fit_clock(samples: "PingLog | list[PingSample]", keep_fraction: float = 0.3, min_keep: int = 3,
              bins: int = 8) -> ClockFit | None:
    """Fit offset and drift from ping/pong samples, keeping the lowest-RTT ones in each stretch of the call.

    Returns None when there is no sample. With fewer than 4 usable samples (or a short span) the drift is fixed at 0.
    """
    t0, t1, t2, t3 = _stamps(samples)
    rtt_all = (t3 - t0) - (t2 - t1)  # as PingSample.rtt / .offset / .t_mid, column-wise
    off_all = ((t1 - t0) + (t2 - t3)) / 2.0
    ok_rows = (rtt_all >= 0) & np.isfinite(off_all)
    if not ok_rows.any():
        return None
    mid = ((t0 + t3) / 2.0)[ok_rows]
    order = np.argsort(mid, kind="stable")
    t, rtt, off = mid[order], rtt_all[ok_rows][order], off_all[ok_rows][order]
    n_good = len(t)
    # min-RTT filter within time bins so the drift fit sees the whole call
    edges = np.linspace(t[0], t[-1] + 1e-9, bins + 1)
    keep = np.zeros(n_good, bool)
    for i in range(bins):
        idx = np.nonzero((t >= edges[i]) & (t < edges[i + 1]))[0]
        if len(idx) == 0:
            continue
        k = max(1, int(round(len(idx) * keep_fraction)))
        keep[idx[np.argsort(rtt[idx])[:k]]] = True
    if keep.sum() < min_keep:
        keep[np.argsort(rtt)[:min_keep]] = True
    tk, ok, rk = t[keep], off[keep], rtt[keep]
    t_ref = float(t[0])
    span = tk.max() - tk.min() if len(tk) else 0.0
    w = 1.0 / np.maximum(rk, 1e-4) ** 2
    if len(tk) >= 4 and span >= 2.0:
        A = np.stack([np.ones_like(tk), tk - t_ref], axis=1)
        W = np.sqrt(w)[:, None]
        coef, *_ = np.linalg.lstsq(A * W, ok * W[:, 0], rcond=None)
        a, b = float(coef[0]), float(coef[1])
    else:
        a, b = float(np.sum(w * ok) / np.sum(w)), 0.0
    resid = ok - (a + b * (tk - t_ref))
    spread = float(np.max(np.abs(resid))) if len(resid) else 0.0
    uncertainty = float(np.min(rk)) / 2.0 + spread
    return ClockFit(a, b, t_ref, uncertainty, float(np.median(rtt)), n_good, int(keep.sum()))
