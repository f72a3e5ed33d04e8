"""Speech regions of a long recording, block by block: memory set by the block, not by the recording's length.

A layer around the detector (`boundaries.speech_regions`), which is left as it is:
1. A cheap energy pass streams the channel in `CHUNK_S` pieces and keeps only its 10 ms frame RMS on the 8 kHz
   copy (8 bytes per 10 ms: 5.8 MB for two hours) and the copy's mean. From them: the channel's noise floor and
   DC offset — the same 10th percentile and mean the detector takes over a whole file — and its quiet frames (under the noise level + `floor_low_db`, where
   the detector's energy runs cannot be).
2. Blocks of about `block_s` are cut in the middle of a quiet stretch of at least `QUIET_S` (and longer than the
   pause that joins two regions), so no region, edge refinement window (±35 ms), hiss floor (0.6 s) or VAD
   context (0.3 s) reaches across a cut. Where no such stretch comes for a while the block grows until one does.
3. Each block is read alone, and the detector runs on it with the whole channel's floor and DC; its regions are moved
   to the file's sample positions and joined. Regions never cross a cut, so nothing needs stitching.

Turns are then paired on the whole file's region lists (`turns.pair_turns`), as whole-file analysis does.
"""

from __future__ import annotations

from math import gcd
from typing import Callable

import numpy as np

from harness.audio.resample import resample
from harness.audio.boundaries import (ABS_FLOOR, FRAME_S, VAD_RATE, Region, frame_rms, noise_level,
                                      speech_regions, to_vad_rate)

BLOCK_S = 120.0  # samples the detector sees at once (48 kHz: 23 MB of float32)
CHUNK_S = 10.0  # piece of the energy pass
QUIET_S = 1.5  # a cut needs this much quiet around it (0.75 s each side)
PAD_S = 0.1  # context around a piece when the 8 kHz copy is a polyphase resampling (rates not k·8 kHz)

Reader = Callable[[int, int], np.ndarray]  # (first sample, end sample) → float32 mono samples


def frame_energy(read: Reader, n: int, sr: int, chunk_s: float = CHUNK_S) -> tuple[np.ndarray, float]:
    """The channel's 10 ms frame RMS on its 8 kHz copy (`boundaries.frame_rms(to_vad_rate(x))`) and that copy's
    mean (its DC offset), piece by piece. Pieces start on input samples that map to whole 8 kHz samples, so a
    block average is exact and a polyphase resampling (rates not k·8 kHz) is the same filter as over the file."""
    g = gcd(int(sr), VAD_RATE)
    up, down = VAD_RATE // g, int(sr) // g  # 8 kHz sample k sits at input sample k·down/up
    per = int(VAD_RATE * FRAME_S)
    if sr % VAD_RATE == 0:
        n8, pad = n // down, 0
    else:
        n8, pad = -(-n * up // down), down * int(np.ceil(PAD_S * sr / down))
    m0 = up // gcd(per * down, up)  # pieces of a multiple of m0 frames start on whole input samples
    step = max(1, int(round(chunk_s / FRAME_S / m0))) * m0 * per  # in 8 kHz samples
    out, total = [], 0.0
    for k0 in range(0, n8, step):
        k1 = min(n8, k0 + step)
        a = k0 * down // up
        lo = max(0, (a - pad) // down * down)  # a multiple of `down`: the piece's 8 kHz grid is the file's
        hi = min(n, -(-k1 * down // up) + pad)
        y8 = to_vad_rate(read(lo, hi), sr)
        skip = k0 - lo * up // down
        y8 = y8[skip: skip + (k1 - k0)]
        total += float(np.sum(y8, dtype=np.float64))
        out.append(frame_rms(y8))  # whole frames: every piece but the last is a multiple of them
    rms = np.concatenate(out) if out else np.zeros(0)
    return rms, total / max(1, n8)


def cut_points(quiet: np.ndarray, block_frames: int, quiet_frames: int) -> list[int]:
    """Frame indices where blocks are cut: each in the middle of the last quiet run (≥ `quiet_frames` long) that
    ends in the second half of a block's nominal span; with none there, the first such run after it."""
    d = np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    keep = (ends - starts) >= quiet_frames
    mids = ((starts[keep] + ends[keep]) // 2).astype(np.int64)
    cuts, at = [], 0
    while True:
        lo, hi = at + block_frames // 2, at + block_frames
        if hi >= len(quiet):
            return cuts
        inside = mids[(mids > lo) & (mids <= hi)]
        later = mids[mids > hi]
        if len(inside):
            at = int(inside[-1])
        elif len(later):
            at = int(later[0])
        else:
            return cuts
        cuts.append(at)


def block_speech_regions(read: Reader, n: int, sr: int, *, block_s: float = BLOCK_S, floor_low_db: float = 3.0,
                         min_pause_ms: float = 300.0, **opts) -> list[Region]:
    """`speech_regions` of the channel `read` gives (n samples at sr), computed block by block (module doc)."""
    rms, dc = frame_energy(read, n, sr)
    if len(rms) == 0:
        return []
    floor = max(float(np.percentile(rms, 10)), ABS_FLOOR)
    quiet = rms < noise_level(rms, floor) * 10 ** (floor_low_db / 20)
    quiet_frames = int(np.ceil(max(QUIET_S, 2 * min_pause_ms / 1000) / FRAME_S))
    bounds = [0] + [int(round(c * sr * FRAME_S)) for c in cut_points(quiet, int(block_s / FRAME_S), quiet_frames)] + [n]
    regions: list[Region] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        found = speech_regions(read(a, b), sr, floor=floor, floor_low_db=floor_low_db, min_pause_ms=min_pause_ms,
                               dc=dc, **opts)
        regions += [Region(r.start + a, r.end + a, sr) for r in found]
    return regions


def resampled_reader(read: Reader, n: int, sr_from: int, sr_to: int) -> tuple[Reader, int]:
    """A reader of the channel resampled to `sr_to` (as `resample.resample` of the whole channel would give it),
    resampling only each piece asked for and a margin around it; returns (reader, samples at sr_to)."""
    g = gcd(int(sr_from), int(sr_to))
    up, down = int(sr_to) // g, int(sr_from) // g  # output sample k sits at input sample k·down/up
    n_out = -(-n * up // down)
    pad = int(max(PAD_S * sr_from, 20 * max(up, down) / up))  # well past the polyphase filter's half length

    def piece(a: int, b: int) -> np.ndarray:
        lo = max(0, (a * down // up - pad) // down * down)  # a multiple of `down`: on the whole channel's grid
        hi = min(n, -(-b * down // up) + pad)
        y = resample(read(lo, hi), sr_from, sr_to) if hi > lo else np.zeros(0, np.float32)
        k0 = lo * up // down
        y = y[a - k0: b - k0]
        return y if len(y) == b - a else np.pad(y, (0, b - a - len(y)))

    return piece, n_out
