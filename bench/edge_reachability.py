"""Which failing edges could a detector reach at all? For each edge of the voice corpus (bench/voice_corpus.py)
that vlh places more than 5 ms off *inside* the speech (an early end, a late start), the stretch a detector would
have to add to come within 5 ms — from the detected edge to 5 ms inside the true one — is judged as a detector
must judge it: by what it holds over the noise, with nothing else known.

- Its level, in each band the refiner uses (80–4000 Hz, 4–11 kHz: `harness.audio.boundaries._band`), by two
  statistics: *held* — the noisy signal's RMS over windows as long as the stretch (at most 5 ms, at least 1 ms;
  1 ms steps), their minimum over the stretch; and, for a stretch longer than 5 ms, *mean* — its RMS as one window
  (a long weak stretch steadily over the noise).
- The noise's: 120 s of noise alone of the same kind and level (`voice_corpus.noise`, another seed), the same
  statistic at every 1 ms; p = the share of positions where the noise alone reaches as much.
- The best band and statistic (the smallest p) counts — chosen after the fact, so p if anything flatters what a
  detector could reach.

p is the rate at which a rule that attaches this stretch would attach noise alone, per position it tests: any
detector — it uses only what is in the signal. A detector tests several positions at each of the thousands of
edges of the table, and adding noise to a correctly placed edge makes it wrong: "reachable" here means the noise
never held as much in 120 s (p < 1e-5); p ≥ 1e-3 means noise alone holds it at one position in a thousand or more,
and attaching it would attach noise at many of the other edges. This differs from `bench/edge_evidence.py`, whose
holds of 5–50 ms run into the speech the detector already found (so a 5 ms weak stretch followed by 45 ms of loud
speech "holds" for 50 ms): here only the part still to be found is judged, as long as it is. Edges that reach into
the noise (a late end, an early start) are the detector's own errors and are counted apart.

    .venv/bin/python bench/edge_reachability.py [--snr 25 --snr 35] [--noise pink ...] [--update-readme]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import minimum_filter1d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import voice_corpus as vc  # noqa: E402

from harness.audio.boundaries import _band, _win_rms  # noqa: E402

SR = vc.SR
W = int(SR * 0.005)  # the longest window
STEP = int(SR * 0.001)
LIMIT = int(SR * 0.005)  # the target: ±5 ms
NOISE_S = 120.0
NOISE_SEED = 999  # not a seed of the corpus's conversations' noise (seed × 2 + channel, seeds < 32)
REACHABLE_P = 1e-5
UNREACHABLE_P = 1e-3

_noise_db: dict = {}


def _levels_db(y: np.ndarray, hiss: bool, w: int) -> np.ndarray:
    return 20 * np.log10(_win_rms(_band(y, SR, 0, len(y), hiss=hiss), w)[::STEP] + 1e-12)


def noise_held_p(kind: str, rms: float, hiss: bool, w: int, n_win: int, level_db: float) -> float:
    """Share of positions where `NOISE_S` of unit-RMS `kind` noise scaled to `rms` holds `level_db` over `n_win`
    consecutive `w`-sample windows (1 ms apart) in the band."""
    key = (kind, hiss, w)
    if key not in _noise_db:
        base = vc.noise(kind, int(SR * NOISE_S), NOISE_SEED).astype(np.float64)
        _noise_db[key] = _levels_db(base, hiss, w)
    lv = _noise_db[key] + 20 * np.log10(max(rms, 1e-12))
    held = minimum_filter1d(lv, n_win, origin=-(n_win // 2))[: len(lv) - n_win + 1] if n_win > 1 else lv
    return float(np.mean(held >= level_db))


def stretch_p(noisy: np.ndarray, noise_alone: np.ndarray, kind: str, det: int, true: int, start: bool) -> float:
    """p of the stretch from `det` to 5 ms inside `true` (see module doc): the best band and statistic."""
    q = true + LIMIT if start else true - LIMIT
    length = (det - q) if start else (q - det)
    w = int(max(STEP, min(W, length)))
    span = max(length, w)
    a, b = (q, q + span) if start else (q - span, q)
    rms = float(np.sqrt(np.mean(np.square(noise_alone, dtype=np.float64))))
    best = 1.0
    for hiss in (False, True):
        y = _band(noisy, SR, a, b, hiss=hiss)
        lv = 20 * np.log10(_win_rms(y, w)[::STEP] + 1e-12)
        best = min(best, noise_held_p(kind, rms, hiss, w, len(lv), float(lv.min())))  # held: every window over
        if span > w:  # its mean power: one window as long as the stretch (a long weak stretch, steadily over)
            mean_db = 20 * np.log10(float(np.sqrt(np.mean(np.square(y)))) + 1e-12)
            best = min(best, noise_held_p(kind, rms, hiss, int(span), 1, mean_db))
    return best


def row(family: str, kind: str, snr: float, seeds: int) -> dict:
    out = {"family": family, "noise": f"{kind} {snr:.0f} dB", "over": 0, "into_noise": 0, "p": []}
    for seed, ch, j, start, det, tru, err, noisy, noise_alone in vc.failing_edges(family, kind, snr, seeds):
        out["over"] += 1
        if (err > 0) != start:  # an early start or a late end: it reaches into the noise
            out["into_noise"] += 1
            continue
        out["p"].append(stretch_p(noisy.astype(np.float64), noise_alone.astype(np.float64), kind, det, tru, start))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snr", type=float, action="append")
    ap.add_argument("--noise", action="append")
    ap.add_argument("--family", action="append")
    ap.add_argument("--seeds-per-voice", type=int, default=2)
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args()
    lines = ["| voices | noise | edges > 5 ms off | reach into the noise (the detector's) | cut speech off: "
             "reachable (noise alone never held it in 120 s, p < 1e-5) | 1e-5 ≤ p < 1e-3 | not reachable without "
             "attaching noise (p ≥ 1e-3) |", "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for snr in args.snr or [25.0, 35.0]:
        for kind in args.noise or ["white", "pink", "babble"]:
            for fam in args.family or list(vc.FAMILIES):
                r = row(fam, kind, snr, args.seeds_per_voice)
                if not r["over"]:
                    continue
                p = np.array(r["p"])
                lines.append(f"| {fam} | {r['noise']} | {r['over']} | {r['into_noise']} | "
                             f"{int(np.sum(p < REACHABLE_P))} | {int(np.sum((p >= REACHABLE_P) & (p < UNREACHABLE_P)))} | "
                             f"{int(np.sum(p >= UNREACHABLE_P))} |")
                print(lines[-1], flush=True)
    if args.update_readme:
        from _common import machine, today, update_section

        update_section("edge-reachability", f"""## Failing edges a detector could reach — `bench/edge_reachability.py`

Date: {today()}. Machine: {machine()}. Command: `.venv/bin/python bench/edge_reachability.py --update-readme` (same
corpus and seeds as the voices table; rows with an edge over ±5 ms). For each edge > 5 ms off inside the speech,
the stretch a detector would have to add to come within 5 ms is judged against 120 s of noise alone of the same
kind and level: p = the share of positions where the noise alone holds as much for as long (every window of it
over that level, or its mean power as high), in the better refiner band and statistic. A rule attaching that stretch attaches noise alone at about that rate per position it tests, at every edge of
the table. What it means: `docs/boundaries-on-other-voices.md`, "Which misses a detector could reach".

{chr(10).join(lines)}
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
