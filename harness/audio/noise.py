"""A scenario's microphone noise as the background of a whole call (a noisy room is noisy between turns too).

`NoiseBed` is mixed into every mic frame (`MicTrack.background`): from the start of the call at the level of the
first noisy turn, then, from each utterance's first sample, at that turn's level (a turn without `noise:` makes the
room quiet until a noisy turn comes). A turn's level is its speech RMS minus its SNR. The noise is a seeded loop of
white or pink (1/f power) noise, 10 s long, so the same scenario sends the same noise.

Noise only around each utterance — with digital silence between turns — would not be a noisy room: both vlh's and
the agent's noise floors would sit at the silence, and the noise next to the speech would count as speech.
"""

from __future__ import annotations

import bisect

import numpy as np

from harness.audio import SAMPLE_RATE as SR

LOOP_S = 10.0


def colored(kind: str, n: int, seed: int) -> np.ndarray:
    """n samples of unit-RMS white or pink noise (float32)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    if kind == "pink":  # 1/f power from 20 Hz up (below it: inaudible rumble that would dominate the RMS)
        f = np.fft.rfftfreq(n, 1 / SR)
        x = np.fft.irfft(np.where(f >= 20.0, np.fft.rfft(x) / np.sqrt(np.maximum(f, 20.0)), 0.0), n)
    return (x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def noise_rms(speech: np.ndarray, snr_db: float) -> float:
    """The RMS of noise `snr_db` below the RMS of `speech`."""
    rms = float(np.sqrt(np.mean(np.asarray(speech, np.float64) ** 2))) if len(speech) else 0.0
    return rms / (10 ** (snr_db / 20))


class NoiseBed:
    def __init__(self, seed: int = 0):
        self.seed = seed
        self._loops: dict[str, np.ndarray] = {}
        self._at: list[int] = []  # sample index where a level starts (sorted)
        self._level: list[tuple[str | None, float]] = []  # (kind, rms) from there on

    def set(self, sample: int, kind: str | None, rms: float) -> None:
        """From mic sample `sample` on: noise of `kind` (white | pink | None: quiet) at RMS `rms`."""
        i = bisect.bisect_right(self._at, sample)
        self._at.insert(i, int(sample))
        self._level.insert(i, (kind, float(rms)))

    def __call__(self, a: int, n: int) -> np.ndarray:
        """Mic samples a … a+n of the noise (quiet before the first level)."""
        out = np.zeros(n, np.float32)
        b = a + n
        for i, start in enumerate(self._at):
            stop = self._at[i + 1] if i + 1 < len(self._at) else b
            lo, hi = max(a, start), min(b, stop)
            kind, rms = self._level[i]
            if hi > lo and kind and rms > 0:
                loop = self._loop(kind)
                out[lo - a:hi - a] = loop[np.arange(lo, hi) % len(loop)] * rms
        return out

    def _loop(self, kind: str) -> np.ndarray:
        if kind not in self._loops:
            self._loops[kind] = colored(kind, int(LOOP_S * SR), self.seed + (1 if kind == "pink" else 0))
        return self._loops[kind]
