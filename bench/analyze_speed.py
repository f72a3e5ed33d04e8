"""How fast `vlh analyze` is: × real time on one core for a 10-minute (or, with --hours, longer) stereo
48 kHz recording of a synthesised conversation.

    .venv/bin/python bench/analyze_speed.py            # 10 minutes
    .venv/bin/python bench/analyze_speed.py --minutes 60
    .venv/bin/python bench/analyze_speed.py --update-readme   # also writes the row into bench/README.md
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.audio.synth import build_conversation  # noqa: E402
from harness.audio.turns import find_turns  # noqa: E402
from harness.audio.wavio import read_wav, write_wav  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import insert_rows, machine  # noqa: E402

PHRASES = [
    ("I would like to book a table for two", "Sure, for what day"),
    ("Tomorrow evening around seven", "Seven works for us"),
    ("Can you also tell me where to park", "There is a car park behind the building"),
    ("Yes thank you very much", "You are welcome"),
    ("Let me check the calendar", "Okay that sounds fine"),
]


def recording(minutes: float, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Tile a synthesised conversation (noise 40 dB under peak) to `minutes`; returns (audio, truth)."""
    rng = np.random.default_rng(seed)
    gaps = list(rng.uniform(0.09, 3.0, 50))
    block, truth = build_conversation(PHRASES * 10, gaps_s=gaps, noise_db=40, comfort_noise_db=50, seed=seed)
    n = int(minutes * 60 * 48000)
    reps = -(-n // len(block))
    placed = [{k: v + r * len(block) for k, v in t.items()} for r in range(reps) for t in truth]
    return np.tile(block, (reps, 1))[:n], [t for t in placed if t["agent_end"] <= n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--hours", type=float, help="recording length in hours (overrides --minutes)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args()
    minutes = args.hours * 60 if args.hours else args.minutes
    audio, truth = recording(minutes)
    dur = len(audio) / 48000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec.wav"
        write_wav(path, audio, 48000)
        del audio
        t = time.perf_counter()
        rec, sr = read_wav(path)
        t_read = time.perf_counter() - t
    best = cpu = None
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        turns = find_turns(rec[:, 0], rec[:, 1], sr)
        el, ec = time.perf_counter() - t, time.process_time() - c
        best = el if best is None else min(best, el)
        cpu = ec if cpu is None else min(cpu, ec)
    ok = sum(t.status == "ok" for t in turns)
    found = {t.user_end: t for t in turns}
    errs = []
    for tr in truth:  # every placed turn must be found, with its two boundaries
        near = min(found, key=lambda u: abs(u - tr["user_end"]))
        t_ = found[near]
        errs += [t_.user_end - tr["user_end"], (t_.agent_start or 10**9) - tr["agent_start"]]
    err_ms = np.abs(np.array(errs)) / 48.0
    load = os.getloadavg()[0]
    row = (f"| {datetime.date.today().isoformat()} | {dur / 60:.0f} min stereo 48 kHz | {len(turns)} found "
           f"({ok} ok) / {len(truth)} placed; max error {err_ms.max():.2f} ms | {t_read:.2f} s | {best:.2f} s | "
           f"{dur / best:.0f}× | **{dur / cpu:.0f}×** | {dur / (best + t_read):.0f}× | {load:.1f} |")
    print(f"machine: {machine()}")
    print("| date | recording | turns | read WAV | analyse, wall (best of %d) | × real time, wall | "
          "× real time, CPU time | × real time, read + analyse (wall) | load avg |" % args.repeat)
    print(row)
    if args.update_readme:
        key = f"| {dur / 60:.0f} min stereo 48 kHz |"
        insert_rows("<!-- analyze_speed rows -->", [row], replaced=lambda ln: key in ln, machine_of="analyze_speed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
