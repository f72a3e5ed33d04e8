"""Shared fixtures. Real espeak-ng speech throughout (synthesis is cached under recordings/cache/)."""

from __future__ import annotations

import numpy as np
import pytest

SR = 48000


@pytest.fixture(scope="session")
def utterance():
    """Factory: utterance(text, voice=None, rate=None, threshold_db=-20.0, peak=0.5) → sharpened float32 mono
    48 kHz espeak speech whose first and last samples are its exact boundaries."""
    from harness.audio.synth import sharpen, synthesize

    memo: dict = {}

    def make(text: str, voice: str | None = None, rate: int | None = None, threshold_db: float = -20.0,
             peak: float = 0.5) -> np.ndarray:
        key = (text, voice, rate, threshold_db, peak)
        if key not in memo:
            a, _ = sharpen(synthesize(text, voice=voice, rate=rate), SR, threshold_db=threshold_db)
            memo[key] = (a * (peak / np.abs(a).max())).astype(np.float32)
        return memo[key].copy()

    return make


@pytest.fixture(scope="session")
def conversation():
    """Factory: conversation(exchanges, **kw) → (stereo float32 (n, 2), truth) via
    `harness.audio.synth.build_conversation` (ch0 user, ch1 agent, every boundary known to the sample)."""
    from harness.audio.synth import build_conversation

    memo: dict = {}

    def make(exchanges, **kw):
        key = repr((exchanges, sorted(kw.items())))
        if key not in memo:
            memo[key] = build_conversation(exchanges, **kw)
        x, truth = memo[key]
        return x.copy(), [dict(t) for t in truth]

    return make


def faded_burst(n: int, kind: str, sr: int = SR, freq: float = 440.0, amp: float = 0.5, fade_ms: float = 2.0,
                seed: int = 0) -> np.ndarray:
    """A burst of n samples with raised-cosine fades of `fade_ms` at both ends: "tone" (a sine at `freq`),
    "harmonic" (a voice-like complex tone, fundamental `freq`, harmonics to 3.5 kHz falling as 1/k, peak `amp`)
    or "noise" (white, RMS amp/2)."""
    t = np.arange(n) / sr
    if kind == "tone":
        y = amp * np.sin(2 * np.pi * freq * t)
    elif kind == "harmonic":
        y = sum(np.sin(2 * np.pi * k * freq * t + 0.7 * k * k) / k for k in range(1, int(3500 / freq) + 1))
        y = amp * y / np.abs(y).max()
    else:
        y = amp * 0.5 * np.random.default_rng(seed).standard_normal(n)
    nf = int(round(sr * fade_ms / 1000))
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(nf) + 0.5) / nf)
    y[:nf] *= ramp
    y[-nf:] *= ramp[::-1]
    return y.astype(np.float32)
