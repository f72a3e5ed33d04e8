"""Can a failing edge be told from the noise at all? For each edge of the voice corpus (bench/voice_corpus.py) that
vlh places more than 5 ms off, the speech and the noise are taken apart (the corpus adds the noise last) and the
noisy signal at the true edge is tested against the noise's own distribution — not its mean:

- in each band the refiner uses (80–4000 Hz, 4–11 kHz: `harness.audio.boundaries._band`) and for each hold
  D in 5, 10, 25, 50 ms, the level the noisy signal's 5 ms windows hold for D (their minimum) over a stretch whose
  outer end lies within ±5 ms of the true edge (so a detector finding it would be within the target);
- against the 99.9th percentile of the level the noise *alone* holds for D, measured on the noise of that channel
  within ±1.5 s of the edge (thousands of positions: an empirical percentile, not a model).

`excess` = the best (band, D) of held level − the noise's p99.9 for that D, in dB. excess ≤ 0: nothing at the true
edge stands out of the noise by any level × duration criterion whose false-alarm rate is 1e-3 per position — a
lenient bar (a search over a 350 ms reach tests ~280 positions), so ±5 ms is not reachable from the signal there.
excess > 0: the signal holds something the noise rarely does; the miss is the detector's (it may still be a sound
isolated by a long closure, which `_isolated_edge` looks for within 0.35 s).

    .venv/bin/python bench/edge_evidence.py [--snr 25] [--csv PATH] [--update-readme]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import voice_corpus as vc  # noqa: E402

from harness.audio.boundaries import _band, _win_rms  # noqa: E402

SR = vc.SR
W = int(SR * 0.005)
ST = W // 4
HOLDS_S = (0.005, 0.010, 0.025, 0.050)
TOL = int(SR * 0.005)
NOISE_SPAN = int(SR * 1.5)


def held(r: np.ndarray, hold_s: float) -> np.ndarray:
    """h[i]: the level the 5 ms windows r[i … i + k − 1] (step ST) all hold: a sound of `hold_s` from window i."""
    k = max(1, (int(round(SR * hold_s)) - W) // ST + 1)
    return np.lib.stride_tricks.sliding_window_view(r, k).min(axis=1) if len(r) >= k else np.zeros(0)


def excess_db(noisy: np.ndarray, noise: np.ndarray, edge: int, start: bool) -> tuple[float, str, float]:
    """Best (band, hold) excess of the noisy signal at `edge` over the noise's own p99.9 (see module doc), and the
    best excess over the highest level the noise holds anywhere in its ±1.5 s (a stricter bar)."""
    best, how, best_max = -np.inf, "", -np.inf
    n0, n1 = max(0, edge - NOISE_SPAN), min(len(noise), edge + NOISE_SPAN)
    for hiss in (False, True):
        rn = _win_rms(_band(noise, SR, n0, n1, hiss=hiss), W)[::ST]
        for hold in HOLDS_S:
            d = int(round(SR * hold))
            hn = held(rn, hold)
            if len(hn) < 1000:
                continue
            p999 = float(np.percentile(hn, 99.9))
            # stretches of `hold` whose outer end lies within ±5 ms of the edge, lying inside the speech
            if start:
                a, b = edge - TOL, edge + TOL + d
            else:
                a, b = edge - TOL - d, edge + TOL
            a, b = max(0, a), min(len(noisy), b)
            rs = _win_rms(_band(noisy, SR, a, b, hiss=hiss), W)[::ST]
            hs = held(rs, hold)
            if len(hs) == 0:
                continue
            e = 20 * np.log10(max(float(hs.max()), 1e-12) / max(p999, 1e-12))
            if e > best:
                best, how = e, f"{'4-11k' if hiss else '<4k'} {hold * 1e3:.0f}ms"
            best_max = max(best_max, 20 * np.log10(max(float(hs.max()), 1e-12) / max(float(hn.max()), 1e-12)))
    return best, how, best_max


def failing_edges(family: str, kind: str, snr: float, seeds: int, limit_ms: float = 5.0) -> list[dict]:
    rows = []
    for seed, ch, j, start, det, tru, err, x, noise in vc.failing_edges(family, kind, snr, seeds, limit_ms):
        ex, how, ex_max = excess_db(x, noise, tru, start)
        inside = (det > tru) if start else (det < tru)  # the detected edge cuts speech off
        rows.append({"family": family, "noise": f"{kind} {snr:.0f} dB", "seed": seed,
                     "channel": "user" if ch == 0 else "agent", "turn": j,
                     "edge": "start" if start else "end", "error_ms": round(err, 1),
                     "cuts_speech": inside, "excess_db": round(ex, 1), "best": how,
                     "excess_over_noise_max_db": round(ex_max, 1)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snr", type=float, default=25.0)
    ap.add_argument("--noise", action="append")
    ap.add_argument("--family", action="append")
    ap.add_argument("--seeds-per-voice", type=int, default=2)
    ap.add_argument("--csv", help="write every failing edge here")
    ap.add_argument("--update-readme", action="store_true", help="write the table into bench/README.md")
    args = ap.parse_args()
    lines = ["| voices | noise | edges > 5 ms off | cut speech off / reach into noise | of those cutting off: "
             "nothing over the noise's p99.9 at the true edge (any band, hold 5–50 ms) | excess over p99.9, "
             "p50 / max (dB) | nothing over the most the noise holds in ±1.5 s |", "|---|---|---|---|---|---|---|"]
    every = []
    for fam in args.family or list(vc.FAMILIES):
        for kind in args.noise or ["white", "pink", "babble"]:
            rows = failing_edges(fam, kind, args.snr, args.seeds_per_voice)
            every += rows
            if not rows:
                lines.append(f"| {fam} | {kind} {args.snr:.0f} dB | 0 | – | – | – | – |")
            else:
                cut = [r for r in rows if r["cuts_speech"]]
                ex = np.array([r["excess_db"] for r in cut]) if cut else np.zeros(0)
                under = int(np.sum(ex <= 0))
                under_max = sum(r["excess_over_noise_max_db"] <= 0 for r in cut)
                st = f"{np.median(ex):+.1f} / {ex.max():+.1f}" if len(ex) else "–"
                lines.append(f"| {fam} | {kind} {args.snr:.0f} dB | {len(rows)} | {len(cut)} / {len(rows) - len(cut)} | "
                             f"{under} of {len(cut)} | {st} | {under_max} of {len(cut)} |")
            print(lines[-1], flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(every[0]) if every else ["family"])
            wr.writeheader()
            wr.writerows(every)
    if args.update_readme:
        from _common import today, update_section

        update_section("edge-evidence", f"""## {args.snr:.0f} dB: can a failing edge be told from the noise? — `bench/edge_evidence.py`

Date: {today()}. Command: `.venv/bin/python bench/edge_evidence.py --update-readme --csv
docs/edge-evidence-{args.snr:.0f}db.csv` (same corpus and seeds as the voices table; every edge in the CSV). For
each edge > 5 ms off, speech and noise are taken apart; the noisy signal's level *held* for 5/10/25/50 ms by a
stretch ending within ±5 ms of the true edge, in either refiner band, is compared with the 99.9th percentile of
the level the noise alone holds that long (its ±1.5 s around the edge). "Nothing over p99.9": no band and hold
lets any detector place that edge within ±5 ms at a false-alarm rate of 1e-3 per position — the signal does not
allow it. The last column is a stricter bar: over the most the noise holds anywhere in its ±1.5 s (a detector
searching a 350 ms reach over thousands of edges needs about this, or more). Edges reaching into noise (a late
end, an early start) are the detector's. What it means: `docs/boundaries-on-other-voices.md`.

{chr(10).join(lines)}
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
