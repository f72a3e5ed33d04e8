"""Sample-rate conversion by a rational ratio (scipy `resample_poly`, linear phase: no time shift)."""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import resample_poly


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample `x` (shape (n,) or (n, channels)) from `sr_from` to `sr_to` Hz; returns float32.

    The polyphase filter is zero-phase about each output sample, so an onset at t seconds stays at t seconds.
    """
    sr_from, sr_to = int(sr_from), int(sr_to)
    if sr_from <= 0 or sr_to <= 0:
        raise ValueError(f"resample: sample rates must be positive, got {sr_from} → {sr_to}")
    x = np.asarray(x, dtype=np.float32)
    if sr_from == sr_to:
        return x
    g = gcd(sr_from, sr_to)
    up, down = sr_to // g, sr_from // g
    return resample_poly(x, up, down, axis=0).astype(np.float32, copy=False)
