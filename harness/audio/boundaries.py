"""Speech boundaries to the sample: webrtcvad finds speech, the channel's noise floor places its edges.

Method (docs/analyze.md, "How boundaries are found"):
1. The channel is decimated to 8 kHz by block averaging (`to_vad_rate`). webrtcvad decimates every input rate
   to 8 kHz internally before classifying, so this is the band it decides on anyway; doing it once here is
   cheaper, and it keeps most white noise above 4 kHz out of the frame energies.
2. 10 ms frames. Frame RMS on the 8 kHz copy; the channel's noise floor is the 10th percentile of it.
3. Energy delimits: runs of frames above floor + `floor_low_db` (3 dB).
4. The VAD confirms: webrtcvad (mode `vad_mode`) classifies the frames that could be speech (those runs and the
   300 ms before them, so it has adapted to the noise). A run is speech when at least `vad_fraction` of its loud
   frames are VAD speech. Loud: above floor + `floor_margin_db` (10 dB), within `min_level_db` (35 dB) of the
   loudest speech frame on the channel, and above `min_dbfs` (−55 dBFS in the speech band). So steady hiss,
   hum and low-level comfort noise are not speech, while the VAD's hangover never stretches a boundary.
   Runs closer than `min_pause_ms` merge (pauses inside an utterance).
5. Each edge is refined on the samples, low-passed at 4 kHz by a short zero-phase FIR (channel DC removed). Coarse: the
   first (last) sample where a 5 ms RMS window crosses max(floor + `floor_margin_db`, run peak + `edge_level_db`).
   Fine: within 35 ms of it, the one change point that best splits the samples into a quiet and a loud Gaussian
   segment (maximum likelihood on running sums of x²), with a variance floor 45 dB under the run's peak so that
   low-level comfort noise counts as quiet. Then the edge moves out to the outermost sample, within 12.5 ms, that
   stands out of the quiet side's noise (> 5.5 σ, σ from its median absolute value): a lone first or last
   glottal pulse is speech even when the likelihood split leaves it out. A soft onset or tail under the edge level
   (a murmur, an aspirated or breathy ending: 30–40 dB under the peak) is then followed out of the quiet bed
   beyond it (`_soft_edge`), and a fricative's hiss above 4 kHz in its own band (`_hiss_edge`). An isolated
   sound beyond a dip under the noise (a final release or hiss after a closure, an onset before one) is attached
   when it holds, for 10–50 ms, a level the noise alone beyond it practically never holds (`_isolated_edge`).
   Then across 11 bands and 10–50 ms at once, against the noise alone, at a measured false-alarm rate
   (`_multiband_edge`): such a sound, or a weak onset or tail right at the edge that the other refiners' levels
   leave out.
6. Refined regions closer than `min_pause_ms` merge; regions shorter than `min_speech_ms` are dropped.
Content above 4 kHz (the hiss of an /s/) is not speech to this detector, as it is not to webrtcvad.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import _webrtcvad
import webrtcvad
from scipy import fft as sp_fft
from scipy import signal
from scipy.ndimage import minimum_filter1d

from harness.audio import SAMPLE_RATE
from harness.audio.resample import resample

VAD_RATE = 8000
FRAME_S = 0.010
ABS_FLOOR = 1e-5  # ≈ −100 dBFS, under 16-bit quantisation noise: the floor of digital silence
BAND = (80.0, 4000.0)
VOICED_CORR = 0.6  # normalized autocorrelation at the pitch lag: a voiced frame
VOICED_MIN_FRAMES = 5  # a run needs this many loud frames for the voicing second opinion
NOISE_LEVEL_OFFSET_DB = 2.5  # white noise: median 1 dB over the 10th percentile, mirrored 2 dB; this leaves the floor
SPREAD_DB = 15.0  # frames this close to the floor are noise when its spread is measured (noise_level)
CONTEXT_FRAMES = 30  # VAD context before a candidate frame
REFINE_TRIES = 50  # loud frames tried, outermost first, when an edge's coarse crossing is not on the samples
EXTEND_S = 0.0125
HISS_TOP = 11000.0  # top of the fricative band the edges are also followed in
HISS_LEVEL_DB = -40.0  # hiss this far under the run's (4 kHz band) peak, and 10 dB over its band's local floor
HISS_TILT_DB = 8.0  # the hiss band's window RMS over the 4 kHz band's, at least
HISS_REACH_S = 0.060  # a fricative or release within this of the voiced edge (a stop's closure in between)
HISS_FLOOR_S = 0.6  # the hiss band's local floor: 10th percentile of 5 ms windows over this span outside the edge
HISS_UPPER_DB = 6.0  # ... the hiss it ends in this far over the noise's own hiss (90th pct of the span's far half)
HISS_UPPER_MIN_S = 0.15  # ... measured where that half is at least this long
SOFT_LEVEL_DB = -40.0  # a soft onset or tail (murmur, aspiration, breath) is followed down to this under the run's peak
SOFT_SPAN_S = 0.120  # ... while it stands 10 dB out of the median level of this span beyond the edge (its local bed)
SOFT_MARGIN = 10 ** (10 / 20)  # over the channel's noise level and the local bed
RELEASE_REACH_S = 0.25  # a stop's release this far after the end (its closure under the noise) ends the utterance
RELEASE_MAX_S = 0.05  # ... when it is this short and nothing follows it within the reach
RELEASE_MARGIN = 10 ** (10 / 20)  # ... standing this far over the bed's upper level (its 90th percentile)
RELEASE_BED_SPREAD = 10 ** (4 / 20)  # ... in a steady bed: its 5 ms windows' 90th percentile within this of the median
ISOLATED_REACH_S = 0.35  # an isolated sound this far beyond an edge (a closure under the noise between) is attached
ISOLATED_REF_S = 0.4  # ... when it stands out of the distribution of the noise alone over this span beyond the reach
ISOLATED_REF_MIN_S = 0.2  # ... (at least this much of it before the next region, or nothing is attached)
ISOLATED_HOLDS_S = (0.010, 0.025, 0.050)  # ... held this long (every 5 ms window in it over the threshold for
#   that hold: the longer the hold, the lower the noise's own held level, and the threshold with it)
ISOLATED_GUARD_S = 0.030  # ... and followed by this much of noise alone (past the reach if it ends near it)
ISOLATED_Z = 4.0  # ... threshold: the noise's median + Z × (p90 − median) in dB (Gaussian in dB: 5.1 σ, 1.5e-7)
ISOLATED_MARGIN_DB = 3.0  # ... plus this
ISOLATED_LEVEL_DB = -35.0  # ... and within this of the run's peak (comfort noise before a reply: 38+ dB under it)
ISOLATED_SPREAD_DB = 3.0  # ... in a band where the noise is steady: p90 − median at most this (white 1, pink ≤ 2.6)
ISOLATED_STEADY_DB = 2.5  # ... the holds after the first only where it is at most this (white 1, pink 0.8–2.6;
ISOLATED_DRIFT_DB = 1.5  # babble 2.9 and more) and the two halves' medians are this close (white, pink ≤ 1.5 dB)
SOFT_GAP_S = 0.010  # ... across dips this short (between two glottal pulses)
SOFT_VOICED_SPAN_S = 0.5  # further out (up to this), a soft stretch is followed where it is voiced


@dataclass(frozen=True)
class Region:
    """Speech in samples [start, end) at `sample_rate`."""

    start: int
    end: int
    sample_rate: int = SAMPLE_RATE

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.end / self.sample_rate

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / self.sample_rate


# ---------------------------------------------------------------------------------------------------- 8 kHz copy

def to_vad_rate(x: np.ndarray, sr: int) -> np.ndarray:
    """`x` in the speech band at 8 kHz, sample k centred near input time k / 8000 s.

    For rates that are multiples of 8 kHz: the mean of each block of sr/8000 samples (a boxcar whose first null
    is at 8 kHz: white noise loses the same 1 − 8000/sr of its power as through an ideal 4 kHz low-pass, while
    speech below 3 kHz passes within 2 dB). Other rates: `resample_poly`.
    """
    x = np.asarray(x, dtype=np.float32)
    if sr == VAD_RATE:
        return x
    if sr % VAD_RATE:
        return resample(x, sr, VAD_RATE)
    d = sr // VAD_RATE
    n = len(x) // d
    return x[: n * d].reshape(n, d) @ np.full(d, 1.0 / d, np.float32)


def frame_rms(y8: np.ndarray) -> np.ndarray:
    """RMS of each whole 10 ms frame of an 8 kHz signal."""
    fl = int(VAD_RATE * FRAME_S)
    n = len(y8) // fl
    fr = np.asarray(y8[: n * fl], dtype=np.float32).reshape(n, fl)
    return np.sqrt(np.einsum("ij,ij->i", fr, fr, dtype=np.float64) / fl)


def noise_floor(x: np.ndarray, sr: int, *, rms: np.ndarray | None = None) -> float:
    """The channel's noise floor in the speech band: 10th percentile of its 10 ms frame RMS (linear, ≥ 1e-5)."""
    if rms is None:
        rms = frame_rms(to_vad_rate(x, sr))
    if len(rms) == 0:
        return ABS_FLOOR
    return max(float(np.percentile(rms, 10)), ABS_FLOOR)


def noise_level(rms: np.ndarray, floor: float) -> float:
    """The level the thresholds stand on: the noise's upper level, not just its quiet moments. Babble and pink
    noise fluctuate far more from frame to frame than white noise (whose 10 ms frames are within ±1.5 dB), so
    thresholds over their 10th percentile are crossed by the noise itself. Frames within `SPREAD_DB` (15 dB) of
    `floor` are taken as the noise; their median as far over it as the floor is under it (the noise's upper
    tail, mirrored from its lower one, which speech does not reach) less 2.5 dB (white noise: about the floor
    itself) is the level, never under `floor`."""
    if floor <= ABS_FLOOR and np.mean(rms < ABS_FLOOR) >= 0.1:
        return floor  # digital silence: no noise to mirror (frames just over it are speech's soft edges)
    near = rms[(rms >= floor) & (rms <= floor * 10 ** (SPREAD_DB / 20))]
    if len(near) < 10:
        return floor
    med = float(np.median(near))
    return max(floor, med * (med / floor) * 10 ** (-NOISE_LEVEL_OFFSET_DB / 20))


def voiced_frames(y8: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """For each 10 ms frame index of an 8 kHz signal: is the 30 ms around it periodic at a pitch (60–400 Hz)?
    Normalized autocorrelation peak over lags 2.5–16.7 ms above `VOICED_CORR`. Noise, hiss and comfort noise
    are not; vowels, nasals and voiced consonants are."""
    fl = int(VAD_RATE * FRAME_S)
    half = 3 * fl // 2
    lo_lag, hi_lag = VAD_RATE // 400, VAD_RATE // 60
    out = np.zeros(len(frames), bool)
    for i, f in enumerate(frames):
        c = int(f) * fl + fl // 2
        seg = np.asarray(y8[max(0, c - half) : c + half + hi_lag], np.float64)
        if len(seg) < 2 * half:
            continue
        seg = seg - seg.mean()
        a = seg[: 2 * half]
        e0 = float(a @ a)
        if e0 <= 0:
            continue
        best = 0.0
        for lag in range(lo_lag, min(hi_lag, len(seg) - 2 * half) + 1):
            b = seg[lag : lag + 2 * half]
            eb = float(b @ b)
            if eb > 0:
                best = max(best, float(a @ b) / np.sqrt(e0 * eb))
        out[i] = best >= VOICED_CORR
    return out


def vad_frames(y8: np.ndarray, vad_mode: int = 2, only: np.ndarray | None = None) -> np.ndarray:
    """webrtcvad's decision for each whole 10 ms frame of an 8 kHz signal (bool array).

    With `only` (bool per frame) the VAD runs on those frames alone, in order, one VAD instance throughout;
    the other frames are reported as non-speech.
    """
    if vad_mode not in (0, 1, 2, 3):
        raise ValueError(f"vad_mode must be 0..3, got {vad_mode}")
    fl = int(VAD_RATE * FRAME_S)
    n = len(y8) // fl
    out = np.zeros(n, bool)
    idx = np.arange(n) if only is None else np.flatnonzero(only[:n])
    if len(idx) == 0:
        return out
    fr = y8[: n * fl].reshape(n, fl)[idx]
    pcm = memoryview(np.clip(fr * 32767.0, -32768, 32767).astype("<i2").tobytes())
    step = 2 * fl
    vad = webrtcvad.Vad(vad_mode)
    handle, process = vad._vad, _webrtcvad.process  # the wrapper's checks cost more than the VAD itself
    out[idx] = np.fromiter((process(handle, VAD_RATE, pcm[i : i + step], fl) for i in range(0, len(pcm), step)),
                           dtype=bool, count=len(idx))
    return out


# ---------------------------------------------------------------------------------------------------- regions

def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the True runs of a bool array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _merge(starts: np.ndarray, ends: np.ndarray, min_gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge consecutive intervals separated by less than `min_gap`."""
    if len(starts) == 0:
        return starts, ends
    keep = np.concatenate([[True], (starts[1:] - ends[:-1]) >= min_gap])
    idx = np.flatnonzero(keep)
    return starts[idx], np.concatenate([ends[idx[1:] - 1], [ends[-1]]])


def _dilate(mask: np.ndarray, before: int, after: int) -> np.ndarray:
    c = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    i = np.arange(len(mask))
    lo = np.clip(i - after, 0, len(mask))
    hi = np.clip(i + before + 1, 0, len(mask))
    return (c[hi] - c[lo]) > 0


def speech_regions(x: np.ndarray, sr: int, *, vad_mode: int = 2, min_pause_ms: float = 300.0,
                   min_speech_ms: float = 80.0, floor_margin_db: float = 10.0, floor_low_db: float = 3.0,
                   edge_level_db: float = -30.0, min_level_db: float = -35.0, min_dbfs: float = -55.0,
                   vad_fraction: float = 0.5, floor: float | None = None,
                   refine: bool = True, dc: float | None = None) -> list[Region]:
    """Speech regions of one channel, boundaries refined to the sample.

    `floor` fixes the noise floor (linear RMS in the 80–4000 Hz band) instead of measuring it;
    `refine=False` returns the 10 ms frame edges. `dc` fixes the channel's DC offset (a piece of a longer
    channel: `blocks.py`).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"speech_regions: needs one channel, got shape {x.shape}")
    if vad_mode not in (0, 1, 2, 3):
        raise ValueError(f"vad_mode must be 0..3, got {vad_mode}")
    y8 = to_vad_rate(x, sr)
    rms = frame_rms(y8)
    if len(rms) == 0:
        return []
    fl_floor = noise_floor(x, sr, rms=rms) if floor is None else max(float(floor), ABS_FLOOR)
    fl_floor = noise_level(rms, fl_floor)
    # energy delimits, the VAD confirms: a run of frames above floor + low margin is speech when its loud frames
    # (floor + margin, within min_level_db of the loudest speech, above min_dbfs) are mostly VAD speech
    low = rms >= fl_floor * 10 ** (floor_low_db / 20)
    starts, ends = _runs(low)
    if len(starts) == 0:
        return []
    vad = vad_frames(y8, vad_mode, only=_dilate(low, before=CONTEXT_FRAMES, after=2))
    speechy = vad & low
    top = float(rms[speechy].max()) if speechy.any() else 0.0
    loud = rms >= max(fl_floor * 10 ** (floor_margin_db / 20), top * 10 ** (min_level_db / 20),
                      10 ** (min_dbfs / 20))
    n_loud = np.concatenate([[0], np.cumsum(loud)])
    n_voiced = np.concatenate([[0], np.cumsum(loud & vad)])
    nl, nv = n_loud[ends] - n_loud[starts], n_voiced[ends] - n_voiced[starts]
    ok = (nv > 0) & (nv >= vad_fraction * nl)
    # second opinion where webrtcvad says no: a run whose loud frames are mostly voiced (periodic at a pitch) is
    # speech too — webrtcvad's model rejects some real voices (a quiet word right after digital silence)
    for k in np.flatnonzero(~ok & (nl >= VOICED_MIN_FRAMES)):
        fr = starts[k] + np.flatnonzero(loud[starts[k] : ends[k]])
        ok[k] = np.mean(voiced_frames(y8, fr)) >= vad_fraction
    # a quiet part of an utterance (a final /ks/ under `min_dbfs` after a long stop closure): a run with no loud
    # frame, but 10 dB over the noise level and mostly VAD speech, within `min_pause_ms` of speech, is part of it
    gap_f = min_pause_ms / 1000 / FRAME_S
    peak_run = np.array([rms[a:b].max() for a, b in zip(starts, ends)])
    n_vad = np.concatenate([[0], np.cumsum(vad & low)])
    quiet_part = ~ok & (nl == 0) & (peak_run >= fl_floor * 10 ** (floor_margin_db / 20)) & (
        n_vad[ends] - n_vad[starts] >= vad_fraction * (ends - starts))
    if quiet_part.any() and ok.any():
        oks, oke = starts[ok], ends[ok]
        for k in np.flatnonzero(quiet_part):
            i = int(np.searchsorted(oks, starts[k]))
            near_before = i > 0 and starts[k] - oke[i - 1] < gap_f
            near_after = i < len(oks) and oks[i] - ends[k] < gap_f
            ok[k] = near_before or near_after
    starts, ends = _merge(starts[ok], ends[ok], gap_f)
    if len(starts) == 0:
        return []
    peaks = np.array([rms[s:e].max() for s, e in zip(starts, ends)])
    margin = 10 ** (floor_margin_db / 20)

    fl = sr * FRAME_S
    if not refine:
        return [Region(int(round(s * fl)), int(round(e * fl)), sr) for s, e in zip(starts, ends)]
    found: list[tuple[int, int]] = []
    prev_end = 0
    if dc is None:
        dc = float(np.mean(y8, dtype=np.float64))  # the channel's DC offset (speech has none)
    for i, (s, e, pk) in enumerate(zip(starts, ends, peaks)):
        thr = max(fl_floor * margin, pk * 10 ** (edge_level_db / 20))
        eps = max((0.1 * fl_floor) ** 2, (pk * 10 ** (-45 / 20)) ** 2, 1e-12)
        nxt = int(round(starts[i + 1] * fl)) if i + 1 < len(starts) else len(x)
        lo_f = max(0, s - 3)
        loud_frames = lo_f + np.flatnonzero(rms[lo_f : e + 3] >= thr)
        if len(loud_frames) == 0:
            continue
        # frames are on the 8 kHz copy, whose filter differs from the refinement's: a frame just over `thr` there
        # may hold no 5 ms window over it on the samples. Then the next loud frame inward is tried (a region
        # whose outermost loud frame was borderline must not be dropped whole)
        a = b = None
        for f0 in loud_frames[:REFINE_TRIES]:
            f0 = int(f0)
            a = _refine_edge(x, sr, int(round((f0 - 2) * fl)), int(round((f0 + 2) * fl)), thr, eps, prev_end, nxt,
                             start=True, dc=dc)
            if a is not None:
                break
        if a is None:
            continue
        for f1 in loud_frames[::-1][:REFINE_TRIES]:
            f1 = int(f1)
            b = _refine_edge(x, sr, int(round((f1 - 1) * fl)), int(round((f1 + 3) * fl)), thr, eps, a, nxt,
                             start=False, dc=dc)
            if b is not None and b > a:
                break
        if b is None or b <= a:
            continue
        # a soft onset or tail, quieter than the edge level, that continues the sound out of a quiet bed
        a = _soft_edge(x, sr, a, pk, fl_floor * SOFT_MARGIN, eps, prev_end, b, start=True, dc=dc)
        b = _soft_edge(x, sr, b, pk, fl_floor * SOFT_MARGIN, eps, a, nxt, start=False, dc=dc)
        if sr >= 16000:  # a fricative or plosive release outside the voiced edges (its hiss is above 4 kHz)
            memo_start: dict = {}
            a = _hiss_edge(x, sr, a, pk, prev_end, b, start=True, dc=dc, memo=memo_start)
            memo: dict = {}
            b = _hiss_edge(x, sr, b, pk, a, nxt, start=False, dc=dc, memo=memo)
        if sr >= 16000:
            b = _release_edge(x, sr, b, pk, eps, a, nxt, dc=dc, memo=memo)
            b = _isolated_edge(x, sr, b, pk, eps, a, nxt, start=False, dc=dc, memo=memo)
            a = _isolated_edge(x, sr, a, pk, eps, prev_end, b, start=True, dc=dc, memo=memo_start)
            b = _multiband_edge(x, sr, b, pk, eps, a, nxt, start=False, dc=dc)
            a = _multiband_edge(x, sr, a, pk, eps, prev_end, b, start=True, dc=dc)
        found.append((a, b))
        prev_end = b
    if not found:
        return []
    st, en = _merge(np.array([f[0] for f in found]), np.array([f[1] for f in found]), min_pause_ms / 1000 * sr)
    keep = (en - st) >= min_speech_ms / 1000 * sr
    return [Region(int(a), int(b), sr) for a, b in zip(st[keep], en[keep])]


# ---------------------------------------------------------------------------------------------------- edges

@lru_cache(maxsize=8)
def _lowpass(sr: int) -> np.ndarray:
    """Linear-phase FIR low-pass at 4 kHz, ±0.35 ms long: little smearing, no pre-echo worth speaking of."""
    n = 2 * int(round(sr * 0.00035)) + 1
    return signal.firwin(n, min(BAND[1], 0.45 * sr), fs=sr, window="blackman")


@lru_cache(maxsize=8)
def _highpass(sr: int) -> np.ndarray:
    """Linear-phase FIR band-pass 4 kHz – min(11 kHz, 0.45 sr), ±0.35 ms long: where a fricative's hiss is."""
    n = 2 * int(round(sr * 0.00035)) + 1
    return signal.firwin(n, [BAND[1], min(HISS_TOP, 0.45 * sr)], fs=sr, window="blackman", pass_zero=False)


def _band(x: np.ndarray, sr: int, a: int, b: int, dc: float = 0.0, hiss: bool = False) -> np.ndarray:
    """x[a:b] minus the channel's DC offset `dc`, low-passed at 4 kHz (zero phase); `hiss`: band-passed
    4–11 kHz instead."""
    h = _highpass(sr) if hiss else _lowpass(sr)
    half = len(h) // 2
    lo, hi = max(0, a - half), min(len(x), b + half)
    y = np.convolve(np.subtract(x[lo:hi], dc, dtype=np.float64), h, mode="same")  # = astype(float64) - dc
    return y[a - lo : a - lo + (b - a)]


def _band_rms(x, sr, a: int, b: int, dc: float, hiss: bool, w: int, memo: dict | None = None) -> np.ndarray:
    """`_win_rms` of `_band(x[a:b])`, kept in `memo` (one region's edges look at the same stretch twice)."""
    key = (a, b, hiss, w)
    if memo is not None and key in memo:
        return memo[key]
    r = _win_rms(_band(x, sr, a, b, dc, hiss=hiss), w)
    if memo is not None:
        memo[key] = r
    return r


def _band_rms_out(x, sr, a: int, b: int, dc: float, hiss: bool, w: int, st: int, memo: dict | None, *,
                  start: bool) -> np.ndarray:
    """RMS of the 5 ms windows of x[a:b] in a band, every `st` samples outward from the edge (b when `start`,
    else a): r[i] is the window i·st samples out. The part next to the edge is taken from what `_hiss_edge` /
    `_release_edge` kept in `memo` for their `HISS_FLOOR_S` beside it, when they did (the same numbers)."""
    span = int(round(sr * HISS_FLOOR_S))
    a_m, b_m = (max(a, b - span), b) if start else (a, min(b, a + span))
    near = memo.get((a_m, b_m, hiss, w)) if memo is not None and b - a > span else None
    if near is None:
        yb = _band(x, sr, a, b, dc, hiss)
        return _win_rms_step(yb[::-1] if start else yb, w, st)
    if start:  # with the windows starting at a … a_m − 1
        r = np.concatenate([_band_rms(x, sr, a, a_m + w - 1, dc, hiss, w), near])
        return r[::-1][::st]
    return np.concatenate([near, _band_rms(x, sr, b_m - w + 1, b, dc, hiss, w)])[::st]  # … at b_m − w + 1 …


def _win_rms(y: np.ndarray, w: int) -> np.ndarray:
    """RMS of y[j : j + w] for j in [0, len(y) - w]."""
    c = np.empty(len(y) + 1)  # the same numbers as concatenating [0] and the cumsum, without the copies
    c[0] = 0.0
    np.square(y, out=c[1:], dtype=np.float64)
    np.cumsum(c[1:], out=c[1:])
    d = np.subtract(c[w:], c[:-w])
    np.maximum(d, 0.0, out=d)
    np.divide(d, w, out=d)
    return np.sqrt(d, out=d)


def _win_rms_step(y: np.ndarray, w: int, st: int) -> np.ndarray:
    """`_win_rms(y, w)[::st]` (the same numbers), without the windows in between."""
    c = np.empty(len(y) + 1)
    c[0] = 0.0
    np.square(y, out=c[1:], dtype=np.float64)
    np.cumsum(c[1:], out=c[1:])
    d = np.subtract(c[w::st], c[: len(c) - w : st])
    np.maximum(d, 0.0, out=d)
    np.divide(d, w, out=d)
    return np.sqrt(d, out=d)


def _percentile(v: np.ndarray, q: float) -> float:
    """`np.percentile(v, q)` (linear interpolation) of a 1-D float64 array: the same number, computed the same way
    (its index, partition and interpolation), without its per-call overhead (the edge searches call it thousands
    of times on a few hundred values)."""
    n = len(v)
    vi = (n - 1) * (q / 100)
    i = int(np.floor(vi))
    if vi >= n - 1:
        i = j = n - 1
    else:
        j = i + 1
    part = np.partition(v, sorted({0, n - 1, i, j}))
    if np.isnan(part[-1]):
        return float("nan")
    a, b = float(part[i]), float(part[j])
    g = vi - np.floor(vi)
    d = b - a
    return b - d * (1 - g) if g >= 0.5 else a + d * g


def _median(v: np.ndarray) -> float:
    """`np.median(v)` of a 1-D float64 array: the same number (the middle value, or the mean of the two middle
    values), without its per-call overhead."""
    n = len(v)
    h = n // 2
    part = np.partition(v, [h - 1, h, n - 1] if n % 2 == 0 else [h, n - 1])
    if np.isnan(part[-1]):
        return float("nan")
    return float(part[h]) if n % 2 else (float(part[h - 1]) + float(part[h])) / 2


def _median_p90(v: np.ndarray) -> tuple[float, float]:
    """(`_median(v)`, `_percentile(v, 90)`) of a 1-D float64 array with n ≥ 1: the same two numbers, from one
    partition (the values at the partition's indices are the sorted values, whatever other indices it is given)."""
    n = len(v)
    h = n // 2
    vi = (n - 1) * (90 / 100)
    i = int(np.floor(vi))
    if vi >= n - 1:
        i = j = n - 1
    else:
        j = i + 1
    part = np.partition(v, sorted({0, n - 1, i, j, h} | ({h - 1} if n % 2 == 0 else set())))
    if np.isnan(part[-1]):
        return float("nan"), float("nan")
    med = float(part[h]) if n % 2 else (float(part[h - 1]) + float(part[h])) / 2
    a, b = float(part[i]), float(part[j])
    g = vi - np.floor(vi)
    d = b - a
    return med, (b - d * (1 - g) if g >= 0.5 else a + d * g)


def _change_point(y: np.ndarray, eps: float, min_seg: int) -> int:
    """Index k splitting y into y[:k] (quiet) and y[k:] (loud) with maximum Gaussian likelihood."""
    n = len(y)
    c = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])
    k = np.arange(min_seg, n - min_seg + 1)
    v1 = c[k] / k + eps
    v2 = (c[n] - c[k]) / (n - k) + eps
    ll = -k * np.log(v1) - (n - k) * np.log(v2)
    return int(k[np.argmax(ll)])


def _refine_edge(x, sr, z0, z1, thr, eps, lo, hi, *, start: bool, dc: float = 0.0, hiss: bool = False):
    """Sample position of the onset (start=True) or end (exclusive) of speech whose coarse crossing of `thr`
    lies in samples [z0, z1). The search stays within [lo, hi). None if nothing crosses `thr` there.
    """
    w = max(8, int(round(sr * 0.005)))  # coarse window 5 ms
    reach = int(round(sr * 0.030))  # fine search: 30 ms (+ one window) to the quiet side
    over = int(round(sr * 0.003))  # and 3 ms to the loud side of the coarse crossing
    min_seg = max(4, int(round(sr * 0.0005)))
    z0, z1 = max(lo, z0), min(hi, z1)
    if z1 - z0 < w:
        return None
    # one filtered stretch covers the coarse zone and every fine window it can lead to
    f0, f1 = (max(lo, z0 - w - reach), min(hi, z1 + over)) if start else (max(lo, z0 - over), min(hi, z1 + w + reach))
    yb = _band(x, sr, f0, f1, dc, hiss)
    hit = np.flatnonzero(_win_rms(yb[z0 - f0 : z1 - f0], w) >= thr)  # window j covers [z0 + j, z0 + j + w)
    if len(hit) == 0:
        return None
    ext = int(round(sr * EXTEND_S))
    if start:
        ic = z0 + int(hit[0]) + w - 1  # last sample of the first loud window
        a, b = max(f0, ic - w - reach), min(f1, ic + over)
        if b - a < 3 * min_seg:
            return ic - w + 1
        k = a + _change_point(yb[a - f0 : b - f0], eps, min_seg)
        # a lone first pulse (a pitch period before the loud part) is speech too: extend to the earliest sample
        # that stands out of the quiet side's noise
        thr_s = _outlier_level(yb[a - f0 : k - f0], eps)
        lo_e = max(f0, k - ext)
        out = np.flatnonzero(np.abs(yb[lo_e - f0 : k - f0]) > thr_s)
        return lo_e + int(out[0]) if len(out) else k
    ic = z0 + int(hit[-1])  # first sample of the last loud window
    a, b = max(f0, ic - over), min(f1, ic + w + reach)
    if b - a < 3 * min_seg:
        return ic + w
    k = b - _change_point(yb[a - f0 : b - f0][::-1], eps, min_seg)
    thr_s = _outlier_level(yb[k - f0 : b - f0], eps)
    hi_e = min(f1, k + ext)
    out = np.flatnonzero(np.abs(yb[k - f0 : hi_e - f0]) > thr_s)
    return k + int(out[-1]) + 1 if len(out) else k


def _chain_end(on: np.ndarray, gap: int) -> int:
    """Index of the last True of the chain of True values starting within `gap` of index 0, across runs of False
    shorter than `gap`; −1 if there is none."""
    idx = np.flatnonzero(on)
    if len(idx) == 0 or idx[0] > gap:
        return -1
    breaks = np.flatnonzero(np.diff(idx) > gap)
    return int(idx[breaks[0]] if len(breaks) else idx[-1])


def _soft_edge(x, sr, edge: int, pk: float, base: float, eps: float, lo: int, hi: int, *, start: bool,
               dc: float = 0.0) -> int:
    """`edge` moved out over a soft onset or tail of the sound (4 kHz band): a murmur before a vowel, a breathy or
    aspirated ending, a fading diphone join — speech 30–40 dB under the run's peak, under the edge level
    (`edge_level_db`) the edge search stops at. Followed outward over 5 ms windows at least
    max(`base` (the floor + margin), peak + `SOFT_LEVEL_DB`, the local bed + 10 dB), across dips up to
    `SOFT_GAP_S`; the local bed is the median window level over `SOFT_SPAN_S` beyond the edge, so comfort noise or
    a noise bed filling most of that span (the 100 ms of comfort noise before a reply) is not followed, while a
    tail shorter than half of it, ending in a quieter bed, is. The new edge is refined on the samples like a
    voiced edge."""
    w = max(8, int(round(sr * 0.005)))
    gap = int(round(sr * SOFT_GAP_S))

    def outward(span_s):  # window RMS outward from the edge (r[i]: the window i samples out), its span's start
        span = int(round(sr * span_s))
        a, b = (max(lo, edge - span), edge) if start else (edge, min(hi, edge + span))
        if b - a < 4 * w:
            return None, a
        r = _win_rms(_band(x, sr, a, b, dc), w)  # r[j]: samples a + j … a + j + w
        return (r[::-1] if start else r), a

    r, a = outward(SOFT_SPAN_S)
    if r is None:
        return edge
    near = r
    lvl = max(base, pk * 10 ** (SOFT_LEVEL_DB / 20))
    bed_lvl = max(lvl, _median(near) * SOFT_MARGIN)
    last = _chain_end(near >= bed_lvl, gap)
    # a longer soft stretch is followed only where it is voiced (a murmur, a vowel's decay: not comfort noise)
    far = _chain_end(r >= lvl, gap)
    if far >= len(r) - gap - 1:  # it goes on past the near span: look further
        r, a = outward(SOFT_VOICED_SPAN_S)
        far = _chain_end(r >= lvl, gap)
    fl = int(round(sr * FRAME_S))
    if far - max(last, 0) >= 5 * fl:  # judged on the frames whose 30 ms lie inside the stretch (not the vowel's)
        s0, s1 = (edge - far - w, edge - max(last, 0)) if start else (edge + max(last, 0), edge + far + w)
        frames = np.arange(2, (s1 - s0) // fl - 2)
        if np.mean(voiced_frames(to_vad_rate(x[s0:s1], sr), frames)) >= 0.5:
            last, bed_lvl = far, lvl
    if last <= w // 2:
        return edge
    lvl = bed_lvl
    if start:
        j = len(r) - 1 - last  # window j starts at a + j
        e = _refine_edge(x, sr, a + j - w, a + j + 2 * w, lvl, eps, lo, edge, start=True, dc=dc)
        return min(edge, e) if e is not None else edge
    e = _refine_edge(x, sr, a + last - w, a + last + 2 * w, lvl, eps, edge, hi, start=False, dc=dc)
    return max(edge, e) if e is not None else edge


def _release_edge(x, sr, edge: int, pk: float, eps: float, lo: int, hi: int, *, dc: float = 0.0,
                  memo: dict | None = None) -> int:
    """`edge` (an utterance's end) moved out to a stop's release: a short burst (≤ `RELEASE_MAX_S`) within
    `RELEASE_REACH_S` after it, 10 dB over the 90th percentile of the 5 ms windows (0.6 s) of either band (4 kHz low-pass, 4–11 kHz) and within
    40 dB of the run's peak, with nothing else that loud after it in the reach. Its closure may lie under the noise
    (a final /t/ after 150 ms of closure at 25 dB SNR), so the burst is not followed as a chain; isolation and
    brevity are what make it a release rather than the next sound."""
    w = max(8, int(round(sr * 0.005)))
    reach = int(round(sr * RELEASE_REACH_S))
    a, b = edge, min(hi, edge + reach)
    f1 = min(hi, edge + int(round(sr * HISS_FLOOR_S)))  # the stretch _hiss_edge looked at (memo)
    if b - a < 4 * w or f1 - a < 4 * w:
        return edge
    over = np.zeros(b - a - w + 1, bool)
    thrs = []
    for hiss in (False, True):
        r = _band_rms(x, sr, a, f1, dc, hiss, w, memo)
        thr_b = max(max(_percentile(r[:: max(1, w // 4)], 90), ABS_FLOOR) * RELEASE_MARGIN,
                    pk * 10 ** (SOFT_LEVEL_DB / 20))
        thrs.append(thr_b)
        bed = r[:: max(1, w // 4)]
        bed = bed[bed < thr_b]
        if len(bed) and _percentile(bed, 90) > RELEASE_BED_SPREAD * max(_percentile(bed, 50), ABS_FLOOR):
            return edge  # a fluctuating bed (babble): a burst in it may be anyone's
        over |= r[: len(over)] >= thr_b
    idx = np.flatnonzero(over)
    if len(idx) == 0 or idx[0] < w or idx[-1] + w - idx[0] > int(round(sr * RELEASE_MAX_S)):
        return edge  # nothing; or a sound touching the edge (followed already) or too long to be a release
    last = a + int(idx[-1])
    e = None
    for hiss, thr_b in zip((False, True), thrs):
        eb = _refine_edge(x, sr, last - w, last + 2 * w, thr_b, eps, edge, hi, start=False, dc=dc, hiss=hiss)
        if eb is not None:
            e = eb if e is None else max(e, eb)
    return max(edge, e) if e is not None else edge


class _HeldMin:
    """min(r[i : i + k]) for every i ≤ len(r) − k, for several k of one r: the same numbers as
    `minimum_filter1d(r, k, origin=-(k // 2))[: len(r) - k + 1]` (a minimum is exact), from a table of minima over
    power-of-two spans (min over [i, i + k) = min of the two spans of 2^p ≤ k at i and at i + k − 2^p), built once
    for all holds, without the filter's per-call overhead. An r holding NaN goes through the filter itself (its
    NaN handling differs from np.minimum's)."""

    def __init__(self, r: np.ndarray):
        self.r = r
        self.nan = bool(np.isnan(r).any())
        self.tbl = [r]  # tbl[p][i] = min(r[i : i + 2**p])

    def min(self, k: int) -> np.ndarray:
        r, n = self.r, len(self.r)
        if self.nan:
            return minimum_filter1d(r, k, origin=-(k // 2))[: n - k + 1]
        p = k.bit_length() - 1
        while len(self.tbl) <= p:
            t, d = self.tbl[-1], 1 << (len(self.tbl) - 1)
            self.tbl.append(np.minimum(t[:-d], t[d:]))
        t, d = self.tbl[p], 1 << p
        return np.minimum(t[: n - k + 1], t[k - d : n - d + 1])


def _band_rms_reach(x, sr, a: int, b: int, dc: float, hiss: bool, w: int, st: int, n_win: int,
                    memo: dict | None, *, start: bool) -> np.ndarray:
    """`_band_rms_out(...)[:n_win]`, the same numbers, from the least filtering: from what `memo` holds beside the
    edge when it covers those windows, else from the band of the reach alone. (`_band_rms_out` sums the squares
    outward from the edge, so its first windows never depend on samples beyond them; each filtered sample is the
    same dot product of the same 35 samples, whatever stretch it is filtered in.)"""
    span = int(round(sr * HISS_FLOOR_S))
    if memo is not None and b - a > span:
        near = memo.get(((b - span, b) if start else (a, a + span)) + (hiss, w))
        if near is not None and (n_win - 1) * st < len(near):
            return near[::-1][::st][:n_win] if start else near[::st][:n_win]
    n = (n_win - 1) * st + w  # the samples the first n_win windows cover
    if start:
        return _win_rms_step(_band(x, sr, b - n, b, dc, hiss)[::-1], w, st)
    return _win_rms_step(_band(x, sr, a, a + n, dc, hiss), w, st)


def _isolated_quiet(r_reach: np.ndarray, k: int, floor: float) -> bool:
    """True when no `k` consecutive windows of `r_reach` all reach `floor` (a bound: `_isolated_edge`'s thresholds
    are at least `floor`, and its longer holds' minima are at most this one's)."""
    if len(r_reach) < k:
        return False
    return bool(_HeldMin(r_reach).min(k).max() < floor)


def _isolated_edge(x, sr, edge: int, pk: float, eps: float, lo: int, hi: int, *, start: bool,
                   dc: float = 0.0, memo: dict | None = None) -> int:
    """`edge` moved out to an isolated sound beyond it: a final burst or hiss after a closure or dip that lies
    under the noise (or an onset's before it), decided by the noise's own distribution, not its mean. The noise
    alone is taken from the `ISOLATED_REF_S` beyond the reach (`ISOLATED_REACH_S`), in each refiner band (4 kHz
    low-pass, 4–11 kHz): the level its 5 ms windows hold for a while (the minimum over that span), in dB,
    its median and 90th percentile. A sound within the reach that holds median + `ISOLATED_Z` × (p90 − median)
    + `ISOLATED_MARGIN_DB` (and within `ISOLATED_LEVEL_DB` of the run's peak) for as long, with noise alone for
    `ISOLATED_GUARD_S` after it (inside the reach, or past it for a sound ending near its end), is part of the
    utterance; the edge is refined on the samples of its band. Holds of 10, 25 and 50 ms (`ISOLATED_HOLDS_S`)
    each have their threshold from the noise's own held level: the longer the hold, the lower. In steady noise
    (white) the threshold is a few dB over the noise; in fluctuating noise (pink in the 4 kHz band) the spread
    lifts it; where the noise fluctuates more (`ISOLATED_SPREAD_DB`) nothing is attached, and the longer holds
    need a noise as steady as white or pink (`ISOLATED_STEADY_DB`) whose level does not drift over the reference
    (`ISOLATED_DRIFT_DB`: babble's does), so the noise's own peaks are not attached."""
    w = max(8, int(round(sr * 0.005)))
    st = max(1, w // 4)
    reach = int(round(sr * ISOLATED_REACH_S))
    if start:
        a, b = max(lo, edge - reach - int(round(sr * ISOLATED_REF_S))), edge
    else:
        a, b = edge, min(hi, edge + reach + int(round(sr * ISOLATED_REF_S)))
    if b - a < reach + int(round(sr * ISOLATED_REF_MIN_S)):
        return edge
    n_win = (reach - w) // st + 1  # windows wholly inside the reach
    guard = int(round(sr * ISOLATED_GUARD_S)) // st
    floor_pk = pk * 10 ** (ISOLATED_LEVEL_DB / 20)
    best = None  # (outward index of the sound's outermost window, band, threshold)
    ks = [max(1, (int(round(sr * hold)) - w) // st + 1) for hold in ISOLATED_HOLDS_S]
    n_r = -(-(b - a - w + 1) // st)  # len(r) below
    fits = all(n_r >= n_win + k and max(0, n_r - k + 1 - reach // st) >= int(round(sr * ISOLATED_REF_MIN_S)) // st - k
               for k in ks)  # no hold's length test below returns `edge`
    for hiss in (False, True):
        if fits and _isolated_quiet(_band_rms_reach(x, sr, a, b, dc, hiss, w, st, n_win, memo, start=start),
                                    ks[0], floor_pk):
            continue  # no window held as loud as the level floor in this band's reach: no hold finds a sound
        r = _band_rms_out(x, sr, a, b, dc, hiss, w, st, memo, start=start)  # r[i]: the window i·st samples out
        held = _HeldMin(r)
        for hold in ISOLATED_HOLDS_S:
            k = max(1, (int(round(sr * hold)) - w) // st + 1)  # windows (step st) a sound held this long spans
            if len(r) < n_win + k:
                return edge
            if max(0, len(r) - k + 1 - reach // st) < int(round(sr * ISOLATED_REF_MIN_S)) // st - k:  # len(ref)
                return edge
            if hold != ISOLATED_HOLDS_S[0] and not steady:
                break  # longer holds (lower thresholds) only where the noise is as steady as white noise
            s = held.min(k)  # s[i] = min(r[i : i + k]): held for `hold`
            ref = 20 * np.log10(np.maximum(s[(reach // st):], ABS_FLOOR))
            med, p90 = _median_p90(ref)
            if hold == ISOLATED_HOLDS_S[0]:
                if p90 - med > ISOLATED_SPREAD_DB:
                    break  # a fluctuating bed in this band (babble): a sound in it may be anyone's
                h = len(ref) // 2  # and its level does not drift over the reference (babble's syllables do)
                drift = abs(_median(ref[:h]) - _median(ref[h:]))
                steady = p90 - med <= ISOLATED_STEADY_DB and drift <= ISOLATED_DRIFT_DB
            thr = max(10 ** ((med + ISOLATED_Z * (p90 - med) + ISOLATED_MARGIN_DB) / 20), floor_pk)
            over = s[: n_win - k + 1] >= thr
            on = np.flatnonzero(over)
            if len(on) == 0 or over.all():
                continue
            last = int(on[-1]) + k - 1
            if last > n_win - 1 - guard:  # the sound ends in the reach's last `guard`: isolated only if noise
                after = s[int(on[-1]) + 1 : int(on[-1]) + 1 + guard]  # alone follows it (past the reach)
                if len(after) < guard or bool(np.any(after >= thr)):
                    return edge  # the sound goes on past the reach: not isolated (or the span is too short)
            if best is None or last > best[0]:
                best = (last, hiss, thr)
    if best is None:
        return edge
    q = best[0] * st  # outward offset of the sound's outermost window [q, q + w)
    if start:
        z = edge - q - w  # that window in samples
        e = _refine_edge(x, sr, z - w, z + 2 * w, best[2], eps, lo, edge, start=True, dc=dc, hiss=best[1])
        return min(edge, e) if e is not None else edge
    z = edge + q
    e = _refine_edge(x, sr, z - w, z + 2 * w, best[2], eps, edge, hi, start=False, dc=dc, hiss=best[1])
    return max(edge, e) if e is not None else edge


# the bands a sound beyond an edge is judged in (Hz): about half an octave wide, each at least 2 bins of a 10 ms frame
MULTIBAND_EDGES = (100.0, 300.0, 500.0, 800.0, 1200.0, 1800.0, 2600.0, 3600.0, 5000.0, 7000.0, 9000.0, 11000.0)
MULTIBAND_FRAME_S = 0.010  # Hann frames this long ...
MULTIBAND_HOP_S = 0.005  # ... every this (outward from the edge)
MULTIBAND_Z_CAP = 4.0  # one band's evidence is capped here (a lone band's outlier is not a sound)


@lru_cache(maxsize=8)
def _multiband_bins(sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann window, and the (bins × columns) 0/1 matrix summing a frame's rfft power into the bands, then 80–4000 Hz
    and 4–11 kHz (the refiner's two bands), Hann-normalized (Parseval: each column gives its band's RMS²)."""
    n = int(round(sr * MULTIBAND_FRAME_S))
    f = np.fft.rfftfreq(n, 1 / sr)
    edges = [e for e in MULTIBAND_EDGES if e <= 0.45 * sr]
    win = np.hanning(n).astype(np.float32)
    cols = [(f >= lo) & (f < hi) for lo, hi in zip(edges[:-1], edges[1:])]
    cols += [(f >= BAND[0]) & (f < BAND[1]), (f >= BAND[1]) & (f < min(HISS_TOP, 0.45 * sr))]
    norm = 2.0 / (n * float(np.sum(np.square(win, dtype=np.float64))))
    return win, np.stack(cols, axis=1).astype(np.float64) * norm


def _multiband_frames(x, sr, edge: int, n_frames: int, dc: float, *, start: bool, first: int = 0):
    """Band log-powers (dB) of the 10 ms frames outward from `edge`, frames `first` … `first` + `n_frames` − 1:
    frame i covers [edge + i·hop, … + frame) (an end), or [edge − i·hop − frame, edge − i·hop) (a start); and
    the frames' mean square in 80–4000 Hz and in 4–11 kHz (Parseval, Hann-weighted: the band's RMS² over the
    frame)."""
    win, m = _multiband_bins(sr)
    n, hop = len(win), int(round(sr * MULTIBAND_HOP_S))
    span = (n_frames - 1) * hop + n
    e0 = edge - first * hop if start else edge + first * hop
    seg = np.subtract(x[e0 : e0 + span] if not start else x[e0 - span : e0], np.float32(dc), dtype=np.float32)
    if start:
        seg = seg[::-1]  # outward; a frame's power spectrum is that of its time reverse
    fr = np.lib.stride_tricks.sliding_window_view(seg, n)[::hop][:n_frames]
    s = sp_fft.rfft(fr * win, axis=1)  # float32 in, complex64 out: a level test, not a boundary
    bp = (s.real ** 2 + s.imag ** 2).astype(np.float64) @ m
    return 10 * np.log10(np.maximum(bp[:, :-2], 1e-20)), bp[:, -2], bp[:, -1]


def _multiband_stat(lv: np.ndarray, ref: slice) -> tuple[np.ndarray, np.ndarray]:
    """Evidence per frame that something other than the noise is there: each band's level as a z-score against
    the same band in the noise-only frames `ref` (median, robust σ from the 16th–84th percentiles), clipped to
    [0, `MULTIBAND_Z_CAP`] and summed over the bands. Noise's bands fluctuate nearly independently; a burst or a
    fricative raises several adjacent bands at once. Also returns the per-band drift between the reference's two
    halves, in σ (a noise whose level wanders: babble)."""
    r = np.sort(lv[ref], axis=0)
    q16, med, q84 = (_sorted_quantile(r, q) for q in (0.16, 0.5, 0.84))  # = np.percentile(·, 16/50/84, axis=0)
    sig = np.maximum((q84 - q16) / 2, 0.5)
    z = np.clip((lv - med) / sig, 0.0, MULTIBAND_Z_CAP)
    h = len(r) // 2
    lr = lv[ref]
    drift = np.abs(_sorted_quantile(np.sort(lr[:h], axis=0), 0.5)
                   - _sorted_quantile(np.sort(lr[h:], axis=0), 0.5)) / sig
    return z.sum(axis=1), drift


def _sorted_quantile(s: np.ndarray, q: float) -> np.ndarray:
    """Quantile q of each column of `s` (sorted along axis 0), linear interpolation as `np.percentile`'s default."""
    v = (len(s) - 1) * q
    i = int(np.floor(v))
    j = min(i + 1, len(s) - 1)
    return s[i] + (s[j] - s[i]) * (v - i)


MULTIBAND_HOLDS = (1, 2, 4, 9)  # a sound held over 1, 2, 4, 9 frames (10–50 ms): the mean evidence over them ...
MULTIBAND_THRESHOLDS = (15.0, 12.2, 9.5, 7.9)  # ... at least this (summed clipped z): see `_multiband_edge`
MULTIBAND_DRIFT = 1.0  # the noise reference is steady: no band's two halves' medians further apart (in σ) than this
MULTIBAND_CORR = 0.10  # ... and its bands fluctuate independently: mean correlation between bands at most this


def _multiband_edge(x, sr, edge: int, pk: float, eps: float, lo: int, hi: int, *, start: bool,
                    dc: float = 0.0) -> int:
    """`edge` moved out to an isolated sound beyond it (a final burst or hiss after a closure under the noise, an
    onset before one), judged across bands and time against the noise alone. Frames of 10 ms every 5 ms outward
    from the edge; the noise alone is the `ISOLATED_REF_S` beyond the `ISOLATED_REACH_S` reach. Each frame's
    evidence is `_multiband_stat` (the clipped z-scores of its bands, summed); a sound is a run of frames whose
    mean evidence over a hold (`MULTIBAND_HOLDS`) reaches that hold's threshold (`MULTIBAND_THRESHOLDS`), within
    `ISOLATED_LEVEL_DB` of the run's peak, followed by `ISOLATED_GUARD_S` of noise alone inside the reach. The
    thresholds are set by a stated false-alarm rate: on noise alone (white and pink, whose statistic is the same
    after the z-scores), a sound is found in 0 of 4 800 reaches (< 0.1 % per edge side;
    bench/multiband_false_alarm.py, docs/boundaries-on-other-voices.md cause 11). A sound whose outermost frame
    is the one holding the edge (frame 0: a weak onset or tail continuing the sound found, under the other
    refiners' thresholds) is attached too; its refinement must stay within that frame (one that lands beyond it
    followed the noise, and is redone within the frame). The rule assumes the bands of the noise fluctuate
    independently and its level neither wanders nor swings; where the reference says otherwise (babble: another
    talker's syllables raise every band together) nothing is attached."""
    n, hop = int(round(sr * MULTIBAND_FRAME_S)), int(round(sr * MULTIBAND_HOP_S))
    reach, ref_s = int(round(sr * ISOLATED_REACH_S)), int(round(sr * ISOLATED_REF_S))
    avail = (edge - lo) if start else (hi - edge)
    avail = min(avail, reach + ref_s)
    if avail < reach + int(round(sr * ISOLATED_REF_MIN_S)):
        return edge
    n_frames = (avail - n) // hop + 1
    n_reach = (reach - n) // hop + 1  # frames wholly inside the reach
    first_ref = -(-reach // hop)  # frames starting beyond it
    if n_frames - first_ref < 8:
        return edge
    floor2 = (pk * 10 ** (ISOLATED_LEVEL_DB / 20)) ** 2
    lv, p_low, p_hiss = _multiband_frames(x, sr, edge, n_reach, dc, start=start)
    if max(float(p_low.max()), float(p_hiss.max())) < floor2:
        return edge  # no frame of the reach is that loud, let alone that far over the noise: the level test fails
    lv_r, p_low_r, p_hiss_r = _multiband_frames(x, sr, edge, n_frames - first_ref, dc, start=start, first=first_ref)
    # what stands over the noise (power over its median) within ISOLATED_LEVEL_DB of the run's peak: not the comfort
    # noise before a reply (45+ dB under it), though it too stands out of a pink bed in the upper bands
    loud = np.maximum(p_low - np.median(p_low_r), p_hiss - np.median(p_hiss_r))[:n_reach] >= floor2
    if not loud.any():
        return edge  # a sound's outermost frame must be loud: none is (the tests below all return `edge` too; this
        #   is the common case, decided before the band statistics)
    gap = first_ref - n_reach  # frames neither wholly inside the reach nor beyond it (none when hop divides it)
    lv = np.concatenate([lv, np.full((gap, lv.shape[1]), np.nan), lv_r])
    p_low = np.concatenate([p_low, np.zeros(gap), p_low_r])
    p_hiss = np.concatenate([p_hiss, np.zeros(gap), p_hiss_r])
    ref = slice(first_ref, n_frames)
    S, drift = _multiband_stat(lv, ref)
    if drift.max() > MULTIBAND_DRIFT:
        return edge
    lo_db = 10 * np.log10(np.maximum(p_low[ref], 1e-20))  # and its 4 kHz band's 10 ms level spreads as
    if _percentile(lo_db, 90) - _median(lo_db) > ISOLATED_SPREAD_DB:  # little as pink's (≤ 2.9 dB; babble 2.3–10)
        return edge
    r = lv[ref][::2]  # every other frame: frames that do not overlap
    with np.errstate(invalid="ignore", divide="ignore"):  # a band of digital silence has no correlation: nan
        c = np.corrcoef(r.T)
    nb = len(c)
    if not np.all(np.isfinite(c)) or (c.sum() - nb) / (nb * nb - nb) > MULTIBAND_CORR:
        return edge
    guard = int(round(sr * ISOLATED_GUARD_S))
    cs = np.concatenate([[0.0], np.cumsum(S[:n_reach] * loud)])
    best = -1
    for k, thr in zip(MULTIBAND_HOLDS, MULTIBAND_THRESHOLDS):
        if n_reach < k:
            continue
        m = (cs[k:] - cs[:-k]) / k  # m[i]: mean evidence over frames i … i + k − 1
        on = np.flatnonzero(m >= thr)
        if len(on) == 0:
            continue
        i = int(on[-1])
        js = i + np.flatnonzero((S[i : i + k] >= thr) & loud[i : i + k])
        if len(js) == 0:
            continue
        j = int(js[-1])
        if j * hop + n > reach - guard:
            return edge  # the sound goes on to the reach's end: not isolated
        best = max(best, j)
    if best < 0:
        return edge
    j = best
    # refined on the samples of the band where the frame stands out more, over the most the noise's 5 ms windows
    # reach in that band over the reference and, for an isolated sound, over the level test's floor too (without
    # it the refinement followed the white comfort noise before a reply out to its onset step, 50–100 ms early);
    # a continuation (frame 0) is refined without that floor, within its frame
    refs = [(False, p_low), (True, p_hiss)]
    refs.sort(key=lambda t: -(t[1][j] / max(float(np.median(t[1][ref])), 1e-20)))
    q = j * hop  # outward offset of the frame [q, q + n)
    w = max(8, int(round(sr * 0.005)))
    r0, r1 = (edge - avail, edge - first_ref * hop) if start else (edge + first_ref * hop, edge + avail)
    for hiss, pw in refs:
        rr = _win_rms_step(_band(x, sr, r0, r1, dc, hiss), w, max(1, w // 4))
        thr_b = float(rr.max()) if j == 0 else max(float(rr.max()), np.sqrt(floor2))
        if start:
            e = _refine_edge(x, sr, edge - q - n - n // 2, edge - q + n // 2, thr_b, eps, lo, edge, start=True,
                             dc=dc, hiss=hiss)
            if e is not None and j == 0 and e < edge - n:  # a continuation refined beyond the frame that holds it
                e = _refine_edge(x, sr, edge - n, edge, thr_b, eps, max(lo, edge - n), edge, start=True, dc=dc,
                                 hiss=hiss)  # followed the noise: again, within the frame only
            if e is not None:
                return min(edge, e)
        else:
            e = _refine_edge(x, sr, edge + q - n // 2, edge + q + n + n // 2, thr_b, eps, edge, hi, start=False,
                             dc=dc, hiss=hiss)
            if e is not None and j == 0 and e > edge + n:
                e = _refine_edge(x, sr, edge, edge + n, thr_b, eps, edge, min(hi, edge + n), start=False, dc=dc,
                                 hiss=hiss)
            if e is not None:
                return max(edge, e)
    return edge  # no 5 ms window of it over the noise's most: not placed to the sample, not attached


def _hiss_edge(x, sr, edge: int, pk: float, lo: int, hi: int, *, start: bool, dc: float = 0.0,
               memo: dict | None = None) -> int:
    """`edge` moved out to the outer end of a fricative's hiss (4–11 kHz) that continues the voiced sound within
    `HISS_REACH_S`, else `edge`. The hiss is followed on 5 ms windows of its own band over
    max(its band's local floor + 10 dB, run peak + `HISS_LEVEL_DB`) — floor and test on the same band — and the
    end is refined on the samples of that band like a voiced edge."""
    w = max(8, int(round(sr * 0.005)))
    span = int(round(sr * HISS_FLOOR_S))
    reach = int(round(sr * HISS_REACH_S))
    if start:
        a, b = max(lo, edge - span), edge
    else:
        a, b = edge, min(hi, edge + span)
    if b - a < 4 * w:
        return edge
    r = _band_rms(x, sr, a, b, dc, True, w, memo)  # r[j]: samples a + j … a + j + w
    floor = max(_percentile(r[:: max(1, w // 4)], 10), ABS_FLOOR)
    thr = max(floor * 10 ** (10 / 20), pk * 10 ** (HISS_LEVEL_DB / 20))
    # the hiss the edge moves to must also stand out of the noise's own hiss. Babble holds /s/ and bursts 10 dB
    # over its 10th percentile all the time (its 5 ms windows spread 15+ dB), and a chain walked through it ended
    # on one of them, 150–460 ms off. Its upper level: the 90th percentile of the span's far half (300–600 ms out,
    # past a fricative), `HISS_UPPER_DB` over it; white and pink noise spread 2–3 dB, so there the floor's 10 dB
    # decides as before
    if np.count_nonzero(r >= thr) < 2:
        return edge  # no two windows of hiss at that level: nothing to follow (the test below needs two)
    half = len(r) // 2
    far = r[:half] if start else r[len(r) - half:]
    upper = _percentile(far[:: max(1, w // 4)], 90) if half >= sr * HISS_UPPER_MIN_S else 0.0
    thr_hiss = max(thr, upper * 10 ** (HISS_UPPER_DB / 20))
    # hiss, not broadband noise: comfort noise or a noise bed is about as loud under 4 kHz (white: 2.4 dB less
    # per band here); an /s/, /sh/ or a release's burst is far louder above 4 kHz than under it
    # the sound is followed outward over windows at that level (a release or a stop's closure may lie between
    # the voiced edge and the hiss); it ends at the chain's outermost hissy window
    r_low = _band_rms(x, sr, a, b, dc, False, w, memo)
    floor_low = max(_percentile(r_low[:: max(1, w // 4)], 10), ABS_FLOOR)
    thr_low = max(floor_low * 10 ** (10 / 20), pk * 10 ** (HISS_LEVEL_DB / 20))
    over, hissy = (r >= thr) | (r_low >= thr_low), (r >= thr_hiss) & (r >= r_low * 10 ** (HISS_TILT_DB / 20))
    if start:
        over, hissy = over[::-1], hissy[::-1]  # walk outward from the edge
    idx = np.flatnonzero(over)
    if len(idx) == 0 or idx[0] > reach:
        return edge
    gaps = np.flatnonzero(np.diff(idx) > reach)
    chain = idx[: gaps[0] + 1] if len(gaps) else idx
    hiss_idx = chain[hissy[chain]]
    if len(hiss_idx) < 2:
        return edge
    last = int(hiss_idx[-1])  # outermost hissy window of the chain (counted outward)
    if last <= w // 2:
        return edge
    eps = max((0.1 * floor) ** 2, (pk * 10 ** ((HISS_LEVEL_DB - 15) / 20)) ** 2, 1e-12)
    if start:
        j = len(r) - 1 - last  # window j starts at a + j
        z0, z1 = a + j - w, a + j + 2 * w
        e = _refine_edge(x, sr, z0, z1, thr, eps, lo, edge, start=True, dc=dc, hiss=True)
        return min(edge, e) if e is not None else edge
    z0, z1 = a + last - w, a + last + 2 * w
    e = _refine_edge(x, sr, z0, z1, thr, eps, edge, hi, start=False, dc=dc, hiss=True)
    return max(edge, e) if e is not None else edge


def _outlier_level(quiet: np.ndarray, eps: float) -> float:
    """A sample level that the quiet side's noise (robust σ from the median absolute value) practically never
    reaches: 5.5 σ (Gaussian: 4e-8 per sample), and not under the variance floor's level."""
    sigma = 1.4826 * _median(np.abs(quiet)) if len(quiet) >= 32 else np.inf
    return max(5.5 * sigma, float(np.sqrt(eps)))


def first_speech_after(x: np.ndarray, sr: int, start_index: int, **opts) -> Region | None:
    """The first speech region that starts at or after `start_index`, or None.

    The noise floor is measured on all of `x` unless `floor=` is given; the analysis starts one second before
    `start_index` so the VAD has settled; a region already under way at `start_index` does not count.
    """
    x = np.asarray(x, dtype=np.float32)
    if opts.get("floor") is None:
        opts["floor"] = noise_floor(x, sr)
    off = max(0, int(start_index) - sr)
    for r in speech_regions(x[off:], sr, **opts):
        if r.start + off >= start_index:
            return Region(r.start + off, r.end + off, sr)
    return None


# ---------------------------------------------------------------------------------------------------- sound ends

AUDIBLE_DB = -45.0  # a sample within this of the sound's loudest 10 ms is audible (the refinement's variance floor)


def loudest_10ms(x: np.ndarray, sr: int, a: int, b: int, dc: float = 0.0) -> float:
    """The largest RMS of any 10 ms window of x[a:b] low-passed at 4 kHz (linear; 0 when empty)."""
    a, b = max(0, int(a)), min(len(x), int(b))
    if b <= a:
        return 0.0
    y = _band(x, sr, a, b, dc)
    w = max(1, int(round(sr * FRAME_S)))
    if len(y) < w:
        return float(np.sqrt(np.mean(y * y)))
    return float(_win_rms(y, w).max())


def audible_end(x: np.ndarray, sr: int, start: int, stop: int, *, ref: float, floor: float,
                max_pause_ms: float = 600.0, tail_ms: float = 30.0, level_db: float = AUDIBLE_DB) -> int | None:
    """Where sound that is under way at `start` stops being audible, searched before `stop`: the sample after
    the last one whose magnitude (low-passed at 4 kHz) exceeds max(`ref` + `level_db`, 5.5 σ of the noise after
    it), `ref` being the sound's loudest 10 ms (`loudest_10ms`). The sound is followed from `start` through
    10 ms frames at least that loud and 10 dB over the channel's `floor`, across pauses shorter than
    `max_pause_ms`; its end is then searched on the samples up to `tail_ms` past the last such frame (a decoder's
    fading tail, quieter than any whole frame, is still audible). None if nothing from `start` on is that loud.

    This is the end the edge refinement finds in digital silence (its variance floor is 45 dB under the peak),
    with the peak taken over the whole sound rather than one speech run, and with no cap on a tail or a short
    last fragment (a word's onset cut after 5 ms): what a barge-in's stop needs — the last audible sample, speech
    or not.
    """
    start, stop = max(0, int(start)), min(len(x), int(stop))
    if stop - start < 2 or ref <= 0:
        return None
    fl = int(round(sr * FRAME_S))
    lvl = ref * 10 ** (level_db / 20)
    y8 = to_vad_rate(x[start:stop], sr)
    rms = frame_rms(y8)
    loud = np.flatnonzero(rms >= max(lvl, floor * 10 ** (10 / 20)))
    if len(loud) == 0:
        return None
    gap = max_pause_ms / 1000 / FRAME_S
    breaks = np.flatnonzero(np.diff(loud) > gap + 1)
    f = int(loud[breaks[0]] if len(breaks) else loud[-1])  # last loud frame of the sound under way
    tail = int(round(sr * tail_ms / 1000))
    e0 = start + (f + 1) * fl
    lo, hi = start + f * fl, min(stop, e0 + tail)
    # the noise after it (up to 0.5 s, not into a later sound) sets how far out of it a sample must stand
    q1 = min(stop, hi + sr // 2, start + int(loud[breaks[0] + 1]) * fl if len(breaks) else stop)
    quiet = _band(x, sr, hi, q1) if q1 - hi >= 32 else np.zeros(0)
    thr = _outlier_level(quiet, lvl * lvl) if len(quiet) >= 32 else max(lvl, 5.5 * floor)
    y = _band(x, sr, lo, hi)
    out = np.flatnonzero(np.abs(y) > thr)
    return lo + int(out[-1]) + 1 if len(out) else e0
