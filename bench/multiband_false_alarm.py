"""False-alarm rate of `_multiband_edge` (harness/audio/boundaries.py): how often it attaches a "sound" where there
is only noise.

    .venv/bin/python bench/multiband_false_alarm.py [--stretches 1500]
    .venv/bin/python bench/multiband_false_alarm.py --calibrate   # how the thresholds were set

Two controls, neither shares the detector's rule:
1. noise alone (the corpus's white, pink and babble generators, seeds 100+, not the ones the thresholds were set
   on): an "edge" at a random position with nothing but noise in the reach and the reference beyond it; a speech
   peak 25 dB over the noise (the corpus's 25 dB SNR) so the level test is no obstacle;
2. after real utterances: the corpus's conversations in white and pink noise at 25 dB SNR (seeds fixed), at the
   true end of every utterance (and before its true start), where the clean signal is silent over the reach and
   the reference: whatever `_multiband_edge` attaches there is noise.
A false alarm is an edge moved by any amount. Per edge side.

`--calibrate`: the statistic's largest mean over each hold in the reach, on 4 800 reaches of white and pink noise
alone (seeds 10–17, 300 each), as quantiles: `MULTIBAND_THRESHOLDS` are about their maxima (0 of 4 800 over).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import voice_corpus as vc  # noqa: E402

from harness.audio import boundaries as B  # noqa: E402

SR = 48000
SPAN = int(SR * (B.ISOLATED_REACH_S + B.ISOLATED_REF_S))


def noise_alone(kind: str, stretches: int, seed0: int = 100) -> tuple[int, int]:
    """(false alarms, stretches) on noise alone."""
    fa = n = 0
    per = 200
    for s in range(-(-stretches // per)):
        nz = vc.noise(kind, SR * 30, seed0 + s) * np.float32(0.01)
        pk = 0.01 * 10 ** (25 / 20) * 2  # a speech peak (10 ms frame RMS) 25 dB over the noise's RMS, × 2
        rng = np.random.default_rng(seed0 + s)
        for pos in rng.integers(SPAN + 1, len(nz) - SPAN - 1, min(per, stretches - n)):
            start = bool(pos % 2)
            e = B._multiband_edge(nz, SR, int(pos), pk, (pk * 10 ** (-45 / 20)) ** 2, 0, len(nz), start=start)
            fa += e != pos
            n += 1
    return fa, n


def after_utterances(kind: str, snr: float = 25.0) -> tuple[int, int]:
    """(false alarms, edge sides) at the true edges of the corpus's utterances, outward, where the clean signal
    is silent over the reach and the reference."""
    fa = n = 0
    for fam in vc.FAMILIES:
        for seed in range(2 * len(vc.FAMILIES[fam])):
            c = vc.conversation(fam, seed, noise_kind=kind, snr_db=snr)
            clean = vc.conversation(fam, seed, comfort_db=None).audio
            for ch, truth in ((0, c.user), (1, c.agent)):
                x, cl = c.audio[:, ch], clean[:, ch]
                for a, b in truth:
                    pk = float(np.sqrt(np.mean(np.square(cl[a:b], dtype=np.float64)))) * 2
                    eps = (pk * 10 ** (-45 / 20)) ** 2
                    for start, edge in ((False, b), (True, a)):
                        lo_, hi_ = (edge - SPAN, edge) if start else (edge, edge + SPAN)
                        if lo_ < 0 or hi_ > len(x) or np.any(cl[lo_:hi_] != 0):
                            continue
                        e = B._multiband_edge(x, SR, edge, pk, eps, 0, len(x), start=start)
                        fa += e != edge
                        n += 1
    return fa, n


def reach_maxima(kinds=("white", "pink"), seeds=range(10, 18), per: int = 300) -> np.ndarray:
    """For each reach of noise alone: the largest mean evidence (`_multiband_stat`) over each hold in the reach."""
    n_frames, first_ref = 150, 70
    n_reach = (int(SR * B.ISOLATED_REACH_S) - int(SR * B.MULTIBAND_FRAME_S)) // int(SR * B.MULTIBAND_HOP_S) + 1
    out = []
    for kind in kinds:
        for seed in seeds:
            nz = vc.noise(kind, SR * 40, seed) * np.float32(0.01)
            rng = np.random.default_rng(seed)
            for pos in rng.integers(SR, SR * 39 - SR, per):
                lv, _, _ = B._multiband_frames(nz, SR, int(pos), n_frames, 0.0, start=bool(pos % 2))
                s, _ = B._multiband_stat(lv, slice(first_ref, n_frames))
                c = np.concatenate([[0.0], np.cumsum(s[:n_reach])])
                out.append([float(((c[k:] - c[:-k]) / k).max()) for k in B.MULTIBAND_HOLDS])
    return np.array(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stretches", type=int, default=1500, help="noise-alone stretches per kind")
    ap.add_argument("--calibrate", action="store_true", help="print the reach maxima's quantiles and stop")
    args = ap.parse_args()
    if args.calibrate:
        m = reach_maxima()
        print(f"{len(m)} reaches of white and pink noise alone; holds {B.MULTIBAND_HOLDS} frames")
        for q in (99, 99.9, 100):
            print(f"p{q}: {np.percentile(m, q, axis=0).round(2).tolist()}")
        print(f"thresholds {B.MULTIBAND_THRESHOLDS}: {int((m >= np.array(B.MULTIBAND_THRESHOLDS)).any(1).sum())} "
              f"of {len(m)} reaches over any")
        return 0
    print("| control | noise | false alarms / edge sides | rate |")
    print("|---|---|---|---|")
    for kind in ("white", "pink", "babble"):
        fa, n = noise_alone(kind, args.stretches)
        print(f"| noise alone | {kind} | {fa} / {n} | {fa / max(n, 1):.2%} |", flush=True)
    for kind in ("white", "pink"):
        fa, n = after_utterances(kind)
        print(f"| after real utterances, 25 dB SNR | {kind} | {fa} / {n} | {fa / max(n, 1):.2%} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
