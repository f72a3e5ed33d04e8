"""Are the boundaries vlh misses under noise physically there? For each edge of the voice corpus
(bench/voice_corpus.py) with |error| > 5 ms, the speech and the noise are taken apart (the corpus adds the noise
last, so clean = the same conversation without noise): in each 5 ms window near the edge, the speech's energy in
the bands the refiner uses (80–4000 Hz and 4–11 kHz, `harness.audio.boundaries._band`) against the noise's mean
energy in the same band around the edge (±300 ms).

The audible edge: the outermost 5 ms window (step 0.5 ms) whose speech stands at least `--margin-db` (0 dB) over the
noise in either band — outside it, the speech is under the noise in every band the refiner sees. If the true edge
is more than 5 ms beyond the audible edge, ±5 ms is not reachable from the signal by any detector working on these
bands; otherwise the miss is the detector's.

    .venv/bin/python bench/tail_audibility.py [--snr 25] [--noise pink --noise babble ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import voice_corpus as vc  # noqa: E402

from harness.audio.boundaries import _band, _win_rms  # noqa: E402

SR = vc.SR
W = int(SR * 0.005)


def audible_edge(clean: np.ndarray, noise: np.ndarray, true_edge: int, start: bool, margin_db: float,
                 reach_s: float = 0.5) -> int:
    """The outermost sample (towards `true_edge`) of speech standing `margin_db` over the noise's mean level in a
    5 ms window of either band; searched over `reach_s` inside the edge."""
    reach = int(SR * reach_s)
    a, b = (true_edge, true_edge + reach) if start else (true_edge - reach, true_edge)
    a, b = max(0, a), min(len(clean), b)
    best = None
    for hiss in (False, True):
        s = _band(clean, SR, a, b, hiss=hiss)
        n0, n1 = max(0, a - int(0.3 * SR)), min(len(noise), b + int(0.3 * SR))
        nl = float(np.sqrt(np.mean(np.square(_band(noise, SR, n0, n1, hiss=hiss)))))
        r = _win_rms(s, W)
        on = np.flatnonzero(r >= nl * 10 ** (margin_db / 20))
        if len(on) == 0:
            continue
        e = a + int(on[0]) if start else a + int(on[-1]) + W
        best = e if best is None else (min(best, e) if start else max(best, e))
    return true_edge + (reach if start else -reach) if best is None else best


def failing_edges(family: str, kind: str, snr: float, seeds: int, margin_db: float, limit_ms: float = 5.0):
    rows = []
    for seed, ch, j, start, det, tru, err, x, n in vc.failing_edges(family, kind, snr, seeds, limit_ms):
        aud = audible_edge(x - n, n, tru, start, margin_db)
        rows.append({"seed": seed, "ch": ch, "j": j, "start": start, "error_ms": err,
                     "under_noise_ms": abs(aud - tru) / SR * 1e3, "vs_audible_ms": (det - aud) / SR * 1e3})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snr", type=float, default=25.0)
    ap.add_argument("--noise", action="append")
    ap.add_argument("--family", action="append")
    ap.add_argument("--seeds-per-voice", type=int, default=2)
    ap.add_argument("--margin-db", type=float, default=0.0)
    args = ap.parse_args()
    print("| voices | noise | edges > 5 ms off | of them: speech under the noise for > 5 ms at the true edge | "
          "under the noise, p50 / max (ms) | detected − audible edge, p50 / max \\|·\\| (ms), the reachable ones |")
    print("|---|---|---|---|---|---|")
    for fam in args.family or list(vc.FAMILIES):
        for kind in args.noise or ["white", "pink", "babble"]:
            rows = failing_edges(fam, kind, args.snr, args.seeds_per_voice, args.margin_db)
            if not rows:
                print(f"| {fam} | {kind} {args.snr:.0f} dB | 0 | – | – | – |", flush=True)
                continue
            under = np.array([r["under_noise_ms"] for r in rows])
            gone = under > 5.0
            reach = np.abs([r["vs_audible_ms"] for r, g in zip(rows, gone) if not g])
            rs = f"{np.median(reach):.1f} / {reach.max():.1f} ({len(reach)})" if len(reach) else "–"
            print(f"| {fam} | {kind} {args.snr:.0f} dB | {len(rows)} | {int(gone.sum())} | "
                  f"{np.median(under):.1f} / {under.max():.1f} | {rs} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
